//! Two bridge replicas on one PostgreSQL database: a visitor on one and a connector on the other
//! see each other's writes within milliseconds (LISTEN/NOTIFY), not after the slow fallback
//! re-check. PostgreSQL only: skipped with a notice when `AIRLOCK_TEST_POSTGRES_URL` is unset.

mod common;

use std::time::{Duration, Instant};

use airlock_bridge::store::{LISTENER_APPLICATION_NAME, Store, StoreOptions};
use airlock_bridge::testing::TestBridge;
use airlock_shared::connector::ClaimedItem;
use airlock_shared::{Message, MessageStatus, Role};
use reqwest::StatusCode;
use serde_json::json;

use common::TestDb;
use common::http::{Connector, SseReader, Visitor};

/// How soon a waiter on one replica must see a write made through the other. Far below the
/// 5 s fallback re-check, so only a notification can meet it.
const CROSS_REPLICA_WAKE: Duration = Duration::from_millis(500);

/// How long a waiter is left parked before the write it waits for, so the write surely lands
/// while it waits (rather than before its first look).
const PARK: Duration = Duration::from_millis(300);

/// Replica `a` and replica `b`, two bridges sharing one fresh PostgreSQL schema.
struct Replicas {
    a: TestBridge,
    b: TestBridge,
    _db: TestDb,
}

impl Replicas {
    async fn start() -> Option<Replicas> {
        let db = TestDb::postgres(StoreOptions::default()).await?;
        let options = StoreOptions {
            max_connections: 5,
            ..StoreOptions::default()
        };
        let second = Store::connect(&db.url, &options)
            .await
            .expect("open the test schema a second time");
        let a = TestBridge::start_on(db.store.clone(), None, None).await;
        let b = TestBridge::start_on(second, None, None).await;
        Some(Replicas { a, b, _db: db })
    }

