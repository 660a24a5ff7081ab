//! The Airlock connector: runs beside an AI agent on a private host, long-polls the bridge for
//! visitor messages, hands each to the agent, streams the reply back and posts the final reply.
//!
//! It opens no listening socket: every connection is an outbound request to the bridge.
//! [`run`] is what the `airlock-connector` binary (and the demo) runs.

pub mod agent;
pub mod backoff;
pub mod bridge;
pub mod check;
pub mod config;
pub mod deltas;
pub mod poller;
mod text;
mod worker;

use std::sync::Arc;

use airlock_shared::MAX_CLAIM_WAIT_SECS;
use airlock_shared::connector::ClaimRequest;
use tokio_util::sync::CancellationToken;

pub use agent::{
    Agent, AgentError, AgentReply, AgentRequest, Attachment, DeltaSink, PromptTemplate,
};
pub use config::{Cli, Command, Config};

use crate::bridge::BridgeClient;
use crate::poller::Poller;
use crate::worker::Worker;

/// Serves visitor messages with the agent `config` names until `shutdown` is cancelled.
///
/// Bridge outages are ridden out with back-off, never returned as errors. On cancel it stops
/// claiming at once, lets items in flight finish (up to the shutdown grace) and then returns.
/// Errors only for unusable settings.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let agent = agent::from_config(&config)?;
    run_with_agent(config, agent, shutdown).await
}

/// Like [`run`], with an agent built by the caller (an adapter not selectable by flag yet, or a
/// test double). `config.agent` is ignored.
pub async fn run_with_agent(
    config: Config,
    agent: Arc<dyn Agent>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let key = config.require_key()?.clone();
    if config.claim_wait > MAX_CLAIM_WAIT_SECS {
        tracing::warn!(
            asked = config.claim_wait,
            used = MAX_CLAIM_WAIT_SECS,
            "claim wait capped at the bridge's limit"
        );
    }
    let prompt = config.system_prompt_template()?.map(PromptTemplate::new);
    let bridge = BridgeClient::new(&config.bridge_url, key, config.ca_bundle.as_deref())?;
    tracing::info!(
        bridge = %config.bridge_url,
        agent = agent.name(),
        concurrency = config.concurrency,
        lease_secs = config.lease_secs,
        "connector starting"
    );
    let poller = Poller {
        worker: Arc::new(Worker {
            bridge,
            agent,
            lease_secs: config.lease_secs,
            agent_timeout: config.agent_timeout(),
            prompt,
        }),
        bridge_url: config.bridge_url.clone(),
        concurrency: usize::try_from(config.concurrency).unwrap_or(usize::MAX),
        claim: ClaimRequest {
            max: config.concurrency,
            wait: config.effective_claim_wait(),
            lease_secs: config.lease_secs,
            history: config.history,
            typing: true,
        },
        shutdown_grace: config.shutdown_grace(),
    };
    poller.run(shutdown).await;
    tracing::info!("connector stopped");
    Ok(())
}
