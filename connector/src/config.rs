//! The connector's settings: flags, each also read from an `AIRLOCK_…` environment variable
//! (and so from `.env`), every one with a default that works on a laptop except the key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use airlock_shared::{MAX_CLAIM_WAIT_SECS, MAX_LEASE_SECS, MIN_LEASE_SECS};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_BRIDGE_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_CONCURRENCY: u32 = 4;
pub const DEFAULT_LEASE_SECS: u64 = airlock_shared::DEFAULT_LEASE_SECS;
pub const DEFAULT_CLAIM_WAIT_SECS: u64 = MAX_CLAIM_WAIT_SECS;
pub const DEFAULT_HISTORY: u32 = 20;
pub const DEFAULT_ECHO_DELAY_MS: u64 = 40;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
pub const DEFAULT_AGENT_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_OPENAI_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// The command line: the settings, and what to do with them.
#[derive(Debug, Parser)]
#[command(
    name = "airlock-connector",
    version,
    about = "Runs beside an AI agent: long-polls the Airlock bridge for visitor messages and \
             posts the agent's replies. Opens no listening socket.",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the connector does; with no sub-command it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve visitor messages until SIGTERM or Ctrl-C (the default).
    Run,
    /// Check the bridge URL, the key and the agent, step by step, and print a verdict for each.
    Check,
}

/// How the connector reaches the bridge and which agent answers.
///
/// Built by clap from flags and the environment, or in code with [`Config::new`] /
/// [`Config::for_demo`] (which never read the environment).
#[derive(Debug, Clone, PartialEq, Args)]
pub struct Config {
    /// Base URL of the bridge (scheme, host, port; the API prefix is added).
    #[arg(long, global = true, env = "AIRLOCK_BRIDGE_URL", default_value = DEFAULT_BRIDGE_URL, value_parser = parse_bridge_url)]
    pub bridge_url: String,

    /// Connector key, as shown once by the bridge when the connector was created.
    // `hide_env_values`: otherwise `--help` would print the key from the environment.
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_CONNECTOR_KEY",
        hide_env_values = true
    )]
    pub key: Option<ConnectorKey>,

    /// The agent that answers visitor messages.
    #[arg(long, global = true, env = "AIRLOCK_AGENT", value_enum, default_value_t = AgentKind::Echo)]
    pub agent: AgentKind,

    /// How many visitor messages may be in the agent's hands at once.
    #[arg(long, global = true, env = "AIRLOCK_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Lease length asked of the bridge, in seconds; renewed every third of it while the agent
    /// works, so a crashed connector's messages are offered again after at most this long.
    #[arg(long, global = true, env = "AIRLOCK_LEASE_SECS", default_value_t = DEFAULT_LEASE_SECS,
          value_parser = clap::value_parser!(u64).range(MIN_LEASE_SECS..=MAX_LEASE_SECS))]
    pub lease_secs: u64,

    /// How long one claim may wait for a visitor message, in seconds (at most 50, below the idle
    /// timeout of common proxies and load balancers; larger values are capped).
    #[arg(long, global = true, env = "AIRLOCK_CLAIM_WAIT", default_value_t = DEFAULT_CLAIM_WAIT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_wait: u64,

    /// How many earlier messages of the session the agent gets with each message.
    #[arg(long, global = true, env = "AIRLOCK_HISTORY", default_value_t = DEFAULT_HISTORY)]
    pub history: u32,

    /// On SIGTERM / Ctrl-C: how long messages already in the agent's hands may take to finish,
    /// in seconds. Unfinished ones are then handed back to the bridge for another connector.
    #[arg(long, global = true, env = "AIRLOCK_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,

    /// Echo agent: pause between streamed words, in milliseconds, so streaming is visible.
    #[arg(long, global = true, env = "AIRLOCK_ECHO_DELAY_MS", default_value_t = DEFAULT_ECHO_DELAY_MS)]
    pub echo_delay_ms: u64,

    /// Longest the agent may take for one reply, in seconds; after that the attempt counts as
    /// failed and the message is offered again (until the bridge's attempt limit).
    #[arg(long, global = true, env = "AIRLOCK_AGENT_TIMEOUT_SECS", default_value_t = DEFAULT_AGENT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub agent_timeout_secs: u64,

    /// Extra CA certificates (a PEM file) to trust for the bridge's HTTPS, for a bridge with a
    /// private certificate. The system's trusted roots stay trusted.
    #[arg(long, global = true, env = "AIRLOCK_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,

    #[command(flatten)]
    pub prompt: PromptOptions,

    #[command(flatten)]
    pub openai: OpenAiOptions,

    #[command(flatten)]
    pub webhook: WebhookOptions,

    #[command(flatten)]
    pub command: CommandOptions,
}

