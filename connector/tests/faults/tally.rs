//! Accounting: what each visitor got, counted from the admin API, and the agent's order.

use std::collections::HashMap;

use airlock_shared::admin::{DeadLetter, List, Transcript};
use airlock_shared::{Message, MessageStatus, Role};

use crate::agent::{FakeAgent, message_text, reply_to};
use crate::common::http_client;
use crate::processes::ADMIN_KEY;
use crate::visitors::{MESSAGES, VisitorLog};

#[derive(Debug, Default)]
pub struct Tally {
    pub sent: usize,
    pub acknowledged: usize,
    pub answered: usize,
    pub dead_lettered: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// (visitor, message) of every dead-lettered message.
    pub dead: Vec<(usize, usize)>,
}

/// A read of the admin API; a refusal panics with its status and body.
async fn admin_get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> T {
    let response = http.get(url).bearer_auth(ADMIN_KEY).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("GET {url}: {status} {body} ({err})"))
}

/// Counts from the admin transcripts and dead letters, and checks the order in which the agent
/// first saw each visitor's messages. Returns the tally and every problem found.
pub async fn account(base: &str, logs: &[VisitorLog], agent: &FakeAgent) -> (Tally, Vec<String>) {
    let http = http_client();
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    let dead: List<DeadLetter> =
        admin_get(&http, &format!("{base}/api/v1/admin/dead-letters")).await;
    let dead_ids: Vec<String> = dead.items.iter().map(|d| d.message.id.clone()).collect();
    let first_seen = first_seen_by_visitor(logs, &agent.requests());
    for log in logs {
        let v = log.visitor;
        tally.sent += log.sent;
        tally.acknowledged += log.acknowledged.len();
        let transcript: Transcript = admin_get(
            &http,
            &format!("{base}/api/v1/admin/sessions/{}", log.session_id),
        )
        .await;
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
        let first_seen = first_seen.get(&v).cloned().unwrap_or_default();
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

/// For each visitor, its messages in the order the agent first saw them.
fn first_seen_by_visitor(logs: &[VisitorLog], requests: &[String]) -> HashMap<usize, Vec<usize>> {
    let texts: HashMap<String, (usize, usize)> = logs
        .iter()
        .flat_map(|log| (0..MESSAGES).map(|m| (message_text(log.visitor, m), (log.visitor, m))))
        .collect();
    let mut first_seen: HashMap<usize, Vec<usize>> = HashMap::new();
    for text in requests {
        if let Some(&(v, m)) = texts.get(text) {
            let seen = first_seen.entry(v).or_default();
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
    }
    first_seen
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

pub fn check(name: &str, tally: &Tally, problems: &[String]) {
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
