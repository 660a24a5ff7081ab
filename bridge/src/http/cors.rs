//! Which web pages may call the visitor API: CORS per interface, from its `allowed_origins`.
//!
//! A request without an `Origin` header (a server, curl) is not a browser's cross-site call and
//! passes. Otherwise the interface is found from the path — `/interfaces/{slug}…` by slug,
//! `/sessions/{id}…` through the session — and its list decides:
//!
//! - empty: only the bridge's own origin (the hosted page `/c/{slug}` and the `/embed/{slug}`
//!   iframe), recognised by the `Host` the request came to or by `AIRLOCK_PUBLIC_URL`;
//! - `["*"]`: any origin (answered with `Access-Control-Allow-Origin: *`);
//! - otherwise those exact origins, and the bridge's own.
//!
//! An allowed origin is reflected (with `Vary: Origin`), and preflights are answered here with
//! 204. A refused origin gets a preflight without any CORS header, so the browser never sends
//! the call; a call sent anyway (a simple request needs no preflight) is refused with 403
//! `origin_not_allowed` before its handler runs, so nothing is stored. Unknown interfaces and
//! sessions get no CORS headers; their handler answers 404 as usual.

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::validate;

/// Methods the visitor API answers.
const ALLOW_METHODS: &str = "GET, POST";
/// Request headers the widget sends: its session token, JSON, an event stream's resume point and
/// a draft's preview token.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID, X-Airlock-Preview";
/// Browsers may reuse a preflight for two hours instead of repeating it before most calls.
const MAX_AGE_SECS: &str = "7200";

/// What an interface's list says about one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// `["*"]`: any page.
    AnyOrigin,
    /// This origin in particular.
    ThisOrigin,
    Refused,
}

/// The middleware on the visitor routes (see the module documentation).
pub async fn visitor_cors(
    State(state): State<Arc<AppState>>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origins = match params {
        // Boxed: this middleware's future lives as long as the request it wraps, which may be
        // held open for long.
        Ok(params) => Box::pin(interface_origins(&state, &params)).await,
        Err(_) => Ok(None),
    };
    let verdict = match origins {
        Ok(Some(list)) => Some(verdict(
            origin.to_str().unwrap_or(""),
            &list,
            request.headers(),
            state.public_url.as_deref(),
        )),
        Ok(None) => None,
        Err(err) => return err.into_response(),
    };
    match (verdict, preflight) {
        (Some(Verdict::AnyOrigin | Verdict::ThisOrigin), true) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            allow(response.headers_mut(), &origin, verdict);
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECS),
            );
            response
        }
        (Some(Verdict::AnyOrigin | Verdict::ThisOrigin), false) => {
            let mut response = next.run(request).await;
            allow(response.headers_mut(), &origin, verdict);
            response
        }
        // The browser blocks the call it asked about: no CORS header at all.
        (Some(Verdict::Refused) | None, true) => StatusCode::NO_CONTENT.into_response(),
        (Some(Verdict::Refused), false) => {
            let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let mut response = ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "Pages on {shown} may not use this chat. To embed it there, add {shown} to \
                     the interface's allowed origins (allowed_origins)."
                ),
            )
            .into_response();
            // Readable by the refused page, so the widget can say why in the console instead of
            // retrying a call that looks like a network failure. It carries no data.
            allow(response.headers_mut(), &origin, Some(Verdict::ThisOrigin));
            response
        }
        (None, false) => next.run(request).await,
    }
}

/// The allowed origins of the interface the path names, `None` when it names none that exists.
/// Malformed slugs and ids are not looked up.
async fn interface_origins(
    state: &AppState,
    params: &RawPathParams,
) -> Result<Option<Vec<String>>, ApiError> {
    for (name, value) in params.iter() {
        match name {
            "slug" if validate::slug_is_well_formed(value) => {
                return Ok(state.store.allowed_origins_by_slug(value).await?);
            }
            "id" if validate::id_is_well_formed("ses", value) => {
                return Ok(state.store.allowed_origins_by_session(value).await?);
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Whether `origin` may call an interface whose list is `allowed`.
fn verdict(
    origin: &str,
    allowed: &[String],
    headers: &HeaderMap,
    public_url: Option<&str>,
) -> Verdict {
    if allowed.len() == 1 && allowed[0] == "*" {
        Verdict::AnyOrigin
    } else if is_own_origin(origin, headers, public_url)
        || allowed.iter().any(|o| o.eq_ignore_ascii_case(origin))
    {
        Verdict::ThisOrigin
    } else {
        Verdict::Refused
    }
}

/// Whether `origin` is the bridge's own: its `host[:port]` is the `Host` the request came to, or
/// it is the origin of `AIRLOCK_PUBLIC_URL` (behind a proxy that rewrites `Host`).
fn is_own_origin(origin: &str, headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let same_host = origin
        .split_once("://")
        .zip(headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host));
    same_host
        || public_url
            .and_then(|url| url::Url::parse(url).ok())
            .is_some_and(|url| {
                url.origin()
                    .ascii_serialization()
                    .eq_ignore_ascii_case(origin)
            })
}

/// The headers that let the page read the answer.
fn allow(headers: &mut HeaderMap, origin: &HeaderValue, verdict: Option<Verdict>) {
    let value = if verdict == Some(Verdict::AnyOrigin) {
        HeaderValue::from_static("*")
    } else {
        origin.clone()
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn an_empty_list_allows_only_the_bridges_own_origin() {
        let bridge = host("chat.example:8080");
        assert_eq!(
            verdict("http://chat.example:8080", &[], &bridge, None),
            Verdict::ThisOrigin
        );
        assert_eq!(
            verdict("https://shop.example", &[], &bridge, None),
            Verdict::Refused
        );
        assert_eq!(verdict("null", &[], &bridge, None), Verdict::Refused);
        // Behind a proxy that rewrites Host, the public URL says who the bridge is.
        let proxied = host("127.0.0.1:8080");
        assert_eq!(
            verdict(
                "https://chat.example",
                &[],
                &proxied,
                Some("https://chat.example/")
            ),
            Verdict::ThisOrigin
        );
    }

    #[test]
    fn a_list_allows_exactly_its_origins_and_a_star_any() {
        let bridge = host("chat.example");
        let shops = list(&["https://shop.example", "http://localhost:3000"]);
        assert_eq!(
            verdict("https://shop.example", &shops, &bridge, None),
            Verdict::ThisOrigin
        );
        assert_eq!(
            verdict("http://localhost:3000", &shops, &bridge, None),
            Verdict::ThisOrigin
        );
        for refused in [
            "http://shop.example",
            "https://shop.example:8443",
            "https://evil.shop.example",
            "https://shop.example.evil",
            "http://localhost:3001",
        ] {
            assert_eq!(
                verdict(refused, &shops, &bridge, None),
                Verdict::Refused,
                "{refused}"
            );
        }
        assert_eq!(
            verdict("https://anyone.example", &list(&["*"]), &bridge, None),
            Verdict::AnyOrigin
        );
    }
}
