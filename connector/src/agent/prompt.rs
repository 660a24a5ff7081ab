//! The system prompt template: context tags filled per message.
//!
//! `{interface_title}`, `{interface}`, `{visitor_id}`, `{visitor_name}`, `{visitor_user_id}`,
//! `{visitor_email}`, `{page_url}`, `{page_title}`, `{referrer}`, `{locale}`, `{session_id}`,
//! `{date}` (UTC, `YYYY-MM-DD`) and `{time}` (UTC, `HH:MM`) are replaced, and `{context.KEY}`
//! with the `KEY` of the interface's `agent_context` (a string as is, anything else as JSON); a
//! tag with no value becomes empty; anything else in braces is left exactly as typed, so prompts
//! can contain JSON examples.

use airlock_shared::connector::SessionContext;
use chrono::{DateTime, Utc};

/// A system prompt with `{tags}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTemplate(String);

impl PromptTemplate {
    pub fn new(template: impl Into<String>) -> PromptTemplate {
        PromptTemplate(template.into())
    }

    /// The prompt for one message of `session`, at `now`.
    pub fn render(&self, session: &SessionContext, now: DateTime<Utc>) -> String {
        let template = &self.0;
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}');
            let value = close.and_then(|close| tag_value(&after[..close], session, now));
            match (close, value) {
                (Some(close), Some(value)) => {
                    out.push_str(&value);
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// The value of a known tag (empty when the session lacks it), or `None` for an unknown tag.
fn tag_value(tag: &str, session: &SessionContext, now: DateTime<Utc>) -> Option<String> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    Some(match tag {
        "interface_title" => session.interface_title.clone(),
        "interface" => session.interface.clone(),
        "visitor_id" => session.visitor_id.clone(),
        "visitor_name" => text(&session.visitor_name),
        "visitor_user_id" => text(&session.visitor_user_id),
        "visitor_email" => text(&session.visitor_email),
        "page_url" => text(&session.page_url),
        "page_title" => text(&session.page_title),
        "referrer" => text(&session.referrer),
        "locale" => text(&session.locale),
        "session_id" => session.id.clone(),
        "date" => now.format("%Y-%m-%d").to_string(),
        "time" => now.format("%H:%M").to_string(),
        _ => {
            let key = tag.strip_prefix("context.")?;
            match session.agent_context.as_ref().and_then(|c| c.get(key)) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionContext {
        SessionContext {
            id: "ses_1".into(),
            interface: "support".into(),
            interface_title: "Acme Support".into(),
            visitor_id: "vis_1".into(),
            visitor_name: None,
            visitor_user_id: None,
            visitor_email: None,
            page_url: Some("https://acme.example/pricing".into()),
            page_title: Some("Pricing".into()),
            referrer: None,
            locale: Some("de-DE".into()),
            context: None,
            system_prompt: None,
            agent_context: None,
        }
    }

    #[test]
    fn known_tags_are_filled_and_unknown_ones_left_as_typed() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T09:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let template = PromptTemplate::new(
            "You are {interface_title} on {page_title} ({page_url}), speaking {locale} to \
             {visitor_id}{visitor_name}. Referrer: [{referrer}]. {date} {time}. Keep {unknown} \
             and {\"json\": 1} and a lone { brace.",
        );
        assert_eq!(
            template.render(&session(), now),
            "You are Acme Support on Pricing (https://acme.example/pricing), speaking de-DE to \
             vis_1. Referrer: []. 2026-11-22 09:05. Keep {unknown} and {\"json\": 1} and a lone \
             { brace."
        );
    }

    #[test]
    fn context_tags_read_the_interface_agent_context() {
        let mut session = session();
        session.agent_context =
            serde_json::from_str(r#"{"product": "Acme Cloud", "tier": 2}"#).ok();
        let template =
            PromptTemplate::new("About {context.product} (tier {context.tier}){context.missing}.");
        assert_eq!(
            template.render(&session, Utc::now()),
            "About Acme Cloud (tier 2)."
        );
    }

    #[test]
    fn a_template_without_tags_is_unchanged() {
        let now = Utc::now();
        let plain = "Be brief. Use } and { freely.";
        assert_eq!(PromptTemplate::new(plain).render(&session(), now), plain);
    }
}
