//! Serving one claimed item: typing signal (unless the claim showed it), the agent's answer
//! streamed in coalesced pieces, the lease renewed while the agent works, then the final reply
//! (or `fail`).
//!
//! The lease is the item's fence: once the bridge answers 409 the item belongs to someone else
//! (or is finished), so the worker stops at once and writes nothing more for it.

use std::sync::Arc;
use std::time::Duration;

use airlock_shared::connector::{ClaimedItem, FailRequest, StreamRequest};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentError, AgentRequest, Attachment, DeltaSink, PromptTemplate};
use crate::backoff::Backoff;
use crate::bridge::{BridgeClient, BridgeError};
use crate::deltas::{self, STREAM_INTERVAL};

/// How long the goodbye `fail` of an abandoned item may take.
const ABANDON_TIMEOUT: Duration = Duration::from_secs(5);

/// What a worker needs, shared by all items in flight.
pub(crate) struct Worker {
    pub bridge: BridgeClient,
    pub agent: Arc<dyn Agent>,
    pub lease_secs: u64,
    /// Longest the agent may take for one message.
    pub agent_timeout: Duration,
    pub prompt: Option<PromptTemplate>,
}

/// How serving an item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemOutcome {
    /// The reply is stored; the visitor has it.
    Replied,
    /// The agent failed and the bridge took the item back: `dead` when it was dead-lettered,
    /// otherwise it will be offered again.
    Failed { dead: bool },
    /// The bridge answered 409: another attempt owns the item, or it is finished.
    LeaseLost,
    /// Stopped without an answer (key refused, shutdown grace ran out); the lease will expire or
    /// was given back, and the item will be offered again.
    Abandoned,
}

impl Worker {
    /// Serves `item` until it is answered, failed, lost, or `abandon` is cancelled.
    /// `typing_shown`: the claim already showed the visitor the agent typing.
    pub(crate) async fn serve(
        &self,
        item: ClaimedItem,
        typing_shown: bool,
        abandon: CancellationToken,
    ) -> ItemOutcome {
        let lease_id = item.lease_id.clone();
        let started = Instant::now();
        let outcome = tokio::select! {
            // Work first: when the reply just went through, a 409 from a racing extend only means
            // "already finished".
            biased;
            outcome = self.work(&lease_id, item, typing_shown) => outcome,
            outcome = self.keep_lease(&lease_id) => outcome,
            () = abandon.cancelled() => {
                self.give_back(&lease_id).await;
                ItemOutcome::Abandoned
            }
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            ItemOutcome::Replied => tracing::info!(elapsed_ms, "replied"),
            ItemOutcome::Failed { dead } => {
                tracing::info!(
                    elapsed_ms,
                    dead_lettered = dead,
                    "failure reported to the bridge"
                )
            }
            ItemOutcome::LeaseLost => tracing::warn!(
                elapsed_ms,
                "lease lost (superseded by a newer attempt, or the item is finished); dropping the item"
            ),
            ItemOutcome::Abandoned => tracing::warn!(elapsed_ms, "item abandoned without a reply"),
        }
        outcome
    }

    /// Unless the claim showed it already, the typing signal goes out while the agent is already
    /// being asked (waiting for it first would delay every answer by a round trip to the
    /// bridge); the answer's own calls to the bridge wait for it, so the visitor still sees
    /// typing, then text, then the reply.
    async fn work(&self, lease_id: &str, item: ClaimedItem, typing_shown: bool) -> ItemOutcome {
        let (typed, typed_rx) = tokio::sync::watch::channel(typing_shown);
        let typing = async {
            if typing_shown {
                return;
            }
            let typing = StreamRequest {
                typing: Some(true),
                ..StreamRequest::default()
            };
            if let Err(e) = self.bridge.stream(lease_id, &typing).await {
                // Only a cosmetic signal; a lost lease or a refused key also stops the
                // answer's own calls.
                tracing::debug!(error = %e, "typing signal not delivered");
            }
            typed.send_replace(true);
        };
        tokio::join!(typing, self.answer(lease_id, item, typed_rx)).1
    }

    /// Asks the agent and streams its answer to the bridge; every call to the bridge waits for
    /// `typed` (the typing signal's call) to be done.
    async fn answer(
        &self,
        lease_id: &str,
        item: ClaimedItem,
        typed: tokio::sync::watch::Receiver<bool>,
    ) -> ItemOutcome {
        let after_typing = || {
            let mut typed = typed.clone();
            async move {
                // Err only if the typing call was dropped, and then there is nothing to wait for.
                let _ = typed.wait_for(|done| *done).await;
            }
        };
        let mut attachments = Vec::with_capacity(item.message.attachments.len());
        for reference in &item.message.attachments {
            match self.bridge.attachment(&reference.id).await {
                Ok(data) => attachments.push(Attachment {
                    reference: reference.clone(),
                    data,
                }),
                Err(e) if ends_item(&e) => return outcome_of(&e),
                Err(e) => {
                    let failure = AgentError {
                        message: format!("cannot fetch the attachment {}: {e}", reference.filename),
                        retryable: e.is_retryable(),
                    };
                    return self.report_failure(lease_id, &failure).await;
                }
            }
        }
        let request =
            AgentRequest::new(item, self.prompt.as_ref(), chrono::Utc::now(), attachments);
        let (sink, mut deltas) = DeltaSink::channel();
        let agent = async {
            // The sink lives exactly as long as the agent runs, so the pump sees the end of the
            // deltas when the agent returns.
            let sink = sink;
            match tokio::time::timeout(self.agent_timeout, self.agent.respond(&request, &sink))
                .await
            {
                Ok(answer) => answer,
                Err(_) => Err(AgentError::retryable(format!(
                    "the agent did not answer within {} s",
                    self.agent_timeout.as_secs()
                ))),
            }
        };
        let bridge = &self.bridge;
        let pump = deltas::pump(&mut deltas, STREAM_INTERVAL, |text| {
            let typed = after_typing();
            async move {
                typed.await;
                let delta = StreamRequest {
                    text_delta: Some(text),
                    typing: None,
                };
                bridge.stream(lease_id, &delta).await.map(drop)
            }
        });
        tokio::pin!(agent, pump);
        let mut answer = None;
        let streamed = loop {
            tokio::select! {
                result = &mut agent, if answer.is_none() => answer = Some(result),
                streamed = &mut pump => break streamed,
            }
        };
        if let Err(e) = streamed {
            // Lease lost or key refused: dropping `agent` here stops it.
            return outcome_of(&e);
        }
        let answer = match answer {
            Some(answer) => answer,
            None => agent.await,
        };
        after_typing().await;
        match answer {
            Ok(reply) => self.deliver_reply(lease_id, &reply.text).await,
            Err(e) => self.report_failure(lease_id, &e).await,
        }
    }

