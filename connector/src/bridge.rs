//! A small typed client for the bridge's connector API (`/api/v1/connector/…`).
//!
//! Every call is an outbound HTTPS (or, on a laptop, HTTP) request; the connector never accepts
//! connections. Errors are sorted by what the caller should do about them: see [`BridgeError`].

use std::path::Path;
use std::time::Duration;

use airlock_shared::ErrorEnvelope;
use airlock_shared::connector::{
    ClaimRequest, ClaimResponse, ConnectorIdentity, ExtendRequest, FailOutcome, FailRequest,
    LeaseExtended, ReplyRequest, ReplyState, StreamRequest,
};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::ConnectorKey;
use crate::text::{cause_chain, snippet};

/// How long a claim may take beyond the wait the bridge was asked to hold it for.
const CLAIM_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// Timeout of every call other than claim.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to the bridge, sorted by what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// 401: the bridge does not know the connector key. Nothing to retry until an operator fixes
    /// the key, but an operator may, so the claim loop keeps backing off.
    #[error("the bridge refused the connector key (401 {code}: {message})")]
    Unauthorized { code: String, message: String },

    /// 409 on a lease call: the lease was superseded (it expired and the item went to another
    /// attempt) or the item is already finished. Stop working on the item; never retry it.
    #[error("lease lost (409 {code}: {message})")]
    LeaseLost { code: String, message: String },

    /// Any other 4xx: the bridge understood the request and refuses it. Repeating it unchanged
    /// will not help.
    #[error("the bridge refused the request ({status} {code}: {message})")]
    Rejected {
        status: StatusCode,
        code: String,
        message: String,
    },

    /// 5xx: the bridge (or a proxy in front of it) is in trouble. Retry with back-off.
    #[error("the bridge answered {status}: {message}")]
    Unavailable { status: StatusCode, message: String },

    /// No HTTP answer at all: connection refused or reset, DNS, TLS, timeout. Retry with back-off.
    // The message spells out the whole cause chain: reqwest's own text ("error sending request")
    // leaves out the part an operator needs ("Connection refused").
    #[error("cannot reach the bridge: {}", cause_chain(.0))]
    Transport(reqwest::Error),

    /// The bridge URL cannot be used (not a base URL); nothing was sent.
    #[error("invalid bridge URL {0}")]
    InvalidUrl(String),

    /// The CA bundle given for the bridge's certificate cannot be read or parsed.
    #[error("cannot use the CA bundle {path}: {reason}")]
    CaBundle { path: String, reason: String },

    /// A 2xx whose body is not what the contract says (a proxy's page, a version mismatch).
    #[error("the bridge sent an unexpected response: {0}")]
    InvalidResponse(String),
}

impl BridgeError {
    /// Whether the same call may succeed later without anything changing on our side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BridgeError::Unavailable { .. }
                | BridgeError::Transport(_)
                | BridgeError::InvalidResponse(_)
        ) || matches!(self, BridgeError::Rejected { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS)
    }
}

/// Makes rustls use *ring* for every TLS connection of this process. Safe to call more than once.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already (by an earlier call or by the embedding
    // program), which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The connector API of one bridge, authenticated with one connector key.
#[derive(Debug, Clone)]
pub struct BridgeClient {
    http: reqwest::Client,
    /// `{bridge_url}/api/v1/connector/`, always ending in a slash so joins append.
    api: Url,
    key: ConnectorKey,
}

