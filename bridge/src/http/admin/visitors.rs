//! `/admin/visitors…`: deleting everything the bridge holds about one visitor (a data-subject
//! request), whichever interfaces they used.

use std::sync::Arc;

use airlock_shared::admin::{DataRemoved, ForgetVisitor};
use airlock_shared::error::ErrorEnvelope;
use axum::Json;
use axum::extract::State;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiJson};
use crate::manage;

/// `POST /admin/visitors/forget`: every session of the visitor, with their messages and files,
/// is deleted; the counts say what went (all zero when nothing was left). Audited.
#[utoipa::path(post, path = "/admin/visitors/forget", tag = "admin",
    summary = "Delete everything of one visitor: their sessions, messages and files",
    request_body = ForgetVisitor, security(("admin_key" = [])),
    responses((status = 200, body = DataRemoved), (status = 401, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub async fn forget(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<ForgetVisitor>,
) -> Result<Json<DataRemoved>, ApiError> {
    let (visitor, removed) = manage::forget_visitor(&state.store, request).await?;
    let removed = DataRemoved::from(removed);
    super::audit(
        &state,
        &auth,
        "visitor.forget",
        &visitor.describe(),
        Some(serde_json::json!(removed)),
    )
    .await?;
    Ok(Json(removed))
}
