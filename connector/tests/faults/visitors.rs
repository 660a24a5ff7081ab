//! Simulated visitors: each opens a session and sends its messages one after the other,
//! resending the same `client_id` after a network error or a 5xx, as the widget does.

use std::time::Duration;

use airlock_shared::visitor::{MessageList, SessionCreated};
use airlock_shared::{MessageStatus, Role};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::agent::message_text;
use crate::common::http_client;

/// Visitors in a scenario, and messages each sends.
pub const VISITORS: usize = 8;
pub const MESSAGES: usize = 8;

/// What one visitor did: its session and, per message sent, whether the bridge acknowledged it.
pub struct VisitorLog {
    /// The visitor's number, unique in a scenario: it is in the text of each of its messages.
    pub visitor: usize,
    pub session_id: String,
    pub token: String,
    /// (message index, id of the stored message) for each 202.
    pub acknowledged: Vec<(usize, String)>,
    pub sent: usize,
    /// Sends repeated with the same `client_id` after a network error or a 5xx.
    pub retries: usize,
}

/// Opens a session (retrying while the bridge is down) and sends `MESSAGES` messages one after
/// the other, each with its own `client_id`, retrying the same `client_id` on network errors and
/// 5xx answers exactly as the widget does. With several `bases` (replicas behind one address, as
/// a load balancer would spread them) a failed call is retried on the next one.
pub async fn visitor(bases: Vec<String>, v: usize) -> VisitorLog {
    let mut at = v % bases.len();
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(40);
    let session: SessionCreated = loop {
        let opened = http
            .post(format!("{}/api/v1/interfaces/demo/sessions", bases[at]))
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
        at = (at + 1) % bases.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut log = VisitorLog {
        visitor: v,
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
                    "{}/api/v1/sessions/{}/messages",
                    bases[at], session.session_id
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
            at = (at + 1) % bases.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    log
}

/// Everything in the visitor's own message list, as the visitor reads it; `None` when the bridge
/// does not answer within 5 s.
pub async fn messages_seen(
    http: &reqwest::Client,
    base: &str,
    log: &VisitorLog,
) -> Option<MessageList> {
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
    response.json().await.ok()
}

/// Waits (bounded) until the visitor sees a settled reply — complete or failed — to each of its
/// acknowledged messages, through the visitor's own message list.
pub async fn wait_settled(base: &str, logs: &[VisitorLog], limit: Duration) {
    let http = http_client();
    let deadline = Instant::now() + limit;
    for log in logs {
        loop {
            let settled = async {
                let list = messages_seen(&http, base, log).await?;
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

pub fn spawn_visitors(base: &str) -> Vec<tokio::task::JoinHandle<VisitorLog>> {
    spawn_visitors_on(&[base.to_owned()], 0)
}

/// `VISITORS` visitors numbered from `first`; visitor `v` starts on `bases[v % bases.len()]` and
/// moves to the next one when a call fails.
pub fn spawn_visitors_on(
    bases: &[String],
    first: usize,
) -> Vec<tokio::task::JoinHandle<VisitorLog>> {
    (first..first + VISITORS)
        .map(|v| tokio::spawn(visitor(bases.to_vec(), v)))
        .collect()
}

/// Waves of visitors, one after the other, for as long as `faults` runs; returns the logs of
/// every visitor once the wave running when `faults` ends has finished too.
pub async fn visitors_during(
    bases: &[String],
    faults: impl std::future::Future<Output = ()>,
) -> Vec<VisitorLog> {
    tokio::pin!(faults);
    let mut logs = Vec::new();
    loop {
        let wave = join_all(spawn_visitors_on(bases, logs.len()));
        tokio::pin!(wave);
        tokio::select! {
            finished = &mut wave => logs.extend(finished),
            () = &mut faults => {
                logs.extend(wave.await);
                return logs;
            }
        }
    }
}

pub async fn join_all(handles: Vec<tokio::task::JoinHandle<VisitorLog>>) -> Vec<VisitorLog> {
    let mut logs = Vec::new();
    for handle in handles {
        logs.push(handle.await.expect("visitor task"));
    }
    logs
}
