//! `airlock-bridge`: parse the configuration, then serve or run one operator sub-command.

use airlock_bridge::config::{Cli, Command};
use airlock_bridge::{Bridge, Config};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Large blocks mapped on their own: a waiting visitor's connection buffers cost only the pages
/// written to (see `memory`).
#[global_allocator]
static ALLOCATOR: airlock_bridge::memory::Allocator = airlock_bridge::memory::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let result = match cli.command {
        None | Some(Command::Serve) => serve(&cli.config).await,
        Some(command) => airlock_bridge::cli::run(&cli.config, command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let bridge = Bridge::start(config).await?;
    // Listen for SIGTERM before announcing anything: a supervisor (or a test) that stops the
    // bridge as soon as it printed its URL must get a graceful shutdown, not the default kill.
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let url = config.public_url(bridge.local_addr);
    let database = bridge.state.store.describe().await?;
    tracing::info!(listen = %bridge.local_addr, %database, "airlock bridge listening");
    if bridge.first_run.created_demo_interface {
        println!("Created the `demo` chat interface: {url}/c/demo");
    }
    if let Some(key) = &bridge.first_run.generated_admin_key {
        println!("Generated an admin key (shown only now; store it safely):\n\n  {key}\n");
    }
    if bridge.first_run.created_demo_interface {
        println!(
            "Create a connector key for your agent's host with:\n\n  \
             airlock-bridge connector-key create --name my-agent\n"
        );
    }
    let shutdown = bridge.shutdown_token();
    tokio::spawn(async move {
        #[cfg(unix)]
        shutdown_signal(terminate).await;
        #[cfg(not(unix))]
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown.cancel();
    });
    bridge.wait().await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (`terminate`, installed by the caller).
#[cfg(unix)]
async fn shutdown_signal(terminate: Option<tokio::signal::unix::Signal>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match terminate {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
