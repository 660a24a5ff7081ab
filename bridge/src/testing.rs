//! A real bridge for tests: HTTP on 127.0.0.1 port 0, a fresh database, a `demo` interface.
//! Used by this crate's integration tests and by the connector's.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::Bridge;
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::Config;
use crate::manage;
use crate::store::{Store, StoreOptions, sqlite_url};

/// A running test bridge. Its SQLite file lives in a temporary directory removed on drop.
pub struct TestBridge {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// An admin key the bridge accepts.
    pub admin_key: String,
    pub store: Store,
    /// Set when started with [`TestBridge::start_with_manual_clock`].
    pub clock: Option<Arc<ManualClock>>,
    bridge: Bridge,
    _dir: Option<tempfile::TempDir>,
}

impl TestBridge {
    /// A bridge on a fresh SQLite database with the wall clock.
    pub async fn start() -> TestBridge {
        Self::start_with_config(Config::defaults()).await
    }

    /// A bridge on a fresh SQLite database with the wall clock and the given settings (rate
    /// limits, trusted proxies, …); the admin key is set here.
    pub async fn start_with_config(config: Config) -> TestBridge {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&sqlite_url(dir.path()), &StoreOptions::default())
            .await
            .expect("open SQLite");
        Self::start_configured(store, None, Some(dir), config).await
    }

    /// A bridge on a fresh SQLite database whose clock moves only when the test says.
    pub async fn start_with_manual_clock() -> TestBridge {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&sqlite_url(dir.path()), &StoreOptions::default())
            .await
            .expect("open SQLite");
        Self::start_on(store, Some(Arc::new(ManualClock::new())), Some(dir)).await
    }

    /// A bridge on the given store (e.g. a PostgreSQL schema made for one test).
    pub async fn start_on(
        store: Store,
        clock: Option<Arc<ManualClock>>,
        dir: Option<tempfile::TempDir>,
    ) -> TestBridge {
        Self::start_configured(store, clock, dir, Config::defaults()).await
    }

    /// A bridge on the given store with `config` (e.g. a retention period); the admin key is
    /// made here.
    pub async fn start_configured(
        store: Store,
        clock: Option<Arc<ManualClock>>,
        dir: Option<tempfile::TempDir>,
        mut config: Config,
    ) -> TestBridge {
        let admin_key = crate::tokens::new_secret(crate::tokens::ADMIN_KEY_PREFIX);
        config.admin_key = Some(admin_key.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let dyn_clock: Arc<dyn Clock> = match &clock {
            Some(clock) => clock.clone(),
            None => Arc::new(SystemClock),
        };
        let bridge = Bridge::start_with(&config, store.clone(), listener, dyn_clock)
            .await
            .expect("start bridge");
        TestBridge {
            url: format!("http://{}", bridge.local_addr),
            admin_key,
            store,
            clock,
            bridge,
            _dir: dir,
        }
    }

    /// Creates a connector key serving every interface and returns it.
    pub async fn connector_key(&self, name: &str) -> String {
        let now = self.bridge.state.relay.now();
        let (_, key) = manage::create_connector_key(&self.store, name, &[], now)
            .await
            .expect("create connector key");
        key
    }

    /// Whether every change reaches this bridge's waiters as it happens (on PostgreSQL: it
    /// listens for the other replicas').
    pub fn hears_every_change(&self) -> bool {
        self.bridge.state.relay.hears_every_change()
    }

    /// Stops the bridge gracefully.
    pub async fn shutdown(self) {
        self.bridge.shutdown().await.expect("clean shutdown");
    }
}

/// The PostgreSQL URL for tests (`AIRLOCK_TEST_POSTGRES_URL`), or `None` after a one-line notice
/// on the real stderr (not the captured one, so it shows in every run). With
/// `AIRLOCK_TEST_REQUIRE_POSTGRES=1` (as `.ci/run` sets) a missing URL panics instead.
pub fn postgres_url() -> Option<String> {
    match std::env::var("AIRLOCK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("AIRLOCK_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("AIRLOCK_TEST_REQUIRE_POSTGRES=1 but AIRLOCK_TEST_POSTGRES_URL is not set");
            }
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: PostgreSQL tests SKIPPED — set AIRLOCK_TEST_POSTGRES_URL=postgres://user@host/db to run them"
                );
            });
            None
        }
    }
}

/// A fresh schema on the test PostgreSQL, dropped (with everything in it) when this is dropped.
pub struct TestSchema {
    /// The test PostgreSQL's URL selecting this schema (`search_path`).
    pub url: String,
    base: String,
    name: String,
}

impl TestSchema {
    /// A new schema, or `None` when no test PostgreSQL is configured (see [`postgres_url`]).
    pub async fn create() -> Option<TestSchema> {
        Some(Self::create_on(&postgres_url()?).await)
    }

    /// A new schema on the PostgreSQL at `base`.
    pub async fn create_on(base: &str) -> TestSchema {
        let base = base.to_owned();
        let name = format!(
            "airlock_t_{}",
            crate::tokens::new_id("s")
                .to_lowercase()
                .replace(['-', '_'], "")
        );
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test schema");
        let mut url = url::Url::parse(&base).expect("the test PostgreSQL's URL is a URL");
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={name}"));
        TestSchema {
            url: url.to_string(),
            base,
            name,
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run inside a test's runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {name} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// How many connections named `application_name` the PostgreSQL at `url` serves, once that is
/// `expected` or after 5 s (a connection closed or terminated ends its server process a moment
/// later, so a count is waited for rather than read once).
pub async fn connections_named(url: &str, application_name: &str, expected: i64) -> i64 {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect to the test PostgreSQL");
    let mut count = -1;
    for _ in 0..500 {
        count =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(application_name)
                .fetch_one(&mut admin)
                .await
                .expect("count connections");
        if count == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    count
}

/// The resident memory of process `pid` in KiB, from `/proc/<pid>/status` (`None` when it is
/// gone, or off Linux): for tests and benchmarks that watch a process's memory.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
