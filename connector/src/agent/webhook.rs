//! The webhook agent: POSTs each visitor message as JSON to a URL (n8n, Make, your own service)
//! and streams what comes back to the visitor.
//!
//! # Request
//!
//! `POST {webhook_url}` with `Content-Type: application/json`,
//! `Accept: application/json, application/x-ndjson, text/event-stream` and, when configured,
//! `Authorization: {webhook_auth}`. The body depends on the format:
//!
//! - `airlock`: the payload documented in `payload.rs` —
//!   `{message, session, history, context, system_prompt, attempt}`.
//! - `n8n`: what the n8n Chat Trigger expects from its own chat widget, plus the system prompt:
//!   `{"action": "sendMessage", "sessionId": session.id, "chatInput": message.text,
//!   "systemPrompt": string|null, "metadata": {message_id, attempt, id, interface,
//!   interface_title, visitor_id, visitor_name?, page_url?, page_title?, referrer?, locale?,
//!   context?}}` (`metadata` is the session as in the airlock format, plus the message id and
//!   attempt).
//!
//! # Response
//!
//! Whatever the format asked for, every answer below is understood; the `Content-Type` decides,
//! and when it is missing or not a JSON or event-stream type the body is sniffed.
//!
//! - **One JSON value**: `{"text": "…"}` (or `"reply"` / `"output"`, n8n's key), the same inside
//!   an array (`[{"output": "…"}]`, n8n's "all items"), or a plain JSON string. Shown at once.
//! - **Streamed lines** (NDJSON: `application/x-ndjson`, `application/jsonl`, or n8n's streaming,
//!   which says `application/json` and writes one object per line): n8n's
//!   `{"type": "begin"}`, `{"type": "item", "content": "…"}`, `{"type": "end"}`,
//!   `{"type": "error", "content": "…"}`, or airlock's `{"delta": "…"}` with an optional last
//!   `{"text": "…"}` that replaces the concatenated deltas. Each line is shown as it arrives.
//! - **Server-sent events** (`text/event-stream`): each `data:` is one of the JSON lines above, a
//!   JSON string, or plain text taken as a delta. `data: [DONE]` or an `end` item ends the answer.
//! - **Plain text** (`text/plain` or no type) that is not JSON: the body is the reply.
//!
//! In any of them `{"error": "…", "retry": true|false}` fails the attempt (`retry` defaults to
//! true), as does an n8n `error` item (retried).
//!
//! # Failures
//!
//! No connection, a timeout, a reset, or an answer that breaks off before its end: retried.
//! HTTP 5xx, 429 and 408: retried. Any other 4xx: dead-lettered at once, with the status and the
//! start of the body. An empty reply: retried. A JSON answer with no reply in it, or an HTML page:
//! dead-lettered (a mismatched workflow answers the same way every time).

use std::time::Duration;

use airlock_shared::connector::SessionContext;
use anyhow::Context;
use async_trait::async_trait;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use super::payload::{AgentPayload, PayloadAttachment};
use super::{Agent, AgentError, AgentReply, AgentRequest, DeltaSink};
use crate::config::{WebhookFormat, WebhookOptions};
use crate::text::{cause_chain, snippet};

/// Every answer shape the agent understands, most structured first.
const ACCEPTED: &str = "application/json, application/x-ndjson, text/event-stream";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes kept of an answer that is read whole (or of one streamed line): a reply is text for
/// a chat window, and a runaway body must not take the connector's memory with it.
const MAX_BODY_BYTES: usize = 4 << 20;
/// How much of an error body is read for the error message.
const ERROR_BODY_BYTES: usize = 2048;