/// The system prompt given to the agent (as the system message for `openai`, as `system_prompt`
/// in the JSON for `webhook` and `command`). Tags like `{page_url}` are filled per message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "System prompt")]
pub struct PromptOptions {
    /// The system prompt template, e.g. "You help visitors of {page_title}. Today is {date}."
    #[arg(long, global = true, env = "AIRLOCK_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,

    /// Read the system prompt template from this file instead.
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_SYSTEM_PROMPT_FILE",
        conflicts_with = "system_prompt"
    )]
    pub system_prompt_file: Option<PathBuf>,
}

/// `--agent openai`: any OpenAI-compatible `/chat/completions` (OpenAI, Ollama, vLLM,
/// llama.cpp server, LiteLLM), streamed.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Agent: openai")]
pub struct OpenAiOptions {
    /// Base URL of the API, up to and including `/v1` (`/chat/completions` is appended).
    #[arg(long, global = true, env = "AIRLOCK_OPENAI_BASE_URL", default_value = DEFAULT_OPENAI_BASE_URL)]
    pub openai_base_url: String,

    /// The model to ask, e.g. `gpt-4o-mini` or `llama3.2`.
    #[arg(long, global = true, env = "AIRLOCK_OPENAI_MODEL")]
    pub openai_model: Option<String>,

    /// API key, sent as `Authorization: Bearer …` (not needed for a local Ollama).
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub openai_api_key: Option<Secret>,

    /// Sampling temperature.
    #[arg(long, global = true, env = "AIRLOCK_OPENAI_TEMPERATURE")]
    pub openai_temperature: Option<f32>,

    /// Most tokens in one reply.
    #[arg(long, global = true, env = "AIRLOCK_OPENAI_MAX_TOKENS")]
    pub openai_max_tokens: Option<u32>,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        OpenAiOptions {
            openai_base_url: DEFAULT_OPENAI_BASE_URL.to_string(),
            openai_model: None,
            openai_api_key: None,
            openai_temperature: None,
            openai_max_tokens: None,
        }
    }
}

/// `--agent webhook`: POST each message as JSON to a URL (n8n, Make, your own service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Agent: webhook")]
pub struct WebhookOptions {
    /// Where to POST each message.
    #[arg(long, global = true, env = "AIRLOCK_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// The body and reply format: `airlock` (documented in docs/connector.md) or `n8n` (the n8n
    /// Chat Trigger's format).
    #[arg(long, global = true, env = "AIRLOCK_WEBHOOK_FORMAT", value_enum, default_value_t = WebhookFormat::Airlock)]
    pub webhook_format: WebhookFormat,

    /// Value of the `Authorization` header sent to the webhook, e.g. `Bearer s3cret`.
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_WEBHOOK_AUTH",
        hide_env_values = true
    )]
    pub webhook_auth: Option<Secret>,
}

/// The JSON a webhook gets and answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum WebhookFormat {
    /// Airlock's own: `{message, session, history, context, system_prompt, attempt}`.
    #[default]
    Airlock,
    /// The n8n Chat Trigger's: `{action: "sendMessage", sessionId, chatInput, …}`.
    N8n,
}

/// `--agent command`: run a local program per message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Agent: command")]
pub struct CommandOptions {
    /// The program and its arguments, split like a shell would (no shell runs), e.g.
    /// `python3 /opt/agent/reply.py --fast`. It gets the message JSON on stdin; each line it prints
    /// is streamed to the visitor.
    #[arg(long = "command", global = true, env = "AIRLOCK_COMMAND")]
    pub command_line: Option<String>,
}

