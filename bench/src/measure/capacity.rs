//! Capacity: many idle visitors held at once — long-polls or SSE streams — the bridge's memory
//! while it holds them, and how fast a message wakes one of them.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::procs::Bridge;
use crate::stats::{Latency, ms};
use crate::visitor::{Visitor, until};

/// How idle visitors wait.
#[derive(Debug, Clone, Copy, Serialize)]
pub enum Hold {
    LongPoll,
    Sse,
}

/// What holding `held` idle visitors cost.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub hold: Hold,
    pub held: usize,
    pub rss_before_kib: Option<u64>,
    pub rss_held_kib: Option<u64>,
    /// A message sent to one held visitor → that visitor has it.
    pub wake: Latency,
}

/// Sessions opened this many at a time.
const OPENING: usize = 64;

/// Opens `count` sessions, holds each one waiting the `hold` way, then times `probes` wake-ups:
/// a message sent on a probe visitor's session while it and all the others wait.
pub async fn hold(
    bridge: &Bridge,
    hold: Hold,
    count: usize,
    probes: usize,
) -> anyhow::Result<Capacity> {
    let rss_before_kib = bridge.rss_kib();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let visitors: Vec<Visitor> = stream::iter(0..count)
        .map(|_| Visitor::open(&http, &bridge.url))
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let stop = CancellationToken::new();
    let mut waiting = Vec::with_capacity(count);
    for visitor in visitors {
        let stop = stop.clone();
        waiting.push(tokio::spawn(async move {
            match hold {
                Hold::LongPoll => loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = visitor.poll(i64::MAX / 2, 30) => {}
                    }
                },
                Hold::Sse => {
                    if let Ok(events) = visitor.events().await {
                        let mut events = Box::pin(events);
                        tokio::select! {
                            () = stop.cancelled() => {}
                            _ = events.next() => stop.cancelled().await,
                        }
                    }
                }
            }
        }));
    }
    // Let every request reach the bridge and settle into waiting.
    all_read(&bridge.url, count).await;
    settle(|| bridge.rss_kib()).await;
    let rss_held_kib = bridge.rss_kib();

    let mut wakes = Vec::with_capacity(probes);
    let probe = Visitor::open(&http, &bridge.url).await?;
    for _ in 0..probes {
        let cursor = probe.poll(0, 0).await?.cursor;
        let woken = match hold {
            Hold::LongPoll => {
                let waiting = probe.poll(cursor, 30);
                tokio::pin!(waiting);
                // Give the long-poll time to reach the bridge before the message is sent.
                let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
                anyhow::ensure!(early.is_err(), "a long-poll returned with nothing new");
                let started = Instant::now();
                let (sent, list) = tokio::join!(probe.send("wake up"), waiting);
                sent?;
                anyhow::ensure!(
                    !list?.messages.is_empty(),
                    "the long-poll woke with nothing"
                );
                started.elapsed()
            }
            Hold::Sse => {
                let mut events = Box::pin(probe.events().await?);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let started = Instant::now();
                let sent = probe.send("wake up").await?;
                until(&mut events, |m| m.id == sent.id).await?;
                started.elapsed()
            }
        };
        wakes.push(ms(woken));
    }
    stop.cancel();
    for task in waiting {
        let _ = task.await;
    }
    Ok(Capacity {
        hold,
        held: count,
        rss_before_kib,
        rss_held_kib,
        wake: Latency::of_ms(&wakes),
    })
}

/// Waits (at most 60 s) until the server at `url` has accepted `count` connections and read
/// every byte sent on them: every held request has reached it, as the kernel sees it
/// (`/proc/net/tcp`: established connections to the server's port, and their unread bytes).
/// Without this, a pause in the requests' arrival could pass for the server having them all.
pub async fn all_read(url: &str, count: usize) {
    let Some(port) = url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match server_sockets(port) {
            Some((established, unread)) if established >= count && unread == 0 => return,
            None => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    eprintln!("warning: not every held request had reached the server after 60 s");
}

/// The established connections whose local end is `port` (loopback IPv4), and how many of them
/// still hold bytes the server has not read; `None` where `/proc/net/tcp` cannot be read.
fn server_sockets(port: u16) -> Option<(usize, usize)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let mut established = 0;
    let mut unread = 0;
    // Each line: `sl local_address rem_address st tx_queue:rx_queue …`, addresses as
    // `HEXIP:HEXPORT`.
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(queues)) =
            (fields.get(1), fields.get(3), fields.get(4))
        else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        if local_port != Some(port) || *state != "01" {
            continue;
        }
        established += 1;
        let rx = queues
            .split(':')
            .nth(1)
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
        if rx > 0 {
            unread += 1;
        }
    }
    Some((established, unread))
}

/// Waits until a server's memory (`rss`) stops growing (at most 20 s): once every held request
/// has arrived ([`all_read`]), the server has settled them into waiting.
pub async fn settle(rss: impl Fn() -> Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = rss();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss();
        if now == last {
            return;
        }
        last = now;
    }
}
