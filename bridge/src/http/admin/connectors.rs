//! `/admin/connectors…`: connector keys.

use std::sync::Arc;

use airlock_shared::admin::{Connector, CreateConnector, List};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use airlock_shared::error::ErrorEnvelope;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiJson, ApiPath};
use crate::manage;

#[utoipa::path(get, path = "/admin/connectors", tag = "admin", summary = "Connector keys (never the keys themselves)",
    security(("admin_key" = [])), responses((status = 200, body = List<Connector>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Json<List<Connector>>, ApiError> {
    let rows = state.store.list_connectors().await?;
    Ok(Json(List {
        items: rows.iter().map(|r| r.to_admin(None)).collect(),
    }))
}

#[utoipa::path(post, path = "/admin/connectors", tag = "admin", summary = "Create a connector key; the key is in this answer only",
    request_body = CreateConnector, security(("admin_key" = [])),
    responses((status = 201, body = Connector), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn create(
    auth: AdminAuth,
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
    let detail = serde_json::json!({ "name": row.name });
    super::audit(&state, &auth, "connector.create", &row.id, Some(detail)).await?;
    Ok((StatusCode::CREATED, Json(row.to_admin(Some(key)))))
}

#[utoipa::path(delete, path = "/admin/connectors/{id}", tag = "admin", summary = "Revoke a connector key",
    params(("id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Connector), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Connector>, ApiError> {
    let row = state.store.revoke_connector(&id, state.relay.now()).await?;
    super::audit(&state, &auth, "connector.revoke", &id, None).await?;
    Ok(Json(row.to_admin(None)))
}
