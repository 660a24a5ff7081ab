//! Browser tests of the chat widget. This file sets the stage — a real bridge, real connectors
//! with the streaming echo agent, the interfaces the journeys use — and then runs the journeys
//! themselves, `web/tests/*.test.mjs`, with `node --test`: headless Chromium driven by Playwright
//! plays the visitor, on a third-party page, in an iframe, on the hosted page and on a phone.
//!
//! The third-party sites the journeys embed the widget in are the interfaces' allowed origins:
//! each journey file gets a port reserved here (`AIRLOCK_SITE_PORTS`), and every interface lists
//! `http://127.0.0.1:<port>` of each. A site on any other port is a stranger the bridge refuses.
//!
//! The `files` interface accepts attachments (two files, 1 MB, PNG and plain text), so a journey
//! can upload real files and ask the admin API what was stored.
//!
//! The `members` interface lets only signed-in visitors chat: journeys sign HS256 identity tokens
//! with [`IDENTITY_SECRET`] (passed to them as `AIRLOCK_IDENTITY_SECRET`), as a host site would.
//!
//! What only the server side can do happens here too: the `offline` interface has no connector
//! until a visitor's message waits in it; then one is started, and the open page must show the
//! reply without a reload.
//!
//! `AIRLOCK_BROWSER_TESTS=admin,xss` runs only the files whose name contains one of those words
//! (handy while working on one journey); unset, all run.
//!
//! Needs Node.js 20+ (`node`), Chromium (`/usr/bin/chromium`, or the path in `$CHROMIUM`) and
//! the test dependencies (`npm ci --prefix web/tests`). Without them the test prints one NOTICE
//! line and passes, unless `AIRLOCK_TEST_REQUIRE_BROWSER=1` (as CI sets), which makes it fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_bridge::manage;
use airlock_bridge::store::{SessionFilter, Store};
use airlock_bridge::testing::TestBridge;
use airlock_shared::Role;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The whole browser suite must finish within this; it normally takes well under a minute.
const SUITE_DEADLINE: Duration = Duration::from_secs(240);

/// Pause between the echo agent's streamed words: long enough that a reply visibly grows.
const ECHO_DELAY_MS: u64 = 40;

/// The interface that starts without a connector (see `web/tests/offline.test.mjs`).
const OFFLINE: &str = "offline";

