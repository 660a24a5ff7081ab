//! Fault injection (issue 7, DESIGN §3): real bridge and connector processes, a fake streaming
//! OpenAI-compatible agent and simulated visitors, while the test kills processes with SIGKILL.
//!
//! After each scenario every message the bridge acknowledged with 202 must have exactly one
//! visible reply (a complete answer, or a failed reply with a dead letter): zero lost, zero
//! duplicated; and each visitor's messages must first reach the agent in the order sent.
//!
//! Scenarios built so far:
//! - A: the bridge (SQLite) is killed with `kill -9` ≥ 10 times under load and restarted on the
//!   same port and data directory, under two connector processes.
//! - B: connector processes are killed with `kill -9` mid-stream and new ones started; leases
//!   expire and the items are handed out again.
//! - C: A on PostgreSQL, on a fresh schema of `AIRLOCK_TEST_POSTGRES_URL` (skipped with a notice
//!   when it is not set).
//! - D: the agent fails: a 500 once, a hang past the connector's agent timeout once, a complete
//!   answer after which its connector is killed (so the agent answers the message twice), and a
//!   503 every time (dead-lettered after `AIRLOCK_MAX_ATTEMPTS`), chosen by a rule on the text.
//! - E: two bridge replicas on one PostgreSQL schema, visitors and connectors spread across both;
//!   replica A is killed with `kill -9` ≥ 3 times and restarted while B keeps serving (skipped
//!   like C without `AIRLOCK_TEST_POSTGRES_URL`).
//!
//! The bridge runs in a child process made by re-running this test binary with only the ignored
//! `faults_bridge_process` entry selected (as `bridge_crash.rs` does), so the test works the same
//! under `cargo test -p airlock-connector` and `cargo test --workspace`; the connector is the real
//! `airlock-connector` binary.
//!
//! Run: `cargo test -p airlock-connector --test faults -- --nocapture` (prints the table; see
//! docs/reliability.md for what is not covered yet).

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_shared::admin::{DeadLetter, List, Transcript};
use airlock_shared::visitor::{MessageList, SessionCreated};
use airlock_shared::{Message, MessageStatus, Role};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use common::http_client;

const DIR_VAR: &str = "AIRLOCK_TEST_FAULTS_DIR";
const LISTEN_VAR: &str = "AIRLOCK_TEST_FAULTS_LISTEN";
const DATABASE_VAR: &str = "AIRLOCK_TEST_FAULTS_DATABASE_URL";
const ADMIN_KEY: &str = "alk_a_faults";
const VISITORS: usize = 8;
const MESSAGES: usize = 8;

/// Not a test: the body of the bridge child process (selected with `--ignored --exact`).
#[test]
#[ignore = "entry point of the bridge child process of the fault-injection scenarios"]
fn faults_bridge_process() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let listen = std::env::var(LISTEN_VAR).expect("listen address");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut config = airlock_bridge::Config::defaults();
        config.data_dir = dir.into();
        config.listen = listen.parse().unwrap();
        config.admin_key = Some(ADMIN_KEY.into());
        config.database_url = std::env::var(DATABASE_VAR).ok();
        // Every visitor comes from 127.0.0.1: the per-address limits are not under test here.
        config.sessions_per_ip_per_minute = 0;
        config.reads_per_ip_per_minute = 0;
        config.admin_calls_per_minute = 0;
        config.connector_calls_per_minute = 0;
        if let Ok(attempts) = std::env::var("AIRLOCK_MAX_ATTEMPTS") {
            config.max_attempts = attempts.parse().expect("AIRLOCK_MAX_ATTEMPTS is a number");
        }
        let bridge = airlock_bridge::Bridge::start(&config).await.expect("start");
        println!("LISTENING {}", bridge.local_addr);
        bridge.wait().await.unwrap();
    });
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none behind.
struct Proc(Child);

