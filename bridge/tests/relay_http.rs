//! HTTP integration tests: a real bridge on port 0 with a fresh database per test, driven over
//! HTTP as a visitor's browser and a connector would.

mod common;

use std::time::{Duration, Instant};

use airlock_bridge::store::StoreOptions;
use airlock_bridge::testing::TestBridge;
use airlock_shared::connector::{ClaimResponse, ReplyState};
use airlock_shared::visitor::{MessageAccepted, SessionCreated};
use airlock_shared::{Message, MessageStatus, Role};
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::http::{Connector, SseReader, Visitor, assert_error, http};

impl Visitor {
    /// Follows the long-poll until `done` holds for a message, returning every version seen.
    async fn follow_until(&self, done: impl Fn(&Message) -> bool) -> Vec<Message> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut cursor = self.session.cursor;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let page = self.poll(cursor, 10).await;
            cursor = page.cursor;
            for m in page.messages {
                let finished = done(&m);
                seen.push(m);
                if finished {
                    return seen;
                }
            }
        }
        panic!("condition not met in time; saw {seen:#?}");
    }
}

impl Connector {
    async fn claim(&self, wait: u64) -> ClaimResponse {
        self.claim_up_to(5, wait).await
    }
}

async fn full_relay_reaches_a_waiting_long_poll(bridge: TestBridge) {
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "echo").await;

    // The connector is already waiting when the message arrives.
    let claim = tokio::spawn(async move {
        let started = Instant::now();
        let items = connector.claim(20).await.items;
        (connector, items, started.elapsed())
    });
    // The visitor is waiting for the reply too.
    let follower = {
        let visitor = Visitor {
            http: visitor.http.clone(),
            base: visitor.base.clone(),
            session: visitor.session.clone(),
        };
        tokio::spawn(async move {
            visitor
                .follow_until(|m| m.role == Role::Assistant && m.status == MessageStatus::Complete)
                .await
        })
    };
    let sent = visitor.send("c-1", "hello there").await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent: Value = sent.json().await.unwrap();

    let (connector, items, waited) = claim.await.unwrap();
    assert_eq!(items.len(), 1);
    assert!(
        waited < Duration::from_secs(15),
        "claim should wake at once"
    );
    let item = &items[0];
    assert_eq!(item.message.text, "hello there");
    assert_eq!(item.message.id, sent["message"]["id"]);
    assert_eq!(
        item.session.page_url.as_deref(),
        Some("https://shop.example/pricing")
    );

    let reply = connector
        .call(
            &format!("leases/{}/reply", item.lease_id),
            json!({"text": "hello there"}),
        )
        .await;
    assert_eq!(reply.status(), StatusCode::OK);

    let seen = follower.await.unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.text, "hello there");
    assert_eq!(last.reply_to.as_deref(), Some(item.message.id.as_str()));
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_message_is_relayed_to_a_connector_and_the_reply_reaches_a_waiting_long_poll() {
    full_relay_reaches_a_waiting_long_poll(TestBridge::start().await).await;
}

#[tokio::test]
async fn the_full_relay_works_on_postgres() {
    let Some(db) = common::TestDb::postgres(StoreOptions::default()).await else {
        return;
    };
    full_relay_reaches_a_waiting_long_poll(
        TestBridge::start_on(db.store.clone(), None, None).await,
    )
    .await;
}

