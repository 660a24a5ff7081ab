//! Sustained throughput: visitors that each send a message as soon as the last one is answered,
//! through real connector processes and an agent that answers at once; replies per second at
//! each load, on one bridge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::measure::relay::{Counts, keep_sending};
use crate::procs::{Bridge, machine_busy_ms};

/// One load level.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub visitors: u32,
    pub messages_per_sec: f64,
    /// The bridge's resident memory at the end of the window.
    pub bridge_rss_kib: Option<u64>,
    /// Long-poll answers the visitors read per reply.
    pub polls_per_message: f64,
    /// The bridge's CPU time per reply, in ms.
    pub bridge_cpu_ms_per_message: Option<f64>,
    /// The whole machine's busy CPU time per reply, in ms: the bridge, the connectors, the
    /// harness (visitors and agent), PostgreSQL when it is the backend, and the kernel. On 2
    /// cores, 5,000 messages/s leave 0.4 ms.
    pub machine_cpu_ms_per_message: Option<f64>,
}

/// Replies per second at each of `loads` concurrent visitors: a warm-up of a fifth of `window`,
/// then replies counted over `window`. The connectors must be polling `bridge` already.
pub async fn curve(bridge: &Bridge, loads: &[u32], window: Duration) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::with_capacity(loads.len());
    for &visitors in loads {
        let counts = Arc::new(Counts::default());
        let stop = CancellationToken::new();
        let tasks: Vec<_> = (0..visitors)
            .map(|_| {
                tokio::spawn(keep_sending(
                    bridge.url.clone(),
                    counts.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(window / 5).await;
        let at_start = Sample::take(bridge, &counts);
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let at_end = Sample::take(bridge, &counts);
        let elapsed = started.elapsed();
        let bridge_rss_kib = bridge.rss_kib();
        stop.cancel();
        for task in tasks {
            task.await??;
        }
        let replies = at_end.replies - at_start.replies;
        let counted = replies.max(1) as f64;
        let per_message = |from: Option<f64>, to: Option<f64>| Some((to? - from?) / counted);
        points.push(Point {
            visitors,
            messages_per_sec: replies as f64 / elapsed.as_secs_f64(),
            bridge_rss_kib,
            polls_per_message: (at_end.polls - at_start.polls) as f64 / counted,
            bridge_cpu_ms_per_message: per_message(at_start.bridge_cpu_ms, at_end.bridge_cpu_ms),
            machine_cpu_ms_per_message: per_message(at_start.machine_ms, at_end.machine_ms),
        });
    }
    Ok(points)
}

/// The counters read at one end of a window.
struct Sample {
    replies: u64,
    polls: u64,
    bridge_cpu_ms: Option<f64>,
    machine_ms: Option<f64>,
}

impl Sample {
    fn take(bridge: &Bridge, counts: &Counts) -> Sample {
        Sample {
            replies: counts.replies.load(Ordering::Relaxed),
            polls: counts.polls.load(Ordering::Relaxed),
            bridge_cpu_ms: bridge.cpu_ms(),
            machine_ms: machine_busy_ms(),
        }
    }
}
