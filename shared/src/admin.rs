//! The admin API's request and response shapes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::visitor::{Appearance, Launcher, SuggestedPrompt, Uploads};
use crate::{Message, MessageStatus, Role};

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
    pub suggested_prompts: Vec<SuggestedPrompt>,
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
    /// Minutes of inactivity after which a session expires; default
    /// [`DEFAULT_SESSION_TIMEOUT_MINS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout_mins: Option<u32>,
    /// Visitor messages allowed per window; default 10 per 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Origins (`https://example.com[:port]`) whose pages may embed the chat, besides the
    /// bridge's own; empty = only the bridge's own pages (`/c/{slug}`, `/embed/{slug}`);
    /// `["*"]` = any site (`*` only alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Ids of the connector keys that may serve this interface; empty = any connector whose own
    /// scope includes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<String>,
    /// The agent's system prompt for this interface, a template with the connector's tags
    /// (`{interface}`, `{page_url}`, …); replaces the connector's own when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// A JSON object handed to the agent with every message of this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Refuse visitors without a valid signed identity token (needs `identity`).
    #[serde(default)]
    pub require_identity: bool,
    /// How to verify the signed identity tokens of the host site's signed-in users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityVerification>,
    /// Publish at once instead of starting as a draft.
    #[serde(default)]
    pub publish: bool,
}

/// How the bridge verifies the identity tokens (JWTs) a host site signs for its signed-in users.
///
/// `secret` is write-only: answers always show it as `null`, with `secret_set` telling whether one
/// is stored. An update without `secret` (or with `null`) keeps the stored one; `secret_set` is
/// ignored on input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IdentityVerification {
    /// `HS256` (a shared secret) or `RS256` (the site signs with its RSA private key).
    pub algorithm: String,
    /// HS256: the shared secret, at least 32 bytes. Never shown back.
    #[serde(default)]
    pub secret: Option<String>,
    /// Whether a secret is stored (read-only).
    #[serde(default)]
    pub secret_set: bool,
    /// RS256: the site's RSA public key, PEM (`-----BEGIN PUBLIC KEY-----…`).
    #[serde(default)]
    pub public_key: Option<String>,
    /// When set, tokens must carry this `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud` (or a list containing it).
    #[serde(default)]
    pub audience: Option<String>,
}

/// A visitor's verified identity, from the claims of a signed identity token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitorIdentity {
    /// The token's `sub`: the user's id on the host site.
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Minutes of inactivity before a session expires, unless the interface says otherwise (a day).
pub const DEFAULT_SESSION_TIMEOUT_MINS: u32 = 1_440;

/// How many messages one visitor session may send per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub messages: u32,
    pub window_secs: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            messages: 10,
            window_secs: 60,
        }
    }
}

/// `PATCH /admin/interfaces/{slug}`: every field present replaces the stored one; absent fields
/// stay. Nullable fields (`name`, `locale`, `system_prompt`, `agent_context`, `identity`) are
/// cleared with `null`. Objects (`appearance`, `launcher`, `uploads`, `rate_limit`, `identity`) are
/// replaced whole, except that an `identity` without `secret` keeps the stored one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateInterface {
    /// A new slug (a rename); links using the old one stop working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_prompts: Option<Vec<SuggestedPrompt>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub locale: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appearance: Option<Appearance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<Launcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<Uploads>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout_mins: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectors: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_prompt: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_context: Option<Option<serde_json::Map<String, serde_json::Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_identity: Option<bool>,
    /// `null` removes identity verification (and needs `require_identity` off).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity: Option<Option<IdentityVerification>>,
}

/// For `Option<Option<T>>` fields: absent stays `None` (via `default`), `null` becomes
/// `Some(None)`, a value `Some(Some(v))`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /admin/interfaces/{slug}/duplicate`: the copy is a draft.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DuplicateInterface {
    pub slug: String,
    /// Default: the original's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `DELETE /admin/interfaces/{slug}`: what went with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InterfaceDeleted {
    pub deleted: String,
    /// How many sessions (with their messages) were deleted with it.
    pub sessions: u64,
}

