//! Helpers shared by the connector's integration tests: a visitor talking to a real bridge over
//! HTTP, a TCP relay that plays a bridge going down and coming back, and condition waits.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_bridge::testing::TestBridge;
use airlock_connector::Config;
use airlock_shared::admin::{DeadLetter, List, Transcript};
use airlock_shared::visitor::{MessageAccepted, MessageList, SessionCreated};
use airlock_shared::{Message, MessageStatus, Role};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Polls `check` every 20 ms until it yields a value; panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn http_client() -> reqwest::Client {
    airlock_connector::bridge::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Logs of the code under test, shown when a test fails (`RUST_LOG` to change the level).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("airlock_connector=debug")),
        )
        .with_test_writer()
        .try_init();
}

/// One visitor's session on the `demo` interface, used the way the widget uses it.
pub struct Visitor {
    http: reqwest::Client,
    base: String,
    pub session_id: String,
    token: String,
    cursor: i64,
}

impl Visitor {
    pub async fn open(bridge_url: &str) -> Visitor {
        let http = http_client();
        let response = http
            .post(format!("{bridge_url}/api/v1/interfaces/demo/sessions"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("open a session");
        assert_eq!(response.status(), 201, "opening a session");
        let created: SessionCreated = response.json().await.unwrap();
        Visitor {
            http,
            base: bridge_url.to_owned(),
            session_id: created.session_id,
            token: created.session_token,
            cursor: created.cursor,
        }
    }

    /// Sends a message and returns it as stored.
    pub async fn send(&self, client_id: &str, text: &str) -> Message {
        let response = self
            .http
            .post(format!(
                "{}/api/v1/sessions/{}/messages",
                self.base, self.session_id
            ))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "client_id": client_id, "text": text }))
            .send()
            .await
            .expect("send a message");
        assert_eq!(response.status(), 202, "sending a message");
        response.json::<MessageAccepted>().await.unwrap().message
    }

    /// One long-poll: whatever changed since the last one (waits up to `wait_secs`).
    pub async fn poll(&mut self, wait_secs: u64) -> Vec<Message> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/sessions/{}/messages?after={}&wait={wait_secs}",
                self.base, self.session_id, self.cursor
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("long-poll messages");
        assert_eq!(response.status(), 200, "long-polling messages");
        let list: MessageList = response.json().await.unwrap();
        self.cursor = list.cursor;
        list.messages
    }

    /// Every version of the reply to `message_id` the visitor sees, until it is complete.
    pub async fn reply_versions(&mut self, message_id: &str, limit: Duration) -> Vec<Message> {
        let mut versions: Vec<Message> = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            for m in self.poll(2).await {
                if m.role == Role::Assistant && m.reply_to.as_deref() == Some(message_id) {
                    assert_ne!(m.status, MessageStatus::Failed, "reply failed: {m:?}");
                    versions.push(m);
                }
            }
            if versions
                .last()
                .is_some_and(|m| m.status == MessageStatus::Complete)
            {
                return versions;
            }
            assert!(
                Instant::now() < deadline,
                "no complete reply to {message_id} within {limit:?}; seen: {versions:?}"
            );
        }
    }
}

/// A TCP relay in front of a bridge, so a test can take "the bridge" away and bring it back
/// (possibly a new bridge process on another port) while the connector keeps one URL.
///
/// With no upstream set, every connection is accepted and closed at once: to the connector that
/// is a bridge that cannot be reached.
pub struct Relay {
    pub url: String,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    turned_away: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let turned_away = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let upstream = upstream.clone();
            let turned_away = turned_away.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    let target = *upstream.lock().unwrap();
                    let turned_away = turned_away.clone();
                    tokio::spawn(async move {
                        let server = match target {
                            Some(addr) => TcpStream::connect(addr).await.ok(),
                            None => None,
                        };
                        match server {
                            Some(mut server) => {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                            None => {
                                turned_away.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
            }
        });
        Relay {
            url,
            upstream,
            turned_away,
            task,
        }
    }

    /// Sends new connections to the bridge at `bridge_url`, or turns them away (`None`).
    pub fn route_to(&self, bridge_url: Option<&str>) {
        let addr = bridge_url.map(|url| {
            url.trim_start_matches("http://")
                .parse::<SocketAddr>()
                .expect("bridge URL is http://IP:PORT")
        });
        *self.upstream.lock().unwrap() = addr;
    }

    /// Connections turned away so far (each a failed attempt of the connector).
    pub fn turned_away(&self) -> usize {
        self.turned_away.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the connector library's `run` in the background; the token stops it.
pub fn spawn_connector(
    config: Config,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(airlock_connector::run(config, shutdown.clone()));
    (shutdown, handle)
}

/// Cancels a connector started with [`spawn_connector`] and checks it stopped cleanly.
pub async fn stop(
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("run returns after cancel")
        .expect("run did not panic")
        .expect("run succeeded");
}

/// The reply to `message_id` once it is complete or failed.
pub async fn settled_reply(visitor: &mut Visitor, message_id: &str, limit: Duration) -> Message {
    let deadline = Instant::now() + limit;
    loop {
        for m in visitor.poll(2).await {
            if m.reply_to.as_deref() == Some(message_id)
                && matches!(m.status, MessageStatus::Complete | MessageStatus::Failed)
            {
                return m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no settled reply to {message_id} within {limit:?}"
        );
    }
}

pub async fn dead_letters(bridge: &TestBridge) -> Vec<DeadLetter> {
    let response = http_client()
        .get(format!("{}/api/v1/admin/dead-letters", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "listing dead letters");
    response.json::<List<DeadLetter>>().await.unwrap().items
}

/// Every assistant message answering `message_id`, as an admin sees the session.
pub async fn replies_in_transcript(
    bridge: &TestBridge,
    session_id: &str,
    message_id: &str,
) -> Vec<Message> {
    let response = http_client()
        .get(format!("{}/api/v1/admin/sessions/{session_id}", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "reading the transcript");
    let transcript: Transcript = response.json().await.unwrap();
    transcript
        .messages
        .into_iter()
        .filter(|m| m.role == Role::Assistant && m.reply_to.as_deref() == Some(message_id))
        .collect()
}
