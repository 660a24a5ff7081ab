//! Relay overhead (a visitor's send → the reply visible on the visitor's event stream, minus the
//! agent's own time) and delta latency (a connector's stream call → the delta visible).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_shared::Role;
use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::FakeAgent;
use crate::procs::Bridge;
use crate::stats::{Latency, ms, runs};
use crate::visitor::{Visitor, is_reply_to, until};

/// Relay overhead samples, in milliseconds, each split in its two halves.
#[derive(Default)]
pub struct Overheads {
    /// From just before the send to the agent's request arriving.
    pub to_agent: Vec<f64>,
    /// From the agent's answer to the reply visible.
    pub from_agent: Vec<f64>,
}

/// Where relay overhead goes: on the way to the agent (the send, the connector's claim, its call
/// to the agent) and back from it (the connector's reply, the visitor's stream showing it).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Halves {
    /// From just before the send to the agent's request arriving.
    pub to_agent: Latency,
    /// From the agent's answer to the reply visible.
    pub from_agent: Latency,
}

impl Overheads {
    /// Each sample whole: from just before the send to the reply visible, minus the time the
    /// agent held the message.
    pub fn totals(&self) -> Vec<f64> {
        self.to_agent
            .iter()
            .zip(&self.from_agent)
            .map(|(to, from)| to + from)
            .collect()
    }

    pub fn halves(&self) -> Halves {
        Halves {
            to_agent: Latency::of_ms(&self.to_agent),
            from_agent: Latency::of_ms(&self.from_agent),
        }
    }
}

/// `samples` messages sent one after the other by one visitor listening on its event stream,
/// through the real connector(s) already polling `bridge`. Each sample is the time from just
/// before the send to the complete reply arriving, minus the time the agent held the message.
pub async fn overhead(
    bridge: &Bridge,
    agent: &FakeAgent,
    samples: usize,
) -> anyhow::Result<Overheads> {
    let http = reqwest::Client::new();
    let visitor = Visitor::open(&http, &bridge.url).await?;
    let mut events = Box::pin(visitor.events().await?);
    let mut overheads = Overheads::default();
    for kept in runs(samples) {
        let started = Instant::now();
        let sent = visitor.send("ping").await?;
        until(&mut events, |m| is_reply_to(m, &sent.id)).await?;
        let visible = Instant::now();
        let held = agent
            .held(&sent.id)
            .context("the agent never saw a message it answered")?;
        if kept {
            let to_agent = held.arrived.saturating_duration_since(started);
            let from_agent = visible.saturating_duration_since(held.answered);
            overheads.to_agent.push(ms(to_agent));
            overheads.from_agent.push(ms(from_agent));
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
