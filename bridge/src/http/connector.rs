//! The connector API: claim (a long-poll), extend, stream, reply, fail. Every call carries a
//! connector key; every lease call is fenced (a superseded lease gets 409).

use std::sync::Arc;
use std::time::Duration;

use airlock_shared::connector::{
    ClaimRequest, ClaimResponse, ConnectorIdentity, ExtendRequest, FailOutcome, FailRequest,
    LeaseExtended, ReplyRequest, ReplyState, StreamRequest,
};
use airlock_shared::error::ErrorEnvelope;
use airlock_shared::{MAX_CLAIM_WAIT_SECS, MAX_LEASE_SECS, MIN_LEASE_SECS, time_from_millis};
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{ApiJson, AttachmentIdPath, ConnectorAuth, LeaseIdPath};
use crate::app::AppState;
use crate::validate;

/// Most items one claim may lease.
const MAX_CLAIM_ITEMS: u32 = 100;
/// Most history messages one claim may ask for per item.
const MAX_HISTORY: u32 = 200;
/// Longest reply or delta, in characters.
const MAX_REPLY_CHARS: usize = 100_000;
/// Longest failure description kept.
const MAX_ERROR_CHARS: usize = 2_000;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(claim))
        .routes(routes!(attachment))
        .routes(routes!(extend))
        .routes(routes!(stream))
        .routes(routes!(reply))
        .routes(routes!(fail))
}

fn lease_ms(lease_secs: u64) -> Result<i64, ApiError> {
    if !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&lease_secs) {
        return Err(ApiError::unprocessable(
            "invalid_lease_secs",
            format!("lease_secs must be between {MIN_LEASE_SECS} and {MAX_LEASE_SECS}"),
        ));
    }
    Ok(lease_secs as i64 * 1_000)
}

/// Who the key belongs to: lets `airlock-connector check` verify a key without claiming.
#[utoipa::path(get, path = "/connector/me", tag = "connector",
    summary = "Which connector this key is and which interfaces it serves",
    security(("connector_key" = [])),
    responses((status = 200, body = ConnectorIdentity), (status = 401, body = ErrorEnvelope)))]
async fn me(ConnectorAuth(connector): ConnectorAuth) -> Json<ConnectorIdentity> {
    Json(ConnectorIdentity {
        id: connector.id,
        name: connector.name,
        all_interfaces: connector.all_interfaces,
        interfaces: connector.interfaces,
    })
}

#[utoipa::path(post, path = "/connector/claim", tag = "connector",
    summary = "Lease the next visitor messages; long-polls up to `wait_secs`",
    request_body = ClaimRequest, security(("connector_key" = [])),
    responses((status = 200, body = ClaimResponse), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
async fn claim(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    if !(1..=MAX_CLAIM_ITEMS).contains(&request.max) {
        return Err(ApiError::unprocessable(
            "invalid_max",
            format!("max must be between 1 and {MAX_CLAIM_ITEMS}"),
        ));
    }
    let lease_ms = lease_ms(request.lease_secs)?;
    let wait = Duration::from_secs(request.wait.min(MAX_CLAIM_WAIT_SECS));
    let items = state
        .relay
        .claim(
            &connector,
            request.max,
            wait,
            lease_ms,
            request.history.min(MAX_HISTORY),
            request.typing,
        )
        .await?;
    Ok(Json(ClaimResponse { items }))
}

#[utoipa::path(post, path = "/connector/leases/{lease_id}/extend", tag = "connector",
    summary = "Keep a lease while the agent works",
    params(("lease_id" = String, Path)), request_body = ExtendRequest, security(("connector_key" = [])),
    responses((status = 200, body = LeaseExtended), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn extend(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    LeaseIdPath(lease_id): LeaseIdPath,
    ApiJson(request): ApiJson<ExtendRequest>,
) -> Result<Json<LeaseExtended>, ApiError> {
    let lease_ms = lease_ms(request.lease_secs)?;
    let until = state.relay.extend(&lease_id, &connector, lease_ms).await?;
    Ok(Json(LeaseExtended {
        lease_id,
        lease_expires_at: time_from_millis(until),
    }))
}

#[utoipa::path(post, path = "/connector/leases/{lease_id}/stream", tag = "connector",
    summary = "Append reply text as it is generated (visible to the visitor at once)",
    params(("lease_id" = String, Path)), request_body = StreamRequest, security(("connector_key" = [])),
    responses((status = 200, body = ReplyState), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn stream(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    LeaseIdPath(lease_id): LeaseIdPath,
    ApiJson(request): ApiJson<StreamRequest>,
) -> Result<Json<ReplyState>, ApiError> {
    let delta = match (&request.text_delta, request.typing) {
        (Some(delta), _) => delta.as_str(),
        (None, Some(true)) => "",
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "send `text_delta` (a piece of the reply) or `typing: true`",
            ));
        }
    };
    if delta.chars().count() > MAX_REPLY_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_text_delta",
            format!("text_delta is longer than {MAX_REPLY_CHARS} characters"),
        ));
    }
    let message = state.relay.stream(&lease_id, &connector, delta).await?;
    Ok(Json(ReplyState { message }))
}

#[utoipa::path(post, path = "/connector/leases/{lease_id}/reply", tag = "connector",
    summary = "Finish the reply (idempotent)",
    params(("lease_id" = String, Path)), request_body = ReplyRequest, security(("connector_key" = [])),
    responses((status = 200, body = ReplyState), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn reply(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    LeaseIdPath(lease_id): LeaseIdPath,
    ApiJson(request): ApiJson<ReplyRequest>,
) -> Result<Json<ReplyState>, ApiError> {
    validate::text("text", &request.text, MAX_REPLY_CHARS)
        .map_err(|m| ApiError::unprocessable("invalid_text", m))?;
    let message = state
        .relay
        .reply(&lease_id, &connector, &request.text)
        .await?;
    Ok(Json(ReplyState { message }))
}

#[utoipa::path(post, path = "/connector/leases/{lease_id}/fail", tag = "connector",
    summary = "Give the item back: retried with back-off, or dead-lettered",
    params(("lease_id" = String, Path)), request_body = FailRequest, security(("connector_key" = [])),
    responses((status = 200, body = FailOutcome), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn fail(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    LeaseIdPath(lease_id): LeaseIdPath,
    ApiJson(request): ApiJson<FailRequest>,
) -> Result<Json<FailOutcome>, ApiError> {
    let error: String = request.error.chars().take(MAX_ERROR_CHARS).collect();
    let outcome = state
        .relay
        .fail(&lease_id, &connector, &error, request.retry)
        .await?;
    Ok(Json(outcome))
}

/// `GET /connector/attachments/{id}`: the bytes of a file a visitor attached, for a connector
/// that may serve its interface. Served as a download, never to be rendered.
#[utoipa::path(get, path = "/connector/attachments/{id}", tag = "connector",
    summary = "The bytes of a file a visitor attached (as a download)",
    params(("id" = String, Path)), security(("connector_key" = [])),
    responses((status = 200, content_type = "application/octet-stream", description = "The file"),
        (status = 404, body = ErrorEnvelope)))]
async fn attachment(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    AttachmentIdPath(id): AttachmentIdPath,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("attachment_not_found", "attachment not found");
    let file = state.store.attachment(&id).await?.ok_or_else(not_found)?;
    if !state
        .store
        .connector_may_serve(&connector, &file.interface_id)
        .await?
    {
        return Err(not_found());
    }
    super::files::download(file)
}
