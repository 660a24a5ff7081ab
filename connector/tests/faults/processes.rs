//! The processes under test: bridge child processes, real connector processes, and the
//! database they share.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airlock_bridge::testing::TestSchema;

use crate::agent::FakeAgent;

pub const DIR_VAR: &str = "AIRLOCK_TEST_FAULTS_DIR";
pub const LISTEN_VAR: &str = "AIRLOCK_TEST_FAULTS_LISTEN";
pub const DATABASE_VAR: &str = "AIRLOCK_TEST_FAULTS_DATABASE_URL";
pub const ADMIN_KEY: &str = "alk_a_faults";

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none behind.
pub struct Proc {
    child: Child,
    /// Where a connector's warnings go (its log, on stdout), kept as long as the process is.
    log: Option<tempfile::NamedTempFile>,
}

impl Proc {
    fn new(child: Child) -> Proc {
        Proc { child, log: None }
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The process's resident memory in KiB (`None` once it is gone).
    pub fn rss_kib(&self) -> Option<u64> {
        airlock_bridge::testing::rss_kib(self.child.id())
    }

    /// How many lines of the connector's log so far contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> usize {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log.path()).ok())
            .map_or(0, |text| {
                text.lines().filter(|l| l.contains(needle)).count()
            })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A bridge child process on `db`, listening on `listen`; retried while the port is not yet
/// free again after a kill.
pub fn start_bridge(db: &Db, listen: SocketAddr) -> Proc {
    start_bridge_with(db, listen, None)
}

/// `start_bridge`, with `AIRLOCK_MAX_ATTEMPTS` set for the bridge when given.
pub fn start_bridge_with(db: &Db, listen: SocketAddr, max_attempts: Option<u32>) -> Proc {
    for _ in 0..50 {
        let mut command = Command::new(std::env::current_exe().unwrap());
        if let Some(schema) = &db.postgres {
            command.env(DATABASE_VAR, &schema.url);
        }
        command.env_remove("AIRLOCK_MAX_ATTEMPTS");
        if let Some(attempts) = max_attempts {
            command.env("AIRLOCK_MAX_ATTEMPTS", attempts.to_string());
        }
        let mut child = command
            .args([
                "--ignored",
                "--exact",
                "faults_bridge_process",
                "--nocapture",
            ])
            .env(DIR_VAR, db.dir.path())
            .env(LISTEN_VAR, listen.to_string())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the bridge process");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let started = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("LISTENING ") => break true,
                Some(_) => continue,
                None => break false,
            }
        };
        if started {
            // Keep draining stdout so the child never blocks on a full pipe. What the bridge logs
            // (errors only) goes to the test's output, shown when the test fails.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    eprintln!("bridge on {listen}: {line}");
                }
            });
            return Proc::new(child);
        }
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the bridge did not start on {listen}");
}

/// A free loopback port: bound, then released for the bridge to take.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A real `airlock-connector` process using the `openai` agent at `agent`.
pub fn start_connector(bridge: &str, key: &str, agent: &FakeAgent, lease_secs: u64) -> Proc {
    start_connector_with(bridge, key, agent, lease_secs, &[])
}

/// `start_connector`, with more environment variables for the connector.
pub fn start_connector_with(
    bridge: &str,
    key: &str,
    agent: &FakeAgent,
    lease_secs: u64,
    extra: &[(&str, &str)],
) -> Proc {
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_airlock-connector"))
        .env_clear()
        .envs(extra.iter().copied())
        .env("AIRLOCK_BRIDGE_URL", bridge)
        .env("AIRLOCK_CONNECTOR_KEY", key)
        .env("AIRLOCK_AGENT", "openai")
        .env("AIRLOCK_OPENAI_BASE_URL", agent.base_url())
        .env("AIRLOCK_OPENAI_MODEL", "fake-model")
        .env("AIRLOCK_CLAIM_WAIT", "5")
        .env("AIRLOCK_LEASE_SECS", lease_secs.to_string())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        // The connector logs to stdout.
        .stdout(log.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the connector");
    Proc {
        child,
        log: Some(log),
    }
}

/// The bridge's database: SQLite in a temporary data directory, or a fresh schema on the test
/// PostgreSQL (dropped afterwards).
pub struct Db {
    pub dir: tempfile::TempDir,
    pub postgres: Option<TestSchema>,
}

impl Db {
    pub fn sqlite() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
            postgres: None,
        }
    }

    /// A fresh schema on `AIRLOCK_TEST_POSTGRES_URL`, or `None` after a one-line notice.
    pub async fn postgres() -> Option<Db> {
        Some(Db {
            dir: tempfile::tempdir().unwrap(),
            postgres: Some(TestSchema::create().await?),
        })
    }

    /// The size of the SQLite database with its write-ahead log (`None` on PostgreSQL).
    pub fn sqlite_bytes(&self) -> Option<u64> {
        if self.postgres.is_some() {
            return None;
        }
        let files = std::fs::read_dir(self.dir.path()).ok()?;
        Some(
            files
                .filter_map(Result::ok)
                .filter(|f| f.file_name().to_string_lossy().starts_with("airlock.db"))
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum(),
        )
    }

    /// "SQLite" or "PostgreSQL", for the table.
    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    pub fn url(&self) -> String {
        match &self.postgres {
            Some(schema) => schema.url.clone(),
            None => airlock_bridge::store::sqlite_url(self.dir.path()),
        }
    }
}

/// A connector key written straight into the bridge's database.
pub async fn connector_key(db: &Db) -> String {
    let store = airlock_bridge::store::Store::connect(&db.url(), &Default::default())
        .await
        .unwrap();
    let (_, key) = airlock_bridge::manage::create_connector_key(&store, "faults", &[], 0)
        .await
        .unwrap();
    store.close().await;
    key
}
