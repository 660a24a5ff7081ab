//! The bridge is killed (SIGKILL, no goodbye) and restarted under a running connector process:
//! the connector resumes by itself and no acknowledged message is lost or answered twice.
//!
//! Both sides are real processes. The bridge runs in a child process made by re-running this
//! test binary with only the ignored `bridge_process` entry selected, so no other binary has to be
//! built first.

#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airlock_shared::visitor::{MessageList, SessionCreated};
use airlock_shared::{Message, MessageStatus, Role};
use serde_json::json;
use tokio::time::Instant;

use common::http_client;

const ROLE_VAR: &str = "AIRLOCK_TEST_BRIDGE_DIR";

/// Not a test: the body of the bridge child process (selected with `--ignored --exact`).
#[test]
#[ignore = "entry point of the bridge child process of bridge_killed_with_sigkill_…"]
fn bridge_process() {
    let Ok(dir) = std::env::var(ROLE_VAR) else {
        return;
    };
    let listen = std::env::var("AIRLOCK_TEST_BRIDGE_LISTEN").expect("listen address");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut config = airlock_bridge::Config::defaults();
        config.data_dir = dir.into();
        config.listen = listen.parse().unwrap();
        config.admin_key = Some("alk_a_test".into());
        let bridge = airlock_bridge::Bridge::start(&config).await.expect("start");
        println!("LISTENING {}", bridge.local_addr);
        bridge.wait().await.unwrap();
    });
}

/// A bridge child process on `data_dir`, listening on `listen` (port 0 for any).
fn start_bridge(data_dir: &Path, listen: &str) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "bridge_process", "--nocapture"])
        .env(ROLE_VAR, data_dir)
        .env("AIRLOCK_TEST_BRIDGE_LISTEN", listen)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the bridge process");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the bridge process printed its address")
            .unwrap();
        if let Some(addr) = line.strip_prefix("LISTENING ") {
            break addr.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn kill_hard(child: &mut Child) {
    child.kill().expect("SIGKILL the bridge");
    child.wait().unwrap();
}

/// A visitor that, like the widget, retries a send with the same `client_id` until it is
/// accepted, so a send that hits the dead bridge is not lost but repeated.
struct Visitor {
    base: String,
    session: SessionCreated,
    http: reqwest::Client,
}

impl Visitor {
    async fn open(base: &str) -> Visitor {
        let http = http_client();
        let session = http
            .post(format!("{base}/api/v1/interfaces/demo/sessions"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Visitor {
            base: base.to_string(),
            session,
            http,
        }
    }

    async fn send_until_accepted(&self, client_id: &str, text: &str) -> Message {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sent = self
                .http
                .post(format!(
                    "{}/api/v1/sessions/{}/messages",
                    self.base, self.session.session_id
                ))
                .bearer_auth(&self.session.session_token)
                .json(&json!({"client_id": client_id, "text": text}))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Ok(response) = sent
                && response.status() == 202
            {
                let body: serde_json::Value = response.json().await.unwrap();
                return serde_json::from_value(body["message"].clone()).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "send of {client_id} never accepted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn transcript(&self) -> Option<Vec<Message>> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/sessions/{}/messages?after=0",
                self.base, self.session.session_id
            ))
            .bearer_auth(&self.session.session_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let mut list: MessageList = response.json().await.ok()?;
        list.messages.sort_by_key(|m| m.seq);
        Some(list.messages)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_killed_with_sigkill_and_restarted_loses_nothing_and_needs_no_connector_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bridge, addr) = start_bridge(dir.path(), "127.0.0.1:0");
    let base = format!("http://{addr}");

    // A connector key, written straight into the bridge's database.
    let store = airlock_bridge::store::Store::connect(
        &airlock_bridge::store::sqlite_url(dir.path()),
        &Default::default(),
    )
    .await
    .unwrap();
    let (_, key) = airlock_bridge::manage::create_connector_key(&store, "crash-test", &[], 0)
        .await
        .unwrap();
    store.close().await;

    let mut connector = Command::new(env!("CARGO_BIN_EXE_airlock-connector"))
        .env_clear()
        .env("AIRLOCK_BRIDGE_URL", &base)
        .env("AIRLOCK_CONNECTOR_KEY", &key)
        .env("AIRLOCK_ECHO_DELAY_MS", "20")
        .env("AIRLOCK_CLAIM_WAIT", "5")
        .env("AIRLOCK_LEASE_SECS", "3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the connector");

    let mut visitors = Vec::new();
    for _ in 0..4 {
        visitors.push(Visitor::open(&base).await);
    }
    let mut sent: HashMap<usize, Vec<String>> = HashMap::new();
    let mut round = 0;
    for kill in 0..3 {
        // A round of messages on every session, some still in the agent's hands…
        for _ in 0..3 {
            for (v, visitor) in visitors.iter().enumerate() {
                let text = format!("message {round} of visitor {v} three words");
                visitor
                    .send_until_accepted(&format!("c{round}"), &text)
                    .await;
                sent.entry(v).or_default().push(text);
            }
            round += 1;
        }
        // …when the bridge dies without warning and comes back on the same port and data.
        kill_hard(&mut bridge);
        (bridge, _) = start_bridge(dir.path(), &addr);
        assert!(
            connector.try_wait().unwrap().is_none(),
            "the connector kept running through bridge crash {kill}"
        );
    }

    // Every acknowledged message gets exactly one complete reply, in the order sent.
    let deadline = Instant::now() + Duration::from_secs(90);
    for (v, visitor) in visitors.iter().enumerate() {
        let expected = &sent[&v];
        loop {
            let transcript = visitor.transcript().await.unwrap_or_default();
            let users: Vec<_> = transcript.iter().filter(|m| m.role == Role::User).collect();
            let replies: Vec<_> = transcript
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .collect();
            let all_answered = replies.len() == expected.len()
                && replies.iter().all(|r| r.status == MessageStatus::Complete);
            if all_answered {
                let user_texts: Vec<_> = users.iter().map(|m| m.text.clone()).collect();
                assert_eq!(&user_texts, expected, "nothing lost, nothing doubled");
                let reply_texts: Vec<_> = replies.iter().map(|m| m.text.clone()).collect();
                assert_eq!(&reply_texts, expected, "one echo per message, in order");
                let answered: Vec<_> = replies.iter().filter_map(|r| r.reply_to.clone()).collect();
                let ids: Vec<_> = users.iter().map(|m| m.id.clone()).collect();
                assert_eq!(answered, ids, "each reply answers its own message");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "visitor {v}: {} of {} answered: {transcript:#?}",
                replies.len(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(connector.try_wait().unwrap().is_none());
    connector.kill().unwrap();
    connector.wait().unwrap();
    kill_hard(&mut bridge);
}
