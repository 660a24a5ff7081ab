//! `/admin/interfaces…`: create, read, publish and unpublish chat interfaces.

use std::sync::Arc;

use airlock_shared::admin::{CreateInterface, Interface, List};
use airlock_shared::error::ErrorEnvelope;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiJson, ApiPath};
use crate::manage;

#[utoipa::path(get, path = "/admin/interfaces", tag = "admin", summary = "All chat interfaces",
    security(("admin_key" = [])), responses((status = 200, body = List<Interface>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Json<List<Interface>>, ApiError> {
    let rows = state.store.list_interfaces().await?;
    Ok(Json(List {
        items: rows.iter().map(|r| r.to_admin()).collect(),
    }))
}

#[utoipa::path(post, path = "/admin/interfaces", tag = "admin", summary = "Create a chat interface (a draft unless `publish`)",
    request_body = CreateInterface, security(("admin_key" = [])),
    responses((status = 201, body = Interface), (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn create(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateInterface>,
) -> Result<(StatusCode, Json<Interface>), ApiError> {
    let row = manage::create_interface(&state.store, request, state.relay.now()).await?;
    super::audit(&state, &auth, "interface.create", &row.slug, None).await?;
    Ok((StatusCode::CREATED, Json(row.to_admin())))
}

#[utoipa::path(get, path = "/admin/interfaces/{slug}", tag = "admin", summary = "One interface, draft or published",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
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

#[utoipa::path(post, path = "/admin/interfaces/{slug}/publish", tag = "admin", summary = "Publish: visitors can use it",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn publish(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<Interface>, ApiError> {
    let answer = set_published(&state, &slug, true).await?;
    super::audit(&state, &auth, "interface.publish", &slug, None).await?;
    Ok(answer)
}

#[utoipa::path(post, path = "/admin/interfaces/{slug}/unpublish", tag = "admin", summary = "Back to draft: invisible to visitors",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn unpublish(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<Interface>, ApiError> {
    let answer = set_published(&state, &slug, false).await?;
    super::audit(&state, &auth, "interface.unpublish", &slug, None).await?;
    Ok(answer)
}

pub async fn set_published(
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