impl Proc {
    fn kill_hard(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A bridge child process on `db`, listening on `listen`; retried while the port is not yet
/// free again after a kill.
fn start_bridge(db: &Db, listen: SocketAddr) -> Proc {
    start_bridge_with(db, listen, None)
}

/// `start_bridge`, with `AIRLOCK_MAX_ATTEMPTS` set for the bridge when given.
fn start_bridge_with(db: &Db, listen: SocketAddr, max_attempts: Option<u32>) -> Proc {
    for _ in 0..50 {
        let mut command = Command::new(std::env::current_exe().unwrap());
        if let Some(url) = &db.postgres {
            command.env(DATABASE_VAR, url);
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
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Proc(child);
        }
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the bridge did not start on {listen}");
}

/// A free loopback port: bound, then released for the bridge to take.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A real `airlock-connector` process using the `openai` agent at `agent`.
fn start_connector(bridge: &str, key: &str, agent: &FakeAgent, lease_secs: u64) -> Proc {
    start_connector_with(bridge, key, agent, lease_secs, &[])
}

/// `start_connector`, with more environment variables for the connector.
fn start_connector_with(
    bridge: &str,
    key: &str,
    agent: &FakeAgent,
    lease_secs: u64,
    extra: &[(&str, &str)],
) -> Proc {
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
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the connector");
    Proc(child)
}

// ---------------------------------------------------------------------------------------------
// The fake streaming agent.

#[derive(Clone)]
struct AgentState {
    /// The last user message of every request, in the order received.
    seen: Arc<Mutex<Vec<String>>>,
    chunk_delay: Duration,
    /// Scenario D: misbehave by `fault_of` the message text.
    faults: bool,
    /// Scenario D: told the `Authorization` header of the connector to kill once an "answer
    /// twice" message has been streamed completely (all but the final `[DONE]`).
    kill: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// What the fake agent does with a message in scenario D, by a fixed rule on its text.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// HTTP 500 the first time, an answer the second time.
    ErrorOnce,
    /// Never answers the first time (past the connector's agent timeout), then answers.
    HangOnce,
    /// The whole answer the first time but no `[DONE]`; the test kills that connector, the lease
    /// runs out and the item is delivered again and answered again.
    AnswerTwice,
    /// HTTP 503 every time: dead-lettered after `AIRLOCK_MAX_ATTEMPTS` deliveries.
    AlwaysFail,
}

/// One of each fault per visitor: `(visitor + message) % 8` picks it.
fn fault_of(text: &str) -> Option<Fault> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let v: usize = words.get(1)?.parse().ok()?;
    let m: usize = words.get(3)?.parse().ok()?;
    match (v + m) % 8 {
        0 => Some(Fault::ErrorOnce),
        1 => Some(Fault::HangOnce),
        2 => Some(Fault::AnswerTwice),
        3 => Some(Fault::AlwaysFail),
        _ => None,
    }
}

/// An OpenAI-compatible server that answers "re: <text>" in a few streamed chunks.
struct FakeAgent {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    async fn start(chunk_delay: Duration) -> FakeAgent {
        FakeAgent::start_with(chunk_delay, false, None).await
    }

    async fn start_with(
        chunk_delay: Duration,
        faults: bool,
        kill: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> FakeAgent {
        let state = AgentState {
            seen: Arc::default(),
            chunk_delay,
            faults,
            kill,
        };
        let seen = state.seen.clone();
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeAgent { addr, seen, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn chat_completions(
    State(state): State<AgentState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).expect("the request body is JSON");
    let text = body["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let calls = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(text.clone());
        seen.iter().filter(|t| **t == text).count()
    };
    let fault = if state.faults { fault_of(&text) } else { None };
    let failure = |status: u16| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"error": {"message": "injected fault"}}).to_string(),
            ))
            .unwrap()
    };
    match fault {
        Some(Fault::ErrorOnce) if calls == 1 => return failure(500),
        Some(Fault::AlwaysFail) => return failure(503),
        // Dropped when the connector gives up and closes the connection.
        Some(Fault::HangOnce) if calls == 1 => std::future::pending::<()>().await,
        _ => {}
    }
    let reply = reply_to(&text);
    let mut events: Vec<String> = reply
        .split_inclusive(' ')
        .map(|piece| {
            let chunk = json!({
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]
            });
            format!("data: {chunk}\n\n")
        })
        .collect();
    events.push(format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    let delay = state.chunk_delay;
    let chunks = futures_util::stream::iter(events).then(move |event| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(event)
    });
    let body = if fault == Some(Fault::AnswerTwice) && calls == 1 {
        // The whole answer and its finish, then no `[DONE]`: the connector waits for it until
        // the test kills the connector.
        let kill = state.kill.clone().expect("a kill channel in scenario D");
        let caller = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let tail = futures_util::stream::once(async move {
            let _ = kill.send(caller);
            std::future::pending::<Result<String, std::io::Error>>().await
        });
        Body::from_stream(chunks.chain(tail))
    } else {
        let done = futures_util::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>("data: [DONE]\n\n".to_owned())
        });
        Body::from_stream(chunks.chain(done))
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(body)
        .unwrap()
}

