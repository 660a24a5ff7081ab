//! `airlock-connector check`: verifies the setup step by step — settings, bridge, key, agent —
//! and prints a verdict for each, so an operator sees at once which one to fix.

use std::time::Instant;

use airlock_shared::connector::SessionContext;
use airlock_shared::{Message, MessageStatus, Role};

use crate::agent::{self, AgentError, AgentRequest, DeltaSink, PromptTemplate};
use crate::bridge::BridgeClient;
use crate::config::Config;

/// The message the agent is asked to answer during a check.
const CHECK_MESSAGE: &str =
    "This is a connection test from airlock-connector check. Please reply with a short greeting.";

/// Runs every check, printing one line per step. Returns whether all passed.
pub async fn check(config: &Config) -> bool {
    println!("Checking the connector's setup:");
    let passed = run_steps(config).await;
    if passed {
        println!("All checks passed: the connector is ready to serve visitors.");
    } else {
        println!("Some checks failed; fix the first one marked ✗ and run the check again.");
    }
    passed
}

fn pass(what: impl AsRef<str>) {
    println!("  ✓ {}", what.as_ref());
}

fn fail(what: impl AsRef<str>) {
    println!("  ✗ {}", what.as_ref());
}

fn skip(what: &str) {
    println!("  - {what}: skipped");
}

async fn run_steps(config: &Config) -> bool {
    if let Err(e) = config.validate() {
        fail(format!("settings: {e:#}"));
        return false;
    }
    pass(format!(
        "settings are valid (agent `{}`)",
        agent_name(config)
    ));

    let bridge_ok = check_bridge(config).await;
    let agent_ok = check_agent(config).await;
    bridge_ok && agent_ok
}

fn agent_name(config: &Config) -> String {
    format!("{:?}", config.agent).to_lowercase()
}

/// The bridge answers, and accepts the key.
async fn check_bridge(config: &Config) -> bool {
    let key = config.key.clone().expect("validated: a key is set");
    let client = match BridgeClient::new(&config.bridge_url, key, config.ca_bundle.as_deref()) {
        Ok(client) => client,
        Err(e) => {
            fail(format!("bridge client: {e}"));
            skip("connector key");
            return false;
        }
    };
    let started = Instant::now();
    if let Err(e) = client.health().await {
        fail(format!("bridge at {}: {e}", config.bridge_url));
        skip("connector key");
        return false;
    }
    pass(format!(
        "bridge reachable at {} ({} ms)",
        config.bridge_url,
        started.elapsed().as_millis()
    ));
    match client.me().await {
        Ok(me) => {
            let scope = if me.all_interfaces {
                "all interfaces".to_string()
            } else {
                format!("interfaces {}", me.interfaces.join(", "))
            };
            pass(format!(
                "connector key accepted: `{}` ({}), serves {scope}",
                me.name, me.id
            ));
            true
        }
        Err(e) => {
            fail(format!("connector key: {e}"));
            false
        }
    }
}

/// The agent answers a test message within the agent timeout.
async fn check_agent(config: &Config) -> bool {
    let name = agent_name(config);
    let agent = match agent::from_config(config) {
        Ok(agent) => agent,
        Err(e) => {
            fail(format!("agent `{name}`: {e:#}"));
            return false;
        }
    };
    let prompt = match config.system_prompt_template() {
        Ok(template) => template.map(PromptTemplate::new),
        Err(e) => {
            fail(format!("system prompt: {e:#}"));
            return false;
        }
    };
    let now = chrono::Utc::now();
    let session = SessionContext {
        id: "ses_check".into(),
        interface: "check".into(),
        interface_title: "Connector check".into(),
        visitor_id: "vis_check".into(),
        visitor_name: None,
        visitor_user_id: None,
        visitor_email: None,
        page_url: None,
        page_title: None,
        referrer: None,
        locale: None,
        context: None,
        system_prompt: None,
        agent_context: None,
    };
    let request = AgentRequest {
        attachments: Vec::new(),
        system_prompt: prompt.as_ref().map(|p| p.render(&session, now)),
        message: Message {
            id: "msg_check".into(),
            seq: 1,
            rev: 1,
            role: Role::User,
            text: CHECK_MESSAGE.into(),
            html: None,
            status: MessageStatus::Processing,
            client_id: None,
            reply_to: None,
            error: None,
            attachments: Vec::new(),
            created_at: now,
            updated_at: now,
        },
        session,
        history: Vec::new(),
        attempt: 1,
    };
    let (sink, mut deltas) = DeltaSink::channel();
    let started = Instant::now();
    let answer = tokio::time::timeout(config.agent_timeout(), agent.respond(&request, &sink)).await;
    drop(sink);
    let mut streamed = 0;
    while deltas.try_recv().is_ok() {
        streamed += 1;
    }
    let elapsed = started.elapsed().as_millis();
    match answer {
        Ok(Ok(reply)) if !reply.text.trim().is_empty() => {
            pass(format!(
                "agent `{name}` answered in {elapsed} ms ({streamed} streamed pieces): {}",
                excerpt(&reply.text)
            ));
            true
        }
        Ok(Ok(_)) => {
            fail(format!("agent `{name}` answered with an empty reply"));
            false
        }
        Ok(Err(AgentError { message, retryable })) => {
            let kind = if retryable { "temporary" } else { "permanent" };
            fail(format!("agent `{name}` failed ({kind}): {message}"));
            false
        }
        Err(_) => {
            fail(format!(
                "agent `{name}` did not answer within {} s",
                config.agent_timeout_secs
            ));
            false
        }
    }
}

/// The first line of a reply, cut to a readable length.
fn excerpt(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("");
    let cut: String = line.chars().take(80).collect();
    if cut.len() < line.len() || text.trim().lines().count() > 1 {
        format!("\"{cut}…\"")
    } else {
        format!("\"{cut}\"")
    }
}
