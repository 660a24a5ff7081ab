//! The PHP web chat bridge's API, over real HTTP: exactly what its deployed clients send — the
//! Broca platform's `web_chat` plugin (`inbox`, `outbox`) and the old widget (`messages`, a
//! `responses` poll every 2 seconds) — with every envelope, field name and JSON type checked;
//! leases behind `inbox` (a crashed poller loses nothing); compat and native sessions served by
//! either kind of agent; and the import of an old bridge's database.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use airlock_bridge::clock::{Clock, ManualClock};
use airlock_bridge::store::{StoreOptions, sqlite_url};
use airlock_bridge::testing::TestBridge;
use common::http::{Connector, Visitor, http};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    the_plugin_reads_the_inbox_and_answers_through_the_outbox,
    the_old_widget_sends_and_polls_for_responses_every_two_seconds,
    a_poller_that_reads_the_inbox_and_crashes_loses_nothing,
    a_message_never_answered_ends_in_a_clear_failure_for_the_old_widget,
    an_outbox_naming_its_message_id_completes_that_message,
    an_outbox_with_nothing_held_stores_a_message_from_the_agent,
    a_native_connector_answers_a_compat_session,
    a_compat_poller_answers_a_native_session,
    compat_sessions_are_sessions_in_the_admin_api,
    the_old_admin_actions_list_sessions_and_their_messages,
    the_message_rate_limit_is_enforced,
    importing_a_php_bridge_database_through_the_library_keeps_its_history_once,
);

/// What the plugin sends on every call besides its key.
const PLUGIN_USER_AGENT: &str = "Broca2-WebChat-Plugin/1.0";
/// A session id as the old widget makes them.
const WIDGET_SESSION: &str = "session_mdwj6vj5_okiiczierw";
/// Text the old bridge would have HTML-escaped at rest.
const TRICKY_TEXT: &str = "Is <b>bold</b> & \"quoted\" it's <script>x</script> fine?";

/// A client of the old API on one bridge.
struct Compat {
    http: reqwest::Client,
    base: String,
}

impl Compat {
    fn new(bridge: &TestBridge) -> Compat {
        Compat {
            http: http(),
            base: bridge.url.clone(),
        }
    }

    fn url(&self, query: &str) -> String {
        format!("{}/api/v1/?{query}", self.base)
    }

    /// The plugin's `GET /api/v1/?action=inbox&limit=50&offset=0`, headers and all.
    async fn plugin_inbox(&self, key: &str) -> Value {
        let response = self
            .http
            .get(self.url("action=inbox&limit=50&offset=0"))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .header("User-Agent", PLUGIN_USER_AGENT)
            .send()
            .await
            .unwrap();
        success(response, "Messages retrieved successfully").await
    }

    /// The plugin's `POST /api/v1/?action=outbox` with `{"session_id", "response"}` only.
    async fn plugin_outbox(&self, key: &str, session_id: &str, text: &str) -> Value {
        let response = self
            .http
            .post(self.url("action=outbox"))
            .bearer_auth(key)
            .header("User-Agent", PLUGIN_USER_AGENT)
            .json(&json!({"session_id": session_id, "response": text}))
            .send()
            .await
            .unwrap();
        success(response, "Response sent successfully").await
    }

    /// The old widget's `POST ?action=messages` (no key).
    async fn widget_send(&self, session_id: &str, text: &str) -> reqwest::Response {
        self.http
            .post(self.url("action=messages"))
            .json(&json!({"session_id": session_id, "message": text}))
            .send()
            .await
            .unwrap()
    }

    /// The old widget's `GET ?action=responses&session_id=…&since=…` (no key).
    async fn widget_poll(&self, session_id: &str, since: Option<&str>) -> Value {
        let mut query = format!("action=responses&session_id={session_id}");
        if let Some(since) = since {
            // As the browser's URLSearchParams writes it.
            let since: String = url::form_urlencoded::byte_serialize(since.as_bytes()).collect();
            query.push_str(&format!("&since={since}"));
        }
        let response = self.http.get(self.url(&query)).send().await.unwrap();
        success(response, "Responses retrieved successfully").await
    }

    async fn admin_get(&self, key: &str, query: &str) -> reqwest::Response {
        self.http
            .get(self.url(query))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }
}

/// The set of a JSON object's keys.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// Asserts an ISO-8601 time.
fn assert_time(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a string: {value}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "ISO-8601: {text}"
    );
}

/// Asserts the CORS header every compat answer carries.
fn assert_cors(response: &reqwest::Response) {
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "*",
        "CORS on {}",
        response.url()
    );
}

