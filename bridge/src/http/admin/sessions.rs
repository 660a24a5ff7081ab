//! `/admin/sessions…`: the session list and transcripts.

use std::sync::Arc;

use airlock_shared::admin::{SessionPage, Transcript};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use airlock_shared::error::ErrorEnvelope;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiPath, ApiQuery};
use crate::store::SessionFilter;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only sessions of this interface (slug)
    interface: Option<String>,
    /// `active`, `ended` or `expired`
    status: Option<String>,
    /// `next_cursor` of the previous page
    cursor: Option<String>,
    /// Page size, 1–200 (default 50)
    limit: Option<u32>,
}

/// Page cursors are `<last_activity_at>.<id>` of the last row of the previous page.
fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    Some((at.parse().ok()?, id.to_string()))
}

#[utoipa::path(get, path = "/admin/sessions", tag = "admin", summary = "Sessions, newest activity first, a page at a time",
    params(SessionQuery), security(("admin_key" = [])),
    responses((status = 200, body = SessionPage), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let before = match query.cursor.as_deref() {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
        })?),
        None => None,
    };
    if let Some(status) = &query.status
        && !["active", "ended", "expired"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_status",
            "status must be active, ended or expired",
        ));
    }
    let rows = state
        .store
        .list_sessions(&SessionFilter {
            interface_slug: query.interface,
            status: query.status,
            before,
            limit,
        })
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.last_activity_at, r.id))
        })
        .flatten();
    Ok(Json(SessionPage {
        sessions: rows.iter().map(|r| r.to_summary()).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/admin/sessions/{id}", tag = "admin", summary = "One session with its transcript",
    params(("id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Transcript), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Transcript>, ApiError> {
    let session = state
        .store
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("session_not_found", "session not found"))?;
    let messages = state.store.transcript(&id).await?;
    Ok(Json(Transcript {
        session: session.to_summary(),
        messages,
    }))
}
