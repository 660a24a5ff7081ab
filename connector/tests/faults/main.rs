//! Fault injection (issue 7, DESIGN §3): real bridge and connector processes, a fake streaming
//! OpenAI-compatible agent and simulated visitors, while the test kills processes with SIGKILL
//! and cuts the network.
//!
//! After each scenario every message the bridge acknowledged with 202 must have exactly one
//! visible reply (a complete answer, or a failed reply with a dead letter): zero lost, zero
//! duplicated; and each visitor's messages must first reach the agent in the order sent.
//!
//! - A: the bridge is killed with `kill -9` ≥ 10 times under load and restarted on the same
//!   port and database, under two connector processes.
//! - B: connector processes are killed with `kill -9` mid-stream and new ones started; leases
//!   expire and the items are handed out again.
//! - C: the network between connectors and the bridge is cut through TCP proxies the test
//!   controls ([`proxy`]): connections reset, black holes longer than a lease, healing.
//! - D: the agent fails: a 500 once, a hang past the connector's agent timeout once, a complete
//!   answer after which its connector is killed (so the agent answers the message twice), and a
//!   503 every time (dead-lettered after `AIRLOCK_MAX_ATTEMPTS`), chosen by a rule on the text.
//! - E: two bridge replicas on one PostgreSQL schema, visitors and connectors spread across both;
//!   replica A is killed with `kill -9` ≥ 3 times and restarted while B keeps serving; visitors
//!   fail over.
//! - `soak` (ignored; `just soak`): B's and C's faults for minutes to hours, with memory over time.
//!
//! A to D run on SQLite and on PostgreSQL (a fresh schema of `AIRLOCK_TEST_POSTGRES_URL`; those
//! are skipped with a one-line notice when it is not set, and required in `.ci/run`).
//!
//! The bridge runs in a child process made by re-running this test binary with only the ignored
//! `faults_bridge_process` entry selected (as `bridge_crash.rs` does), so the test works the same
//! under `cargo test -p airlock-connector` and `cargo test --workspace`; the connector is the real
//! `airlock-connector` binary.
//!
//! Run: `cargo test -p airlock-connector --test faults -- --nocapture` (prints the table; see
//! docs/reliability.md).

#![cfg(unix)]

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod processes;
mod proxy;
mod tally;
mod visitors;

use std::sync::Arc;
use std::time::Duration;

use airlock_shared::{MessageStatus, Role};
use tokio::time::Instant;

use agent::{FakeAgent, Fault, fault_of, message_text};
use common::http_client;
use processes::{
    ADMIN_KEY, DATABASE_VAR, DIR_VAR, Db, LISTEN_VAR, Proc, connector_key, free_addr, start_bridge,
    start_bridge_with, start_connector, start_connector_with,
};
use proxy::Proxy;
use tally::{account, check};
use visitors::{
    join_all, messages_seen, spawn_visitors, spawn_visitors_on, visitors_during, wait_settled,
};

/// Not a test: the body of the bridge child process (selected with `--ignored --exact`).
#[test]
#[ignore = "entry point of the bridge child process of the fault-injection scenarios"]
fn faults_bridge_process() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let listen = std::env::var(LISTEN_VAR).expect("listen address");
    // The bridge's log (RUST_LOG, set by `start_bridge`) on stdout, which the test reads.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stdout)
        .init();
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
// ---------------------------------------------------------------------------------------------
// Scenarios.

/// The bridge is killed with SIGKILL ≥ 10 times while visitors send and two connectors answer,
/// and restarted each time on the same port and database.
async fn bridge_kills(db: Db) {
    let name = format!("A: kill -9 bridge ({})", db.backend());
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
    let (logs, tally, problems) = settle_and_account(&base, visitors, &agent).await;
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
    check(&name, &tally, &problems);
    drop(bridge);
}

