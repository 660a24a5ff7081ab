//! `airlock-bridge backup` and `restore` as an operator uses them: a backup taken from a bridge
//! process while visitors keep writing, restored after later writes, and served again — on SQLite,
//! and on PostgreSQL (`pg_dump`, then `pg_restore`) when `AIRLOCK_TEST_POSTGRES_URL` is set.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

const BIN: &str = env!("CARGO_BIN_EXE_airlock-bridge");
const ADMIN_KEY: &str = "alk_a_backup-test-0123456789abcdefghijklmnop";

/// The flags `restore` tells a PostgreSQL operator to run `pg_restore` with.
const PG_RESTORE_FLAGS: [&str; 3] = ["--clean", "--if-exists", "--no-owner"];

/// `airlock-bridge` with a clean environment pointing at `data_dir`, and at `database_url` when
/// given (otherwise the default SQLite database in `data_dir`).
fn command(data_dir: &Path, database_url: Option<&str>) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .current_dir(data_dir)
        .stdin(Stdio::null());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

/// Runs a sub-command on the database of `data_dir` (or `database_url`).
fn cli(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    command(data_dir, database_url)
        .args(args)
        .output()
        .expect("run airlock-bridge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A bridge process serving `data_dir`; killed when dropped, stopped gracefully by [`stop`].
struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    /// SIGTERM, then wait for the process to exit (it closes the database on the way out).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the bridge did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `airlock-bridge` on port 0 with a known admin key; returns once it is listening.
fn serve(data_dir: &Path, database_url: Option<&str>) -> Server {
    let mut child = command(data_dir, database_url)
        .env("AIRLOCK_LISTEN", "127.0.0.1:0")
        .env("AIRLOCK_ADMIN_KEY", ADMIN_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start airlock-bridge");
    // The start-up log line names the bound address; keep draining the log after it.
    let (found, address) = std::sync::mpsc::channel();
    let log = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines() {
            let Ok(line) = line else { break };
            if line.contains("airlock bridge listening")
                && let Some(at) = line.find("127.0.0.1:")
            {
                let port: String = line[at + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let _ = found.send(format!("http://127.0.0.1:{port}"));
            }
        }
    });
    let url = address
        .recv_timeout(Duration::from_secs(30))
        .expect("the bridge logs the address it listens on");
    Server { child, url }
}

/// Creates the published `support` interface, with room for every message the tests send.
fn create_support_interface(data_dir: &Path, database_url: Option<&str>) {
    let created = cli(
        data_dir,
        database_url,
        &[
            "interface",
            "create",
            "--slug",
            "support",
            "--title",
            "Support",
            "--rate-limit-messages",
            "1000",
            "--publish",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
}

/// A visitor with an open session on the `support` interface of the bridge at `url`.
#[derive(Clone)]
struct Visitor {
    client: reqwest::Client,
    url: String,
    session_id: String,
    token: String,
}

impl Visitor {
    async fn open(client: &reqwest::Client, server: &Server) -> Visitor {
        let opened: Value = client
            .post(format!("{}/api/v1/interfaces/support/sessions", server.url))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Visitor {
            client: client.clone(),
            url: server.url.clone(),
            session_id: opened["session_id"].as_str().unwrap().to_string(),
            token: opened["session_token"].as_str().unwrap().to_string(),
        }
    }

    /// The same visitor, talking to another bridge process.
    fn on(&self, server: &Server) -> Visitor {
        Visitor {
            url: server.url.clone(),
            ..self.clone()
        }
    }

    /// Sends a message; returns the HTTP status.
    async fn send(&self, client_id: &str) -> u16 {
        self.client
            .post(format!(
                "{}/api/v1/sessions/{}/messages",
                self.url, self.session_id
            ))
            .bearer_auth(&self.token)
            .json(&json!({"client_id": client_id, "text": "hello"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The visitor messages around a backup, by `client_id`, in the order they were acknowledged.
struct Written {
    /// Acknowledged before the backup started: every one of them is in the backup.
    before_backup: Vec<String>,
    /// Acknowledged by the time the writer stopped (after the backup ended).
    acknowledged: Vec<String>,
}

impl Written {
    /// Asserts `held` (a backup's messages, in order) is what a consistent snapshot taken during
    /// the backup holds: everything acknowledged before it started, then possibly some of what
    /// was acknowledged while it ran, and nothing else.
    fn assert_snapshot(&self, held: &[String]) {
        assert!(
            held.len() >= self.before_backup.len() && held.len() <= self.acknowledged.len(),
            "{} message(s) held; {} acknowledged before the backup, {} in all",
            held.len(),
            self.before_backup.len(),
            self.acknowledged.len()
        );
        assert_eq!(held, &self.acknowledged[..held.len()]);
    }
}

/// Runs `backup PATH` through the CLI while `visitor` keeps sending messages; asserts it
/// succeeded and that messages were acknowledged while it ran.
async fn backup_while_visitor_writes(
    data_dir: &Path,
    database_url: Option<&str>,
    visitor: &Visitor,
    path: &Path,
) -> (Output, Written) {
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (acknowledged, stop, visitor) = (acknowledged.clone(), stop.clone(), visitor.clone());
        async move {
            for i in 0..900 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let client_id = format!("m{i}");
                assert_eq!(visitor.send(&client_id).await, 202, "send {client_id}");
                acknowledged.lock().unwrap().push(client_id);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "the writer never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before_backup = acknowledged.lock().unwrap().clone();
    let backed_up = tokio::task::spawn_blocking({
        let (data_dir, database_url) = (data_dir.to_path_buf(), database_url.map(str::to_string));
        let path = path.to_str().unwrap().to_string();
        move || cli(&data_dir, database_url.as_deref(), &["backup", &path])
    })
    .await
    .unwrap();
    let during_backup = acknowledged.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    assert!(
        during_backup > before_backup.len(),
        "messages were acknowledged while the backup ran"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    (
        backed_up,
        Written {
            before_backup,
            acknowledged,
        },
    )
}

/// The messages of an SQLite file, by `client_id`, after checking its integrity.
async fn client_ids_in(path: &Path) -> Vec<String> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT client_id FROM messages WHERE client_id IS NOT NULL ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    ids
}

async fn admin_get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).bearer_auth(ADMIN_KEY).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The messages of a session as the bridge's admin API serves them, by `client_id`, in order.
async fn client_ids_served(
    client: &reqwest::Client,
    server: &Server,
    session_id: &str,
) -> Vec<String> {
    let (status, transcript) = admin_get(
        client,
        format!("{}/api/v1/admin/sessions/{session_id}", server.url),
    )
    .await;
    assert_eq!(status, 200, "{transcript}");
    transcript["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["client_id"].as_str().map(str::to_string))
        .collect()
}

/// Asserts the audit log has an entry for `action` by the CLI.
async fn assert_audited_by_cli(client: &reqwest::Client, server: &Server, action: &str) {
    let (status, audit) = admin_get(
        client,
        format!("{}/api/v1/admin/audit?limit=50", server.url),
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "cli" && e["action"] == action),
        "no {action} by cli in {audit}"
    );
}

/// A database of its own on the test PostgreSQL (`pg_dump` dumps whole databases), dropped with
/// `WITH (FORCE)` when this is dropped, so a failing test leaves nothing behind either.
struct PgDatabase {
    base: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(base: &str) -> PgDatabase {
        let name = format!("airlock_backup_{}", getrandom::u64().unwrap());
        let mut admin = sqlx::PgConnection::connect(base)
            .await
            .expect("connect to AIRLOCK_TEST_POSTGRES_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.unwrap();
        let mut url = url::Url::parse(base).expect("AIRLOCK_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        PgDatabase {
            base: base.to_string(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run inside the test's runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_visitors_write_is_restored_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    create_support_interface(data, None);
    let server = serve(data, None);
    let client = common::http::http();
    let visitor = Visitor::open(&client, &server).await;

    // Visitors keep writing while the backup runs.
    let backup_path = data.join("airlock-backup.db");
    let (backed_up, written) =
        backup_while_visitor_writes(data, None, &visitor, &backup_path).await;
    assert!(
        stdout(&backed_up).contains("Backed up the database to"),
        "{}",
        stdout(&backed_up)
    );

    // The backup is sound and holds every message acknowledged before it started.
    let in_backup = client_ids_in(&backup_path).await;
    written.assert_snapshot(&in_backup);
    assert_audited_by_cli(&client, &server, "database.backup").await;

    // A restore needs --yes, and is refused while the bridge has the database open.
    let unconfirmed = cli(data, None, &["restore", backup_path.to_str().unwrap()]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("Stop the bridge first")
            && stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    let in_use = cli(
        data,
        None,
        &["restore", backup_path.to_str().unwrap(), "--yes"],
    );
    assert!(!in_use.status.success());
    assert!(stderr(&in_use).contains("is in use"), "{}", stderr(&in_use));

    // More visitor messages, then the bridge stops and an interface is added offline: all of it
    // comes after the backup.
    for i in 0..3 {
        assert_eq!(visitor.send(&format!("late{i}")).await, 202);
    }
    server.stop();
    let later = cli(
        data,
        None,
        &["interface", "create", "--slug", "later", "--title", "Later"],
    );
    assert!(later.status.success(), "{}", stderr(&later));

    let restored = cli(
        data,
        None,
        &["restore", backup_path.to_str().unwrap(), "--yes"],
    );
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert!(
        stdout(&restored).contains("Restored"),
        "{}",
        stdout(&restored)
    );
    assert!(
        data.join("airlock.db.before-restore").exists(),
        "the previous database is kept beside the restored one"
    );

    // The bridge serves the backup's data: its messages, none of the later ones.
    let server = serve(data, None);
    let served = client_ids_served(&client, &server, &visitor.session_id).await;
    assert_eq!(served, in_backup);
    assert!(!served.iter().any(|id| id.starts_with("late")));
    let (status, _) = admin_get(
        &client,
        format!("{}/api/v1/admin/interfaces/later", server.url),
    )
    .await;
    assert_eq!(status, 404, "the interface made after the backup is gone");
    assert_audited_by_cli(&client, &server, "database.restore").await;
    server.stop();
}

/// The PostgreSQL path end to end, as docs/deployment.md tells an operator to take it: `backup`
/// runs `pg_dump` while visitors keep writing, `restore` refuses and names the `pg_restore`
/// command, and that command loads the dump into an empty database that a bridge then serves
/// with every message acknowledged before the backup started, in order, and none written after
/// it — and keeps accepting new ones: the restored schema, migrations table and per-session
/// sequence numbers work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_taken_while_visitors_write_is_restored_with_pg_restore() {
    let Some(base) = common::postgres_url() else {
        return;
    };
    let original = PgDatabase::create(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let database = Some(original.url.as_str());
    create_support_interface(data, database);
    let server = serve(data, database);
    let client = common::http::http();
    let visitor = Visitor::open(&client, &server).await;

    let backup_path = data.join("airlock-backup.dump");
    let (backed_up, written) =
        backup_while_visitor_writes(data, database, &visitor, &backup_path).await;
    assert!(
        stdout(&backed_up).contains("with pg_dump"),
        "{}",
        stdout(&backed_up)
    );
    assert_audited_by_cli(&client, &server, "database.backup").await;

    // Later messages are not in the backup; `restore` leaves PostgreSQL to pg_restore.
    for i in 0..3 {
        assert_eq!(visitor.send(&format!("late{i}")).await, 202);
    }
    let refused = cli(
        data,
        database,
        &["restore", backup_path.to_str().unwrap(), "--yes"],
    );
    assert!(!refused.status.success());
    let suggested = format!("pg_restore {} --dbname", PG_RESTORE_FLAGS.join(" "));
    assert!(
        stderr(&refused).contains(&suggested),
        "{}",
        stderr(&refused)
    );
    server.stop();

    // The suggested command, into an empty database.
    let restored_db = PgDatabase::create(&base).await;
    let restored = Command::new("pg_restore")
        .args(PG_RESTORE_FLAGS)
        .args(["--dbname", &restored_db.url])
        .arg(&backup_path)
        .stdin(Stdio::null())
        .output()
        .expect("run pg_restore");
    assert!(restored.status.success(), "{}", stderr(&restored));

    let server = serve(data, Some(&restored_db.url));
    let served = client_ids_served(&client, &server, &visitor.session_id).await;
    written.assert_snapshot(&served);
    assert!(!served.iter().any(|id| id.starts_with("late")));
    let visitor = visitor.on(&server);
    assert_eq!(visitor.send("after-restore").await, 202);
    let served_now = client_ids_served(&client, &server, &visitor.session_id).await;
    assert_eq!(served_now.last().map(String::as_str), Some("after-restore"));
    assert_eq!(served_now.len(), served.len() + 1);
    server.stop();
}

#[test]
fn a_backup_never_overwrites_a_file_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let existing = data.join("monday.db");
    std::fs::write(&existing, "last week's backup").unwrap();

    let refused = cli(data, None, &["backup", existing.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("already exists") && stderr(&refused).contains("--force"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "last week's backup"
    );

    let forced = cli(
        data,
        None,
        &["backup", existing.to_str().unwrap(), "--force", "--json"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    let report: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(report["sessions"], 0);
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(
        std::fs::read(&existing)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
}

#[tokio::test]
async fn a_restore_refuses_what_is_not_an_airlock_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let created = cli(
        data,
        None,
        &["interface", "create", "--slug", "kept", "--title", "Kept"],
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let text = data.join("notes.txt");
    std::fs::write(&text, "not a database at all, just some text ".repeat(200)).unwrap();
    let refused = cli(data, None, &["restore", text.to_str().unwrap(), "--yes"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is not an SQLite database"),
        "{}",
        stderr(&refused)
    );

    let other = data.join("other.db");
    let options = SqliteConnectOptions::new()
        .filename(&other)
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("CREATE TABLE notes (text TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let refused = cli(data, None, &["restore", other.to_str().unwrap(), "--yes"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not an Airlock one"),
        "{}",
        stderr(&refused)
    );

    // The configured database was left alone.
    let listed = cli(data, None, &["interface", "list"]);
    assert!(stdout(&listed).contains("kept"), "{}", stdout(&listed));
    assert!(!data.join("airlock.db.before-restore").exists());
}
