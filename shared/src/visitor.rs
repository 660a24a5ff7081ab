//! What a visitor's browser (widget, iframe, full page) sends and receives.

use serde::{Deserialize, Serialize};

use crate::Message;

/// `GET /interfaces/{slug}`: what a chat window needs to draw itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub suggested_prompts: Vec<SuggestedPrompt>,
    /// `session` (history survives reloads in the tab) or `local` (survives closing the browser).
    pub persistence: String,
    /// Whether a connector serving this interface has been seen recently.
    pub agent_online: bool,
    /// The interface's language (e.g. `de`), when the admin set one.
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub appearance: Appearance,
    #[serde(default)]
    pub launcher: Launcher,
    #[serde(default)]
    pub uploads: Uploads,
}

/// A suggested prompt chip: the text sent when clicked and an optional emoji shown before it.
///
/// A plain string is accepted on input as `{text}` without an icon, so older configurations and
/// scripts keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(from = "PromptInput")]
pub struct SuggestedPrompt {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

impl From<&str> for SuggestedPrompt {
    fn from(text: &str) -> Self {
        SuggestedPrompt {
            text: text.to_string(),
            icon: None,
        }
    }
}

/// A plain string that starts with an emoji and a space (`"📦 Where is my order?"`) keeps its
/// emoji as the icon, as the widget always showed it.
fn split_icon(text: String) -> SuggestedPrompt {
    let emoji_like = |c: char| (c as u32 >= 0x2190 && !c.is_alphanumeric()) || c == '\u{200d}';
    if let Some((head, rest)) = text.split_once(' ')
        && !head.is_empty()
        && head.chars().count() <= 8
        && head.chars().all(emoji_like)
        && !rest.trim().is_empty()
    {
        return SuggestedPrompt {
            icon: Some(head.to_string()),
            text: rest.trim().to_string(),
        };
    }
    SuggestedPrompt { text, icon: None }
}

/// The two accepted input shapes of a [`SuggestedPrompt`].
#[derive(Deserialize)]
#[serde(untagged)]
enum PromptInput {
    Text(String),
    Full {
        text: String,
        #[serde(default)]
        icon: Option<String>,
    },
}

impl From<PromptInput> for SuggestedPrompt {
    fn from(input: PromptInput) -> Self {
        match input {
            PromptInput::Text(text) => split_icon(text),
            PromptInput::Full { text, icon } => SuggestedPrompt { text, icon },
        }
    }
}

/// Whether visitors may attach files, and which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Uploads {
    pub enabled: bool,
    /// Most files on one message.
    pub max_files: u32,
    /// Largest file, in megabytes.
    pub max_mb: u32,
    /// MIME types accepted, e.g. `image/png`; the bridge also checks the content matches.
    pub allowed_types: Vec<String>,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads {
            enabled: false,
            max_files: 3,
            max_mb: 10,
            allowed_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "application/pdf",
                "text/plain",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// `POST /sessions/{id}/attachments`: the stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttachmentUploaded {
    pub attachment: crate::AttachmentRef,
}

/// How the chat window looks. Every value is validated by the bridge before it is stored, so a
/// client may put them into CSS custom properties as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Appearance {
    /// Accent color, `#rgb`, `#rrggbb` or `#rrggbbaa`.
    pub primary_color: String,
    /// A CSS font-family list; `None` uses the system font.
    pub font: Option<String>,
    /// Corner radius in pixels (0–32).
    pub radius: u32,
    /// `light`, `dark` or `auto` (follows the visitor's system).
    pub theme: String,
    /// The header icon: an emoji, or an `https:`/`data:image/` URL.
    pub icon: Option<String>,
    /// The header background: a color or a `linear-gradient(…)`.
    pub cover: Option<String>,
}

impl Default for Appearance {
    fn default() -> Self {
        Appearance {
            primary_color: "#3b5bdb".into(),
            font: None,
            radius: 12,
            theme: "auto".into(),
            icon: None,
            cover: None,
        }
    }
}

/// The launcher bubble of the one-line script embed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Launcher {
    /// `bottom-right` or `bottom-left`.
    pub position: String,
    /// An emoji shown on the bubble; `None` uses a chat icon.
    pub icon: Option<String>,
    /// Text next to the bubble, e.g. "Questions?".
    pub label: Option<String>,
    /// Open the chat when the page loads.
    pub open: bool,
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher {
            position: "bottom-right".into(),
            icon: None,
            label: None,
            open: false,
        }
    }
}

/// `POST /interfaces/{slug}/sessions`: create a session, or resume one with `resume_token`.
///
/// With a valid `identity_token` the visitor is a signed-in user of the host site: their active
/// session on this interface is joined (from any device) unless `fresh` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// A JWT the host site signed for its signed-in user (see docs/widget.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<String>,
    /// Start a new session even when the signed-in visitor has an active one (the widget's
    /// "New conversation").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionCreated {
    pub session_id: String,
    pub session_token: String,
    pub resume_token: String,
    pub visitor_id: String,
    /// True when an existing session was opened: the one `resume_token` named, or the signed-in
    /// visitor's active session.
    pub resumed: bool,
    /// The session's history so far (empty for a new session).
    pub messages: Vec<Message>,
    /// Pass as `after` to the first long-poll.
    pub cursor: i64,
}

/// `POST /sessions/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The sender's idempotency key: the same `client_id` again returns the same message.
    pub client_id: String,
    /// The message; may be empty when files are attached.
    #[serde(default)]
    pub text: String,
    /// Ids of files uploaded to this session before, to send with the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// Free-form page context for the agent (page URL, title, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

/// The answer to a send: the stored message (202 Accepted, after commit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageAccepted {
    pub message: Message,
}

/// `GET /sessions/{id}/messages?after=…&wait=…`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageList {
    /// Messages whose latest version is newer than `after`, oldest change first.
    pub messages: Vec<Message>,
    /// Pass as `after` next time.
    pub cursor: i64,
    pub agent_online: bool,
}

#[cfg(test)]
mod tests {
    use super::SuggestedPrompt;

    #[test]
    fn prompts_read_objects_and_plain_strings() {
        let prompts: Vec<SuggestedPrompt> = serde_json::from_str(
            r#"[{"text": "Refunds", "icon": "💶"}, "📦 Where is my order?", "¿Qué tal?",
                "Plain", "👩‍💻 Talk to a developer"]"#,
        )
        .unwrap();
        let pairs: Vec<(&str, Option<&str>)> = prompts
            .iter()
            .map(|p| (p.text.as_str(), p.icon.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("Refunds", Some("💶")),
                ("Where is my order?", Some("📦")),
                ("¿Qué tal?", None),
                ("Plain", None),
                ("Talk to a developer", Some("👩‍💻")),
            ]
        );
        assert_eq!(
            serde_json::to_value(&prompts[3]).unwrap(),
            serde_json::json!({"text": "Plain"})
        );
    }
}