/// Asserts a 200 with the success envelope `{success, message, timestamp, data}`; returns `data`.
async fn success(response: reqwest::Response, message: &str) -> Value {
    assert_eq!(response.status(), StatusCode::OK, "{}", response.url());
    assert_cors(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        keys(&body),
        set(&["success", "message", "timestamp", "data"]),
        "{body}"
    );
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["message"], json!(message));
    assert_time(&body["timestamp"]);
    assert!(body["data"].is_object(), "{body}");
    body["data"].clone()
}

/// Asserts the error envelope `{success: false, error, code, timestamp}`.
async fn failure(response: reqwest::Response, status: StatusCode, error: &str) {
    assert_eq!(response.status(), status, "{}", response.url());
    assert_cors(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        keys(&body),
        set(&["success", "error", "code", "timestamp"]),
        "{body}"
    );
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["error"], json!(error));
    assert_eq!(body["code"], json!(status.as_u16()));
    assert_time(&body["timestamp"]);
}

/// Asserts an inbox item's exact shape; returns it.
fn assert_inbox_item(item: &Value) -> &Value {
    assert_eq!(
        keys(item),
        set(&["id", "session_id", "message", "timestamp", "uid"]),
        "{item}"
    );
    assert!(item["id"].is_i64(), "{item}");
    assert!(item["session_id"].is_string(), "{item}");
    assert!(item["message"].is_string(), "{item}");
    assert_time(&item["timestamp"]);
    assert!(item["uid"].is_string(), "{item}");
    item
}

fn assert_uid(uid: &Value) {
    let uid = uid.as_str().unwrap();
    assert_eq!(uid.len(), 16, "{uid}");
    assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()), "{uid}");
}

/// Asserts a response item's exact shape; returns it.
fn assert_response_item(item: &Value) -> &Value {
    assert_eq!(
        keys(item),
        set(&["id", "session_id", "response", "timestamp", "message_id"]),
        "{item}"
    );
    assert!(item["id"].is_i64(), "{item}");
    assert!(item["session_id"].is_string(), "{item}");
    assert!(item["response"].is_string(), "{item}");
    assert_time(&item["timestamp"]);
    assert!(
        item["message_id"].is_i64() || item["message_id"].is_null(),
        "{item}"
    );
    item
}

fn clock(bridge: &TestBridge) -> &ManualClock {
    bridge.clock.as_deref().expect("a manual clock")
}

/// The widget's message, checked field by field; returns `data`.
async fn widget_sends(compat: &Compat, session_id: &str, text: &str) -> Value {
    let data = success(
        compat.widget_send(session_id, text).await,
        "Message submitted successfully",
    )
    .await;
    assert_eq!(
        keys(&data),
        set(&[
            "message_id",
            "session_id",
            "message",
            "timestamp",
            "uid",
            "is_new_user"
        ]),
        "{data}"
    );
    assert!(data["message_id"].is_i64());
    assert_eq!(data["session_id"], json!(session_id));
    assert_eq!(data["message"], json!(text));
    assert_time(&data["timestamp"]);
    assert_uid(&data["uid"]);
    assert!(data["is_new_user"].is_boolean());
    data
}