/// B: connectors are killed with SIGKILL mid-stream and new ones started; the bridge hands the
/// items of a dead connector out again when their lease expires.
async fn connector_kills(db: Db) {
    let name = format!("B: kill -9 connectors mid-stream ({})", db.backend());
    let started = Instant::now();
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
    let (_, tally, problems) = settle_and_account(&base, visitors, &agent).await;
    println!(
        "{name}: {kills} connector kills, {} agent calls (redeliveries included), {:.1} s",
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check(&name, &tally, &problems);
}

/// D: the agent misbehaves by a fixed rule on the message text (`fault_of`): a 500 once, a hang
/// past the connector's 2 s agent timeout once, a complete answer whose connector is then killed
/// before it stores the reply (so the agent answers the same message twice), and a 503 every time
/// (dead-lettered after `AIRLOCK_MAX_ATTEMPTS` = 3). Connectors take one message at a time, so a
/// kill redelivers only the message it was meant for.
async fn agent_faults(db: Db) {
    const MAX_ATTEMPTS: u32 = 3;
    let name = format!(
        "D: agent faults: 500, hang, twice, always ({})",
        db.backend()
    );
    let started = Instant::now();
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
    let (logs, tally, mut problems) = settle_and_account(&base, visitors, &agent).await;
    killer.abort();
    let _ = killer.await;

    let requests = agent.requests();
    let mut expected_dead = Vec::new();
    for log in &logs {
        let v = log.visitor;
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
    for log in &logs {
        let v = log.visitor;
        let list = messages_seen(&http, &base, log)
            .await
            .expect("the visitor's message list");
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
        "{name}: {} agent calls for {} messages, {kills} connectors killed after a complete answer, {:.1} s",
        requests.len(),
        tally.acknowledged,
        started.elapsed().as_secs_f64()
    );
    check(&name, &tally, &problems);
}

/// E: two bridge replicas on one PostgreSQL schema, half the visitors and one connector on each;
/// replica A is killed with SIGKILL ≥ 3 times and restarted while B keeps serving. A visitor whose
/// call fails moves to the other replica (as behind a load balancer) and resends the same
/// `client_id` there; the connector of A keeps polling A, and B's connector answers A's visitors
/// while A is down.
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

    let visitors = spawn_visitors_on(&[base_a.clone(), base_b.clone()], 0);
    let mut kills = 0;
    while kills < 3 || visitors.iter().any(|v| !v.is_finished()) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(700..1500))).await;
        replica_a.kill_hard();
        kills += 1;
        // A stays down a moment while B serves alone.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..500))).await;
        replica_a = start_bridge(&db, addr_a);
    }
    let (logs, tally, problems) = settle_and_account(&base_b, visitors, &agent).await;
    for (i, connector) in connectors.iter_mut().enumerate() {
        assert!(
            connector.running(),
            "connector {i} survived every kill of A"
        );
    }
    assert!(replica_b.running(), "replica B kept serving");
    println!(
        "E: {kills} kills of replica A, {} calls retried on the other replica, {} agent calls, {:.1} s",
        logs.iter().map(|l| l.retries).sum::<usize>(),
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check("E: two replicas (PostgreSQL), kill -9 A", &tally, &problems);
}

/// Two tests for each scenario: on SQLite, and on a fresh PostgreSQL schema (skipped with a
/// notice when no test database is configured).
macro_rules! on_both_backends {
    ($($scenario:ident: $on_sqlite:ident, $on_postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_sqlite() {
            $scenario(Db::sqlite()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_postgres() {
            if let Some(db) = Db::postgres().await {
                $scenario(db).await;
            }
        }
    )*};
}

on_both_backends! {
    bridge_kills: a_bridge_killed_on_sqlite_loses_and_doubles_nothing,
        a_bridge_killed_on_postgres_loses_and_doubles_nothing;
    connector_kills: b_connectors_killed_on_sqlite_lose_and_double_nothing,
        b_connectors_killed_on_postgres_lose_and_double_nothing;
    network_cuts: c_network_cuts_on_sqlite_lose_and_double_nothing,
        c_network_cuts_on_postgres_lose_and_double_nothing;
    agent_faults: d_agent_faults_on_sqlite_lose_and_double_nothing,
        d_agent_faults_on_postgres_lose_and_double_nothing;
}

/// Waits for the visitors to finish sending, then (at most 60 s) for a settled reply to each
/// acknowledged message, and counts through `base`.
async fn settle_and_account(
    base: &str,
    visitors: Vec<tokio::task::JoinHandle<visitors::VisitorLog>>,
    agent: &FakeAgent,
) -> (Vec<visitors::VisitorLog>, tally::Tally, Vec<String>) {
    let logs = join_all(visitors).await;
    wait_settled(base, &logs, Duration::from_secs(60)).await;
    let (tally, problems) = account(base, &logs, agent).await;
    (logs, tally, problems)
}

/// A random pause of `range` milliseconds.
fn pause(range: std::ops::Range<u64>) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(range)))
}

