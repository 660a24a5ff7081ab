//! The connector API: claim (a long-poll), extend, stream, reply, fail. Every call carries a
//! connector key; every lease call is fenced (a superseded lease gets 409).

use std::sync::Arc;
use std::time::Duration;

use airlock_shared::connector::{
    ClaimRequest, ClaimResponse, ConnectorIdentity, ExtendRequest, FailOutcome, FailRequest,
    LeaseExtended, ReplyRequest, ReplyState, StreamRequest,
};
use airlock_shared::{MAX_CLAIM_WAIT_SECS, MAX_LEASE_SECS, MIN_LEASE_SECS, time_from_millis};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ConnectorAuth};
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

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/connector/me", routing::get(me))
        .route("/connector/claim", routing::post(claim))
        .route("/connector/attachments/{id}", routing::get(attachment))
        .route("/connector/leases/{lease_id}/extend", routing::post(extend))
        .route("/connector/leases/{lease_id}/stream", routing::post(stream))
        .route("/connector/leases/{lease_id}/reply", routing::post(reply))
        .route("/connector/leases/{lease_id}/fail", routing::post(fail))
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
async fn me(ConnectorAuth(connector): ConnectorAuth) -> Json<ConnectorIdentity> {
    Json(ConnectorIdentity {
        id: connector.id,
        name: connector.name,
        all_interfaces: connector.all_interfaces,
        interfaces: connector.interfaces,
    })
}

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
        )
        .await?;
    Ok(Json(ClaimResponse { items }))
}

async fn extend(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    ApiPath(lease_id): ApiPath<String>,
    ApiJson(request): ApiJson<ExtendRequest>,
) -> Result<Json<LeaseExtended>, ApiError> {
    let lease_ms = lease_ms(request.lease_secs)?;
    let until = state.relay.extend(&lease_id, &connector, lease_ms).await?;
    Ok(Json(LeaseExtended {
        lease_id,
        lease_expires_at: time_from_millis(until),
    }))
}

async fn stream(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    ApiPath(lease_id): ApiPath<String>,
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

async fn reply(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    ApiPath(lease_id): ApiPath<String>,
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

async fn fail(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    ApiPath(lease_id): ApiPath<String>,
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
async fn attachment(
    State(state): State<Arc<AppState>>,
    ConnectorAuth(connector): ConnectorAuth,
    ApiPath(id): ApiPath<String>,
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
    let content_type =
        HeaderValue::from_str(&file.reference.content_type).map_err(ApiError::internal)?;
    let disposition = HeaderValue::from_str(&content_disposition(&file.reference.filename))
        .map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        file.data,
    )
        .into_response())
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback and the exact name (RFC 6266).
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
