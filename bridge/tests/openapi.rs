//! `/api/openapi.json` describes exactly the API the router serves: every documented operation
//! is routed, and no route is added outside the documented `routes!` registrations.

mod common;

use std::path::{Path, PathBuf};

use airlock_bridge::testing::TestBridge;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use common::http::http;

async fn spec(bridge: &TestBridge) -> Value {
    let response = http()
        .get(format!("{}/api/openapi.json", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

/// Every (method, path) in the document.
fn operations(spec: &Value) -> Vec<(Method, String)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                found.push((method, path.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_covers_all_three_apis() {
    let bridge = TestBridge::start().await;
    let spec = spec(&bridge).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths: Vec<String> = operations(&spec).into_iter().map(|(_, p)| p).collect();
    for expected in [
        "/api/v1/interfaces/{slug}",
        "/api/v1/sessions/{id}/messages",
        "/api/v1/sessions/{id}/events",
        "/api/v1/connector/claim",
        "/api/v1/connector/leases/{lease_id}/reply",
        "/api/v1/admin/interfaces",
        "/api/v1/admin/sessions",
        "/api/openapi.json",
        "/widget.js",
        "/healthz",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected} missing");
    }
    // Request and response bodies refer to schemas that the document defines.
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "SendMessage",
        "ClaimResponse",
        "Interface",
        "ErrorEnvelope",
        "Message",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    let text = spec.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
    for scheme in ["session_token", "connector_key", "admin_key"] {
        assert!(spec["components"]["securitySchemes"][scheme].is_object());
    }
    bridge.shutdown().await;
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let bridge = TestBridge::start().await;
    let spec = spec(&bridge).await;
    let operations = operations(&spec);
    // Each `#[utoipa::path]` handler is registered exactly once: none is annotated but unrouted.
    assert_eq!(operations.len(), documented_handlers());
    let http = http();
    for (method, path) in operations {
        let url = format!("{}{}", bridge.url, fill_params(&path));
        let mut request = http.request(method.clone(), &url);
        if method != Method::GET && method != Method::DELETE {
            request = request
                .header("content-type", "application/json")
                .body("{}");
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(String::from));
        // Any answer but the router's own "no such route" or "wrong method" means the route is
        // there: unauthenticated calls get 401, unknown ids 404 with their own error code.
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && code.as_deref() != Some("route_not_found"),
            "{method} {path} is documented but not served: {status} {body}"
        );
    }
    bridge.shutdown().await;
}

/// Puts a harmless value into each `{param}` of a documented path.
fn fill_params(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closing brace") + start;
        out.push_str(&rest[..start]);
        out.push_str("nope");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Routes can only be added through `routes!(…)` (which documents them): no plain axum routing
/// anywhere in the HTTP layer.
#[test]
fn no_route_bypasses_the_openapi_registration() {
    for file in http_sources() {
        let source = production_source(&file);
        for forbidden in [".route(", ".route_service(", ".nest_service(", "routing::"] {
            assert!(
                !source.contains(forbidden),
                "{} uses `{forbidden}`: register routes with `.routes(routes!(handler))` and a \
                 `#[utoipa::path]` on the handler so /api/openapi.json lists them",
                file.display()
            );
        }
    }
    assert!(documented_handlers() >= 30);
}

/// How many handlers carry a `#[utoipa::path]`.
fn documented_handlers() -> usize {
    http_sources()
        .iter()
        .map(|f| production_source(f).matches("#[utoipa::path(").count())
        .sum()
}

/// A source file up to its test module, which may route handlers of its own.
fn production_source(file: &Path) -> String {
    let mut source = std::fs::read_to_string(file).unwrap();
    if let Some(tests) = source.find("#[cfg(test)]") {
        source.truncate(tests);
    }
    source
}

/// The Rust sources of the HTTP layer.
fn http_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect_rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut files,
    );
    assert!(files.len() >= 5);
    files
}

fn collect_rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}
