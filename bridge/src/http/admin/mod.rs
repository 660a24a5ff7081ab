//! The admin API (admin key): interfaces, connector keys, sessions and transcripts, dead letters,
//! stats, the audit log, a live tail of events, and forgetting a visitor. One module per
//! resource; every change an admin makes is recorded with [`audit`].

mod attachments;
mod audit_log;
mod connectors;
mod dead_letters;
mod events;
mod interfaces;
mod sessions;
mod stats;
mod visitors;

use std::sync::Arc;

use airlock_shared::admin::AdminEvent;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::AdminAuth;
use crate::app::AppState;
use crate::manage::ManageError;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(interfaces::list, interfaces::create))
        .routes(routes!(
            interfaces::get,
            interfaces::update,
            interfaces::delete
        ))
        .routes(routes!(interfaces::duplicate))
        .routes(routes!(interfaces::preview))
        .routes(routes!(interfaces::publish))
        .routes(routes!(interfaces::unpublish))
        .routes(routes!(connectors::list, connectors::create))
        .routes(routes!(connectors::revoke))
        .routes(routes!(sessions::list))
        // A static segment wins over `{id}` in axum's router, whatever the order here.
        .routes(routes!(sessions::export))
        .routes(routes!(sessions::get, sessions::delete))
        .routes(routes!(sessions::end))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::discard))
        .routes(routes!(dead_letters::retry))
        .routes(routes!(stats::get))
        .routes(routes!(events::stream))
        .routes(routes!(attachments::download))
        .routes(routes!(audit_log::list))
        .routes(routes!(visitors::forget))
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