impl BridgeClient {
    /// A client for the bridge at `bridge_url` (e.g. `https://chat.example.com`). Proxies come
    /// from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` as usual. `ca_bundle` is a PEM file of extra
    /// roots to trust (beside the system's) for a bridge with a private certificate.
    pub fn new(
        bridge_url: &str,
        key: ConnectorKey,
        ca_bundle: Option<&Path>,
    ) -> Result<BridgeClient, BridgeError> {
        install_crypto_provider();
        let mut api = Url::parse(bridge_url)
            .map_err(|e| BridgeError::InvalidUrl(format!("{bridge_url}: {e}")))?;
        {
            let mut segments = api
                .path_segments_mut()
                .map_err(|()| BridgeError::InvalidUrl(bridge_url.to_owned()))?;
            segments.pop_if_empty();
            for segment in airlock_shared::API_PREFIX
                .split('/')
                .filter(|s| !s.is_empty())
            {
                segments.push(segment);
            }
            segments.extend(["connector", ""]);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_bundle {
            builder = builder.tls_certs_merge(read_ca_bundle(path)?);
        }
        let http = builder
            .user_agent(concat!("airlock-connector/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // Detects a bridge that vanished without closing the connection (host gone, NAT
            // entry dropped) well before the claim timeout would.
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(BridgeError::Transport)?;
        Ok(BridgeClient { http, api, key })
    }

    /// `GET /healthz`: whether the bridge answers at all (no key needed).
    pub async fn health(&self) -> Result<(), BridgeError> {
        let mut url = self.api.clone();
        url.set_path("/healthz");
        let response = self
            .http
            .get(url)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(BridgeError::Transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.map_err(BridgeError::Transport)?;
        Err(classify_failure(status, &bytes))
    }

    /// `GET /connector/me`: which connector the key belongs to and what it may serve.
    pub async fn me(&self) -> Result<ConnectorIdentity, BridgeError> {
        let response = self
            .http
            .get(self.endpoint(&["me"]))
            .bearer_auth(self.key.expose())
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(BridgeError::Transport)?;
        read_json(response).await
    }

    /// `GET /connector/attachments/{id}`: the bytes of a file a visitor attached.
    pub async fn attachment(&self, id: &str) -> Result<Vec<u8>, BridgeError> {
        let response = self
            .http
            .get(self.endpoint(&["attachments", id]))
            .bearer_auth(self.key.expose())
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(BridgeError::Transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(BridgeError::Transport)?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(classify_failure(status, &bytes))
        }
    }

    /// `POST /connector/claim`: leases up to `request.max` items; the bridge holds the request up
    /// to `request.wait` seconds when none is ready and then answers with no items.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<ClaimResponse, BridgeError> {
        let timeout = Duration::from_secs(request.wait) + CLAIM_TIMEOUT_MARGIN;
        self.post(self.endpoint(&["claim"]), request, timeout).await
    }

    /// `POST /connector/leases/{lease_id}/extend`: renews the lease.
    pub async fn extend(
        &self,
        lease_id: &str,
        lease_secs: u64,
    ) -> Result<LeaseExtended, BridgeError> {
        let url = self.endpoint(&["leases", lease_id, "extend"]);
        self.post(url, &ExtendRequest { lease_secs }, CALL_TIMEOUT)
            .await
    }

    /// `POST /connector/leases/{lease_id}/stream`: a piece of the reply or a typing signal.
    pub async fn stream(
        &self,
        lease_id: &str,
        request: &StreamRequest,
    ) -> Result<ReplyState, BridgeError> {
        let url = self.endpoint(&["leases", lease_id, "stream"]);
        self.post(url, request, CALL_TIMEOUT).await
    }

    /// `POST /connector/leases/{lease_id}/reply`: the final reply. Idempotent, so safe to repeat
    /// after a transport error.
    pub async fn reply(&self, lease_id: &str, text: &str) -> Result<ReplyState, BridgeError> {
        let url = self.endpoint(&["leases", lease_id, "reply"]);
        let request = ReplyRequest {
            text: text.to_owned(),
        };
        self.post(url, &request, CALL_TIMEOUT).await
    }

    /// `POST /connector/leases/{lease_id}/fail`: gives the item back (`retry`) or dead-letters it.
    pub async fn fail(
        &self,
        lease_id: &str,
        request: &FailRequest,
    ) -> Result<FailOutcome, BridgeError> {
        let url = self.endpoint(&["leases", lease_id, "fail"]);
        self.post(url, request, CALL_TIMEOUT).await
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        // Pushing segments (rather than formatting a string) percent-encodes the lease id.
        url.path_segments_mut()
            .expect("the API URL is a base URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    async fn post<B, T>(&self, url: Url, body: &B, timeout: Duration) -> Result<T, BridgeError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let response = self
            .http
            .post(url)
            .bearer_auth(self.key.expose())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(BridgeError::Transport)?;
        read_json(response).await
    }
}

/// The body of a 2xx as `T`, or the failure sorted into a [`BridgeError`].
async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, BridgeError> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(BridgeError::Transport)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            BridgeError::InvalidResponse(format!("{status}: {e}: {}", snippet(&bytes)))
        });
    }
    Err(classify_failure(status, &bytes))
}

