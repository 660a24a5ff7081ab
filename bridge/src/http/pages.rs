//! Pages and probes: the widget and the pages hosting it (`/c/{slug}`, `/embed/{slug}`), the
//! admin page (`/admin`, and `/admin/preview/{slug}` hosting the script widget for its live
//! preview), the landing page, `/healthz` and `/readyz`.

use std::sync::Arc;

use airlock_shared::error::ErrorEnvelope;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{ApiQuery, SlugPath};
use super::public::PreviewQuery;
use crate::app::AppState;
use crate::validate;

/// The widget, its styles, and the two pages that host it. Embedded at build time: the bridge
/// needs no files beside its binary.
const WIDGET_JS: &str = include_str!("../../../web/widget.js");
const WIDGET_CSS: &str = include_str!("../../../web/widget.css");
const CHAT_PAGE: &str = include_str!("../../../web/chat.html");
const EMBED_PAGE: &str = include_str!("../../../web/embed.html");

/// The admin page: a static shell, its script and styles. It holds no secret; everything it
/// shows comes from the admin API with the key the admin types in.
const ADMIN_PAGE: &str = include_str!("../../../web/admin.html");
const ADMIN_JS: &str = include_str!("../../../web/admin.js");
const ADMIN_CSS: &str = include_str!("../../../web/admin.css");
/// A stand-in site with the one-line script embed, framed by the admin page's preview.
const PREVIEW_PAGE: &str = include_str!("../../../web/preview.html");

/// The admin page may only talk to its own origin and frame its own previews; nobody may frame it.
const ADMIN_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; frame-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// The pages run only the bridge's own script and styles: no inline code, nothing third-party.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'none'";

/// The landing page is plain HTML: nothing to load, nothing to frame it.
const LANDING_CSP: &str = "default-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// How long browsers and CDNs may reuse the widget before asking again; short, so a bridge
/// upgrade reaches visitors within minutes.
const ASSET_CACHE: &str = "public, max-age=300";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(landing))
        .routes(routes!(widget_js))
        .routes(routes!(widget_css))
        .routes(routes!(chat_page))
        .routes(routes!(embed_page))
        .routes(routes!(admin_page))
        .routes(routes!(admin_js))
        .routes(routes!(admin_css))
        .routes(routes!(preview_page))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(get, path = "/", tag = "pages", summary = "A short landing page",
    responses((status = 200, content_type = "text/html", description = "HTML")))]
async fn landing() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, LANDING_CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(
            "<!doctype html><meta charset=utf-8><title>Airlock bridge</title>\
             <p>This is an Airlock bridge. Chat interfaces live at <code>/c/&lt;slug&gt;</code>, \
             for example <a href=\"/c/demo\">/c/demo</a>.</p>",
        ),
    )
        .into_response()
}

#[utoipa::path(get, path = "/widget.js", tag = "pages", summary = "The embeddable widget script",
    responses((status = 200, content_type = "application/javascript", description = "JavaScript")))]
async fn widget_js() -> Response {
    asset("application/javascript; charset=utf-8", WIDGET_JS)
}

#[utoipa::path(get, path = "/widget.css", tag = "pages", summary = "The widget's styles",
    responses((status = 200, content_type = "text/css", description = "CSS")))]
async fn widget_css() -> Response {
    asset("text/css; charset=utf-8", WIDGET_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, ASSET_CACHE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Fonts and styles loaded from a shadow root on another site's page.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// `GET /c/{slug}`: the chat as a page of its own, shareable as a link.
#[utoipa::path(get, path = "/c/{slug}", tag = "pages", summary = "The full-page hosted chat",
    params(("slug" = String, Path)),
    responses((status = 200, content_type = "text/html", description = "HTML"), (status = 404, body = ErrorEnvelope)))]
async fn chat_page(SlugPath(slug): SlugPath) -> Result<Response, ApiError> {
    // Framed only by the bridge itself (the admin page's preview).
    let mut response = host_page(CHAT_PAGE, &slug, "frame-ancestors 'self'")?;
    response.headers_mut().insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

/// `GET /embed/{slug}`: the chat filling an `<iframe>` on the sites the interface allows.
#[utoipa::path(get, path = "/embed/{slug}", tag = "pages", summary = "The chat as a page for an iframe on the interface's allowed origins",
    params(("slug" = String, Path)),
    responses((status = 200, content_type = "text/html", description = "HTML"), (status = 404, body = ErrorEnvelope)))]
