//! HTTP helpers for the tests that talk to a running bridge: a client, the error-envelope
//! assertion, a reader for Server-Sent Events, and a visitor and a connector speaking raw HTTP
//! (a test adds its own methods to them in its own `impl` block).

use airlock_bridge::testing::TestBridge;
use airlock_shared::connector::ClaimResponse;
use airlock_shared::visitor::{MessageList, SessionCreated};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A client with the process's TLS provider installed.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Asserts a response is the JSON error envelope with this status and code; returns the message.
pub async fn assert_error(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status, "for code {code}");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    message.to_string()
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Reads SSE events from a streaming response body.
pub struct SseReader {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut data_lines = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data_lines.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data_lines.is_empty() {
                    continue; // a keep-alive comment
                }
                event.data = data_lines.join("\n");
                return Some(event);
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A visitor with an open session.
#[derive(Clone)]
pub struct Visitor {
    pub http: reqwest::Client,
    pub base: String,
    pub session: SessionCreated,
}

impl Visitor {
    /// Opens a session on the interface `slug` of the bridge at `bridge_url`.
    pub async fn open(bridge_url: &str, slug: &str) -> Visitor {
        let http = http();
        let response = http
            .post(format!("{bridge_url}/api/v1/interfaces/{slug}/sessions"))
            .json(&json!({"page_url": "https://shop.example/pricing"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        Visitor {
            http,
            base: bridge_url.to_string(),
            session: response.json().await.unwrap(),
        }
    }

    /// The URL of `tail` under this visitor's session.
    pub fn url(&self, tail: &str) -> String {
        format!(
            "{}/api/v1/sessions/{}/{tail}",
            self.base, self.session.session_id
        )
    }

    pub async fn send(&self, client_id: &str, text: &str) -> reqwest::Response {
        self.http
            .post(self.url("messages"))
            .bearer_auth(&self.session.session_token)
            .json(&json!({"client_id": client_id, "text": text}))
            .send()
            .await
            .unwrap()
    }

    /// One long-poll: the messages after `after`, waiting up to `wait` seconds.
    pub async fn poll(&self, after: i64, wait: u64) -> MessageList {
        let response = self
            .http
            .get(self.url(&format!("messages?after={after}&wait={wait}")))
            .bearer_auth(&self.session.session_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

/// A connector talking raw HTTP to one bridge, with a key of its own.
#[derive(Clone)]
pub struct Connector {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Connector {
    pub async fn new(bridge: &TestBridge, name: &str) -> Connector {
        Connector {
            http: http(),
            base: bridge.url.clone(),
            key: bridge.connector_key(name).await,
        }
    }

    /// `POST /api/v1/connector/{path}` with `body`.
    pub async fn call(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/connector/{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Claims up to `max` items, waiting up to `wait` seconds, with 30 s leases.
    pub async fn claim_up_to(&self, max: u32, wait: u64) -> ClaimResponse {
        let response = self
            .call("claim", json!({"max": max, "wait": wait, "lease_secs": 30}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}