/// The certificates of a PEM bundle; an empty or unreadable one is an error, not silence.
fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, BridgeError> {
    let fail = |reason: String| BridgeError::CaBundle {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Sorts a non-2xx answer into a [`BridgeError`], reading the error envelope when there is one.
fn classify_failure(status: StatusCode, body: &[u8]) -> BridgeError {
    let (code, message) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => (envelope.error.code, envelope.error.message),
        // Proxies and load balancers answer with their own pages.
        Err(_) => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            snippet(body),
        ),
    };
    match status {
        StatusCode::UNAUTHORIZED => BridgeError::Unauthorized { code, message },
        StatusCode::CONFLICT => BridgeError::LeaseLost { code, message },
        s if s.is_client_error() => BridgeError::Rejected {
            status,
            code,
            message,
        },
        _ => BridgeError::Unavailable { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(code: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&ErrorEnvelope::new(code, message)).unwrap()
    }

    #[test]
    fn statuses_are_sorted_by_what_the_caller_should_do() {
        let e = classify_failure(
            StatusCode::UNAUTHORIZED,
            &envelope("unauthorized", "bad key"),
        );
        assert!(matches!(&e, BridgeError::Unauthorized { message, .. } if message == "bad key"));
        assert!(!e.is_retryable());

        let e = classify_failure(StatusCode::CONFLICT, &envelope("lease_lost", "superseded"));
        assert!(matches!(&e, BridgeError::LeaseLost { code, .. } if code == "lease_lost"));
        assert!(!e.is_retryable());

        let e = classify_failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            &envelope("too_long", "reply too long"),
        );
        assert!(matches!(&e, BridgeError::Rejected { status, code, message }
                if *status == StatusCode::UNPROCESSABLE_ENTITY && code == "too_long" && message == "reply too long"));
        assert!(!e.is_retryable());

        let e = classify_failure(
            StatusCode::TOO_MANY_REQUESTS,
            &envelope("rate_limited", "slow down"),
        );
        assert!(e.is_retryable());

        let e = classify_failure(StatusCode::BAD_GATEWAY, b"<html>502 Bad Gateway</html>");
        assert!(
            matches!(&e, BridgeError::Unavailable { message, .. } if message.contains("502 Bad Gateway"))
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_the_lease_id() {
        let client =
            BridgeClient::new("https://example.com/chat/", ConnectorKey::new("k"), None).unwrap();
        assert_eq!(
            client.endpoint(&["claim"]).as_str(),
            "https://example.com/chat/api/v1/connector/claim"
        );
        assert_eq!(
            client.endpoint(&["leases", "a/b c", "reply"]).as_str(),
            "https://example.com/chat/api/v1/connector/leases/a%2Fb%20c/reply"
        );
        let client =
            BridgeClient::new("http://127.0.0.1:8080", ConnectorKey::new("k"), None).unwrap();
        assert_eq!(
            client.endpoint(&["leases", "L1", "extend"]).as_str(),
            "http://127.0.0.1:8080/api/v1/connector/leases/L1/extend"
        );
    }

    #[tokio::test]
    async fn an_unreachable_bridge_is_retryable_and_says_why() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = BridgeClient::new(
            &format!("http://127.0.0.1:{port}"),
            ConnectorKey::new("k"),
            None,
        )
        .unwrap();
        let error = client.claim(&ClaimRequest::default()).await.unwrap_err();
        assert!(matches!(error, BridgeError::Transport(_)), "{error:?}");
        assert!(error.is_retryable());
        let text = error.to_string();
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
    }

    #[test]
    fn long_bodies_are_cut_in_error_messages() {
        let body = "x".repeat(5_000);
        assert!(snippet(body.as_bytes()).chars().count() <= 201);
    }
}
