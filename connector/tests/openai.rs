//! The `openai` agent against a fake OpenAI-compatible server (a real HTTP server on
//! `127.0.0.1:0`) and, end to end, a real bridge: streamed tokens reach the visitor, the system
//! prompt carries the widget's context, and failures are retried or dead-lettered as they should.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_bridge::testing::TestBridge;
use airlock_connector::agent::OpenAiAgent;
use airlock_connector::config::{AgentKind, OpenAiOptions, Secret};
use airlock_connector::{Agent, AgentRequest, Config, DeltaSink};
use airlock_shared::admin::{DeadLetter, List};
use airlock_shared::connector::SessionContext;
use airlock_shared::visitor::{MessageAccepted, MessageList, SessionCreated};
use airlock_shared::{Message, MessageStatus, Role, time_from_millis};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use common::{Visitor, http_client, init_logging, replies_in_transcript, spawn_connector, stop};

/// Pause between two streamed chunks: slow enough that the visitor's long-poll sees the reply grow.
const CHUNK_DELAY: Duration = Duration::from_millis(60);

/// Every context tag the widget fills.
const PROMPT: &str = "You help visitors of {interface_title}. They are on {page_url} \
                      ({page_title}), came from {referrer}, speak {locale}. Visitor {visitor_id}. \
                      Today is {date}.";

/// What the fake server does with one request.
#[derive(Debug, Clone)]
enum Answer {
    /// Streams each piece as a chunk, `CHUNK_DELAY` apart, then a finish chunk and `[DONE]`.
    Stream(Vec<&'static str>),
    /// Streams the pieces, then drops the connection: no finish, no `[DONE]`.
    CutOff(Vec<&'static str>),
    /// Ignores `stream` and answers one JSON completion.
    Whole(&'static str),
    /// An error status with a JSON body.
    Status(u16, Value),
    /// A 200 web page, as a wrong base URL or a proxy's login page gives.
    Page,
}

/// One request the fake server received.
#[derive(Debug, Clone)]
struct Seen {
    body: Value,
    authorization: Option<String>,
}

#[derive(Clone)]
struct FakeState {
    answers: Arc<Vec<Answer>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// An OpenAI-compatible server answering `POST /v1/chat/completions` with `answers` in turn (the
/// last one again once they run out).
struct FakeAgent {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    async fn start(answers: Vec<Answer>) -> FakeAgent {
        assert!(!answers.is_empty());
        let state = FakeState {
            answers: Arc::new(answers),
            seen: Arc::default(),
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

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn chat_completions(
    State(state): State<FakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).expect("the request body is JSON");
    let answer = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            body,
            authorization: headers
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned()),
        });
        state.answers[(seen.len() - 1).min(state.answers.len() - 1)].clone()
    };
    match answer {
        Answer::Stream(pieces) => {
            let mut events: Vec<String> = pieces.into_iter().map(chunk).collect();
            events.push(format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            ));
            events.push("data: [DONE]\n\n".into());
            sse(events.into_iter().map(Ok).collect())
        }
        Answer::CutOff(pieces) => {
            let mut events: Vec<Result<String, std::io::Error>> =
                pieces.into_iter().map(|p| Ok(chunk(p))).collect();
            // A body error makes the server abort the connection mid-answer.
            events.push(Err(std::io::Error::other("the model server crashed")));
            sse(events)
        }
        Answer::Whole(text) => axum::Json(json!({
            "id": "cmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
        }))
        .into_response(),
        Answer::Page => axum::response::Html("<html><body>Welcome</body></html>").into_response(),
        Answer::Status(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
    }
}

/// One streamed completion chunk carrying `content`.
fn chunk(content: &str) -> String {
    let chunk = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    });
    format!("data: {chunk}\n\n")
}

