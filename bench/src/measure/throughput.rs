//! Sustained throughput: visitors that each send a message as soon as the last one is answered,
//! through real connector processes and an agent that answers at once; replies per second at
//! each load, on one bridge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::measure::relay::keep_sending;
use crate::procs::Bridge;

/// One load level.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub visitors: u32,
    pub messages_per_sec: f64,
    /// The bridge's resident memory at the end of the window.
    pub bridge_rss_kib: Option<u64>,
}

/// Replies per second at each of `loads` concurrent visitors: a warm-up of a fifth of `window`,
/// then replies counted over `window`. The connectors must be polling `bridge` already.
pub async fn curve(bridge: &Bridge, loads: &[u32], window: Duration) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::with_capacity(loads.len());
    for &visitors in loads {
        let replies = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let tasks: Vec<_> = (0..visitors)
            .map(|_| {
                tokio::spawn(keep_sending(
                    bridge.url.clone(),
                    replies.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(window / 5).await;
        let (from, started) = (replies.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(window).await;
        let counted = replies.load(Ordering::Relaxed) - from;
        let elapsed = started.elapsed();
        let bridge_rss_kib = bridge.rss_kib();
        stop.cancel();
        for task in tasks {
            task.await??;
        }
        points.push(Point {
            visitors,
            messages_per_sec: counted as f64 / elapsed.as_secs_f64(),
            bridge_rss_kib,
        });
    }
    Ok(points)
}
