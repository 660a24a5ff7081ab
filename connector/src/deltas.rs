//! Turns the agent's stream of deltas (often one per token) into few `stream` calls: at most one
//! per [`STREAM_INTERVAL`], each carrying everything that arrived since the last one, in order.
//!
//! A token-per-request stream would cost the bridge a commit per token; 30 ms batches still look
//! live to a visitor.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bridge::BridgeError;

/// The shortest gap between two stream calls for one reply.
pub const STREAM_INTERVAL: Duration = Duration::from_millis(30);

/// Text waiting to be streamed, and when it may go.
#[derive(Debug)]
pub struct Coalescer {
    pending: String,
    interval: Duration,
    last_flush: Option<Instant>,
}

impl Coalescer {
    pub fn new(interval: Duration) -> Coalescer {
        Coalescer {
            pending: String::new(),
            interval,
            last_flush: None,
        }
    }

    pub fn push(&mut self, delta: &str) {
        self.pending.push_str(delta);
    }

    /// When the pending text may be sent, or `None` when nothing is pending. The first piece goes
    /// at once; later ones wait until `interval` has passed since the previous flush.
    pub fn due_at(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(match self.last_flush {
            Some(last) => last + self.interval,
            None => Instant::now(),
        })
    }

    /// Takes the pending text for a stream call made at `now`.
    pub fn take(&mut self, now: Instant) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        self.last_flush = Some(now);
        Some(std::mem::take(&mut self.pending))
    }

    /// Returns text whose stream call failed, ahead of anything that arrived meanwhile, so the
    /// visitor never sees pieces out of order.
    pub fn put_back(&mut self, mut text: String) {
        text.push_str(&self.pending);
        self.pending = text;
    }
}

/// Reads deltas until the agent is done (all senders dropped) and sends them through `post`,
/// coalesced. Text still waiting when the agent is done is not sent: the final reply, posted
/// right after, carries the whole text (a stream call for it would only cost a commit). Returns
/// early only when `post` reports the lease lost or the key refused: nothing more can be written
/// for this item.
///
/// Passing failures keep the text for the next call; a refused piece is skipped (the final
/// reply carries the whole text anyway).
pub async fn pump<F, Fut>(
    deltas: &mut mpsc::UnboundedReceiver<String>,
    interval: Duration,
    mut post: F,
) -> Result<(), BridgeError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(), BridgeError>>,
{
    let mut coalescer = Coalescer::new(interval);
    loop {
        let due = coalescer.due_at();
        tokio::select! {
            // The end of the agent's answer first: what is still pending then goes with the
            // final reply, which follows at once and carries the whole text.
            biased;
            delta = deltas.recv() => match delta {
                Some(delta) => {
                    coalescer.push(&delta);
                    // Take everything already queued, so a burst becomes one piece.
                    loop {
                        match deltas.try_recv() {
                            Ok(delta) => coalescer.push(&delta),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                        }
                    }
                    // A steady stream keeps this branch ready, so flush here once due rather
                    // than wait for the timer branch.
                    if coalescer.due_at().is_some_and(|due| due <= Instant::now()) {
                        flush(&mut coalescer, &mut post).await?;
                    }
                }
                None => break,
            },
            () = sleep_until_due(due), if due.is_some() => {
                flush(&mut coalescer, &mut post).await?;
            }
        }
    }
    Ok(())
}

