//! The fake agent: a webhook (the connector's `webhook` agent, Airlock format) that answers after
//! a set delay and records how long it held each message, so the relay's own time can be told
//! apart from the agent's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

/// When the agent had a message: its request's arrival, and the answer handed back to the server.
#[derive(Clone, Copy)]
pub struct Held {
    pub arrived: Instant,
    pub answered: Instant,
}

type HeldMap = Arc<Mutex<HashMap<String, Held>>>;

#[derive(Clone)]
struct AgentState {
    delay: Duration,
    /// Message id → when the agent had it.
    held: HeldMap,
}

pub struct FakeAgent {
    /// The webhook URL to give the connector.
    pub url: String,
    held: HeldMap,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    /// An agent answering every message after `delay`, on a free loopback port.
    pub async fn start(delay: Duration) -> anyhow::Result<FakeAgent> {
        let state = AgentState {
            delay,
            held: Arc::default(),
        };
        let held = state.held.clone();
        let app = axum::Router::new()
            .route("/agent", post(answer))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/agent", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeAgent { url, held, task })
    }

    /// When the agent had the message with this id, once it has answered.
    pub fn held(&self, message_id: &str) -> Option<Held> {
        self.held.lock().unwrap().get(message_id).copied()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The only part of the connector's payload the agent reads: everything else (the session, the
/// history) is skipped unparsed, so the harness spends as little of the shared cores as it can.
#[derive(Deserialize)]
struct Payload {
    message: PayloadMessage,
}

#[derive(Deserialize)]
struct PayloadMessage {
    id: String,
}

async fn answer(State(state): State<AgentState>, Json(request): Json<Payload>) -> Json<Value> {
    let arrived = Instant::now();
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let answered = Instant::now();
    state
        .held
        .lock()
        .unwrap()
        .insert(request.message.id, Held { arrived, answered });
    Json(json!({"text": "pong"}))
}
