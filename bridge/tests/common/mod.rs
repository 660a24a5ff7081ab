//! Test helpers: a fresh database per test on either backend, and a few fixtures.
//!
//! PostgreSQL tests run when `AIRLOCK_TEST_POSTGRES_URL` is set (each test gets its own schema,
//! dropped afterwards); otherwise they skip with a one-line notice. With
//! `AIRLOCK_TEST_REQUIRE_POSTGRES=1` (as `.ci/run` sets) a missing URL fails instead.

#![allow(dead_code)]

pub mod http;

/// Runs every case — an `async fn(TestBridge)` — on SQLite and on PostgreSQL (when configured),
/// with a manual clock. The test file imports `Arc`, `ManualClock`, `StoreOptions` and `TestBridge`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(TestBridge::start_with_manual_clock().await).await;
                }
            )*
            use super::TestBridge;
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::common::TestDb::postgres(StoreOptions::default()).await
                    else {
                        return;
                    };
                    let clock = Some(Arc::new(ManualClock::new()));
                    super::$case(TestBridge::start_on(db.store.clone(), clock, None).await).await;
                }
            )*
            use super::{Arc, ManualClock, StoreOptions, TestBridge};
        }
    };
}

use airlock_bridge::manage;
use airlock_bridge::store::{
    ConnectorRow, NewSession, SessionRow, Store, StoreOptions, sqlite_url,
};
use airlock_bridge::testing::TestSchema;
#[allow(unused_imports)]
pub use airlock_bridge::testing::postgres_url;
use airlock_bridge::tokens::{hash_secret, new_id};

/// A database made for one test, removed when dropped.
pub struct TestDb {
    pub store: Store,
    /// The URL `store` was opened with (on PostgreSQL it names the test's schema), so a test can
    /// open a second `Store` on the same data, as another bridge replica would.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<TestSchema>,
}

impl TestDb {
    pub async fn sqlite(options: StoreOptions) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = sqlite_url(dir.path());
        let store = Store::connect(&url, &options).await.expect("open SQLite");
        TestDb {
            store,
            url,
            _dir: Some(dir),
            _schema: None,
        }
    }

    /// A fresh schema on the test PostgreSQL, or `None` (with a notice) when none is configured.
    pub async fn postgres(options: StoreOptions) -> Option<TestDb> {
        let schema = TestSchema::create().await?;
        let mut options = options;
        options.max_connections = options.max_connections.min(5);
        let store = Store::connect(&schema.url, &options)
            .await
            .expect("open PostgreSQL test schema");
        Some(TestDb {
            store,
            url: schema.url.clone(),
            _dir: None,
            _schema: Some(schema),
        })
    }
}

/// Creates a published interface.
pub async fn interface(store: &Store, slug: &str) -> String {
    let mut request = manage::demo_interface();
    request.slug = slug.to_string();
    manage::create_interface(store, request, 0)
        .await
        .expect("create interface")
        .id
}

/// Opens a session on an interface.
pub async fn session(store: &Store, interface_id: &str, now: i64) -> SessionRow {
    store
        .create_session(
            &NewSession {
                interface_id: interface_id.to_string(),
                token_hash: hash_secret(&new_id("tok")),
                resume_hash: hash_secret(&new_id("res")),
                ..NewSession::default()
            },
            now,
        )
        .await
        .expect("create session")
}

/// Creates a connector; `interfaces` empty means all.
pub async fn connector(store: &Store, name: &str, interfaces: &[String]) -> ConnectorRow {
    manage::create_connector_key(store, name, interfaces, 0)
        .await
        .expect("create connector")
        .0
}
