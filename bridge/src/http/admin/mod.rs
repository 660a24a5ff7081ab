//! The admin API (admin key): interfaces, connector keys, sessions and transcripts, dead letters,
//! the audit log. One module per resource; every change an admin makes is recorded with
//! [`audit`].

mod audit_log;
mod connectors;
mod dead_letters;
mod interfaces;
mod sessions;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::AdminAuth;
use crate::app::AppState;
use crate::manage::ManageError;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(interfaces::list, interfaces::create))
        .routes(routes!(interfaces::get))
        .routes(routes!(interfaces::publish))
        .routes(routes!(interfaces::unpublish))
        .routes(routes!(connectors::list, connectors::create))
        .routes(routes!(connectors::revoke))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::get))
        .routes(routes!(dead_letters::list))
        .routes(routes!(audit_log::list))
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

/// Records an admin action in the audit log.
pub(super) async fn audit(
    state: &AppState,
    auth: &AdminAuth,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    state
        .store
        .record_audit(
            &auth.actor,
            action,
            target,
            detail.as_ref(),
            state.relay.now(),
        )
        .await?;
    Ok(())
}