/// An event-stream response sending `events` `CHUNK_DELAY` apart.
fn sse(events: Vec<Result<String, std::io::Error>>) -> Response {
    let body = futures_util::stream::iter(events).then(|event| async move {
        tokio::time::sleep(CHUNK_DELAY).await;
        event
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

/// A connector using the `openai` agent at `fake`, with every context tag in its system prompt.
fn openai_config(bridge: &TestBridge, key: String, fake: &FakeAgent) -> Config {
    let mut config = Config::new(&bridge.url, key);
    config.agent = AgentKind::Openai;
    config.openai.openai_base_url = fake.base_url();
    config.openai.openai_model = Some("test-model".into());
    config.prompt.system_prompt = Some(PROMPT.into());
    config.claim_wait = 5;
    config
}

/// The role and content of each chat message the fake server received in `body`.
fn chat_of(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tokens_reach_the_visitor_and_history_goes_with_the_next_message() {
    init_logging();
    let first: Vec<&str> = vec![
        "We ", "sell ", "hand", "made ", "tea", "pots, ", "cups ", "and ", "loose ", "leaf.",
    ];
    let second: Vec<&str> = vec!["From ", "12 ", "euros."];
    let fake = FakeAgent::start(vec![
        Answer::Stream(first.clone()),
        Answer::Stream(second.clone()),
    ])
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("openai").await;
    let mut config = openai_config(&bridge, key, &fake);
    config.openai.openai_api_key = Some(Secret::new("sk-test-key"));
    config.openai.openai_temperature = Some(0.25);
    config.openai.openai_max_tokens = Some(200);
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "What do you sell?").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;
    let first_text = first.concat();
    assert_eq!(versions.last().unwrap().text, first_text);
    let partial = versions
        .iter()
        .find(|m| {
            m.status == MessageStatus::Streaming && !m.text.is_empty() && m.text != first_text
        })
        .unwrap_or_else(|| panic!("no partial streaming state seen: {versions:?}"));
    assert!(
        first_text.starts_with(&partial.text),
        "partial text {:?} is not a prefix",
        partial.text
    );

    let sent_again = visitor.send("c2", "And the price?").await;
    let versions = visitor
        .reply_versions(&sent_again.id, Duration::from_secs(30))
        .await;
    assert_eq!(versions.last().unwrap().text, second.concat());

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for request in &requests {
        assert_eq!(request.body["stream"], json!(true));
        assert_eq!(request.body["model"], json!("test-model"));
        assert_eq!(request.body["temperature"], json!(0.25));
        assert_eq!(request.body["max_tokens"], json!(200));
        assert_eq!(request.authorization.as_deref(), Some("Bearer sk-test-key"));
    }
    let chat = chat_of(&requests[1].body);
    assert_eq!(chat[0].0, "system");
    assert_eq!(
        chat[1..],
        pairs(&[
            ("user", "What do you sell?"),
            ("assistant", &first_text),
            ("user", "And the price?"),
        ])
    );

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_prompt_carries_the_context_the_widget_sent() {
    init_logging();
    let fake = FakeAgent::start(vec![Answer::Stream(vec!["Bonjour !"])]).await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("openai").await;
    let (shutdown, handle) = spawn_connector(openai_config(&bridge, key, &fake));
    let day_before = chrono::Utc::now().format("%Y-%m-%d").to_string();

    // The widget's own calls, with the page context `Visitor::open` leaves out.
    let http = http_client();
    let response = http
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({
            "page_url": "https://shop.example/pricing",
            "page_title": "Pricing",
            "referrer": "https://search.example/?q=x",
            "locale": "fr-FR",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "opening a session");
    let session: SessionCreated = response.json().await.unwrap();
    let response = http
        .post(format!(
            "{}/api/v1/sessions/{}/messages",
            bridge.url, session.session_id
        ))
        .bearer_auth(&session.session_token)
        .json(&json!({"client_id": "c1", "text": "Combien ça coûte ?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "sending a message");
    let sent = response.json::<MessageAccepted>().await.unwrap().message;

    let mut cursor = session.cursor;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = 'answered: loop {
        let list: MessageList = http
            .get(format!(
                "{}/api/v1/sessions/{}/messages?after={cursor}&wait=10",
                bridge.url, session.session_id
            ))
            .bearer_auth(&session.session_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cursor = list.cursor;
        for m in list.messages {
            if m.reply_to.as_deref() == Some(sent.id.as_str())
                && matches!(m.status, MessageStatus::Complete | MessageStatus::Failed)
            {
                break 'answered m;
            }
        }
        assert!(Instant::now() < deadline, "no settled reply within 30 s");
    };
    assert_eq!(reply.status, MessageStatus::Complete, "{reply:?}");
    assert_eq!(reply.text, "Bonjour !");
    let day_after = chrono::Utc::now().format("%Y-%m-%d").to_string();

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let chat = chat_of(&requests[0].body);
    assert_eq!(chat[0].0, "system");
    // The day may turn while the test runs; either side of midnight is right.
    let expected = |day: &str| {
        format!(
            "You help visitors of Airlock demo. They are on https://shop.example/pricing \
             (Pricing), came from https://search.example/?q=x, speak fr-FR. Visitor {}. \
             Today is {day}.",
            session.visitor_id
        )
    };
    assert!(
        chat[0].1 == expected(&day_before) || chat[0].1 == expected(&day_after),
        "system prompt: {:?}",
        chat[0].1
    );
    assert_eq!(chat[1..], pairs(&[("user", "Combien ça coûte ?")]));

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_off_mid_way_is_retried_and_only_the_second_answer_is_shown() {
    init_logging();
    let fake = FakeAgent::start(vec![
        Answer::CutOff(vec!["The first ", "attempt ", "breaks"]),
        Answer::Stream(vec!["Second ", "attempt ", "wins."]),
    ])
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("openai").await;
    let (shutdown, handle) = spawn_connector(openai_config(&bridge, key, &fake));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Tell me something").await;
    // The bridge waits a second before offering a failed message again.
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;
    assert_eq!(versions.last().unwrap().text, "Second attempt wins.");

    assert_eq!(fake.requests().len(), 2);
    let replies = replies_in_transcript(&bridge, &visitor.session_id, &sent.id).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].status, MessageStatus::Complete);
    assert_eq!(replies[0].text, "Second attempt wins.");

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answering_500_is_asked_again_and_its_second_answer_is_shown() {
    init_logging();
    let fake = FakeAgent::start(vec![
        Answer::Status(500, json!({"error": {"message": "upstream overloaded"}})),
        Answer::Stream(vec!["Fine ", "now."]),
    ])
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("openai").await;
    let (shutdown, handle) = spawn_connector(openai_config(&bridge, key, &fake));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Hello?").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;
    assert_eq!(versions.last().unwrap().text, "Fine now.");

    assert_eq!(fake.requests().len(), 2);
    let replies = replies_in_transcript(&bridge, &visitor.session_id, &sent.id).await;
    assert_eq!(replies.len(), 1, "{replies:?}");

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answering_400_is_dead_lettered_at_once_with_its_reason() {
    init_logging();
    let fake = FakeAgent::start(vec![Answer::Status(
        400,
        json!({"error": {
            "message": "This model's maximum context length is 8 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded"
        }}),
    )])
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("openai").await;
    let (shutdown, handle) = spawn_connector(openai_config(&bridge, key, &fake));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "A very long question").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = 'settled: loop {
        for m in visitor.poll(5).await {
            if m.reply_to.as_deref() == Some(sent.id.as_str())
                && matches!(m.status, MessageStatus::Complete | MessageStatus::Failed)
            {
                break 'settled m;
            }
        }
        assert!(Instant::now() < deadline, "no settled reply within 20 s");
    };
    assert_eq!(reply.status, MessageStatus::Failed, "{reply:?}");
    assert!(
        reply.error.as_deref().is_some_and(|e| !e.is_empty()),
        "the visitor gets an explanation: {reply:?}"
    );
    assert_eq!(fake.requests().len(), 1, "a 400 is not asked again");

    let response = http_client()
        .get(format!("{}/api/v1/admin/dead-letters", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let dead: List<DeadLetter> = response.json().await.unwrap();
    let item = dead
        .items
        .iter()
        .find(|d| d.message.id == sent.id)
        .unwrap_or_else(|| panic!("{} is not in the dead-letter list: {dead:?}", sent.id));
    assert_eq!(item.attempts, 1);
    let last_error = item.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("400") && last_error.contains("maximum context length is 8 tokens"),
        "last_error: {last_error:?}"
    );

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

/// A visitor message for calling the agent directly.
fn request(text: &str) -> AgentRequest {
    let now = time_from_millis(0);
    AgentRequest {
        attachments: Vec::new(),
        message: Message {
            id: "m1".into(),
            seq: 1,
            rev: 1,
            role: Role::User,
            text: text.into(),
            html: None,
            status: MessageStatus::Processing,
            client_id: Some("c1".into()),
            reply_to: None,
            error: None,
            attachments: Vec::new(),
            created_at: now,
            updated_at: now,
        },
        session: SessionContext {
            id: "s1".into(),
            interface: "demo".into(),
            interface_title: "Airlock demo".into(),
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
        history: Vec::new(),
        attempt: 1,
        system_prompt: None,
    }
}

fn agent_at(base_url: String, api_key: Option<&str>) -> OpenAiAgent {
    OpenAiAgent::new(&OpenAiOptions {
        openai_base_url: base_url,
        openai_model: Some("test-model".into()),
        openai_api_key: api_key.map(Secret::new),
        ..OpenAiOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let agent = agent_at(format!("http://{addr}/v1"), None);
    let (sink, _deltas) = DeltaSink::channel();
    let started = Instant::now();
    let error = agent.respond(&request("hi"), &sink).await.unwrap_err();
    assert!(error.retryable, "{error:?}");
    assert!(
        error.message.starts_with("cannot reach the agent at "),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_server_that_ignores_stream_is_answered_with_its_whole_completion() {
    let fake = FakeAgent::start(vec![Answer::Whole("All at once.")]).await;
    let agent = agent_at(fake.base_url(), None);
    let (sink, mut deltas) = DeltaSink::channel();
    let reply = agent.respond(&request("hi"), &sink).await.unwrap();
    assert_eq!(reply.text, "All at once.");
    drop(sink);
    assert_eq!(deltas.recv().await.as_deref(), Some("All at once."));
    assert_eq!(fake.requests()[0].authorization, None);
}

#[tokio::test]
async fn a_refused_key_is_permanent_and_never_shown_back() {
    let fake = FakeAgent::start(vec![Answer::Status(
        401,
        json!({"error": {"message": "Incorrect API key provided: sk-secret-123", "type": "invalid_request_error"}}),
    )])
    .await;
    let agent = agent_at(fake.base_url(), Some("sk-secret-123"));
    let (sink, _deltas) = DeltaSink::channel();
    let error = agent.respond(&request("hi"), &sink).await.unwrap_err();
    assert!(!error.retryable, "{error:?}");
    assert!(error.message.contains("401"), "{error}");
    assert!(error.message.contains("Incorrect API key"), "{error}");
    assert!(!error.message.contains("sk-secret-123"), "{error}");
}

#[tokio::test]
async fn rate_limiting_is_retryable() {
    let fake = FakeAgent::start(vec![Answer::Status(
        429,
        json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
    )])
    .await;
    let agent = agent_at(fake.base_url(), None);
    let (sink, _deltas) = DeltaSink::channel();
    let error = agent.respond(&request("hi"), &sink).await.unwrap_err();
    assert!(error.retryable, "{error:?}");
    assert_eq!(
        error.message,
        "the agent answered 429 Too Many Requests: Rate limit reached"
    );
}

#[tokio::test]
async fn a_web_page_instead_of_the_api_is_permanent_and_names_the_setting() {
    let fake = FakeAgent::start(vec![Answer::Page]).await;
    let agent = agent_at(fake.base_url(), None);
    let (sink, _deltas) = DeltaSink::channel();
    let error = agent.respond(&request("hi"), &sink).await.unwrap_err();
    assert!(!error.retryable, "{error:?}");
    assert!(error.message.contains("AIRLOCK_OPENAI_BASE_URL"), "{error}");
}
