//! The admin API (admin key): interfaces, connector keys, sessions and transcripts, dead letters.

use std::sync::Arc;

use airlock_shared::admin::{
    Connector, CreateConnector, CreateInterface, DeadLetter, Interface, List, SessionPage,
    Transcript,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, Router, routing};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{AdminAuth, ApiJson, ApiPath, ApiQuery};
use crate::app::AppState;
use crate::manage::{self, ManageError};
use crate::store::SessionFilter;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/admin/interfaces",
            routing::get(list_interfaces).post(create_interface),
        )
        .route("/admin/interfaces/{slug}", routing::get(get_interface))
        .route("/admin/interfaces/{slug}/publish", routing::post(publish))
        .route(
            "/admin/interfaces/{slug}/unpublish",
            routing::post(unpublish),
        )
        .route(
            "/admin/connectors",
            routing::get(list_connectors).post(create_connector),
        )
        .route("/admin/connectors/{id}", routing::delete(revoke_connector))
        .route("/admin/sessions", routing::get(list_sessions))
        .route("/admin/sessions/{id}", routing::get(get_session))
        .route("/admin/dead-letters", routing::get(dead_letters))
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

async fn list_interfaces(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Json<List<Interface>>, ApiError> {
    let rows = state.store.list_interfaces().await?;
    Ok(Json(List {
        items: rows.iter().map(|r| r.to_admin()).collect(),
    }))
}

async fn create_interface(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateInterface>,
) -> Result<(StatusCode, Json<Interface>), ApiError> {
    let row = manage::create_interface(&state.store, request, state.relay.now()).await?;
    Ok((StatusCode::CREATED, Json(row.to_admin())))
}

async fn get_interface(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<Interface>, ApiError> {
    let row = state
        .store
        .interface_by_slug(&slug)
        .await?
        .ok_or_else(|| ApiError::not_found("interface_not_found", "interface not found"))?;
    Ok(Json(row.to_admin()))
}

async fn publish(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<Interface>, ApiError> {
    set_published(&state, &slug, true).await
}

async fn unpublish(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<Interface>, ApiError> {
    set_published(&state, &slug, false).await
}

async fn set_published(
    state: &AppState,
    slug: &str,
    published: bool,
) -> Result<Json<Interface>, ApiError> {
    let row = state
        .store
        .set_interface_published(slug, published, state.relay.now())
        .await?;
    Ok(Json(row.to_admin()))
}

async fn list_connectors(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Json<List<Connector>>, ApiError> {
    let rows = state.store.list_connectors().await?;
    Ok(Json(List {
        items: rows.iter().map(|r| r.to_admin(None)).collect(),
    }))
}

async fn create_connector(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateConnector>,
) -> Result<(StatusCode, Json<Connector>), ApiError> {
    let (row, key) = manage::create_connector_key(
        &state.store,
        &request.name,
        &request.interfaces,
        state.relay.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(row.to_admin(Some(key)))))
}

async fn revoke_connector(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Connector>, ApiError> {
    let row = state.store.revoke_connector(&id, state.relay.now()).await?;
    Ok(Json(row.to_admin(None)))
}

#[derive(Deserialize)]
struct SessionQuery {
    interface: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Page cursors are `<last_activity_at>.<id>` of the last row of the previous page.
fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    Some((at.parse().ok()?, id.to_string()))
}

async fn list_sessions(
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

async fn get_session(
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

#[derive(Deserialize)]
struct DeadLetterQuery {
    limit: Option<u32>,
}

async fn dead_letters(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<Json<List<DeadLetter>>, ApiError> {
    let items = state
        .store
        .dead_letters(query.limit.unwrap_or(50).clamp(1, 500))
        .await?;
    Ok(Json(List { items }))
}
