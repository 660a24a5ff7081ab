//! The admin API's request and response shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Message;
use crate::visitor::{Appearance, Launcher, Uploads};

/// `POST /admin/interfaces`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateInterface {
    pub slug: String,
    pub title: String,
    /// Internal name for admins; defaults to the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub welcome_message: String,
    #[serde(default)]
    pub placeholder: String,
    #[serde(default)]
    pub suggested_prompts: Vec<String>,
    /// `session` (default) or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<String>,
    /// The interface's language for the widget (e.g. `de`); default: the visitor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default)]
    pub appearance: Appearance,
    #[serde(default)]
    pub launcher: Launcher,
    #[serde(default)]
    pub uploads: Uploads,
    /// Publish at once instead of starting as a draft.
    #[serde(default)]
    pub publish: bool,
}

/// An interface as admins see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interface {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// `draft` or `published`.
    pub status: String,
    pub title: String,
    pub description: String,
    pub welcome_message: String,
    pub placeholder: String,
    pub suggested_prompts: Vec<String>,
    pub persistence: String,
    pub locale: Option<String>,
    pub appearance: Appearance,
    pub launcher: Launcher,
    pub uploads: Uploads,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /admin/connectors`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateConnector {
    pub name: String,
    /// Slugs of the interfaces this key may serve; empty or absent means all.
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// A connector key as admins see it. `key` is present only in the answer to its creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connector {
    pub id: String,
    pub name: String,
    pub interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One row of the session list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSummary {
    pub id: String,
    pub interface: String,
    pub visitor_id: String,
    /// `active`, `ended` or `expired`.
    pub status: String,
    pub message_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

/// `GET /admin/sessions`: newest activity first; pass `next_cursor` as `cursor` for more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /admin/sessions/{id}`: one session and its whole transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transcript {
    pub session: SessionSummary,
    pub messages: Vec<Message>,
}

/// One dead-lettered inbox item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    pub message: Message,
    pub session_id: String,
    pub interface: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub dead_at: DateTime<Utc>,
}

/// A list wrapper so every list endpoint answers an object, never a bare array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct List<T> {
    pub items: Vec<T>,
}

/// One admin action in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: String,
    pub at: DateTime<Utc>,
    /// Who acted: `admin_key:<id> (<name>)`, `configured admin key`, or `cli`.
    pub actor: String,
    /// What was done, e.g. `interface.update`.
    pub action: String,
    /// What it was done to: a slug, a session id, a connector id.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// `GET /admin/audit`: newest first; pass `next_cursor` as `cursor` for more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
