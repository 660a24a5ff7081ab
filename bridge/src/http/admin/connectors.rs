//! `/admin/connectors…`: connector keys, and whether each is online and busy.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_shared::admin::{Connector, CreateConnector, List};
use airlock_shared::error::ErrorEnvelope;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::app::{AGENT_ONLINE_WINDOW_MS, AppState};
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiJson, ConnectorIdPath};
use crate::manage;

/// Every connector with `online` (seen within the window the visitor API uses for
/// `agent_online`, or holding a lease) and `in_flight` (items leased to it now).
#[utoipa::path(get, path = "/admin/connectors", tag = "admin", summary = "Connector keys (never the keys themselves), online and in flight",
    security(("admin_key" = [])), responses((status = 200, body = List<Connector>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
) -> Result<Json<List<Connector>>, ApiError> {
    let now = state.relay.now();
    let rows = state.store.list_connectors().await?;
    let in_flight: HashMap<String, i64> = state
        .store
        .leases_in_flight(now)
        .await?
        .into_iter()
        .collect();
    let items = rows
        .iter()
        .map(|row| {
            let mut connector = row.to_admin(None);
            connector.in_flight = in_flight
                .get(&row.id)
                .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX));
            connector.online = row.revoked_at.is_none()
                && (connector.in_flight > 0
                    || row
                        .last_seen_at
                        .is_some_and(|seen| now - seen <= AGENT_ONLINE_WINDOW_MS));
            connector
        })
        .collect();
    Ok(Json(List { items }))
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
    ConnectorIdPath(id): ConnectorIdPath,
) -> Result<Json<Connector>, ApiError> {
    let row = state.store.revoke_connector(&id, state.relay.now()).await?;
    super::audit(&state, &auth, "connector.revoke", &id, None).await?;
    Ok(Json(row.to_admin(None)))
}
