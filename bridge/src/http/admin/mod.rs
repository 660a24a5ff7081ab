//! The admin API (admin key): interfaces, connector keys, sessions and transcripts, dead letters,
//! stats, the audit log and a live tail of events. One module per resource; every change an
//! admin makes is recorded with [`audit`].

mod audit_log;
mod connectors;
mod dead_letters;
mod events;
mod interfaces;
mod sessions;
mod stats;

use std::sync::Arc;

use airlock_shared::admin::AdminEvent;
use axum::{Router, routing};

use super::error::ApiError;
use super::extract::AdminAuth;
use crate::app::AppState;
use crate::manage::ManageError;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/admin/interfaces",
            routing::get(interfaces::list).post(interfaces::create),
        )
        .route(
            "/admin/interfaces/{slug}",
            routing::get(interfaces::get)
                .patch(interfaces::update)
                .delete(interfaces::delete),
        )
        .route(
            "/admin/interfaces/{slug}/duplicate",
            routing::post(interfaces::duplicate),
        )
        .route(
            "/admin/interfaces/{slug}/preview",
            routing::post(interfaces::preview),
        )
        .route(
            "/admin/interfaces/{slug}/publish",
            routing::post(interfaces::publish),
        )
        .route(
            "/admin/interfaces/{slug}/unpublish",
            routing::post(interfaces::unpublish),
        )
        .route(
            "/admin/connectors",
            routing::get(connectors::list).post(connectors::create),
        )
        .route(
            "/admin/connectors/{id}",
            routing::delete(connectors::revoke),
        )
        .route("/admin/sessions", routing::get(sessions::list))
        // A static segment wins over `{id}` in axum's router, whatever the order here.
        .route("/admin/sessions/export", routing::get(sessions::export))
        .route(
            "/admin/sessions/{id}",
            routing::get(sessions::get).delete(sessions::delete),
        )
        .route("/admin/sessions/{id}/end", routing::post(sessions::end))
        .route("/admin/dead-letters", routing::get(dead_letters::list))
        .route(
            "/admin/dead-letters/{message_id}",
            routing::delete(dead_letters::discard),
        )
        .route(
            "/admin/dead-letters/{message_id}/retry",
            routing::post(dead_letters::retry),
        )
        .route("/admin/stats", routing::get(stats::get))
        .route("/admin/events", routing::get(events::stream))
        .route("/admin/audit", routing::get(audit_log::list))
}

impl From<ManageError> for ApiError {
    fn from(err: ManageError) -> Self {
        match err {
            ManageError::Invalid { field, message } => {
                ApiError::unprocessable("invalid_field", format!("{field}: {message}"))
            }
            ManageError::Store(err) => err.into(),
        }
    }
}

/// Records an admin action in the audit log and tells the live tails.
pub(super) async fn audit(
    state: &AppState,
    auth: &AdminAuth,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let entry = state
        .store
        .record_audit(
            &auth.actor,
            action,
            target,
            detail.as_ref(),
            state.relay.now(),
        )
        .await?;
    state.publish(AdminEvent::Audit { entry });
    Ok(())
}
