//! The agent side of the connector: what an agent adapter gets for each visitor message, how it
//! streams its reply, and how it reports failure.
//!
//! Each adapter — `openai` (an OpenAI-compatible API, streamed), `webhook` (n8n and the like),
//! `command` (a local program) and `echo` (the demo) — implements [`Agent`]. It knows nothing
//! about leases, HTTP to the bridge or retries: the worker does all of that around it.

mod command;
mod echo;
mod openai;
mod payload;
mod prompt;
mod webhook;

use std::sync::Arc;

use airlock_shared::Message;
use airlock_shared::connector::{ClaimedItem, SessionContext};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::{AgentKind, Config};

pub use command::CommandAgent;
pub use echo::EchoAgent;
pub use openai::OpenAiAgent;
pub use prompt::PromptTemplate;
pub use webhook::WebhookAgent;

/// Answers visitor messages.
///
/// `respond` may be called for many messages at once (one per item in flight) and must be
/// cancel-safe in the async sense: when the lease is lost the worker simply drops the future,
/// so an adapter holding a child process or a connection should let drop clean it up. Clones of
/// the sink must not outlive `respond`: the worker takes the end of the deltas as the end of
/// the streaming.
#[async_trait]
pub trait Agent: Send + Sync {
    /// A short name for logs (`echo`, `openai`, …).
    fn name(&self) -> &str;

    /// Answers one visitor message. Text pushed through `sink` is shown to the visitor as it
    /// arrives; the returned [`AgentReply::text`] is what is finally stored and shown.
    async fn respond(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError>;
}

/// Everything the agent gets about one visitor message.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRequest {
    /// The visitor message to answer.
    pub message: Message,
    /// Who is asking and from where: interface, visitor id, page, the visitor's `context`.
    pub session: SessionContext,
    /// Earlier messages of the session, oldest first.
    pub history: Vec<Message>,
    /// 1 on first delivery; more when an earlier attempt failed or its connector vanished.
    pub attempt: u32,
    /// The system prompt (the interface's when set, else the connector's) with this message's
    /// context filled in, if there is one.
    pub system_prompt: Option<String>,
    /// The files the visitor attached to the message, with their bytes.
    pub attachments: Vec<Attachment>,
}

/// A file the visitor attached, fetched from the bridge before the agent is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub reference: airlock_shared::AttachmentRef,
    pub data: Vec<u8>,
}

impl AgentRequest {
    /// The request for a claimed item, with the system prompt rendered for it at `now` and the
    /// attachments' bytes. The interface's own prompt template, when its admin set one, replaces
    /// the connector's `prompt`.
    pub fn new(
        item: ClaimedItem,
        prompt: Option<&PromptTemplate>,
        now: DateTime<Utc>,
        attachments: Vec<Attachment>,
    ) -> Self {
        let interface_prompt = item.session.system_prompt.clone().map(PromptTemplate::new);
        let prompt = interface_prompt.as_ref().or(prompt);
        AgentRequest {
            attachments,
            system_prompt: prompt.map(|p| p.render(&item.session, now)),
            message: item.message,
            session: item.session,
            history: item.history,
            attempt: item.attempt,
        }
    }
}

/// The agent's final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReply {
    /// The whole reply. Normally the concatenation of the deltas; when it differs, this wins.
    pub text: String,
}

/// Why the agent could not answer, and whether asking again might work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    /// Shown to admins in the dead-letter list; keep secrets out of it.
    pub message: String,
    /// `true` for passing trouble (agent overloaded, timeout, network): the bridge offers the
    /// message again after a back-off. `false` when repeating cannot help (refused input, bad
    /// configuration): the message is dead-lettered at once.
    pub retryable: bool,
}

impl AgentError {
    pub fn retryable(message: impl Into<String>) -> AgentError {
        AgentError {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> AgentError {
        AgentError {
            message: message.into(),
            retryable: false,
        }
    }

    /// An HTTP agent answered `status` (not 2xx). 5xx, 429 and 408 are passing trouble worth a
    /// retry; any other refusal would be repeated for the same message, so it is permanent.
    /// `who` names the agent in the message ("the agent", "the webhook").
    pub fn from_status(who: &str, status: reqwest::StatusCode, detail: Option<&str>) -> AgentError {
        let message = match detail.filter(|d| !d.is_empty()) {
            Some(detail) => format!("{who} answered {status}: {detail}"),
            None => format!("{who} answered {status}"),
        };
        if retry_helps(status) {
            AgentError::retryable(message)
        } else {
            AgentError::permanent(message)
        }
    }
}

/// Whether an HTTP failure status may turn into a success when the same request is made again.
pub fn retry_helps(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
}

/// Where an agent pushes reply text as it produces it. Cheap to clone; pushing never blocks, and
/// the worker batches what arrives close together into one stream call.
#[derive(Debug, Clone)]
pub struct DeltaSink {
    tx: mpsc::UnboundedSender<String>,
}

impl DeltaSink {
    /// A sink and the receiving end the worker reads deltas from.
    pub fn channel() -> (DeltaSink, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (DeltaSink { tx }, rx)
    }

    /// Pushes a piece of reply text. Empty pieces are dropped.
    pub fn push(&self, delta: impl Into<String>) {
        let delta = delta.into();
        if !delta.is_empty() {
            // The receiver is gone only once the item was abandoned; then the text has nowhere
            // to go and dropping it is right.
            let _ = self.tx.send(delta);
        }
    }
}

/// The agent `config` asks for. Fails on settings the agent cannot work with.
pub fn from_config(config: &Config) -> anyhow::Result<Arc<dyn Agent>> {
    Ok(match config.agent {
        AgentKind::Echo => Arc::new(EchoAgent::new(config.echo_delay())),
        AgentKind::Openai => Arc::new(OpenAiAgent::new(&config.openai)?),
        AgentKind::Webhook => Arc::new(WebhookAgent::new(&config.webhook)?),
        AgentKind::Command => Arc::new(CommandAgent::new(config.command_argv()?)),
    })
}
