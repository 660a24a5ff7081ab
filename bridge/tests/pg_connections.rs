//! PostgreSQL connections that break under the bridge — the server restarted, a firewall dropped
//! them — are replaced, so at most the query that found one broken fails (PostgreSQL only).

mod common;

use std::time::Duration;

use airlock_bridge::store::{Store, StoreOptions};
use airlock_bridge::testing::{TestSchema, connections_named};
use airlock_bridge::tokens::new_id;

/// Ends every server process serving a connection named `application_name`, and waits until
/// they are gone; how many there were.
async fn cut(application_name: &str) -> i64 {
    let url = common::postgres_url().expect("checked by TestSchema::create");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect to AIRLOCK_TEST_POSTGRES_URL");
    let cut = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) t",
    )
    .bind(application_name)
    .fetch_one(&mut admin)
    .await
    .expect("terminate the store's connections");
    // A process told to end ends a moment later.
    assert_eq!(
        connections_named(&url, application_name, 0).await,
        0,
        "the cut connections did not end within 5 s"
    );
    cut
}

#[tokio::test]
async fn connections_the_server_ended_are_replaced() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let name = new_id("cut").to_lowercase();
    let url = format!("{}&application_name={name}", schema.url);
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("open PostgreSQL test schema");
    let interface = common::interface(&store, "support").await;
    let session = common::session(&store, &interface, 0).await;
    store
        .send_user_message(&session.id, "c-1", "hello", &[], None, 1)
        .await
        .expect("send");
    let read = || store.messages_after(&session.id, 0, 10);
    assert_eq!(read().await.expect("read").len(), 1);

    // Broken while idle: found by the ping before use, and replaced before the query.
    assert!(cut(&name).await >= 1, "the store's connections were cut");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        read()
            .await
            .expect("a connection idle for a second is checked first")
            .len(),
        1
    );

    // Broken while busy: the query that finds it fails; the connection is checked before its
    // next use and replaced, so the next query works.
    assert!(cut(&name).await >= 1, "the store's connections were cut");
    assert!(
        read().await.is_err(),
        "the query found the connection broken"
    );
    assert_eq!(
        read()
            .await
            .expect("the broken connection was replaced")
            .len(),
        1
    );
    let sent = store
        .send_user_message(&session.id, "c-2", "again", &[], None, 2)
        .await
        .expect("a hot write after the cut");
    assert!(sent.created);
}
