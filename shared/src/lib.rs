//! The Airlock wire contract: every JSON shape the bridge, the connector and the visitor
//! clients exchange, defined once. No I/O lives here.
//!
//! Field names follow `DESIGN.md` §4. Fields may be added over time; none is ever renamed.

pub mod admin;
pub mod connector;
pub mod error;
pub mod visitor;

pub use error::{ErrorBody, ErrorEnvelope};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// URL prefix of the HTTP API.
pub const API_PREFIX: &str = "/api/v1";

/// Longest a connector claim may hold before answering empty (below the 60 s idle timeout of
/// nginx and most cloud load balancers).
pub const MAX_CLAIM_WAIT_SECS: u64 = 50;

/// Longest a visitor long-poll may hold before answering empty.
pub const MAX_VISITOR_WAIT_SECS: u64 = 30;

/// Longest and shortest lease a connector may ask for.
pub const MIN_LEASE_SECS: u64 = 1;
pub const MAX_LEASE_SECS: u64 = 600;

/// Lease length when the connector does not say.
pub const DEFAULT_LEASE_SECS: u64 = 30;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    System,
    Event,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            "event" => Role::Event,
            _ => return None,
        })
    }
}

/// Where a message stands.
///
/// A user message is `queued` until the agent has it, `processing` while a connector holds it,
/// `answered` once the reply is stored, `failed` when it was dead-lettered. An assistant message
/// is `streaming` while deltas arrive, then `complete` (or `failed` when dead-lettered mid-way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Processing,
    Answered,
    Streaming,
    Complete,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Processing => "processing",
            MessageStatus::Answered => "answered",
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => MessageStatus::Queued,
            "processing" => MessageStatus::Processing,
            "answered" => MessageStatus::Answered,
            "streaming" => MessageStatus::Streaming,
            "complete" => MessageStatus::Complete,
            "failed" => MessageStatus::Failed,
            _ => return None,
        })
    }
}

/// One message of a session's ordered log.
///
/// `seq` is strictly increasing within a session. `rev` is the session-wide change number of
/// the message's latest version: a streaming reply gets a new `rev` each time it grows, so a
/// client that asks for everything after its cursor sees it again with more text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: String,
    pub seq: i64,
    pub rev: i64,
    pub role: Role,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub status: MessageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// For an assistant message: the id of the user message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// A human explanation when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files the visitor attached (the bytes go only to the connector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRef>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// A file attached to a message: what it is, not its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttachmentRef {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// Writes a timestamp as chrono's own `Serialize` does (RFC 3339 in UTC with `Z`, and as many
/// fractional digits as it needs), but formatted whole first: chrono's writes it piece by piece,
/// and serde_json runs each piece through its string escaping, which made timestamps 7 % of the
/// bridge's request handling when it answers with many messages (docs/performance-history.md). For
/// the fields of the hot answers: messages and claimed items.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        time: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

/// Turns epoch milliseconds (how the bridge stores time) into a UTC timestamp.
pub fn time_from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_chronos_own_serialize_writes_them() {
        #[derive(Serialize)]
        struct Fast(#[serde(serialize_with = "rfc3339::serialize")] DateTime<Utc>);
        let times = [
            time_from_millis(0),
            time_from_millis(1_700_000_000_000),
            time_from_millis(1_700_000_000_123),
            time_from_millis(1_700_000_000_120),
            DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            DateTime::from_timestamp(1_700_000_000, 1).unwrap(),
            DateTime::from_timestamp(253_402_300_799, 999_000_000).unwrap(),
        ];
        for time in times {
            assert_eq!(
                serde_json::to_string(&Fast(time)).unwrap(),
                serde_json::to_string(&time).unwrap()
            );
        }
    }

    #[test]
    fn roles_and_statuses_round_trip_through_their_names() {
        for role in [Role::User, Role::Assistant, Role::System, Role::Event] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
        }
        for status in [
            MessageStatus::Queued,
            MessageStatus::Processing,
            MessageStatus::Answered,
            MessageStatus::Streaming,
            MessageStatus::Complete,
            MessageStatus::Failed,
        ] {
            assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(Role::parse("bot"), None);
    }

    #[test]
    fn message_timestamps_are_rfc3339() {
        let m = Message {
            id: "m1".into(),
            seq: 1,
            rev: 1,
            role: Role::User,
            text: "hi".into(),
            html: None,
            status: MessageStatus::Queued,
            client_id: Some("c1".into()),
            reply_to: None,
            error: None,
            attachments: Vec::new(),
            created_at: time_from_millis(1_700_000_000_123),
            updated_at: time_from_millis(1_700_000_000_123),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["created_at"], "2023-11-14T22:13:20.123Z");
        assert!(v.get("html").is_none());
    }
}
