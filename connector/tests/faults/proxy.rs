//! A TCP proxy the test controls, put between connectors and the bridge to cut the network.
//!
//! It forwards bytes both ways until told otherwise:
//! - [`Proxy::drop_connections`] resets every connection it holds (both sides; new ones go
//!   through), as a restarted NAT or load balancer does;
//! - [`Proxy::black_hole`] stops moving bytes: open connections stall with what they sent held
//!   back, and new ones are accepted but not connected — as when packets are silently dropped;
//! - [`Proxy::heal`] forwards again: what was held back is delivered late, as TCP retransmission
//!   would deliver it, and waiting connections are connected.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    addr: SocketAddr,
    /// `true` while bytes flow.
    forwarding: watch::Sender<bool>,
    /// Cancelled to reset every connection accepted under it; replaced by a fresh one then.
    cut: Arc<Mutex<CancellationToken>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (forwarding, _) = watch::channel(true);
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let task = tokio::spawn({
            let (forwarding, cut) = (forwarding.clone(), cut.clone());
            async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let cut = cut.lock().unwrap().clone();
                    tokio::spawn(serve(inbound, upstream, forwarding.subscribe(), cut));
                }
            }
        });
        Proxy {
            addr,
            forwarding,
            cut,
            task,
        }
    }

    /// The proxy as a bridge URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resets every open connection; new ones are forwarded (or held, in a black hole).
    pub fn drop_connections(&self) {
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Stops moving bytes until [`heal`](Self::heal).
    pub fn black_hole(&self) {
        self.forwarding.send_replace(false);
    }

    /// Forwards again, delivering what was held back.
    pub fn heal(&self) {
        self.forwarding.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.lock().unwrap().cancel();
    }
}

/// Copies `from` to `to` while the proxy forwards; holds bytes back in a black hole.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut forwarding: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if forwarding.wait_for(|on| *on).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Forwards one connection until both sides close it or the proxy resets it.
async fn serve(
    inbound: TcpStream,
    upstream: SocketAddr,
    mut forwarding: watch::Receiver<bool>,
    cut: CancellationToken,
) {
    let connect = async {
        forwarding.wait_for(|on| *on).await.ok()?;
        TcpStream::connect(upstream).await.ok()
    };
    let outbound = tokio::select! {
        outbound = connect => outbound,
        () = cut.cancelled() => None,
    };
    let Some(mut outbound) = outbound else {
        cut_off(&inbound);
        return;
    };
    let mut inbound = inbound;
    let (in_read, in_write) = inbound.split();
    let (out_read, out_write) = outbound.split();
    let was_cut = tokio::select! {
        _ = async {
            tokio::join!(
                pipe(in_read, out_write, forwarding.clone()),
                pipe(out_read, in_write, forwarding),
            )
        } => false,
        () = cut.cancelled() => true,
    };
    if was_cut {
        cut_off(&inbound);
        cut_off(&outbound);
    }
}

/// Makes dropping `stream` send a reset rather than a graceful FIN: a cut is abrupt.
fn cut_off(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