async fn sleep_until_due(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

async fn flush<F, Fut>(coalescer: &mut Coalescer, post: &mut F) -> Result<(), BridgeError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(), BridgeError>>,
{
    let Some(text) = coalescer.take(Instant::now()) else {
        return Ok(());
    };
    match post(text.clone()).await {
        Ok(()) => Ok(()),
        Err(e @ (BridgeError::LeaseLost { .. } | BridgeError::Unauthorized { .. })) => Err(e),
        Err(e) if e.is_retryable() => {
            tracing::debug!(error = %e, "streaming a piece of the reply failed; will resend it");
            coalescer.put_back(text);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "the bridge refused a piece of the reply; skipping it");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use reqwest::StatusCode;

    use crate::agent::DeltaSink;

    type Posts = Arc<Mutex<Vec<(Instant, String)>>>;

    /// A `post` that records each call and answers from `script` (Ok once the script runs out).
    fn recorder(
        posts: Posts,
        script: Vec<fn() -> BridgeError>,
    ) -> impl FnMut(String) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BridgeError>> + Send>>
    {
        let mut calls = 0usize;
        move |text| {
            posts.lock().unwrap().push((Instant::now(), text));
            let answer = script.get(calls).map(|make| make());
            calls += 1;
            Box::pin(async move {
                // Each stream call takes a little while, as over a network.
                tokio::time::sleep(Duration::from_millis(2)).await;
                match answer {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            })
        }
    }

    fn unavailable() -> BridgeError {
        BridgeError::Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "restarting".into(),
        }
    }

    fn lease_lost() -> BridgeError {
        BridgeError::LeaseLost {
            code: "lease_lost".into(),
            message: "superseded".into(),
        }
    }

    fn rejected() -> BridgeError {
        BridgeError::Rejected {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid".into(),
            message: "no".into(),
        }
    }

    /// Pushes `count` numbered tokens, one per millisecond, as a fast model would.
    async fn produce(sink: DeltaSink, count: usize) -> String {
        let mut all = String::new();
        for i in 0..count {
            let token = format!("t{i} ");
            all.push_str(&token);
            sink.push(token);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        all
    }

    /// `streamed` is `sent` in order with nothing lost or repeated, but for a short tail (what
    /// arrived in the last interval: at most ~30 of `produce`'s tokens) that the final reply
    /// carries.
    fn assert_tail_left_to_reply(streamed: &str, sent: &str) {
        assert!(
            sent.starts_with(streamed),
            "text lost, repeated or reordered"
        );
        assert!(
            sent.len() - streamed.len() <= 200,
            "only {} of {} bytes streamed",
            streamed.len(),
            sent.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn many_quick_deltas_become_few_stream_calls_with_the_text_intact() {
        let posts = Posts::default();
        let (sink, mut rx) = DeltaSink::channel();
        let producer = tokio::spawn(produce(sink, 1_000));
        pump(&mut rx, STREAM_INTERVAL, recorder(posts.clone(), vec![]))
            .await
            .unwrap();
        let sent = producer.await.unwrap();

        let posts = posts.lock().unwrap();
        let texts: Vec<&str> = posts.iter().map(|(_, t)| t.as_str()).collect();
        assert_tail_left_to_reply(&texts.concat(), &sent);
        // About one second of tokens at one call per 30 ms: ~34 calls, not 1,000.
        assert!(posts.len() <= 40, "{} stream calls", posts.len());
        assert!(
            posts.len() >= 20,
            "only {} stream calls: not streaming",
            posts.len()
        );
        for pair in posts.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap >= STREAM_INTERVAL, "two stream calls {gap:?} apart");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_delta_is_sent_at_once_and_what_waits_at_the_end_is_left_to_the_reply() {
        let posts = Posts::default();
        let (sink, mut rx) = DeltaSink::channel();
        let started = Instant::now();
        sink.push("Hello");
        let pumping = tokio::spawn({
            let posts = posts.clone();
            async move {
                pump(&mut rx, STREAM_INTERVAL, recorder(posts, vec![]))
                    .await
                    .unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        sink.push(", ");
        sink.push("world");
        drop(sink);
        pumping.await.unwrap();
        let posts = posts.lock().unwrap();
        assert_eq!(posts.len(), 1, "{posts:?}");
        assert_eq!(posts[0].1, "Hello");
        assert_eq!(posts[0].0, started);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_arrives_whole_is_not_streamed_at_all() {
        let posts = Posts::default();
        let (sink, mut rx) = DeltaSink::channel();
        sink.push("The whole reply at once");
        drop(sink);
        pump(&mut rx, STREAM_INTERVAL, recorder(posts.clone(), vec![]))
            .await
            .unwrap();
        assert!(posts.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_stream_call_is_resent_ahead_of_newer_text() {
        let posts = Posts::default();
        let (sink, mut rx) = DeltaSink::channel();
        let producer = tokio::spawn(produce(sink, 200));
        pump(
            &mut rx,
            STREAM_INTERVAL,
            recorder(posts.clone(), vec![unavailable, unavailable]),
        )
        .await
        .unwrap();
        let sent = producer.await.unwrap();
        let posts = posts.lock().unwrap();
        let delivered: String = posts[2..].iter().map(|(_, t)| t.as_str()).collect();
        assert_tail_left_to_reply(&delivered, &sent);
        // The resent call starts with what the failed ones carried.
        assert!(posts[2].1.starts_with(&posts[1].1));
        assert!(posts[1].1.starts_with(&posts[0].1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_piece_is_skipped_and_streaming_goes_on() {
        let posts = Posts::default();
        let (sink, mut rx) = DeltaSink::channel();
        let producer = tokio::spawn(produce(sink, 200));
        pump(
            &mut rx,
            STREAM_INTERVAL,
            recorder(posts.clone(), vec![rejected]),
        )
        .await
        .unwrap();
        let sent = producer.await.unwrap();
        let posts = posts.lock().unwrap();
        let all: String = posts.iter().map(|(_, t)| t.as_str()).collect();
        assert_tail_left_to_reply(&all, &sent);
        assert!(posts.len() > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_stops_streaming() {
        let posts = Posts::default();
        let (sink, mut rx) = DeltaSink::channel();
        let _producer = tokio::spawn(produce(sink, 200));
        let result = pump(
            &mut rx,
            STREAM_INTERVAL,
            recorder(posts.clone(), vec![lease_lost]),
        )
        .await;
        assert!(matches!(result, Err(BridgeError::LeaseLost { .. })));
        assert_eq!(posts.lock().unwrap().len(), 1);
    }
}
