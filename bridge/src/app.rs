//! The running bridge: shared state, start-up (database, first-run seeding, listener) and
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_shared::admin::AdminEvent;
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client_ip::TrustedProxies;
use crate::clock::{Clock, SystemClock};
use crate::compat::CompatSettings;
use crate::config::Config;
use crate::limits::Limits;
use crate::manage;
use crate::relay::Relay;
use crate::store::cache::{self, TtlCache};
use crate::store::{Store, StoreError, redact_url};
use crate::tokens::hash_secret;

/// A connector seen within this window counts as online (a claim holds up to 50 s).
pub const AGENT_ONLINE_WINDOW_MS: i64 = 75_000;

/// Admin events a live tail may fall behind by before it is told it lagged.
const ADMIN_EVENT_BUFFER: usize = 1024;

/// What every request handler can reach.
pub struct AppState {
    pub store: Store,
    pub relay: Relay,
    /// Hash of `AIRLOCK_ADMIN_KEY`, when one is configured.
    pub configured_admin_key_hash: Option<String>,
    pub max_message_chars: usize,
    /// The admins' live tail on this replica (`GET /admin/events`).
    pub admin_events: broadcast::Sender<AdminEvent>,
    /// `AIRLOCK_PUBLIC_URL`, for links the bridge hands out (embed snippets).
    pub public_url: Option<String>,
    /// This replica's rate limiters.
    pub limits: Limits,
    /// `AIRLOCK_TRUSTED_PROXIES`: whose forwarding headers name the client (see
    /// [`crate::client_ip`]).
    pub trusted_proxies: TrustedProxies,
    /// The PHP web chat bridge's API: its interface and lease length.
    pub compat: CompatSettings,
    /// Interfaces whose agent was just found online (see [`AppState::agent_online`]).
    /// The bridge clock's time at each sighting.
    online_seen: TtlCache<i64>,
}

impl AppState {
    /// Whether a connector that may serve the interface was seen recently.
    ///
    /// Every long-poll answer and event stream carries the status, so it is asked for all the
    /// time. A "yes" is kept for a second ([`cache::TTL`], on the bridge's clock too, which tests
    /// move); a second more on top of the 75 s window changes nothing a visitor could notice. A
    /// "no" is never kept, so an agent that comes online is seen at once.
    pub async fn agent_online(&self, interface_id: &str) -> Result<bool, StoreError> {
        let now = self.relay.now();
        let believed = |at: i64| (0..cache::TTL.as_millis() as i64).contains(&(now - at));
        if self.online_seen.get(interface_id).is_some_and(believed) {
            return Ok(true);
        }
        let online = self
            .store
            .agent_online(interface_id, now - AGENT_ONLINE_WINDOW_MS)
            .await?;
        if online {
            self.online_seen.put(interface_id, &now);
        } else {
            self.online_seen.remove(interface_id);
        }
        Ok(online)
    }

    /// Tells the admins' live tails on this replica.
    pub fn publish(&self, event: AdminEvent) {
        self.relay.publish(event);
    }
}

/// What happened on first start, for the operator's console.
#[derive(Debug, Default)]
pub struct FirstRun {
    pub created_demo_interface: bool,
    /// An admin key generated because none existed; shown once.
    pub generated_admin_key: Option<String>,
}

/// A bridge serving HTTP in the background.
pub struct Bridge {
    pub local_addr: SocketAddr,
    pub state: Arc<AppState>,
    pub first_run: FirstRun,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    reaper: JoinHandle<()>,
    /// On PostgreSQL, turns other replicas' notifications into this one's wake-ups.
    wakeup_listener: JoinHandle<()>,
    limits_janitor: JoinHandle<()>,
}

impl Bridge {
    /// Opens the configured database, seeds an empty one, binds `config.listen` and serves.
    pub async fn start(config: &Config) -> anyhow::Result<Bridge> {
        let store = open_store(config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Self::start_with(config, store, listener, Arc::new(SystemClock)).await
    }

    /// Serves `store` on `listener` with `clock`: what tests use to pick port 0 and a manual clock.
    pub async fn start_with(
        config: &Config,
        store: Store,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Bridge> {
        anyhow::ensure!(
            crate::validate::slug_is_well_formed(&config.compat_interface),
            "AIRLOCK_COMPAT_INTERFACE `{}` is not a slug (lowercase letters, digits and dashes)",
            config.compat_interface
        );
        let first_run = seed(&store, config, clock.now_ms()).await?;
        let shutdown = CancellationToken::new();
        let (admin_events, _) = broadcast::channel(ADMIN_EVENT_BUFFER);
        let relay = Relay::new(store.clone(), clock, shutdown.clone(), admin_events.clone())
            .with_retention_days(config.retention_days)
            .with_pickup_wait(std::time::Duration::from_millis(config.pickup_wait_ms));
        let state = Arc::new(AppState {
            store,
            relay: relay.clone(),
            configured_admin_key_hash: config.admin_key.as_deref().map(hash_secret),
            max_message_chars: config.max_message_chars,
            admin_events,
            public_url: config.public_url.clone(),
            limits: Limits::new(config),
            trusted_proxies: config.trusted_proxies.clone(),
            compat: CompatSettings::from_config(config),
            online_seen: TtlCache::default(),
        });
        let local_addr = listener.local_addr()?;
        let app = crate::http::router(state.clone());
        let server = tokio::spawn(crate::serve::serve(listener, app, shutdown.clone()));
        let wakeup_listener = tokio::spawn(relay.clone().listen_to_other_replicas());
        let reaper = tokio::spawn(relay.run_reaper());
        let limits_janitor = tokio::spawn(forget_idle_limits(state.clone(), shutdown.clone()));
        Ok(Bridge {
            local_addr,
            state,
            first_run,
            shutdown,
            server,
            reaper,
            wakeup_listener,
            limits_janitor,
        })
    }

    /// A token that stops the bridge when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting connections, ends open long-polls, waits for in-flight requests to finish,
    /// and closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the bridge has stopped (after its shutdown token was cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.server.await.context("server task panicked");
        // However serving ended, stop the background work before closing the database.
        self.shutdown.cancel();
        let _ = self.reaper.await;
        let _ = self.wakeup_listener.await;
        let _ = self.limits_janitor.await;
        self.state.store.close().await;
        served?;
        Ok(())
    }
}

/// Keeps the rate limiters' memory to the recently active keys, until shutdown.
async fn forget_idle_limits(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(crate::limits::FORGET_IDLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => state.limits.forget_idle(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Opens (creating if needed) the configured database and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.uses_default_sqlite() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
    }
    let url = config.database_url();
    Store::connect(&url, &config.store_options())
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))
}

/// First start on an empty database: create the `demo` interface, and an admin key when none is
/// configured or stored.
async fn seed(store: &Store, config: &Config, now: i64) -> anyhow::Result<FirstRun> {
    let mut first_run = FirstRun::default();
    if store.count_interfaces().await? == 0 {
        match manage::create_interface(store, manage::demo_interface(), now).await {
            Ok(_) => first_run.created_demo_interface = true,
            // Another replica seeded it at the same moment.
            Err(manage::ManageError::Store(StoreError::SlugTaken(_))) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if config.admin_key.is_none() && store.count_admin_keys().await? == 0 {
        first_run.generated_admin_key =
            Some(manage::create_admin_key(store, "generated on first start", now).await?);
    }
    Ok(first_run)
}
