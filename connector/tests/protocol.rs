//! What the connector says to the bridge, checked against a recording fake bridge (a real HTTP
//! server on port 0): typing first, coalesced deltas, lease renewal, fencing on 409, failures
//! handed back with their retry flag, claims sized to the free slots, a refused key outlasted.

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_connector::{Agent, AgentError, AgentReply, AgentRequest, Config, DeltaSink};
use airlock_shared::connector::{
    ClaimRequest, ClaimResponse, ClaimedItem, FailOutcome, LeaseExtended, ReplyState,
    SessionContext,
};
use airlock_shared::{ErrorEnvelope, Message, MessageStatus, Role};
use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use common::{init_logging, wait_for};

/// What the fake saw. `Typing` is the visitor shown the agent typing: with the claim, or by a
/// stream call of its own (counted in `typing_calls`).
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Claim {
        max: u32,
    },
    /// Not a request: the fake handed this lease out in a claim answer.
    HandedOut(String),
    Extend(String),
    Typing(String),
    Delta(String, String),
    Reply(String, String),
    Fail {
        lease: String,
        error: String,
        retry: bool,
    },
}

#[derive(Default)]
struct FakeState {
    calls: Mutex<Vec<Call>>,
    queue: Mutex<VecDeque<ClaimedItem>>,
    /// How many more claims to answer with 401.
    refuse_claims: AtomicUsize,
    /// Leases that get 409 on deltas, extend, reply and fail (a newer attempt owns the item).
    superseded: Mutex<HashSet<String>>,
    /// Answer like a bridge from before claims could start replies: `typing` is an unknown field.
    old_bridge: AtomicBool,
    /// How many typing signals came as stream calls of their own (not with the claim).
    typing_calls: AtomicUsize,
}