/// How long a black hole lasts before it heals.
const BLACK_HOLE_MS: std::ops::Range<u64> = 2500..3200;

/// C: the network between the connectors and the bridge is cut through proxies the test
/// controls, one per connector, while waves of visitors keep sending. In turn: every connection
/// of one proxy is reset; one proxy is black-holed for longer than a lease while the other
/// connector keeps serving — the cut-off connector's leases run out under it, the other connector
/// takes the items over, and the cut-off one's late calls are fenced with 409 once the network
/// heals; both proxies are black-holed, then healed.
async fn network_cuts(db: Db) {
    const ROUNDS: usize = 9;
    let name = format!(
        "C: network cuts: reset, black hole, heal ({})",
        db.backend()
    );
    let started = Instant::now();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _bridge = start_bridge(&db, addr);
    let key = connector_key(&db).await;
    // Replies stream for about half a second, so a cut often lands while one is streaming; each
    // connector takes 8 at a time, enough for the visitors' pace even after a black hole.
    let agent = FakeAgent::start(Duration::from_millis(40)).await;
    let lease_secs = 2;
    let proxies = [Proxy::start(addr).await, Proxy::start(addr).await];
    let mut connectors: Vec<Proc> = proxies
        .iter()
        .map(|proxy| {
            let url = proxy.url();
            start_connector_with(
                &url,
                &key,
                &agent,
                lease_secs,
                &[("AIRLOCK_CONCURRENCY", "8")],
            )
        })
        .collect();

    let mut cuts = [0usize; 3];
    let faults = async {
        for round in 0..ROUNDS {
            pause(300..800).await;
            let one = &proxies[round % 2];
            match round % 3 {
                0 => one.drop_connections(),
                1 => {
                    one.black_hole();
                    pause(BLACK_HOLE_MS).await;
                    one.heal();
                }
                _ => {
                    proxies.iter().for_each(Proxy::black_hole);
                    pause(BLACK_HOLE_MS).await;
                    proxies.iter().for_each(Proxy::heal);
                }
            }
            cuts[round % 3] += 1;
        }
    };
    let logs = visitors_during(std::slice::from_ref(&base), faults).await;
    wait_settled(&base, &logs, Duration::from_secs(60)).await;
    let (tally, mut problems) = account(&base, &logs, &agent).await;
    for (i, connector) in connectors.iter_mut().enumerate() {
        assert!(connector.running(), "connector {i} survived every cut");
    }
    let fenced: usize = connectors
        .iter()
        .map(|c| c.log_lines_with("lease lost (superseded"))
        .sum();
    if fenced == 0 {
        problems.push("no lease ran out under a connector cut off by a black hole".into());
    }
    println!(
        "{name}: {} connection resets, {} black holes of one connector, {} of both ({}–{} ms, leases \
         {lease_secs} s); {fenced} stale workers fenced with 409; {} agent calls, {:.1} s",
        cuts[0],
        cuts[1],
        cuts[2],
        BLACK_HOLE_MS.start,
        BLACK_HOLE_MS.end,
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check(&name, &tally, &problems);
}

/// One memory sample of the soak.
struct Sample {
    /// Seconds since the start.
    at: f64,
    bridge_kib: Option<u64>,
    connector_kib: Option<u64>,
    /// The SQLite database with its write-ahead log (`None` on PostgreSQL).
    db_bytes: Option<u64>,
}

/// The soak mode of this harness (`just soak`): a bridge and two connectors, each behind its own
/// proxy, under waves of visitors for `AIRLOCK_SOAK_SECS` (default 300) while the faults of B and
/// C keep coming — connection resets, black holes longer than a lease, and the second connector
/// killed with SIGKILL and replaced. The bridge and the first connector live throughout, so their
/// memory over time shows a leak. `AIRLOCK_SOAK_BACKEND=postgres` runs it on a fresh schema of
/// `AIRLOCK_TEST_POSTGRES_URL`. Prints the same table as the scenarios, plus memory samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak mode, minutes to hours: `just soak` (AIRLOCK_SOAK_SECS, AIRLOCK_SOAK_BACKEND)"]
async fn soak() {
    let secs: u64 = std::env::var("AIRLOCK_SOAK_SECS")
        .map(|s| s.parse().expect("AIRLOCK_SOAK_SECS is a number of seconds"))
        .unwrap_or(300);
    let postgres = std::env::var("AIRLOCK_SOAK_BACKEND").as_deref() == Ok("postgres");
    let db = if postgres {
        Db::postgres()
            .await
            .expect("AIRLOCK_SOAK_BACKEND=postgres needs AIRLOCK_TEST_POSTGRES_URL")
    } else {
        Db::sqlite()
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut bridge = start_bridge(&db, addr);
    let key = connector_key(&db).await;
    let agent = FakeAgent::start(Duration::from_millis(20)).await;
    let lease_secs = 2;
    let proxies = [Proxy::start(addr).await, Proxy::start(addr).await];
    let first = start_connector(&proxies[0].url(), &key, &agent, lease_secs);
    let mut second = start_connector(&proxies[1].url(), &key, &agent, lease_secs);

    let every = Duration::from_secs((secs / 20).max(5));
    let mut samples: Vec<Sample> = Vec::new();
    let mut faults_done = [0usize; 3];
    let sample = |samples: &mut Vec<_>| {
        samples.push(Sample {
            at: started.elapsed().as_secs_f64(),
            bridge_kib: bridge.rss_kib(),
            connector_kib: first.rss_kib(),
            db_bytes: db.sqlite_bytes(),
        });
    };
    let faults = async {
        let mut round = 0;
        let mut next_sample = Instant::now();
        while Instant::now() < until {
            if Instant::now() >= next_sample {
                sample(&mut samples);
                next_sample += every;
            }
            pause(1000..3000).await;
            let one = &proxies[round % 2];
            match round % 3 {
                0 => one.drop_connections(),
                1 => {
                    one.black_hole();
                    pause(BLACK_HOLE_MS).await;
                    one.heal();
                }
                _ => {
                    second.kill_hard();
                    second = start_connector(&proxies[1].url(), &key, &agent, lease_secs);
                }
            }
            faults_done[round % 3] += 1;
            round += 1;
        }
    };
    let logs = visitors_during(std::slice::from_ref(&base), faults).await;
    wait_settled(&base, &logs, Duration::from_secs(120)).await;
    sample(&mut samples);
    let (tally, problems) = account(&base, &logs, &agent).await;
    assert!(bridge.running(), "the bridge ran throughout");

    let mib = |kib: Option<u64>| kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    let mut memory = String::from(
        "\n| elapsed (s) | bridge RSS (MiB) | connector RSS (MiB) | SQLite files (MiB) |\n\
         |---|---|---|---|\n",
    );
    for sample in &samples {
        memory += &format!(
            "| {:.0} | {} | {} | {} |\n",
            sample.at,
            mib(sample.bridge_kib),
            mib(sample.connector_kib),
            mib(sample.db_bytes.map(|b| b / 1024))
        );
    }
    println!("{memory}");
    println!(
        "soak: {secs} s on {}, {} visitors, {} connection resets, {} black holes, {} connector \
         kills, {} agent calls, {:.1} s in all",
        if postgres { "PostgreSQL" } else { "SQLite" },
        logs.len(),
        faults_done[0],
        faults_done[1],
        faults_done[2],
        agent.requests().len(),
        started.elapsed().as_secs_f64()
    );
    check(
        &format!(
            "soak, {secs} s ({})",
            if postgres { "PostgreSQL" } else { "SQLite" }
        ),
        &tally,
        &problems,
    );
}
