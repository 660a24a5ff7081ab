//! The authorization matrix: every documented route × every kind of caller → the exact status.
//!
//! Callers: no credential, the visitor who owns the session, another visitor, a connector key
//! that serves the interface, a connector key scoped to another interface, and an admin key.
//! Each route runs against a fresh bridge (so a delete cannot change the next row's answer), the
//! rightful caller last. Besides the status, no answer to anyone but the rightful caller (and an
//! admin) may contain the owning visitor's words or the names of their files.
//!
//! The table must list every operation of `/api/openapi.json`: a new route cannot ship without
//! its row.

mod common;

use airlock_bridge::testing::TestBridge;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::http::http;

/// The owning visitor's message: it must never reach anyone else.
const SECRET_TEXT: &str = "visitor-one-private-words";
/// The owning visitor's file name and bytes.
const SECRET_FILE: &str = "visitor-one-notes.txt";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    Visitor,
    OtherVisitor,
    Connector,
    ForeignConnector,
    Admin,
}

const CALLERS: [Caller; 6] = [
    Caller::Anonymous,
    Caller::OtherVisitor,
    Caller::ForeignConnector,
    Caller::Connector,
    Caller::Visitor,
    Caller::Admin,
];

/// A bridge with two visitors, two connectors, a leased message with a file, and a dead letter.
struct World {
    bridge: TestBridge,
    /// Visitor one's session on `demo`, with a message leased to `connector`.
    session: String,
    token: String,
    /// Visitor one's visitor id.
    visitor_id: String,
    other_token: String,
    /// The lease `connector` holds on visitor one's message.
    lease: String,
    attachment: String,
    /// A dead-lettered message (visitor three's).
    dead: String,
    connector_key: String,
    foreign_connector_key: String,
    /// The foreign connector's id (revocable).
    foreign_connector: String,
}

async fn call(
    bridge: &TestBridge,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http().request(method, format!("{}{path}", bridge.url));
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("the bridge answers")
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");
    body
}

impl World {
    async fn new() -> World {
        let bridge = TestBridge::start().await;
        let admin_call = |method: Method, path: &'static str, body: Option<Value>| {
            call(&bridge, method, path, Some(&bridge.admin_key), body)
        };
        ok_json(
            admin_call(
                Method::PATCH,
                "/api/v1/admin/interfaces/demo",
                Some(
                    json!({"uploads": {"enabled": true, "max_files": 3, "max_mb": 1,
                    "allowed_types": ["text/plain"]}}),
                ),
            )
            .await,
        )
        .await;
        ok_json(
            admin_call(
                Method::POST,
                "/api/v1/admin/interfaces",
                Some(json!({"slug": "other", "title": "Other"})),
            )
            .await,
        )
        .await;
        ok_json(admin_call(Method::POST, "/api/v1/admin/interfaces/other/publish", None).await)
            .await;
        let connector = ok_json(
            admin_call(
                Method::POST,
                "/api/v1/admin/connectors",
                Some(json!({"name": "demo agent", "interfaces": ["demo"]})),
            )
            .await,
        )
        .await;
        let foreign = ok_json(
            admin_call(
                Method::POST,
                "/api/v1/admin/connectors",
                Some(json!({"name": "other agent", "interfaces": ["other"]})),
            )
            .await,
        )
        .await;

        let open = || {
            call(
                &bridge,
                Method::POST,
                "/api/v1/interfaces/demo/sessions",
                None,
                Some(json!({})),
            )
        };
        let one = ok_json(open().await).await;
        let two = ok_json(open().await).await;
        let three = ok_json(open().await).await;
        let session = one["session_id"].as_str().unwrap().to_string();
        let token = one["session_token"].as_str().unwrap().to_string();