impl FakeState {
    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

struct FakeBridge {
    url: String,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
    next_id: AtomicUsize,
}

impl FakeBridge {
    async fn start() -> FakeBridge {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/api/v1/connector/claim", routing::post(claim))
            .route(
                "/api/v1/connector/leases/{lease}/{action}",
                routing::post(lease_call),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeBridge {
            url,
            state,
            task,
            next_id: AtomicUsize::new(1),
        }
    }

    /// Queues a visitor message for the next claim; returns its lease id.
    fn offer(&self, text: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let lease_id = format!("lease-{n}");
        let item = ClaimedItem {
            lease_id: lease_id.clone(),
            lease_expires_at: chrono::Utc::now() + chrono::Duration::seconds(30),
            attempt: 1,
            message: message(
                &format!("m{n}"),
                Role::User,
                text,
                MessageStatus::Processing,
            ),
            session: SessionContext {
                visitor_name: None,
                visitor_user_id: None,
                visitor_email: None,
                id: format!("s{n}"),
                interface: "demo".into(),
                interface_title: "Demo".into(),
                visitor_id: format!("v{n}"),
                page_url: None,
                page_title: None,
                referrer: None,
                locale: None,
                context: None,
                system_prompt: None,
                agent_context: None,
            },
            history: Vec::new(),
        };
        self.state.queue.lock().unwrap().push_back(item);
        lease_id
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    fn calls_for(&self, lease: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| match call {
                Call::Claim { .. } => false,
                Call::HandedOut(l) | Call::Extend(l) | Call::Typing(l) => l == lease,
                Call::Delta(l, _) | Call::Reply(l, _) => l == lease,
                Call::Fail { lease: l, .. } => l == lease,
            })
            .collect()
    }

    /// Waits until `pred` holds for the recorded calls.
    async fn wait_until(&self, what: &str, pred: impl Fn(&[Call]) -> bool) {
        wait_for(what, Duration::from_secs(20), || {
            let calls = self.calls();
            let ok = pred(&calls);
            async move { ok.then_some(()) }
        })
        .await;
    }
}

impl Drop for FakeBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn message(id: &str, role: Role, text: &str, status: MessageStatus) -> Message {
    let now = chrono::Utc::now();
    Message {
        id: id.into(),
        seq: 1,
        rev: 1,
        role,
        text: text.into(),
        html: None,
        status,
        client_id: None,
        reply_to: None,
        error: None,
        attachments: Vec::new(),
        created_at: now,
        updated_at: now,
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(ErrorEnvelope::new(code, code.replace('_', " "))),
    )
        .into_response()
}

async fn claim(State(state): State<Arc<FakeState>>, Json(request): Json<ClaimRequest>) -> Response {
    state.record(Call::Claim { max: request.max });
    if request.typing && state.old_bridge.load(Ordering::SeqCst) {
        // What an older bridge's strict body parsing answers.
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ErrorEnvelope::new(
                "invalid_field",
                "Failed to deserialize the JSON body into the target type: unknown field \
                 `typing`, expected one of `max`, `wait`, `lease_secs`, `history` at line 1 \
                 column 70",
            )),
        )
            .into_response();
    }
    let refused = state
        .refuse_claims
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refused {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Hold like the real bridge, but never longer than a second, to keep tests quick.
    let deadline = Instant::now() + Duration::from_secs(request.wait.min(1));
    loop {
        let items: Vec<ClaimedItem> = {
            let mut queue = state.queue.lock().unwrap();
            let n = queue.len().min(request.max as usize);
            queue.drain(..n).collect()
        };
        if !items.is_empty() || Instant::now() >= deadline {
            for item in &items {
                state.record(Call::HandedOut(item.lease_id.clone()));
                if request.typing {
                    // Shown to the visitor with the lease, as the bridge does.
                    state.record(Call::Typing(item.lease_id.clone()));
                }
            }
            return Json(ClaimResponse { items }).into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn lease_call(
    State(state): State<Arc<FakeState>>,
    Path((lease, action)): Path<(String, String)>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let superseded = state.superseded.lock().unwrap().contains(&lease);
    let reply_state = |text: &str, status| {
        Json(ReplyState {
            message: message("a1", Role::Assistant, text, status),
        })
        .into_response()
    };
    match action.as_str() {
        "stream" => {
            if body.get("typing").is_some() {
                state.typing_calls.fetch_add(1, Ordering::SeqCst);
                state.record(Call::Typing(lease));
                return reply_state("", MessageStatus::Streaming);
            }
            let delta = body["text_delta"].as_str().unwrap_or_default().to_owned();
            state.record(Call::Delta(lease, delta.clone()));
            if superseded {
                return error(StatusCode::CONFLICT, "lease_lost");
            }
            reply_state(&delta, MessageStatus::Streaming)
        }
        "extend" => {
            state.record(Call::Extend(lease.clone()));
            if superseded {
                return error(StatusCode::CONFLICT, "lease_lost");
            }
            Json(LeaseExtended {
                lease_id: lease,
                lease_expires_at: chrono::Utc::now() + chrono::Duration::seconds(30),
            })
            .into_response()
        }
        "reply" => {
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            state.record(Call::Reply(lease, text.clone()));
            if superseded {
                return error(StatusCode::CONFLICT, "lease_lost");
            }
            reply_state(&text, MessageStatus::Complete)
        }
        "fail" => {
            let retry = body["retry"].as_bool().unwrap_or(false);
            state.record(Call::Fail {
                lease,
                error: body["error"].as_str().unwrap_or_default().to_owned(),
                retry,
            });
            if superseded {
                return error(StatusCode::CONFLICT, "lease_lost");
            }
            Json(FailOutcome {
                state: if retry { "queued" } else { "dead" }.into(),
                attempts: 1,
                retry_at: None,
            })
            .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

/// Streams the visitor's text back one character at a time, `gap` apart, as a model emits tokens.
struct TokenAgent {
    gap: Duration,
}

#[async_trait]
impl Agent for TokenAgent {
    fn name(&self) -> &str {
        "tokens"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        for c in request.message.text.chars() {
            sink.push(c.to_string());
            tokio::time::sleep(self.gap).await;
        }
        Ok(AgentReply {
            text: request.message.text.clone(),
        })
    }
}

/// Fails every message: retryably when its text says "transient".
struct FailingAgent;

#[async_trait]
impl Agent for FailingAgent {
    fn name(&self) -> &str {
        "failing"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        _sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        if request.message.text.contains("transient") {
            Err(AgentError::retryable("model overloaded"))
        } else {
            Err(AgentError::permanent("input refused"))
        }
    }
}

/// Answers only when the test hands it a permit, so the test decides how long the agent works.
struct GatedAgent {
    gate: Arc<Semaphore>,
}

#[async_trait]
impl Agent for GatedAgent {
    fn name(&self) -> &str {
        "gated"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        _sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        self.gate.acquire().await.expect("gate open").forget();
        Ok(AgentReply {
            text: request.message.text.clone(),
        })
    }
}

/// Runs the connector with `agent` against `fake`; the token stops it.
fn connect(
    fake: &FakeBridge,
    agent: impl Agent + 'static,
    tune: impl FnOnce(&mut Config),
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    init_logging();
    let mut config = Config::for_demo(&fake.url, "test-key");
    config.claim_wait = 1;
    tune(&mut config);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(airlock_connector::run_with_agent(
        config,
        Arc::new(agent),
        shutdown.clone(),
    ));
    (shutdown, handle)
}

async fn stop(shutdown: CancellationToken, handle: tokio::task::JoinHandle<anyhow::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("run returns")
        .unwrap()
        .unwrap();
}

fn is_reply_for(lease: &str) -> impl Fn(&[Call]) -> bool + '_ {
    move |calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Reply(l, _) if l == lease))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_gets_typing_then_a_few_coalesced_deltas_then_its_reply() {
    let fake = FakeBridge::start().await;
    let text = "A reply long enough to come out as two hundred tokens, one character each. \
                Streaming it token by token would mean two hundred requests; the connector \
                batches them into pieces about 30 ms apart, so the bridge commits a few times \
                instead.";
    assert!(text.chars().count() >= 200);
    let lease = fake.offer(text);
    let started = Instant::now();
    let (shutdown, handle) = connect(
        &fake,
        TokenAgent {
            gap: Duration::from_millis(2),
        },
        |_| {},
    );
    fake.wait_until("the reply", is_reply_for(&lease)).await;
    // The whole streaming fitted in this time, so at one call per 30 ms there is a hard limit on
    // the number of calls, however slow the machine.
    let streaming_time = started.elapsed();
    stop(shutdown, handle).await;

    let calls: Vec<Call> = fake
        .calls_for(&lease)
        .into_iter()
        .filter(|c| !matches!(c, Call::Extend(_) | Call::HandedOut(_)))
        .collect();
    assert_eq!(
        calls.first(),
        Some(&Call::Typing(lease.clone())),
        "{calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&Call::Reply(lease.clone(), text.into())),
        "{calls:?}"
    );
    let deltas: Vec<&str> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Delta(_, d) => Some(d.as_str()),
            _ => None,
        })
        .collect();
    // What was still waiting when the agent finished goes with the reply, which has it all.
    assert!(
        text.starts_with(&deltas.concat()),
        "streamed text lost or reordered: {deltas:?}"
    );
    assert!(deltas.len() >= 2, "not streamed: {deltas:?}");
    let most = streaming_time.as_millis() / 30 + 2;
    assert!(
        deltas.len() as u128 <= most,
        "{} stream calls in {streaming_time:?}",
        deltas.len()
    );
    assert!(
        deltas.len() < text.chars().count() / 2,
        "{} stream calls for {} tokens",
        deltas.len(),
        text.chars().count()
    );
    assert_eq!(calls.len(), deltas.len() + 2, "unexpected calls: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_comes_with_the_claim_and_by_a_call_of_its_own_only_from_an_older_bridge() {
    for old_bridge in [false, true] {
        let fake = FakeBridge::start().await;
        fake.state.old_bridge.store(old_bridge, Ordering::SeqCst);
        let first = fake.offer("one");
        let second = fake.offer("two");
        let (shutdown, handle) = connect(
            &fake,
            TokenAgent {
                gap: Duration::from_millis(1),
            },
            |c| c.concurrency = 1,
        );
        fake.wait_until("both replies", |calls| {
            is_reply_for(&first)(calls) && is_reply_for(&second)(calls)
        })
        .await;
        stop(shutdown, handle).await;

        for lease in [&first, &second] {
            let calls: Vec<Call> = fake
                .calls_for(lease)
                .into_iter()
                .filter(|c| !matches!(c, Call::Extend(_)))
                .collect();
            assert_eq!(
                calls[..2],
                [Call::HandedOut(lease.clone()), Call::Typing(lease.clone())],
                "old bridge: {old_bridge}; {calls:?}"
            );
        }
        // A new bridge shows typing with the lease; an old one refused the field once and then
        // got a typing call for each item.
        let expected = if old_bridge { 2 } else { 0 };
        assert_eq!(
            fake.state.typing_calls.load(Ordering::SeqCst),
            expected,
            "old bridge: {old_bridge}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_lease_stops_the_item_without_reply_or_fail() {
    let fake = FakeBridge::start().await;
    let lease = fake.offer("this item now belongs to another attempt");
    fake.state.superseded.lock().unwrap().insert(lease.clone());
    let (shutdown, handle) = connect(
        &fake,
        TokenAgent {
            gap: Duration::from_millis(5),
        },
        |c| {
            c.concurrency = 1;
        },
    );
    // With one slot, the next claim comes only once the item is let go.
    let handed_out = Call::HandedOut(lease.clone());
    fake.wait_until("a claim after the item was dropped", |calls| {
        calls
            .iter()
            .skip_while(|c| **c != handed_out)
            .any(|c| matches!(c, Call::Claim { .. }))
    })
    .await;
    stop(shutdown, handle).await;

    let calls = fake.calls_for(&lease);
    let deltas = calls
        .iter()
        .filter(|c| matches!(c, Call::Delta(..)))
        .count();
    assert_eq!(deltas, 1, "kept streaming after 409: {calls:?}");
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Reply(..) | Call::Fail { .. })),
        "wrote to a superseded lease: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_failures_are_handed_back_saying_whether_a_retry_can_help() {
    let fake = FakeBridge::start().await;
    let transient = fake.offer("a transient problem");
    let permanent = fake.offer("a hopeless request");
    let (shutdown, handle) = connect(&fake, FailingAgent, |_| {});
    fake.wait_until("both failures reported", |calls| {
        calls
            .iter()
            .filter(|c| matches!(c, Call::Fail { .. }))
            .count()
            == 2
    })
    .await;
    stop(shutdown, handle).await;

    let fail_of = |lease: &str| {
        fake.calls_for(lease)
            .into_iter()
            .find_map(|c| match c {
                Call::Fail { error, retry, .. } => Some((error, retry)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(fail_of(&transient), ("model overloaded".to_owned(), true));
    assert_eq!(fail_of(&permanent), ("input refused".to_owned(), false));
    assert!(!fake.calls().iter().any(|c| matches!(c, Call::Reply(..))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_the_agent_works() {
    let fake = FakeBridge::start().await;
    let lease = fake.offer("take your time");
    let gate = Arc::new(Semaphore::new(0));
    let (shutdown, handle) = connect(&fake, GatedAgent { gate: gate.clone() }, |c| {
        c.lease_secs = 1
    });
    // A one-second lease, renewed every third of a second: three renewals take about a second.
    fake.wait_until("three renewals", |calls| {
        calls
            .iter()
            .filter(|c| **c == Call::Extend(lease.clone()))
            .count()
            >= 3
    })
    .await;
    gate.add_permits(1);
    fake.wait_until("the reply", is_reply_for(&lease)).await;
    stop(shutdown, handle).await;
    assert_eq!(
        fake.calls_for(&lease).last(),
        Some(&Call::Reply(lease.clone(), "take your time".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_ask_only_for_free_slots_and_stop_while_all_are_busy() {
    let fake = FakeBridge::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let (shutdown, handle) = connect(&fake, GatedAgent { gate: gate.clone() }, |c| {
        c.concurrency = 2;
        c.lease_secs = 1;
    });
    fake.wait_until("the first claim", |calls| {
        calls.contains(&Call::Claim { max: 2 })
    })
    .await;

    let first = fake.offer("first");
    fake.wait_until("the first item in flight", |calls| {
        calls.contains(&Call::Typing(first.clone()))
    })
    .await;
    let second = fake.offer("second");
    fake.wait_until("the second item in flight", |calls| {
        calls.contains(&Call::Typing(second.clone()))
    })
    .await;
    // Both slots busy for a while (two renewals of the second lease, about 700 ms).
    fake.wait_until("time with both slots busy", |calls| {
        calls
            .iter()
            .filter(|c| **c == Call::Extend(second.clone()))
            .count()
            >= 2
    })
    .await;
    gate.add_permits(1);
    fake.wait_until("one reply and a new claim", |calls| {
        calls
            .iter()
            .skip_while(|c| !matches!(c, Call::Reply(..)))
            .any(|c| matches!(c, Call::Claim { .. }))
    })
    .await;
    gate.add_permits(1);
    stop(shutdown, handle).await;

    let calls = fake.calls();
    let claims_while_full: Vec<&Call> = calls
        .iter()
        .skip_while(|c| **c != Call::HandedOut(second.clone()))
        .take_while(|c| !matches!(c, Call::Reply(..)))
        .filter(|c| matches!(c, Call::Claim { .. }))
        .collect();
    assert!(
        claims_while_full.is_empty(),
        "claimed with no free slot: {calls:?}"
    );
    let after_first_handed_out: Vec<&Call> = calls
        .iter()
        .skip_while(|c| **c != Call::HandedOut(first.clone()))
        .filter(|c| matches!(c, Call::Claim { .. }))
        .collect();
    assert_eq!(
        after_first_handed_out.first(),
        Some(&&Call::Claim { max: 1 }),
        "{calls:?}"
    );
    let after_reply = calls
        .iter()
        .skip_while(|c| !matches!(c, Call::Reply(..)))
        .find(|c| matches!(c, Call::Claim { .. }));
    assert_eq!(after_reply, Some(&Call::Claim { max: 1 }), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_retried_until_the_bridge_accepts_it() {
    let fake = FakeBridge::start().await;
    fake.state.refuse_claims.store(3, Ordering::SeqCst);
    let lease = fake.offer("let me in");
    let (shutdown, handle) = connect(
        &fake,
        TokenAgent {
            gap: Duration::ZERO,
        },
        |_| {},
    );
    fake.wait_until("the reply once the key is accepted", is_reply_for(&lease))
        .await;
    stop(shutdown, handle).await;
    let claims = fake
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Claim { .. }))
        .count();
    assert!(claims >= 4, "only {claims} claims");
}
