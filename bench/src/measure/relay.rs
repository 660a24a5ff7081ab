//! Relay overhead (a visitor's send → the reply visible on the visitor's event stream, minus the
//! agent's own time) and delta latency (a connector's stream call → the delta visible).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_shared::Role;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::FakeAgent;
use crate::procs::Bridge;
use crate::stats::{ms, runs};
use crate::visitor::{Visitor, is_reply_to, until};

/// `samples` messages sent one after the other by one visitor listening on its event stream,
/// through the real connector(s) already polling `bridge`. Each sample is the time from just
/// before the send to the complete reply arriving, minus the time the agent held the message.
pub async fn overhead(
    bridge: &Bridge,
    agent: &FakeAgent,
    samples: usize,
) -> anyhow::Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let visitor = Visitor::open(&http, &bridge.url).await?;
    let mut events = Box::pin(visitor.events().await?);
    let mut overheads = Vec::with_capacity(samples);
    for kept in runs(samples) {
        let started = Instant::now();
        let sent = visitor.send("ping").await?;
        until(&mut events, |m| is_reply_to(m, &sent.id)).await?;
        let total = started.elapsed();
        let held = agent
            .held(&sent.id)
            .context("the agent never saw a message it answered")?;
        if kept {
            overheads.push(ms(total.saturating_sub(held)));
        }
    }
    Ok(overheads)
}

/// What the visitors of [`keep_sending`] counted.
#[derive(Default)]
pub struct Counts {
    /// Replies seen.
    pub replies: AtomicU64,
    /// Long-poll answers read.
    pub polls: AtomicU64,
}

/// A visitor that keeps sending — each message after the reply to the last one, read with
/// long-polls as the widget's fallback does — until `stop`, counting replies and long-polls in
/// `counts`.
pub async fn keep_sending(
    base: String,
    counts: Arc<Counts>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let visitor = Visitor::open(&http, &base).await?;
    let mut cursor = 0;
    while !stop.is_cancelled() {
        let sent = visitor.send("load").await?;
        loop {
            let list = visitor.poll(cursor, 30).await?;
            counts.polls.fetch_add(1, Ordering::Relaxed);
            cursor = list.cursor.max(cursor);
            if list.messages.iter().any(|m| is_reply_to(m, &sent.id)) {
                counts.replies.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    Ok(())
}

/// `samples` deltas posted by the harness acting as the connector, each timed from just before
/// the stream call to the visitor's event stream showing the reply grown by it. Runs on a bridge
/// no real connector polls, so the harness claims the item itself.
pub async fn deltas(bridge: &Bridge, samples: usize) -> anyhow::Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let key = bridge.connector_key().await?;
    let connector = |path: &str| format!("{}/api/v1/connector/{path}", bridge.url);
    let visitor = Visitor::open(&http, &bridge.url).await?;
    let mut events = Box::pin(visitor.events().await?);
    let sent = visitor.send("stream to me").await?;
    let claimed: Value = http
        .post(connector("claim"))
        .bearer_auth(&key)
        .json(&json!({"max": 1, "wait": 5, "lease_secs": 300}))
        .send()
        .await?
        .json()
        .await?;
    let lease = claimed["items"][0]["lease_id"]
        .as_str()
        .context("the harness claimed no item")?
        .to_owned();
    let mut times = Vec::with_capacity(samples);
    for (i, kept) in runs(samples).enumerate() {
        let started = Instant::now();
        let response = http
            .post(connector(&format!("leases/{lease}/stream")))
            .bearer_auth(&key)
            .json(&json!({"text_delta": "x"}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("streaming a delta: {}", response.status());
        }
        let length = i + 1;
        until(&mut events, |m| {
            m.role == Role::Assistant
                && m.reply_to.as_deref() == Some(sent.id.as_str())
                && m.text.len() >= length
        })
        .await?;
        if kept {
            times.push(ms(started.elapsed()));
        }
    }
    http.post(connector(&format!("leases/{lease}/reply")))
        .bearer_auth(&key)
        .json(&json!({"text": "done"}))
        .send()
        .await?;
    Ok(times)
}