        let part = reqwest::multipart::Part::bytes(SECRET_TEXT.as_bytes().to_vec())
            .file_name(SECRET_FILE)
            .mime_str("text/plain")
            .unwrap();
        let uploaded = http()
            .post(format!(
                "{}/api/v1/sessions/{session}/attachments",
                bridge.url
            ))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        let attachment = ok_json(uploaded).await["attachment"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        ok_json(
            call(
                &bridge,
                Method::POST,
                &format!("/api/v1/sessions/{session}/messages"),
                Some(&token),
                Some(json!({"client_id": "c1", "text": SECRET_TEXT, "attachments": [attachment]})),
            )
            .await,
        )
        .await;
        let three_id = three["session_id"].as_str().unwrap();
        let sent = ok_json(
            call(
                &bridge,
                Method::POST,
                &format!("/api/v1/sessions/{three_id}/messages"),
                three["session_token"].as_str(),
                Some(json!({"client_id": "c3", "text": "nobody will answer"})),
            )
            .await,
        )
        .await;
        let dead = sent["message"]["id"].as_str().unwrap().to_string();

        let connector_key = connector["key"].as_str().unwrap().to_string();
        let claimed = ok_json(
            call(
                &bridge,
                Method::POST,
                "/api/v1/connector/claim",
                Some(&connector_key),
                Some(json!({"max": 10, "wait": 0, "lease_secs": 60})),
            )
            .await,
        )
        .await;
        let items = claimed["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{claimed}");
        let lease_of = |session_id: &str| {
            items
                .iter()
                .find(|item| item["session"]["id"] == session_id)
                .unwrap()["lease_id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let lease = lease_of(&session);
        let dead_lease = lease_of(three_id);
        ok_json(
            call(
                &bridge,
                Method::POST,
                &format!("/api/v1/connector/leases/{dead_lease}/fail"),
                Some(&connector_key),
                Some(json!({"error": "the agent gave up", "retry": false})),
            )
            .await,
        )
        .await;

        World {
            session,
            token,
            visitor_id: one["visitor_id"].as_str().unwrap().to_string(),
            other_token: two["session_token"].as_str().unwrap().to_string(),
            lease,
            attachment,
            dead,
            connector_key,
            foreign_connector_key: foreign["key"].as_str().unwrap().to_string(),
            foreign_connector: foreign["id"].as_str().unwrap().to_string(),
            bridge,
        }
    }

    fn credential(&self, caller: Caller) -> Option<String> {
        match caller {
            Caller::Anonymous => None,
            Caller::Visitor => Some(self.token.clone()),
            Caller::OtherVisitor => Some(self.other_token.clone()),
            Caller::Connector => Some(self.connector_key.clone()),
            Caller::ForeignConnector => Some(self.foreign_connector_key.clone()),
            Caller::Admin => Some(self.bridge.admin_key.clone()),
        }
    }

    /// The concrete URL of a documented path, with this world's ids.
    fn url(&self, path: &str) -> String {
        let id = if path.starts_with("/api/v1/admin/connectors/") {
            &self.foreign_connector
        } else if path.contains("attachments/{id}") {
            &self.attachment
        } else {
            &self.session
        };
        path.replace("{slug}", "demo")
            .replace("{id}", id)
            .replace("{lease_id}", &self.lease)
            .replace("{message_id}", &self.dead)
    }
}

/// One row: a documented operation, what to send, and the status per caller in the order
/// anonymous, visitor, other visitor, connector, foreign connector, admin.
struct Row {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 6],
}

fn status_for(row: &Row, caller: Caller) -> u16 {
    let index = match caller {
        Caller::Anonymous => 0,
        Caller::Visitor => 1,
        Caller::OtherVisitor => 2,
        Caller::Connector => 3,
        Caller::ForeignConnector => 4,
        Caller::Admin => 5,
    };
    row.expect[index]
}

fn row(method: Method, path: &'static str, body: Option<Value>, expect: [u16; 6]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
    }
}

