//! A simulated visitor, speaking the visitor API as the widget does.

use std::sync::atomic::{AtomicU64, Ordering};

use airlock_shared::visitor::{MessageAccepted, MessageList, SessionCreated};
use airlock_shared::{Message, Role};
use anyhow::{Context, bail};
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::json;

pub struct Visitor {
    http: reqwest::Client,
    base: String,
    pub session_id: String,
    token: String,
    /// Messages sent, for each one's `client_id`.
    sent: AtomicU64,
}

impl Visitor {
    /// Opens a session on the bridge's `demo` interface.
    pub async fn open(http: &reqwest::Client, base: &str) -> anyhow::Result<Visitor> {
        let response = http
            .post(format!("{base}/api/v1/interfaces/demo/sessions"))
            .json(&json!({}))
            .send()
            .await?;
        if response.status() != 201 {
            bail!("opening a session: {}", response.status());
        }
        let session: SessionCreated = response.json().await?;
        Ok(Visitor {
            http: http.clone(),
            base: base.to_owned(),
            session_id: session.session_id,
            token: session.session_token,
            sent: AtomicU64::new(0),
        })
    }

    /// Sends `text`; returns the stored message once the bridge acknowledged it (202).
    pub async fn send(&self, text: &str) -> anyhow::Result<Message> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let response = self
            .http
            .post(format!(
                "{}/api/v1/sessions/{}/messages",
                self.base, self.session_id
            ))
            .bearer_auth(&self.token)
            .json(&json!({"client_id": format!("c{n}"), "text": text}))
            .send()
            .await?;
        if response.status() != 202 {
            bail!("sending a message: {}", response.status());
        }
        Ok(response.json::<MessageAccepted>().await?.message)
    }

    /// One long-poll: the messages after `cursor`, waiting up to `wait_secs` for one.
    pub async fn poll(&self, cursor: i64, wait_secs: u32) -> anyhow::Result<MessageList> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/sessions/{}/messages?after={cursor}&wait={wait_secs}",
                self.base, self.session_id
            ))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("polling: {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// The session's SSE stream, as the messages it carries (each `message` event).
    pub async fn events(&self) -> anyhow::Result<impl Stream<Item = Message> + use<>> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/sessions/{}/events",
                self.base, self.session_id
            ))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("opening the event stream: {}", response.status());
        }
        Ok(response
            .bytes_stream()
            .eventsource()
            .filter_map(|event| async move {
                let event = event.ok()?;
                (event.event == "message")
                    .then(|| serde_json::from_str(&event.data).ok())
                    .flatten()
            }))
    }
}

/// Whether `message` is the finished reply to the message with id `to`.
pub fn is_reply_to(message: &Message, to: &str) -> bool {
    message.role == Role::Assistant
        && message.reply_to.as_deref() == Some(to)
        && message.status == airlock_shared::MessageStatus::Complete
}

/// Reads `stream` until `found` holds for a message; an error if the stream ends first.
pub async fn until<S: Stream<Item = Message> + Unpin>(
    stream: &mut S,
    mut found: impl FnMut(&Message) -> bool,
) -> anyhow::Result<Message> {
    while let Some(message) = stream.next().await {
        if found(&message) {
            return Ok(message);
        }
    }
    Err(anyhow::anyhow!("the event stream ended")).context("waiting for a message")
}
