//! The `openai` agent: any OpenAI-compatible `POST {base_url}/chat/completions` (OpenAI, Ollama,
//! vLLM, llama.cpp server, LiteLLM, …), asked to stream.
//!
//! Each visitor message becomes one request: the rendered system prompt, the session's history and
//! the visitor's message as chat messages, `stream: true`. Content deltas of the server-sent events
//! are pushed to the visitor as they arrive; a server that ignores `stream` and answers one JSON
//! completion is accepted too.
//!
//! Failures are sorted by whether asking again can help: no connection, a broken or cut-off
//! stream, 5xx, 408 and 429 are retryable (the bridge offers the message again after a back-off);
//! any other 4xx is the provider refusing this request or our configuration (bad key, unknown
//! model, input too long), so the message is dead-lettered at once with the provider's reason.

use std::time::Duration;

use airlock_shared::Role;
use async_trait::async_trait;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use super::{Agent, AgentError, AgentReply, AgentRequest, DeltaSink, retry_helps};
use crate::config::{OpenAiOptions, Secret};
use crate::text::cause_chain;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest piece of a provider's error text kept in a failure message: enough for the reason,
/// short enough for a dead-letter list.
const MAX_DETAIL_CHARS: usize = 300;

/// Answers through an OpenAI-compatible chat completions endpoint, streamed.
#[derive(Debug, Clone)]
pub struct OpenAiAgent {
    http: reqwest::Client,
    endpoint: Url,
    /// The endpoint without credentials or query, for failure messages.
    shown_endpoint: String,
    model: String,
    api_key: Option<Secret>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl OpenAiAgent {
    /// An agent for `options`; fails on a missing model or an unusable base URL.
    pub fn new(options: &OpenAiOptions) -> anyhow::Result<OpenAiAgent> {
        let model = options
            .openai_model
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the openai agent needs a model: set AIRLOCK_OPENAI_MODEL or pass --openai-model"
                )
            })?;
        let base = &options.openai_base_url;
        let mut endpoint = Url::parse(base)
            .map_err(|e| anyhow::anyhow!("AIRLOCK_OPENAI_BASE_URL is not a URL ({e}): {base}"))?;
        endpoint
            .path_segments_mut()
            .map_err(|()| anyhow::anyhow!("AIRLOCK_OPENAI_BASE_URL cannot be a base URL: {base}"))?
            .pop_if_empty()
            .extend(["chat", "completions"]);
        let mut shown = endpoint.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);

        crate::bridge::install_crypto_provider();
        // No overall timeout: the worker bounds each reply with the agent timeout, and a long
        // answer streamed slowly is legitimate.
        let http = reqwest::Client::builder()
            .user_agent(concat!("airlock-connector/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .build()?;
        Ok(OpenAiAgent {
            http,
            endpoint,
            shown_endpoint: shown.to_string(),
            model,
            api_key: options.openai_api_key.clone(),
            temperature: options.openai_temperature,
            max_tokens: options.openai_max_tokens,
        })
    }

    /// One chat completions call for `request`, its content pushed to `sink` as it streams.
    async fn ask(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        let body = ChatRequest {
            model: &self.model,
            messages: chat_messages(request),
            stream: true,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        };
        let mut call = self.http.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key.expose());
        }
        let response = call.send().await.map_err(|e| {
            // reqwest's text repeats the URL; ours is shown without credentials.
            let is_builder = e.is_builder();
            let cause = cause_chain(&e.without_url());
            if is_builder {
                // A key with characters no header may hold, and the like: retrying cannot help.
                AgentError::permanent(format!("cannot build the request to the agent: {cause}"))
            } else {
                AgentError::retryable(format!(
                    "cannot reach the agent at {}: {cause}",
                    self.shown_endpoint
                ))
            }
        })?;

        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(status_error(status, error_detail(&body).as_deref()));
        }

        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|essence| essence.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let text = match content_type.as_str() {
            "application/json" => {
                let body = response.bytes().await.map_err(|e| {
                    AgentError::retryable(format!(
                        "the agent's answer broke off: {}",
                        cause_chain(&e.without_url())
                    ))
                })?;
                let text = parse_completion(&body)?;
                sink.push(text.clone());
                text
            }
            // A web page where the API should be: the base URL is wrong, or a proxy or portal
            // answers instead. Asking again gets the same page.
            "text/html" => {
                return Err(AgentError::permanent(format!(
                    "{} answered with a web page, not a chat completion: check AIRLOCK_OPENAI_BASE_URL",
                    self.shown_endpoint
                )));
            }
            // `text/event-stream`, and anything else: a few servers label their stream loosely.
            _ => read_stream(response.bytes_stream(), sink).await?,
        };
        Ok(AgentReply { text })
    }

    /// Removes the API key from text that came back from the provider, in case it echoes it.
    fn redact(&self, text: String) -> String {
        match &self.api_key {
            Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "<redacted>"),
            _ => text,
        }
    }
}

