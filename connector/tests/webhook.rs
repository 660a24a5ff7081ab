//! The `webhook` agent end to end: a real bridge, the connector, and a fake webhook (a real HTTP
//! server on `127.0.0.1:0`) playing n8n or an airlock-format service. The body the webhook gets,
//! JSON / NDJSON / SSE answers reaching the visitor, a slow answer kept alive by lease renewal,
//! and failures retried or dead-lettered as their status says.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_bridge::testing::TestBridge;
use airlock_connector::Config;
use airlock_connector::config::{AgentKind, Secret, WebhookFormat};
use airlock_shared::MessageStatus;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};

use common::{
    Visitor, dead_letters, init_logging, replies_in_transcript, settled_reply, spawn_connector,
    stop,
};

/// Pause between streamed pieces: long enough for the visitor's long-poll to see the reply grow.
const PIECE_DELAY: Duration = Duration::from_millis(250);

type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;
/// What the fake webhook does with its `n`th request (1-based) and the JSON body it got.
type Handler = Arc<dyn Fn(usize, Value) -> Answer + Send + Sync>;

/// One request the fake webhook received.
#[derive(Debug, Clone)]
struct Seen {
    body: Value,
    headers: HeaderMap,
}

#[derive(Clone)]
struct FakeState {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A webhook at `http://127.0.0.1:{port}/hook` answering with `handler`.
struct FakeWebhook {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeWebhook {
    async fn start<F, Fut>(handler: F) -> FakeWebhook
    where
        F: Fn(usize, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let state = FakeState {
            handler: Arc::new(move |n, body| Box::pin(handler(n, body)) as Answer),
            seen: Arc::default(),
        };
        let seen = state.seen.clone();
        let app = Router::new().route("/hook", post(hook)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeWebhook { url, seen, task }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(state): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).expect("the webhook body is JSON");
    let n = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            body: body.clone(),
            headers,
        });
        seen.len()
    };
    (state.handler)(n, body).await
}

