//! The claim loop: keeps up to `concurrency` items in flight, long-polls the bridge for more
//! whenever a slot is free, rides out bridge outages with jittered back-off, and drains on
//! shutdown.
//!
//! Every connection it makes is outbound; nothing here listens.

use std::sync::Arc;
use std::time::Duration;

use airlock_shared::connector::{ClaimRequest, ClaimedItem};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::bridge::BridgeError;
use crate::worker::{ItemOutcome, Worker};

/// An empty claim answered sooner than this is followed by a pause, so a bridge (or proxy) that
/// ignores `wait` cannot turn long-polling into a busy loop.
const MIN_EMPTY_CLAIM_INTERVAL: Duration = Duration::from_millis(200);

/// After the shutdown grace, how long abandoned items get to hand their lease back.
const GIVE_BACK_GRACE: Duration = Duration::from_secs(6);

/// Whether the bridge is answering, as far as the claim loop can tell. Used to log each change
/// once, not each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// No claim has completed yet.
    Unknown,
    Reachable,
    /// Transport errors, 5xx, rate limits or garbled answers.
    Unreachable,
    /// The bridge does not accept the connector key (401).
    KeyRefused,
    /// The bridge refuses the claim itself (4xx other than 401, 429).
    ClaimRefused,
}

/// What to tell the operator after a claim, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// The first claim after start-up worked.
    Connected,
    /// Claims work again after a failure.
    Recovered,
    /// Claims started failing, or fail in a new way.
    Failing(Reachability),
}

/// Remembers the bridge's [`Reachability`] and reports only its changes.
#[derive(Debug)]
pub struct BridgeHealth {
    state: Reachability,
}

impl Default for BridgeHealth {
    fn default() -> Self {
        BridgeHealth {
            state: Reachability::Unknown,
        }
    }
}

impl BridgeHealth {
    pub fn state(&self) -> Reachability {
        self.state
    }

    pub fn claim_succeeded(&mut self) -> Option<HealthChange> {
        let change = match self.state {
            Reachability::Reachable => None,
            Reachability::Unknown => Some(HealthChange::Connected),
            _ => Some(HealthChange::Recovered),
        };
        self.state = Reachability::Reachable;
        change
    }

    pub fn claim_failed(&mut self, error: &BridgeError) -> Option<HealthChange> {
        let now = match error {
            BridgeError::Unauthorized { .. } => Reachability::KeyRefused,
            e if e.is_retryable() => Reachability::Unreachable,
            _ => Reachability::ClaimRefused,
        };
        let changed = now != self.state;
        self.state = now;
        changed.then_some(HealthChange::Failing(now))
    }
}

pub(crate) struct Poller {
    pub worker: Arc<Worker>,
    pub bridge_url: String,
    pub concurrency: usize,
    pub claim: ClaimRequest,
    pub shutdown_grace: Duration,
}

impl Poller {
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut in_flight: JoinSet<ItemOutcome> = JoinSet::new();
        let abandon = CancellationToken::new();
        let mut backoff = Backoff::for_claims();
        let mut health = BridgeHealth::default();

        while !shutdown.is_cancelled() {
            while let Some(done) = in_flight.try_join_next() {
                report_panic(done);
            }
            let free = self.concurrency.saturating_sub(in_flight.len());
            if free == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(done) = in_flight.join_next() => report_panic(done),
                }
                continue;
            }

            let request = ClaimRequest {
                max: u32::try_from(free).unwrap_or(u32::MAX),
                ..self.claim.clone()
            };
            let asked_at = Instant::now();
            // Dropping the claim on shutdown aborts the request at once instead of holding the
            // process for up to the whole claim wait.
            let claimed = tokio::select! {
                () = shutdown.cancelled() => break,
                claimed = self.worker.bridge.claim(&request) => claimed,
            };
            let pause = match claimed {
                Err(e) if request.typing && refuses_typing(&e) => {
                    tracing::info!(
                        "the bridge does not start replies with a claim; sending the typing \
                         signal with a call of its own"
                    );
                    self.claim.typing = false;
                    continue;
                }
                Ok(response) => {
                    // How long the bridge took to answer (waiting included): where a message's
                    // time goes before the agent has it (docs/performance.md).
                    tracing::debug!(
                        items = response.items.len(),
                        answered_after_ms = asked_at.elapsed().as_secs_f64() * 1000.0,
                        "claim answered"
                    );
                    backoff.reset();
                    if let Some(change) = health.claim_succeeded() {
                        self.log_change(change, None);
                    }
                    let empty = response.items.is_empty();
                    for item in response.items {
                        self.spawn_item(&mut in_flight, item, request.typing, abandon.clone());
                    }
                    let early = MIN_EMPTY_CLAIM_INTERVAL.saturating_sub(asked_at.elapsed());
                    (empty && !early.is_zero()).then_some(early)
                }
                Err(e) => {
                    if let Some(change) = health.claim_failed(&e) {
                        self.log_change(change, Some(&e));
                    }
                    Some(backoff.next_delay())
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }

        self.drain(in_flight, abandon).await;
    }

    fn spawn_item(
        &self,
        in_flight: &mut JoinSet<ItemOutcome>,
        item: ClaimedItem,
        typing_shown: bool,
        abandon: CancellationToken,
    ) {
        let span = tracing::info_span!(
            "item",
            lease = %item.lease_id,
            session = %item.session.id,
            message_id = %item.message.id,
            attempt = item.attempt,
        );
        let worker = Arc::clone(&self.worker);
        in_flight
            .spawn(async move { worker.serve(item, typing_shown, abandon).await }.instrument(span));
    }

    /// Lets items in flight finish within the grace period; then asks the rest to hand their
    /// leases back, and finally stops whatever is still running.
    async fn drain(&self, mut in_flight: JoinSet<ItemOutcome>, abandon: CancellationToken) {
        while let Some(done) = in_flight.try_join_next() {
            report_panic(done);
        }
        if in_flight.is_empty() {
            tracing::info!("stopped claiming; nothing in flight");
            return;
        }
        tracing::info!(
            in_flight = in_flight.len(),
            grace_secs = self.shutdown_grace.as_secs_f64(),
            "stopped claiming; letting items in flight finish"
        );
        if join_all_within(&mut in_flight, self.shutdown_grace).await {
            tracing::info!("all items in flight finished");
            return;
        }
        tracing::warn!(
            unfinished = in_flight.len(),
            "shutdown grace ran out; handing unfinished items back to the bridge"
        );
        abandon.cancel();
        if !join_all_within(&mut in_flight, GIVE_BACK_GRACE).await {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
    }

    fn log_change(&self, change: HealthChange, error: Option<&BridgeError>) {
        let url = &self.bridge_url;
        let error = error.map(|e| e.to_string()).unwrap_or_default();
        match change {
            HealthChange::Connected => tracing::info!(bridge = %url, "connected to the bridge"),
            HealthChange::Recovered => tracing::info!(bridge = %url, "bridge reachable again"),
            HealthChange::Failing(Reachability::KeyRefused) => tracing::error!(
                bridge = %url,
                "bridge refused the connector key: {error}; check AIRLOCK_CONNECTOR_KEY \
                 (still retrying with back-off)"
            ),
            HealthChange::Failing(Reachability::ClaimRefused) => tracing::error!(
                bridge = %url,
                "bridge refused the claim: {error} (still retrying with back-off)"
            ),
            HealthChange::Failing(_) => tracing::warn!(
                bridge = %url,
                "bridge unreachable: {error} (retrying with back-off)"
            ),
        }
    }
}