#[async_trait]
impl Agent for OpenAiAgent {
    fn name(&self) -> &str {
        "openai"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        // Failure messages end up in the dead-letter list; a provider may echo the key back.
        self.ask(request, sink).await.map_err(|mut e| {
            e.message = self.redact(e.message);
            e
        })
    }
}

/// The JSON body of a chat completions request.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: Content<'a>,
}

/// A message's content: plain text, or — for a visitor message with files — parts, the images
/// among them as `image_url` parts (data URLs), which vision models read.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Parts(Vec<Part>),
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct ImageUrl {
    url: String,
}

/// Longest text file put into the conversation, in characters.
const MAX_ATTACHED_TEXT_CHARS: usize = 100_000;

/// The visitor's message with its files: text files inline after the message, images as image
/// parts, anything else named so the model knows it was sent.
fn visitor_content(request: &AgentRequest) -> Content<'_> {
    use base64::Engine;
    if request.attachments.is_empty() {
        return Content::Text(&request.message.text);
    }
    let mut text = request.message.text.clone();
    let mut images = Vec::new();
    for file in &request.attachments {
        let name = &file.reference.filename;
        let kind = file.reference.content_type.as_str();
        if kind.starts_with("image/") {
            let data = base64::engine::general_purpose::STANDARD.encode(&file.data);
            images.push(Part::ImageUrl {
                image_url: ImageUrl {
                    url: format!("data:{kind};base64,{data}"),
                },
            });
        } else if kind.starts_with("text/") {
            let body: String = String::from_utf8_lossy(&file.data)
                .chars()
                .take(MAX_ATTACHED_TEXT_CHARS)
                .collect();
            text.push_str(&format!("\n\n--- {name} ---\n{body}"));
        } else {
            text.push_str(&format!(
                "\n\n[The visitor attached {name} ({kind}, {} bytes), which cannot be shown here.]",
                file.reference.size
            ));
        }
    }
    let mut parts = vec![Part::Text {
        text: text.trim_start().to_string(),
    }];
    parts.extend(images);
    Content::Parts(parts)
}

/// The conversation as the model sees it: the system prompt, the earlier visitor and assistant
/// messages, then the visitor's message.
fn chat_messages(request: &AgentRequest) -> Vec<ChatMessage<'_>> {
    let system = request
        .system_prompt
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|content| ChatMessage {
            role: "system",
            content: Content::Text(content),
        });
    // System and event messages of the session are for the visitor's window, not the model; an
    // empty message (an attachment alone, a cleared reply) would only confuse some servers.
    let history = request.history.iter().filter_map(|m| {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System | Role::Event => return None,
        };
        (!m.text.is_empty()).then_some(ChatMessage {
            role,
            content: Content::Text(&m.text),
        })
    });
    let visitor = ChatMessage {
        role: "user",
        content: visitor_content(request),
    };
    system
        .into_iter()
        .chain(history)
        .chain(std::iter::once(visitor))
        .collect()
}

/// Reads a server-sent events answer, pushing each piece of content to `sink` as it arrives, and
/// returns the whole reply.
async fn read_stream<S, B, E>(bytes: S, sink: &DeltaSink) -> Result<String, AgentError>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::error::Error + 'static,
{
    let mut events = bytes.eventsource();
    let mut text = String::new();
    let mut finish_reason: Option<String> = None;
    let mut not_json = 0usize;
    let mut done = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(e)) => {
                return Err(AgentError::retryable(format!(
                    "the agent's stream ended early: {}",
                    cause_chain(&e)
                )));
            }
            Err(e @ (EventStreamError::Utf8(_) | EventStreamError::Parser(_))) => {
                return Err(AgentError::permanent(format!(
                    "the agent's answer is not a readable event stream: {e}"
                )));
            }
        };
        match parse_event(&event.event, &event.data) {
            StreamEvent::Done => {
                done = true;
                break;
            }
            StreamEvent::Chunk {
                content,
                finish_reason: reason,
            } => {
                if let Some(content) = content {
                    sink.push(content.clone());
                    text.push_str(&content);
                }
                // Usage or trailing chunks may follow the finish; keep reading up to [DONE] or
                // the end of the answer.
                finish_reason = reason.or(finish_reason);
            }
            StreamEvent::Error(e) => return Err(e),
            StreamEvent::NotJson => {
                // Some proxies interleave their own keep-alive payloads; they carry no content.
                not_json += 1;
                tracing::debug!(data = %truncate(&event.data), "skipping a non-JSON event from the agent");
            }
        }
    }
    if !done && finish_reason.is_none() {
        // The server or a proxy closed the answer mid-way: asking again gives a whole reply, and
        // the bridge clears the partial one before the next attempt streams.
        return Err(AgentError::retryable(format!(
            "the agent's stream ended early, without [DONE] or a finish_reason (after {} characters)",
            text.chars().count()
        )));
    }
    if text.is_empty() {
        return Err(empty_reply(finish_reason.as_deref(), not_json));
    }
    Ok(text)
}