fn reply_to(text: &str) -> String {
    format!("re: {text}")
}

fn message_text(visitor: usize, message: usize) -> String {
    format!("visitor {visitor} message {message} of the fault test")
}

// ---------------------------------------------------------------------------------------------
// Simulated visitors.

/// What one visitor did: its session and, per message sent, whether the bridge acknowledged it.
struct VisitorLog {
    session_id: String,
    token: String,
    /// (message index, id of the stored message) for each 202.
    acknowledged: Vec<(usize, String)>,
    sent: usize,
    /// Sends repeated with the same `client_id` after a network error or a 5xx.
    retries: usize,
}

/// Opens a session (retrying while the bridge is down) and sends `MESSAGES` messages one after
/// the other, each with its own `client_id`, retrying the same `client_id` on network errors and
/// 5xx answers exactly as the widget does.
async fn visitor(base: String, v: usize) -> VisitorLog {
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(40);
    let session: SessionCreated = loop {
        let opened = http
            .post(format!("{base}/api/v1/interfaces/demo/sessions"))
            .json(&json!({}))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        if let Ok(response) = opened
            && response.status() == 201
            && let Ok(session) = response.json().await
        {
            break session;
        }
        assert!(Instant::now() < deadline, "visitor {v} never got a session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut log = VisitorLog {
        session_id: session.session_id.clone(),
        token: session.session_token.clone(),
        acknowledged: Vec::new(),
        sent: 0,
        retries: 0,
    };
    for m in 0..MESSAGES {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..900))).await;
        log.sent += 1;
        let client_id = format!("v{v}-m{m}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = http
                .post(format!(
                    "{base}/api/v1/sessions/{}/messages",
                    session.session_id
                ))
                .bearer_auth(&session.session_token)
                .json(&json!({"client_id": client_id, "text": message_text(v, m)}))
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 202 => {
                    if let Ok(body) = response.json::<Value>().await {
                        let id = body["message"]["id"].as_str().unwrap().to_owned();
                        log.acknowledged.push((m, id));
                        break;
                    }
                    // The bridge died while answering: the widget sends again.
                }
                Ok(response) if !response.status().is_server_error() => {
                    eprintln!(
                        "visitor {v}: message {m} refused with {}",
                        response.status()
                    );
                    break;
                }
                _ => {}
            }
            if Instant::now() > deadline {
                eprintln!("visitor {v}: message {m} never acknowledged");
                break;
            }
            log.retries += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    log
}