async fn embed_page(
    State(state): State<Arc<AppState>>,
    SlugPath(slug): SlugPath,
) -> Result<Response, ApiError> {
    let allowed = state
        .store
        .allowed_origins_by_slug(&slug)
        .await?
        .unwrap_or_default();
    host_page(EMBED_PAGE, &slug, &frame_ancestors(&allowed))
}

/// Who may frame `/embed/{slug}`: the bridge itself (the admin's preview) and the interface's
/// allowed origins; anyone for `["*"]`. The origins were validated as plain
/// `scheme://host[:port]`, so they are safe in the header as they are.
fn frame_ancestors(allowed: &[String]) -> String {
    if allowed.len() == 1 && allowed[0] == "*" {
        return "frame-ancestors *".to_string();
    }
    let mut sources = vec!["'self'".to_string()];
    sources.extend(allowed.iter().cloned());
    format!("frame-ancestors {}", sources.join(" "))
}

/// `GET /admin`: the admin page. The key never travels in its URL; the page asks for it.
#[utoipa::path(get, path = "/admin", tag = "pages", summary = "The admin page (sign in with an admin key)",
    responses((status = 200, content_type = "text/html", description = "HTML")))]
async fn admin_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, ADMIN_CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        admin_asset_headers(),
        ADMIN_PAGE,
    )
        .into_response()
}

#[utoipa::path(get, path = "/admin.js", tag = "pages", summary = "The admin page's script",
    responses((status = 200, content_type = "application/javascript", description = "JavaScript")))]
async fn admin_js() -> Response {
    admin_asset("application/javascript; charset=utf-8", ADMIN_JS)
}

#[utoipa::path(get, path = "/admin.css", tag = "pages", summary = "The admin page's styles",
    responses((status = 200, content_type = "text/css", description = "CSS")))]
async fn admin_css() -> Response {
    admin_asset("text/css; charset=utf-8", ADMIN_CSS)
}

fn admin_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, content_type)],
        admin_asset_headers(),
        body,
    )
        .into_response()
}

/// Revalidated on every load, so an upgraded bridge never runs a stale admin script; sniffing
/// off; no referrer.
fn admin_asset_headers() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// `GET /admin/preview/{slug}?preview=<token>`: a stand-in site with the one-line script embed
/// of `slug`, framed by the admin page. The launcher widget reads no query string of its host
/// page, so the preview token is written into its `data-preview` attribute.
#[utoipa::path(get, path = "/admin/preview/{slug}", tag = "pages", summary = "A stand-in site with the script embed of an interface, for the admin's preview",
    params(("slug" = String, Path), PreviewQuery),
    responses((status = 200, content_type = "text/html", description = "HTML"), (status = 400, body = ErrorEnvelope)))]
async fn preview_page(
    SlugPath(slug): SlugPath,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Response, ApiError> {
    let token = query.preview.unwrap_or_default();
    if !preview_token_is_plain(&token) {
        return Err(ApiError::bad_request(
            "invalid_preview_token",
            "The preview token is malformed.",
        ));
    }
    let page = PREVIEW_PAGE.replace("{{preview}}", &token);
    let mut response = host_page(&page, &slug, "frame-ancestors 'self'")?;
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

/// A token made only of URL-safe characters can go into an HTML attribute as it is.
fn preview_token_is_plain(token: &str) -> bool {
    token.len() <= 1024
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// A page hosting the widget for `slug`. The page itself is static; the widget asks the API
/// whether the interface exists and says so clearly when it does not.
fn host_page(template: &str, slug: &str, framing: &str) -> Result<Response, ApiError> {
    // Only a well-formed slug reaches the page, so it is safe in HTML and attributes as is.
    if validate::slug(slug).is_err() {
        return Err(ApiError::not_found(
            "interface_not_found",
            "No chat interface has that name.",
        ));
    }
    let csp = format!("{PAGE_CSP}; {framing}");
    let csp = HeaderValue::from_str(&csp).map_err(ApiError::internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("strict-origin-when-cross-origin"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        template.replace("{{slug}}", slug),
    )
        .into_response())
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "probes", summary = "The process is up",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "probes", summary = "The database answers",
    responses((status = 200, description = "`{\"status\": \"ready\"}`"), (status = 503, body = ErrorEnvelope)))]
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
