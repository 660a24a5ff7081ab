//! Rate limits over real HTTP: visitor messages per session (the interface's `rate_limit`), new
//! sessions and public reads per client address (with `X-Forwarded-For` believed only from a
//! trusted proxy), connector and admin calls per key; and that secrets in query strings never
//! reach the log.
//!
//! The limits are GCRA: a quota of N per window allows a burst of N, then one more every
//! window/N. So after 10 messages in a burst under the default 10 per 60 s, the 11th is allowed
//! 6 s later (`Retry-After: 6`), not a whole minute later.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_bridge::Config;
use airlock_bridge::clock::ManualClock;
use airlock_bridge::manage;
use airlock_bridge::store::StoreOptions;
use airlock_bridge::testing::TestBridge;
use airlock_shared::Role;
use airlock_shared::connector::ClaimResponse;
use airlock_shared::visitor::SessionCreated;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::http::{Visitor, assert_error, http};

/// Like `on_both_backends!`, with each bridge started on the settings `$config()` returns.
macro_rules! on_both_backends_with {
    ($config:ident: $($case:ident),* $(,)?) => {
        mod $config {
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let bridge = TestBridge::start_with_config(super::super::$config()).await;
                        super::super::$case(bridge).await;
                    }
                )*
                use super::super::TestBridge;
            }
            mod postgres {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let Some(db) =
                            super::super::common::TestDb::postgres(StoreOptions::default()).await
                        else {
                            return;
                        };
                        let bridge = TestBridge::start_configured(
                            db.store.clone(),
                            None,
                            None,
                            super::super::$config(),
                        )
                        .await;
                        super::super::$case(bridge).await;
                    }
                )*
                use super::super::{StoreOptions, TestBridge};
            }
        }
    };
}

/// Sends `message {client_id}` as `visitor`.
async fn send(visitor: &Visitor, client_id: &str) -> reqwest::Response {
    visitor
        .send(client_id, &format!("message {client_id}"))
        .await
}

/// Sends and expects 202; returns the stored message's id.
async fn send_ok(visitor: &Visitor, client_id: &str) -> String {
    let response = send(visitor, client_id).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{client_id}");
    let body: Value = response.json().await.unwrap();
    body["message"]["id"].as_str().unwrap().to_string()
}

/// `POST /interfaces/demo/sessions`, optionally with an `X-Forwarded-For` header.
async fn open_session(bridge: &TestBridge, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = http()
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({}));
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    request.send().await.unwrap()
}

/// The `Retry-After` of a 429, in seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds")
}

/// Asserts a 429 `rate_limited` whose `Retry-After` is in `expected` and whose message names it.
async fn assert_limited(response: reqwest::Response, expected: std::ops::RangeInclusive<u64>) {
    let secs = retry_after(&response);
    assert!(
        expected.contains(&secs),
        "Retry-After {secs} not in {expected:?}"
    );
    let message = assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(
        message.contains(&format!("Try again in {secs} second")),
        "{message}"
    );
}