/// POSTs each message to one URL in one format.
pub struct WebhookAgent {
    http: reqwest::Client,
    url: Url,
    format: WebhookFormat,
    /// Marked sensitive, so it never shows in `Debug` output.
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for WebhookAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is left out too: n8n's webhook URLs are often the only secret guarding them.
        f.debug_struct("WebhookAgent")
            .field("format", &self.format)
            .field("auth", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookAgent {
    /// The agent for `options`; fails when the URL is missing or the auth value cannot be sent as
    /// a header.
    pub fn new(options: &WebhookOptions) -> anyhow::Result<WebhookAgent> {
        let url = options.webhook_url.as_deref().context(
            "the webhook agent needs a URL: set AIRLOCK_WEBHOOK_URL or pass --webhook-url",
        )?;
        let url = Url::parse(url).context("AIRLOCK_WEBHOOK_URL is not a URL")?;
        let auth = match &options.webhook_auth {
            Some(secret) => {
                let mut value = HeaderValue::from_str(secret.expose())
                    .context("AIRLOCK_WEBHOOK_AUTH cannot be sent as a header value")?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        crate::bridge::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("airlock-connector/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // A webhook host that vanishes mid-answer is noticed before the agent timeout.
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .context("cannot build the webhook's HTTP client")?;
        Ok(WebhookAgent {
            http,
            url,
            format: options.webhook_format,
            auth,
        })
    }

    fn body(&self, request: &AgentRequest) -> Result<Vec<u8>, serde_json::Error> {
        match self.format {
            WebhookFormat::Airlock => serde_json::to_vec(&AgentPayload::new(request)),
            WebhookFormat::N8n => serde_json::to_vec(&N8nRequest::new(request)),
        }
    }
}

#[async_trait]
impl Agent for WebhookAgent {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        let body = self
            .body(request)
            .map_err(|e| AgentError::permanent(format!("cannot encode the webhook body: {e}")))?;
        let mut post = self
            .http
            .post(self.url.clone())
            .header(ACCEPT, ACCEPTED)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = &self.auth {
            post = post.header(AUTHORIZATION, auth.clone());
        }
        let mut response = post.send().await.map_err(|e| {
            AgentError::retryable(format!("cannot reach the webhook: {}", describe(e)))
        })?;
        let status = response.status();
        if !status.is_success() {
            let mut start = Vec::new();
            // The error body only decorates the message; a broken one does not change the verdict.
            while start.len() < ERROR_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => start.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            return Err(status_error(status, &snippet(&start)));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(media_type);
        let body = response.bytes_stream().map_err(reqwest::Error::without_url);
        let text = read_answer(content_type.as_deref(), body, sink).await?;
        Ok(AgentReply { text })
    }
}

/// The n8n Chat Trigger's body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct N8nRequest<'a> {
    action: &'static str,
    session_id: &'a str,
    chat_input: &'a str,
    system_prompt: Option<&'a str>,
    metadata: N8nMetadata<'a>,
}

#[derive(Debug, Serialize)]
struct N8nMetadata<'a> {
    message_id: &'a str,
    attempt: u32,
    attachments: Vec<PayloadAttachment<'a>>,
    #[serde(flatten)]
    session: &'a SessionContext,
}

impl<'a> N8nRequest<'a> {
    fn new(request: &'a AgentRequest) -> N8nRequest<'a> {
        N8nRequest {
            action: "sendMessage",
            session_id: &request.session.id,
            chat_input: &request.message.text,
            system_prompt: request.system_prompt.as_deref(),
            metadata: N8nMetadata {
                message_id: &request.message.id,
                attempt: request.attempt,
                attachments: PayloadAttachment::all(request),
                session: &request.session,
            },
        }
    }
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json_type(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/json" | "application/x-ndjson" | "application/jsonl" | "application/ndjson"
    ) || media_type.ends_with("+json")
}

/// How an answer body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    EventStream,
    /// JSON (one value or one per line) or plain text.
    Lines,
}

/// Decides from the media type and, when that says nothing useful, the body's first bytes.
fn body_kind(media_type: Option<&str>, start: &[u8]) -> BodyKind {
    match media_type {
        Some("text/event-stream") => BodyKind::EventStream,
        Some(t) if is_json_type(t) => BodyKind::Lines,
        // Missing, `text/plain`, `application/octet-stream`, …: servers that stream events
        // without saying so are common enough to look.
        _ => {
            let first_line = start.trim_ascii_start().split(|&b| b == b'\n').next();
            let sse = first_line.is_some_and(|line| {
                [&b"data:"[..], b"event:", b"id:", b"retry:", b":"]
                    .iter()
                    .any(|field| line.starts_with(field))
            });
            if sse {
                BodyKind::EventStream
            } else {
                BodyKind::Lines
            }
        }
    }
}

/// Reads a 2xx answer, pushing reply text to `sink` as it arrives; returns the final text.
async fn read_answer<S, B, E>(
    media_type: Option<&str>,
    body: S,
    sink: &DeltaSink,
) -> Result<String, AgentError>
where
    S: Stream<Item = Result<B, E>> + Send,
    B: AsRef<[u8]>,
    E: std::error::Error + Send + 'static,
{
    let mut body = Box::pin(body.map_ok(|chunk| chunk.as_ref().to_vec()));
    // Enough of the body to sniff its kind: up to the first byte that is not blank.
    let mut start = Vec::new();
    while start.iter().all(u8::is_ascii_whitespace) {
        match body.next().await {
            Some(Ok(chunk)) => start.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(broken_off(&e)),
            None => break,
        }
    }
    let kind = body_kind(media_type, &start);
    tracing::debug!(?media_type, ?kind, "reading the webhook's answer");
    let body = futures_util::stream::iter([Ok(start)]).chain(body);
    let mut answer = Answer::default();
    match kind {
        BodyKind::EventStream => read_event_stream(body, &mut answer, sink).await?,
        BodyKind::Lines => read_lines(body, media_type, &mut answer, sink).await?,
    }
    answer.finish(sink)
}

/// A body of JSON lines, one JSON value (possibly pretty-printed), or plain text. The first line
/// that is not blank decides: a stream item means NDJSON, anything else means read it whole.
async fn read_lines<S, E>(
    mut body: S,
    media_type: Option<&str>,
    answer: &mut Answer,
    sink: &DeltaSink,
) -> Result<(), AgentError>
where
    S: Stream<Item = Result<Vec<u8>, E>> + Unpin,
    E: std::error::Error + 'static,
{
    let mut lines = LineSplitter::default();
    let mut reader = LineReader::default();
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                for line in lines.push(&chunk) {
                    reader.line(&line, answer, sink)?;
                }
                if lines.pending() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
            }
            // n8n writes `end` once its workflow is done; what happens to the connection after
            // that does not change the answer.
            Some(Err(e)) if answer.ended => {
                tracing::debug!(error = %cause_chain(&e), "the webhook's connection broke after the end of its answer");
                break;
            }
            Some(Err(e)) => return Err(broken_off(&e)),
            None => break,
        }
    }
    if let Some(line) = lines.finish() {
        reader.line(&line, answer, sink)?;
    }
    reader.finish(media_type, answer)
}

