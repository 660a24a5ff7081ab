//! The JSON an agent outside the connector gets for one visitor message: the body of the
//! `webhook` agent's POST (in its `airlock` format) and the `command` agent's stdin.
//!
//! One object, every field always present:
//!
//! ```json
//! {
//!   "message": { "id": "…", "seq": 3, "rev": 3, "role": "user", "text": "Hello?",
//!                "status": "processing", "client_id": "…", "created_at": "…", "updated_at": "…" },
//!   "session": { "id": "…", "interface": "demo", "interface_title": "Demo", "visitor_id": "…",
//!                "page_url": "…", "page_title": "…", "referrer": "…", "locale": "…",
//!                "visitor_name": "…", "visitor_user_id": "…", "visitor_email": "…",
//!                "context": { … } },
//!   "history": [ { …message… }, … ],
//!   "context": { … } | null,
//!   "system_prompt": "…" | null,
//!   "agent_context": { … } | null,
//!   "attempt": 1,
//!   "attachments": [ { "id": "att_…", "filename": "photo.png", "content_type": "image/png",
//!                      "size": 48213, "data_base64": "iVBORw0…" } ]
//! }
//! ```
//!
//! `message` and the `history` entries are [`Message`]s and `session` is a [`SessionContext`],
//! exactly as the bridge hands them to the connector (optional fields absent when unset).
//! `history` is oldest first. `context` repeats `session.context` (what the visitor's page sent
//! with this message) at the top level, where scripts look first. `system_prompt` is the
//! configured prompt (the interface's own when its admin set one, else the connector's) with its
//! tags already filled in. `agent_context` is the object the interface's admin set for the agent
//! (also in `session.agent_context`). `attempt` is 1 on first delivery.

use airlock_shared::Message;
use airlock_shared::connector::SessionContext;
use serde::Serialize;

use super::AgentRequest;

/// The `airlock` JSON for one request; borrows everything from it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgentPayload<'a> {
    pub message: &'a Message,
    pub session: &'a SessionContext,
    pub history: &'a [Message],
    /// Serialised as `null` when absent, so readers can rely on the key being there.
    pub context: Option<&'a serde_json::Value>,
    pub system_prompt: Option<&'a str>,
    /// The interface's `agent_context` object (set by its admin), `null` when unset.
    pub agent_context: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub attempt: u32,
    /// The attached files with their bytes; `[]` when there are none.
    pub attachments: Vec<PayloadAttachment<'a>>,
}

/// An attached file in the JSON: the reference's fields plus the bytes in base64.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PayloadAttachment<'a> {
    pub id: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size: u64,
    pub data_base64: String,
}

impl<'a> PayloadAttachment<'a> {
    pub fn all(request: &'a AgentRequest) -> Vec<PayloadAttachment<'a>> {
        use base64::Engine;
        request
            .attachments
            .iter()
            .map(|a| PayloadAttachment {
                id: &a.reference.id,
                filename: &a.reference.filename,
                content_type: &a.reference.content_type,
                size: a.reference.size,
                data_base64: base64::engine::general_purpose::STANDARD.encode(&a.data),
            })
            .collect()
    }
}

impl<'a> AgentPayload<'a> {
    pub fn new(request: &'a AgentRequest) -> AgentPayload<'a> {
        AgentPayload {
            message: &request.message,
            session: &request.session,
            history: &request.history,
            context: request.session.context.as_ref(),
            system_prompt: request.system_prompt.as_deref(),
            agent_context: request.session.agent_context.as_ref(),
            attempt: request.attempt,
            attachments: PayloadAttachment::all(request),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use airlock_shared::{MessageStatus, Role, time_from_millis};
    use serde_json::json;

    pub(crate) fn message(id: &str, role: Role, text: &str) -> Message {
        Message {
            id: id.into(),
            seq: 1,
            rev: 1,
            role,
            text: text.into(),
            html: None,
            status: MessageStatus::Processing,
            client_id: None,
            reply_to: None,
            error: None,
            attachments: Vec::new(),
            created_at: time_from_millis(0),
            updated_at: time_from_millis(0),
        }
    }

    /// A request as the worker builds it, with some of everything filled in.
    pub(crate) fn request(text: &str) -> AgentRequest {
        AgentRequest {
            attachments: Vec::new(),
            message: message("m2", Role::User, text),
            session: SessionContext {
                id: "s1".into(),
                interface: "demo".into(),
                interface_title: "Demo".into(),
                visitor_id: "v1".into(),
                visitor_name: None,
                visitor_user_id: None,
                visitor_email: None,
                page_url: Some("https://example.com/pricing".into()),
                page_title: None,
                referrer: None,
                locale: Some("de".into()),
                context: Some(json!({"plan": "pro"})),
                system_prompt: None,
                agent_context: None,
            },
            history: vec![message("m1", Role::User, "earlier")],
            attempt: 2,
            system_prompt: Some("Be brief.".into()),
        }
    }

    #[test]
    fn payload_has_every_documented_field() {
        let request = request("Hello?");
        let value = serde_json::to_value(AgentPayload::new(&request)).unwrap();
        assert_eq!(value["message"]["id"], "m2");
        assert_eq!(value["message"]["text"], "Hello?");
        assert_eq!(value["session"]["id"], "s1");
        assert_eq!(value["session"]["page_url"], "https://example.com/pricing");
        assert_eq!(value["history"][0]["text"], "earlier");
        assert_eq!(value["context"], json!({"plan": "pro"}));
        assert_eq!(value["system_prompt"], "Be brief.");
        assert_eq!(value["attempt"], 2);
    }

    #[test]
    fn absent_context_and_prompt_are_null_not_missing() {
        let mut request = request("Hi");
        request.session.context = None;
        request.system_prompt = None;
        let value = serde_json::to_value(AgentPayload::new(&request)).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.get("context"), Some(&serde_json::Value::Null));
        assert_eq!(object.get("system_prompt"), Some(&serde_json::Value::Null));
    }

    #[test]
    fn the_interface_prompt_replaces_the_connector_prompt_and_its_context_is_in_the_payload() {
        use super::super::PromptTemplate;
        use airlock_shared::connector::ClaimedItem;
        let base = request("Hi");
        let mut session = base.session.clone();
        session.system_prompt = Some("You sell {context.product} on {interface}.".into());
        session.agent_context = serde_json::from_value(json!({"product": "Acme Cloud"})).ok();
        let item = ClaimedItem {
            lease_id: "l1".into(),
            lease_expires_at: time_from_millis(0),
            attempt: 1,
            message: base.message.clone(),
            session,
            history: Vec::new(),
        };
        let connector_prompt = PromptTemplate::new("Connector default.");
        let now = time_from_millis(0);
        let request = AgentRequest::new(item.clone(), Some(&connector_prompt), now, Vec::new());
        assert_eq!(
            request.system_prompt.as_deref(),
            Some("You sell Acme Cloud on demo.")
        );
        let value = serde_json::to_value(AgentPayload::new(&request)).unwrap();
        assert_eq!(value["agent_context"], json!({"product": "Acme Cloud"}));

        // Without an interface prompt the connector's own applies, and no context is null.
        let mut plain = item;
        plain.session.system_prompt = None;
        plain.session.agent_context = None;
        let request = AgentRequest::new(plain, Some(&connector_prompt), now, Vec::new());
        assert_eq!(request.system_prompt.as_deref(), Some("Connector default."));
        let value = serde_json::to_value(AgentPayload::new(&request)).unwrap();
        assert_eq!(value["agent_context"], serde_json::Value::Null);
    }
}
