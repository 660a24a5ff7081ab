//! The connector protocol: claim, extend, stream, reply, fail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Message;

/// `POST /connector/claim`: lease up to `max` inbox items, waiting up to `wait` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    #[serde(default = "default_max")]
    pub max: u32,
    #[serde(default)]
    pub wait: u64,
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// How many earlier messages of the session to include as `history`.
    #[serde(default = "default_history")]
    pub history: u32,
    /// Show the visitor the agent typing for every item leased, in the same write as the lease:
    /// the same as a `{typing: true}` stream call on each item, without the extra request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub typing: bool,
}

fn default_max() -> u32 {
    1
}
fn default_lease_secs() -> u64 {
    crate::DEFAULT_LEASE_SECS
}
fn default_history() -> u32 {
    20
}

impl Default for ClaimRequest {
    fn default() -> Self {
        ClaimRequest {
            max: default_max(),
            wait: 0,
            lease_secs: default_lease_secs(),
            history: default_history(),
            typing: false,
        }
    }
}

/// The answer to a claim: possibly empty when the wait ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimResponse {
    pub items: Vec<ClaimedItem>,
}

/// One leased inbox item: the visitor message and what the agent needs to answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedItem {
    /// Use this for extend / stream / reply / fail. A redelivery gets a new one.
    pub lease_id: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub lease_expires_at: DateTime<Utc>,
    /// 1 on first delivery, 2 on the first redelivery, …
    pub attempt: u32,
    pub message: Message,
    pub session: SessionContext,
    /// Earlier messages of the session, oldest first (user and completed assistant messages).
    pub history: Vec<Message>,
}

/// Who the agent is talking to and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionContext {
    pub id: String,
    pub interface: String,
    pub interface_title: String,
    pub visitor_id: String,
    /// The visitor's verified name, when the host site signed one in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_name: Option<String>,
    /// The signed-in visitor's user id on the host site (the identity token's `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_user_id: Option<String>,
    /// The signed-in visitor's email, when the host site's token carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The `context` the visitor sent with this message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// The interface's system prompt template, when its admin set one; it replaces the
    /// connector's own and is filled with the same tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The interface's `agent_context`: a JSON object its admin set for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `GET /connector/me`: which connector a key belongs to and what it may serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorIdentity {
    pub id: String,
    pub name: String,
    /// True when the key may serve every interface; otherwise `interfaces` lists them.
    pub all_interfaces: bool,
    pub interfaces: Vec<String>,
}

/// `POST /connector/leases/{lease_id}/extend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

/// The answer to an extend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseExtended {
    pub lease_id: String,
    pub lease_expires_at: DateTime<Utc>,
}

/// `POST /connector/leases/{lease_id}/stream`: a piece of the reply, or a typing signal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_delta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing: Option<bool>,
}

/// `POST /connector/leases/{lease_id}/reply`: the final reply. Idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    pub text: String,
}

/// `POST /connector/leases/{lease_id}/fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub error: String,
    /// `true`: offer the item again after a back-off (until `max_attempts`);
    /// `false`: dead-letter it now.
    #[serde(default)]
    pub retry: bool,
}

/// The answer to stream and reply: the assistant message as the visitor now sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplyState {
    pub message: Message,
}

/// What became of an item after `fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailOutcome {
    /// `queued` (will be offered again) or `dead` (dead-lettered).
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}
