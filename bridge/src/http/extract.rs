//! Request extractors whose failures use the JSON error envelope, and the three kinds of caller
//! authentication: visitor session token, connector key, admin key.

use std::sync::Arc;

use airlock_shared::admin::AdminEvent;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::{ConnectorRow, InterfaceRow, SessionRow};
use crate::tokens::{hash_secret, secret_matches};
use crate::validate;

/// A JSON body, with every refusal in the envelope: 415 without a JSON `Content-Type`, 413 over
/// the route's body limit, 400 for a body that is not UTF-8 or not JSON, 422 for a wrong field
/// (the message names it, e.g. `text: invalid type…`), for a body that is not an object, and for
/// a NUL character anywhere, which no text column can store (PostgreSQL refuses it outright).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "The request body is too large.",
                    ),
                    status => ApiError::new(status, "invalid_body", rejection.body_text()),
                })?;
        if let Err(err) = std::str::from_utf8(&body) {
            return Err(ApiError::bad_request(
                "invalid_json",
                format!(
                    "The body is not valid UTF-8 (at byte {}); send JSON encoded as UTF-8.",
                    err.valid_up_to()
                ),
            ));
        }
        if has_escaped_nul(&body)
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(field) = nul_path(&value, "")
        {
            let field = if field.is_empty() { "the body" } else { &field };
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("{field}: contains a NUL character (\\u0000), which is not allowed"),
            ));
        }
        // serde reads a struct from an array too, its fields in order: `[1, 60]` would be a claim
        // of one item waiting a minute. Every body of this API is an object.
        if body.trim_ascii_start().starts_with(b"[")
            && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok()
        {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "the body: invalid type: array, expected a JSON object",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&body)?;
        Ok(ApiJson(value))
    }
}

/// `application/json`, or any `application/…+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Whether a JSON text holds the escape `\u0000` (the only way JSON can carry a NUL). A cheap
/// scan; the exact field is found only when it says yes.
fn has_escaped_nul(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            if body[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The path (`text`, `suggested_prompts[0].text`) of the first key or string holding a NUL.
fn nul_path(value: &serde_json::Value, at: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| at.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{at}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if key.contains('\0') {
                Some(path)
            } else {
                nul_path(item, &path)
            }
        }),
        _ => None,
    }
}

/// `axum::extract::Query` with enveloped rejections; a NUL character (`%00`) is refused before
/// the value can reach a query.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        if query.to_ascii_lowercase().contains("%00") {
            return Err(ApiError::bad_request(
                "invalid_query",
                "The query string contains a NUL character (%00), which is not allowed.",
            ));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// `axum::extract::Path` with enveloped rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A `{slug}` path segment shaped like a slug, checked before any database work: anything else
/// gets the same 404 as an interface that does not exist (never a 400 or a database error).
pub struct SlugPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SlugPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(slug)) if validate::slug_is_well_formed(&slug) => {
                Ok(SlugPath(slug))
            }
            _ => Err(ApiError::not_found(
                "interface_not_found",
                "No chat interface has that name.",
            )),
        }
    }
}

/// Path extractors for ids, one per kind: the id must have its kind's prefix and shape (see
/// [`validate::id_is_well_formed`]) before any database work; a malformed one gets the same 404
/// as an unknown one.
macro_rules! path_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $code:literal, $message:literal) => {
        $(#[$doc])*
        pub struct $name(pub String);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                match axum::extract::Path::<String>::from_request_parts(parts, state).await {
                    Ok(axum::extract::Path(id)) if validate::id_is_well_formed($prefix, &id) => {
                        Ok($name(id))
                    }
                    _ => Err(ApiError::not_found($code, $message)),
                }
            }
        }
    };
}

path_id!(
    /// A session id (`ses_…`).
    SessionIdPath, "ses", "session_not_found", "session not found"
);
path_id!(
    /// A lease id (`lse_…`).
    LeaseIdPath, "lse", "lease_not_found", "lease not found"
);
path_id!(
    /// A message id (`msg_…`) naming a dead letter.
    DeadLetterIdPath, "msg", "dead_letter_not_found", "dead letter not found"
);
path_id!(
    /// A connector key's id (`con_…`).
    ConnectorIdPath, "con", "connector_not_found", "connector not found"
);
path_id!(
    /// An attachment id (`att_…`).
    AttachmentIdPath, "att", "attachment_not_found", "attachment not found"
);

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

/// A visitor's session and its interface (published or not: a session outlives an unpublish),
/// read once per request for the handler's checks.
pub struct VisitorSession {
    pub session: SessionRow,
    pub interface: InterfaceRow,
}

/// The session a visitor's token opens, which must be `session_id`, with its interface. Another
/// session's token gets the same 404 as a missing session, so ids cannot be probed.
///
/// A session idle for longer than its interface's `session_timeout_mins` is expired here (the
/// status is written) and refused with 401 `session_expired`, as is one expired before: the
/// widget then starts a new session.
pub async fn visitor_session(
    state: &AppState,
    headers: &HeaderMap,
    session_id: &str,
) -> Result<VisitorSession, ApiError> {
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
    if session.status == "expired" {
        return Err(expired());
    }
    let interface = state
        .store
        .interface_by_id(&session.interface_id)
        .await?
        .ok_or_else(|| ApiError::not_found("session_not_found", "session not found"))?;
    let now = state.relay.now();
    let idle_since = now - interface.config.session_timeout_ms();
    if session.status == "active" && session.last_activity_at < idle_since {
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
    Ok(VisitorSession { session, interface })
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
