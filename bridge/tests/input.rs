//! What the bridge accepts from outside, over real HTTP on both backends: which web pages may
//! call the visitor API (CORS per interface) and frame the chat, the security headers on every
//! answer, and hostile input — malformed ids and slugs in paths, broken JSON bodies, NUL and
//! control characters — which must always get a clear 4xx in the envelope, never a 500 or a
//! database error, and must store nothing.

#[macro_use]
mod common;

use std::sync::Arc;

use airlock_bridge::clock::ManualClock;
use airlock_bridge::store::StoreOptions;
use airlock_bridge::testing::TestBridge;
use airlock_shared::visitor::SessionCreated;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::http::{assert_error, http};

const SHOP: &str = "https://shop.example";
const EVIL: &str = "https://evil.example";

fn api(bridge: &TestBridge, path: &str) -> String {
    format!("{}/api/v1{path}", bridge.url)
}

async fn admin(bridge: &TestBridge, method: Method, path: &str, body: Value) -> reqwest::Response {
    http()
        .request(method, api(bridge, &format!("/admin{path}")))
        .bearer_auth(&bridge.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Creates a published interface with these allowed origins.
async fn interface(bridge: &TestBridge, slug: &str, origins: &[&str], extra: Value) {
    let mut body =
        json!({"slug": slug, "title": slug, "publish": true, "allowed_origins": origins});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let created = admin(bridge, Method::POST, "/interfaces", body).await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.text().await
    );
}

async fn open_session(bridge: &TestBridge, slug: &str) -> SessionCreated {
    let response = http()
        .post(api(bridge, &format!("/interfaces/{slug}/sessions")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn session_count(bridge: &TestBridge, slug: &str) -> usize {
    let page: Value = admin(
        bridge,
        Method::GET,
        &format!("/sessions?interface={slug}"),
        json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    page["sessions"].as_array().unwrap().len()
}

/// The preflight a browser sends before a JSON POST with a session token.
async fn preflight(url: &str, origin: &str) -> reqwest::Response {
    http()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn only_listed_origins_may_call_an_interface(bridge: TestBridge) {
    interface(&bridge, "shop", &[SHOP], json!({})).await;
    let sessions = api(&bridge, "/interfaces/shop/sessions");

    // A listed site: the preflight says yes, and the call is readable by the page.
    let ok = preflight(&sessions, SHOP).await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some(SHOP));
    assert!(header(&ok, "vary").unwrap().contains("Origin"));
    assert_eq!(header(&ok, "access-control-max-age"), Some("7200"));
    let allowed_headers = header(&ok, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    for name in [
        "authorization",
        "content-type",
        "last-event-id",
        "x-airlock-preview",
    ] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }
    assert!(
        header(&ok, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let opened = http()
        .post(&sessions)
        .header("origin", SHOP)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    assert_eq!(header(&opened, "access-control-allow-origin"), Some(SHOP));
    assert_eq!(
        header(&opened, "access-control-expose-headers"),
        Some("Retry-After")
    );
    let session: SessionCreated = opened.json().await.unwrap();

    // Another site: the preflight carries no CORS header (the browser stops there), and a call
    // made anyway is refused before anything is stored.
    let refused = preflight(&sessions, EVIL).await;
    assert_eq!(refused.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    assert_eq!(header(&refused, "access-control-allow-methods"), None);
    let sneaked = http()
        .post(&sessions)
        .header("origin", EVIL)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&sneaked, "cache-control"), Some("no-store"));
    let message = assert_error(sneaked, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    assert!(
        message.contains(EVIL) && message.contains("allowed origins"),
        "{message}"
    );
    assert_eq!(
        session_count(&bridge, "shop").await,
        1,
        "the refused call stored nothing"
    );

    // The same through a session: its interface's list applies.
    let messages = api(
        &bridge,
        &format!("/sessions/{}/messages", session.session_id),
    );
    let send = |origin: &'static str, client_id: &'static str| {
        http()
            .post(&messages)
            .header("origin", origin)
            .bearer_auth(&session.session_token)
            .json(&json!({"client_id": client_id, "text": "hi"}))
            .send()
    };
    let sent = send(SHOP, "c1").await.unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&sent, "access-control-allow-origin"), Some(SHOP));
    assert_error(
        send(EVIL, "c2").await.unwrap(),
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    assert_eq!(
        preflight(&messages, EVIL)
            .await
            .headers()
            .get("access-control-allow-origin"),
        None
    );
    let log: Value = http()
        .get(format!("{messages}?after=0"))
        .bearer_auth(&session.session_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["messages"].as_array().unwrap().len(), 1, "{log}");

    // Servers and curl send no Origin: they pass.
    assert_eq!(
        http()
            .get(api(&bridge, "/interfaces/shop"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    bridge.shutdown().await;
}

async fn an_empty_list_means_the_bridges_own_pages_and_a_star_any_site(bridge: TestBridge) {
    interface(&bridge, "anywhere", &["*"], json!({})).await;
    // `demo` has no list: its own pages (same origin) may call it, other sites may not.
    let demo = api(&bridge, "/interfaces/demo");
    let own = http()
        .get(&demo)
        .header("origin", &bridge.url)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(
        header(&own, "access-control-allow-origin"),
        Some(bridge.url.as_str())
    );
    let other = http()
        .get(&demo)
        .header("origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_error(other, StatusCode::FORBIDDEN, "origin_not_allowed").await;

    let any = http()
        .get(api(&bridge, "/interfaces/anywhere"))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(any.status(), StatusCode::OK);
    assert_eq!(header(&any, "access-control-allow-origin"), Some("*"));
    let any_preflight = preflight(&api(&bridge, "/interfaces/anywhere/sessions"), "null").await;
    assert_eq!(
        header(&any_preflight, "access-control-allow-origin"),
        Some("*")
    );

    // An unknown interface or session: the 404 as usual, no CORS header.
    for path in [
        "/interfaces/nope",
        "/sessions/ses_nope/messages",
        "/interfaces/Bad_Slug",
    ] {
        let unknown = http()
            .get(api(&bridge, path))
            .header("origin", SHOP)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&unknown, "access-control-allow-origin"),
            None,
            "{path}"
        );
        assert_eq!(
            unknown.status(),
            if path.contains("sessions") {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::NOT_FOUND
            },
            "{path}"
        );
        let unknown = preflight(&api(&bridge, path), SHOP).await;
        assert_eq!(
            header(&unknown, "access-control-allow-origin"),
            None,
            "{path}"
        );
    }

    // `*` hides no list behind it: it stands alone.
    let mixed = admin(
        &bridge,
        Method::PATCH,
        "/interfaces/anywhere",
        json!({"allowed_origins": ["*", SHOP]}),
    )
    .await;
    let message = assert_error(mixed, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        message.starts_with("allowed_origins:") && message.contains("only entry"),
        "{message}"
    );
    bridge.shutdown().await;
}

async fn every_answer_carries_the_security_headers(bridge: TestBridge) {
    interface(&bridge, "shop", &[SHOP, "http://localhost:3000"], json!({})).await;
    interface(&bridge, "anywhere", &["*"], json!({})).await;
    let base = bridge.url.clone();
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move { http().get(url).send().await.unwrap() }
    };
    let admin_paths = [
        "/admin",
        "/admin.js",
        "/admin.css",
        "/api/v1/admin/interfaces",
    ];
    for path in [
        "/",
        "/c/demo",
        "/embed/demo",
        "/admin",
        "/admin.js",
        "/admin.css",
        "/admin/preview/demo?preview=x",
        "/widget.js",
        "/widget.css",
        "/healthz",
        "/api/openapi.json",
        "/api/v1/interfaces/demo",
        "/api/v1/interfaces/nope",
        "/api/v1/nope",
        "/api/v1/admin/interfaces",
        "/c/Bad_Slug",
    ] {
        let response = get(path.to_string()).await;
        assert_eq!(
            header(&response, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        let referrer = if admin_paths.contains(&path) || path.starts_with("/admin/") {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        };
        assert_eq!(
            header(&response, "referrer-policy"),
            Some(referrer),
            "{path}"
        );
        let is_html = header(&response, "content-type").is_some_and(|t| t.starts_with("text/html"));
        if is_html {
            let csp = header(&response, "content-security-policy").unwrap_or_default();
            assert!(
                csp.contains("default-src") && csp.contains("frame-ancestors"),
                "{path}: {csp}"
            );
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{path}: {csp}"
            );
        }
    }

    // Who may frame what.
    for (path, framing, x_frame) in [
        ("/", "frame-ancestors 'none'", Some("DENY")),
        ("/admin", "frame-ancestors 'none'", Some("DENY")),
        ("/c/demo", "frame-ancestors 'self'", Some("SAMEORIGIN")),
        ("/embed/demo", "frame-ancestors 'self'", None),
        (
            "/embed/shop",
            "frame-ancestors 'self' https://shop.example http://localhost:3000",
            None,
        ),
        ("/embed/anywhere", "frame-ancestors *", None),
        ("/embed/nope", "frame-ancestors 'self'", None),
    ] {
        let page = get(path.to_string()).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        let csp = header(&page, "content-security-policy").unwrap();
        let directive = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("frame-ancestors"));
        assert_eq!(directive, Some(framing), "{path}: {csp}");
        assert_eq!(header(&page, "x-frame-options"), x_frame, "{path}");
    }
    bridge.shutdown().await;
}

async fn malformed_ids_and_slugs_in_paths_are_an_ordinary_404(bridge: TestBridge) {
    let session = open_session(&bridge, "demo").await;
    let connector_key = bridge.connector_key("agent").await;
    let long = format!("ses_{}", "a".repeat(5_000));
    let visitor = |method: Method, path: String| {
        http()
            .request(method, api(&bridge, &path))
            .bearer_auth(&session.session_token)
            .json(&json!({"client_id": "c", "text": "hi"}))
            .send()
    };
    for bad in [
        "x%00y",
        "ses_%00",
        "ses_a%2Fb",
        "%FF%FE",
        "not-an-id",
        long.as_str(),
        "msg_abc",
    ] {
        for (method, path) in [
            (Method::GET, format!("/sessions/{bad}/messages")),
            (Method::POST, format!("/sessions/{bad}/messages")),
            (Method::GET, format!("/sessions/{bad}/events")),
        ] {
            let response = visitor(method, path.clone()).await.unwrap();
            assert_error(response, StatusCode::NOT_FOUND, "session_not_found").await;
        }
        for (method, path, code) in [
            (Method::GET, format!("/sessions/{bad}"), "session_not_found"),
            (
                Method::DELETE,
                format!("/sessions/{bad}"),
                "session_not_found",
            ),
            (
                Method::POST,
                format!("/sessions/{bad}/end"),
                "session_not_found",
            ),
            (
                Method::DELETE,
                format!("/connectors/{bad}"),
                "connector_not_found",
            ),
            (
                Method::POST,
                format!("/dead-letters/{bad}/retry"),
                "dead_letter_not_found",
            ),
            (
                Method::DELETE,
                format!("/dead-letters/{bad}"),
                "dead_letter_not_found",
            ),
            (
                Method::GET,
                format!("/attachments/{bad}"),
                "attachment_not_found",
            ),
        ] {
            let response = admin(&bridge, method, &path, json!({})).await;
            assert_error(response, StatusCode::NOT_FOUND, code).await;
        }
        for (method, path, code) in [
            (
                Method::POST,
                format!("/connector/leases/{bad}/reply"),
                "lease_not_found",
            ),
            (
                Method::POST,
                format!("/connector/leases/{bad}/extend"),
                "lease_not_found",
            ),
            (
                Method::GET,
                format!("/connector/attachments/{bad}"),
                "attachment_not_found",
            ),
        ] {
            let response = http()
                .request(method, api(&bridge, &path))
                .bearer_auth(&connector_key)
                .json(&json!({"text": "hi", "lease_secs": 30}))
                .send()
                .await
                .unwrap();
            assert_error(response, StatusCode::NOT_FOUND, code).await;
        }
    }
    let long_slug = "a".repeat(5_000);
    for bad in ["Bad_Slug", "de%00mo", "%FF", "-demo", long_slug.as_str()] {
        for path in [
            format!("/interfaces/{bad}"),
            format!("/interfaces/{bad}/sessions"),
        ] {
            let method = if path.ends_with("sessions") {
                Method::POST
            } else {
                Method::GET
            };
            let response = http()
                .request(method, api(&bridge, &path))
                .json(&json!({}))
                .send();
            assert_error(
                response.await.unwrap(),
                StatusCode::NOT_FOUND,
                "interface_not_found",
            )
            .await;
        }
        for (method, path) in [
            (Method::GET, format!("/interfaces/{bad}")),
            (Method::PATCH, format!("/interfaces/{bad}")),
            (Method::DELETE, format!("/interfaces/{bad}")),
            (Method::POST, format!("/interfaces/{bad}/publish")),
        ] {
            let response = admin(&bridge, method, &path, json!({})).await;
            assert_error(response, StatusCode::NOT_FOUND, "interface_not_found").await;
        }
        for page in [format!("/c/{bad}"), format!("/embed/{bad}")] {
            let response = http()
                .get(format!("{}{page}", bridge.url))
                .send()
                .await
                .unwrap();
            assert_error(response, StatusCode::NOT_FOUND, "interface_not_found").await;
        }
    }
    bridge.shutdown().await;
}

async fn broken_bodies_get_the_envelope_naming_what_is_wrong(bridge: TestBridge) {
    let session = open_session(&bridge, "demo").await;
    let messages = api(
        &bridge,
        &format!("/sessions/{}/messages", session.session_id),
    );
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = http()
            .post(&messages)
            .bearer_auth(&session.session_token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json = Some("application/json");

    let wrong_type = post(json, br#"{"client_id": "c1", "text": 5}"#.to_vec())
        .await
        .unwrap();
    let message = assert_error(
        wrong_type,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert!(message.contains("text"), "{message}");
    // An array is no object, though serde would read the fields from it in order.
    let array = post(json, br#"["c1", "hi"]"#.to_vec()).await.unwrap();
    let message = assert_error(array, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(message.contains("array"), "{message}");
    let not_utf8 = post(
        json,
        b"{\"client_id\": \"c1\", \"text\": \"caf\xe9\"}".to_vec(),
    )
    .await
    .unwrap();
    let message = assert_error(not_utf8, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert!(message.contains("UTF-8"), "{message}");
    let truncated = post(json, br#"{"client_id": "c1", "#.to_vec())
        .await
        .unwrap();
    assert_error(truncated, StatusCode::BAD_REQUEST, "invalid_json").await;
    let huge =
        serde_json::to_vec(&json!({"client_id": "c1", "text": "x".repeat(100_000)})).unwrap();
    assert_error(
        post(json, huge).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = post(
            content_type,
            br#"{"client_id": "c1", "text": "hi"}"#.to_vec(),
        );
        assert_error(
            response.await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    // A JSON type with parameters or a +json suffix is JSON.
    let ok = post(
        Some("application/json; charset=utf-8"),
        br#"{"client_id": "c1", "text": "hi"}"#.to_vec(),
    );
    assert_eq!(ok.await.unwrap().status(), StatusCode::ACCEPTED);

    let log: Value = http()
        .get(format!("{messages}?after=0"))
        .bearer_auth(&session.session_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        log["messages"].as_array().unwrap().len(),
        1,
        "only the good one: {log}"
    );
    bridge.shutdown().await;
}

async fn nul_and_control_characters_are_refused_never_a_server_error(bridge: TestBridge) {
    interface(
        &bridge,
        "files",
        &[],
        json!({"uploads": {"enabled": true, "max_files": 2, "max_mb": 1, "allowed_types": ["text/plain"]}}),
    )
    .await;
    // A session's page metadata: the whole body is refused, naming the field.
    let opened = http()
        .post(api(&bridge, "/interfaces/files/sessions"))
        .json(&json!({"page_title": "Shop\u{0}", "page_url": "https://shop.example/"}))
        .send()
        .await
        .unwrap();
    let message = assert_error(opened, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        message.starts_with("page_title:") && message.contains("NUL"),
        "{message}"
    );
    // Other control characters in metadata are dropped, the rest kept.
    let opened = http()
        .post(api(&bridge, "/interfaces/files/sessions"))
        .json(&json!({"page_title": "Sho\u{1b}[2Jp", "page_url": "https://shop.example/\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    let session: SessionCreated = opened.json().await.unwrap();
    let messages = api(
        &bridge,
        &format!("/sessions/{}/messages", session.session_id),
    );
    let send = |body: Value| {
        http()
            .post(&messages)
            .bearer_auth(&session.session_token)
            .json(&body)
            .send()
    };
    // A literal backslash-u in text is text, not a NUL.
    let fine = send(json!({"client_id": "c0", "text": "a \\u0000 is harmless as text"}))
        .await
        .unwrap();
    assert_eq!(fine.status(), StatusCode::ACCEPTED);
    let nul = send(json!({"client_id": "c1", "text": "a\u{0}b"}))
        .await
        .unwrap();
    let message = assert_error(nul, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(message.starts_with("text:"), "{message}");
    let nested =
        send(json!({"client_id": "c2", "text": "hi", "context": {"cart": ["ok", "x\u{0}"]}}))
            .await
            .unwrap();
    let message = assert_error(nested, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(message.starts_with("context.cart[1]:"), "{message}");
    let escape = send(json!({"client_id": "c3", "text": "red \u{1b}[31m"}))
        .await
        .unwrap();
    let message = assert_error(escape, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text").await;
    assert!(message.contains("U+001B"), "{message}");
    let tabs = send(json!({"client_id": "c4", "text": "two\nlines\r\n\tand a tab"}))
        .await
        .unwrap();
    assert_eq!(tabs.status(), StatusCode::ACCEPTED);

    // A file name with a NUL: raw in the part's header it is a broken multipart body; encoded
    // (RFC 5987 `filename*`) it never reaches storage either.
    let upload = |disposition: &str| {
        let boundary = "xyzBOUNDARYxyz";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; {disposition}\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
        );
        http()
            .post(api(
                &bridge,
                &format!("/sessions/{}/attachments", session.session_id),
            ))
            .bearer_auth(&session.session_token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
    };
    let raw = upload("filename=\"a\u{0}b.txt\"").await.unwrap();
    assert_error(raw, StatusCode::BAD_REQUEST, "invalid_upload").await;
    let encoded = upload("filename*=UTF-8''a%00b%1B%07.txt").await.unwrap();
    let status = encoded.status();
    let encoded: Value = encoded.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{encoded}");
    let filename = encoded["attachment"]["filename"].as_str().unwrap();
    assert!(
        !filename.is_empty() && !filename.contains(char::is_control),
        "{filename:?}"
    );

    // Admin and connector bodies, and query strings.
    let titled = admin(
        &bridge,
        Method::PATCH,
        "/interfaces/files",
        json!({"title": "Files\u{0}"}),
    )
    .await;
    let message = assert_error(titled, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(message.starts_with("title:"), "{message}");
    let prompt = admin(
        &bridge,
        Method::PATCH,
        "/interfaces/files",
        json!({"suggested_prompts": [{"text": "ok"}, {"text": "no\u{0}"}]}),
    )
    .await;
    let message = assert_error(prompt, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        message.starts_with("suggested_prompts[1].text:"),
        "{message}"
    );
    let created = admin(
        &bridge,
        Method::POST,
        "/interfaces",
        json!({"slug": "nul", "title": "ok", "name": "bad\u{0}name"}),
    )
    .await;
    assert_error(created, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let key = admin(
        &bridge,
        Method::POST,
        "/connectors",
        json!({"name": "agent\u{0}"}),
    )
    .await;
    assert_error(key, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let searched = admin(&bridge, Method::GET, "/sessions?q=%00", json!({})).await;
    assert_error(searched, StatusCode::BAD_REQUEST, "invalid_query").await;
    let filtered = admin(
        &bridge,
        Method::GET,
        "/sessions?interface=fi%00les",
        json!({}),
    )
    .await;
    assert_error(filtered, StatusCode::BAD_REQUEST, "invalid_query").await;

    let connector_key = bridge.connector_key("agent").await;
    let claimed: Value = http()
        .post(api(&bridge, "/connector/claim"))
        .bearer_auth(&connector_key)
        .json(&json!({"max": 1, "wait": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lease = claimed["items"][0]["lease_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (call, body) in [
        ("stream", json!({"text_delta": "x\u{0}"})),
        ("reply", json!({"text": "x\u{0}"})),
        ("fail", json!({"error": "x\u{0}", "retry": true})),
    ] {
        let response = http()
            .post(api(&bridge, &format!("/connector/leases/{lease}/{call}")))
            .bearer_auth(&connector_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    }

    // What was refused left nothing behind: only the two good messages are in the log.
    let log: Value = http()
        .get(format!("{messages}?after=0"))
        .bearer_auth(&session.session_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut texts: Vec<&str> = log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["a \\u0000 is harmless as text", "two\nlines\r\n\tand a tab"]
    );
    let transcript: Value = admin(
        &bridge,
        Method::GET,
        &format!("/sessions/{}", session.session_id),
        json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(transcript["session"]["page_url"], "https://shop.example/");
    bridge.shutdown().await;
}

on_both_backends!(
    only_listed_origins_may_call_an_interface,
    an_empty_list_means_the_bridges_own_pages_and_a_star_any_site,
    every_answer_carries_the_security_headers,
    malformed_ids_and_slugs_in_paths_are_an_ordinary_404,
    broken_bodies_get_the_envelope_naming_what_is_wrong,
    nul_and_control_characters_are_refused_never_a_server_error,
);
