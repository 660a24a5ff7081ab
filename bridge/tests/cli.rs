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

/// Like [`bridge`], with extra environment variables.
fn bridge_with_env(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .envs(env.iter().copied())
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
    let sales = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["slug"] == "sales")
        .expect("sales is listed");
    assert_eq!(sales["status"], "published");
    assert_eq!(sales["suggested_prompts"][0]["text"], "Pricing?");

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
    assert!(listed["items"][0]["revoked_at"].is_string());

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
        serde_json::json!({"items": []})
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

/// A bridge server running as a child process on `data_dir`; killed when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    admin_key: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `airlock-bridge` (serve) on port 0 and waits until it announced its URL and key.
fn serve(data_dir: &Path) -> Server {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRLOCK_DATA_DIR", data_dir)
        .env("AIRLOCK_LISTEN", "127.0.0.1:0")
        .current_dir(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start airlock-bridge");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut admin_key) = (None, None);
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
    Server {
        child,
        url: url.expect("the server prints its URL"),
        admin_key: admin_key.expect("the server prints an admin key"),
    }
}

/// A GET over a raw socket: `(status code, body)`.
fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let auth = bearer
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    // Bodies may come chunked; the JSON object sits between the first `{` and the last `}`.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) => body[start..=end].to_string(),
        _ => body,
    };
    (status, body)
}

#[test]
fn what_the_cli_does_the_running_bridge_serves() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let public = |slug: &str| get(&format!("{}/api/v1/interfaces/{slug}", server.url), None);

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
            "--origin",
            "https://shop.example",
            "--rate-limit-messages",
            "5",
            "--system-prompt",
            "You sell for {interface_title}.",
            "--agent-context",
            r#"{"plan": "pro"}"#,
            "--json",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let created: Value = serde_json::from_slice(&created.stdout).expect("--json prints JSON");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["rate_limit"]["messages"], 5);
    assert_eq!(created["rate_limit"]["window_secs"], 60);
    assert_eq!(created["agent_context"]["plan"], "pro");
    assert_eq!(public("sales").0, 404, "a draft is not public");

    let published = bridge(dir.path(), &["interface", "publish", "sales"]);
    assert!(published.status.success(), "{}", stderr(&published));
    let (status, body) = public("sales");
    assert_eq!(status, 200, "{body}");
    let config: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["title"], "Sales");
    assert_eq!(config["suggested_prompts"][0]["text"], "Pricing?");

    let updated = bridge(
        dir.path(),
        &[
            "interface",
            "update",
            "sales",
            "--title",
            "Sales team",
            "--theme",
            "dark",
        ],
    );
    assert!(updated.status.success(), "{}", stderr(&updated));
    let config: Value = serde_json::from_str(&public("sales").1).unwrap();
    assert_eq!(config["title"], "Sales team");
    assert_eq!(config["appearance"]["theme"], "dark");
    assert_eq!(
        config["appearance"]["primary_color"], "#3b5bdb",
        "other fields stay"
    );

    let refused = bridge(
        dir.path(),
        &["interface", "update", "sales", "--origin", "shop.example"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("allowed_origins"),
        "{}",
        stderr(&refused)
    );
    let missing = bridge(dir.path(), &["interface", "show", "nope"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing)
            .contains("no interface is called `nope`; see `airlock-bridge interface list`"),
        "{}",
        stderr(&missing)
    );

    let shown = bridge(dir.path(), &["interface", "show", "sales", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["embed"]["link"], "http://127.0.0.1:8080/c/sales");
    let table = bridge(dir.path(), &["interface", "show", "sales"]);
    assert!(stdout(&table).contains("Sales team"));
    assert!(stdout(&table).contains("Embed:"));

    let copied = bridge(
        dir.path(),
        &[
            "interface",
            "duplicate",
            "sales",
            "--to",
            "sales-2",
            "--json",
        ],
    );
    assert!(copied.status.success(), "{}", stderr(&copied));
    let copied: Value = serde_json::from_slice(&copied.stdout).unwrap();
    assert_eq!(copied["status"], "draft");
    assert_eq!(copied["title"], "Sales team");
    let taken = bridge(
        dir.path(),
        &["interface", "duplicate", "sales", "--to", "sales-2"],
    );
    assert!(
        stderr(&taken).contains("already taken"),
        "{}",
        stderr(&taken)
    );

    // Without a terminal, delete needs --yes.
    let unconfirmed = bridge(dir.path(), &["interface", "delete", "sales"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    assert_eq!(public("sales").0, 200);
    let deleted = bridge(
        dir.path(),
        &["interface", "delete", "sales", "--yes", "--json"],
    );
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let deleted: Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"deleted": "sales", "sessions": 0})
    );
    assert_eq!(public("sales").0, 404);

    // Every action is in the audit log the admin API serves, under the actor `cli`.
    let (status, audit) = get(
        &format!("{}/api/v1/admin/audit?limit=50", server.url),
        Some(&server.admin_key),
    );
    assert_eq!(status, 200, "{audit}");
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let by_cli: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "cli")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "interface.create",
        "interface.publish",
        "interface.update",
        "interface.duplicate",
        "interface.delete",
    ] {
        assert!(by_cli.contains(&action), "{action} missing from {by_cli:?}");
    }
}