/// `POST /admin/interfaces/{slug}/preview`: a short-lived token that lets its holder load and
/// chat with the interface even while it is a draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Copy-paste snippets that put an interface on a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Embed {
    /// The one-line script: a launcher bubble that opens the chat.
    pub script: String,
    /// An `<iframe>` showing the chat inline.
    pub iframe: String,
    /// The chat as a page of its own.
    pub link: String,
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
    pub suggested_prompts: Vec<SuggestedPrompt>,
    pub persistence: String,
    pub locale: Option<String>,
    pub appearance: Appearance,
    pub launcher: Launcher,
    pub uploads: Uploads,
    pub session_timeout_mins: u32,
    pub rate_limit: RateLimit,
    pub allowed_origins: Vec<String>,
    pub connectors: Vec<String>,
    pub system_prompt: Option<String>,
    pub agent_context: Option<serde_json::Map<String, serde_json::Value>>,
    pub require_identity: bool,
    /// `null` when visitors cannot sign in; the secret is never shown.
    pub identity: Option<IdentityVerification>,
    pub embed: Embed,
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
    /// Seen recently (it claims at least every 50 s while running) or holding a lease now.
    #[serde(default)]
    pub online: bool,
    /// Items leased to it right now.
    #[serde(default)]
    pub in_flight: u32,
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
    /// The start (at most 140 characters) of the latest message with text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
    /// Who the visitor is, when the host site signed them in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<VisitorIdentity>,
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
    /// Who acted: `admin_key:<id> (<name>)`, `configured admin key`, `cli`, or `retention`
    /// (the bridge deleting sessions past `AIRLOCK_RETENTION_DAYS`).
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

/// The answer to a deletion: the id (or slug) of what is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedId {
    pub deleted: String,
}

/// `POST /admin/visitors/forget`: whose data to delete. Give exactly one way of naming the
/// visitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForgetVisitor {
    /// The `visitor_id` the bridge gave the visitor (`vis_…`, on each of their sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// A signed-in user's id (the `sub` of their identity token): their sessions on every
    /// interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// What a deletion of visitor data removed: sessions, and the messages and attached files that
/// went with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataRemoved {
    pub sessions: u64,
    pub messages: u64,
    pub attachments: u64,
}

/// One line of `GET /admin/sessions/export`: a message with its session's fields. The CSV
/// export has these columns, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportRow {
    pub session_id: String,
    pub interface: String,
    pub visitor_id: String,
    /// The signed-in user's verified id, name and e-mail (empty for anonymous visitors).
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    pub session_created_at: DateTime<Utc>,
    pub message_id: String,
    pub seq: i64,
    pub role: Role,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
    pub text: String,
}

/// `GET /admin/stats`: numbers for a period (`since` inclusive, `until` exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The interface slug the numbers are limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Sessions opened in the period.
    pub sessions: i64,
    /// Distinct visitors among those sessions.
    pub visitors: i64,
    /// Messages written in the period, by role.
    pub messages: MessageCounts,
    /// From a visitor's message to its completed reply, for messages sent in the period.
    pub reply_latency_ms: Latency,
    /// `hour` or `day`: the width of each `series` bucket (hourly up to 3 days, else daily).
    pub bucket: String,
    /// Consecutive buckets (UTC-aligned) covering the period, empty ones included.
    pub series: Vec<StatsBucket>,
    /// Messages by hour of day, UTC: 24 counts, index 0 is 00:00–00:59.
    pub by_hour: Vec<i64>,
    /// The 10 referrers that opened most sessions in the period.
    pub top_referrers: Vec<ReferrerCount>,
    /// Items dead-lettered in the period and still in the dead-letter list.
    pub dead_letters: i64,
}

/// Message counts by role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageCounts {
    pub user: i64,
    pub assistant: i64,
}

/// Reply latency percentiles; absent when no reply completed in the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latency {
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

/// One bucket of [`Stats::series`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsBucket {
    /// Start of the bucket.
    pub at: DateTime<Utc>,
    pub sessions: i64,
    /// User and assistant messages.
    pub messages: i64,
}

/// One of [`Stats::top_referrers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReferrerCount {
    pub referrer: String,
    pub sessions: i64,
}

/// One event of `GET /admin/events`, the admins' live tail. Sent as an SSE event named after
/// `type`, with this JSON as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminEvent {
    /// A session was `created`, `ended` or `deleted`.
    Session {
        action: String,
        session_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interface: Option<String>,
        at: DateTime<Utc>,
    },
    /// A visitor's message was accepted, or a reply finished.
    Message {
        session_id: String,
        message_id: String,
        role: Role,
        status: MessageStatus,
        /// The start of the text, at most 140 characters.
        snippet: String,
        at: DateTime<Utc>,
    },
    /// An item was dead-lettered: the agent will not answer it.
    DeadLetter {
        session_id: String,
        message_id: String,
        error: String,
        at: DateTime<Utc>,
    },
    /// A connector came online (it had not been seen for a while).
    Connector {
        connector_id: String,
        name: String,
        online: bool,
        at: DateTime<Utc>,
    },
    /// An admin action was recorded in the audit log.
    Audit { entry: AuditEntry },
    /// This stream fell behind and skipped `missed` events: reload what is shown.
    Lagged { missed: u64 },
}