/// Which agent adapter answers; each has its own options on [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentKind {
    /// Replies with the visitor's own text, streamed word by word. For demos and tests.
    Echo,
    /// An OpenAI-compatible chat completions API, streamed (OpenAI, Ollama, vLLM, LiteLLM, …).
    Openai,
    /// POSTs each message to a URL and streams the JSON, NDJSON or SSE answer (n8n, …).
    Webhook,
    /// Runs a local program per message.
    Command,
}

impl Config {
    /// Every setting at its default, for the bridge at `bridge_url` with connector key `key`.
    /// Reads nothing from the environment.
    pub fn new(bridge_url: impl Into<String>, key: impl Into<String>) -> Config {
        Config {
            bridge_url: bridge_url.into(),
            key: Some(ConnectorKey::new(key)),
            agent: AgentKind::Echo,
            concurrency: DEFAULT_CONCURRENCY,
            lease_secs: DEFAULT_LEASE_SECS,
            claim_wait: DEFAULT_CLAIM_WAIT_SECS,
            history: DEFAULT_HISTORY,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            echo_delay_ms: DEFAULT_ECHO_DELAY_MS,
            agent_timeout_secs: DEFAULT_AGENT_TIMEOUT_SECS,
            ca_bundle: None,
            prompt: PromptOptions::default(),
            openai: OpenAiOptions::default(),
            webhook: WebhookOptions::default(),
            command: CommandOptions::default(),
        }
    }

    /// The demo's connector: the echo agent, everything else at its default. Pinned to echo
    /// on purpose, whatever the command line's default agent becomes.
    pub fn for_demo(bridge_url: impl Into<String>, key: impl Into<String>) -> Config {
        Config {
            agent: AgentKind::Echo,
            ..Config::new(bridge_url, key)
        }
    }

    /// Refuses settings `run` cannot work with. clap already checks flags; this also covers a
    /// `Config` built in code.
    pub fn validate(&self) -> anyhow::Result<()> {
        parse_bridge_url(&self.bridge_url).map_err(anyhow::Error::msg)?;
        match &self.key {
            Some(key) if !key.expose().is_empty() => {}
            _ => bail!("no connector key: set AIRLOCK_CONNECTOR_KEY or pass --key"),
        }
        if self.concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        if !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&self.lease_secs) {
            bail!(
                "lease_secs must be between {MIN_LEASE_SECS} and {MAX_LEASE_SECS}, not {}",
                self.lease_secs
            );
        }
        match self.agent {
            AgentKind::Echo => {}
            AgentKind::Openai => {
                if self
                    .openai
                    .openai_model
                    .as_deref()
                    .is_none_or(str::is_empty)
                {
                    bail!(
                        "the openai agent needs a model: set AIRLOCK_OPENAI_MODEL or pass --openai-model"
                    );
                }
                parse_http_url(&self.openai.openai_base_url)
                    .map_err(|e| anyhow::anyhow!("AIRLOCK_OPENAI_BASE_URL: {e}"))?;
            }
            AgentKind::Webhook => {
                let url = self.webhook.webhook_url.as_deref().context(
                    "the webhook agent needs a URL: set AIRLOCK_WEBHOOK_URL or pass --webhook-url",
                )?;
                parse_http_url(url).map_err(|e| anyhow::anyhow!("AIRLOCK_WEBHOOK_URL: {e}"))?;
            }
            AgentKind::Command => {
                let line = self.command.command_line.as_deref().unwrap_or("");
                if self.command_argv()?.is_empty() {
                    bail!(
                        "the command agent needs a program: set AIRLOCK_COMMAND or pass --command (got {line:?})"
                    );
                }
            }
        }
        Ok(())
    }

    /// The command agent's program and arguments, split like a shell would split them.
    pub fn command_argv(&self) -> anyhow::Result<Vec<String>> {
        let line = self.command.command_line.as_deref().unwrap_or("");
        shlex::split(line).with_context(|| format!("cannot split the command line {line:?}"))
    }

    /// The system prompt template: the inline one, or the file's contents.
    pub fn system_prompt_template(&self) -> anyhow::Result<Option<String>> {
        match (&self.prompt.system_prompt, &self.prompt.system_prompt_file) {
            (Some(inline), _) => Ok(Some(inline.clone())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(Some)
                .with_context(|| format!("cannot read the system prompt file {}", path.display())),
            (None, None) => Ok(None),
        }
    }

    pub fn agent_timeout(&self) -> Duration {
        Duration::from_secs(self.agent_timeout_secs)
    }

    /// The claim wait actually sent: at least 1 s (a zero wait would turn long-polling into a
    /// busy loop) and at most the bridge's limit.
    pub fn effective_claim_wait(&self) -> u64 {
        self.claim_wait.clamp(1, MAX_CLAIM_WAIT_SECS)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn echo_delay(&self) -> Duration {
        Duration::from_millis(self.echo_delay_ms)
    }

    pub(crate) fn require_key(&self) -> anyhow::Result<&ConnectorKey> {
        self.key
            .as_ref()
            .context("no connector key: set AIRLOCK_CONNECTOR_KEY or pass --key")
    }
}

fn parse_bridge_url(s: &str) -> Result<String, String> {
    parse_http_url(s).map_err(|e| format!("the bridge URL {e}"))
}

/// Accepts an absolute http(s) URL with a host.
fn parse_http_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("is not a URL ({e}): {s}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https: {s}"));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(format!("needs a host: {s}"));
    }
    Ok(s.to_owned())
}

