//! The HTTP surface: one router for the visitor, connector and admin APIs and the pages.
//! Find a request's handler from its URL: `/api/v1/interfaces…` and `/api/v1/sessions…` are in
//! `public`, `/api/v1/connector…` in `connector`, `/api/v1/admin…` in `admin`, the rest in `pages`.

pub mod admin;
pub mod connector;
pub mod error;
pub mod extract;
pub mod pages;
pub mod public;

use std::sync::Arc;

use airlock_shared::API_PREFIX;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

/// Largest visitor request body (a 10,000-character message in UTF-8 is at most 40 KB).
const VISITOR_BODY_LIMIT: usize = 64 * 1024;
/// Largest connector or admin request body.
const TRUSTED_BODY_LIMIT: usize = 1024 * 1024;

/// Builds the bridge's router.
pub fn router(state: Arc<AppState>) -> Router {
    // Visitors call from any site that embeds the chat; they authenticate with bearer tokens,
    // never cookies, so answering CORS for every origin exposes nothing.
    // The fallback is set here, inside the CORS layer: set only on the outer router it would
    // answer browsers' preflight `OPTIONS` requests with 405 before CORS could.
    let visitor = public::routes()
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(VISITOR_BODY_LIMIT))
        // Browsers may reuse a preflight for two hours instead of repeating it before most calls.
        .layer(CorsLayer::permissive().max_age(std::time::Duration::from_secs(7200)));
    let trusted = connector::routes()
        .merge(admin::routes())
        .layer(DefaultBodyLimit::max(TRUSTED_BODY_LIMIT));
    let api = visitor
        .merge(trusted)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .nest(API_PREFIX, api)
        .merge(pages::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