/// A `text/event-stream` body.
async fn read_event_stream<S, E>(
    body: S,
    answer: &mut Answer,
    sink: &DeltaSink,
) -> Result<(), AgentError>
where
    S: Stream<Item = Result<Vec<u8>, E>> + Unpin,
    E: std::error::Error + 'static,
{
    let mut events = body.eventsource();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(e)) if answer.ended => {
                tracing::debug!(error = %cause_chain(&e), "the webhook's connection broke after the end of its answer");
                break;
            }
            Err(EventStreamError::Transport(e)) => return Err(broken_off(&e)),
            Err(e) => {
                return Err(AgentError::permanent(format!(
                    "the webhook's event stream is malformed: {e}"
                )));
            }
        };
        if event.event == "error" {
            return Err(AgentError::retryable(format!(
                "the webhook reported an error: {}",
                event.data
            )));
        }
        match event_item(&event.data) {
            Some(Item::End) => {
                answer.ended = true;
                break;
            }
            Some(item) => answer.apply(item, sink)?,
            None => tracing::debug!(data = %event.data, "ignoring an event the webhook sent"),
        }
    }
    Ok(())
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// n8n: a node starts answering.
    Begin,
    /// Reply text to append.
    Delta(String),
    /// The whole reply, replacing whatever the deltas added up to.
    Text(String),
    /// n8n: a node finished answering; `[DONE]` in an event stream.
    End,
    Error {
        message: String,
        retryable: bool,
    },
}

