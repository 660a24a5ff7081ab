//! The connector's settings: flags, each also read from an `AIRLOCK_…` environment variable
//! (and so from `.env`), every one with a default that works on a laptop except the key.

use std::fmt;
use std::time::Duration;

use airlock_shared::{MAX_CLAIM_WAIT_SECS, MAX_LEASE_SECS, MIN_LEASE_SECS};
use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

pub const DEFAULT_BRIDGE_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_CONCURRENCY: u32 = 4;
pub const DEFAULT_LEASE_SECS: u64 = airlock_shared::DEFAULT_LEASE_SECS;
pub const DEFAULT_CLAIM_WAIT_SECS: u64 = MAX_CLAIM_WAIT_SECS;
pub const DEFAULT_HISTORY: u32 = 20;
pub const DEFAULT_ECHO_DELAY_MS: u64 = 40;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

/// How the connector reaches the bridge and which agent answers.
///
/// Built by clap from flags and the environment, or in code with [`Config::new`] /
/// [`Config::for_demo`] (which never read the environment).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "airlock-connector",
    version,
    about = "Runs beside an AI agent: long-polls the Airlock bridge for visitor messages and \
             posts the agent's replies. Opens no listening socket.",
    long_about = None
)]
pub struct Config {
    /// Base URL of the bridge (scheme, host, port; the API prefix is added).
    #[arg(long, env = "AIRLOCK_BRIDGE_URL", default_value = DEFAULT_BRIDGE_URL, value_parser = parse_bridge_url)]
    pub bridge_url: String,

    /// Connector key, as shown once by the bridge when the connector was created.
    // `hide_env_values`: otherwise `--help` would print the key from the environment.
    #[arg(long, env = "AIRLOCK_CONNECTOR_KEY", hide_env_values = true)]
    pub key: Option<ConnectorKey>,

    /// The agent that answers visitor messages.
    #[arg(long, env = "AIRLOCK_AGENT", value_enum, default_value_t = AgentKind::Echo)]
    pub agent: AgentKind,

    /// How many visitor messages may be in the agent's hands at once.
    #[arg(long, env = "AIRLOCK_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Lease length asked of the bridge, in seconds; renewed every third of it while the agent
    /// works, so a crashed connector's messages are offered again after at most this long.
    #[arg(long, env = "AIRLOCK_LEASE_SECS", default_value_t = DEFAULT_LEASE_SECS,
          value_parser = clap::value_parser!(u64).range(MIN_LEASE_SECS..=MAX_LEASE_SECS))]
    pub lease_secs: u64,

    /// How long one claim may wait for a visitor message, in seconds (at most 50, below the idle
    /// timeout of common proxies and load balancers; larger values are capped).
    #[arg(long, env = "AIRLOCK_CLAIM_WAIT", default_value_t = DEFAULT_CLAIM_WAIT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_wait: u64,

    /// How many earlier messages of the session the agent gets with each message.
    #[arg(long, env = "AIRLOCK_HISTORY", default_value_t = DEFAULT_HISTORY)]
    pub history: u32,

    /// On SIGTERM / Ctrl-C: how long messages already in the agent's hands may take to finish,
    /// in seconds. Unfinished ones are then handed back to the bridge for another connector.
    #[arg(long, env = "AIRLOCK_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,

    /// Echo agent: pause between streamed words, in milliseconds, so streaming is visible.
    #[arg(long, env = "AIRLOCK_ECHO_DELAY_MS", default_value_t = DEFAULT_ECHO_DELAY_MS)]
    pub echo_delay_ms: u64,
}

/// Which agent adapter answers. Each later adapter (`openai`, `webhook`, `command`) becomes a
/// variant here with its own options on [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentKind {
    /// Replies with the visitor's own text, streamed word by word. For demos and tests.
    Echo,
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
        Ok(())
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
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL ({e}): {s}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the bridge URL must be http or https: {s}"));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(format!("the bridge URL needs a host: {s}"));
    }
    Ok(s.to_owned())
}

/// A connector key. Never shown by `Debug` or `Display`, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectorKey(String);

impl ConnectorKey {
    pub fn new(key: impl Into<String>) -> ConnectorKey {
        ConnectorKey(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConnectorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectorKey(<redacted>)")
    }
}

impl fmt::Display for ConnectorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for ConnectorKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ConnectorKey(s.trim().to_owned()))
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
        let command = Config::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(
            std::iter::once("airlock-connector").chain(args.iter().copied()),
        )?;
        Config::from_arg_matches(&matches)
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
