//! The admin API over real HTTP: session filters, ending and deleting, the export, connectors,
//! dead letters, stats and the live event tail. Every case runs on SQLite and, when
//! `AIRLOCK_TEST_POSTGRES_URL` is set, on PostgreSQL. The bridge's clock is manual, so latencies
//! and periods are exact.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use airlock_bridge::clock::ManualClock;
use airlock_bridge::store::{NewSession, StoreOptions};
use airlock_bridge::testing::TestBridge;
use airlock_bridge::tokens::{hash_secret, new_id};
use airlock_shared::admin::{
    AdminEvent, AuditEntry, AuditPage, Connector, DataRemoved, DeadLetter, ExportRow, List,
    SessionPage, SessionSummary, Stats,
};
use airlock_shared::connector::{ClaimResponse, ClaimedItem};
use airlock_shared::visitor::SessionCreated;
use airlock_shared::{Message, MessageStatus, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::http::{SseReader, assert_error, http};

/// Talks to one test bridge as an admin, a visitor or a connector.
struct Client {
    http: reqwest::Client,
    base: String,
    admin_key: String,
}

impl Client {
    fn new(bridge: &TestBridge) -> Client {
        Client {
            http: http(),
            base: bridge.url.clone(),
            admin_key: bridge.admin_key.clone(),
        }
    }

    fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1/admin/{path}", self.base))
            .bearer_auth(&self.admin_key)
    }

    async fn admin_json<T: serde::de::DeserializeOwned>(&self, method: Method, path: &str) -> T {
        let response = self.admin(method, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    async fn open_session(&self, referrer: Option<&str>) -> SessionCreated {
        let response = self
            .http
            .post(format!("{}/api/v1/interfaces/demo/sessions", self.base))
            .json(&json!({"referrer": referrer}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    async fn send(&self, session: &SessionCreated, text: &str) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/api/v1/sessions/{}/messages",
                self.base, session.session_id
            ))
            .bearer_auth(&session.session_token)
            .json(&json!({"client_id": new_id("c"), "text": text}))
            .send()
            .await
            .unwrap()
    }

    async fn connector(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/connector/{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn claim(&self, key: &str) -> Vec<ClaimedItem> {
        let response = self
            .connector(key, "claim", json!({"max": 10, "wait": 0}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<ClaimResponse>().await.unwrap().items
    }
}

fn clock(bridge: &TestBridge) -> Arc<ManualClock> {
    bridge.clock.clone().expect("a manual clock")
}

async fn admins_need_the_admin_key(bridge: TestBridge) {
    let client = Client::new(&bridge);
    for (method, path) in [
        (Method::GET, "sessions?q=x"),
        (Method::GET, "sessions/export"),
        (Method::POST, "sessions/ses_x/end"),
        (Method::DELETE, "sessions/ses_x"),
        (Method::GET, "connectors"),
        (Method::POST, "dead-letters/msg_x/retry"),
        (Method::DELETE, "dead-letters/msg_x"),
        (Method::GET, "stats"),
        (Method::GET, "events"),
        (Method::GET, "attachments/att_x"),
    ] {
        let anonymous = client
            .http
            .request(
                method.clone(),
                format!("{}/api/v1/admin/{path}", bridge.url),
            )
            .send()
            .await
            .unwrap();
        assert_error(anonymous, StatusCode::UNAUTHORIZED, "missing_key").await;
        let wrong = client
            .http
            .request(method, format!("{}/api/v1/admin/{path}", bridge.url))
            .bearer_auth("alk_a_wrong")
            .send()
            .await
            .unwrap();
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_key").await;
    }
    bridge.shutdown().await;
}

async fn sessions_are_searched_paged_ended_and_deleted(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let clock = clock(&bridge);
    let started = clock.now_rfc3339();
    let first = client.open_session(None).await;
    client.send(&first, "My invoice is WRONG").await;
    clock.advance_ms(60_000);
    let second = client.open_session(None).await;
    client.send(&second, "Where is my parcel?").await;
    clock.advance_ms(60_000);
    let third = client.open_session(None).await;
    let long = "x".repeat(300);
    client.send(&third, &long).await;

    // Newest activity first, with the latest message as a snippet.
    let page: SessionPage = client.admin_json(Method::GET, "sessions").await;
    let ids: Vec<_> = page.sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            third.session_id.as_str(),
            second.session_id.as_str(),
            first.session_id.as_str()
        ]
    );
    let snippet = page.sessions[0].last_message.clone().unwrap();
    assert_eq!(snippet.chars().count(), 140);
    assert!(snippet.ends_with('…'));
    assert_eq!(
        page.sessions[1].last_message.as_deref(),
        Some("Where is my parcel?")
    );

    // Text search ignores case.
    let found: SessionPage = client
        .admin_json(Method::GET, "sessions?q=invoice%20is%20wrong")
        .await;
    assert_eq!(found.sessions.len(), 1);
    assert_eq!(found.sessions[0].id, first.session_id);

    // Paging one at a time walks every session once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("sessions?limit=1&cursor={c}"),
            None => "sessions?limit=1".to_string(),
        };
        let page: SessionPage = client.admin_json(Method::GET, &path).await;
        seen.extend(page.sessions.into_iter().map(|s| s.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(seen.len() <= 3, "paging must end");
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], third.session_id);

    // `since` and `until` bound the period.
    let since = clock.rfc3339_at(-30_000);
    let recent: SessionPage = client
        .admin_json(Method::GET, &format!("sessions?since={since}"))
        .await;
    assert_eq!(recent.sessions.len(), 1);
    assert_eq!(recent.sessions[0].id, third.session_id);
    let early: SessionPage = client
        .admin_json(
            Method::GET,
            &format!(
                "sessions?since={started}&until={}",
                clock.rfc3339_at(-90_000)
            ),
        )
        .await;
    assert_eq!(early.sessions.len(), 1);
    assert_eq!(early.sessions[0].id, first.session_id);

    // Bad filters are named.
    let bad = client
        .admin(Method::GET, "sessions?since=yesterday")
        .send()
        .await
        .unwrap();
    let message = assert_error(bad, StatusCode::BAD_REQUEST, "invalid_time").await;
    assert!(message.starts_with("since"), "{message}");
    let bad = client
        .admin(Method::GET, "sessions?until=2026-13-01")
        .send()
        .await
        .unwrap();
    let message = assert_error(bad, StatusCode::BAD_REQUEST, "invalid_time").await;
    assert!(message.starts_with("until"), "{message}");
    let bad = client
        .admin(Method::GET, "sessions?cursor=garbage")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let bad = client
        .admin(Method::GET, "sessions?status=open")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_status").await;

    // Ending: the visitor may no longer send.
    let ended = client
        .admin(Method::POST, &format!("sessions/{}/end", first.session_id))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::OK);
    let ended: SessionSummary = ended.json().await.unwrap();
    assert_eq!(ended.status, "ended");
    assert_error(
        client.send(&first, "still there?").await,
        StatusCode::CONFLICT,
        "session_closed",
    )
    .await;
    let only_ended: SessionPage = client
        .admin_json(Method::GET, "sessions?status=ended")
        .await;
    assert_eq!(only_ended.sessions.len(), 1);

    // Deleting: gone with its transcript.
    let deleted: Value = client
        .admin_json(Method::DELETE, &format!("sessions/{}", second.session_id))
        .await;
    assert_eq!(deleted, json!({"deleted": second.session_id}));
    let gone = client
        .admin(Method::GET, &format!("sessions/{}", second.session_id))
        .send()
        .await
        .unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "session_not_found").await;
    let gone = client
        .admin(Method::DELETE, &format!("sessions/{}", second.session_id))
        .send()
        .await
        .unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "session_not_found").await;
    let gone = client
        .admin(Method::POST, "sessions/ses_nope/end")
        .send()
        .await
        .unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "session_not_found").await;

    // Both changes are in the audit log.
    let audit: Value = client.admin_json(Method::GET, "audit").await;
    let actions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("session.end", first.session_id.as_str())));
    assert!(actions.contains(&("session.delete", second.session_id.as_str())));
    bridge.shutdown().await;
}