/// Reads a streamed JSON value (n8n's or airlock's shapes); `None` for anything else.
fn item(value: &Value) -> Option<Item> {
    let object = value.as_object()?;
    let text_of = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(kind) = object.get("type").and_then(Value::as_str) {
        return match kind {
            "begin" => Some(Item::Begin),
            "item" => Some(Item::Delta(text_of("content").unwrap_or_default())),
            "end" => Some(Item::End),
            "error" => Some(Item::Error {
                message: text_of("content").unwrap_or_else(|| "the workflow failed".to_owned()),
                retryable: true,
            }),
            _ => None,
        };
    }
    if let Some(delta) = text_of("delta") {
        return Some(Item::Delta(delta));
    }
    if let Some(error) = object.get("error").filter(|e| !e.is_null()) {
        let message = match error {
            Value::String(message) => message.clone(),
            Value::Object(fields) => match fields.get("message").and_then(Value::as_str) {
                Some(message) => message.to_owned(),
                None => error.to_string(),
            },
            other => other.to_string(),
        };
        return Some(Item::Error {
            message,
            retryable: object.get("retry").and_then(Value::as_bool).unwrap_or(true),
        });
    }
    ["text", "reply", "output"]
        .into_iter()
        .find_map(text_of)
        .map(Item::Text)
}

/// The reply in an answer read whole: a string, an object with the reply, or an array whose first
/// element is one of those.
fn whole_reply(value: &Value) -> Option<Item> {
    match value {
        Value::String(text) => Some(Item::Text(text.clone())),
        Value::Array(values) => values.first().and_then(whole_reply),
        Value::Object(_) => match item(value)? {
            Item::Delta(text) => Some(Item::Text(text)),
            Item::Begin | Item::End => None,
            other => Some(other),
        },
        _ => None,
    }
}

/// The item in one event's `data`; `None` when it is JSON of no known shape.
fn event_item(data: &str) -> Option<Item> {
    if data.trim() == "[DONE]" {
        return Some(Item::End);
    }
    match serde_json::from_str::<Value>(data) {
        Ok(Value::String(text)) => Some(Item::Delta(text)),
        Ok(value @ (Value::Object(_) | Value::Array(_))) => item(&value),
        // Plain-text deltas: a bare `42` or `true` is a word of the reply, not JSON.
        _ => Some(Item::Delta(data.to_owned())),
    }
}

/// The answer as read so far.
#[derive(Debug, Default)]
struct Answer {
    /// Every delta pushed, in order.
    streamed: String,
    final_text: Option<String>,
    /// The answer said it is complete, so a connection breaking afterwards loses nothing.
    ended: bool,
}

impl Answer {
    fn apply(&mut self, item: Item, sink: &DeltaSink) -> Result<(), AgentError> {
        match item {
            Item::Begin => self.ended = false,
            Item::Delta(delta) => {
                self.streamed.push_str(&delta);
                sink.push(delta);
            }
            Item::Text(text) => self.final_text = Some(text),
            Item::End => self.ended = true,
            Item::Error { message, retryable } => {
                return Err(AgentError {
                    message: format!("the webhook reported an error: {message}"),
                    retryable,
                });
            }
        }
        Ok(())
    }

    /// The final text; shown at once when nothing was streamed.
    fn finish(self, sink: &DeltaSink) -> Result<String, AgentError> {
        let nothing_streamed = self.streamed.is_empty();
        let text = self.final_text.unwrap_or(self.streamed);
        if text.trim().is_empty() {
            return Err(AgentError::retryable("the webhook gave an empty reply"));
        }
        if nothing_streamed {
            sink.push(text.clone());
        }
        Ok(text)
    }
}

/// Splits a byte stream into lines (without `\n` or `\r\n`), whatever the chunk boundaries.
/// Works on bytes, so a UTF-8 character split across chunks arrives whole.
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The lines `chunk` completes.
    fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(line);
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        lines
    }

    /// Bytes of the line not yet ended.
    fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The last line, when the body did not end with a newline.
    fn finish(self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then_some(self.partial)
    }
}

