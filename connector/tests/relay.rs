//! The connector library against a real bridge: a visitor's message is answered end to end,
//! shutdown drains, and bridge outages (down at start, restart) heal without a connector restart.

mod common;

use std::time::Duration;

use airlock_bridge::store::{Store, StoreOptions, sqlite_url};
use airlock_bridge::testing::TestBridge;
use airlock_connector::Config;
use airlock_shared::MessageStatus;
use tokio::time::Instant;

use common::{Relay, Visitor, init_logging, spawn_connector, stop, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_reply_reaches_the_visitor_streamed_then_complete() {
    init_logging();
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("echo").await;
    let mut config = Config::for_demo(&bridge.url, key);
    // Slow enough that the visitor's long-poll sees the reply grow.
    config.echo_delay_ms = 100;
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let text = "hello there from a visitor who likes streaming";
    let sent = visitor.send("c1", text).await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;

    let last = versions.last().unwrap();
    assert_eq!(last.status, MessageStatus::Complete);
    assert_eq!(last.text, text);
    let partial = versions.iter().find(|m| {
        m.status == MessageStatus::Streaming && !m.text.is_empty() && m.text.len() < text.len()
    });
    let partial =
        partial.unwrap_or_else(|| panic!("no partial streaming state seen: {versions:?}"));
    assert!(
        text.starts_with(&partial.text),
        "partial text {:?} is not a prefix",
        partial.text
    );

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_claiming_at_once_but_the_message_in_flight_still_gets_its_reply() {
    init_logging();
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("drain").await;
    let mut config = Config::for_demo(&bridge.url, key);
    config.echo_delay_ms = 300;
    // A full-length claim hold: `run` returning quickly proves the pending claim was aborted.
    config.claim_wait = 50;
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let text = "one two three four five six seven eight nine ten";
    let sent = visitor.send("c1", text).await;

    // Cancel while the reply is visibly half-way.
    let deadline = Instant::now() + Duration::from_secs(20);
    let partial = 'seen: loop {
        for m in visitor.poll(1).await {
            if m.reply_to.as_deref() == Some(sent.id.as_str()) && !m.text.is_empty() {
                break 'seen m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the reply never started streaming"
        );
    };
    assert_eq!(partial.status, MessageStatus::Streaming);
    assert!(partial.text.len() < text.len());
    let cancelled_at = Instant::now();
    shutdown.cancel();

    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("run returns after the message in flight is done")
        .unwrap()
        .unwrap();
    // Ten words at 300 ms is about 3 s: far below the 50 s claim hold.
    assert!(cancelled_at.elapsed() < Duration::from_secs(15));

    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(10))
        .await;
    let last = versions.last().unwrap();
    assert_eq!(last.status, MessageStatus::Complete);
    assert_eq!(last.text, text);
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_started_before_the_bridge_serves_once_the_bridge_is_up() {
    init_logging();
    let relay = Relay::start().await;
    // The key must exist before the connector starts, as in real life; the bridge is then
    // kept out of reach behind the relay.
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("early").await;
    let mut config = Config::for_demo(&relay.url, key);
    config.echo_delay_ms = 0;
    config.claim_wait = 2;
    let (shutdown, handle) = spawn_connector(config);

    // Several failed attempts: the connector keeps trying rather than giving up.
    let relay_ref = &relay;
    wait_for(
        "three failed attempts",
        Duration::from_secs(20),
        || async move { (relay_ref.turned_away() >= 3).then_some(()) },
    )
    .await;
    assert!(
        !handle.is_finished(),
        "run gave up while the bridge was down"
    );

    relay.route_to(Some(&bridge.url));
    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "are you there?").await;
    // Back-off after a handful of failures is a few seconds at most.
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(40))
        .await;
    assert_eq!(versions.last().unwrap().text, "are you there?");

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_restart_needs_no_connector_restart() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let open_store = || async {
        Store::connect(&sqlite_url(dir.path()), &StoreOptions::default())
            .await
            .expect("open SQLite")
    };
    let first = TestBridge::start_on(open_store().await, None, None).await;
    let key = first.connector_key("steady").await;
    let relay = Relay::start().await;
    relay.route_to(Some(&first.url));
    let mut config = Config::for_demo(&relay.url, key);
    config.echo_delay_ms = 0;
    config.claim_wait = 2;
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&first.url).await;
    let sent = visitor.send("c1", "before the restart").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;
    assert_eq!(versions.last().unwrap().text, "before the restart");

    // Stop the bridge and make sure the connector noticed before a new one takes over.
    relay.route_to(None);
    first.shutdown().await;
    let refused_before = relay.turned_away();
    let relay_ref = &relay;
    wait_for(
        "the connector to notice the bridge is gone",
        Duration::from_secs(20),
        || async move { (relay_ref.turned_away() > refused_before).then_some(()) },
    )
    .await;

    let second = TestBridge::start_on(open_store().await, None, None).await;
    relay.route_to(Some(&second.url));
    let mut visitor = Visitor::open(&second.url).await;
    let sent = visitor.send("c2", "after the restart").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(40))
        .await;
    assert_eq!(versions.last().unwrap().text, "after the restart");

    stop(shutdown, handle).await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_lease_is_reported_as_lease_lost() {
    use airlock_connector::bridge::{BridgeClient, BridgeError};
    use airlock_connector::config::ConnectorKey;
    use airlock_shared::connector::ClaimRequest;

    init_logging();
    let bridge = TestBridge::start().await;
    let key = ConnectorKey::new(bridge.connector_key("fenced").await);
    let client = BridgeClient::new(&bridge.url, key, None).unwrap();
    let visitor = Visitor::open(&bridge.url).await;
    visitor.send("c1", "who owns me?").await;

    let claim = |lease_secs| ClaimRequest {
        max: 1,
        wait: 2,
        lease_secs,
        history: 0,
        typing: false,
    };
    let client = &client;
    let first = wait_for("the first lease", Duration::from_secs(20), || async move {
        client.claim(&claim(1)).await.unwrap().items.pop()
    })
    .await;
    // The one-second lease runs out unrenewed; the item is leased again under a new id.
    let second = wait_for(
        "the item to be leased again",
        Duration::from_secs(20),
        || async move { client.claim(&claim(30)).await.unwrap().items.pop() },
    )
    .await;
    assert_eq!(second.message.id, first.message.id);
    assert_ne!(second.lease_id, first.lease_id);

    let stale = client.reply(&first.lease_id, "too late").await;
    assert!(
        matches!(stale, Err(BridgeError::LeaseLost { .. })),
        "{stale:?}"
    );
    let stale = client.extend(&first.lease_id, 30).await;
    assert!(
        matches!(stale, Err(BridgeError::LeaseLost { .. })),
        "{stale:?}"
    );
    client.reply(&second.lease_id, "on time").await.unwrap();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_reported_as_unauthorized() {
    use airlock_connector::bridge::{BridgeClient, BridgeError};
    use airlock_connector::config::ConnectorKey;
    use airlock_shared::connector::ClaimRequest;

    let bridge = TestBridge::start().await;
    let client = BridgeClient::new(&bridge.url, ConnectorKey::new("not-a-key"), None).unwrap();
    let result = client.claim(&ClaimRequest::default()).await;
    assert!(
        matches!(result, Err(BridgeError::Unauthorized { .. })),
        "{result:?}"
    );
    bridge.shutdown().await;
}