/// The HS256 secret of the `members` interface (see `web/tests/identity.test.mjs`); test-only.
const IDENTITY_SECRET: &str = "browser-tests-identity-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_for_visitors_in_a_real_browser() {
    let root = workspace_root();
    let Some(chromium) = browser_or_skip(&root) else {
        return;
    };
    // Screenshots of this run only: a failure's screenshot from an earlier run would mislead.
    let artifacts = root.join("target").join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("create target/browser-artifacts");

    // Every page of the suite is a visitor at 127.0.0.1: per-address limits would take them
    // all for one visitor starting dozens of chats.
    let mut config = airlock_bridge::Config::defaults();
    config.sessions_per_ip_per_minute = 0;
    config.reads_per_ip_per_minute = 0;
    let bridge = TestBridge::start_with_config(config).await;
    let http = http();
    // Each journey file's third-party site gets a port of its own, known before the interfaces
    // are made, so the interfaces can list those sites as their allowed origins.
    let site_ports = reserve_site_ports(&root);
    let origins: Vec<String> = site_ports
        .iter()
        .map(|(_, port)| format!("http://127.0.0.1:{port}"))
        .collect();
    allow_origins(&http, &bridge, "demo", &origins).await;
    create_interface(
        &http,
        &bridge,
        json!({
            "slug": "shop",
            "allowed_origins": origins,
            "title": "Acme support",
            "description": "Questions about an order? We answer in seconds.",
            "welcome_message": "Hi! Ask us anything about your order.",
            "suggested_prompts": [
                "Where is my order number 42 right now?",
                "Can I return boots I wore once?"
            ],
            "persistence": "local",
            "publish": true
        }),
    )
    .await;
    create_interface(
        &http,
        &bridge,
        json!({
            "slug": OFFLINE,
            "allowed_origins": origins,
            "title": "After-hours desk",
            "welcome_message": "Leave a message; we answer when we are back.",
            "persistence": "local",
            "publish": true
        }),
    )
    .await;

    create_interface(
        &http,
        &bridge,
        json!({
            "slug": "files",
            "allowed_origins": origins,
            "title": "Send us a file",
            "welcome_message": "Attach a screenshot or a text file.",
            "persistence": "local",
            "publish": true,
            "uploads": {
                "enabled": true,
                "max_files": 2,
                "max_mb": 1,
                "allowed_types": ["image/png", "text/plain"]
            }
        }),
    )
    .await;

    create_interface(
        &http,
        &bridge,
        json!({
            "slug": "members",
            "title": "Members' help desk",
            "welcome_message": "Hello! Ask us about your account.",
            "persistence": "local",
            "publish": true,
            // The journey embeds it on its third-party site.
            "allowed_origins": ["*"],
            "require_identity": true,
            "identity": {"algorithm": "HS256", "secret": IDENTITY_SECRET}
        }),
    )
    .await;

    // Everything but `offline` is served from the start.
    let stop = CancellationToken::new();
    let (_, key) = manage::create_connector_key(
        &bridge.store,
        "browser tests",
        &[
            "demo".into(),
            "shop".into(),
            "files".into(),
            "members".into(),
        ],
        now_ms(),
    )
    .await
    .expect("create the connector key");
    let connector = tokio::spawn(airlock_connector::run(
        connector_config(&bridge.url, key),
        stop.clone(),
    ));
    for slug in ["demo", "shop", "files", "members"] {
        wait_until_agent_online(&http, &bridge.url, slug).await;
    }
    let late_connector = tokio::spawn(serve_offline_once_a_visitor_waits(
        bridge.store.clone(),
        bridge.url.clone(),
        stop.clone(),
    ));

    let passed = run_node_tests(&root, &bridge, &artifacts, &chromium, &site_ports).await;

    stop.cancel();
    for task in [connector, late_connector] {
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Ok(joined) => joined
                .expect("connector task panicked")
                .expect("connector stopped with an error"),
            Err(_) => panic!("a connector did not stop within 20 s of being asked to"),
        }
    }
    bridge.shutdown().await;
    assert!(
        passed,
        "browser tests failed (see node's output above; screenshots of failures are in {})",
        artifacts.display()
    );
}

/// Runs `node --test` on every `web/tests/*.test.mjs` (or those `AIRLOCK_BROWSER_TESTS` picks),
/// its output going straight to ours; returns whether it passed. The admin key lets journeys check what the bridge stored.
async fn run_node_tests(
    root: &Path,
    bridge: &TestBridge,
    artifacts: &Path,
    chromium: &Path,
    site_ports: &[(String, u16)],
) -> bool {
    let files = journey_files(root);
    let site_ports: Vec<String> = site_ports
        .iter()
        .map(|(file, port)| format!("{file}={port}"))
        .collect();

    let mut node = tokio::process::Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .args(&files)
        .current_dir(root)
        .env("AIRLOCK_BRIDGE_URL", &bridge.url)
        .env("AIRLOCK_ADMIN_KEY", &bridge.admin_key)
        .env("AIRLOCK_IDENTITY_SECRET", IDENTITY_SECRET)
        .env("AIRLOCK_ARTIFACTS", artifacts)
        .env("CHROMIUM", chromium)
        .env("AIRLOCK_SITE_PORTS", site_ports.join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    match tokio::time::timeout(SUITE_DEADLINE, node.wait()).await {
        Ok(status) => status.expect("wait for node").success(),
        Err(_) => {
            let _ = node.kill().await;
            panic!(
                "the browser tests did not finish within {} s",
                SUITE_DEADLINE.as_secs()
            );
        }
    }
}

/// The journey files to run: every `web/tests/*.test.mjs` that `AIRLOCK_BROWSER_TESTS` picks.
fn journey_files(root: &Path) -> Vec<PathBuf> {
    let tests_dir = root.join("web").join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
        .expect("read web/tests")
        .map(|entry| entry.expect("read web/tests").path())
        .filter(|path| path.to_string_lossy().ends_with(".test.mjs"))
        .filter(|path| picked(path))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.test.mjs in {}",
        tests_dir.display()
    );
    files
}

