//! The HTTP surface: one router for the visitor, connector and admin APIs and the pages.
//! Find a request's handler from its URL: `/api/v1/interfaces…` and `/api/v1/sessions…` are in
//! `public`, `/api/v1/connector…` in `connector`, `/api/v1/admin…` in `admin`, the PHP web chat
//! bridge's `/api/v1/?action=…` and `/api/v1/index.php?action=…` in `compat`, the rest in `pages`.

pub mod admin;
pub mod compat;
pub mod connector;
pub mod cors;
pub mod error;
pub mod extract;
mod files;
pub mod pages;
pub mod public;

use std::sync::Arc;

use std::sync::OnceLock;

use airlock_shared::API_PREFIX;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// Largest visitor request body (a 10,000-character message in UTF-8 is at most 40 KB).
const VISITOR_BODY_LIMIT: usize = 64 * 1024;
/// Largest connector or admin request body.
const TRUSTED_BODY_LIMIT: usize = 1024 * 1024;

/// Builds the bridge's router.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, spec) = documented_router(&state).split_for_parts();
    // The description is the same for every router built in this process; keep the first.
    OPENAPI_JSON.get_or_init(|| {
        spec.to_pretty_json()
            .expect("the OpenAPI document serialises")
    });
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // One `layer` call for the four: each call wraps every route in a boxed service of its
        // own, and a request held open (a long-poll) keeps one allocation per wrapping for as
        // long as it waits.
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                // Every answer, errors included: never sniffed into another type, and no full
                // URL (which may hold a preview token) sent to another site. Pages that need
                // stricter values set their own.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("strict-origin-when-cross-origin"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(CatchPanicLayer::custom(error::panicked)),
        )
        .with_state(state)
}

/// The span of one request: method and path only. The query string is left out because it can
/// carry secrets — the event stream's `?token=` session token, `?preview=` tokens.
fn request_span(request: &Request) -> Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Every route with its OpenAPI description: routes are only ever added through `routes!`, so the
/// served API and `/api/openapi.json` cannot drift apart.
pub fn documented_router(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    // Visitors call from the sites each interface allows (see `cors`).
    // The fallback is set here, inside the CORS layer: set only on the outer router it would
    // answer browsers' preflight `OPTIONS` requests with 405 before CORS could.
    let (visitor, visitor_spec) = public::routes().split_for_parts();
    let mut visitor = OpenApiRouter::from(
        visitor
            .method_not_allowed_fallback(error::method_not_allowed)
            // One `layer` call for both, as in `router`.
            .layer(
                ServiceBuilder::new()
                    .layer(axum::middleware::from_fn_with_state(
                        state.clone(),
                        cors::visitor_cors,
                    ))
                    .layer(DefaultBodyLimit::max(VISITOR_BODY_LIMIT)),
            ),
    );
    *visitor.get_openapi_mut() = visitor_spec;
    // Admin answers name sessions and visitors: no referrer leaves the admin page with them.
    let admin = admin::routes().layer(SetResponseHeaderLayer::overriding(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ));
    let trusted = connector::routes()
        .merge(admin)
        .layer(DefaultBodyLimit::max(TRUSTED_BODY_LIMIT));
    let api = visitor
        .merge(trusted)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(API_PREFIX, api)
        .routes(routes!(openapi_json))
        .merge(compat::routes())
        .merge(pages::routes())
}

/// The OpenAPI document, rendered once.
static OPENAPI_JSON: OnceLock<String> = OnceLock::new();

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airlock bridge",
        description = "Visitor, connector and admin APIs of an Airlock bridge. Errors are always \
            `{\"error\": {\"code\", \"message\"}}`. See docs/api.md for examples."
    ),
    modifiers(&BearerSchemes),
    tags(
        (name = "visitor", description = "Used by the widget: no key, a session token per session"),
        (name = "connector", description = "Used by connectors: `Authorization: Bearer <connector key>`"),
        (name = "admin", description = "Used by admins: `Authorization: Bearer <admin key>`"),
        (name = "pages", description = "The widget and the pages hosting it"),
        (name = "compat", description = "The PHP web chat bridge's API, for its old clients: `?action=messages|inbox|outbox|responses|sessions|session_messages`. See docs/migrating-from-the-php-bridge.md"),
        (name = "probes", description = "Health and readiness"),
    )
)]
struct ApiDoc;

/// The three bearer credentials: session tokens, connector keys, admin keys.
struct BearerSchemes;

impl utoipa::Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "session_token",
                "The session token from creating or resuming a session",
            ),
            ("connector_key", "A connector key (`alc_…`)"),
            ("admin_key", "An admin key (`ala_…`)"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "pages",
    summary = "This OpenAPI 3.1 description of every endpoint",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.get().map(String::as_str).unwrap_or("{}"),
    )
        .into_response()
}