async fn the_plugin_reads_the_inbox_and_answers_through_the_outbox(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let sent = widget_sends(&compat, WIDGET_SESSION, TRICKY_TEXT).await;

    let data = compat.plugin_inbox(&key).await;
    assert_eq!(keys(&data), set(&["messages", "pagination"]));
    let pagination = &data["pagination"];
    assert_eq!(
        keys(pagination),
        set(&["total", "limit", "offset", "has_more"])
    );
    assert!(pagination["total"].is_i64());
    assert_eq!(pagination["limit"], json!(50));
    assert_eq!(pagination["offset"], json!(0));
    assert_eq!(pagination["has_more"], json!(false));
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{data}");
    let item = assert_inbox_item(&messages[0]);
    assert_eq!(item["id"], sent["message_id"]);
    assert_eq!(item["session_id"], json!(WIDGET_SESSION));
    assert_eq!(
        item["message"],
        json!(TRICKY_TEXT),
        "stored and returned as sent"
    );
    assert_eq!(item["uid"], sent["uid"]);

    let out = compat
        .plugin_outbox(&key, WIDGET_SESSION, "Sure: <i>yes</i> & no")
        .await;
    assert_eq!(keys(&out), set(&["response_id", "session_id", "timestamp"]));
    assert!(out["response_id"].is_i64());
    assert_eq!(out["session_id"], json!(WIDGET_SESSION));
    assert_time(&out["timestamp"]);

    let polled = compat.widget_poll(WIDGET_SESSION, None).await;
    assert_eq!(keys(&polled), set(&["session_id", "responses"]));
    assert_eq!(polled["session_id"], json!(WIDGET_SESSION));
    let responses = polled["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1, "{polled}");
    let response = assert_response_item(&responses[0]);
    assert_eq!(response["id"], out["response_id"]);
    assert_eq!(response["response"], json!("Sure: <i>yes</i> & no"));
    assert_eq!(response["message_id"], sent["message_id"]);
    assert_eq!(response["session_id"], json!(WIDGET_SESSION));

    // Answered: nothing more for the plugin.
    let again = compat.plugin_inbox(&key).await;
    assert_eq!(again["messages"], json!([]));
}

async fn the_old_widget_sends_and_polls_for_responses_every_two_seconds(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let session = "session_widget_2s";

    // The widget starts polling before its visitor writes anything.
    let before = compat.widget_poll(session, None).await;
    assert_eq!(before, json!({"session_id": session, "responses": []}));

    let first = widget_sends(&compat, session, "hello").await;
    assert_eq!(first["is_new_user"], json!(true));
    let second = widget_sends(&compat, session, "anyone there?").await;
    assert_eq!(second["is_new_user"], json!(false));
    assert_eq!(second["uid"], first["uid"], "one uid per session");
    assert!(second["message_id"].as_i64() > first["message_id"].as_i64());

    let mut since = first["timestamp"].as_str().unwrap().to_string();
    clock(&bridge).advance_ms(2_000);
    assert_eq!(
        compat.widget_poll(session, Some(&since)).await["responses"],
        json!([])
    );

    // The agent answers the first message; the next 2-second poll shows it, once.
    let inbox = compat.plugin_inbox(&key).await;
    assert_eq!(
        inbox["messages"].as_array().unwrap().len(),
        1,
        "one at a time per session"
    );
    assert_eq!(inbox["messages"][0]["message"], json!("hello"));
    clock(&bridge).advance_ms(2_000);
    compat.plugin_outbox(&key, session, "Hi!").await;
    let polled = compat.widget_poll(session, Some(&since)).await;
    let responses = polled["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1, "{polled}");
    assert_eq!(responses[0]["response"], json!("Hi!"));
    assert_eq!(responses[0]["message_id"], first["message_id"]);
    since = responses[0]["timestamp"].as_str().unwrap().to_string();

    clock(&bridge).advance_ms(2_000);
    assert_eq!(
        compat.widget_poll(session, Some(&since)).await["responses"],
        json!([]),
        "a response is shown once"
    );

    // The second message comes next; `since` may also be written as SQLite wrote times.
    let inbox = compat.plugin_inbox(&key).await;
    assert_eq!(inbox["messages"][0]["message"], json!("anyone there?"));
    clock(&bridge).advance_ms(1_000);
    let sql_since = chrono::DateTime::parse_from_rfc3339(&since)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    clock(&bridge).advance_ms(1_000);
    compat.plugin_outbox(&key, session, "Yes.").await;
    let polled = compat.widget_poll(session, Some(&sql_since)).await;
    let texts: Vec<&Value> = polled["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["response"])
        .collect();
    assert!(texts.contains(&&json!("Yes.")), "{polled}");
    let polled = compat.widget_poll(session, Some(&since)).await;
    assert_eq!(polled["responses"].as_array().unwrap().len(), 1, "{polled}");
    assert_eq!(polled["responses"][0]["response"], json!("Yes."));
    assert_eq!(polled["responses"][0]["message_id"], second["message_id"]);
}

async fn a_poller_that_reads_the_inbox_and_crashes_loses_nothing(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let sent = widget_sends(&compat, WIDGET_SESSION, "please remember me").await;

    // The poller reads the message, then dies before answering.
    let read = compat.plugin_inbox(&key).await;
    assert_eq!(read["messages"][0]["id"], sent["message_id"]);
    // While its lease runs, nobody else is handed the message.
    assert_eq!(compat.plugin_inbox(&key).await["messages"], json!([]));

    // The restarted poller gets the same message once the lease ran out.
    clock(&bridge).advance_ms(300_000 + 1);
    let again = compat.plugin_inbox(&key).await;
    let messages = again["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{again}");
    assert_eq!(messages[0]["id"], sent["message_id"]);
    assert_eq!(messages[0]["message"], json!("please remember me"));

    compat
        .plugin_outbox(&key, WIDGET_SESSION, "I remember.")
        .await;
    let polled = compat.widget_poll(WIDGET_SESSION, None).await;
    assert_eq!(polled["responses"].as_array().unwrap().len(), 1, "{polled}");
    assert_eq!(compat.plugin_inbox(&key).await["messages"], json!([]));
    clock(&bridge).advance_ms(300_000 + 1);
    assert_eq!(
        compat.plugin_inbox(&key).await["messages"],
        json!([]),
        "answered once, never offered again"
    );
}

async fn a_message_never_answered_ends_in_a_clear_failure_for_the_old_widget(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let sent = widget_sends(&compat, WIDGET_SESSION, "hello?").await;
    // Five deliveries (the default AIRLOCK_MAX_ATTEMPTS), none answered.
    for _ in 0..5 {
        let read = compat.plugin_inbox(&key).await;
        assert_eq!(read["messages"][0]["id"], sent["message_id"], "{read}");
        clock(&bridge).advance_ms(300_000 + 1);
    }
    assert_eq!(compat.plugin_inbox(&key).await["messages"], json!([]));
    let polled = compat.widget_poll(WIDGET_SESSION, None).await;
    let response = assert_response_item(&polled["responses"][0]);
    assert_eq!(
        response["response"],
        json!("The agent could not answer this message. Please try again.")
    );
    assert_eq!(response["message_id"], sent["message_id"]);
}

async fn an_outbox_naming_its_message_id_completes_that_message(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let sent = widget_sends(&compat, WIDGET_SESSION, "question").await;
    compat.plugin_inbox(&key).await;
    let response = compat
        .http
        .post(compat.url("action=outbox"))
        .bearer_auth(&key)
        .json(&json!({
            "session_id": WIDGET_SESSION,
            "response": "answer",
            "message_id": sent["message_id"],
            "timestamp": "2025-08-04T03:17:33.123456",
        }))
        .send()
        .await
        .unwrap();
    success(response, "Response sent successfully").await;
    let polled = compat.widget_poll(WIDGET_SESSION, None).await;
    assert_eq!(polled["responses"][0]["message_id"], sent["message_id"]);
}

async fn an_outbox_with_nothing_held_stores_a_message_from_the_agent(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    widget_sends(&compat, WIDGET_SESSION, "hi").await;
    // Nothing read from the inbox: the response is the agent speaking first.
    compat
        .plugin_outbox(&key, WIDGET_SESSION, "A word from the agent")
        .await;
    let polled = compat.widget_poll(WIDGET_SESSION, None).await;
    let response = assert_response_item(&polled["responses"][0]);
    assert_eq!(response["response"], json!("A word from the agent"));
    assert_eq!(response["message_id"], Value::Null);
    // The visitor's message is still owed an answer.
    let inbox = compat.plugin_inbox(&key).await;
    assert_eq!(inbox["messages"][0]["message"], json!("hi"));

    let unknown = compat
        .http
        .post(compat.url("action=outbox"))
        .bearer_auth(&key)
        .json(&json!({"session_id": "never_seen", "response": "x"}))
        .send()
        .await
        .unwrap();
    failure(unknown, StatusCode::NOT_FOUND, "Session not found").await;
}

async fn a_native_connector_answers_a_compat_session(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let sent = widget_sends(&compat, WIDGET_SESSION, TRICKY_TEXT).await;
    let connector = Connector::new(&bridge, "native").await;
    let claim = connector.claim_up_to(10, 0).await;
    assert_eq!(claim.items.len(), 1);
    let item = &claim.items[0];
    assert_eq!(item.session.interface, "web-chat");
    assert_eq!(item.session.visitor_id, sent["uid"].as_str().unwrap());
    assert_eq!(item.message.text, TRICKY_TEXT);
    let reply = connector
        .call(
            &format!("leases/{}/reply", item.lease_id),
            json!({"text": "native answer"}),
        )
        .await;
    assert_eq!(reply.status(), StatusCode::OK);

    let polled = compat.widget_poll(WIDGET_SESSION, None).await;
    let response = assert_response_item(&polled["responses"][0]);
    assert_eq!(response["response"], json!("native answer"));
    assert_eq!(response["message_id"], sent["message_id"]);
}

async fn a_compat_poller_answers_a_native_session(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    assert_eq!(
        visitor.send("c1", "native hello").await.status(),
        StatusCode::ACCEPTED
    );

    let inbox = compat.plugin_inbox(&key).await;
    let item = assert_inbox_item(&inbox["messages"][0]);
    assert_eq!(item["session_id"], json!(visitor.session.session_id));
    assert_eq!(item["uid"], json!(visitor.session.visitor_id));
    assert_eq!(item["message"], json!("native hello"));

    compat
        .plugin_outbox(&key, &visitor.session.session_id, "compat answer")
        .await;
    let list = visitor.poll(0, 0).await;
    let reply = list
        .messages
        .iter()
        .find(|m| m.role == airlock_shared::Role::Assistant)
        .expect("the reply");
    assert_eq!(reply.text, "compat answer");
    assert_eq!(reply.status, airlock_shared::MessageStatus::Complete);

    // The unauthenticated widget calls never reach a native session.
    let polled = compat.widget_poll(&visitor.session.session_id, None).await;
    assert_eq!(polled["responses"], json!([]));
}

async fn compat_sessions_are_sessions_in_the_admin_api(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let sent = widget_sends(&compat, WIDGET_SESSION, TRICKY_TEXT).await;
    compat.plugin_inbox(&key).await;
    compat.plugin_outbox(&key, WIDGET_SESSION, "answer").await;

    let page: Value =
        serde_json::from_str(&admin_read(&bridge, "sessions?interface=web-chat").await).unwrap();
    let sessions = page["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{page}");
    assert_eq!(sessions[0]["interface"], json!("web-chat"));
    assert_eq!(sessions[0]["visitor_id"], sent["uid"]);
    let id = sessions[0]["id"].as_str().unwrap();

    let transcript: Value =
        serde_json::from_str(&admin_read(&bridge, &format!("sessions/{id}")).await).unwrap();
    let messages = transcript["messages"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("user", TRICKY_TEXT), ("assistant", "answer")]);

    let export = admin_read(&bridge, "sessions/export?format=jsonl").await;
    assert!(export.contains("web-chat"), "{export}");
    assert!(export.contains("answer"), "{export}");
}

async fn the_old_admin_actions_list_sessions_and_their_messages(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    let key = bridge.connector_key("broca").await;
    let sent = widget_sends(&compat, WIDGET_SESSION, "one").await;
    widget_sends(&compat, "other_session", "two").await;
    compat.plugin_inbox(&key).await;
    compat
        .plugin_outbox(&key, WIDGET_SESSION, "reply one")
        .await;

    let data = success(
        compat
            .admin_get(&bridge.admin_key, "action=sessions&limit=10&active=true")
            .await,
        "Sessions retrieved successfully",
    )
    .await;
    assert_eq!(keys(&data), set(&["sessions", "pagination"]));
    assert_eq!(
        data["pagination"],
        json!({"total": 2, "limit": 10, "offset": 0, "has_more": false})
    );
    let sessions = data["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let session = sessions
        .iter()
        .find(|s| s["id"] == json!(WIDGET_SESSION))
        .unwrap();
    assert_eq!(
        keys(session),
        set(&[
            "id",
            "uid",
            "created_at",
            "last_active",
            "ip_address",
            "metadata",
            "message_count",
            "response_count"
        ])
    );
    assert_eq!(session["uid"], sent["uid"]);
    for field in ["created_at", "last_active"] {
        let text = session[field].as_str().unwrap();
        assert!(
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{text}"
        );
    }
    assert!(session["ip_address"].is_string());
    assert_eq!(session["metadata"], json!([]));
    assert_eq!(session["message_count"], json!(1));
    assert_eq!(session["response_count"], json!(1));

    let data = success(
        compat
            .admin_get(
                &bridge.admin_key,
                &format!("action=session_messages&session_id={WIDGET_SESSION}"),
            )
            .await,
        "Session messages retrieved",
    )
    .await;
    assert_eq!(keys(&data), set(&["session", "messages", "responses"]));
    assert_eq!(
        keys(&data["session"]),
        set(&[
            "id",
            "uid",
            "created_at",
            "last_active",
            "ip_address",
            "metadata"
        ])
    );
    assert_eq!(data["session"]["id"], json!(WIDGET_SESSION));
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        keys(&messages[0]),
        set(&["id", "session_id", "message", "timestamp"])
    );
    assert_eq!(messages[0]["id"], sent["message_id"]);
    assert_eq!(messages[0]["message"], json!("one"));
    let responses = data["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1);
    assert_response_item(&responses[0]);
    assert_eq!(responses[0]["response"], json!("reply one"));

    failure(
        compat
            .admin_get(
                &bridge.admin_key,
                "action=session_messages&session_id=nobody_here",
            )
            .await,
        StatusCode::NOT_FOUND,
        "Session not found",
    )
    .await;
    // The connector key is not an admin key.
    failure(
        compat.admin_get(&key, "action=sessions").await,
        StatusCode::UNAUTHORIZED,
        "Authentication required",
    )
    .await;
}

async fn the_message_rate_limit_is_enforced(bridge: TestBridge) {
    let compat = Compat::new(&bridge);
    // The compat interface's default: 10 messages per 60 s per session.
    for n in 0..10 {
        widget_sends(&compat, WIDGET_SESSION, &format!("message {n}")).await;
    }
    let refused = compat.widget_send(WIDGET_SESSION, "one too many").await;
    assert!(refused.headers().contains_key("retry-after"));
    failure(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit exceeded. Please try again later.",
    )
    .await;
    let data = success(
        compat
            .admin_get(
                &bridge.admin_key,
                &format!("action=session_messages&session_id={WIDGET_SESSION}"),
            )
            .await,
        "Session messages retrieved",
    )
    .await;
    assert_eq!(
        data["messages"].as_array().unwrap().len(),
        10,
        "the refused message was not stored"
    );
}

#[tokio::test]
async fn every_action_answers_in_the_old_envelope_on_both_paths() {
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("broca").await;
    let http = http();
    for path in ["/api/v1/", "/api/v1/index.php"] {
        let url = |query: &str| format!("{}{path}?{query}", bridge.url);
        let get = |query: &str, key: Option<&str>| {
            let mut request = http.get(url(query));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            request.send()
        };
        let post = |query: &str, key: Option<&str>, body: Value| {
            let mut request = http.post(url(query)).json(&body);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            request.send()
        };

        failure(
            get("action=nope", None).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "Invalid action",
        )
        .await;
        failure(
            get("", None).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "Invalid action",
        )
        .await;
        // The old bridge's `config` handed out its keys; Airlock has no such action.
        failure(
            get("action=config", Some(&bridge.admin_key)).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "Invalid action",
        )
        .await;
        failure(
            get("action=messages", None).await.unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        )
        .await;
        failure(
            post("action=inbox", Some(&key), json!({})).await.unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        )
        .await;
        failure(
            http.delete(url("action=inbox")).send().await.unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        )
        .await;
        for (query, method_post) in [
            ("action=inbox", false),
            ("action=outbox", true),
            ("action=sessions", false),
            ("action=session_messages&session_id=abc", false),
        ] {
            for credential in [None, Some("wrong-key")] {
                let response = if method_post {
                    post(
                        query,
                        credential,
                        json!({"session_id": "abc", "response": "x"}),
                    )
                    .await
                    .unwrap()
                } else {
                    get(query, credential).await.unwrap()
                };
                failure(
                    response,
                    StatusCode::UNAUTHORIZED,
                    "Authentication required",
                )
                .await;
            }
        }

        let preflight = http
            .request(reqwest::Method::OPTIONS, url("action=messages"))
            .header("Origin", "https://shop.example")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), StatusCode::OK);
        assert_cors(&preflight);

        // Bad input: the old texts.
        for (body, error) in [
            (json!({"message": "x"}), "Session ID is required"),
            (
                json!({"session_id": "has spaces", "message": "x"}),
                "Invalid session ID format",
            ),
            (
                json!({"session_id": "a".repeat(65), "message": "x"}),
                "Invalid session ID format",
            ),
            (json!({"session_id": "ok_id"}), "Message is required"),
            (
                json!({"session_id": "ok_id", "message": "  "}),
                "Message is required",
            ),
            (
                json!({"session_id": "ok_id", "message": "x".repeat(10_001)}),
                "Message too long (maximum 10000 bytes)",
            ),
        ] {
            failure(
                post("action=messages", None, body).await.unwrap(),
                StatusCode::BAD_REQUEST,
                error,
            )
            .await;
        }
        let not_json = http
            .post(url("action=messages"))
            .body("session_id=x")
            .send()
            .await
            .unwrap();
        failure(not_json, StatusCode::BAD_REQUEST, "Invalid JSON").await;
        failure(
            get("action=responses&session_id=ok_id&since=yesterday", None)
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "Invalid since timestamp",
        )
        .await;

        // And the happy path answers the same on this path.
        let sent = post(
            "action=messages",
            None,
            json!({"session_id": "path_check", "message": "x".repeat(10_000)}),
        )
        .await
        .unwrap();
        success(sent, "Message submitted successfully").await;
        let inbox = get("action=inbox&limit=50&offset=0", Some(&key))
            .await
            .unwrap();
        success(inbox, "Messages retrieved successfully").await;
    }
    bridge.shutdown().await;
}

#[tokio::test]
async fn no_answer_ever_carries_a_key() {
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("broca").await;
    let compat = Compat::new(&bridge);
    let mut bodies = Vec::new();
    bodies.push(
        compat
            .widget_send(WIDGET_SESSION, "hi")
            .await
            .text()
            .await
            .unwrap(),
    );
    for (query, credential) in [
        ("action=inbox", Some(&key)),
        ("action=sessions", Some(&bridge.admin_key)),
        (
            &*format!("action=session_messages&session_id={WIDGET_SESSION}"),
            Some(&bridge.admin_key),
        ),
        (
            &*format!("action=responses&session_id={WIDGET_SESSION}"),
            None,
        ),
        ("action=config", Some(&bridge.admin_key)),
        ("action=config", Some(&key)),
    ] {
        let mut request = compat.http.get(compat.url(query));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        bodies.push(request.send().await.unwrap().text().await.unwrap());
    }
    let out = compat
        .http
        .post(compat.url("action=outbox"))
        .bearer_auth(&key)
        .json(&json!({"session_id": WIDGET_SESSION, "response": "ok"}))
        .send()
        .await
        .unwrap();
    bodies.push(out.text().await.unwrap());
    for body in bodies {
        assert!(!body.contains(&key), "{body}");
        assert!(!body.contains(&bridge.admin_key), "{body}");
        assert!(!body.contains("alk_"), "no key of any kind: {body}");
    }
    bridge.shutdown().await;
}

/// Builds a PHP bridge database in its own schema (from its project plan), with text escaped the
/// way it stored it: two sessions, three messages (one never processed) and two responses.
async fn php_bridge_fixture(path: &Path) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut db = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    for statement in [
        "CREATE TABLE web_chat_sessions (
            id VARCHAR(64) PRIMARY KEY,
            uid VARCHAR(16) UNIQUE,
            created_at TEXT DEFAULT CURRENT_TIMESTAMP,
            last_active TEXT DEFAULT CURRENT_TIMESTAMP,
            ip_address VARCHAR(45),
            metadata TEXT)",
        "CREATE TABLE web_chat_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id VARCHAR(64),
            message TEXT,
            timestamp TEXT DEFAULT CURRENT_TIMESTAMP,
            processed INTEGER DEFAULT 0,
            broca_message_id INTEGER NULL,
            FOREIGN KEY (session_id) REFERENCES web_chat_sessions(id))",
        "CREATE TABLE web_chat_responses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id VARCHAR(64),
            response TEXT,
            timestamp TEXT DEFAULT CURRENT_TIMESTAMP,
            message_id INTEGER NULL,
            FOREIGN KEY (session_id) REFERENCES web_chat_sessions(id),
            FOREIGN KEY (message_id) REFERENCES web_chat_messages(id))",
        "CREATE TABLE rate_limits (
            ip_address VARCHAR(45),
            endpoint VARCHAR(50),
            count INTEGER DEFAULT 1,
            window_start TEXT DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (ip_address, endpoint))",
        "INSERT INTO web_chat_sessions (id, uid, created_at, last_active, ip_address, metadata)
            VALUES ('session_old_one', '2632f72d266e529c', '2025-08-04 03:08:53',
                    '2025-08-04 03:17:13', '::1', '[]'),
                   ('session_old_two', 'a1b2c3d4e5f60718', '2025-08-05 10:00:00',
                    '2025-08-05 10:00:05', '203.0.113.9', '[]')",
        "INSERT INTO web_chat_messages (id, session_id, message, timestamp, processed) VALUES
            (9, 'session_old_one', 'Is &lt;b&gt;this&lt;/b&gt; &amp; &quot;that&quot; ok?',
                '2025-08-04T03:08:55.484Z', 1),
            (10, 'session_old_one', 'it&#039;s me again', '2025-08-04T03:09:00.214Z', 1),
            (11, 'session_old_two', 'never &amp; answered', '2025-08-05 10:00:05', 0)",
        "INSERT INTO web_chat_responses (id, session_id, response, timestamp, message_id) VALUES
            (1, 'session_old_one', 'Yes &amp; no', '2025-08-04 03:08:58', 9),
            (2, 'session_old_one', 'Hello &lt;again&gt;', '2025-08-04 03:09:03', 10)",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }
    db.close().await.unwrap();
}

