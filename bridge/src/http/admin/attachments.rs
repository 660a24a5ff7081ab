//! `/admin/attachments/{id}`: a file a visitor attached, as a download for an admin reading the
//! transcript.

use std::sync::Arc;

use airlock_shared::error::ErrorEnvelope;
use axum::extract::State;
use axum::response::Response;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, AttachmentIdPath};

#[utoipa::path(get, path = "/admin/attachments/{id}", tag = "admin",
    summary = "Download a file a visitor attached (never rendered inline)",
    params(("id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, content_type = "application/octet-stream", description = "The file"),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn download(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    AttachmentIdPath(id): AttachmentIdPath,
) -> Result<Response, ApiError> {
    let file = state
        .store
        .attachment(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("attachment_not_found", "attachment not found"))?;
    crate::http::files::download(file)
}