/// The text of a tricky message: commas, quotes, a newline and non-ASCII.
const TRICKY: &str = "Hello, \"world\"\nsecond line; ünïcode, 100%";

async fn the_export_streams_every_message_as_jsonl_or_csv(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let visitor = client.open_session(None).await;
    client.send(&visitor, TRICKY).await;
    client.send(&visitor, "plain").await;
    clock(&bridge).advance_ms(1_000);
    let other = client.open_session(None).await;
    client.send(&other, "another session").await;

    let response = client
        .admin(Method::GET, "sessions/export?format=jsonl")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"airlock-sessions-")
            && disposition.ends_with(".jsonl\""),
        "{disposition}"
    );
    let body = response.text().await.unwrap();
    let rows: Vec<ExportRow> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let texts: Vec<_> = rows.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, ["another session", TRICKY, "plain"]);
    assert_eq!(rows[1].session_id, visitor.session_id);
    assert_eq!(rows[1].visitor_id, visitor.visitor_id);
    assert_eq!(rows[1].interface, "demo");
    assert_eq!((rows[1].role, rows[1].seq), (Role::User, 1));

    let response = client
        .admin(Method::GET, "sessions/export?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        headers,
        [
            "session_id",
            "interface",
            "visitor_id",
            "user_id",
            "user_name",
            "user_email",
            "session_created_at",
            "message_id",
            "seq",
            "role",
            "status",
            "created_at",
            "text"
        ]
    );
    let parsed: Vec<ExportRow> = reader.deserialize().map(Result::unwrap).collect();
    assert_eq!(parsed, rows, "CSV and JSON Lines carry the same rows");

    // The same filters as the list.
    let filtered = client
        .admin(Method::GET, "sessions/export?format=jsonl&q=ANOTHER")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(filtered.lines().count(), 1);

    let bad = client
        .admin(Method::GET, "sessions/export?format=xml")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_format").await;
    let bad = client
        .admin(Method::GET, "sessions/export?format=csv&since=soon")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_time").await;
    bridge.shutdown().await;
}