/// Waits (bounded) until the visitor sees a settled reply — complete or failed — to each of its
/// acknowledged messages, through the visitor's own message list.
async fn wait_settled(base: &str, logs: &[VisitorLog], limit: Duration) {
    let http = http_client();
    let deadline = Instant::now() + limit;
    for log in logs {
        loop {
            let settled = async {
                let response = http
                    .get(format!(
                        "{base}/api/v1/sessions/{}/messages?after=0",
                        log.session_id
                    ))
                    .bearer_auth(&log.token)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .ok()?;
                let list: MessageList = response.json().await.ok()?;
                let done = log.acknowledged.iter().all(|(_, id)| {
                    list.messages.iter().any(|r| {
                        r.role == Role::Assistant
                            && r.reply_to.as_deref() == Some(id.as_str())
                            && matches!(r.status, MessageStatus::Complete | MessageStatus::Failed)
                    })
                });
                Some(done)
            }
            .await;
            if settled == Some(true) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accounting.

#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    acknowledged: usize,
    answered: usize,
    dead_lettered: usize,
    lost: usize,
    duplicated: usize,
    /// (visitor, message) of every dead-lettered message.
    dead: Vec<(usize, usize)>,
}

/// Counts from the admin transcripts and dead letters, and checks the order in which the agent
/// first saw each visitor's messages. Returns the tally and every problem found.
async fn account(base: &str, logs: &[VisitorLog], agent: &FakeAgent) -> (Tally, Vec<String>) {
    let http = http_client();
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    let dead: List<DeadLetter> = http
        .get(format!("{base}/api/v1/admin/dead-letters"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead_ids: Vec<String> = dead.items.iter().map(|d| d.message.id.clone()).collect();
    let requests = agent.requests();
    for (v, log) in logs.iter().enumerate() {
        tally.sent += log.sent;
        tally.acknowledged += log.acknowledged.len();
        let transcript: Transcript = http
            .get(format!("{base}/api/v1/admin/sessions/{}", log.session_id))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let users: Vec<&Message> = transcript
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .collect();
        if users.len() != log.acknowledged.len() {
            problems.push(format!(
                "visitor {v}: {} user messages stored, {} acknowledged",
                users.len(),
                log.acknowledged.len()
            ));
        }
        for (m, id) in &log.acknowledged {
            let replies: Vec<&Message> = transcript
                .messages
                .iter()
                .filter(|r| r.role == Role::Assistant && r.reply_to.as_deref() == Some(id))
                .collect();
            match replies.as_slice() {
                [] => {
                    tally.lost += 1;
                    problems.push(format!("visitor {v} message {m}: no reply (lost)"));
                }
                [reply] if reply.status == MessageStatus::Complete => {
                    tally.answered += 1;
                    if reply.text != reply_to(&message_text(v, *m)) {
                        problems.push(format!(
                            "visitor {v} message {m}: wrong reply {:?}",
                            reply.text
                        ));
                    }
                }
                [reply] if reply.status == MessageStatus::Failed => {
                    tally.dead_lettered += 1;
                    tally.dead.push((v, *m));
                    if !dead_ids.contains(id) {
                        problems.push(format!(
                            "visitor {v} message {m}: failed reply without a dead letter"
                        ));
                    }
                }
                [reply] => {
                    tally.lost += 1;
                    problems.push(format!(
                        "visitor {v} message {m}: reply never settled ({:?})",
                        reply.status
                    ));
                }
                _ => {
                    tally.duplicated += 1;
                    problems.push(format!(
                        "visitor {v} message {m}: {} replies",
                        replies.len()
                    ));
                }
            }
        }
        // The order in which the agent first saw this visitor's messages.
        let mut first_seen: Vec<usize> = Vec::new();
        for text in &requests {
            if let Some(m) = (0..MESSAGES).find(|m| *text == message_text(v, *m))
                && !first_seen.contains(&m)
            {
                first_seen.push(m);
            }
        }
        let acknowledged: Vec<usize> = log.acknowledged.iter().map(|(m, _)| *m).collect();
        if !first_seen.windows(2).all(|w| w[0] < w[1])
            || first_seen.iter().any(|m| !acknowledged.contains(m))
        {
            problems.push(format!(
                "visitor {v}: agent first saw messages in order {first_seen:?}, sent {acknowledged:?}"
            ));
        }
    }
    (tally, problems)
}

/// The table, printed in one piece so scenarios running in parallel do not mix their lines.
fn print_table(rows: &[(&str, &Tally)]) {
    let mut table = String::from(
        "\n| scenario | sent | acknowledged | answered | dead-lettered | lost | duplicated |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (name, t) in rows {
        table += &format!(
            "| {name} | {} | {} | {} | {} | {} | {} |\n",
            t.sent, t.acknowledged, t.answered, t.dead_lettered, t.lost, t.duplicated
        );
    }
    println!("{table}");
}

fn check(name: &str, tally: &Tally, problems: &[String]) {
    print_table(&[(name, tally)]);
    assert!(
        problems.is_empty(),
        "{name}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(tally.lost, 0, "{name}: lost");
    assert_eq!(tally.duplicated, 0, "{name}: duplicated");
    assert_eq!(
        tally.acknowledged, tally.sent,
        "{name}: every send was acknowledged in the end"
    );
}

/// The bridge's database: SQLite in a temporary data directory, or a fresh schema on the test
/// PostgreSQL (dropped afterwards).
struct Db {
    dir: tempfile::TempDir,
    /// The URL selecting the schema, and (base URL, schema) for the cleanup.
    postgres: Option<String>,
    schema: Option<(String, String)>,
}

impl Db {
    fn sqlite() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
            postgres: None,
            schema: None,
        }
    }

    /// A fresh schema on `AIRLOCK_TEST_POSTGRES_URL`, or `None` after a one-line notice.
    async fn postgres() -> Option<Db> {
        let base = match std::env::var("AIRLOCK_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("AIRLOCK_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "AIRLOCK_TEST_REQUIRE_POSTGRES=1 but AIRLOCK_TEST_POSTGRES_URL is not set"
                );
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: PostgreSQL fault scenario SKIPPED — set AIRLOCK_TEST_POSTGRES_URL=postgres://user@host/db to run it"
                );
                return None;
            }
        };
        let schema = format!("airlock_faults_{}", fastrand::u64(..));
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
            .await
            .expect("connect to AIRLOCK_TEST_POSTGRES_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create the test schema");
        let mut url = url::Url::parse(&base).expect("AIRLOCK_TEST_POSTGRES_URL is a URL");
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={schema}"));
        Some(Db {
            dir: tempfile::tempdir().unwrap(),
            postgres: Some(url.to_string()),
            schema: Some((base, schema)),
        })
    }

    fn url(&self) -> String {
        self.postgres
            .clone()
            .unwrap_or_else(|| airlock_bridge::store::sqlite_url(self.dir.path()))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some((base, schema)) = self.schema.take() else {
            return;
        };
        // Drop may run inside the test's runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A connector key written straight into the bridge's database.
async fn connector_key(db: &Db) -> String {
    let store = airlock_bridge::store::Store::connect(&db.url(), &Default::default())
        .await
        .unwrap();
    let (_, key) = airlock_bridge::manage::create_connector_key(&store, "faults", &[], 0)
        .await
        .unwrap();
    store.close().await;
    key
}

fn spawn_visitors(base: &str) -> Vec<tokio::task::JoinHandle<VisitorLog>> {
    spawn_visitors_on(&[base.to_owned()])
}

/// Visitor `v` talks to `bases[v % bases.len()]`.
fn spawn_visitors_on(bases: &[String]) -> Vec<tokio::task::JoinHandle<VisitorLog>> {
    (0..VISITORS)
        .map(|v| tokio::spawn(visitor(bases[v % bases.len()].clone(), v)))
        .collect()
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<VisitorLog>>) -> Vec<VisitorLog> {
    let mut logs = Vec::new();
    for handle in handles {
        logs.push(handle.await.expect("visitor task"));
    }
    logs
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// The bridge is killed with SIGKILL ≥ 10 times while visitors send and two connectors answer,
/// and restarted each time on the same port and database.
async fn bridge_kills(name: &str, db: Db) {
    let started = Instant::now();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut bridge = start_bridge(&db, addr);
    let key = connector_key(&db).await;
    let agent = FakeAgent::start(Duration::from_millis(40)).await;
    let mut connectors = [
        start_connector(&base, &key, &agent, 3),
        start_connector(&base, &key, &agent, 3),
    ];

    let visitors = spawn_visitors(&base);
    let mut kills = 0;
    while kills < 10 || visitors.iter().any(|v| !v.is_finished()) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..700))).await;
        bridge.kill_hard();
        kills += 1;
        bridge = start_bridge(&db, addr);
    }
    let logs = join_all(visitors).await;
    wait_settled(&base, &logs, Duration::from_secs(60)).await;
    let (tally, problems) = account(&base, &logs, &agent).await;
    for (i, connector) in connectors.iter_mut().enumerate() {
        assert!(
            connector.running(),
            "connector {i} survived every bridge crash"
        );
    }
    println!(
        "{name}: {kills} bridge kills, {} sends retried, {} agent calls, {:.1} s",
        logs.iter().map(|l| l.retries).sum::<usize>(),
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check(name, &tally, &problems);
    drop(bridge);
}

