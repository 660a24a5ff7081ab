//! The fake agent: an OpenAI-compatible server that streams `re: <text>` in a few chunks,
//! records every request, and in scenario D misbehaves by a fixed rule on the text.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Clone)]
struct AgentState {
    /// The last user message of every request, in the order received.
    seen: Arc<Mutex<Vec<String>>>,
    chunk_delay: Duration,
    /// Scenario D: misbehave by `fault_of` the message text.
    faults: bool,
    /// Scenario D: told the `Authorization` header of the connector to kill once an "answer
    /// twice" message has been streamed completely (all but the final `[DONE]`).
    kill: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// What the fake agent does with a message in scenario D, by a fixed rule on its text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// HTTP 500 the first time, an answer the second time.
    ErrorOnce,
    /// Never answers the first time (past the connector's agent timeout), then answers.
    HangOnce,
    /// The whole answer the first time but no `[DONE]`; the test kills that connector, the lease
    /// runs out and the item is delivered again and answered again.
    AnswerTwice,
    /// HTTP 503 every time: dead-lettered after `AIRLOCK_MAX_ATTEMPTS` deliveries.
    AlwaysFail,
}

/// One of each fault per visitor: `(visitor + message) % 8` picks it.
pub fn fault_of(text: &str) -> Option<Fault> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let v: usize = words.get(1)?.parse().ok()?;
    let m: usize = words.get(3)?.parse().ok()?;
    match (v + m) % 8 {
        0 => Some(Fault::ErrorOnce),
        1 => Some(Fault::HangOnce),
        2 => Some(Fault::AnswerTwice),
        3 => Some(Fault::AlwaysFail),
        _ => None,
    }
}

/// An OpenAI-compatible server that answers "re: <text>" in a few streamed chunks.
pub struct FakeAgent {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    pub async fn start(chunk_delay: Duration) -> FakeAgent {
        FakeAgent::start_with(chunk_delay, false, None).await
    }

    pub async fn start_with(
        chunk_delay: Duration,
        faults: bool,
        kill: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> FakeAgent {
        let state = AgentState {
            seen: Arc::default(),
            chunk_delay,
            faults,
            kill,
        };
        let seen = state.seen.clone();
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeAgent { addr, seen, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn chat_completions(
    State(state): State<AgentState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).expect("the request body is JSON");
    let text = body["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let calls = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(text.clone());
        seen.iter().filter(|t| **t == text).count()
    };
    let fault = if state.faults { fault_of(&text) } else { None };
    let failure = |status: u16| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"error": {"message": "injected fault"}}).to_string(),
            ))
            .unwrap()
    };
    match fault {
        Some(Fault::ErrorOnce) if calls == 1 => return failure(500),
        Some(Fault::AlwaysFail) => return failure(503),
        // Dropped when the connector gives up and closes the connection.
        Some(Fault::HangOnce) if calls == 1 => std::future::pending::<()>().await,
        _ => {}
    }
    let reply = reply_to(&text);
    let mut events: Vec<String> = reply
        .split_inclusive(' ')
        .map(|piece| {
            let chunk = json!({
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]
            });
            format!("data: {chunk}\n\n")
        })
        .collect();
    events.push(format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    let delay = state.chunk_delay;
    let chunks = futures_util::stream::iter(events).then(move |event| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(event)
    });
    let body = if fault == Some(Fault::AnswerTwice) && calls == 1 {
        // The whole answer and its finish, then no `[DONE]`: the connector waits for it until
        // the test kills the connector.
        let kill = state.kill.clone().expect("a kill channel in scenario D");
        let caller = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let tail = futures_util::stream::once(async move {
            let _ = kill.send(caller);
            std::future::pending::<Result<String, std::io::Error>>().await
        });
        Body::from_stream(chunks.chain(tail))
    } else {
        let done = futures_util::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>("data: [DONE]\n\n".to_owned())
        });
        Body::from_stream(chunks.chain(done))
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(body)
        .unwrap()
}

pub fn reply_to(text: &str) -> String {
    format!("re: {text}")
}

pub fn message_text(visitor: usize, message: usize) -> String {
    format!("visitor {visitor} message {message} of the fault test")
}