/// A secret setting (a key or token). Never shown by `Debug` or `Display`, so it cannot leak
/// into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The connector key the bridge issued.
pub type ConnectorKey = Secret;

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for an `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_appears_in_debug_output() {
        let config = Config::new("http://127.0.0.1:1", "ck_supersecret");
        let shown = format!("{config:?} {}", config.key.as_ref().unwrap());
        assert!(!shown.contains("supersecret"), "{shown}");
        assert_eq!(config.key.unwrap().expose(), "ck_supersecret");
    }

    /// Parses `args` as the command line would, but with every `env = …` removed, so the
    /// AIRLOCK_* variables of whoever runs the tests cannot change the outcome.
    fn parse_without_env(args: &[&str]) -> Result<Config, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(
            std::iter::once("airlock-connector").chain(args.iter().copied()),
        )?;
        Cli::from_arg_matches(&matches).map(|cli| cli.config)
    }

    #[test]
    fn command_line_defaults_match_config_new() {
        let parsed = parse_without_env(&["--key", "k"]).unwrap();
        assert_eq!(parsed, Config::new(DEFAULT_BRIDGE_URL, "k"));
    }

    #[test]
    fn flags_override_defaults() {
        let parsed = parse_without_env(&[
            "--bridge-url",
            "https://bridge.example",
            "--key",
            "k",
            "--concurrency",
            "7",
            "--lease-secs",
            "12",
            "--claim-wait",
            "9",
            "--history",
            "3",
            "--echo-delay-ms",
            "0",
            "--shutdown-grace-secs",
            "5",
        ])
        .unwrap();
        let expected = Config {
            concurrency: 7,
            lease_secs: 12,
            claim_wait: 9,
            history: 3,
            echo_delay_ms: 0,
            shutdown_grace_secs: 5,
            ..Config::new("https://bridge.example", "k")
        };
        assert_eq!(parsed, expected);
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        for args in [
            ["--concurrency", "0"],
            ["--lease-secs", "0"],
            ["--lease-secs", "601"],
            ["--claim-wait", "0"],
            ["--bridge-url", "ftp://x"],
            ["--bridge-url", "not a url"],
        ] {
            let result = parse_without_env(&["--key", "k", args[0], args[1]]);
            assert!(result.is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn claim_wait_is_capped_at_the_bridge_limit() {
        let mut config = Config::new("http://127.0.0.1:1", "k");
        config.claim_wait = 500;
        assert_eq!(config.effective_claim_wait(), MAX_CLAIM_WAIT_SECS);
        config.claim_wait = 5;
        assert_eq!(config.effective_claim_wait(), 5);
    }

    #[test]
    fn a_missing_or_empty_key_fails_validation() {
        let mut config = Config::new("http://127.0.0.1:1", "");
        assert!(config.validate().is_err());
        config.key = None;
        assert!(config.validate().is_err());
        config.key = Some(ConnectorKey::new("k"));
        config.validate().unwrap();
    }
}
