//! The HTTP server loop: accepts connections and serves each with hyper's HTTP/1 server.
//!
//! Why not `axum::serve`: it serves every connection through hyper-util's HTTP/1-or-2 detector,
//! which costs some 8 KiB more per connection than hyper's HTTP/1 server alone (measured with the
//! benchmark's bare server: 10,000 held requests took 187 MiB that way, 109 MiB this way). A bridge
//! holds one connection per waiting visitor, so that is most of its memory at scale
//! (docs/performance-history.md). Airlock speaks HTTP/1.1 only (a TLS proxy in front may speak
//! HTTP/2 to browsers), so the detector bought nothing.
//!
//! What it keeps from `axum::serve`: `TCP_NODELAY` on every connection, the peer address as
//! [`ConnectInfo`], accept errors (too many open files, say) survived with a pause, and a graceful
//! shutdown that stops accepting, lets each connection finish its request in flight, and returns
//! once all are closed. What it adds: a connection that does not finish sending a request head
//! within [`HEADER_READ_TIMEOUT`] is closed, so idle or trickling clients cannot pile up.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// How long a connection may take to send a request head, and so how long a kept-alive
/// connection may sit idle between requests. Longer than the idle timeouts of the proxies put in
/// front of a bridge (Caddy keeps idle upstream connections for 2 minutes, nginx for 1), so the
/// proxy always closes an idle connection first and never sends a request into one the bridge is
/// closing.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(180);

/// How long to wait after an accept error that is not about one connection (such as running
/// out of file descriptors) before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits for the open
/// connections to finish their requests in flight and close.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    serve_with(listener, app, shutdown, HEADER_READ_TIMEOUT).await;
}

/// [`serve`] with another [`HEADER_READ_TIMEOUT`].
async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
) {
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (all_closed, connection_open) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    header_timeout,
                    shutdown.clone(),
                    connection_open.clone(),
                ));
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                tracing::error!(error = %err, "cannot accept connections; trying again in a second");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    drop(connection_open);
    all_closed.closed().await;
}

/// Serves one connection until it closes; on `shutdown`, finishes the request in flight and
/// closes it.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    _open: watch::Receiver<()>,
) {
    // Without TCP_NODELAY a response written in two pieces waits for the client's delayed ACK
    // (40 ms on Linux) before its second piece goes out.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
    // The router's own future, not one wrapped around it: hyper keeps a request's future, and
    // its allocation, for as long as the request is open (a long-poll, an event stream).
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = detach_head(request);
        request.extensions_mut().insert(ConnectInfo(peer));
        // A router is always ready, so calling it at once is what `oneshot` would do.
        app.clone().call(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::trace!(error = %err, %peer, "connection ended with an error");
    }
}

/// `request` with its target and header values copied out of hyper's read buffer.
///
/// hyper parses a request head in place: the target and every header value point into the
/// connection's 8 KiB read buffer, and keep it alive for as long as any of them lives. While a
/// request is in flight hyper also reads on, to notice the client hanging up, and needs a read
/// buffer for that: a new one when the old one is still held. Copying the few hundred bytes of a
/// head here, before the request is served, lets hyper reuse its buffer — 8 KiB less for every
/// long-poll or event stream held open.
fn detach_head<B>(request: hyper::Request<B>) -> hyper::Request<B> {
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        // hyper accepts only what `HeaderValue` does; should they ever differ, keep the value.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    // An origin-form target (`/path?query`), as nearly every request has, is copied; any other
    // form is rare enough to keep as it is.
    if parts.uri.scheme().is_none()
        && parts.uri.authority().is_none()
        && let Some(target) = parts.uri.path_and_query()
        && let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_str().as_bytes()))
    {
        parts.uri = uri;
    }
    hyper::Request::from_parts(parts, body)
}

/// Errors that concern one connection only (it was reset before it was accepted, say).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A client that never finishes its request head is cut off after the header timeout, while
    /// other connections to the same server are answered meanwhile.
    #[tokio::test]
    async fn a_connection_that_never_finishes_its_request_head_is_closed() {
        let timeout = Duration::from_secs(1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_with(listener, app, shutdown.clone(), timeout));

        let mut stalled = TcpStream::connect(address).await.unwrap();
        stalled
            .write_all(b"GET / HTTP/1.1\r\nHost: bridge\r\n")
            .await
            .unwrap();
        let opened = Instant::now();

        let mut answered = TcpStream::connect(address).await.unwrap();
        answered
            .write_all(b"GET / HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        answered.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Closed or reset, with or without an error answer first: either way it is gone.
        let mut rest = Vec::new();
        tokio::time::timeout(timeout * 10, stalled.read_to_end(&mut rest))
            .await
            .expect("the stalled connection was never closed")
            .ok();
        assert!(opened.elapsed() >= timeout - Duration::from_millis(100));

        shutdown.cancel();
        server.await.unwrap();
    }

    /// A request whose target and header values point into `buffer`, as hyper's do.
    fn parsed_in_place(buffer: &Bytes) -> hyper::Request<()> {
        let text = std::str::from_utf8(buffer).unwrap();
        let slice = |part: &str| {
            let start = text.find(part).unwrap();
            buffer.slice(start..start + part.len())
        };
        let mut request = hyper::Request::new(());
        *request.uri_mut() =
            Uri::from_maybe_shared(slice("/api/v1/sessions/s1/messages?after=7")).unwrap();
        let headers = request.headers_mut();
        headers.append(
            "x-custom",
            HeaderValue::from_maybe_shared(slice("one")).unwrap(),
        );
        headers.append(
            "x-custom",
            HeaderValue::from_maybe_shared(slice("two")).unwrap(),
        );
        let mut token = HeaderValue::from_maybe_shared(slice("Bearer secret")).unwrap();
        token.set_sensitive(true);
        headers.insert("authorization", token);
        request
    }

    #[test]
    fn a_detached_head_keeps_everything_and_holds_no_part_of_the_read_buffer() {
        let buffer =
            Bytes::from(b"GET /api/v1/sessions/s1/messages?after=7 one two Bearer secret".to_vec());
        let request = detach_head(parsed_in_place(&buffer));
        assert!(
            buffer.is_unique(),
            "the copied request still shares the read buffer"
        );

        assert_eq!(request.uri(), "/api/v1/sessions/s1/messages?after=7");
        let custom: Vec<_> = request.headers().get_all("x-custom").iter().collect();
        assert_eq!(custom, ["one", "two"]);
        let token = &request.headers()["authorization"];
        assert_eq!(token, "Bearer secret");
        assert!(token.is_sensitive());
    }
}