async fn a_large_export_spans_several_pages(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let interface = bridge
        .store
        .interface_by_slug("demo")
        .await
        .unwrap()
        .unwrap();
    let now = clock(&bridge).now_ms_value();
    // More sessions than one export page (200) holds.
    for n in 0..205 {
        let session = bridge
            .store
            .create_session(
                &NewSession {
                    interface_id: interface.id.clone(),
                    token_hash: hash_secret(&new_id("t")),
                    resume_hash: hash_secret(&new_id("r")),
                    ..NewSession::default()
                },
                now + n,
            )
            .await
            .unwrap();
        bridge
            .store
            .send_user_message(
                &session.id,
                "c",
                &format!("message {n}"),
                &[],
                None,
                now + n,
            )
            .await
            .unwrap();
    }
    let body = client
        .admin(Method::GET, "sessions/export?format=csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let rows: Vec<ExportRow> = reader.deserialize().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 205);
    let mut sessions: Vec<_> = rows.iter().map(|r| r.session_id.clone()).collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 205, "every session once");
    assert_eq!(rows[0].text, "message 204", "newest activity first");
    assert_eq!(rows[204].text, "message 0");
    bridge.shutdown().await;
}

async fn connectors_show_whether_they_are_online_and_busy(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let busy = bridge.connector_key("busy").await;
    let _idle = bridge.connector_key("never-seen").await;
    let visitor = client.open_session(None).await;
    client.send(&visitor, "hi").await;
    assert_eq!(client.claim(&busy).await.len(), 1);

    let list: List<Connector> = client.admin_json(Method::GET, "connectors").await;
    let by_name = |name: &str| list.items.iter().find(|c| c.name == name).unwrap().clone();
    let busy_row = by_name("busy");
    assert!(busy_row.online);
    assert_eq!(busy_row.in_flight, 1);
    assert!(busy_row.last_seen_at.is_some());
    let idle_row = by_name("never-seen");
    assert!(!idle_row.online);
    assert_eq!(idle_row.in_flight, 0);

    // Long silent and its lease run out: offline.
    clock(&bridge).advance_ms(120_000);
    let list: List<Connector> = client.admin_json(Method::GET, "connectors").await;
    let busy_row = list.items.iter().find(|c| c.name == "busy").unwrap();
    assert!(!busy_row.online);
    assert_eq!(busy_row.in_flight, 0);
    bridge.shutdown().await;
}

