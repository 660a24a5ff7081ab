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

use std::io::Write;
use std::sync::Once;

use airlock_bridge::manage;
use airlock_bridge::store::{
    ConnectorRow, NewSession, SessionRow, Store, StoreOptions, sqlite_url,
};
use airlock_bridge::tokens::{hash_secret, new_id};

/// A database made for one test, removed when dropped.
pub struct TestDb {
    pub store: Store,
    /// The URL `store` was opened with (on PostgreSQL it names the test's schema), so a test can
    /// open a second `Store` on the same data, as another bridge replica would.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
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
            schema: None,
        }
    }

    /// A fresh schema on the test PostgreSQL, or `None` (with a notice) when none is configured.
    pub async fn postgres(options: StoreOptions) -> Option<TestDb> {
        let base = postgres_url()?;
        let schema = format!(
            "airlock_t_{}",
            new_id("s").to_lowercase().replace(['-', '_'], "")
        );
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
            .await
            .expect("connect to AIRLOCK_TEST_POSTGRES_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create test schema");
        let mut url = url::Url::parse(&base).expect("AIRLOCK_TEST_POSTGRES_URL is a URL");
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={schema}"));
        let mut options = options;
        options.max_connections = options.max_connections.min(5);
        let store = Store::connect(url.as_str(), &options)
            .await
            .expect("open PostgreSQL test schema");
        Some(TestDb {
            store,
            url: url.to_string(),
            _dir: None,
            schema: Some((base, schema)),
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, schema)) = self.schema.take() else {
            return;
        };
        // Drop may run inside the test's runtime; clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// The PostgreSQL URL for tests, or `None` after a one-line notice on the real stderr (not the
/// captured one, so it shows in every run).
pub fn postgres_url() -> Option<String> {
    match std::env::var("AIRLOCK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("AIRLOCK_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("AIRLOCK_TEST_REQUIRE_POSTGRES=1 but AIRLOCK_TEST_POSTGRES_URL is not set");
            }
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: PostgreSQL tests SKIPPED — set AIRLOCK_TEST_POSTGRES_URL=postgres://user@host/db to run them"
                );
            });
            None
        }
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
