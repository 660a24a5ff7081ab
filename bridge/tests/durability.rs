//! What SQLite's durability modes cost: 2,000 visitor messages committed one after another
//! through the store call the relay's send path makes, on `synchronous=NORMAL` and on `FULL`.
//! A measurement, not a check, so it is ignored by default; the numbers are in
//! docs/deployment.md ("SQLite durability"):
//!
//! ```text
//! cargo test -p airlock-bridge --test durability -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use airlock_bridge::store::{SqliteSync, Store, StoreOptions, sqlite_url};

const MESSAGES: usize = 2_000;

/// Sends `MESSAGES` visitor messages, each committed before the next starts.
async fn time_sends(sync: SqliteSync) -> Duration {
    // On the target directory's disk, not /tmp: a tmpfs would make every fsync free.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let options = StoreOptions {
        sqlite_sync: sync,
        ..StoreOptions::default()
    };
    let store = Store::connect(&sqlite_url(dir.path()), &options)
        .await
        .unwrap();
    let interface = common::interface(&store, "durability").await;
    let session = common::session(&store, &interface, 0).await;
    let started = Instant::now();
    for i in 0..MESSAGES {
        store
            .send_user_message(&session.id, &format!("c{i}"), "hello", &[], None, i as i64)
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    store.close().await;
    elapsed
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn sqlite_synchronous_normal_and_full_cost_per_commit() {
    let normal = time_sends(SqliteSync::Normal).await;
    let full = time_sends(SqliteSync::Full).await;
    let per = |d: Duration| d.as_secs_f64() * 1_000.0 / MESSAGES as f64;
    let rate = |d: Duration| MESSAGES as f64 / d.as_secs_f64();
    println!("{MESSAGES} sequential committed visitor messages (Store::send_user_message):");
    println!(
        "  synchronous=NORMAL: {:>7.2} s  {:>6.3} ms/message  {:>7.0} messages/s",
        normal.as_secs_f64(),
        per(normal),
        rate(normal)
    );
    println!(
        "  synchronous=FULL:   {:>7.2} s  {:>6.3} ms/message  {:>7.0} messages/s",
        full.as_secs_f64(),
        per(full),
        rate(full)
    );
    println!(
        "  FULL / NORMAL:      {:.2}x",
        full.as_secs_f64() / normal.as_secs_f64()
    );
}