    async fn shutdown(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

impl Visitor {
    /// Sends `text`; the bridge must accept it.
    async fn sent(&self, client_id: &str, text: &str) {
        let response = self.send(client_id, text).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    /// Polls without waiting until `done` holds for a message; returns the cursor after it.
    async fn catch_up(&self, done: impl Fn(&Message) -> bool) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cursor = self.session.cursor;
        loop {
            let page = self.poll(cursor, 1).await;
            cursor = page.cursor;
            if page.messages.iter().any(&done) {
                return cursor;
            }
            assert!(Instant::now() < deadline, "the visitor never caught up");
        }
    }
}

impl Connector {
    async fn claim(&self, wait: u64) -> Vec<ClaimedItem> {
        self.claim_up_to(1, wait).await.items
    }

    async fn reply(&self, item: &ClaimedItem, text: &str) {
        let response = self
            .call(
                &format!("leases/{}/reply", item.lease_id),
                json!({ "text": text }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

fn is_reply(message: &Message) -> bool {
    message.role == Role::Assistant && message.status == MessageStatus::Complete
}

/// Sends on replica A and has a connector on replica B take the message; returns the item.
/// Logs a cross-replica wake-up and checks it came far sooner than the fallback re-check.
fn assert_woke_at_once(what: &str, latency: Duration) {
    eprintln!("cross-replica wake-up, {what}: {latency:?}");
    assert!(
        latency < CROSS_REPLICA_WAKE,
        "{what}: woke after {latency:?}, not within {CROSS_REPLICA_WAKE:?}"
    );
}

/// A visitor on A whose question a connector on B has claimed, and the visitor's cursor past the
/// question and its `processing` change, so only the reply can end the visitor's next wait.
async fn question_claimed_through_b(replicas: &Replicas) -> (Visitor, Connector, ClaimedItem, i64) {
    let visitor = Visitor::open(&replicas.a.url, "demo").await;
    let connector = Connector::new(&replicas.b, "replica-test").await;
    let item = claimed_through_b(&visitor, &connector, "question").await;
    let cursor = visitor
        .catch_up(|m| m.id == item.message.id && m.status == MessageStatus::Processing)
        .await;
    (visitor, connector, item, cursor)
}

async fn claimed_through_b(visitor: &Visitor, connector: &Connector, text: &str) -> ClaimedItem {
    visitor.sent(&format!("c-{text}"), text).await;
    let mut items = connector.claim(10).await;
    assert_eq!(
        items.len(),
        1,
        "the connector on B gets the message sent on A"
    );
    let item = items.remove(0);
    assert_eq!(item.message.text, text);
    item
}

#[tokio::test]
async fn a_claim_waiting_on_one_replica_wakes_at_once_for_a_message_sent_through_another() {
    let Some(replicas) = Replicas::start().await else {
        return;
    };
    let visitor = Visitor::open(&replicas.a.url, "demo").await;
    let connector = Connector::new(&replicas.b, "replica-test").await;

    let claim = tokio::spawn(async move {
        let started = Instant::now();
        let items = connector.claim(20).await;
        (items, started, Instant::now())
    });
    // Once the claim has marked the agent online it is running; then let it park.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !visitor.poll(visitor.session.cursor, 0).await.agent_online {
        assert!(Instant::now() < deadline, "the claim on B never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(PARK).await;

    let sent_at = Instant::now();
    visitor.sent("c-1", "hello from replica A").await;
    let (items, started, claimed_at) = claim.await.unwrap();

    assert_eq!(items.len(), 1);
    assert_eq!(items[0].message.text, "hello from replica A");
    assert!(
        sent_at - started >= PARK,
        "the claim was waiting before the message was sent"
    );
    let latency = claimed_at - sent_at;
    assert_woke_at_once("claim on B after send on A", latency);
    replicas.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_on_one_replica_sees_a_reply_posted_through_another_at_once() {
    let Some(replicas) = Replicas::start().await else {
        return;
    };
    let (visitor, connector, item, cursor) = question_claimed_through_b(&replicas).await;

    let poll = {
        let visitor = visitor.clone();
        tokio::spawn(async move {
            let page = visitor.poll(cursor, 20).await;
            (page, Instant::now())
        })
    };
    tokio::time::sleep(PARK).await;
    let replied_at = Instant::now();
    connector.reply(&item, "answer from replica B").await;
    let (page, seen_at) = poll.await.unwrap();

    let reply = page
        .messages
        .iter()
        .find(|m| is_reply(m))
        .unwrap_or_else(|| panic!("the long-poll returned the reply: {:#?}", page.messages));
    assert_eq!(reply.text, "answer from replica B");
    let latency = seen_at - replied_at;
    assert_woke_at_once("long-poll on A after reply on B", latency);
    replicas.shutdown().await;
}

#[tokio::test]
async fn an_event_stream_on_one_replica_shows_a_reply_posted_through_another_at_once() {
    let Some(replicas) = Replicas::start().await else {
        return;
    };
    let (visitor, connector, item, cursor) = question_claimed_through_b(&replicas).await;

    let response = visitor
        .http
        .get(visitor.url(&format!("events?after={cursor}")))
        .bearer_auth(&visitor.session.session_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = SseReader::new(response);
    let status = events.next().await.expect("the status event");
    assert_eq!(status.event, "status");
    let stream = tokio::spawn(async move {
        loop {
            let event = events.next().await.expect("the stream stays open");
            if event.event != "message" {
                continue;
            }
            let message: Message = serde_json::from_str(&event.data).unwrap();
            if is_reply(&message) {
                return (message, Instant::now());
            }
        }
    });
    tokio::time::sleep(PARK).await;
    let replied_at = Instant::now();
    connector.reply(&item, "streamed from replica B").await;
    let (reply, seen_at) = tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the reply within 10 s")
        .unwrap();

    assert_eq!(reply.text, "streamed from replica B");
    let latency = seen_at - replied_at;
    assert_woke_at_once("event stream on A after reply on B", latency);
    replicas.shutdown().await;
}

#[tokio::test]
async fn a_replica_whose_listening_connection_was_cut_reconnects_and_still_wakes() {
    let Some(replicas) = Replicas::start().await else {
        return;
    };
    let visitor = Visitor::open(&replicas.a.url, "demo").await;
    let connector = Connector::new(&replicas.b, "replica-test").await;
    let claim = tokio::spawn(async move {
        let items = connector.claim(20).await;
        (items, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !visitor.poll(visitor.session.cursor, 0).await.agent_online {
        assert!(Instant::now() < deadline, "the claim on B never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cut every bridge's listening connection (other tests' too: they reconnect as well), once
    // both replicas have theirs: on a busy machine it may still be connecting.
    while !(replicas.a.hears_every_change() && replicas.b.hears_every_change()) {
        assert!(Instant::now() < deadline, "the replicas never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) t",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&mut connect_admin().await)
    .await
    .expect("terminate the listeners");
    assert!(
        cut >= 2,
        "both replicas were listening ({cut} connections cut)"
    );
    tokio::time::sleep(PARK).await;

    let sent_at = Instant::now();
    visitor.sent("c-1", "after the cut").await;
    let (items, claimed_at) = claim.await.unwrap();
    assert_eq!(items.len(), 1);
    let latency = claimed_at - sent_at;
    eprintln!("cross-replica wake-up after the listener was cut: {latency:?}");
    // The fallback re-check would take up to 5 s; the reconnected listener (or its wake-up of
    // everything on reconnecting) is much faster.
    assert!(
        latency < Duration::from_secs(2),
        "the claim on B woke {latency:?} after the send on A"
    );
    replicas.shutdown().await;
}

async fn connect_admin() -> sqlx::PgConnection {
    let url = common::postgres_url().expect("checked by Replicas::start");
    <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect to AIRLOCK_TEST_POSTGRES_URL")
}
