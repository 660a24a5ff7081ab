//! Request extractors whose failures use the JSON error envelope, and the three kinds of caller
//! authentication: visitor session token, connector key, admin key.

use std::sync::Arc;

use airlock_shared::admin::AdminEvent;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::{ConnectorRow, SessionRow};
use crate::tokens::{hash_secret, secret_matches};

/// `axum::Json` with enveloped rejections (400 bad JSON, 422 wrong fields, 413, 415).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with enveloped rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with enveloped rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The session a visitor's token opens, which must be `session_id`. Another session's token gets
/// the same 404 as a missing session, so ids cannot be probed.
///
/// A session idle for longer than its interface's `session_timeout_mins` is expired here (the
/// status is written) and refused with 401 `session_expired`, as is one expired before: the
/// widget then starts a new session.
pub async fn visitor_session(
    state: &AppState,
    headers: &HeaderMap,
    session_id: &str,
) -> Result<SessionRow, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_token",
            "Send the session token as `Authorization: Bearer <session_token>`.",
        )
    })?;
    let session = state
        .store
        .session_for_token(&hash_secret(token))
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_token", "The session token is not valid.")
        })?;
    if session.id != session_id {
        return Err(ApiError::not_found(
            "session_not_found",
            "session not found",
        ));
    }
    let expired = || {
        ApiError::unauthorized(
            "session_expired",
            "This conversation expired after a while without messages; start a new session.",
        )
    };
    match session.status.as_str() {
        "expired" => return Err(expired()),
        "active" => {
            let timeout_ms = match state.store.interface_by_id(&session.interface_id).await? {
                Some(interface) => interface.config.session_timeout_ms(),
                None => {
                    return Err(ApiError::not_found(
                        "session_not_found",
                        "session not found",
                    ));
                }
            };
            let now = state.relay.now();
            let idle_since = now - timeout_ms;
            if session.last_activity_at < idle_since {
                if state
                    .store
                    .expire_idle_session(&session.id, idle_since)
                    .await?
                {
                    state.publish(AdminEvent::Session {
                        action: "expired".into(),
                        session_id: session.id.clone(),
                        interface: Some(session.interface_slug.clone()),
                        at: airlock_shared::time_from_millis(now),
                    });
                }
                return Err(expired());
            }
        }
        _ => {}
    }
    Ok(session)
}

/// A request authenticated with a live connector key, within the key's rate limit.
pub struct ConnectorAuth(pub ConnectorRow);

impl FromRequestParts<Arc<AppState>> for ConnectorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_key",
                "Send the connector key as `Authorization: Bearer <key>`.",
            )
        })?;
        let connector = state
            .store
            .connector_by_key_hash(&hash_secret(key))
            .await?
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_key",
                    "The connector key is not valid or was revoked.",
                )
            })?;
        state.limits.connector_call(&connector.id)?;
        Ok(ConnectorAuth(connector))
    }
}

/// A request authenticated with an admin key (the configured one or a stored one), within the
/// key's rate limit; `actor` names the key for the audit log.
pub struct AdminAuth {
    pub actor: String,
}

impl FromRequestParts<Arc<AppState>> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_key",
                "Send the admin key as `Authorization: Bearer <key>`.",
            )
        })?;
        let actor = if state
            .configured_admin_key_hash
            .as_deref()
            .is_some_and(|hash| secret_matches(key, hash))
        {
            "configured admin key".to_string()
        } else {
            match state.store.admin_key_by_hash(&hash_secret(key)).await? {
                Some((id, name)) => format!("admin_key:{id} ({name})"),
                None => {
                    return Err(ApiError::unauthorized(
                        "invalid_key",
                        "The admin key is not valid.",
                    ));
                }
            }
        };
        state.limits.admin_call(&actor)?;
        Ok(AdminAuth { actor })
    }
}