async fn dead_letters_are_retried_and_discarded(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let key = bridge.connector_key("agent").await;
    let visitor = client.open_session(None).await;
    client.send(&visitor, "please answer").await;

    let kill = |item: ClaimedItem| {
        let client = &client;
        let key = key.clone();
        async move {
            let failed = client
                .connector(
                    &key,
                    &format!("leases/{}/fail", item.lease_id),
                    json!({"error": "model down", "retry": false}),
                )
                .await;
            assert_eq!(failed.status(), StatusCode::OK);
        }
    };
    let item = client.claim(&key).await.remove(0);
    let message_id = item.message.id.clone();
    kill(item).await;
    let dead: List<DeadLetter> = client.admin_json(Method::GET, "dead-letters").await;
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].message.id, message_id);

    // Retry: queued again, delivered again from the first attempt.
    let retried = client
        .admin(Method::POST, &format!("dead-letters/{message_id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let retried: Message = retried.json().await.unwrap();
    assert_eq!(
        (retried.id.as_str(), retried.status),
        (message_id.as_str(), MessageStatus::Queued)
    );
    let dead: List<DeadLetter> = client.admin_json(Method::GET, "dead-letters").await;
    assert!(dead.items.is_empty());
    let again = client.claim(&key).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].message.id.as_str(), again[0].attempt),
        (message_id.as_str(), 1)
    );

    // A live item is neither retried nor discarded.
    let live = client
        .admin(Method::POST, &format!("dead-letters/{message_id}/retry"))
        .send()
        .await
        .unwrap();
    assert_error(live, StatusCode::CONFLICT, "not_dead_lettered").await;
    let live = client
        .admin(Method::DELETE, &format!("dead-letters/{message_id}"))
        .send()
        .await
        .unwrap();
    assert_error(live, StatusCode::CONFLICT, "not_dead_lettered").await;

    // Discard: off the list; the visitor still sees the failure.
    kill(again.into_iter().next().unwrap()).await;
    let discarded: Value = client
        .admin_json(Method::DELETE, &format!("dead-letters/{message_id}"))
        .await;
    assert_eq!(discarded, json!({"deleted": message_id}));
    let dead: List<DeadLetter> = client.admin_json(Method::GET, "dead-letters").await;
    assert!(dead.items.is_empty());
    let transcript: Value = client
        .admin_json(Method::GET, &format!("sessions/{}", visitor.session_id))
        .await;
    let reply = &transcript["messages"][1];
    assert_eq!(
        (reply["role"].as_str(), reply["status"].as_str()),
        (Some("assistant"), Some("failed"))
    );
    assert!(reply["error"].is_string());

    for (method, path) in [
        (Method::POST, "dead-letters/msg_nope/retry"),
        (Method::DELETE, "dead-letters/msg_nope"),
    ] {
        let unknown = client.admin(method, path).send().await.unwrap();
        assert_error(unknown, StatusCode::NOT_FOUND, "dead_letter_not_found").await;
    }
    let audit: Value = client.admin_json(Method::GET, "audit").await;
    let actions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"dead_letter.retry".to_string()));
    assert!(actions.contains(&"dead_letter.discard".to_string()));
    bridge.shutdown().await;
}