/// What the fixture's history looks like through the compat and admin APIs, once.
async fn assert_fixture_imported(bridge: &TestBridge) {
    let compat = Compat::new(bridge);
    let data = success(
        compat
            .admin_get(
                &bridge.admin_key,
                "action=session_messages&session_id=session_old_one",
            )
            .await,
        "Session messages retrieved",
    )
    .await;
    assert_eq!(data["session"]["uid"], json!("2632f72d266e529c"));
    assert_eq!(data["session"]["created_at"], json!("2025-08-04 03:08:53"));
    let messages: Vec<&Value> = data["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["message"])
        .collect();
    assert_eq!(
        messages,
        [
            &json!("Is <b>this</b> & \"that\" ok?"),
            &json!("it's me again")
        ]
    );
    assert_eq!(
        data["messages"][0]["timestamp"],
        json!("2025-08-04T03:08:55.484Z")
    );

    let polled = compat.widget_poll("session_old_one", None).await;
    let responses = polled["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "{polled}");
    assert_eq!(responses[0]["response"], json!("Yes & no"));
    assert_eq!(responses[0]["message_id"], data["messages"][0]["id"]);
    assert_eq!(responses[1]["response"], json!("Hello <again>"));
    assert_eq!(responses[1]["message_id"], data["messages"][1]["id"]);
    let later = compat
        .widget_poll("session_old_one", Some("2025-08-04 03:09:00"))
        .await;
    assert_eq!(later["responses"].as_array().unwrap().len(), 1, "{later}");

    // The admin API has the conversation in its order.
    let page: Value =
        serde_json::from_str(&admin_read(bridge, "sessions?interface=web-chat").await).unwrap();
    let sessions = page["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{page}");
    let one = sessions
        .iter()
        .find(|s| s["visitor_id"] == json!("2632f72d266e529c"))
        .unwrap();
    let path = format!("sessions/{}", one["id"].as_str().unwrap());
    let transcript: Value = serde_json::from_str(&admin_read(bridge, &path).await).unwrap();
    let seen: Vec<(&str, &str)> = transcript["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("user", "Is <b>this</b> & \"that\" ok?"),
            ("assistant", "Yes & no"),
            ("user", "it's me again"),
            ("assistant", "Hello <again>"),
        ]
    );
}