/// What one event of the stream means.
#[derive(Debug, PartialEq, Eq)]
enum StreamEvent {
    /// `data: [DONE]`: the answer is over.
    Done,
    /// A completion chunk: maybe some content, maybe the reason the completion ended.
    Chunk {
        content: Option<String>,
        finish_reason: Option<String>,
    },
    /// The server reported an error in the stream.
    Error(AgentError),
    /// Data that is not JSON; it cannot carry content.
    NotJson,
}

fn parse_event(event: &str, data: &str) -> StreamEvent {
    if data.trim() == "[DONE]" {
        return StreamEvent::Done;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return StreamEvent::NotJson;
    };
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return StreamEvent::Error(in_band_error(error));
    }
    if event == "error" {
        return StreamEvent::Error(in_band_error(&value));
    }
    let choice = value.pointer("/choices/0");
    // `delta` is the streaming shape; `message` is what a server that sends a whole completion
    // as one event uses.
    let content = choice
        .and_then(|c| {
            c.pointer("/delta/content")
                .or_else(|| c.pointer("/message/content"))
        })
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let finish_reason = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    StreamEvent::Chunk {
        content,
        finish_reason,
    }
}

/// The reply of a server that answered with one JSON completion instead of a stream.
fn parse_completion(body: &[u8]) -> Result<String, AgentError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        AgentError::permanent(format!("the agent's answer is not a chat completion: {e}"))
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(in_band_error(error));
    }
    let choice = value.pointer("/choices/0");
    let text = choice
        .and_then(|c| c.pointer("/message/content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if text.is_empty() {
        let reason = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str);
        return Err(empty_reply(reason, 0));
    }
    Ok(text.to_owned())
}

fn empty_reply(finish_reason: Option<&str>, not_json: usize) -> AgentError {
    match finish_reason {
        // The provider's filter will most likely withhold the same answer again.
        Some("content_filter") => {
            AgentError::permanent("the agent's content filter withheld the reply")
        }
        _ if not_json > 0 => AgentError::retryable(format!(
            "the agent sent an empty reply ({not_json} events were not JSON)"
        )),
        _ => AgentError::retryable("the agent sent an empty reply"),
    }
}

/// An error the server reported inside a 200 answer (`{"error": {...}}`). Usually an overloaded
/// or crashed backend, so retryable — unless it carries a 4xx code or says the request itself is
/// invalid.
fn in_band_error(error: &Value) -> AgentError {
    let message = error_message(error).unwrap_or_else(|| truncate(&error.to_string()));
    let code = ["code", "status_code", "status"]
        .iter()
        .filter_map(|k| error.get(k))
        .find_map(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok());
    let invalid_request =
        error.get("type").and_then(Value::as_str) == Some("invalid_request_error");
    let text = format!("the agent reported an error: {message}");
    let permanent = invalid_request || code.is_some_and(|c| c.is_client_error() && !retry_helps(c));
    if permanent {
        AgentError::permanent(text)
    } else {
        AgentError::retryable(text)
    }
}

fn status_error(status: StatusCode, detail: Option<&str>) -> AgentError {
    AgentError::from_status("the agent", status, detail)
}

/// The provider's reason from an error body: OpenAI's `{"error": {"message"}}`, or the plainer
/// shapes other servers use (`{"error": "…"}`, `{"message"}`, `{"detail"}`), or a short plain-text
/// body. An HTML error page says nothing an operator needs.
fn error_detail(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            error_message(value.get("error").unwrap_or(&value)).or_else(|| error_message(&value))
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            (!text.is_empty() && !text.starts_with('<')).then(|| truncate(text))
        }
    }
}