async fn stats_count_a_known_day(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let clock = clock(&bridge);
    let key = bridge.connector_key("agent").await;
    let since = clock.rfc3339_at(0);

    // Two sessions from one referrer and one from another; three answers after 1 s, 2 s, 10 s.
    let mut latency_ms = [1_000, 2_000, 10_000].into_iter();
    for referrer in [
        "https://news.example/",
        "https://news.example/",
        "https://blog.example/",
    ] {
        let visitor = client.open_session(Some(referrer)).await;
        client.send(&visitor, "question").await;
        let item = client.claim(&key).await.remove(0);
        clock.advance_ms(latency_ms.next().unwrap());
        let reply = client
            .connector(
                &key,
                &format!("leases/{}/reply", item.lease_id),
                json!({"text": "answer"}),
            )
            .await;
        assert_eq!(reply.status(), StatusCode::OK);
    }
    let until = clock.rfc3339_at(60_000);
    let stats: Stats = client
        .admin_json(
            Method::GET,
            &format!("stats?interface=demo&since={since}&until={until}"),
        )
        .await;
    assert_eq!((stats.sessions, stats.visitors), (3, 3));
    assert_eq!((stats.messages.user, stats.messages.assistant), (3, 3));
    assert_eq!(stats.reply_latency_ms.p50, Some(2_000));
    assert_eq!(stats.reply_latency_ms.p95, Some(10_000));
    assert_eq!(stats.bucket, "hour");
    assert!(!stats.series.is_empty() && stats.series.len() <= 2);
    assert_eq!(stats.series.iter().map(|b| b.sessions).sum::<i64>(), 3);
    assert_eq!(stats.series.iter().map(|b| b.messages).sum::<i64>(), 6);
    assert_eq!(stats.by_hour.len(), 24);
    assert_eq!(stats.by_hour.iter().sum::<i64>(), 6);
    assert_eq!(stats.top_referrers.len(), 2);
    assert_eq!(
        (
            stats.top_referrers[0].referrer.as_str(),
            stats.top_referrers[0].sessions
        ),
        ("https://news.example/", 2)
    );
    assert_eq!(stats.dead_letters, 0);

    // The default period is the last 7 days, in daily buckets.
    let week: Stats = client.admin_json(Method::GET, "stats").await;
    assert_eq!(week.bucket, "day");
    assert_eq!(week.sessions, 3);
    assert!(
        week.series.len() == 7 || week.series.len() == 8,
        "{}",
        week.series.len()
    );

    let unknown = client
        .admin(Method::GET, "stats?interface=nope")
        .send()
        .await
        .unwrap();
    assert_error(unknown, StatusCode::NOT_FOUND, "interface_not_found").await;
    let bad = client
        .admin(Method::GET, "stats?since=last-week")
        .send()
        .await
        .unwrap();
    let message = assert_error(bad, StatusCode::BAD_REQUEST, "invalid_time").await;
    assert!(message.starts_with("since"), "{message}");
    let backwards = client
        .admin(Method::GET, &format!("stats?since={until}&until={since}"))
        .send()
        .await
        .unwrap();
    assert_error(backwards, StatusCode::BAD_REQUEST, "invalid_period").await;
    bridge.shutdown().await;
}

async fn the_event_tail_shows_sessions_messages_and_admin_actions(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let response = client.admin(Method::GET, "events").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(response);

    let visitor = client.open_session(None).await;
    let created = next_admin_event(&mut events).await;
    assert!(
        matches!(&created, AdminEvent::Session { action, session_id, .. }
            if action == "created" && *session_id == visitor.session_id),
        "{created:?}"
    );
    client.send(&visitor, "Hello from the visitor").await;
    let message = next_admin_event(&mut events).await;
    assert!(
        matches!(&message, AdminEvent::Message { session_id, role: Role::User, snippet, .. }
            if *session_id == visitor.session_id && snippet == "Hello from the visitor"),
        "{message:?}"
    );
    // A connector comes online, then gives up on the message.
    let key = bridge.connector_key("agent").await;
    let item = client.claim(&key).await.remove(0);
    let online = next_admin_event(&mut events).await;
    assert!(
        matches!(&online, AdminEvent::Connector { name, online: true, .. } if name == "agent"),
        "{online:?}"
    );
    client
        .connector(
            &key,
            &format!("leases/{}/fail", item.lease_id),
            json!({"error": "model down", "retry": false}),
        )
        .await;
    let dead = next_admin_event(&mut events).await;
    assert!(
        matches!(&dead, AdminEvent::DeadLetter { message_id, error, .. }
            if *message_id == item.message.id && error == "model down"),
        "{dead:?}"
    );
    client
        .admin(
            Method::POST,
            &format!("sessions/{}/end", visitor.session_id),
        )
        .send()
        .await
        .unwrap();
    let audit = next_admin_event(&mut events).await;
    assert!(
        matches!(&audit, AdminEvent::Audit { entry } if entry.action == "session.end"),
        "{audit:?}"
    );
    let ended = next_admin_event(&mut events).await;
    assert!(
        matches!(&ended, AdminEvent::Session { action, .. } if action == "ended"),
        "{ended:?}"
    );

    // The tail ends when the bridge stops.
    tokio::time::timeout(Duration::from_secs(10), bridge.shutdown())
        .await
        .expect("shutdown does not wait for the tail");
    let end = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends");
}