/// The never-processed message is owed an answer: the plugin gets it, once.
async fn assert_unanswered_message_is_offered(bridge: &TestBridge) {
    let compat = Compat::new(bridge);
    let key = bridge.connector_key("broca").await;
    let inbox = compat.plugin_inbox(&key).await;
    let messages = inbox["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{inbox}");
    let item = assert_inbox_item(&messages[0]);
    assert_eq!(item["session_id"], json!("session_old_two"));
    assert_eq!(item["message"], json!("never & answered"));
    assert_eq!(item["uid"], json!("a1b2c3d4e5f60718"));
}

async fn importing_a_php_bridge_database_through_the_library_keeps_its_history_once(
    bridge: TestBridge,
) {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("web_chat.db");
    php_bridge_fixture(&old).await;
    let now = clock(&bridge).now_ms();
    let first = airlock_bridge::import_php::import(&bridge.store, &old, "web-chat", now)
        .await
        .unwrap();
    assert_eq!(first.sessions_read, 2);
    assert_eq!(first.sessions_created, 2);
    assert_eq!(first.messages_imported, 3);
    assert_eq!(first.messages_queued, 1);
    assert_eq!(first.responses_imported, 2);
    assert_eq!(first.already_imported, 0);
    let second = airlock_bridge::import_php::import(&bridge.store, &old, "web-chat", now)
        .await
        .unwrap();
    assert_eq!(second.sessions_created, 0);
    assert_eq!(second.messages_imported + second.responses_imported, 0);
    assert_eq!(second.already_imported, 5);
    assert_fixture_imported(&bridge).await;
    assert_unanswered_message_is_offered(&bridge).await;
}

