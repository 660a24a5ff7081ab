//! `airlock-bridge backup` and `restore` as an operator uses them: a backup taken from a bridge
//! process while visitors keep writing, restored after later writes, and served again.

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

/// Runs a sub-command with a clean environment pointing at `data_dir`.
fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .current_dir(data_dir)
        .stdin(Stdio::null())
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
fn serve(data_dir: &Path) -> Server {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .env("AIRLOCK_LISTEN", "127.0.0.1:0")
        .env("AIRLOCK_ADMIN_KEY", ADMIN_KEY)
        .current_dir(data_dir)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_visitors_write_is_restored_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let created = cli(
        data,
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
    let server = serve(data);
    let client = common::http::http();

    let opened: Value = client
        .post(format!("{}/api/v1/interfaces/support/sessions", server.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session_id = opened["session_id"].as_str().unwrap().to_string();
    let token = opened["session_token"].as_str().unwrap().to_string();
    let send = {
        let (client, url, session_id, token) = (
            client.clone(),
            server.url.clone(),
            session_id.clone(),
            token.clone(),
        );
        move |client_id: String| {
            let (client, url, session_id, token) = (
                client.clone(),
                url.clone(),
                session_id.clone(),
                token.clone(),
            );
            async move {
                client
                    .post(format!("{url}/api/v1/sessions/{session_id}/messages"))
                    .bearer_auth(token)
                    .json(&json!({"client_id": client_id, "text": "hello"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        }
    };

    // Visitors keep writing while the backup runs; every acknowledged send is recorded.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (acknowledged, stop, send) = (acknowledged.clone(), stop.clone(), send.clone());
        async move {
            for i in 0..900 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let client_id = format!("m{i}");
                let status = send(client_id.clone()).await;
                assert_eq!(status, 202, "send {client_id}");
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
    let backup_path = data.join("airlock-backup.db");
    let backed_up = tokio::task::spawn_blocking({
        let (data, backup_path) = (data.to_path_buf(), backup_path.clone());
        move || cli(&data, &["backup", backup_path.to_str().unwrap()])
    })
    .await
    .unwrap();
    let during_backup = acknowledged.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    assert!(
        stdout(&backed_up).contains("Backed up the database to"),
        "{}",
        stdout(&backed_up)
    );
    assert!(
        during_backup > before_backup.len(),
        "messages were acknowledged while the backup ran"
    );

    // The backup is sound and holds every message acknowledged before it started.
    let in_backup = client_ids_in(&backup_path).await;
    for id in &before_backup {
        assert!(in_backup.contains(id), "{id} is missing from the backup");
    }
    let (status, audit) = admin_get(
        &client,
        format!("{}/api/v1/admin/audit?limit=50", server.url),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "cli" && e["action"] == "database.backup"),
        "{audit}"
    );

    // A restore needs --yes, and is refused while the bridge has the database open.
    let unconfirmed = cli(data, &["restore", backup_path.to_str().unwrap()]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("Stop the bridge first")
            && stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    let in_use = cli(data, &["restore", backup_path.to_str().unwrap(), "--yes"]);
    assert!(!in_use.status.success());
    assert!(stderr(&in_use).contains("is in use"), "{}", stderr(&in_use));

    // More visitor messages, then the bridge stops and an interface is added offline: all of it
    // comes after the backup.
    for i in 0..3 {
        assert_eq!(send(format!("late{i}")).await, 202);
    }
    server.stop();
    let later = cli(
        data,
        &["interface", "create", "--slug", "later", "--title", "Later"],
    );
    assert!(later.status.success(), "{}", stderr(&later));

    let restored = cli(data, &["restore", backup_path.to_str().unwrap(), "--yes"]);
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
    let server = serve(data);
    let (status, transcript) = admin_get(
        &client,
        format!("{}/api/v1/admin/sessions/{session_id}", server.url),
    )
    .await;
    assert_eq!(status, 200, "{transcript}");
    let served: Vec<String> = transcript["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["client_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(served, in_backup);
    assert!(!served.iter().any(|id| id.starts_with("late")));
    let (status, _) = admin_get(
        &client,
        format!("{}/api/v1/admin/interfaces/later", server.url),
    )
    .await;
    assert_eq!(status, 404, "the interface made after the backup is gone");
    let (_, audit) = admin_get(
        &client,
        format!("{}/api/v1/admin/audit?limit=50", server.url),
    )
    .await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "cli" && e["action"] == "database.restore"),
        "{audit}"
    );
    server.stop();
}

#[test]
fn a_backup_never_overwrites_a_file_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let existing = data.join("monday.db");
    std::fs::write(&existing, "last week's backup").unwrap();

    let refused = cli(data, &["backup", existing.to_str().unwrap()]);
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
        &["interface", "create", "--slug", "kept", "--title", "Kept"],
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let text = data.join("notes.txt");
    std::fs::write(&text, "not a database at all, just some text ".repeat(200)).unwrap();
    let refused = cli(data, &["restore", text.to_str().unwrap(), "--yes"]);
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
    let refused = cli(data, &["restore", other.to_str().unwrap(), "--yes"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not an Airlock one"),
        "{}",
        stderr(&refused)
    );

    // The configured database was left alone.
    let listed = cli(data, &["interface", "list"]);
    assert!(stdout(&listed).contains("kept"), "{}", stdout(&listed));
    assert!(!data.join("airlock.db.before-restore").exists());
}