/// The next admin event, checking that the SSE event name is its `type`.
async fn next_admin_event(reader: &mut SseReader) -> AdminEvent {
    let event = tokio::time::timeout(Duration::from_secs(10), reader.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open");
    let parsed: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(parsed["type"], event.event.as_str());
    serde_json::from_value(parsed).unwrap()
}

/// RFC 3339 times relative to the bridge's manual clock.
trait ClockExt {
    fn now_ms_value(&self) -> i64;
    fn rfc3339_at(&self, offset_ms: i64) -> String;
    fn now_rfc3339(&self) -> String {
        self.rfc3339_at(0)
    }
}

impl ClockExt for ManualClock {
    fn now_ms_value(&self) -> i64 {
        airlock_bridge::clock::Clock::now_ms(self)
    }

    fn rfc3339_at(&self, offset_ms: i64) -> String {
        let at = airlock_shared::time_from_millis(self.now_ms_value() + offset_ms);
        // `Z`, not `+00:00`: a `+` in a query string would read as a space.
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

async fn the_audit_log_pages_newest_first_and_names_the_key(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let clock = clock(&bridge);
    // Five actions, a second apart, plus one at the same instant as the last.
    for (i, action) in ["unpublish", "publish", "unpublish", "publish", "unpublish"]
        .iter()
        .enumerate()
    {
        if i > 0 {
            clock.advance_ms(1_000);
        }
        let response = client
            .admin(Method::POST, &format!("interfaces/demo/{action}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = client
        .admin(Method::POST, "connectors")
        .json(&json!({"name": "audited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let mut seen: Vec<AuditEntry> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("audit?limit=2&cursor={c}"),
            None => "audit?limit=2".to_string(),
        };
        let page: AuditPage = client.admin_json(Method::GET, &path).await;
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // Newest first; the two entries of the same millisecond come in either order (ties are broken
    // by id, which keeps paging exact but says nothing about which came first).
    let mut newest_two: Vec<&str> = seen[..2].iter().map(|e| e.action.as_str()).collect();
    newest_two.sort_unstable();
    assert_eq!(newest_two, ["connector.create", "interface.unpublish"]);
    let older: Vec<&str> = seen[2..].iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        older,
        [
            "interface.publish",
            "interface.unpublish",
            "interface.publish",
            "interface.unpublish",
        ],
        "every entry once across pages"
    );
    let mut ids: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    assert!(seen.windows(2).all(|w| w[0].at >= w[1].at));
    assert!(seen.iter().all(|e| e.actor == "configured admin key"));
    let created = seen
        .iter()
        .find(|e| e.action == "connector.create")
        .unwrap();
    assert_eq!(created.detail.as_ref().unwrap()["name"], "audited");
    assert_eq!(seen[2].target, "demo");

    let bad = client
        .admin(Method::GET, "audit?cursor=not-a-cursor")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    bridge.shutdown().await;
}

async fn a_visitor_is_forgotten_on_request(bridge: TestBridge) {
    let client = Client::new(&bridge);
    let gone = client.open_session(None).await;
    let kept = client.open_session(None).await;
    assert_eq!(
        client.send(&gone, "forget me").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client.send(&kept, "keep me").await.status(),
        StatusCode::ACCEPTED
    );

    let forget = |body: Value| {
        client
            .admin(Method::POST, "visitors/forget")
            .json(&body)
            .send()
    };
    let response = forget(json!({"visitor_id": gone.visitor_id}))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let removed: DataRemoved = response.json().await.unwrap();
    assert_eq!(
        removed,
        DataRemoved {
            sessions: 1,
            messages: 1,
            attachments: 0
        }
    );
    // Gone for the admin and for the visitor's own token; the other visitor is untouched.
    let missing = client
        .admin(Method::GET, &format!("sessions/{}", gone.session_id))
        .send()
        .await
        .unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "session_not_found").await;
    let poll = client
        .http
        .get(format!(
            "{}/api/v1/sessions/{}/messages",
            client.base, gone.session_id
        ))
        .bearer_auth(&gone.session_token)
        .send()
        .await
        .unwrap();
    assert_error(poll, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let still: Value = client
        .admin_json(Method::GET, &format!("sessions/{}", kept.session_id))
        .await;
    assert_eq!(still["messages"][0]["text"], "keep me");

    // Audited, with what went.
    let audit: AuditPage = client.admin_json(Method::GET, "audit?limit=1").await;
    let entry = &audit.items[0];
    assert_eq!(entry.action, "visitor.forget");
    assert_eq!(entry.target, format!("visitor_id={}", gone.visitor_id));
    assert_eq!(entry.detail.as_ref().unwrap()["messages"], 1);

    // Again: nothing left, still fine. Bad requests name the field.
    let again: DataRemoved = forget(json!({"visitor_id": gone.visitor_id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, DataRemoved::default());
    for body in [
        json!({}),
        json!({"visitor_id": "ses_not_a_visitor"}),
        json!({"visitor_id": gone.visitor_id, "email": "x@example.com"}),
    ] {
        let refused = forget(body).await.unwrap();
        assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    }
    bridge.shutdown().await;
}

on_both_backends!(
    a_visitor_is_forgotten_on_request,
    admins_need_the_admin_key,
    sessions_are_searched_paged_ended_and_deleted,
    the_export_streams_every_message_as_jsonl_or_csv,
    a_large_export_spans_several_pages,
    connectors_show_whether_they_are_online_and_busy,
    dead_letters_are_retried_and_discarded,
    stats_count_a_known_day,
    the_event_tail_shows_sessions_messages_and_admin_actions,
    the_audit_log_pages_newest_first_and_names_the_key,
);

/// Starts a bridge configured to keep sessions 30 days on `store`, which already holds one
/// session inactive for 40 days and one from today; the old one must go at start-up, audited.
async fn sessions_past_the_retention_period_are_deleted_at_start_up(
    store: airlock_bridge::store::Store,
) {
    const DAY: i64 = 86_400_000;
    let clock = Arc::new(ManualClock::new());
    let now = airlock_bridge::clock::Clock::now_ms(clock.as_ref());
    let ifc = common::interface(&store, "kept-a-month").await;
    let old = common::session(&store, &ifc, now - 40 * DAY).await;
    let recent = common::session(&store, &ifc, now - DAY).await;
    let mut config = airlock_bridge::Config::defaults();
    config.retention_days = 30;
    let bridge = TestBridge::start_configured(store.clone(), Some(clock), None, config).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.session(&old.id).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old session is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.session(&recent.id).await.unwrap().is_some());
    // The audit entry is written just after the purge's last batch.
    let client = Client::new(&bridge);
    let entry = loop {
        let audit: AuditPage = client.admin_json(Method::GET, "audit").await;
        if let Some(entry) = audit
            .items
            .into_iter()
            .find(|e| e.action == "sessions.purge")
        {
            break entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the purge is not in the audit log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry.actor, "retention");
    assert_eq!(entry.target, "30 days");
    assert_eq!(entry.detail.as_ref().unwrap()["sessions"], 1);
    bridge.shutdown().await;
}

#[tokio::test]
async fn sessions_past_the_retention_period_are_deleted_on_sqlite() {
    let db = common::TestDb::sqlite(StoreOptions::default()).await;
    sessions_past_the_retention_period_are_deleted_at_start_up(db.store.clone()).await;
}

#[tokio::test]
async fn sessions_past_the_retention_period_are_deleted_on_postgres() {
    let Some(db) = common::TestDb::postgres(StoreOptions::default()).await else {
        return;
    };
    sessions_past_the_retention_period_are_deleted_at_start_up(db.store.clone()).await;
}
