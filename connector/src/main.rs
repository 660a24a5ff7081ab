//! `airlock-connector`: parse settings, start logging, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use airlock_connector::{Cli, Command};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Before parsing, so `.env` can supply any AIRLOCK_* setting; a missing file is fine.
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = cli.config;
    if cli.command == Some(Command::Check) {
        return if airlock_connector::check::check(&config).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match airlock_connector::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the cause chain; a backtrace helps no operator here.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT; a second one ends the process at once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut signals = Signals::install();
    signals.next().await;
    tracing::info!("shutting down: finishing messages in flight (signal again to stop now)");
    shutdown.cancel();
    signals.next().await;
    tracing::warn!("second signal: stopping without finishing");
    std::process::exit(130);
}

/// SIGTERM (service managers, containers) and SIGINT (Ctrl-C), installed once so no signal is
/// missed between two waits.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).expect("install the SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("install the SIGINT handler"),
        }
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Signals {
        Signals
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
