//! Pages and probes: the hosted chat page, the landing page, `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router, routing};
use serde_json::json;

use super::error::ApiError;
use super::extract::ApiPath;
use crate::app::AppState;
use crate::validate;

/// The hosted chat page; a plain page over the visitor API until the full widget lands.
const CHAT_PAGE: &str = include_str!("../../../web/chat.html");

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", routing::get(landing))
        .route("/c/{slug}", routing::get(chat_page))
        .route("/healthz", routing::get(healthz))
        .route("/readyz", routing::get(readyz))
}

async fn landing() -> Html<&'static str> {
    Html(
        "<!doctype html><meta charset=utf-8><title>Airlock bridge</title>\
         <p>This is an Airlock bridge. Chat interfaces live at <code>/c/&lt;slug&gt;</code>, \
         for example <a href=\"/c/demo\">/c/demo</a>.</p>",
    )
}

async fn chat_page(ApiPath(slug): ApiPath<String>) -> Result<Response, ApiError> {
    // The page itself is static; the slug only has to be well-formed. The page asks the API
    // whether the interface exists and shows a clear message when it does not.
    if validate::slug(&slug).is_err() {
        return Err(ApiError::not_found(
            "interface_not_found",
            "No chat interface has that name.",
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        CHAT_PAGE,
    )
        .into_response())
}

/// The process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the database answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed: database unreachable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "The database does not answer.",
            )
            .into_response()
        }
    }
}
