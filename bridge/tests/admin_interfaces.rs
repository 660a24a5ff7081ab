//! The admin API for interfaces over real HTTP: full configuration with validation, partial
//! updates and renames, duplicates, deletes with their sessions, drafts opened with preview
//! tokens, embed snippets, and connectors scoped from the interface's side.

#[macro_use]
mod common;

use std::sync::Arc;

use airlock_bridge::clock::ManualClock;
use airlock_bridge::store::StoreOptions;
use airlock_bridge::testing::TestBridge;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::http::{Connector, http};

/// An admin talking to one test bridge.
struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Admin {
    fn new(bridge: &TestBridge) -> Admin {
        Admin {
            http: http(),
            base: bridge.url.clone(),
            key: bridge.admin_key.clone(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1/admin{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn create(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/interfaces", Some(body)).await
    }

    async fn patch(&self, slug: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, &format!("/interfaces/{slug}"), Some(body))
            .await
    }

    async fn audit_actions(&self) -> Vec<String> {
        let (_, page) = self.call(Method::GET, "/audit", None).await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `GET /api/v1/interfaces/{slug}` as a visitor, with optional extra headers and query.
async fn public_config(bridge: &TestBridge, slug: &str, preview: Preview<'_>) -> StatusCode {
    let url = format!("{}/api/v1/interfaces/{slug}", bridge.url);
    let request = match preview {
        Preview::None => http().get(url),
        Preview::Header(token) => http().get(url).header("X-Airlock-Preview", token),
        // Tokens are URL-safe as they are.
        Preview::Query(token) => http().get(format!("{url}?preview={token}")),
    };
    request.send().await.unwrap().status()
}

enum Preview<'a> {
    None,
    Header(&'a str),
    Query(&'a str),
}

fn everything() -> Value {
    json!({
        "slug": "help-desk",
        "title": "Help desk",
        "name": "Support (EU)",
        "description": "Questions about your order",
        "welcome_message": "Hi! How can we help?",
        "placeholder": "Ask anything…",
        "suggested_prompts": [{"text": "Where is my order?", "icon": "📦"}, "Refunds"],
        "persistence": "local",
        "locale": "de",
        "appearance": {"primary_color": "#0a7", "radius": 8, "theme": "dark", "icon": "🤖",
                       "cover": "linear-gradient(135deg, #1e3a8a 0%, #3b82f6 100%)"},
        "launcher": {"position": "bottom-left", "label": "Questions?", "open": true},
        "uploads": {"enabled": true, "max_files": 2, "max_mb": 5, "allowed_types": ["image/png"]},
        "session_timeout_mins": 90,
        "rate_limit": {"messages": 5, "window_secs": 30},
        "allowed_origins": ["https://shop.example", "http://localhost:8080"],
        "system_prompt": "You are the help desk of {interface_title}. Plan: {context.plan}.",
        "agent_context": {"plan": "pro", "region": "eu"}
    })
}

async fn an_interface_is_created_with_every_field_and_read_back(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    let (status, created) = admin.create(everything()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, read) = admin.call(Method::GET, "/interfaces/help-desk", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
    assert_eq!(read["status"], "draft");
    assert_eq!(read["name"], "Support (EU)");
    assert_eq!(
        read["suggested_prompts"],
        json!([{"text": "Where is my order?", "icon": "📦"}, {"text": "Refunds"}])
    );
    assert_eq!(read["session_timeout_mins"], 90);
    assert_eq!(
        read["rate_limit"],
        json!({"messages": 5, "window_secs": 30})
    );
    assert_eq!(read["allowed_origins"][1], "http://localhost:8080");
    assert_eq!(read["agent_context"]["region"], "eu");
    assert_eq!(read["appearance"]["theme"], "dark");
    assert_eq!(read["launcher"]["position"], "bottom-left");
    assert_eq!(read["uploads"]["max_files"], 2);
    assert!(
        read["system_prompt"]
            .as_str()
            .unwrap()
            .contains("{context.plan}")
    );

    // Defaults for what was not given.
    let (_, plain) = admin
        .create(json!({"slug": "plain", "title": "Plain"}))
        .await;
    assert_eq!(plain["session_timeout_mins"], 1440);
    assert_eq!(
        plain["rate_limit"],
        json!({"messages": 10, "window_secs": 60})
    );
    assert_eq!(plain["allowed_origins"], json!([]));
    assert_eq!(plain["connectors"], json!([]));
    assert_eq!(plain["system_prompt"], Value::Null);

    let (_, list) = admin.call(Method::GET, "/interfaces", None).await;
    let slugs: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["demo", "help-desk", "plain"]);
}

async fn each_invalid_field_is_refused_with_its_name(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    let cases: Vec<(&str, Value)> = vec![
        ("slug", json!({"slug": "admin"})),
        ("slug", json!({"slug": "Bad Slug"})),
        ("title", json!({"title": " "})),
        (
            "appearance.primary_color",
            json!({"appearance": {"primary_color": "red"}}),
        ),
        (
            "allowed_origins",
            json!({"allowed_origins": ["https://shop.example/path"]}),
        ),
        (
            "allowed_origins",
            json!({"allowed_origins": ["shop.example"]}),
        ),
        ("connectors", json!({"connectors": ["con_unknown"]})),
        (
            "suggested_prompts",
            json!({"suggested_prompts": vec!["x"; 13]}),
        ),
        (
            "suggested_prompts",
            json!({"suggested_prompts": [{"text": "ok", "icon": "<b>"}]}),
        ),
        (
            "rate_limit.messages",
            json!({"rate_limit": {"messages": 0, "window_secs": 60}}),
        ),
        (
            "rate_limit.window_secs",
            json!({"rate_limit": {"messages": 5, "window_secs": 0}}),
        ),
        ("session_timeout_mins", json!({"session_timeout_mins": 1})),
        (
            "system_prompt",
            json!({"system_prompt": "x".repeat(20_001)}),
        ),
        (
            "agent_context",
            json!({"agent_context": {"blob": "x".repeat(17 * 1024)}}),
        ),
        ("persistence", json!({"persistence": "forever"})),
        ("locale", json!({"locale": "english please"})),
    ];
    for (field, overrides) in cases {
        let mut body = json!({"slug": "valid", "title": "Valid"});
        for (key, value) in overrides.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, answer) = admin.create(body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{field}: {message}"
        );
    }
    // An agent_context that is not an object is a malformed body.
    let (status, _) = admin
        .create(json!({"slug": "valid", "title": "V", "agent_context": [1]}))
        .await;
    assert!(status.is_client_error());
    // Nothing was stored.
    let (status, _) = admin.call(Method::GET, "/interfaces/valid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn patch_changes_only_the_fields_present_and_renames(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    admin.create(everything()).await;

    let (status, patched) = admin
        .patch(
            "help-desk",
            json!({"title": "Helpdesk", "rate_limit": {"messages": 20, "window_secs": 60},
                   "locale": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["title"], "Helpdesk");
    assert_eq!(patched["rate_limit"]["messages"], 20);
    assert_eq!(patched["locale"], Value::Null);
    // Untouched fields keep their values.
    assert_eq!(patched["welcome_message"], "Hi! How can we help?");
    assert_eq!(patched["agent_context"]["plan"], "pro");
    assert_eq!(patched["name"], "Support (EU)");

    // The same validation as create.
    let (status, refused) = admin
        .patch("help-desk", json!({"allowed_origins": ["nope"]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("allowed_origins:")
    );
    let (status, _) = admin.patch("help-desk", json!({"colour": "#000"})).await;
    assert!(status.is_client_error(), "unknown fields are refused");

    // Rename: the old slug is gone, the new one answers; a taken slug is a conflict.
    let (status, renamed) = admin.patch("help-desk", json!({"slug": "support"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["slug"], "support");
    assert_eq!(renamed["id"], patched["id"]);
    let (status, _) = admin.call(Method::GET, "/interfaces/help-desk", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, taken) = admin.patch("support", json!({"slug": "demo"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(taken["error"]["code"], "slug_taken");
    let (status, _) = admin.patch("nope", json!({"title": "X"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let actions = admin.audit_actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "interface.update").count(),
        2
    );
}

async fn duplicate_makes_a_draft_copy_under_a_new_slug(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    admin.create(everything()).await;
    admin
        .call(Method::POST, "/interfaces/help-desk/publish", None)
        .await;
    let (status, copy) = admin
        .call(
            Method::POST,
            "/interfaces/help-desk/duplicate",
            Some(json!({"slug": "help-desk-2", "title": "Help desk (copy)"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{copy}");
    assert_eq!(copy["status"], "draft");
    assert_eq!(copy["title"], "Help desk (copy)");
    assert_eq!(copy["agent_context"]["plan"], "pro");
    assert_eq!(copy["suggested_prompts"][0]["icon"], "📦");
    let (status, _) = admin
        .call(
            Method::POST,
            "/interfaces/help-desk/duplicate",
            Some(json!({"slug": "help-desk-2"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = admin
        .call(
            Method::POST,
            "/interfaces/nope/duplicate",
            Some(json!({"slug": "other"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        admin
            .audit_actions()
            .await
            .contains(&"interface.duplicate".to_string())
    );
}

async fn delete_takes_the_sessions_with_it_and_says_how_many(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    for _ in 0..2 {
        let response = http()
            .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let (status, deleted) = admin.call(Method::DELETE, "/interfaces/demo", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted, json!({"deleted": "demo", "sessions": 2}));
    assert_eq!(
        public_config(&bridge, "demo", Preview::None).await,
        StatusCode::NOT_FOUND
    );
    let (status, _) = admin.call(Method::DELETE, "/interfaces/demo", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        admin
            .audit_actions()
            .await
            .contains(&"interface.delete".to_string())
    );
}

async fn a_draft_is_hidden_except_with_a_valid_preview_token(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    admin.create(everything()).await;
    assert_eq!(
        public_config(&bridge, "help-desk", Preview::None).await,
        StatusCode::NOT_FOUND
    );

    let (status, preview) = admin
        .call(Method::POST, "/interfaces/help-desk/preview", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = preview["token"].as_str().unwrap();
    assert!(preview["expires_at"].is_string());
    assert_eq!(
        public_config(&bridge, "help-desk", Preview::Header(token)).await,
        StatusCode::OK
    );
    assert_eq!(
        public_config(&bridge, "help-desk", Preview::Query(token)).await,
        StatusCode::OK
    );
    // A session can be opened with it, and the chat works from then on.
    let opened = http()
        .post(format!(
            "{}/api/v1/interfaces/help-desk/sessions",
            bridge.url
        ))
        .header("X-Airlock-Preview", token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    // The page hands the token to the widget through its own URL.
    let page = http()
        .get(format!("{}/c/help-desk?preview={token}", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    // Browsers may send the header cross-origin (the embed on another site).
    let preflight = http()
        .request(
            Method::OPTIONS,
            format!("{}/api/v1/interfaces/help-desk", bridge.url),
        )
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-airlock-preview")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let allowed = preflight
        .headers()
        .get("access-control-allow-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(
        allowed.contains("x-airlock-preview") || allowed == "*",
        "{allowed}"
    );

    // A token for another interface, a forged one, and an expired one are refused.
    admin
        .create(json!({"slug": "other", "title": "Other"}))
        .await;
    assert_eq!(
        public_config(&bridge, "other", Preview::Header(token)).await,
        StatusCode::NOT_FOUND
    );
    let (expiry, signature) = token.rsplit_once('_').unwrap();
    let forged = format!("{expiry}_{}", "A".repeat(signature.len()));
    assert_eq!(
        public_config(&bridge, "help-desk", Preview::Header(&forged)).await,
        StatusCode::NOT_FOUND
    );
    let extended = token.replacen("alk_p_", "alk_p_9", 1);
    assert_eq!(
        public_config(&bridge, "help-desk", Preview::Header(&extended)).await,
        StatusCode::NOT_FOUND
    );
    bridge.clock.as_ref().unwrap().advance_ms(16 * 60 * 1000);
    assert_eq!(
        public_config(&bridge, "help-desk", Preview::Header(token)).await,
        StatusCode::NOT_FOUND
    );
    assert!(
        admin
            .audit_actions()
            .await
            .contains(&"interface.preview".to_string())
    );
}

async fn embed_snippets_point_at_the_bridge(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    let (_, demo) = admin.call(Method::GET, "/interfaces/demo", None).await;
    let embed = &demo["embed"];
    assert_eq!(embed["link"], format!("{}/c/demo", bridge.url));
    let script = embed["script"].as_str().unwrap();
    assert!(
        script.contains(&format!("src=\"{}/widget.js\"", bridge.url)),
        "{script}"
    );
    assert!(script.contains("data-interface=\"demo\""), "{script}");
    let iframe = embed["iframe"].as_str().unwrap();
    assert!(
        iframe.contains(&format!("src=\"{}/embed/demo\"", bridge.url)),
        "{iframe}"
    );
    // The snippets work: each URL they name answers.
    for url in [
        format!("{}/widget.js", bridge.url),
        format!("{}/embed/demo", bridge.url),
        format!("{}/c/demo", bridge.url),
    ] {
        assert_eq!(
            http().get(&url).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    // The public config carries prompts as objects.
    let public: Value = http()
        .get(format!("{}/api/v1/interfaces/demo", bridge.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        public["suggested_prompts"][0]["text"].is_string(),
        "{public}"
    );
}

/// Two connector keys, the demo interface served by the first only, and a visitor's message
/// waiting there. Returns the two connectors (as the admin API made them) and the visitor.
async fn a_message_for_the_first_of_two_connectors(
    bridge: &TestBridge,
    admin: &Admin,
) -> (Value, Value, Value) {
    let (_, first) = admin
        .call(Method::POST, "/connectors", Some(json!({"name": "first"})))
        .await;
    let (_, second) = admin
        .call(Method::POST, "/connectors", Some(json!({"name": "second"})))
        .await;
    let (status, _) = admin
        .patch("demo", json!({"connectors": [first["id"]]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let visitor = http()
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let sent = http()
        .post(format!(
            "{}/api/v1/sessions/{}/messages",
            bridge.url,
            visitor["session_id"].as_str().unwrap()
        ))
        .bearer_auth(visitor["session_token"].as_str().unwrap())
        .json(&json!({"client_id": "c1", "text": "Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    (first, second, visitor)
}

/// The connector the admin API made (`connector`, with its key), calling `bridge`.
fn client(bridge: &TestBridge, connector: &Value) -> Connector {
    Connector {
        http: http(),
        base: bridge.url.clone(),
        key: connector["key"].as_str().unwrap().to_owned(),
    }
}

async fn an_interface_listing_connectors_is_served_only_by_them(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    let (first, second, visitor) = a_message_for_the_first_of_two_connectors(&bridge, &admin).await;
    let (first, second) = (client(&bridge, &first), client(&bridge, &second));
    let refused = second.claim_up_to(5, 0).await;
    assert_eq!(refused.items, [], "an unlisted connector gets nothing");
    let served = first.claim_up_to(5, 0).await;
    assert_eq!(served.items.len(), 1, "{served:?}");
    assert_eq!(served.items[0].session.interface, "demo");
    // The interface's agent settings travel with the item.
    admin
        .patch(
            "demo",
            json!({"system_prompt": "Be {interface_title}.", "agent_context": {"k": "v"}}),
        )
        .await;
    let second_send = http()
        .post(format!(
            "{}/api/v1/sessions/{}/messages",
            bridge.url,
            visitor["session_id"].as_str().unwrap()
        ))
        .bearer_auth(visitor["session_token"].as_str().unwrap())
        .json(&json!({"client_id": "c2", "text": "Again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(second_send.status(), StatusCode::ACCEPTED);
    let lease = &served.items[0].lease_id;
    let replied = first
        .call(&format!("leases/{lease}/reply"), json!({"text": "Hi"}))
        .await;
    assert!(replied.status().is_success());
    let next = first.claim_up_to(5, 0).await;
    let session = &next.items[0].session;
    assert_eq!(
        session.system_prompt.as_deref(),
        Some("Be {interface_title}.")
    );
    assert_eq!(
        session.agent_context.clone().map(Value::Object),
        Some(json!({"k": "v"}))
    );

    // Clearing the list lets any connector serve it again.
    let (_, cleared) = admin.patch("demo", json!({"connectors": []})).await;
    assert_eq!(cleared["connectors"], json!([]));
}

/// A connector added to an interface's list gets the item it could not lease before at once,
/// though its claim is already waiting (and its last claim found nothing).
async fn a_connector_added_to_an_interface_gets_its_waiting_item_at_once(bridge: TestBridge) {
    let admin = Admin::new(&bridge);
    let (first, second, _) = a_message_for_the_first_of_two_connectors(&bridge, &admin).await;
    let waiter = client(&bridge, &second);
    assert_eq!(waiter.claim_up_to(5, 0).await.items, [], "not listed yet");
    let waiting = tokio::spawn(async move { waiter.claim_up_to(5, 20).await });
    // Past the second for which its empty claim is believed: the claim has looked again and waits.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let added_at = std::time::Instant::now();
    let (status, _) = admin
        .patch("demo", json!({"connectors": [first["id"], second["id"]]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let served = waiting.await.unwrap();
    assert_eq!(served.items.len(), 1, "{served:?}");
    let waited = added_at.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(3),
        "the waiting claim got the item {waited:?} after the change"
    );
}

on_both_backends!(
    an_interface_is_created_with_every_field_and_read_back,
    each_invalid_field_is_refused_with_its_name,
    patch_changes_only_the_fields_present_and_renames,
    duplicate_makes_a_draft_copy_under_a_new_slug,
    delete_takes_the_sessions_with_it_and_says_how_many,
    a_draft_is_hidden_except_with_a_valid_preview_token,
    embed_snippets_point_at_the_bridge,
    an_interface_listing_connectors_is_served_only_by_them,
    a_connector_added_to_an_interface_gets_its_waiting_item_at_once,
);