fn error_message(error: &Value) -> Option<String> {
    if let Some(text) = error.as_str() {
        return (!text.is_empty()).then(|| truncate(text));
    }
    ["message", "detail", "error"]
        .iter()
        .filter_map(|k| error.get(k))
        .find_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(truncate)
}

fn truncate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_shared::connector::SessionContext;
    use airlock_shared::{Message, MessageStatus, time_from_millis};
    use serde_json::json;

    fn message(role: Role, text: &str) -> Message {
        Message {
            id: format!("m-{text}"),
            seq: 1,
            rev: 1,
            role,
            text: text.into(),
            html: None,
            status: MessageStatus::Complete,
            client_id: None,
            reply_to: None,
            error: None,
            attachments: Vec::new(),
            created_at: time_from_millis(0),
            updated_at: time_from_millis(0),
        }
    }

    fn request(text: &str, history: Vec<Message>, system_prompt: Option<&str>) -> AgentRequest {
        AgentRequest {
            attachments: Vec::new(),
            message: message(Role::User, text),
            session: SessionContext {
                id: "s1".into(),
                interface: "demo".into(),
                interface_title: "Demo".into(),
                visitor_name: None,
                visitor_user_id: None,
                visitor_email: None,
                visitor_id: "v1".into(),
                page_url: None,
                page_title: None,
                referrer: None,
                locale: None,
                context: None,
                system_prompt: None,
                agent_context: None,
            },
            history,
            attempt: 1,
            system_prompt: system_prompt.map(str::to_owned),
        }
    }

    #[test]
    fn attached_images_become_image_parts_and_text_files_join_the_message() {
        let mut request = request("What is this?", Vec::new(), None);
        let file = |name: &str, kind: &str, data: &[u8]| crate::agent::Attachment {
            reference: airlock_shared::AttachmentRef {
                id: format!("att_{name}"),
                filename: name.into(),
                content_type: kind.into(),
                size: data.len() as u64,
            },
            data: data.to_vec(),
        };
        request.attachments = vec![
            file("a.png", "image/png", b"\x89PNG"),
            file("notes.txt", "text/plain", b"line one"),
            file("doc.pdf", "application/pdf", b"%PDF-1.7"),
        ];
        let body = serde_json::to_value(chat_messages(&request)).unwrap();
        let parts = &body[0]["content"];
        assert_eq!(parts[0]["type"], "text");
        let text = parts[0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("What is this?\n\n--- notes.txt ---\nline one"),
            "{text}"
        );
        assert!(
            text.contains("doc.pdf (application/pdf, 8 bytes)"),
            "{text}"
        );
        assert_eq!(parts[1]["type"], "image_url");
        assert_eq!(
            parts[1]["image_url"]["url"],
            "data:image/png;base64,iVBORw=="
        );
        // Without files the content stays a plain string.
        request.attachments.clear();
        let body = serde_json::to_value(chat_messages(&request)).unwrap();
        assert_eq!(body[0]["content"], "What is this?");
    }

    fn pairs(messages: &[ChatMessage<'_>]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| match &m.content {
                Content::Text(text) => (m.role.to_owned(), (*text).to_owned()),
                Content::Parts(_) => (m.role.to_owned(), "<parts>".to_owned()),
            })
            .collect()
    }

    fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn messages_are_system_prompt_then_history_then_the_visitor_message() {
        let history = vec![
            message(Role::User, "hi"),
            message(Role::Event, "visitor opened the page"),
            message(Role::Assistant, "hello!"),
            message(Role::System, "agent offline"),
            message(Role::Assistant, ""),
            message(Role::User, "prices?"),
        ];
        let request = request("and for teams?", history, Some("Be brief."));
        assert_eq!(
            pairs(&chat_messages(&request)),
            owned(&[
                ("system", "Be brief."),
                ("user", "hi"),
                ("assistant", "hello!"),
                ("user", "prices?"),
                ("user", "and for teams?"),
            ])
        );
    }

    #[test]
    fn no_or_empty_system_prompt_sends_no_system_message() {
        for prompt in [None, Some("")] {
            let request = request("hi", Vec::new(), prompt);
            assert_eq!(pairs(&chat_messages(&request)), owned(&[("user", "hi")]));
        }
    }

    #[test]
    fn the_body_asks_to_stream_and_leaves_out_unset_options() {
        let request = request("hi", Vec::new(), None);
        let mut body = ChatRequest {
            model: "m",
            messages: chat_messages(&request),
            stream: true,
            temperature: None,
            max_tokens: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true})
        );
        body.temperature = Some(0.5);
        body.max_tokens = Some(64);
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(value["temperature"], json!(0.5));
        assert_eq!(value["max_tokens"], json!(64));
    }

    #[test]
    fn chunks_give_their_content_and_finish_reason() {
        let chunk = |content: Value, finish: Value| {
            json!({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
                .to_string()
        };
        assert_eq!(
            parse_event("", &chunk(json!("Hel"), Value::Null)),
            StreamEvent::Chunk {
                content: Some("Hel".into()),
                finish_reason: None
            }
        );
        assert_eq!(
            parse_event("", &chunk(Value::Null, json!("stop"))),
            StreamEvent::Chunk {
                content: None,
                finish_reason: Some("stop".into())
            }
        );
        // The role-only first chunk and a usage-only last chunk carry nothing to show.
        let role_only = json!({"choices": [{"delta": {"role": "assistant"}}]}).to_string();
        let usage_only = json!({"choices": [], "usage": {"total_tokens": 3}}).to_string();
        for data in [role_only, usage_only] {
            assert_eq!(
                parse_event("", &data),
                StreamEvent::Chunk {
                    content: None,
                    finish_reason: None
                }
            );
        }
        assert_eq!(parse_event("", "[DONE]"), StreamEvent::Done);
        assert_eq!(parse_event("", " [DONE] "), StreamEvent::Done);
        assert_eq!(parse_event("", "keep-alive"), StreamEvent::NotJson);
    }

    #[test]
    fn errors_in_the_stream_are_retryable_unless_they_say_the_request_is_wrong() {
        let cases = [
            (json!({"error": {"message": "overloaded"}}), true),
            (json!({"error": {"message": "boom", "code": 500}}), true),
            (
                json!({"error": {"message": "slow down", "code": "429"}}),
                true,
            ),
            (json!({"error": "backend crashed"}), true),
            (json!({"error": {"message": "bad", "code": 400}}), false),
            (
                json!({"error": {"message": "too long", "type": "invalid_request_error"}}),
                false,
            ),
        ];
        for (data, retryable) in cases {
            let StreamEvent::Error(e) = parse_event("", &data.to_string()) else {
                panic!("{data} is not an error");
            };
            assert_eq!(e.retryable, retryable, "{data}: {e}");
            assert!(
                e.message.starts_with("the agent reported an error: "),
                "{e}"
            );
        }
        let StreamEvent::Error(e) = parse_event("error", r#"{"message":"gone"}"#) else {
            panic!("an `error` event is an error");
        };
        assert_eq!(e.message, "the agent reported an error: gone");
    }

    #[test]
    fn statuses_are_retryable_only_where_asking_again_can_help() {
        for (status, retryable) in [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (401, false),
            (404, false),
            (422, false),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_error(status, None).retryable, retryable, "{status}");
        }
        let e = status_error(StatusCode::BAD_REQUEST, Some("model not found"));
        assert_eq!(
            e.message,
            "the agent answered 400 Bad Request: model not found"
        );
    }

    #[test]
    fn error_details_come_from_the_usual_error_shapes() {
        let openai = br#"{"error":{"message":"Invalid model","type":"invalid_request_error"}}"#;
        assert_eq!(error_detail(openai).as_deref(), Some("Invalid model"));
        assert_eq!(
            error_detail(br#"{"error":"model 'x' not found"}"#).as_deref(),
            Some("model 'x' not found")
        );
        assert_eq!(
            error_detail(br#"{"detail":"Not Found"}"#).as_deref(),
            Some("Not Found")
        );
        assert_eq!(
            error_detail(b"upstream timed out\n").as_deref(),
            Some("upstream timed out")
        );
        assert_eq!(error_detail(b"<html><body>502</body></html>"), None);
        assert_eq!(error_detail(b""), None);
        let long = "x".repeat(1000);
        assert_eq!(
            error_detail(long.as_bytes()).unwrap().chars().count(),
            MAX_DETAIL_CHARS + 1
        );
    }

    #[test]
    fn a_whole_json_completion_is_accepted() {
        let body = json!({"choices": [{"message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}]});
        assert_eq!(
            parse_completion(body.to_string().as_bytes()).unwrap(),
            "Hi!"
        );
        let empty = json!({"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]});
        let e = parse_completion(empty.to_string().as_bytes()).unwrap_err();
        assert!(e.retryable && e.message.contains("empty reply"), "{e:?}");
        let filtered =
            json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]});
        assert!(
            !parse_completion(filtered.to_string().as_bytes())
                .unwrap_err()
                .retryable
        );
        assert!(!parse_completion(b"<html>").unwrap_err().retryable);
    }

    /// Feeds `pieces` as the body of a streamed answer.
    async fn stream_of(
        pieces: Vec<Result<&'static str, std::io::Error>>,
    ) -> (Result<String, AgentError>, Vec<String>) {
        let (sink, mut rx) = DeltaSink::channel();
        let result = read_stream(futures_util::stream::iter(pieces), &sink).await;
        drop(sink);
        let mut deltas = Vec::new();
        while let Some(d) = rx.recv().await {
            deltas.push(d);
        }
        (result, deltas)
    }

    fn sse(content: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"delta": {"content": content}, "finish_reason": null}]})
        )
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[tokio::test]
    async fn a_stream_is_pushed_piece_by_piece_and_concatenated_exactly() {
        let whole = format!(
            "{}{}{}data: [DONE]\n\n",
            sse(" Hel"),
            sse("lo,\n"),
            sse("world ")
        );
        // Split at awkward places: the parser must not care where the bytes break.
        let (a, b) = whole.split_at(17);
        let (b, c) = b.split_at(40);
        let (result, deltas) = stream_of(vec![
            Ok(leak(a.to_owned())),
            Ok(leak(b.to_owned())),
            Ok(leak(c.to_owned())),
        ])
        .await;
        assert_eq!(result.unwrap(), " Hello,\nworld ");
        assert_eq!(deltas, [" Hel", "lo,\n", "world "]);
    }

    #[tokio::test]
    async fn a_finish_reason_without_done_is_a_complete_answer() {
        let finish = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let (result, _) = stream_of(vec![Ok(leak(sse("ok"))), Ok(finish)]).await;
        assert_eq!(result.unwrap(), "ok");
    }

    #[tokio::test]
    async fn a_stream_closed_before_done_is_retryable() {
        let (result, deltas) = stream_of(vec![Ok(leak(sse("partial")))]).await;
        let e = result.unwrap_err();
        assert!(e.retryable, "{e:?}");
        assert!(
            e.message.starts_with("the agent's stream ended early"),
            "{e}"
        );
        assert_eq!(deltas, ["partial"]);

        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let (result, _) = stream_of(vec![Ok(leak(sse("partial"))), Err(broken)]).await;
        let e = result.unwrap_err();
        assert!(e.retryable, "{e:?}");
        assert!(e.message.contains("connection reset"), "{e}");
    }

    #[tokio::test]
    async fn an_empty_stream_is_a_retryable_empty_reply() {
        let (result, _) = stream_of(vec![Ok("data: [DONE]\n\n")]).await;
        let e = result.unwrap_err();
        assert!(e.retryable && e.message.contains("empty reply"), "{e:?}");
    }

    #[tokio::test]
    async fn an_error_event_ends_the_stream_with_its_message() {
        let error = "data: {\"error\":{\"message\":\"model overloaded\"}}\n\n";
        let (result, _) = stream_of(vec![Ok(leak(sse("a"))), Ok(error)]).await;
        let e = result.unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.message, "the agent reported an error: model overloaded");
    }

    #[test]
    fn the_endpoint_is_the_base_url_plus_chat_completions() {
        for base in ["http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1/"] {
            let options = OpenAiOptions {
                openai_base_url: base.into(),
                openai_model: Some("m".into()),
                ..OpenAiOptions::default()
            };
            let agent = OpenAiAgent::new(&options).unwrap();
            assert_eq!(
                agent.endpoint.as_str(),
                "http://127.0.0.1:11434/v1/chat/completions"
            );
        }
        let options = OpenAiOptions {
            openai_base_url: "https://user:pw@api.example/v1?k=1".into(),
            openai_model: Some("m".into()),
            ..OpenAiOptions::default()
        };
        let agent = OpenAiAgent::new(&options).unwrap();
        assert_eq!(
            agent.endpoint.as_str(),
            "https://user:pw@api.example/v1/chat/completions?k=1"
        );
        assert_eq!(
            agent.shown_endpoint,
            "https://api.example/v1/chat/completions"
        );
    }

    #[test]
    fn no_model_is_refused() {
        let options = OpenAiOptions::default();
        assert!(OpenAiAgent::new(&options).is_err());
    }
}
