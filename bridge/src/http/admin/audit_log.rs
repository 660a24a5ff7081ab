//! `/admin/audit`: who did what, newest first.

use std::sync::Arc;

use airlock_shared::admin::AuditPage;
use airlock_shared::error::ErrorEnvelope;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiQuery};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `next_cursor` of the previous page
    cursor: Option<String>,
    /// Page size, 1–500 (default 50)
    limit: Option<u32>,
}

/// Audit cursors are `<at>.<id>` of the last entry of the previous page.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", summary = "Admin actions, newest first",
    params(AuditQuery), security(("admin_key" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let before = match query.cursor.as_deref() {
        Some(cursor) => Some(
            cursor
                .split_once('.')
                .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
                })?,
        ),
        None => None,
    };
    let items = state.store.list_audit(before, limit).await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| {
            items
                .last()
                .map(|e| format!("{}.{}", e.at.timestamp_millis(), e.id))
        })
        .flatten();
    Ok(Json(AuditPage { items, next_cursor }))
}