/// Every documented operation. Order of statuses: anonymous, visitor, other visitor, connector,
/// foreign connector, admin.
fn table() -> Vec<Row> {
    use Method as M;
    const PUBLIC: [u16; 6] = [200; 6];
    const VISITOR_ONLY: [u16; 6] = [401, 200, 404, 401, 401, 401];
    const CONNECTOR_ONLY: [u16; 6] = [401, 401, 401, 200, 404, 401];
    const ADMIN_ONLY: [u16; 6] = [401, 401, 401, 401, 401, 200];
    let admin = |status: u16| [401, 401, 401, 401, 401, status];
    vec![
        // Pages and probes: public.
        row(M::GET, "/", None, PUBLIC),
        row(M::GET, "/widget.js", None, PUBLIC),
        row(M::GET, "/widget.css", None, PUBLIC),
        row(M::GET, "/c/{slug}", None, PUBLIC),
        row(M::GET, "/embed/{slug}", None, PUBLIC),
        row(M::GET, "/admin", None, PUBLIC),
        row(M::GET, "/admin.js", None, PUBLIC),
        row(M::GET, "/admin.css", None, PUBLIC),
        // The stand-in page is static; the draft it shows needs a preview token.
        row(M::GET, "/admin/preview/{slug}", None, PUBLIC),
        row(M::GET, "/healthz", None, PUBLIC),
        row(M::GET, "/readyz", None, PUBLIC),
        row(M::GET, "/api/openapi.json", None, PUBLIC),
        // Visitor API.
        row(M::GET, "/api/v1/interfaces/{slug}", None, PUBLIC),
        row(
            M::POST,
            "/api/v1/interfaces/{slug}/sessions",
            Some(json!({})),
            [201; 6],
        ),
        row(
            M::POST,
            "/api/v1/sessions/{id}/messages",
            Some(json!({"client_id": "matrix", "text": "hello"})),
            [401, 202, 404, 401, 401, 401],
        ),
        row(M::GET, "/api/v1/sessions/{id}/messages", None, VISITOR_ONLY),
        row(M::GET, "/api/v1/sessions/{id}/events", None, VISITOR_ONLY),
        // Multipart: sent by `send` below.
        row(
            M::POST,
            "/api/v1/sessions/{id}/attachments",
            None,
            [401, 201, 404, 401, 401, 401],
        ),
        // Connector API: a key for another interface sees nothing of this one.
        row(
            M::GET,
            "/api/v1/connector/me",
            None,
            [401, 401, 401, 200, 200, 401],
        ),
        row(
            M::POST,
            "/api/v1/connector/claim",
            Some(json!({"max": 1, "wait": 0})),
            [401, 401, 401, 200, 200, 401],
        ),
        row(
            M::GET,
            "/api/v1/connector/attachments/{id}",
            None,
            CONNECTOR_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/connector/leases/{lease_id}/extend",
            Some(json!({"lease_secs": 60})),
            CONNECTOR_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/connector/leases/{lease_id}/stream",
            Some(json!({"text_delta": "Hi"})),
            CONNECTOR_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/connector/leases/{lease_id}/reply",
            Some(json!({"text": "Hello"})),
            CONNECTOR_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/connector/leases/{lease_id}/fail",
            Some(json!({"error": "no", "retry": true})),
            CONNECTOR_ONLY,
        ),
        // Admin API.
        row(M::GET, "/api/v1/admin/interfaces", None, ADMIN_ONLY),
        row(
            M::POST,
            "/api/v1/admin/interfaces",
            Some(json!({"slug": "matrix", "title": "Matrix"})),
            admin(201),
        ),
        row(M::GET, "/api/v1/admin/interfaces/{slug}", None, ADMIN_ONLY),
        row(
            M::PATCH,
            "/api/v1/admin/interfaces/{slug}",
            Some(json!({"title": "Renamed"})),
            ADMIN_ONLY,
        ),
        row(
            M::DELETE,
            "/api/v1/admin/interfaces/{slug}",
            None,
            ADMIN_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/admin/interfaces/{slug}/duplicate",
            Some(json!({"slug": "demo-copy"})),
            admin(201),
        ),
        row(
            M::POST,
            "/api/v1/admin/interfaces/{slug}/preview",
            None,
            ADMIN_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/admin/interfaces/{slug}/publish",
            None,
            ADMIN_ONLY,
        ),
        row(
            M::POST,
            "/api/v1/admin/interfaces/{slug}/unpublish",
            None,
            ADMIN_ONLY,
        ),
        row(M::GET, "/api/v1/admin/connectors", None, ADMIN_ONLY),
        row(
            M::POST,
            "/api/v1/admin/connectors",
            Some(json!({"name": "matrix"})),
            admin(201),
        ),
        row(M::DELETE, "/api/v1/admin/connectors/{id}", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/sessions", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/sessions/export", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/sessions/{id}", None, ADMIN_ONLY),
        row(M::DELETE, "/api/v1/admin/sessions/{id}", None, ADMIN_ONLY),
        row(M::POST, "/api/v1/admin/sessions/{id}/end", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/dead-letters", None, ADMIN_ONLY),
        row(
            M::POST,
            "/api/v1/admin/dead-letters/{message_id}/retry",
            None,
            ADMIN_ONLY,
        ),
        row(
            M::DELETE,
            "/api/v1/admin/dead-letters/{message_id}",
            None,
            ADMIN_ONLY,
        ),
        row(M::GET, "/api/v1/admin/stats", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/events", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/audit", None, ADMIN_ONLY),
        row(M::GET, "/api/v1/admin/attachments/{id}", None, ADMIN_ONLY),
        row(
            M::POST,
            "/api/v1/admin/visitors/forget",
            Some(json!({"visitor_id": "{visitor_id}"})),
            ADMIN_ONLY,
        ),
        // The PHP web chat bridge's API: the operation is `?action=` (see `compat_query`). Its
        // API key is a connector key: `inbox` leases only what the key serves, and `outbox`
        // reaches a native session only for a connector that serves it.
        row(M::GET, "/api/v1/", None, [401, 401, 401, 200, 200, 401]),
        row(
            M::POST,
            "/api/v1/",
            Some(json!({"session_id": "{session_id}", "response": "matrix"})),
            [401, 401, 401, 200, 404, 401],
        ),
        row(M::OPTIONS, "/api/v1/", None, PUBLIC),
        row(M::GET, "/api/v1/index.php", None, ADMIN_ONLY),
        row(
            M::POST,
            "/api/v1/index.php",
            Some(json!({"session_id": "matrix_probe", "message": "hello"})),
            PUBLIC,
        ),
        row(M::OPTIONS, "/api/v1/index.php", None, PUBLIC),
    ]
}

/// The `?action=` a row of the PHP bridge's API sends: `inbox` and `outbox` on `/api/v1/`,
/// `sessions` and `messages` on `/api/v1/index.php`.
fn compat_query(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("GET", "/api/v1/") => "?action=inbox",
        ("POST", "/api/v1/") => "?action=outbox",
        ("GET", "/api/v1/index.php") => "?action=sessions",
        ("POST" | "OPTIONS", "/api/v1/index.php") | ("OPTIONS", "/api/v1/") => "?action=messages",
        _ => "",
    }
}

/// Whether a row is the PHP bridge's API, which answers in that bridge's own envelope.
fn is_compat(path: &str) -> bool {
    path == "/api/v1/" || path == "/api/v1/index.php"
}

/// Sends a row's request as `caller`; answers the status and (for non-streams) the body.
async fn send(world: &World, row: &Row, caller: Caller) -> (StatusCode, String) {
    let url = format!(
        "{}{}{}",
        world.bridge.url,
        world.url(row.path),
        compat_query(&row.method, row.path)
    );
    let mut request = http().request(row.method.clone(), url);
    if let Some(credential) = world.credential(caller) {
        request = request.bearer_auth(credential);
    }
    if row.path.ends_with("/attachments") && row.method == Method::POST {
        let part = reqwest::multipart::Part::bytes(b"more".to_vec())
            .file_name("more.txt")
            .mime_str("text/plain")
            .unwrap();
        request = request.multipart(reqwest::multipart::Form::new().part("file", part));
    } else if let Some(body) = &row.body {
        let body = body
            .to_string()
            .replace("{visitor_id}", &world.visitor_id)
            .replace("{session_id}", &world.session);
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("the bridge answers");
    let status = response.status();
    let is_stream = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_stream {
        // Only the head of a live stream: the first chunk within a moment.
        let mut stream = response.bytes_stream();
        let first = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            futures_util::StreamExt::next(&mut stream),
        )
        .await;
        let text = match first {
            Ok(Some(Ok(chunk))) => String::from_utf8_lossy(&chunk).into_owned(),
            _ => String::new(),
        };
        return (status, text);
    }
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_exactly_as_designed() {
    let rows = table();

    // The table covers exactly the documented operations.
    let probe = TestBridge::start().await;
    let spec: Value = http()
        .get(format!("{}/api/openapi.json", probe.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    probe.shutdown().await;
    let mut documented = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                documented.push(format!("{method} {path}"));
            }
        }
    }
    let mut tabled: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    documented.sort();
    tabled.sort();
    assert_eq!(
        tabled, documented,
        "the matrix must list every documented operation, once"
    );

    let mut failures = Vec::new();
    for row in &rows {
        let world = World::new().await;
        for caller in CALLERS {
            let expected = status_for(row, caller);
            let (status, body) = send(&world, row, caller).await;
            if status.as_u16() != expected {
                failures.push(format!(
                    "{} {} as {caller:?}: expected {expected}, got {status}: {}",
                    row.method,
                    row.path,
                    body.chars().take(200).collect::<String>()
                ));
            }
            let may_see = matches!(caller, Caller::Visitor | Caller::Connector | Caller::Admin);
            if !may_see && (body.contains(SECRET_TEXT) || body.contains(SECRET_FILE)) {
                failures.push(format!(
                    "{} {} as {caller:?} saw visitor one's data: {body}",
                    row.method, row.path
                ));
            }
            if status.is_client_error() && is_compat(row.path) {
                let envelope: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if envelope["success"] != Value::Bool(false) || !envelope["error"].is_string() {
                    failures.push(format!(
                        "{} {} as {caller:?}: {status} without the PHP bridge's envelope: {body}",
                        row.method, row.path
                    ));
                }
            } else if status.is_client_error() && row.path.starts_with("/api/v1") {
                let envelope: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if envelope["error"]["code"].as_str().is_none() {
                    failures.push(format!(
                        "{} {} as {caller:?}: {status} without the error envelope: {body}",
                        row.method, row.path
                    ));
                }
            }
        }
        world.bridge.shutdown().await;
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
