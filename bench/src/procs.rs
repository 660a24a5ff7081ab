//! The processes under measurement: the real `airlock-bridge` and `airlock-connector` binaries,
//! started on loopback with a fresh database each.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock_bridge::testing::TestSchema;
pub use airlock_bridge::testing::rss_kib;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The admin key of every bridge the harness starts.
const ADMIN_KEY: &str = "alk_a_bench-0123456789abcdefghijklmnopqrstuv";

/// Where the two binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    pub bridge: PathBuf,
    pub connector: PathBuf,
}

impl Bins {
    /// The binaries in `dir`, or beside this one (`target/<profile>/`, where cargo builds them).
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Bins> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_exe()?
                .parent()
                .context("the harness binary has no directory")?
                .to_path_buf(),
        };
        let bins = Bins {
            bridge: dir.join("airlock-bridge"),
            connector: dir.join("airlock-connector"),
        };
        for bin in [&bins.bridge, &bins.connector] {
            if !bin.is_file() {
                bail!(
                    "{} is missing: build the binaries first, e.g. `cargo build --release -p \
                     airlock-bridge -p airlock-connector -p airlock-bench` (or without --release \
                     for the quick mode), or pass --bin-dir",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }
}

/// Which database a bridge runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// The base URL of a PostgreSQL server; each bridge gets a fresh schema on it.
    Postgres(String),
}

impl Backend {
    /// [`Backend::name`] of PostgreSQL.
    pub const POSTGRES: &'static str = "PostgreSQL";

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => Self::POSTGRES,
        }
    }
}

/// Where a child's output goes: nowhere, or — when `AIRLOCK_BENCH_LOGS` names a directory — a
/// file there named after it (with `RUST_LOG` taken from `AIRLOCK_BENCH_RUST_LOG`), to see
/// where the time goes.
fn log_to(command: &mut Command, name: &str) -> anyhow::Result<()> {
    let Ok(dir) = std::env::var("AIRLOCK_BENCH_LOGS") else {
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        return Ok(());
    };
    // Numbered in the order started: several bridges and connectors run in one harness run.
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let file = std::fs::File::create(Path::new(&dir).join(format!("{name}-{n}.log")))?;
    command
        .env(
            "RUST_LOG",
            std::env::var("AIRLOCK_BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(file.try_clone()?)
        .stderr(file);
    Ok(())
}

/// A child process killed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bridge process with every rate limit off and the `demo` interface's message limit lifted.
pub struct Bridge {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// From spawning the process to the first `200` from `/healthz`.
    pub startup: Duration,
    /// For the harness's own calls (health, admin).
    http: reqwest::Client,
    process: Proc,
    _dir: tempfile::TempDir,
    _schema: Option<TestSchema>,
}

impl Bridge {
    pub async fn start(bins: &Bins, backend: &Backend) -> anyhow::Result<Bridge> {
        let dir = tempfile::tempdir()?;
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(base) => Some(TestSchema::create_on(base).await),
        };
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(&bins.bridge);
        command
            .env_clear()
            .env("AIRLOCK_LISTEN", format!("127.0.0.1:{port}"))
            .env("AIRLOCK_DATA_DIR", dir.path())
            .env("AIRLOCK_ADMIN_KEY", ADMIN_KEY)
            .env("AIRLOCK_SESSIONS_PER_IP_PER_MINUTE", "0")
            .env("AIRLOCK_READS_PER_IP_PER_MINUTE", "0")
            .env("AIRLOCK_CONNECTOR_CALLS_PER_MINUTE", "0")
            .env("AIRLOCK_ADMIN_CALLS_PER_MINUTE", "0")
            .stdin(Stdio::null());
        log_to(&mut command, "bridge")?;
        if let Some(schema) = &schema {
            command.env("DATABASE_URL", &schema.url);
        }
        let started = Instant::now();
        let process = Proc(command.spawn().context("start airlock-bridge")?);
        let http = reqwest::Client::new();
        let startup = loop {
            if let Ok(response) = http.get(format!("{url}/healthz")).send().await
                && response.status().is_success()
            {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the bridge did not answer /healthz within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let bridge = Bridge {
            url,
            startup,
            http,
            process,
            _dir: dir,
            _schema: schema,
        };
        bridge
            .admin(
                reqwest::Method::PATCH,
                "interfaces/demo",
                json!({"rate_limit": {"messages": 1000, "window_secs": 1}}),
            )
            .await
            .context("lift the demo interface's message limit")?;
        Ok(bridge)
    }

    /// The bridge's resident memory in KiB (`None` once it is gone).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.process.0.id())
    }

    /// The CPU time the bridge has used so far, in ms (`None` once it is gone).
    pub fn cpu_ms(&self) -> Option<f64> {
        cpu_ms(self.process.0.id())
    }

    /// A new connector key for every interface.
    pub async fn connector_key(&self) -> anyhow::Result<String> {
        let created = self
            .admin(
                reqwest::Method::POST,
                "connectors",
                json!({"name": "bench"}),
            )
            .await?;
        created["key"]
            .as_str()
            .map(str::to_owned)
            .context("the bridge returned no connector key")
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .request(method, format!("{}/api/v1/admin/{path}", self.url))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("admin {path}: {status} {body}");
        }
        Ok(body)
    }
}

/// A connector process using the webhook agent at `agent_url`.
pub struct Connector {
    _process: Proc,
}

impl Connector {
    pub fn start(
        bins: &Bins,
        bridge: &Bridge,
        key: &str,
        agent_url: &str,
        concurrency: usize,
    ) -> anyhow::Result<Connector> {
        let mut command = Command::new(&bins.connector);
        command
            .env_clear()
            .env("AIRLOCK_BRIDGE_URL", &bridge.url)
            .env("AIRLOCK_CONNECTOR_KEY", key)
            .env("AIRLOCK_AGENT", "webhook")
            .env("AIRLOCK_WEBHOOK_URL", agent_url)
            .env("AIRLOCK_CONCURRENCY", concurrency.to_string())
            .stdin(Stdio::null());
        log_to(&mut command, "connector")?;
        let child = command.spawn().context("start airlock-connector")?;
        Ok(Connector {
            _process: Proc(child),
        })
    }
}

/// A free loopback port: bound, then released for a child process to take.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Linux's unit of CPU time in `/proc` (`USER_HZ`: 100 per second on x86 and ARM), in ms.
const TICK_MS: f64 = 10.0;

/// The CPU time (user and system) process `pid` has used, in ms, from `/proc/<pid>/stat`
/// (`None` when it is gone, or off Linux).
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's name, which is in parentheses and may hold spaces: the
    // process's state is the first, user time the 12th, system time the 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 * TICK_MS)
}

/// The CPU time all cores of the machine have spent running something (user, system and
/// interrupt time; not idle, not waiting for the disk, not taken by the hypervisor for other
/// machines), in ms, from `/proc/stat`.
pub fn machine_busy_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let [user, nice, system, _idle, _iowait, irq, softirq, ..] = ticks[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq;
    Some(busy as f64 * TICK_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_for_a_process_and_for_the_machine() {
        let (process, machine) = (cpu_ms(std::process::id()), machine_busy_ms());
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_ms(std::process::id()).unwrap() > process.unwrap());
        assert!(machine_busy_ms().unwrap() > machine.unwrap());
        assert_eq!(cpu_ms(u32::MAX), None);
    }
}