#[test]
fn sessions_export_writes_one_row_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    // A visitor opens a session and writes, through the running bridge.
    let post = |path: &str, bearer: Option<&str>, body: &str| -> String {
        use std::io::{Read, Write};
        let rest = server.url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(rest).unwrap();
        let auth = bearer
            .map(|key| format!("Authorization: Bearer {key}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "POST /api/v1{path} HTTP/1.1\r\nHost: {rest}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let start = response.find('{').unwrap();
        response[start..=response.rfind('}').unwrap()].to_string()
    };
    let session: Value =
        serde_json::from_str(&post("/interfaces/demo/sessions", None, "{}")).unwrap();
    let id = session["session_id"].as_str().unwrap();
    let token = session["session_token"].as_str().unwrap();
    post(
        &format!("/sessions/{id}/messages"),
        Some(token),
        r#"{"client_id": "c1", "text": "Hello, \"export\""}"#,
    );

    let jsonl = bridge(dir.path(), &["sessions", "export", "--interface", "demo"]);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let rows: Vec<Value> = stdout(&jsonl)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["session_id"], id);
    assert_eq!(rows[0]["interface"], "demo");
    assert_eq!(rows[0]["role"], "user");
    assert_eq!(rows[0]["text"], "Hello, \"export\"");

    let file = dir.path().join("export.csv");
    let csv = bridge(
        dir.path(),
        &[
            "sessions",
            "export",
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(csv.status.success(), "{}", stderr(&csv));
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "session_id,interface,visitor_id,user_id,user_name,user_email,session_created_at,message_id,seq,role,status,created_at,text"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with(",\"Hello, \"\"export\"\"\"")
    );

    let listed = bridge(dir.path(), &["sessions", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["items"][0]["id"], id);
    let unknown = bridge(dir.path(), &["sessions", "export", "--interface", "nope"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no interface is called `nope`"));
}

#[test]
fn admin_keys_rotate_without_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let sessions = |key: &str| get(&format!("{}/api/v1/admin/sessions", server.url), Some(key)).0;
    assert_eq!(sessions(&server.admin_key), 200);

    // The generated key is the only one: revoking it would lock every admin out.
    let listed = bridge(dir.path(), &["admin-key", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert!(
        !listed.to_string().contains("alk_a_"),
        "keys are never listed"
    );
    let old_id = items[0]["id"].as_str().unwrap().to_string();
    let refused = bridge(dir.path(), &["admin-key", "revoke", &old_id]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("last admin key"),
        "{}",
        stderr(&refused)
    );

    // A second key works beside the first; then the first is revoked and refused at once.
    let created = bridge(dir.path(), &["admin-key", "create", "--name", "rotated"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let new_key = stdout(&created)
        .split_whitespace()
        .find(|w| w.starts_with("alk_a_"))
        .unwrap()
        .to_string();
    assert_eq!(sessions(&new_key), 200);
    assert_eq!(sessions(&server.admin_key), 200);
    let revoked = bridge(dir.path(), &["admin-key", "revoke", &old_id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(sessions(&server.admin_key), 401);
    assert_eq!(sessions(&new_key), 200);

    let again = bridge(dir.path(), &["admin-key", "revoke", &old_id]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no live admin key"),
        "{}",
        stderr(&again)
    );
    let table = stdout(&bridge(dir.path(), &["admin-key", "list"]));
    assert!(
        table.contains("rotated") && table.contains("live"),
        "{table}"
    );
}

#[test]
fn identity_settings_are_set_from_files_and_the_secret_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "cli-test-secret-0123456789abcdefghijklmnop";
    std::fs::write(dir.path().join("secret.txt"), format!("{secret}\n")).unwrap();
    let created = bridge(
        dir.path(),
        &[
            "interface",
            "create",
            "--slug",
            "members",
            "--title",
            "Members",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));

    // Required without a way to verify tokens: refused, naming the field.
    let refused = bridge(
        dir.path(),
        &[
            "interface",
            "update",
            "members",
            "--require-identity",
            "true",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("require_identity"),
        "{}",
        stderr(&refused)
    );

    let updated = bridge(
        dir.path(),
        &[
            "interface",
            "update",
            "members",
            "--identity-algorithm",
            "HS256",
            "--identity-secret-file",
            "secret.txt",
            "--identity-issuer",
            "https://shop.example",
            "--require-identity",
            "true",
            "--json",
        ],
    );
    assert!(updated.status.success(), "{}", stderr(&updated));
    assert!(!stdout(&updated).contains(secret));
    let shown = bridge(dir.path(), &["interface", "show", "members", "--json"]);
    assert!(!stdout(&shown).contains(secret));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["require_identity"], true);
    assert_eq!(shown["identity"]["algorithm"], "HS256");
    assert_eq!(shown["identity"]["secret"], Value::Null);
    assert_eq!(shown["identity"]["secret_set"], true);
    assert_eq!(shown["identity"]["issuer"], "https://shop.example");
    let table = bridge(dir.path(), &["interface", "show", "members"]);
    assert!(!stdout(&table).contains(secret));

    // Changing the issuer keeps the stored secret.
    let updated = bridge(
        dir.path(),
        &[
            "interface",
            "update",
            "members",
            "--identity-issuer",
            "",
            "--json",
        ],
    );
    assert!(updated.status.success(), "{}", stderr(&updated));
    let updated: Value = serde_json::from_slice(&updated.stdout).unwrap();
    assert_eq!(updated["identity"]["secret_set"], true);
    assert_eq!(updated["identity"]["issuer"], Value::Null);

    let removed = bridge(
        dir.path(),
        &[
            "interface",
            "update",
            "members",
            "--no-identity",
            "--require-identity",
            "false",
            "--json",
        ],
    );
    assert!(removed.status.success(), "{}", stderr(&removed));
    let removed: Value = serde_json::from_slice(&removed.stdout).unwrap();
    assert_eq!(removed["identity"], Value::Null);
}

/// The database of `data_dir`, as the CLI opens it.
async fn open_store(data_dir: &Path) -> airlock_bridge::store::Store {
    use airlock_bridge::store::{Store, StoreOptions, sqlite_url};
    Store::connect(&sqlite_url(data_dir), &StoreOptions::default())
        .await
        .expect("open the data directory's database")
}

#[test]
fn old_sessions_are_purged_and_a_visitor_forgotten_from_the_cli() {
    use airlock_bridge::store::{NewAttachment, NewSession};
    use airlock_bridge::tokens::{hash_secret, new_id};
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    // A session inactive for 40 days (a message and a file) and one from yesterday, written
    // straight into the database the CLI will open.
    let (old, recent) = runtime.block_on(async {
        let store = open_store(dir.path()).await;
        let mut demo = airlock_bridge::manage::demo_interface();
        demo.slug = "support".into();
        let ifc = airlock_bridge::manage::create_interface(&store, demo, 0)
            .await
            .unwrap()
            .id;
        let mut sessions = Vec::new();
        for at in [now - 40 * DAY, now - DAY] {
            let session = store
                .create_session(
                    &NewSession {
                        interface_id: ifc.clone(),
                        token_hash: hash_secret(&new_id("tok")),
                        resume_hash: hash_secret(&new_id("res")),
                        ..NewSession::default()
                    },
                    at,
                )
                .await
                .unwrap();
            store
                .send_user_message(&session.id, "c1", "hello", &[], None, at)
                .await
                .unwrap();
            sessions.push(session);
        }
        store
            .store_attachment(
                NewAttachment {
                    session_id: sessions[0].id.clone(),
                    interface_id: ifc.clone(),
                    filename: "old.txt".into(),
                    content_type: "text/plain".into(),
                    data: b"old".to_vec(),
                },
                now - 40 * DAY,
            )
            .await
            .unwrap();
        // The agent answered both, so no message is waiting for it.
        let (connector, _) = airlock_bridge::manage::create_connector_key(&store, "agent", &[], 0)
            .await
            .unwrap();
        let items = store
            .claim(&connector, 10, 30_000, 20, false, now)
            .await
            .unwrap()
            .items;
        for item in items {
            // Answered when it was written, so the reply does not make it recent.
            let at = if item.session.id == sessions[0].id {
                now - 40 * DAY
            } else {
                now - DAY
            };
            store
                .reply(&item.lease_id, &connector, "hi", at)
                .await
                .unwrap();
        }
        store.close().await;
        (sessions[0].clone(), sessions[1].clone())
    });
    let sessions_left = || {
        runtime.block_on(async {
            let store = open_store(dir.path()).await;
            let mut left = Vec::new();
            for id in [&old.id, &recent.id] {
                if store.session(id).await.unwrap().is_some() {
                    left.push(id.clone());
                }
            }
            store.close().await;
            left
        })
    };

    let dry = bridge(
        dir.path(),
        &["purge", "--older-than-days", "30", "--dry-run"],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("Would delete 1 session(s) inactive for more than 30 days")
            && stdout(&dry).contains("with 2 message(s) and 1 attachment(s)")
            && stdout(&dry).contains("Nothing was deleted"),
        "{}",
        stdout(&dry)
    );
    // The configured retention is the default; --json for scripts.
    let configured = bridge_with_env(
        dir.path(),
        &[("AIRLOCK_RETENTION_DAYS", "30")],
        &["purge", "--dry-run", "--json"],
    );
    assert!(configured.status.success(), "{}", stderr(&configured));
    let report: Value = serde_json::from_slice(&configured.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["older_than_days"], 30);
    assert_eq!(report["sessions"], 1);
    assert_eq!(sessions_left().len(), 2, "a dry run deletes nothing");

    let unconfirmed = bridge(dir.path(), &["purge", "--older-than-days", "30"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    let no_days = bridge(dir.path(), &["purge", "--dry-run"]);
    assert!(!no_days.status.success());
    assert!(
        stderr(&no_days).contains("--older-than-days"),
        "{}",
        stderr(&no_days)
    );
    assert_eq!(sessions_left().len(), 2);

    let purged = bridge(dir.path(), &["purge", "--older-than-days", "30", "--yes"]);
    assert!(purged.status.success(), "{}", stderr(&purged));
    assert!(
        stdout(&purged).contains("Deleted 1 session(s) inactive for more than 30 days"),
        "{}",
        stdout(&purged)
    );
    assert_eq!(sessions_left(), std::slice::from_ref(&recent.id));

    let bad = bridge(dir.path(), &["forget", "--visitor-id", "nobody", "--yes"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("not a visitor id"),
        "{}",
        stderr(&bad)
    );
    let forgotten = bridge(
        dir.path(),
        &[
            "forget",
            "--visitor-id",
            &recent.visitor_id,
            "--yes",
            "--json",
        ],
    );
    assert!(forgotten.status.success(), "{}", stderr(&forgotten));
    let removed: Value = serde_json::from_slice(&forgotten.stdout).unwrap();
    assert_eq!(
        removed,
        serde_json::json!({"sessions": 1, "messages": 2, "attachments": 0})
    );
    assert!(sessions_left().is_empty());

    // Both are in the audit log as the CLI's.
    let audit = runtime.block_on(async {
        let store = open_store(dir.path()).await;
        let entries = store.list_audit(None, 10).await.unwrap();
        store.close().await;
        entries
    });
    let purge = audit.iter().find(|e| e.action == "sessions.purge").unwrap();
    assert_eq!(
        (purge.actor.as_str(), purge.target.as_str()),
        ("cli", "30 days")
    );
    assert_eq!(purge.detail.as_ref().unwrap()["attachments"], 1);
    let forget = audit.iter().find(|e| e.action == "visitor.forget").unwrap();
    assert_eq!(forget.actor, "cli");
    assert_eq!(forget.target, format!("visitor_id={}", recent.visitor_id));
}
