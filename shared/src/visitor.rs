//! What a visitor's browser (widget, iframe, full page) sends and receives.

use serde::{Deserialize, Serialize};

use crate::Message;

/// `GET /interfaces/{slug}`: what a chat window needs to draw itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicInterface {
    pub slug: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub welcome_message: String,
    #[serde(default)]
    pub placeholder: String,
    #[serde(default)]
    pub suggested_prompts: Vec<String>,
    /// `session` (history survives reloads in the tab) or `local` (survives closing the browser).
    pub persistence: String,
    /// Whether a connector serving this interface has been seen recently.
    pub agent_online: bool,
}

/// `POST /interfaces/{slug}/sessions`: create a session, or resume one with `resume_token`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// The answer to a session create or resume. Both tokens are shown only here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreated {
    pub session_id: String,
    pub session_token: String,
    pub resume_token: String,
    pub visitor_id: String,
    /// True when `resume_token` named a live session and this is it.
    pub resumed: bool,
    /// The session's history so far (empty for a new session).
    pub messages: Vec<Message>,
    /// Pass as `after` to the first long-poll.
    pub cursor: i64,
}

/// `POST /sessions/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The sender's idempotency key: the same `client_id` again returns the same message.
    pub client_id: String,
    pub text: String,
    /// Free-form page context for the agent (page URL, title, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

/// The answer to a send: the stored message (202 Accepted, after commit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageAccepted {
    pub message: Message,
}

/// `GET /sessions/{id}/messages?after=…&wait=…`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageList {
    /// Messages whose latest version is newer than `after`, oldest change first.
    pub messages: Vec<Message>,
    /// Pass as `after` next time.
    pub cursor: i64,
    pub agent_online: bool,
}
