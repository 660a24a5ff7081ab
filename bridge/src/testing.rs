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

    /// Stops the bridge gracefully.
    pub async fn shutdown(self) {
        self.bridge.shutdown().await.expect("clean shutdown");
    }
}