/// Runs `airlock-bridge` on the SQLite database in `data_dir`.
fn bridge_cli(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_airlock-bridge"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .output()
        .expect("run airlock-bridge")
}

#[tokio::test]
async fn import_php_bridge_on_the_command_line_imports_once_and_twice_nothing_more() {
    let data = tempfile::tempdir().unwrap();
    let old_dir = tempfile::tempdir().unwrap();
    let old = old_dir.path().join("web_chat.db");
    php_bridge_fixture(&old).await;
    let old_arg = old.to_str().unwrap();

    let first = bridge_cli(data.path(), &["import-php-bridge", old_arg, "--json"]);
    assert!(first.status.success(), "{first:?}");
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["sessions_created"], json!(2));
    assert_eq!(report["messages_imported"], json!(3));
    assert_eq!(report["responses_imported"], json!(2));

    // The bridge serves the imported history, and a second run beside it adds nothing.
    let store =
        airlock_bridge::store::Store::connect(&sqlite_url(data.path()), &StoreOptions::default())
            .await
            .unwrap();
    let bridge = TestBridge::start_on(store, Some(Arc::new(ManualClock::new())), None).await;
    let second = bridge_cli(data.path(), &["import-php-bridge", old_arg]);
    assert!(second.status.success(), "{second:?}");
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.contains("Imported 0 of 2 sessions as new, 0 messages"),
        "{said}"
    );
    assert!(said.contains("Skipped 5"), "{said}");
    assert_fixture_imported(&bridge).await;
    assert_unanswered_message_is_offered(&bridge).await;

    let missing = bridge_cli(
        data.path(),
        &["import-php-bridge", "/nonexistent/web_chat.db"],
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot open"),
        "{missing:?}"
    );
    bridge.shutdown().await;
}

/// The body of an admin API `GET /api/v1/admin/{path}`, which must succeed.
async fn admin_read(bridge: &TestBridge, path: &str) -> String {
    let response = http()
        .get(format!("{}/api/v1/admin/{path}", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "GET admin/{path}: {}",
        response.status()
    );
    response.text().await.unwrap()
}