/// `PATCH /admin/interfaces/demo` with `body`.
async fn patch_demo(bridge: &TestBridge, body: Value) {
    let response = http()
        .patch(format!("{}/api/v1/admin/interfaces/demo", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ---- visitor messages per session ------------------------------------------------------------

async fn the_eleventh_message_in_a_minute_is_refused_and_not_stored(bridge: TestBridge) {
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let mut ids = Vec::new();
    for n in 1..=10 {
        ids.push(send_ok(&visitor, &format!("c{n}")).await);
    }

    // Default 10 per 60 s: the next message is due 60/10 = 6 s after the burst.
    assert_limited(send(&visitor, "c11").await, 1..=6).await;

    // A retry of a message that was stored is answered as before, not refused.
    assert_eq!(send_ok(&visitor, "c5").await, ids[4]);
    // … and it did not count: still refused, still nothing new.
    assert_limited(send(&visitor, "c12").await, 1..=6).await;

    let transcript = visitor.poll(0, 0).await;
    let user: Vec<_> = transcript
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .collect();
    assert_eq!(user.len(), 10);
    assert!(
        user.iter()
            .all(|m| !matches!(m.client_id.as_deref(), Some("c11" | "c12")))
    );

    // The inbox holds exactly the ten: a connector drains them.
    let key = bridge.connector_key("drain").await;
    let connector = http();
    let mut delivered = HashSet::new();
    loop {
        let response = connector
            .post(format!("{}/api/v1/connector/claim", bridge.url))
            .bearer_auth(&key)
            .json(&json!({"max": 10, "wait": 0, "lease_secs": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let claimed: ClaimResponse = response.json().await.unwrap();
        if claimed.items.is_empty() {
            break;
        }
        for item in claimed.items {
            assert!(delivered.insert(item.message.id.clone()), "delivered twice");
            let reply = connector
                .post(format!(
                    "{}/api/v1/connector/leases/{}/reply",
                    bridge.url, item.lease_id
                ))
                .bearer_auth(&key)
                .json(&json!({"text": "ok"}))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
        }
        assert!(delivered.len() <= 10, "more than ten inbox items");
    }
    assert_eq!(delivered, ids.into_iter().collect::<HashSet<_>>());
    bridge.shutdown().await;
}

async fn a_changed_rate_limit_applies_to_new_messages(bridge: TestBridge) {
    let visitor = Visitor::open(&bridge.url, "demo").await;
    send_ok(&visitor, "before").await;
    patch_demo(
        &bridge,
        json!({"rate_limit": {"messages": 2, "window_secs": 3600}}),
    )
    .await;
    send_ok(&visitor, "a").await;
    send_ok(&visitor, "b").await;
    // Two per hour: the next is due half an hour after the burst, far beyond the old 6 s.
    assert_limited(send(&visitor, "c").await, 1790..=1800).await;
    bridge.shutdown().await;
}

async fn sending_again_after_retry_after_is_accepted(bridge: TestBridge) {
    patch_demo(
        &bridge,
        json!({"rate_limit": {"messages": 2, "window_secs": 2}}),
    )
    .await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    send_ok(&visitor, "a").await;
    send_ok(&visitor, "b").await;
    let refused = send(&visitor, "c").await;
    let wait = retry_after(&refused);
    assert_limited(refused, 1..=1).await;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    send_ok(&visitor, "c").await;
    bridge.shutdown().await;
}

on_both_backends!(
    the_eleventh_message_in_a_minute_is_refused_and_not_stored,
    a_changed_rate_limit_applies_to_new_messages,
    sending_again_after_retry_after_is_accepted,
);

// ---- new sessions and reads per client address ----------------------------------------------

/// Two new sessions per address per minute.
fn two_sessions_per_minute() -> Config {
    let mut config = Config::defaults();
    config.sessions_per_ip_per_minute = 2;
    config
}

async fn new_sessions_are_limited_per_address(bridge: TestBridge) {
    let interface = bridge
        .store
        .interface_by_slug("demo")
        .await
        .unwrap()
        .unwrap();
    let first: SessionCreated = open_session(&bridge, None).await.json().await.unwrap();
    assert_eq!(
        open_session(&bridge, None).await.status(),
        StatusCode::CREATED
    );
    // Two per minute: the next is due 30 s after the burst.
    assert_limited(open_session(&bridge, None).await, 1..=30).await;
    assert_eq!(
        bridge
            .store
            .count_sessions_of_interface(&interface.id)
            .await
            .unwrap(),
        2
    );

    // Resuming is not starting: a visitor going from page to page is never refused.
    let resumed = http()
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({"resume_token": first.resume_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    bridge.shutdown().await;
}

on_both_backends_with!(two_sessions_per_minute: new_sessions_are_limited_per_address);

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let mut config = Config::defaults();
    config.sessions_per_ip_per_minute = 1;
    config.trusted_proxies = "127.0.0.1".parse().unwrap();
    let bridge = TestBridge::start_with_config(config).await;

    // Behind the proxy at 127.0.0.1, two visitors have a budget each.
    let one = open_session(&bridge, Some("203.0.113.1")).await;
    assert_eq!(one.status(), StatusCode::CREATED);
    assert_eq!(
        open_session(&bridge, Some("203.0.113.2")).await.status(),
        StatusCode::CREATED
    );
    assert_limited(open_session(&bridge, Some("203.0.113.1")).await, 1..=60).await;
    // A visitor writing its own X-Forwarded-For only adds to the left of what the proxy appends.
    assert_limited(
        open_session(&bridge, Some("198.51.100.77, 203.0.113.1")).await,
        1..=60,
    )
    .await;
    // Without the header the proxy itself is the client, with a budget of its own.
    assert_eq!(
        open_session(&bridge, None).await.status(),
        StatusCode::CREATED
    );

    // The session records the visitor's address, not the proxy's.
    let session: SessionCreated = one.json().await.unwrap();
    let stored = bridge.store.session_ip(&session.session_id).await.unwrap();
    assert_eq!(stored.as_deref(), Some("203.0.113.1"));
    bridge.shutdown().await;
}

#[tokio::test]
async fn forwarded_for_is_ignored_without_trusted_proxies() {
    let mut config = Config::defaults();
    config.sessions_per_ip_per_minute = 1;
    let bridge = TestBridge::start_with_config(config).await;
    let first = open_session(&bridge, Some("203.0.113.1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_limited(open_session(&bridge, Some("203.0.113.2")).await, 1..=60).await;
    let session: SessionCreated = first.json().await.unwrap();
    let stored = bridge.store.session_ip(&session.session_id).await.unwrap();
    assert_eq!(stored.as_deref(), Some("127.0.0.1"));
    bridge.shutdown().await;
}

#[tokio::test]
async fn public_reads_are_limited_per_address() {
    let mut config = Config::defaults();
    config.reads_per_ip_per_minute = 3;
    let bridge = TestBridge::start_with_config(config).await;
    let read = || async {
        http()
            .get(format!("{}/api/v1/interfaces/demo", bridge.url))
            .send()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(read().await.status(), StatusCode::OK);
    }
    assert_limited(read().await, 1..=20).await;
    // The event stream and message polls draw from the same budget.
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let events = visitor
        .http
        .get(visitor.url("events"))
        .bearer_auth(&visitor.session.session_token)
        .send()
        .await
        .unwrap();
    assert_limited(events, 1..=20).await;
    bridge.shutdown().await;
}

// ---- connector and admin keys -----------------------------------------------------------------

#[tokio::test]
async fn connector_keys_are_limited_per_key() {
    let mut config = Config::defaults();
    config.connector_calls_per_minute = 2;
    let bridge = TestBridge::start_with_config(config).await;
    let me = |key: String| {
        let url = format!("{}/api/v1/connector/me", bridge.url);
        async move { http().get(url).bearer_auth(key).send().await.unwrap() }
    };
    let key = bridge.connector_key("busy").await;
    assert_eq!(me(key.clone()).await.status(), StatusCode::OK);
    assert_eq!(me(key.clone()).await.status(), StatusCode::OK);
    assert_limited(me(key.clone()).await, 1..=30).await;
    // Every connector route is covered, not just this one.
    let claim = http()
        .post(format!("{}/api/v1/connector/claim", bridge.url))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_limited(claim, 1..=30).await;
    let other = bridge.connector_key("quiet").await;
    assert_eq!(me(other).await.status(), StatusCode::OK);
    // A wrong key is refused as before, not counted against anyone.
    assert_eq!(
        me("alc_wrong".into()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn admin_keys_are_limited_per_key() {
    let mut config = Config::defaults();
    config.admin_calls_per_minute = 2;
    let bridge = TestBridge::start_with_config(config).await;
    let list = |key: String| {
        let url = format!("{}/api/v1/admin/interfaces", bridge.url);
        async move { http().get(url).bearer_auth(key).send().await.unwrap() }
    };
    let key = bridge.admin_key.clone();
    assert_eq!(list(key.clone()).await.status(), StatusCode::OK);
    assert_eq!(list(key.clone()).await.status(), StatusCode::OK);
    assert_limited(list(key.clone()).await, 1..=30).await;
    let other = manage::create_admin_key(&bridge.store, "second", 0)
        .await
        .unwrap();
    assert_eq!(list(other).await.status(), StatusCode::OK);
    bridge.shutdown().await;
}

// ---- secrets stay out of the log --------------------------------------------------------------

/// Everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The capture is the process-wide subscriber: a subscriber scoped to this thread could miss
// events, because tracing caches whether a call site is wanted when it is first hit, which may
// happen on another test's thread. The other tests of this file then log into it as well; none of
// them uses the word this test looks for.
#[tokio::test]
async fn query_tokens_never_reach_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    let bridge = TestBridge::start().await;
    let visitor = Visitor::open(&bridge.url, "demo").await;
    let secret = "SECRETsessiontoken0123456789";
    let events = http()
        .get(visitor.url(&format!("events?token={secret}&after=0")))
        .send()
        .await
        .unwrap();
    drop(events);
    let config = http()
        .get(format!(
            "{}/api/v1/interfaces/demo?preview=SECRETpreview42",
            bridge.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), StatusCode::OK);
    let page = http()
        .get(format!("{}/c/demo?preview=SECRETpreview43", bridge.url))
        .send()
        .await
        .unwrap();
    drop(page);
    bridge.shutdown().await;

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        log.contains(&format!(
            "path=/api/v1/sessions/{}/events",
            visitor.session.session_id
        )),
        "the request spans were not captured:\n{log}"
    );
    assert!(!log.contains("SECRET"), "a secret reached the log:\n{log}");
}
