//! `airlock-demo`: the whole relay on one machine in one command — a bridge on the embedded
//! SQLite default, a connector with the echo agent, and the URL to open.
//!
//! The connector runs in this process but talks to the bridge only over HTTP, exactly as a
//! separate `airlock-connector` on another host would.

use std::net::{Ipv4Addr, SocketAddr};

use airlock_bridge::store::StoreError;
use airlock_bridge::{Bridge, Config, manage};
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Runs an Airlock bridge, a connector and the echo agent together, and prints the URL to open.
#[derive(Debug, Parser)]
#[command(name = "airlock-demo", version, about)]
struct Demo {
    #[command(flatten)]
    bridge: Config,

    /// Delay between the echo agent's streamed words, in milliseconds.
    #[arg(long, default_value_t = 60)]
    echo_delay_ms: u64,
}

/// The name of the connector key the demo creates (and replaces on every start).
const DEMO_CONNECTOR: &str = "demo connector";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let demo = Demo::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,airlock_connector=info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let bridge = Bridge::start(&demo.bridge).await.with_context(|| {
        format!(
            "the demo bridge could not start; if {} is taken, pass --listen 127.0.0.1:PORT",
            demo.bridge.listen
        )
    })?;
    let now = bridge.state.relay.now();
    let store = &bridge.state.store;
    ensure_demo_interface(store, now).await?;

    // A fresh key per run; the previous run's key is revoked so keys do not pile up.
    for old in store.list_connectors().await? {
        if old.name == DEMO_CONNECTOR && old.revoked_at.is_none() {
            store.revoke_connector(&old.id, now).await?;
        }
    }
    let (_, key) = manage::create_connector_key(store, DEMO_CONNECTOR, &["demo".into()], now)
        .await
        .context("creating the demo connector key")?;

    let bridge_url = format!("http://{}", loopback(bridge.local_addr));
    let mut connector = airlock_connector::Config::for_demo(bridge_url.clone(), key);
    connector.echo_delay_ms = demo.echo_delay_ms;
    let connector_stop = CancellationToken::new();
    let connector_task = tokio::spawn(airlock_connector::run(connector, connector_stop.clone()));

    let base = demo.bridge.public_url(loopback(bridge.local_addr));
    let page = format!("{base}/c/demo");
    if let Some(admin_key) = &bridge.first_run.generated_admin_key {
        println!("Admin key (shown only now; store it safely): {admin_key}");
    }
    println!();
    println!("  Airlock demo is running: bridge, connector and echo agent.");
    println!("  Open {page}");
    println!("  Admin page: {base}/admin (sign in with the admin key)");
    println!();
    println!("  Database: {}", demo.bridge.database_url_for_display());
    println!("  Press Ctrl-C to stop.");
    println!();

    shutdown_signal().await;
    println!("Stopping: the connector finishes its in-flight replies, then the bridge stops.");
    connector_stop.cancel();
    match connector_task.await {
        Ok(result) => result.context("connector")?,
        Err(err) => return Err(err).context("connector task"),
    }
    bridge.shutdown().await
}

/// Makes sure a published `demo` interface exists, whatever the database held before.
async fn ensure_demo_interface(
    store: &airlock_bridge::store::Store,
    now: i64,
) -> anyhow::Result<()> {
    match store.interface_by_slug("demo").await? {
        Some(interface) if interface.is_published() => Ok(()),
        Some(_) => {
            store.set_interface_published("demo", true, now).await?;
            Ok(())
        }
        None => match manage::create_interface(store, manage::demo_interface(), now).await {
            Ok(_) | Err(manage::ManageError::Store(StoreError::SlugTaken(_))) => Ok(()),
            Err(err) => Err(err.into()),
        },
    }
}

/// The address to reach a listener on from this machine (0.0.0.0 is not a destination).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