#[tokio::test]
async fn a_claim_with_typing_shows_the_waiting_visitor_the_agent_typing() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "typist").await;
    let sent: MessageAccepted = visitor.send("c-1", "hello?").await.json().await.unwrap();
    let cursor = sent.message.rev;
    let waiting = {
        let visitor = visitor.clone();
        tokio::spawn(async move { visitor.poll(cursor, 20).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let bad = connector
        .call("claim", json!({"max": 5, "typing": "yes"}))
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let claimed: ClaimResponse = connector
        .call("claim", json!({"max": 5, "lease_secs": 30, "typing": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(claimed.items.len(), 1);

    // The long-poll wakes with the started reply: the widget shows the agent typing.
    let page = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting long-poll woke")
        .unwrap();
    let reply = page
        .messages
        .iter()
        .find(|m| m.role == Role::Assistant)
        .expect("the started reply is visible");
    assert_eq!(reply.status, MessageStatus::Streaming);
    assert_eq!(reply.text, "");

    // The first delta grows that same reply.
    let streamed: ReplyState = connector
        .call(
            &format!("leases/{}/stream", claimed.items[0].lease_id),
            json!({"text_delta": "Hi"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(streamed.message.id, reply.id);
    assert_eq!(streamed.message.text, "Hi");
}

/// A bridge whose waits for the agent's pickup last `ms`.
async fn bridge_with_pickup_wait(ms: u64) -> TestBridge {
    let mut config = airlock_bridge::Config::defaults();
    config.pickup_wait_ms = ms;
    TestBridge::start_with_config(config).await
}

#[tokio::test]
async fn a_waiting_long_poll_answers_the_visitors_message_together_with_the_agents_pickup() {
    // A long pickup wait, so the claim below has all the time it could need.
    let bridge = bridge_with_pickup_wait(1000).await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "typist").await;
    let claim = tokio::spawn(async move {
        connector
            .call(
                "claim",
                json!({"max": 1, "wait": 10, "lease_secs": 30, "typing": true}),
            )
            .await
            .json::<ClaimResponse>()
            .await
            .unwrap()
    });
    let cursor = visitor.session.cursor;
    let waiting = {
        let visitor = visitor.clone();
        tokio::spawn(async move { visitor.poll(cursor, 10).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    visitor.send("c-1", "anyone there?").await;
    let page = waiting.await.unwrap();
    assert_eq!(claim.await.unwrap().items.len(), 1);
    // One answer: the message already handed to the agent, and the agent typing.
    let shown: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.role, m.status, m.text.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (Role::User, MessageStatus::Processing, "anyone there?"),
            (Role::Assistant, MessageStatus::Streaming, "")
        ]
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "answered when the agent picked the message up, not when the pickup wait ran out: {:?}",
        started.elapsed()
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_visitors_message_waits_for_a_pickup_only_while_a_claim_is_open_and_not_past_the_wait() {
    let bridge = bridge_with_pickup_wait(1000).await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "slow").await;
    let poll_after_sending = |cursor: i64, client_id: &'static str| {
        let visitor = visitor.clone();
        async move {
            let waiting = {
                let visitor = visitor.clone();
                tokio::spawn(async move { visitor.poll(cursor, 10).await })
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let started = Instant::now();
            visitor.send(client_id, "hello?").await;
            let page = waiting.await.unwrap();
            (page, started.elapsed())
        }
    };

    // No claim open (no agent polling): nothing would pick the message up soon, so the
    // long-poll answers at once.
    let (page, waited) = poll_after_sending(visitor.session.cursor, "c-1").await;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].status, MessageStatus::Queued);
    assert!(
        waited < Duration::from_millis(1000),
        "no pickup wait without an open claim: {waited:?}"
    );

    // The connector holds the first message, then waits in a claim that cannot take the
    // second (a session's messages go to the agent one at a time): the long-poll waits for a
    // pickup that does not come, then answers after the pickup wait.
    assert_eq!(connector.claim(5).await.items.len(), 1);
    let cursor = visitor.poll(page.cursor, 0).await.cursor;
    let open_claim = {
        let connector = connector.clone();
        tokio::spawn(async move { connector.claim(10).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (page, waited) = poll_after_sending(cursor, "c-2").await;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].status, MessageStatus::Queued);
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(5),
        "answered after the pickup wait, well before the long-poll's own: {waited:?}"
    );

    // A poll that finds the message already there waits no longer than its own `wait`.
    let started = Instant::now();
    assert_eq!(visitor.poll(cursor, 0).await.messages.len(), 1);
    assert!(started.elapsed() < Duration::from_millis(1000));
    open_claim.abort();
    bridge.shutdown().await;
}

#[tokio::test]
async fn deltas_are_visible_to_the_visitor_before_the_final_reply() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "streamer").await;
    visitor.send("c-1", "tell me").await;
    let item = connector.claim(5).await.items.remove(0);
    let lease = format!("leases/{}/stream", item.lease_id);

    let typing = connector.call(&lease, json!({"typing": true})).await;
    assert_eq!(typing.status(), StatusCode::OK);
    let mut cursor = visitor.session.cursor;
    let mut partials = Vec::new();
    for delta in ["Once ", "upon ", "a time"] {
        let streamed: ReplyState = connector
            .call(&lease, json!({"text_delta": delta}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(streamed.message.status, MessageStatus::Streaming);
        // The visitor's long-poll shows the grown reply before any final reply exists.
        let page = visitor.poll(cursor, 5).await;
        cursor = page.cursor;
        let reply = page
            .messages
            .iter()
            .find(|m| m.role == Role::Assistant)
            .expect("the streaming reply is visible");
        assert_eq!(reply.status, MessageStatus::Streaming);
        partials.push(reply.text.clone());
    }
    assert_eq!(partials, ["Once ", "Once upon ", "Once upon a time"]);

    connector
        .call(
            &format!("leases/{}/reply", item.lease_id),
            json!({"text": "Once upon a time."}),
        )
        .await;
    let page = visitor.poll(cursor, 5).await;
    let reply = page
        .messages
        .iter()
        .find(|m| m.role == Role::Assistant)
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Complete);
    assert_eq!(reply.text, "Once upon a time.");
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_crashed_connectors_item_is_redelivered_to_another_connector() {
    let bridge = TestBridge::start_with_manual_clock().await;
    let clock = bridge.clock.clone().unwrap();
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let crashed = Connector::new(&bridge, "crashes").await;
    let healthy = Connector::new(&bridge, "healthy").await;
    visitor.send("c-1", "are you there?").await;

    let first = crashed.claim(5).await.items.remove(0);
    crashed
        .call(
            &format!("leases/{}/stream", first.lease_id),
            json!({"text_delta": "I am half-way thr"}),
        )
        .await;
    // The first connector dies here. Before its lease runs out nobody else gets the item…
    assert!(healthy.claim(0).await.items.is_empty());
    // …after it, the other connector does, as attempt 2 under a new lease.
    clock.advance_ms(31_000);
    let second = healthy.claim(5).await.items.remove(0);
    assert_eq!(second.message.id, first.message.id);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease_id, first.lease_id);

    // A zombie write from the crashed connector is fenced off.
    let stale = crashed
        .call(
            &format!("leases/{}/reply", first.lease_id),
            json!({"text": "stale"}),
        )
        .await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let stale: Value = stale.json().await.unwrap();
    assert_eq!(stale["error"]["code"], "lease_superseded");

    let ok = healthy
        .call(
            &format!("leases/{}/reply", second.lease_id),
            json!({"text": "Yes, I am here."}),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let all = visitor.poll(0, 0).await.messages;
    let replies: Vec<_> = all.iter().filter(|m| m.role == Role::Assistant).collect();
    assert_eq!(replies.len(), 1, "exactly one visible reply");
    assert_eq!(replies[0].text, "Yes, I am here.");
    bridge.shutdown().await;
}

#[tokio::test]
async fn the_same_client_id_twice_stores_one_message() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let first = visitor.send("retry-me", "hi").await;
    let second = visitor.send("retry-me", "hi").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    let other_text = visitor.send("retry-me", "different").await;
    assert_eq!(other_text.status(), StatusCode::CONFLICT);
    assert_eq!(visitor.poll(0, 0).await.messages.len(), 1);
    bridge.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let other = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "agent").await;
    let http = http();
    let messages = visitor.url("messages");
    let token = visitor.session.session_token.clone();

    let post = |body: &'static str| {
        http.post(&messages)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_error(
        post("{\"client_id\": \"a\", ").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert_error(
        post("{\"text\": \"hi\"}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_error(
        post("{\"client_id\": 5, \"text\": \"hi\"}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_error(
        post("{\"client_id\": \"a\", \"text\": \"  \"}")
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_text",
    )
    .await;
    assert_error(
        post("{\"client_id\": \"has space\", \"text\": \"hi\"}")
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_client_id",
    )
    .await;

    let oversized = visitor.send("big", &"x".repeat(10_001)).await;
    assert_error(oversized, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text").await;
    let huge = http
        .post(&messages)
        .bearer_auth(&token)
        .json(&json!({"client_id": "huge", "text": "x".repeat(200_000)}))
        .send()
        .await
        .unwrap();
    assert_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    let no_type = http
        .post(&messages)
        .bearer_auth(&token)
        .body("{\"client_id\": \"a\", \"text\": \"hi\"}")
        .send()
        .await
        .unwrap();
    assert_error(
        no_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // Credentials: none, wrong, and another visitor's.
    let none = http
        .post(&messages)
        .json(&json!({"client_id": "a", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_error(none, StatusCode::UNAUTHORIZED, "missing_token").await;
    let wrong = http
        .post(&messages)
        .bearer_auth("alk_s_not-a-real-token")
        .json(&json!({"client_id": "a", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let someone_elses = http
        .get(format!("{}?after=0", messages))
        .bearer_auth(&other.session.session_token)
        .send()
        .await
        .unwrap();
    assert_error(someone_elses, StatusCode::NOT_FOUND, "session_not_found").await;
    let unknown_session = http
        .post(format!("{}/api/v1/sessions/ses_nope/messages", bridge.url))
        .bearer_auth(&token)
        .json(&json!({"client_id": "a", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_error(unknown_session, StatusCode::NOT_FOUND, "session_not_found").await;
    let bad_cursor = http
        .get(format!("{messages}?after=yesterday"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_error(bad_cursor, StatusCode::BAD_REQUEST, "invalid_query").await;
    let no_interface = http
        .post(format!("{}/api/v1/interfaces/nope/sessions", bridge.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(no_interface, StatusCode::NOT_FOUND, "interface_not_found").await;

    // Connector input.
    let bad_lease = connector
        .call("claim", json!({"max": 1, "lease_secs": 0}))
        .await;
    assert_error(
        bad_lease,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_lease_secs",
    )
    .await;
    let bad_max = connector.call("claim", json!({"max": 0})).await;
    assert_error(bad_max, StatusCode::UNPROCESSABLE_ENTITY, "invalid_max").await;
    let unknown_field = connector.call("claim", json!({"maximum": 3})).await;
    assert_error(
        unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    let unknown_lease = connector
        .call("leases/lse_nope/reply", json!({"text": "hi"}))
        .await;
    assert_error(unknown_lease, StatusCode::NOT_FOUND, "lease_not_found").await;
    let no_key = http
        .post(format!("{}/api/v1/connector/claim", bridge.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(no_key, StatusCode::UNAUTHORIZED, "missing_key").await;
    let visitor_token_as_key = http
        .post(format!("{}/api/v1/connector/claim", bridge.url))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(
        visitor_token_as_key,
        StatusCode::UNAUTHORIZED,
        "invalid_key",
    )
    .await;

    // Nothing was stored: no message for the visitor, nothing for the agent.
    assert!(visitor.poll(0, 0).await.messages.is_empty());
    assert!(connector.claim(0).await.items.is_empty());
    bridge.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_with_the_envelope() {
    let bridge = TestBridge::start().await;
    let http = http();
    let missing = http
        .get(format!("{}/api/v1/nope", bridge.url))
        .send()
        .await
        .unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "route_not_found").await;
    let wrong_method = http
        .delete(format!("{}/api/v1/connector/claim", bridge.url))
        .send()
        .await
        .unwrap();
    assert_error(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_waiting_claim_wakes_as_soon_as_a_message_arrives() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "waiter").await;
    // Its last claim found nothing, so this one waits without looking again: a change must
    // still wake it.
    assert!(connector.claim(0).await.items.is_empty());
    let claim = tokio::spawn(async move { connector.claim(30).await });
    // Give the claim time to start waiting, then send and time the wake-up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    visitor.send("c-1", "wake up").await;
    let items = claim.await.unwrap().items;
    let woke_after = sent_at.elapsed();
    assert_eq!(items.len(), 1);
    assert!(
        woke_after < Duration::from_secs(2),
        "claim woke {woke_after:?} after the send"
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn an_empty_long_poll_returns_after_its_wait_with_the_same_cursor() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let started = Instant::now();
    let page = visitor.poll(visitor.session.cursor, 1).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(page.messages.is_empty());
    assert_eq!(page.cursor, visitor.session.cursor);
    bridge.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_waiting_claims_and_long_polls_promptly() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "waiter").await;
    let claim = tokio::spawn(async move { connector.claim(50).await });
    let poll = tokio::spawn(async move { visitor.poll(0, 30).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    bridge.shutdown().await;
    assert!(claim.await.unwrap().items.is_empty());
    assert!(poll.await.unwrap().messages.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_resumed_session_keeps_its_history_and_both_tokens_work() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    visitor.send("c-1", "remember me").await;
    let http = http();
    let resumed: SessionCreated = http
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({"resume_token": visitor.session.resume_token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.session_id, visitor.session.session_id);
    assert_eq!(resumed.visitor_id, visitor.session.visitor_id);
    assert_eq!(resumed.messages.len(), 1);
    assert_eq!(resumed.messages[0].text, "remember me");
    assert_ne!(resumed.session_token, visitor.session.session_token);
    // The first tab keeps working.
    assert_eq!(visitor.poll(0, 0).await.messages.len(), 1);

    let fresh: SessionCreated = http
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({"resume_token": "alk_r_unknown"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!fresh.resumed);
    assert_ne!(fresh.session_id, visitor.session.session_id);
    bridge.shutdown().await;
}

#[tokio::test]
async fn admins_manage_interfaces_keys_and_read_transcripts() {
    let bridge = TestBridge::start().await;
    let http = http();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/api/v1/admin/{path}", bridge.url))
            .bearer_auth(&bridge.admin_key)
    };

    let anonymous = http
        .get(format!("{}/api/v1/admin/interfaces", bridge.url))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "missing_key").await;
    let wrong = http
        .get(format!("{}/api/v1/admin/interfaces", bridge.url))
        .bearer_auth("alk_a_wrong")
        .send()
        .await
        .unwrap();
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_key").await;

    // A draft is invisible to visitors until published.
    let created = admin(reqwest::Method::POST, "interfaces")
        .json(&json!({"slug": "sales", "title": "Sales"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["status"], "draft");
    let public = format!("{}/api/v1/interfaces/sales", bridge.url);
    assert_eq!(
        http.get(&public).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let published = admin(reqwest::Method::POST, "interfaces/sales/publish")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::OK);
    let config: Value = http
        .get(&public)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["title"], "Sales");
    assert_eq!(config["agent_online"], false);

    let taken = admin(reqwest::Method::POST, "interfaces")
        .json(&json!({"slug": "sales", "title": "Again"}))
        .send()
        .await
        .unwrap();
    assert_error(taken, StatusCode::CONFLICT, "slug_taken").await;
    let reserved = admin(reqwest::Method::POST, "interfaces")
        .json(&json!({"slug": "admin", "title": "Nope"}))
        .send()
        .await
        .unwrap();
    assert_error(reserved, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // A connector key is shown once, then never again; revoking it locks it out at once.
    let key: Value = admin(reqwest::Method::POST, "connectors")
        .json(&json!({"name": "sales-bot", "interfaces": ["sales"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = key["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("alk_c_"));
    let listed = admin(reqwest::Method::GET, "connectors")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains("sales-bot"));
    assert!(!listed.contains(&secret), "a key is never listed");
    let claim = |key: String| {
        http.post(format!("{}/api/v1/connector/claim", bridge.url))
            .bearer_auth(key)
            .json(&json!({}))
            .send()
    };
    assert_eq!(
        claim(secret.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let config: Value = http
        .get(&public)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["agent_online"], true);
    let revoked = admin(
        reqwest::Method::DELETE,
        &format!("connectors/{}", key["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_error(
        claim(secret).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_key",
    )
    .await;

    // Sessions and one transcript.
    let visitor = Visitor::open(&bridge.url, "sales").await;
    visitor.send("c-1", "how much is it?").await;
    let page: Value = admin(reqwest::Method::GET, "sessions?interface=sales")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["sessions"][0]["id"],
        visitor.session.session_id.as_str()
    );
    let transcript: Value = admin(
        reqwest::Method::GET,
        &format!("sessions/{}", visitor.session.session_id),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(transcript["messages"][0]["text"], "how much is it?");
    assert_eq!(
        transcript["session"]["page_url"],
        "https://shop.example/pricing"
    );
    let missing = admin(reqwest::Method::GET, "sessions/ses_nope")
        .send()
        .await
        .unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "session_not_found").await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let bridge = TestBridge::start().await;
    let http = http();
    let health = http
        .get(format!("{}/healthz", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = http
        .get(format!("{}/readyz", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    // With the database gone, the bridge is up but not ready.
    bridge.store.close().await;
    let not_ready = http
        .get(format!("{}/readyz", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    bridge.shutdown().await;
}

/// The next `message` event's message.
async fn next_message(reader: &mut SseReader) -> Message {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open");
        if event.event == "message" {
            let message: Message = serde_json::from_str(&event.data).unwrap();
            assert_eq!(
                event.id,
                Some(message.rev.to_string()),
                "the event id is the rev"
            );
            return message;
        }
    }
}

async fn open_events(visitor: &Visitor, last_event_id: Option<i64>) -> reqwest::Response {
    let mut request = visitor
        .http
        .get(visitor.url("events"))
        .bearer_auth(&visitor.session.session_token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

#[tokio::test]
async fn the_event_stream_shows_each_change_at_once_and_resumes_after_the_last_event_id() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let connector = Connector::new(&bridge, "streamer").await;
    let response = open_events(&visitor, None).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let mut events = SseReader::new(response);
    let status = events.next().await.unwrap();
    assert_eq!(status.event, "status");
    assert_eq!(status.data, r#"{"agent_online":false}"#);

    visitor.send("c-1", "hello").await;
    let sent = next_message(&mut events).await;
    assert_eq!(
        (sent.role, sent.status),
        (Role::User, MessageStatus::Queued)
    );

    let item = connector.claim(5).await.items.remove(0);
    let processing = next_message(&mut events).await;
    assert_eq!(
        (processing.id.as_str(), processing.status),
        (sent.id.as_str(), MessageStatus::Processing)
    );
    let stream = format!("leases/{}/stream", item.lease_id);
    connector
        .call(&stream, json!({"text_delta": "**Hi** "}))
        .await;
    let first = next_message(&mut events).await;
    assert_eq!(
        (first.role, first.status, first.text.as_str()),
        (Role::Assistant, MessageStatus::Streaming, "**Hi** ")
    );
    connector
        .call(&stream, json!({"text_delta": "there"}))
        .await;
    let grown = next_message(&mut events).await;
    assert_eq!(grown.text, "**Hi** there");
    assert_eq!(
        grown.html.as_deref(),
        Some("<p><strong>Hi</strong> there</p>\n")
    );
    connector
        .call(
            &format!("leases/{}/reply", item.lease_id),
            json!({"text": "**Hi** there!"}),
        )
        .await;
    let done = next_message(&mut events).await;
    assert_eq!(
        (done.id.as_str(), done.status),
        (first.id.as_str(), MessageStatus::Complete)
    );
    let answered = next_message(&mut events).await;
    assert_eq!(
        (answered.id.as_str(), answered.status),
        (sent.id.as_str(), MessageStatus::Answered)
    );
    assert!(first.rev < grown.rev && grown.rev < done.rev && done.rev < answered.rev);

    // A reconnect after the first streamed version gets every later change once, and nothing
    // it had already seen.
    let mut resumed = SseReader::new(open_events(&visitor, Some(first.rev)).await);
    let mut revs = Vec::new();
    while revs.len() < 2 {
        let m = next_message(&mut resumed).await;
        revs.push((m.id, m.rev));
    }
    assert_eq!(
        revs,
        [
            (first.id.clone(), done.rev),
            (sent.id.clone(), answered.rev)
        ]
    );

    // A bad Last-Event-ID is refused, not silently treated as zero.
    let bad = visitor
        .http
        .get(visitor.url("events"))
        .bearer_auth(&visitor.session.session_token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_last_event_id").await;
    bridge.shutdown().await;
}

/// A quiet stream is not silent: after each quiet wait (15 s) it sends a comment, so that the
/// proxies in front of a bridge do not close it as idle.
#[tokio::test]
async fn a_quiet_event_stream_sends_a_keep_alive_comment_after_each_wait() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let mut response = open_events(&visitor, None).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("event: status\n"),
        "{first:?}"
    );
    let opened = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(25), response.chunk())
        .await
        .expect("something within 25 s")
        .unwrap()
        .unwrap();
    let waited = opened.elapsed();
    assert!(
        next.starts_with(b":")
            && next.ends_with(b"\n\n")
            && next.iter().filter(|&&b| b == b'\n').count() == 2,
        "a comment alone: {next:?}"
    );
    assert!(
        waited >= Duration::from_secs(14),
        "not before the wait ends: {waited:?}"
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let mut events = SseReader::new(open_events(&visitor, None).await);
    assert_eq!(events.next().await.unwrap().event, "status");
    let started = Instant::now();
    bridge.shutdown().await;
    assert!(events.next().await.is_none(), "the stream ends");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_widget_and_its_pages_are_served_with_strict_headers() {
    let bridge = TestBridge::start().await;
    let http = http();
    let get = |path: &str| http.get(format!("{}{path}", bridge.url)).send();

    let js = get("/widget.js").await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(
        js.headers()["content-type"],
        "application/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["x-content-type-options"], "nosniff");
    assert!(
        js.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let css = get("/widget.css").await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    for (path, framing) in [
        ("/c/demo", "frame-ancestors 'self'"),
        // `demo` lists no origin: only the bridge's own pages may frame it.
        ("/embed/demo", "frame-ancestors 'self'"),
    ] {
        let page = get(path).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && csp.contains(framing),
            "{path}: {csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        let html = page.text().await.unwrap();
        assert!(html.contains("/widget.js"), "{path} loads the widget");
        assert!(
            html.contains("data-interface=\"demo\""),
            "{path} names the interface"
        );
        assert!(!html.contains("{{slug}}"));
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "{path} has no inline code"
        );
    }
    let bad = get("/c/Not_A_Slug").await.unwrap();
    assert_error(bad, StatusCode::NOT_FOUND, "interface_not_found").await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn an_interface_look_is_validated_and_reaches_the_public_config() {
    let bridge = TestBridge::start().await;
    let http = http();
    let create = |body: Value| {
        http.post(format!("{}/api/v1/admin/interfaces", bridge.url))
            .bearer_auth(&bridge.admin_key)
            .json(&body)
            .send()
    };
    let styled = create(json!({
        "slug": "styled", "title": "Styled", "publish": true, "locale": "de",
        "appearance": {"primary_color": "#0a7c55", "theme": "dark", "radius": 4, "icon": "🛟",
                       "cover": "linear-gradient(135deg, #0a7c55 0%, #064e3b 100%)"},
        "launcher": {"position": "bottom-left", "label": "Fragen?", "open": true}
    }))
    .await
    .unwrap();
    assert_eq!(styled.status(), StatusCode::CREATED);
    let public = |slug: &str| {
        let url = format!("{}/api/v1/interfaces/{slug}", bridge.url);
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let config = public("styled").await;
    assert_eq!(config["locale"], "de");
    assert_eq!(config["appearance"]["primary_color"], "#0a7c55");
    assert_eq!(config["appearance"]["theme"], "dark");
    assert_eq!(config["launcher"]["position"], "bottom-left");
    assert_eq!(config["launcher"]["open"], true);

    // Defaults for an interface that set nothing.
    let demo = public("demo").await;
    assert_eq!(demo["appearance"]["primary_color"], "#3b5bdb");
    assert_eq!(demo["launcher"]["position"], "bottom-right");

    for (field, bad) in [
        (
            "appearance.primary_color",
            json!({"appearance": {"primary_color": "red;}*{display:none"}}),
        ),
        (
            "appearance.cover",
            json!({"appearance": {"cover": "url(https://evil.example/x.png)"}}),
        ),
        (
            "launcher.position",
            json!({"launcher": {"position": "top-left"}}),
        ),
        ("locale", json!({"locale": "<script>"})),
    ] {
        let mut body = json!({"slug": "bad", "title": "Bad"});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let refused = create(body).await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}"
        );
        let error: Value = refused.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{error}"
        );
    }
    let unknown = create(json!({"slug": "bad", "title": "Bad", "appearance": {"colour": "#fff"}}))
        .await
        .unwrap();
    assert_error(unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(
        public("bad").await["error"].is_object(),
        "nothing was stored"
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn browsers_call_the_visitor_api_from_the_sites_the_interface_allows() {
    let bridge = TestBridge::start().await;
    let http = http();
    let allowed = http
        .patch(format!("{}/api/v1/admin/interfaces/demo", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .json(&json!({"allowed_origins": ["https://shop.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    // The preflight a browser sends before a JSON POST from another origin.
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/interfaces/demo/sessions", bridge.url),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(preflight.headers()["access-control-max-age"], "7200");
    let opened = http
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .header("origin", "https://shop.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    assert_eq!(
        opened.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let elsewhere = http
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .header("origin", "https://elsewhere.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(elsewhere, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    // Wrong methods still get the envelope.
    let wrong = http
        .delete(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .send()
        .await
        .unwrap();
    assert_error(wrong, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    bridge.shutdown().await;
}

/// A small real PNG: the signature and an IHDR chunk are what sniffing looks at.
fn png_bytes() -> Vec<u8> {
    let mut png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    png.extend_from_slice(&[0u8; 64]);
    png
}

async fn upload(
    visitor: &Visitor,
    filename: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(filename.to_string())
        .mime_str(content_type)
        .unwrap();
    visitor
        .http
        .post(visitor.url("attachments"))
        .bearer_auth(&visitor.session.session_token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
}

/// Uploads are checked, stored, sent with a message, and served only as downloads: to the
/// connector of the interface and to admins.
async fn attachments_are_checked_stored_and_delivered_only_to_the_connector(bridge: TestBridge) {
    let http = http();
    let created = http
        .post(format!("{}/api/v1/admin/interfaces", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .json(&json!({"slug": "files", "title": "Files", "publish": true,
            "uploads": {"enabled": true, "max_files": 2, "max_mb": 1,
                        "allowed_types": ["image/png", "text/plain"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let config: Value = http
        .get(format!("{}/api/v1/interfaces/files", bridge.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["uploads"]["enabled"], true);
    assert_eq!(config["uploads"]["max_mb"], 1);

    let visitor = Visitor::open(&bridge.url, "files").await;
    let uploaded = upload(&visitor, "../../etc/photo.png", "image/png", png_bytes()).await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let uploaded: Value = uploaded.json().await.unwrap();
    let attachment = uploaded["attachment"].clone();
    assert_eq!(attachment["filename"], "photo.png", "no path survives");
    assert_eq!(attachment["content_type"], "image/png");
    assert_eq!(attachment["size"], png_bytes().len());
    let id = attachment["id"].as_str().unwrap().to_string();

    // Refused uploads, each with its reason.
    let refusals = [
        (
            upload(
                &visitor,
                "a.exe",
                "application/x-msdownload",
                b"MZ\x90\0".to_vec(),
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "type_not_allowed",
        ),
        (
            upload(&visitor, "fake.png", "image/png", b"just text".to_vec()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "content_mismatch",
        ),
        (
            upload(&visitor, "notes.txt", "text/plain", png_bytes()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "content_mismatch",
        ),
        (
            upload(
                &visitor,
                "big.txt",
                "text/plain",
                vec![b'a'; 1024 * 1024 + 1],
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
        ),
        (
            upload(&visitor, "empty.txt", "text/plain", Vec::new()).await,
            StatusCode::BAD_REQUEST,
            "invalid_upload",
        ),
    ];
    for (response, status, code) in refusals {
        assert_error(response, status, code).await;
    }
    let no_file = visitor
        .http
        .post(visitor.url("attachments"))
        .bearer_auth(&visitor.session.session_token)
        .multipart(reqwest::multipart::Form::new().text("note", "no file here"))
        .send()
        .await
        .unwrap();
    assert_error(no_file, StatusCode::BAD_REQUEST, "invalid_upload").await;
    let demo = Visitor::open(&bridge.url, "demo").await;
    assert_error(
        upload(&demo, "a.png", "image/png", png_bytes()).await,
        StatusCode::FORBIDDEN,
        "uploads_disabled",
    )
    .await;

    // Sending: unknown, foreign and too many ids are refused; the file goes with the message.
    let send = |visitor: &Visitor, client_id: &str, ids: Vec<String>| {
        visitor
            .http
            .post(visitor.url("messages"))
            .bearer_auth(&visitor.session.session_token)
            .json(&json!({"client_id": client_id, "text": "", "attachments": ids}))
            .send()
    };
    let other = Visitor::open(&bridge.url, "files").await;
    assert_error(
        send(&other, "x", vec![id.clone()]).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attachments",
    )
    .await;
    assert_error(
        send(&visitor, "x", vec!["att_nope".into()]).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attachments",
    )
    .await;
    assert_error(
        send(&visitor, "x", vec![id.clone(), id.clone(), id.clone()])
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attachments",
    )
    .await;
    let sent = send(&visitor, "with-file", vec![id.clone()]).await.unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["message"]["attachments"][0], attachment);
    assert_error(
        send(&visitor, "again", vec![id.clone()]).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_attachments",
    )
    .await;

    // The connector gets the reference with the message, and the bytes on request.
    let connector = Connector::new(&bridge, "files-bot").await;
    let item = connector.claim(5).await.items.remove(0);
    assert_eq!(item.message.attachments.len(), 1);
    assert_eq!(item.message.attachments[0].id, id);
    let bytes = http
        .get(format!("{}/api/v1/connector/attachments/{id}", bridge.url))
        .bearer_auth(&connector.key)
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    assert_eq!(bytes.headers()["content-type"], "image/png");
    assert_eq!(
        bytes.headers()["content-disposition"],
        "attachment; filename=\"photo.png\"; filename*=UTF-8''photo.png"
    );
    assert_eq!(bytes.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        bytes.bytes().await.unwrap().as_ref(),
        png_bytes().as_slice()
    );
    // Not for visitors, nor for a connector of another interface.
    let as_visitor = http
        .get(format!("{}/api/v1/connector/attachments/{id}", bridge.url))
        .bearer_auth(&visitor.session.session_token)
        .send()
        .await
        .unwrap();
    assert_error(as_visitor, StatusCode::UNAUTHORIZED, "invalid_key").await;
    let (_, demo_key) = airlock_bridge::manage::create_connector_key(
        &bridge.store,
        "demo-only",
        &["demo".into()],
        0,
    )
    .await
    .unwrap();
    let foreign = http
        .get(format!("{}/api/v1/connector/attachments/{id}", bridge.url))
        .bearer_auth(demo_key)
        .send()
        .await
        .unwrap();
    assert_error(foreign, StatusCode::NOT_FOUND, "attachment_not_found").await;

    // Admins reading the transcript download it the same way: as an attachment, never inline.
    let for_admin = http
        .get(format!("{}/api/v1/admin/attachments/{id}", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(for_admin.status(), StatusCode::OK);
    assert_eq!(for_admin.headers()["content-type"], "image/png");
    assert!(
        for_admin.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; ")
    );
    assert_eq!(for_admin.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        for_admin.bytes().await.unwrap().as_ref(),
        png_bytes().as_slice()
    );
    for (key, status, code) in [
        (
            bridge.admin_key.as_str(),
            StatusCode::NOT_FOUND,
            "attachment_not_found",
        ),
        (
            visitor.session.session_token.as_str(),
            StatusCode::UNAUTHORIZED,
            "invalid_key",
        ),
    ] {
        let target = if status == StatusCode::NOT_FOUND {
            "att_nope"
        } else {
            id.as_str()
        };
        let refused = http
            .get(format!("{}/api/v1/admin/attachments/{target}", bridge.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_error(refused, status, code).await;
    }
    bridge.shutdown().await;
}

#[tokio::test]
async fn attachments_are_checked_stored_and_delivered_only_to_the_connector_on_sqlite() {
    attachments_are_checked_stored_and_delivered_only_to_the_connector(TestBridge::start().await)
        .await;
}

#[tokio::test]
async fn attachments_are_checked_stored_and_delivered_only_to_the_connector_on_postgres() {
    let Some(db) = common::TestDb::postgres(StoreOptions::default()).await else {
        return;
    };
    attachments_are_checked_stored_and_delivered_only_to_the_connector(
        TestBridge::start_on(db.store.clone(), None, None).await,
    )
    .await;
}
