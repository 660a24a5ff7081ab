//! The one place errors become HTTP responses: a status code and the JSON envelope
//! `{"error": {"code", "message"}}`. Server errors are logged with their cause chain and shown to
//! the caller without internals.

use airlock_shared::ErrorEnvelope;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::limits::Limited;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The underlying cause of a 5xx, for the log only.
    pub cause: Option<anyhow::Error>,
    /// Seconds for the `Retry-After` header (set by [`ApiError::rate_limited`]).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: "Something went wrong on the bridge. Try again; if it persists, tell the \
                      operator."
                .into(),
            cause: Some(cause.into()),
            retry_after: None,
        }
    }

    /// 429 `rate_limited` with `Retry-After: <secs>` (whole seconds, at least 1); the message
    /// says what was exceeded and when to retry.
    pub fn rate_limited(retry_after_secs: u64, reason: &str) -> Self {
        let secs = retry_after_secs.max(1);
        let unit = if secs == 1 { "second" } else { "seconds" };
        ApiError {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("{reason} Try again in {secs} {unit}."),
            )
        }
    }
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        ApiError::rate_limited(limited.retry_after_secs, &limited.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.cause {
                Some(cause) => tracing::error!(code = self.code, error = ?cause, "request failed"),
                None => tracing::error!(code = self.code, "request failed"),
            }
        }
        let mut response = (
            self.status,
            Json(ErrorEnvelope::new(self.code, self.message)),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::NotFound("session") => ApiError::not_found("session_not_found", message),
            StoreError::NotFound("interface") => {
                ApiError::not_found("interface_not_found", message)
            }
            StoreError::NotFound("lease") => ApiError::not_found("lease_not_found", message),
            StoreError::NotFound("connector") => {
                ApiError::not_found("connector_not_found", message)
            }
            StoreError::NotFound("dead letter") => {
                ApiError::not_found("dead_letter_not_found", message)
            }
            StoreError::NotFound(_) => ApiError::not_found("not_found", message),
            StoreError::SlugTaken(_) => ApiError::new(StatusCode::CONFLICT, "slug_taken", message),
            StoreError::ClientIdReused => {
                ApiError::new(StatusCode::CONFLICT, "client_id_reused", message)
            }
            StoreError::InvalidAttachment(_) => {
                ApiError::unprocessable("invalid_attachments", message)
            }
            StoreError::SessionClosed(_) => {
                ApiError::new(StatusCode::CONFLICT, "session_closed", message)
            }
            StoreError::LeaseSuperseded => {
                ApiError::new(StatusCode::CONFLICT, "lease_superseded", message)
            }
            StoreError::ItemFinished(_) => {
                ApiError::new(StatusCode::CONFLICT, "item_finished", message)
            }
            StoreError::NotDeadLettered(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_dead_lettered", message)
            }
            StoreError::UnsupportedUrl(_)
            | StoreError::InMemorySqlite
            | StoreError::Database(_)
            | StoreError::Sqlite(_)
            | StoreError::Writer(_)
            | StoreError::Migrate(_) => ApiError::internal(err),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid_json",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_field",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_body",
        };
        let message = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "Send the body as JSON with `Content-Type: application/json`.".to_string()
            }
            StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.".to_string(),
            _ => rejection.body_text(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

/// The fallback for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::not_found("route_not_found", "No such endpoint. See docs/api.md.")
}

/// The fallback for a known path called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This endpoint does not accept that method.",
    )
}

/// A handler that panicked: logged, and answered with the 500 envelope instead of a dropped
/// connection, so a client (and the fuzz tests) sees a server error for what it is.
pub fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(anyhow::anyhow!("a request handler panicked: {detail}")).into_response()
}