/// A: the bridge on SQLite, killed repeatedly under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_repeatedly_on_sqlite_loses_and_doubles_nothing() {
    bridge_kills("A: kill -9 bridge (SQLite)", Db::sqlite()).await;
}

/// C: the same on PostgreSQL (skipped with a notice when no test database is configured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_bridge_killed_repeatedly_on_postgres_loses_and_doubles_nothing() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    bridge_kills("C: kill -9 bridge (PostgreSQL)", db).await;
}

/// B: connectors are killed with SIGKILL mid-stream and new ones started; the bridge hands the
/// items of a dead connector out again when their lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_connectors_killed_mid_stream_lose_and_double_nothing() {
    let started = Instant::now();
    let db = Db::sqlite();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _bridge = start_bridge(&db, addr);
    let key = connector_key(&db).await;
    // Slower chunks, so a kill often lands while a reply is streaming.
    let agent = FakeAgent::start(Duration::from_millis(80)).await;
    let lease_secs = 2;
    let mut connectors = vec![
        start_connector(&base, &key, &agent, lease_secs),
        start_connector(&base, &key, &agent, lease_secs),
    ];

    let visitors = spawn_visitors(&base);
    let mut kills = 0;
    while kills < 8 || visitors.iter().any(|v| !v.is_finished()) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(400..900))).await;
        let mut oldest = connectors.remove(0);
        oldest.kill_hard();
        kills += 1;
        connectors.push(start_connector(&base, &key, &agent, lease_secs));
    }
    let logs = join_all(visitors).await;
    wait_settled(&base, &logs, Duration::from_secs(60)).await;
    let (tally, problems) = account(&base, &logs, &agent).await;
    println!(
        "B: {kills} connector kills, {} agent calls (redeliveries included), {:.1} s",
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check("B: kill -9 connectors mid-stream", &tally, &problems);
}