/// Whether the lines of a body are a stream of items or one value read whole.
#[derive(Debug, Default)]
struct LineReader {
    mode: LineMode,
    /// The body so far, for an answer read whole.
    whole: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LineMode {
    /// Only blank lines so far.
    #[default]
    Undecided,
    Stream,
    Whole,
}

impl LineReader {
    fn line(
        &mut self,
        line: &[u8],
        answer: &mut Answer,
        sink: &DeltaSink,
    ) -> Result<(), AgentError> {
        let blank = line.trim_ascii().is_empty();
        match self.mode {
            LineMode::Undecided if blank => self.keep(line),
            LineMode::Undecided => match json_values(line) {
                Some(values) if values.first().and_then(item).is_some() => {
                    self.mode = LineMode::Stream;
                    self.apply(values, answer, sink)
                }
                _ => {
                    self.mode = LineMode::Whole;
                    self.keep(line)
                }
            },
            LineMode::Stream if blank => Ok(()),
            LineMode::Stream => match json_values(line) {
                Some(values) => self.apply(values, answer, sink),
                None => {
                    tracing::debug!(line = %snippet(line), "ignoring a line of the webhook's answer that is not JSON");
                    Ok(())
                }
            },
            LineMode::Whole => self.keep(line),
        }
    }

    fn apply(
        &self,
        values: Vec<Value>,
        answer: &mut Answer,
        sink: &DeltaSink,
    ) -> Result<(), AgentError> {
        for value in values {
            match item(&value) {
                Some(item) => answer.apply(item, sink)?,
                None => tracing::debug!(%value, "ignoring a line the webhook sent"),
            }
        }
        Ok(())
    }

    fn keep(&mut self, line: &[u8]) -> Result<(), AgentError> {
        if self.whole.len() + line.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        self.whole.extend_from_slice(line);
        self.whole.push(b'\n');
        Ok(())
    }

    /// Reads the body kept whole, once it is complete.
    fn finish(self, media_type: Option<&str>, answer: &mut Answer) -> Result<(), AgentError> {
        if self.mode != LineMode::Whole {
            return Ok(());
        }
        let body = &self.whole;
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => match whole_reply(&value) {
                Some(Item::Text(text)) => {
                    answer.final_text = Some(text);
                    Ok(())
                }
                Some(Item::Error { message, retryable }) => Err(AgentError {
                    message: format!("the webhook reported an error: {message}"),
                    retryable,
                }),
                _ => Err(AgentError::permanent(format!(
                    "the webhook's JSON answer holds no reply (expected \"text\", \"reply\" or \"output\"): {}",
                    snippet(body)
                ))),
            },
            Err(_) if media_type.is_some_and(is_json_type) => Err(AgentError::permanent(format!(
                "the webhook's answer is not valid JSON: {}",
                snippet(body)
            ))),
            Err(_) if media_type == Some("text/html") => Err(AgentError::permanent(format!(
                "the webhook answered with an HTML page, not a reply: {}",
                snippet(body)
            ))),
            Err(_) => {
                answer.final_text = Some(String::from_utf8_lossy(body).trim_end().to_owned());
                Ok(())
            }
        }
    }
}

/// The JSON values on one line: usually one, but some servers write several objects back to back
/// without a newline between them. `None` when the line is not JSON.
fn json_values(line: &[u8]) -> Option<Vec<Value>> {
    let values = serde_json::Deserializer::from_slice(line)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!values.is_empty()).then_some(values)
}

fn status_error(status: StatusCode, body: &str) -> AgentError {
    AgentError::from_status("the webhook", status, Some(body))
}