/// A free port on 127.0.0.1 for each journey file's third-party site (`startHostSite` in
/// web/tests/harness.mjs listens on it), by file name. The files run in parallel, so each needs
/// its own; the port is free when chosen and taken again by the journey a moment later.
fn reserve_site_ports(root: &Path) -> Vec<(String, u16)> {
    journey_files(root)
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            (name, listener.local_addr().expect("its address").port())
        })
        .collect()
}

/// Lets the third-party sites embed `slug` (the seeded `demo` allows only the bridge's own pages).
async fn allow_origins(
    http: &reqwest::Client,
    bridge: &TestBridge,
    slug: &str,
    origins: &[String],
) {
    let response = http
        .patch(format!("{}/api/v1/admin/interfaces/{slug}", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .json(&json!({ "allowed_origins": origins }))
        .send()
        .await
        .expect("PATCH /admin/interfaces");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "allowing origins on {slug}: {text}");
}

/// Whether `AIRLOCK_BROWSER_TESTS` (comma-separated words; unset or empty: everything) picks the
/// test file at `path`.
fn picked(path: &Path) -> bool {
    let wanted = std::env::var("AIRLOCK_BROWSER_TESTS").unwrap_or_default();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let words: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    words.is_empty() || words.iter().any(|word| name.contains(word))
}

/// Waits until a visitor's message is stored in the `offline` interface, then serves it with a
/// connector limited to it, until `stop`.
async fn serve_offline_once_a_visitor_waits(
    store: Store,
    bridge_url: String,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    tokio::select! {
        () = stop.cancelled() => return Ok(()),
        () = user_message_waits_in(&store, OFFLINE) => {}
    }
    let (_, key) =
        manage::create_connector_key(&store, "after-hours", &[OFFLINE.into()], now_ms()).await?;
    airlock_connector::run(connector_config(&bridge_url, key), stop).await
}

/// Returns once some session of the interface holds a visitor's message.
async fn user_message_waits_in(store: &Store, slug: &str) {
    let filter = SessionFilter {
        interface_slug: Some(slug.into()),
        limit: 10,
        ..Default::default()
    };
    loop {
        for session in store.list_sessions(&filter).await.expect("list sessions") {
            if session.message_count == 0 {
                continue;
            }
            let transcript = store.transcript(&session.id).await.expect("transcript");
            if transcript.iter().any(|m| m.role == Role::User) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn connector_config(bridge_url: &str, key: String) -> airlock_connector::Config {
    let mut config = airlock_connector::Config::new(bridge_url.to_string(), key);
    config.echo_delay_ms = ECHO_DELAY_MS;
    config.shutdown_grace_secs = 2;
    config
}

async fn create_interface(http: &reqwest::Client, bridge: &TestBridge, body: Value) {
    let response = http
        .post(format!("{}/api/v1/admin/interfaces", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .json(&body)
        .send()
        .await
        .expect("POST /admin/interfaces");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "creating interface {}: {text}", body["slug"]);
}

/// Waits until the visitor API says an agent serves the interface, so no journey starts with
/// an "offline" banner that is only the connector's first claim still on its way.
async fn wait_until_agent_online(http: &reqwest::Client, bridge_url: &str, slug: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let config: Value = http
            .get(format!("{bridge_url}/api/v1/interfaces/{slug}"))
            .send()
            .await
            .expect("GET interface")
            .json()
            .await
            .expect("interface JSON");
        if config["agent_online"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "interface {slug} still has no agent online after 15 s: {config}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Chromium to use, or `None` after saying (once, loudly) why the browser tests skip.
fn browser_or_skip(root: &Path) -> Option<PathBuf> {
    let chromium = std::env::var_os("CHROMIUM")
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let missing = if !on_path("node") {
        "`node` is not on PATH".to_string()
    } else if !chromium.is_file() {
        format!("no Chromium at {}", chromium.display())
    } else if !root.join("web/tests/node_modules/playwright-core").is_dir() {
        "web/tests/node_modules/playwright-core is missing".to_string()
    } else {
        return Some(chromium);
    };
    if std::env::var("AIRLOCK_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("AIRLOCK_TEST_REQUIRE_BROWSER=1 but {missing}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "NOTICE: browser tests SKIPPED — {missing}; to run them, have Node.js 20+ on PATH, \
         `apt-get install chromium` (or set CHROMIUM=/path/to/chromium) and run \
         `npm ci --prefix web/tests`"
    );
    None
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the demo crate lives in the workspace")
        .to_path_buf()
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
}