/// D: the agent misbehaves by a fixed rule on the message text (`fault_of`): a 500 once, a hang
/// past the connector's 2 s agent timeout once, a complete answer whose connector is then killed
/// before it stores the reply (so the agent answers the same message twice), and a 503 every time
/// (dead-lettered after `AIRLOCK_MAX_ATTEMPTS` = 3). Connectors take one message at a time, so a
/// kill redelivers only the message it was meant for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_agent_faults_lose_and_double_nothing() {
    const MAX_ATTEMPTS: u32 = 3;
    let started = Instant::now();
    let db = Db::sqlite();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _bridge = start_bridge_with(&db, addr, Some(MAX_ATTEMPTS));
    let key = connector_key(&db).await;
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let agent =
        Arc::new(FakeAgent::start_with(Duration::from_millis(15), true, Some(kill_tx)).await);
    let lease_secs = 2;
    // Each connector has its own agent API key, so the agent can tell which one called.
    let start = {
        let (base, key, agent) = (base.clone(), key.clone(), agent.clone());
        move |n: usize| {
            let api_key = format!("connector-{n}");
            let process = start_connector_with(
                &base,
                &key,
                &agent,
                lease_secs,
                &[
                    ("AIRLOCK_OPENAI_API_KEY", &api_key),
                    ("AIRLOCK_AGENT_TIMEOUT_SECS", "2"),
                    ("AIRLOCK_CONCURRENCY", "1"),
                ],
            );
            (format!("Bearer {api_key}"), process)
        }
    };
    let kills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killer = {
        let kills = kills.clone();
        tokio::spawn(async move {
            let mut connectors: Vec<(String, Proc)> = (0..3).map(&start).collect();
            let mut next = connectors.len();
            while let Some(caller) = kill_rx.recv().await {
                // Let the connector read the whole answer and stream it to the bridge.
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Some(i) = connectors.iter().position(|(c, _)| *c == caller) {
                    connectors.remove(i).1.kill_hard();
                    kills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    connectors.push(start(next));
                    next += 1;
                }
            }
        })
    };

    let visitors = spawn_visitors(&base);
    let logs = join_all(visitors).await;
    wait_settled(&base, &logs, Duration::from_secs(60)).await;
    let (tally, mut problems) = account(&base, &logs, &agent).await;
    killer.abort();
    let _ = killer.await;

    let requests = agent.requests();
    let mut expected_dead = Vec::new();
    for (v, log) in logs.iter().enumerate() {
        for (m, _) in &log.acknowledged {
            let text = message_text(v, *m);
            let calls = requests.iter().filter(|t| **t == text).count();
            let fault = fault_of(&text);
            let least = match fault {
                Some(Fault::AlwaysFail) => MAX_ATTEMPTS as usize,
                Some(_) => 2,
                None => 1,
            };
            if calls < least {
                problems.push(format!(
                    "visitor {v} message {m} ({fault:?}): {calls} agent calls, expected at least {least}"
                ));
            }
            if fault == Some(Fault::AlwaysFail) {
                expected_dead.push((v, *m));
            }
        }
    }
    // Each dead letter shows the visitor a failed reply, through the visitor's own API.
    let http = http_client();
    for (v, log) in logs.iter().enumerate() {
        let list: MessageList = http
            .get(format!(
                "{base}/api/v1/sessions/{}/messages?after=0",
                log.session_id
            ))
            .bearer_auth(&log.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (m, id) in &log.acknowledged {
            if !expected_dead.contains(&(v, *m)) {
                continue;
            }
            let visible = list.messages.iter().any(|r| {
                r.role == Role::Assistant
                    && r.reply_to.as_deref() == Some(id.as_str())
                    && r.status == MessageStatus::Failed
            });
            if !visible {
                problems.push(format!("visitor {v} message {m}: no failed reply visible"));
            }
        }
    }
    if tally.dead != expected_dead {
        problems.push(format!(
            "dead-lettered {:?}, expected the always-failing {expected_dead:?}",
            tally.dead
        ));
    }
    let kills = kills.load(std::sync::atomic::Ordering::SeqCst);
    let twice = expected_dead.len(); // one "answer twice" message per visitor, like "always fail"
    if kills != twice {
        problems.push(format!(
            "{kills} connectors killed after a complete answer, expected {twice}"
        ));
    }
    println!(
        "D: {} agent calls for {} messages, {kills} connectors killed after a complete answer, {:.1} s",
        requests.len(),
        tally.acknowledged,
        started.elapsed().as_secs_f64()
    );
    check(
        "D: agent faults (500, hang, twice, always)",
        &tally,
        &problems,
    );
}