fn broken_off(error: &(dyn std::error::Error + 'static)) -> AgentError {
    AgentError::retryable(format!(
        "the webhook's answer broke off: {}",
        cause_chain(error)
    ))
}

fn too_large() -> AgentError {
    AgentError::permanent(format!(
        "the webhook's answer is larger than {} MiB",
        MAX_BODY_BYTES >> 20
    ))
}

/// A send error for the dead-letter list: the cause chain, without the URL (it may be secret).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        format!("timed out ({})", cause_chain(&error))
    } else {
        cause_chain(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::payload::tests::request;
    use serde_json::json;

    /// Reads `chunks` as a body of `media_type`; returns the outcome and the deltas pushed.
    async fn read(
        media_type: Option<&str>,
        chunks: &[&str],
    ) -> (Result<String, AgentError>, Vec<String>) {
        read_with_end(media_type, chunks, None).await
    }

    /// Like [`read`], with the connection failing after the chunks when `broken` is set.
    async fn read_with_end(
        media_type: Option<&str>,
        chunks: &[&str],
        broken: Option<&str>,
    ) -> (Result<String, AgentError>, Vec<String>) {
        let mut items: Vec<Result<Vec<u8>, std::io::Error>> =
            chunks.iter().map(|c| Ok(c.as_bytes().to_vec())).collect();
        if let Some(why) = broken {
            items.push(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                why.to_owned(),
            )));
        }
        let (sink, mut rx) = DeltaSink::channel();
        let result = read_answer(media_type, futures_util::stream::iter(items), &sink).await;
        drop(sink);
        let mut deltas = Vec::new();
        while let Some(delta) = rx.recv().await {
            deltas.push(delta);
        }
        (result, deltas)
    }

    #[test]
    fn lines_are_split_across_chunk_boundaries() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(b"{\"a\":").is_empty());
        assert_eq!(splitter.push(b"1}\r\n{\"b\""), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(
            splitter.push(b":2}\n\nt\xc3"),
            vec![b"{\"b\":2}".to_vec(), Vec::new()]
        );
        assert!(splitter.push(b"\xa9").is_empty());
        assert_eq!(splitter.pending(), 3);
        assert_eq!(splitter.finish(), Some("té".as_bytes().to_vec()));
    }

    #[test]
    fn n8n_stream_items_are_read() {
        assert_eq!(
            item(&json!({"type": "begin", "metadata": {}})),
            Some(Item::Begin)
        );
        assert_eq!(
            item(&json!({"type": "item", "content": "Hel", "metadata": {"nodeId": "x"}})),
            Some(Item::Delta("Hel".into()))
        );
        assert_eq!(item(&json!({"type": "end"})), Some(Item::End));
        assert_eq!(
            item(&json!({"type": "error", "content": "model down"})),
            Some(Item::Error {
                message: "model down".into(),
                retryable: true
            })
        );
        assert_eq!(item(&json!({"type": "something-new"})), None);
    }

    #[test]
    fn airlock_stream_items_are_read() {
        assert_eq!(
            item(&json!({"delta": "Hi"})),
            Some(Item::Delta("Hi".into()))
        );
        assert_eq!(
            item(&json!({"text": "Hi all"})),
            Some(Item::Text("Hi all".into()))
        );
        assert_eq!(item(&json!({"reply": "r"})), Some(Item::Text("r".into())));
        assert_eq!(item(&json!({"output": "o"})), Some(Item::Text("o".into())));
        assert_eq!(
            item(&json!({"error": "bad input", "retry": false})),
            Some(Item::Error {
                message: "bad input".into(),
                retryable: false
            })
        );
        assert_eq!(
            item(&json!({"error": null, "text": "fine"})),
            Some(Item::Text("fine".into()))
        );
        assert_eq!(item(&json!({"message": "Workflow was started"})), None);
        assert_eq!(item(&json!("just a string")), None);
    }

    #[test]
    fn whole_replies_come_as_object_array_or_string() {
        assert_eq!(
            whole_reply(&json!({"output": "o"})),
            Some(Item::Text("o".into()))
        );
        assert_eq!(
            whole_reply(&json!([{"output": "o"}])),
            Some(Item::Text("o".into()))
        );
        assert_eq!(whole_reply(&json!("s")), Some(Item::Text("s".into())));
        assert_eq!(whole_reply(&json!([])), None);
        assert_eq!(whole_reply(&json!(42)), None);
    }

    #[test]
    fn event_data_may_be_json_or_plain_text() {
        assert_eq!(event_item("[DONE]"), Some(Item::End));
        assert_eq!(
            event_item(r#"{"delta":"a"}"#),
            Some(Item::Delta("a".into()))
        );
        assert_eq!(
            event_item(r#""quoted""#),
            Some(Item::Delta("quoted".into()))
        );
        assert_eq!(
            event_item("plain words"),
            Some(Item::Delta("plain words".into()))
        );
        assert_eq!(event_item("42"), Some(Item::Delta("42".into())));
        assert_eq!(event_item(r#"{"unknown":1}"#), None);
    }

    #[test]
    fn body_kind_follows_the_content_type_then_sniffs() {
        assert_eq!(
            body_kind(Some("text/event-stream"), b"{}"),
            BodyKind::EventStream
        );
        assert_eq!(
            body_kind(Some("application/json"), b"data: x"),
            BodyKind::Lines
        );
        assert_eq!(body_kind(None, b"\n data: x\n\n"), BodyKind::EventStream);
        assert_eq!(
            body_kind(Some("text/plain"), b"event: delta\n"),
            BodyKind::EventStream
        );
        assert_eq!(body_kind(None, b"{\"text\":\"x\"}"), BodyKind::Lines);
        assert_eq!(
            body_kind(Some("text/plain"), b"Data: is lowercase"),
            BodyKind::Lines
        );
        assert_eq!(
            media_type("Application/JSON; charset=utf-8"),
            "application/json"
        );
    }

    #[tokio::test]
    async fn a_json_reply_is_shown_whole_once() {
        for (media_type, body) in [
            (Some("application/json"), r#"{"output": "Hello!"}"#),
            (Some("application/json"), r#"[{"output": "Hello!"}]"#),
            (Some("application/json"), "{\n  \"text\": \"Hello!\"\n}\n"),
            (Some("application/json"), r#""Hello!""#),
            (None, r#"{"reply": "Hello!"}"#),
            (Some("text/plain"), "Hello!\n"),
        ] {
            let (result, deltas) = read(media_type, &[body]).await;
            assert_eq!(result.unwrap(), "Hello!", "{body}");
            assert_eq!(deltas, ["Hello!"], "{body}");
        }
    }

    #[tokio::test]
    async fn n8n_streaming_sent_as_application_json_is_streamed_line_by_line() {
        let (result, deltas) = read(
            Some("application/json"),
            &[
                "{\"type\":\"begin\",\"metadata\":{}}\n{\"type\":\"item\",\"con",
                "tent\":\"Hel\"}\n",
                "{\"type\":\"item\",\"content\":\"lo\"}\n{\"type\":\"end\"}\n",
            ],
        )
        .await;
        assert_eq!(result.unwrap(), "Hello");
        assert_eq!(deltas, ["Hel", "lo"]);
    }

    #[tokio::test]
    async fn objects_written_back_to_back_on_one_line_are_all_read() {
        let (result, deltas) = read(
            Some("application/json"),
            &[r#"{"type":"begin"}{"type":"item","content":"a"}{"type":"item","content":"b"}{"type":"end"}"#],
        )
        .await;
        assert_eq!(result.unwrap(), "ab");
        assert_eq!(deltas, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_final_text_line_replaces_the_deltas() {
        let (result, deltas) = read(
            Some("application/x-ndjson"),
            &["{\"delta\":\"draft\"}\n{\"text\":\"Final.\"}\n"],
        )
        .await;
        assert_eq!(result.unwrap(), "Final.");
        assert_eq!(deltas, ["draft"]);
    }

    #[tokio::test]
    async fn an_n8n_error_item_is_a_retryable_failure() {
        let (result, _) = read(
            Some("application/json"),
            &["{\"type\":\"begin\"}\n{\"type\":\"error\",\"content\":\"model down\"}\n"],
        )
        .await;
        let error = result.unwrap_err();
        assert!(error.retryable);
        assert!(error.message.contains("model down"), "{error}");
    }

    #[tokio::test]
    async fn a_stream_broken_before_its_end_is_retryable_but_after_it_is_not_an_error() {
        let (result, deltas) = read_with_end(
            Some("application/x-ndjson"),
            &["{\"type\":\"begin\"}\n{\"type\":\"item\",\"content\":\"Hel\"}\n"],
            Some("connection reset"),
        )
        .await;
        let error = result.unwrap_err();
        assert!(error.retryable);
        assert!(error.message.contains("connection reset"), "{error}");
        assert_eq!(deltas, ["Hel"]);

        let (result, _) = read_with_end(
            Some("application/x-ndjson"),
            &["{\"type\":\"item\",\"content\":\"Hi\"}\n{\"type\":\"end\"}\n"],
            Some("connection reset"),
        )
        .await;
        assert_eq!(result.unwrap(), "Hi");
    }

    #[tokio::test]
    async fn event_streams_carry_json_or_plain_text_and_stop_at_done() {
        let (result, deltas) = read(
            Some("text/event-stream"),
            &[
                "data: {\"delta\":\"Hel\"}\n\n: keep-alive\n\nda",
                "ta: {\"delta\":\"lo\"}\n\ndata: [DONE]\n\ndata: {\"delta\":\"ignored\"}\n\n",
            ],
        )
        .await;
        assert_eq!(result.unwrap(), "Hello");
        assert_eq!(deltas, ["Hel", "lo"]);

        let (result, deltas) = read(None, &["data: Hello\n\ndata:  world\n\n"]).await;
        assert_eq!(result.unwrap(), "Hello world");
        assert_eq!(deltas, ["Hello", " world"]);
    }

    #[tokio::test]
    async fn an_event_stream_broken_before_its_end_is_retryable() {
        let (result, _) = read_with_end(
            Some("text/event-stream"),
            &["data: {\"delta\":\"Hel\"}\n\n"],
            Some("reset by peer"),
        )
        .await;
        let error = result.unwrap_err();
        assert!(error.retryable);
        assert!(error.message.contains("reset by peer"), "{error}");
    }

    #[tokio::test]
    async fn empty_and_unusable_answers_fail_with_a_reason() {
        let (result, _) = read(Some("application/json"), &[r#"{"output": ""}"#]).await;
        let error = result.unwrap_err();
        assert!(
            error.retryable && error.message.contains("empty reply"),
            "{error}"
        );

        let (result, _) = read(None, &[]).await;
        assert!(result.unwrap_err().message.contains("empty reply"));

        let (result, _) = read(
            Some("application/json"),
            &[r#"{"message":"Workflow was started"}"#],
        )
        .await;
        let error = result.unwrap_err();
        assert!(!error.retryable);
        assert!(error.message.contains("Workflow was started"), "{error}");

        let (result, _) = read(Some("text/html"), &["<html><body>Login</body></html>"]).await;
        assert!(!result.unwrap_err().retryable);

        let (result, _) = read(Some("application/json"), &["{\"text\": \"cut"]).await;
        assert!(!result.unwrap_err().retryable);
    }

    #[test]
    fn statuses_are_sorted_into_retryable_and_permanent() {
        for status in [500, 502, 503, 429, 408] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(status_error(status, "").retryable, "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!status_error(status, "").retryable, "{status}");
        }
        let error = status_error(StatusCode::BAD_REQUEST, "no chatInput");
        assert_eq!(
            error.message,
            "the webhook answered 400 Bad Request: no chatInput"
        );
    }

    #[test]
    fn the_n8n_body_is_what_the_chat_trigger_expects() {
        let request = request("Hello?");
        let body = serde_json::to_value(N8nRequest::new(&request)).unwrap();
        assert_eq!(body["action"], "sendMessage");
        assert_eq!(body["sessionId"], "s1");
        assert_eq!(body["chatInput"], "Hello?");
        assert_eq!(body["systemPrompt"], "Be brief.");
        assert_eq!(body["metadata"]["interface"], "demo");
        assert_eq!(body["metadata"]["visitor_id"], "v1");
        assert_eq!(body["metadata"]["page_url"], "https://example.com/pricing");
        assert_eq!(body["metadata"]["message_id"], "m2");
        assert_eq!(body["metadata"]["attempt"], 2);
        assert_eq!(body["metadata"]["context"], json!({"plan": "pro"}));
    }

    #[tokio::test]
    async fn a_webhook_that_is_not_listening_is_retryable_and_says_why_without_its_url() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let agent = WebhookAgent::new(&WebhookOptions {
            webhook_url: Some(format!("http://127.0.0.1:{port}/secret-path")),
            ..WebhookOptions::default()
        })
        .unwrap();
        let (sink, _rx) = DeltaSink::channel();
        let error = agent.respond(&request("Hi"), &sink).await.unwrap_err();
        assert!(error.retryable, "{error}");
        assert!(error.message.contains("refused"), "{error}");
        assert!(!error.message.contains("secret-path"), "{error}");
    }
}