    /// Posts the final reply, retrying passing failures: the call is idempotent, and a reply that
    /// arrives late is still better than a redelivery.
    async fn deliver_reply(&self, lease_id: &str, text: &str) -> ItemOutcome {
        let mut backoff = Backoff::for_item_calls();
        loop {
            match self.bridge.reply(lease_id, text).await {
                Ok(_) => return ItemOutcome::Replied,
                Err(e) if e.is_retryable() => {
                    log_retry(&backoff, "could not deliver the reply", &e);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e @ BridgeError::Rejected { .. }) => {
                    tracing::error!(error = %e, "the bridge refused the reply; dead-lettering the item");
                    let failure =
                        AgentError::permanent(format!("the bridge refused the reply: {e}"));
                    return self.report_failure(lease_id, &failure).await;
                }
                Err(e) => return outcome_of(&e),
            }
        }
    }

    /// Tells the bridge the agent could not answer, so it requeues or dead-letters the item now
    /// rather than after the lease runs out.
    async fn report_failure(&self, lease_id: &str, failure: &AgentError) -> ItemOutcome {
        tracing::warn!(error = %failure.message, retryable = failure.retryable, "agent failed");
        let request = FailRequest {
            error: failure.message.clone(),
            retry: failure.retryable,
        };
        let mut backoff = Backoff::for_item_calls();
        loop {
            match self.bridge.fail(lease_id, &request).await {
                Ok(outcome) => {
                    return ItemOutcome::Failed {
                        dead: outcome.state == "dead",
                    };
                }
                Err(e) if e.is_retryable() => {
                    log_retry(&backoff, "could not report the failure", &e);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e @ BridgeError::Rejected { .. }) => {
                    tracing::error!(error = %e, "the bridge refused the failure report; the lease will expire");
                    return ItemOutcome::Abandoned;
                }
                Err(e) => return outcome_of(&e),
            }
        }
    }

    /// Renews the lease every third of its length, so one or two lost renewals still leave it
    /// alive. Returns only when the lease is lost.
    async fn keep_lease(&self, lease_id: &str) -> ItemOutcome {
        let period =
            Duration::from_millis(self.lease_secs * 1000 / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(period).await;
            match self.bridge.extend(lease_id, self.lease_secs).await {
                Ok(_) => {}
                Err(BridgeError::LeaseLost { .. }) => return ItemOutcome::LeaseLost,
                // The lease may run out before the next try; the reply then gets 409 and the
                // item goes to another attempt, which is the best that can happen.
                Err(e) => tracing::warn!(error = %e, "could not renew the lease"),
            }
        }
    }

    /// Hands an unfinished item back for another attempt right away, instead of letting the
    /// visitor wait for the lease to expire.
    async fn give_back(&self, lease_id: &str) {
        let request = FailRequest {
            error: "the connector shut down before the agent finished".into(),
            retry: true,
        };
        match tokio::time::timeout(ABANDON_TIMEOUT, self.bridge.fail(lease_id, &request)).await {
            Ok(Ok(_)) => tracing::info!("handed the unfinished item back to the bridge"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not hand the item back; its lease will expire")
            }
            Err(_) => tracing::warn!("handing the item back timed out; its lease will expire"),
        }
    }
}

/// Errors after which nothing more can be written for the item.
fn ends_item(e: &BridgeError) -> bool {
    matches!(
        e,
        BridgeError::LeaseLost { .. } | BridgeError::Unauthorized { .. }
    )
}

fn outcome_of(e: &BridgeError) -> ItemOutcome {
    match e {
        BridgeError::LeaseLost { .. } => ItemOutcome::LeaseLost,
        other => {
            tracing::error!(error = %other, "giving up on the item");
            ItemOutcome::Abandoned
        }
    }
}

/// Logs the first failure of a retried call loudly and the rest quietly.
fn log_retry(backoff: &Backoff, what: &str, e: &BridgeError) {
    if backoff.failures() == 0 {
        tracing::warn!(error = %e, "{what}; retrying");
    } else {
        tracing::debug!(error = %e, attempt = backoff.failures() + 1, "{what}; retrying");
    }
}
