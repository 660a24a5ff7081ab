//! The floors every result is divided by, measured in the same run: a bare HTTP round trip to a
//! minimal server in its own process, a bare SQLite commit with the bridge's own settings, and,
//! when PostgreSQL is measured, a bare PostgreSQL commit.

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::{ms, runs};

/// The `floor-server` sub-command: the bridge's own HTTP server loop (`airlock_bridge::serve`,
/// hyper's HTTP/1 server) on `127.0.0.1:0` with a two-route axum router instead of the bridge's:
/// `GET /` answers `ok`, `GET /hold` waits an hour (an idle long-poll with nothing behind it).
/// Prints its port and serves until killed.
pub async fn serve_floor() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let app = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/hold",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "ok"
            }),
        );
    airlock_bridge::serve::serve(listener, app, CancellationToken::new()).await;
    Ok(())
}

/// The floor server as a child process, with its base URL.
async fn start_floor() -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::from(floor_command()?)
        .kill_on_drop(true)
        .spawn()
        .context("start the floor server")?;
    let stdout = child.stdout.take().context("the floor server's stdout")?;
    let port = BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .context("the floor server printed no port")?;
    Ok((child, format!("http://127.0.0.1:{}", port.trim())))
}

/// The floor server's RSS (KiB) idle, and while it holds `count` idle requests: what the HTTP
/// stack alone costs, at rest and per held connection.
pub async fn server_rss(count: usize) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let (child, base) = start_floor().await?;
    let pid = child.id().context("the floor server's pid")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = crate::procs::rss_kib(pid);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let held: Vec<_> = (0..count)
        .map(|_| tokio::spawn(http.get(format!("{base}/hold")).send()))
        .collect();
    crate::measure::capacity::all_read(&base, count).await;
    crate::measure::capacity::settle(|| crate::procs::rss_kib(pid)).await;
    let rss = crate::procs::rss_kib(pid);
    for request in held {
        request.abort();
    }
    Ok((idle, rss))
}

/// `samples` sequential GET round trips, over one kept-alive connection, to the floor server
/// running in a process of its own (as the bridge does).
pub async fn http_round_trips(samples: usize) -> anyhow::Result<Vec<f64>> {
    let (mut child, base) = start_floor().await?;
    let url = format!("{base}/");
    let http = reqwest::Client::new();
    let mut times = Vec::with_capacity(samples);
    for kept in runs(samples) {
        let started = Instant::now();
        let body = http.get(&url).send().await?.text().await?;
        anyhow::ensure!(body == "ok", "the floor server answered {body:?}");
        if kept {
            times.push(ms(started.elapsed()));
        }
    }
    child.kill().await?;
    Ok(times)
}

fn floor_command() -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("floor-server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    Ok(command)
}

/// `samples` single-row transactions, each committed on its own, on a fresh SQLite file in WAL
/// mode with `synchronous=NORMAL` — the bridge's defaults, so this is the cheapest durable
/// write the bridge could make.
pub async fn sqlite_commits(samples: usize) -> anyhow::Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let mut conn = SqliteConnectOptions::from_str("sqlite://floor.db")?
        .filename(dir.path().join("floor.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    let mut times = Vec::with_capacity(samples);
    for kept in runs(samples) {
        let started = Instant::now();
        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO floor (text) VALUES ($1)")
            .bind("a visitor's message of ordinary length")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if kept {
            times.push(ms(started.elapsed()));
        }
    }
    conn.close().await?;
    Ok(times)
}

/// `samples` one-row inserts, each committed on its own, on PostgreSQL at `base` (in a fresh
/// schema, dropped after): one statement outside a transaction, so one round trip and one
/// durable commit each — the cheapest durable write the bridge could make there. With `pace`,
/// each insert follows the previous one's end by that long, as the idle relay overhead's
/// messages follow each other by the agent's reply time: every process on the way has gone to
/// sleep in between, and waking them is part of what is measured.
pub async fn postgres_commits(
    base: &str,
    samples: usize,
    pace: Option<Duration>,
) -> anyhow::Result<Vec<f64>> {
    let schema = airlock_bridge::testing::TestSchema::create_on(base).await;
    let mut conn = sqlx::PgConnection::connect(&schema.url)
        .await
        .context("connect to PostgreSQL for its floor")?;
    sqlx::query("CREATE TABLE floor (id BIGSERIAL PRIMARY KEY, text TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    let mut times = Vec::with_capacity(samples);
    for kept in runs(samples) {
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
        let started = Instant::now();
        sqlx::query("INSERT INTO floor (text) VALUES ($1)")
            .bind("a visitor's message of ordinary length")
            .execute(&mut conn)
            .await?;
        if kept {
            times.push(ms(started.elapsed()));
        }
    }
    conn.close().await?;
    Ok(times)
}