/// Waits for every task; `false` when `limit` ran out first.
async fn join_all_within(in_flight: &mut JoinSet<ItemOutcome>, limit: Duration) -> bool {
    let all = async {
        while let Some(done) = in_flight.join_next().await {
            report_panic(done);
        }
    };
    tokio::time::timeout(limit, all).await.is_ok()
}

fn report_panic(done: Result<ItemOutcome, tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "serving an item panicked; its lease will expire and it will be offered again");
    }
}

/// A bridge from before claims could start replies refuses the claim's `typing` field as
/// unknown (422 `invalid_field` naming it); such a bridge gets the typing signal as a stream
/// call of its own.
fn refuses_typing(e: &BridgeError) -> bool {
    matches!(e, BridgeError::Rejected { status, code, message }
        if status.as_u16() == 422 && code == "invalid_field"
            && message.contains("unknown field `typing`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn unavailable() -> BridgeError {
        BridgeError::Unavailable {
            status: StatusCode::BAD_GATEWAY,
            message: "bad gateway".into(),
        }
    }

    fn unauthorized() -> BridgeError {
        BridgeError::Unauthorized {
            code: "unauthorized".into(),
            message: "unknown key".into(),
        }
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_once() {
        let mut health = BridgeHealth::default();
        assert_eq!(health.claim_succeeded(), Some(HealthChange::Connected));
        assert_eq!(health.claim_succeeded(), None);
        assert_eq!(
            health.claim_failed(&unavailable()),
            Some(HealthChange::Failing(Reachability::Unreachable))
        );
        for _ in 0..50 {
            assert_eq!(health.claim_failed(&unavailable()), None);
        }
        assert_eq!(health.claim_succeeded(), Some(HealthChange::Recovered));
        assert_eq!(health.claim_succeeded(), None);
        assert_eq!(health.state(), Reachability::Reachable);
    }

    #[test]
    fn a_bridge_down_at_start_is_reported_then_connected() {
        let mut health = BridgeHealth::default();
        assert_eq!(
            health.claim_failed(&unavailable()),
            Some(HealthChange::Failing(Reachability::Unreachable))
        );
        assert_eq!(health.claim_failed(&unavailable()), None);
        assert_eq!(health.claim_succeeded(), Some(HealthChange::Recovered));
    }

    #[test]
    fn a_refused_key_is_a_change_of_its_own() {
        let mut health = BridgeHealth::default();
        health.claim_failed(&unavailable());
        assert_eq!(
            health.claim_failed(&unauthorized()),
            Some(HealthChange::Failing(Reachability::KeyRefused))
        );
        assert_eq!(health.claim_failed(&unauthorized()), None);
        assert_eq!(
            health.claim_failed(&unavailable()),
            Some(HealthChange::Failing(Reachability::Unreachable))
        );
    }

    #[test]
    fn a_refused_claim_differs_from_a_rate_limit() {
        let mut health = BridgeHealth::default();
        let refused = BridgeError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request".into(),
            message: "unknown field".into(),
        };
        assert_eq!(
            health.claim_failed(&refused),
            Some(HealthChange::Failing(Reachability::ClaimRefused))
        );
        let limited = BridgeError::Rejected {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited".into(),
            message: "slow down".into(),
        };
        assert_eq!(
            health.claim_failed(&limited),
            Some(HealthChange::Failing(Reachability::Unreachable))
        );
    }
}
