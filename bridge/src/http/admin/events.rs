//! `/admin/events`: the admins' live tail as Server-Sent Events.
//!
//! Each [`AdminEvent`] is sent as an SSE event named after its `type`, with its JSON as data.
//! The tail is per replica: it shows what this bridge process did. Comments every 15 s keep idle
//! connections open; the stream ends when the bridge shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airlock_shared::admin::AdminEvent;
use axum::extract::State;
use axum::http::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::http::extract::AdminAuth;

/// Interval of the keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(_: AdminAuth, State(state): State<Arc<AppState>>) -> Response {
    let receiver = state.admin_events.subscribe();
    let events = futures_util::stream::unfold((state, receiver), next_event);
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    ([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response()
}

type Tail = (Arc<AppState>, broadcast::Receiver<AdminEvent>);

/// The next event, waiting for one; `None` ends the stream (shutdown).
async fn next_event((state, mut receiver): Tail) -> Option<(Result<Event, Infallible>, Tail)> {
    if state.relay.is_shutting_down() {
        return None;
    }
    let event = tokio::select! {
        received = receiver.recv() => match received {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => AdminEvent::Lagged { missed },
            Err(RecvError::Closed) => return None,
        },
        _ = state.relay.shutting_down() => return None,
    };
    let sse = Event::default()
        .event(event_name(&event))
        .json_data(&event)
        .ok()?;
    Some((Ok(sse), (state, receiver)))
}

fn event_name(event: &AdminEvent) -> &'static str {
    match event {
        AdminEvent::Session { .. } => "session",
        AdminEvent::Message { .. } => "message",
        AdminEvent::DeadLetter { .. } => "dead_letter",
        AdminEvent::Connector { .. } => "connector",
        AdminEvent::Audit { .. } => "audit",
        AdminEvent::Lagged { .. } => "lagged",
    }
}