/// A 200 whose body is `pieces`, written `PIECE_DELAY` apart, with `content_type`.
fn paced(content_type: &'static str, pieces: Vec<String>) -> Response {
    let body =
        futures_util::stream::iter(pieces.into_iter().enumerate()).then(|(i, piece)| async move {
            if i > 0 {
                tokio::time::sleep(PIECE_DELAY).await;
            }
            Ok::<_, Infallible>(piece)
        });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

fn webhook_config(
    bridge: &TestBridge,
    key: String,
    fake: &FakeWebhook,
    format: WebhookFormat,
) -> Config {
    let mut config = Config::new(&bridge.url, key);
    config.agent = AgentKind::Webhook;
    config.webhook.webhook_url = Some(fake.url.clone());
    config.webhook.webhook_format = format;
    config.claim_wait = 2;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n8n_gets_its_chat_trigger_body_and_its_json_output_reaches_the_visitor() {
    init_logging();
    let fake = FakeWebhook::start(|_, _| async {
        axum::Json(json!({"output": "Hello from n8n!"})).into_response()
    })
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("n8n").await;
    let mut config = webhook_config(&bridge, key, &fake, WebhookFormat::N8n);
    config.webhook.webhook_auth = Some(Secret::new("Bearer hook-secret"));
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "What are your opening hours?").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(20))
        .await;
    assert_eq!(versions.last().unwrap().text, "Hello from n8n!");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(body["action"], "sendMessage");
    assert_eq!(body["sessionId"], visitor.session_id.as_str());
    assert_eq!(body["chatInput"], "What are your opening hours?");
    assert_eq!(body["metadata"]["interface"], "demo");
    assert_eq!(body["metadata"]["message_id"], sent.id.as_str());
    let headers = &requests[0].headers;
    assert_eq!(headers[header::AUTHORIZATION], "Bearer hook-secret");
    let accept = headers[header::ACCEPT].to_str().unwrap();
    assert!(
        [
            "application/json",
            "application/x-ndjson",
            "text/event-stream"
        ]
        .iter()
        .all(|t| accept.contains(t)),
        "Accept: {accept}"
    );

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n8n_streaming_items_reach_the_visitor_as_they_arrive() {
    init_logging();
    let pieces = ["Our ", "shop ", "opens ", "at ", "nine."];
    let fake = FakeWebhook::start(move |_, _| async move {
        let mut lines = vec![json!({"type": "begin", "metadata": {"nodeName": "AI Agent"}})];
        lines.extend(pieces.iter().map(|p| json!({"type": "item", "content": p})));
        lines.push(json!({"type": "end", "metadata": {"nodeName": "AI Agent"}}));
        // n8n streams with this content type, one object per line.
        paced(
            "application/json; charset=utf-8",
            lines.iter().map(|l| format!("{l}\n")).collect(),
        )
    })
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("n8n").await;
    let (shutdown, handle) =
        spawn_connector(webhook_config(&bridge, key, &fake, WebhookFormat::N8n));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "When do you open?").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;

    let full = pieces.concat();
    let last = versions.last().unwrap();
    assert_eq!(last.status, MessageStatus::Complete);
    assert_eq!(last.text, full);
    let partial = versions
        .iter()
        .find(|m| {
            m.status == MessageStatus::Streaming && !m.text.is_empty() && m.text.len() < full.len()
        })
        .unwrap_or_else(|| panic!("no partial streaming state seen: {versions:?}"));
    assert!(full.starts_with(&partial.text), "{partial:?}");

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_airlock_format_carries_the_documented_fields_and_its_event_stream_is_shown() {
    init_logging();
    let fake = FakeWebhook::start(|_, body| async move {
        let text = body["message"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        paced(
            "text/event-stream",
            vec![
                format!("data: {}\n\n", json!({"delta": "You said: "})),
                format!("data: {}\n\n", json!({"delta": text})),
                "data: [DONE]\n\n".to_owned(),
            ],
        )
    })
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("airlock").await;
    let mut config = webhook_config(&bridge, key, &fake, WebhookFormat::Airlock);
    config.prompt.system_prompt = Some("You help the visitors of {interface}.".into());
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let first = visitor.send("c1", "first question").await;
    let versions = visitor
        .reply_versions(&first.id, Duration::from_secs(20))
        .await;
    assert_eq!(versions.last().unwrap().text, "You said: first question");
    let second = visitor.send("c2", "second question").await;
    let versions = visitor
        .reply_versions(&second.id, Duration::from_secs(20))
        .await;
    assert_eq!(versions.last().unwrap().text, "You said: second question");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let body = &requests[0].body;
    assert_eq!(body["message"]["id"], first.id.as_str());
    assert_eq!(body["message"]["text"], "first question");
    assert_eq!(body["session"]["id"], visitor.session_id.as_str());
    assert_eq!(body["session"]["interface"], "demo");
    assert_eq!(body["system_prompt"], "You help the visitors of demo.");
    assert_eq!(body["attempt"], 1);
    assert!(body["context"].is_null(), "no context was sent: {body}");
    assert_eq!(body["history"], json!([]));

    let history: Vec<(String, String)> = requests[1].body["history"]
        .as_array()
        .expect("history is an array")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("user".to_owned(), "first question".to_owned()),
            (
                "assistant".to_owned(),
                "You said: first question".to_owned()
            ),
        ]
    );
    assert_eq!(requests[1].body["message"]["text"], "second question");

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_slower_than_the_lease_keeps_it_and_answers_once() {
    init_logging();
    let fake = FakeWebhook::start(|_, _| async {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        axum::Json(json!({"text": "Sorry for the wait."})).into_response()
    })
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("slow").await;
    let mut config = webhook_config(&bridge, key, &fake, WebhookFormat::Airlock);
    config.lease_secs = 2;
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Take your time").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(20))
        .await;
    assert_eq!(versions.last().unwrap().text, "Sorry for the wait.");

    assert_eq!(fake.requests().len(), 1, "the message was delivered again");
    let replies = replies_in_transcript(&bridge, &visitor.session_id, &sent.id).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].status, MessageStatus::Complete);

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_500_is_asked_again_and_its_second_answer_is_shown_once() {
    init_logging();
    let fake = FakeWebhook::start(|n, _| async move {
        if n == 1 {
            (StatusCode::INTERNAL_SERVER_ERROR, "workflow crashed").into_response()
        } else {
            axum::Json(json!({"text": "Second time lucky."})).into_response()
        }
    })
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("flaky").await;
    let (shutdown, handle) =
        spawn_connector(webhook_config(&bridge, key, &fake, WebhookFormat::Airlock));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Anyone there?").await;
    // The bridge offers a failed message again after a 1 s back-off.
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(20))
        .await;
    assert_eq!(versions.last().unwrap().text, "Second time lucky.");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body["attempt"], 2);
    let replies = replies_in_transcript(&bridge, &visitor.session_id, &sent.id).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].text, "Second time lucky.");

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_400_is_dead_lettered_at_once_with_its_reason() {
    init_logging();
    let fake = FakeWebhook::start(|_, _| async {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "chatInput is missing"})),
        )
            .into_response()
    })
    .await;
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("refusing").await;
    let (shutdown, handle) =
        spawn_connector(webhook_config(&bridge, key, &fake, WebhookFormat::N8n));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Hello?").await;
    let reply = settled_reply(&mut visitor, &sent.id, Duration::from_secs(20)).await;
    assert_eq!(reply.status, MessageStatus::Failed, "{reply:?}");
    assert!(
        reply.error.as_deref().is_some_and(|e| !e.is_empty()),
        "the visitor gets an explanation: {reply:?}"
    );
    assert_eq!(fake.requests().len(), 1, "a 400 is not asked again");

    let dead = dead_letters(&bridge).await;
    let item = dead
        .iter()
        .find(|d| d.message.id == sent.id)
        .unwrap_or_else(|| panic!("{} is not in the dead-letter list: {dead:?}", sent.id));
    assert_eq!(item.attempts, 1);
    let last_error = item.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("400") && last_error.contains("chatInput is missing"),
        "last_error: {last_error:?}"
    );

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}
