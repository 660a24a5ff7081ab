//! The `airlock-bridge` binary as an operator uses it: sub-commands against a fresh data
//! directory, and the server itself started with no configuration and stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_airlock-bridge");

/// Runs the binary with a clean environment pointing at `data_dir`.
fn bridge(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .current_dir(data_dir)
        .output()
        .expect("run airlock-bridge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn interfaces_are_created_listed_and_published_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let created = bridge(
        dir.path(),
        &[
            "interface",
            "create",
            "--slug",
            "sales",
            "--title",
            "Sales",
            "--prompt",
            "Pricing?",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stdout(&created).contains("Created interface `sales` (draft)"));
    assert!(stdout(&created).contains("airlock-bridge interface publish sales"));

    let taken = bridge(
        dir.path(),
        &["interface", "create", "--slug", "sales", "--title", "Again"],
    );
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains("already taken"),
        "{}",
        stderr(&taken)
    );

    let invalid = bridge(
        dir.path(),
        &["interface", "create", "--slug", "Bad_Slug", "--title", "X"],
    );
    assert!(!invalid.status.success());
    assert!(
        stderr(&invalid).contains("lowercase letters"),
        "{}",
        stderr(&invalid)
    );

    let published = bridge(dir.path(), &["interface", "publish", "sales"]);
    assert!(published.status.success(), "{}", stderr(&published));
    assert!(stdout(&published).contains("now published"));

    let missing = bridge(dir.path(), &["interface", "publish", "nope"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no interface is called `nope`"));

    let listed = bridge(dir.path(), &["interface", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("--json prints JSON");
    let sales = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["slug"] == "sales")
        .expect("sales is listed");
    assert_eq!(sales["status"], "published");
    assert_eq!(sales["suggested_prompts"][0], "Pricing?");

    let table = bridge(dir.path(), &["interface", "list"]);
    assert!(stdout(&table).starts_with("SLUG"));
    assert!(stdout(&table).contains("sales"));
}

#[test]
fn connector_keys_are_shown_once_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let created = bridge(
        dir.path(),
        &["connector-key", "create", "--name", "support-bot", "--json"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("alk_c_"));

    let listed = bridge(dir.path(), &["connector-key", "list"]);
    assert!(stdout(&listed).contains("support-bot"));
    assert!(!stdout(&listed).contains(key), "keys are never listed");

    let id = created["id"].as_str().unwrap();
    let revoked = bridge(dir.path(), &["connector-key", "revoke", id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let listed = bridge(dir.path(), &["connector-key", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(listed[0]["revoked_at"].is_string());

    let unknown = bridge(dir.path(), &["connector-key", "revoke", "con_nope"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no connector key has the id"));

    let bad_scope = bridge(
        dir.path(),
        &[
            "connector-key",
            "create",
            "--name",
            "x",
            "--interface",
            "nope",
        ],
    );
    assert!(!bad_scope.status.success());
    assert!(stderr(&bad_scope).contains("no interface is called `nope`"));

    let human = bridge(dir.path(), &["connector-key", "create", "--name", "human"]);
    assert!(stdout(&human).contains("AIRLOCK_CONNECTOR_KEY=alk_c_"));
}

#[test]
fn sessions_can_be_listed_and_a_missing_one_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let listed = bridge(dir.path(), &["sessions", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).unwrap(),
        Value::Array(vec![])
    );
    let missing = bridge(dir.path(), &["sessions", "show", "ses_nope"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no session has the id"));
}

#[test]
fn the_bridge_starts_with_no_configuration_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start airlock-bridge");

    // First start: the demo interface and an admin key are announced; the data lands in ./data.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut admin_key = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.strip_prefix("Created the `demo` chat interface: ") {
            url = Some(rest.trim_end_matches("/c/demo").to_string());
        }
        if line.trim().starts_with("alk_a_") {
            admin_key = Some(line.trim().to_string());
        }
        if line.contains("connector-key create") {
            break;
        }
    }
    let url = url.expect("the first start prints the demo URL");
    assert!(
        admin_key.is_some(),
        "the first start prints a generated admin key"
    );
    assert!(dir.path().join("data/airlock.db").exists());

    let ready = http_get(&format!("{url}/readyz"));
    assert!(ready.contains("ready"), "{ready}");

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP GET over a raw socket (keeps this test free of an async runtime).
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn every_setting_in_help_is_documented() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = stdout(&help);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .expect("docs/configuration.md exists");
    let mut checked = 0;
    for part in help.split("[env: ").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/configuration.md does not mention `{name}`"
        );
        checked += 1;
    }
    assert!(
        checked >= 8,
        "expected the settings in --help, found {checked}"
    );
}