/// E: two bridge replicas on one PostgreSQL schema, half the visitors and one connector on each;
/// replica A is killed with SIGKILL ≥ 3 times and restarted while B keeps serving. Visitors of A
/// resend through A (as the widget does: it knows one bridge URL), the connector of A keeps
/// polling A; B's connector answers A's visitors while A is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_two_replicas_on_postgres_one_killed_lose_and_double_nothing() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let started = Instant::now();
    let addr_a = free_addr();
    let addr_b = loop {
        let addr = free_addr();
        if addr != addr_a {
            break addr;
        }
    };
    let (base_a, base_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
    let mut replica_a = start_bridge(&db, addr_a);
    let mut replica_b = start_bridge(&db, addr_b);
    let key = connector_key(&db).await;
    let agent = FakeAgent::start(Duration::from_millis(40)).await;
    let mut connectors = [
        start_connector(&base_a, &key, &agent, 3),
        start_connector(&base_b, &key, &agent, 3),
    ];

    let visitors = spawn_visitors_on(&[base_a.clone(), base_b.clone()]);
    let mut kills = 0;
    while kills < 3 || visitors.iter().any(|v| !v.is_finished()) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(700..1500))).await;
        replica_a.kill_hard();
        kills += 1;
        // A stays down a moment while B serves alone.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..500))).await;
        replica_a = start_bridge(&db, addr_a);
    }
    let logs = join_all(visitors).await;
    wait_settled(&base_b, &logs, Duration::from_secs(60)).await;
    let (tally, problems) = account(&base_b, &logs, &agent).await;
    for (i, connector) in connectors.iter_mut().enumerate() {
        assert!(
            connector.running(),
            "connector {i} survived every kill of A"
        );
    }
    assert!(replica_b.running(), "replica B kept serving");
    println!(
        "E: {kills} kills of replica A, {} sends retried, {} agent calls, {:.1} s",
        logs.iter().map(|l| l.retries).sum::<usize>(),
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check("E: two replicas (PostgreSQL), kill -9 A", &tally, &problems);
}
