//! The bridge's settings: flags, `AIRLOCK_*` environment variables, or `.env` (loaded first).
//! Every setting has a default that works on a laptop; `airlock-bridge --help` is the reference.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client_ip::TrustedProxies;
use crate::store::{SqliteSync, StoreOptions, sqlite_url};

/// The public Airlock bridge: sessions, inbox, outbox, and the visitor, connector and admin APIs.
#[derive(Debug, Parser)]
#[command(name = "airlock-bridge", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings shared by the server and every CLI sub-command.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "AIRLOCK_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Directory for the default SQLite database.
    #[arg(
        long,
        env = "AIRLOCK_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH` or `postgres://…`. Default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// An admin key to accept besides the stored ones. When no admin key exists at all, one is
    /// generated on first start and printed once.
    #[arg(long, env = "AIRLOCK_ADMIN_KEY", global = true, hide_env_values = true)]
    pub admin_key: Option<String>,

    /// The URL visitors reach the bridge at (used in printed links); default: http://LISTEN.
    #[arg(long, env = "AIRLOCK_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Deliveries of one visitor message to the agent before it is dead-lettered.
    #[arg(long, env = "AIRLOCK_MAX_ATTEMPTS", default_value_t = crate::store::DEFAULT_MAX_ATTEMPTS, global = true)]
    pub max_attempts: u32,

    /// Longest visitor message, in characters.
    #[arg(
        long,
        env = "AIRLOCK_MAX_MESSAGE_CHARS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_message_chars: usize,

    /// SQLite durability: `normal` survives a crash of the bridge process; `full` also survives a
    /// power cut, at the cost of an fsync per commit.
    #[arg(long, env = "AIRLOCK_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSync::Normal, global = true)]
    pub sqlite_synchronous: SqliteSync,

    /// Delete sessions (with their messages and files) inactive for more than this many days,
    /// checked at start-up and hourly; 0 keeps everything.
    #[arg(
        long,
        env = "AIRLOCK_RETENTION_DAYS",
        default_value_t = 0,
        global = true
    )]
    pub retention_days: u32,

    /// Milliseconds a long-poll or event stream that finds only the visitor's own new messages
    /// waits for the agent to pick them up before it answers, while a connector waits for work
    /// on this bridge, so that one answer carries both (the message, and the agent starting on
    /// it): one round trip fewer per message. 0 answers at once.
    #[arg(
        long,
        env = "AIRLOCK_PICKUP_WAIT_MS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(0..=1000),
        global = true
    )]
    pub pickup_wait_ms: u64,

    /// Largest database pool (PostgreSQL).
    #[arg(
        long,
        env = "AIRLOCK_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,

    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers name the client: a comma
    /// list of IPs and CIDR ranges, e.g. `127.0.0.1,10.0.0.0/8`. Default: none (the socket peer
    /// is the client).
    #[arg(
        long,
        env = "AIRLOCK_TRUSTED_PROXIES",
        default_value = "",
        hide_default_value = true,
        global = true
    )]
    pub trusted_proxies: TrustedProxies,

    /// New visitor sessions one client address may start per minute (0: no limit).
    #[arg(
        long,
        env = "AIRLOCK_SESSIONS_PER_IP_PER_MINUTE",
        default_value_t = 20,
        global = true
    )]
    pub sessions_per_ip_per_minute: u32,

    /// Public reads one client address may make per minute: interface config, message polls,
    /// event streams opened, uploads (0: no limit).
    #[arg(
        long,
        env = "AIRLOCK_READS_PER_IP_PER_MINUTE",
        default_value_t = 600,
        global = true
    )]
    pub reads_per_ip_per_minute: u32,

    /// Calls one connector key may make per minute (0: no limit).
    #[arg(
        long,
        env = "AIRLOCK_CONNECTOR_CALLS_PER_MINUTE",
        default_value_t = 60_000,
        global = true
    )]
    pub connector_calls_per_minute: u32,

    /// Calls one admin key may make per minute (0: no limit).
    #[arg(
        long,
        env = "AIRLOCK_ADMIN_CALLS_PER_MINUTE",
        default_value_t = 600,
        global = true
    )]
    pub admin_calls_per_minute: u32,

    /// Interface whose sessions the PHP web chat bridge's API (`/api/v1/?action=…`) serves;
    /// created (as a draft) on first use.
    #[arg(
        long,
        env = "AIRLOCK_COMPAT_INTERFACE",
        default_value = "web-chat",
        global = true
    )]
    pub compat_interface: String,

    /// Seconds an `inbox` read of the PHP bridge's API holds the messages it returns; one not
    /// answered through `outbox` by then is offered again.
    #[arg(
        long,
        env = "AIRLOCK_COMPAT_LEASE_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub compat_lease_secs: u64,
}

impl Config {
    /// The database URL in force: the configured one, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir))
    }

    /// The database URL with any password hidden, for printing.
    pub fn database_url_for_display(&self) -> String {
        crate::store::redact_url(&self.database_url())
    }

    pub fn uses_default_sqlite(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.db_max_connections,
            max_attempts: self.max_attempts,
            sqlite_sync: self.sqlite_synchronous,
        }
    }

    /// Base URL for links printed to the operator.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }

    /// Defaults only: no flags, no environment. For tests and embedding.
    pub fn defaults() -> Config {
        Cli::parse_from(["airlock-bridge"]).config
    }
}

/// Sub-commands: operate on the configured database directly (no admin key needed).
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge (the default when no sub-command is given).
    Serve,
    /// Manage chat interfaces.
    #[command(subcommand)]
    Interface(InterfaceCommand),
    /// Manage connector keys.
    #[command(subcommand, name = "connector-key")]
    ConnectorKey(ConnectorKeyCommand),
    /// Manage admin keys.
    #[command(subcommand, name = "admin-key")]
    AdminKey(AdminKeyCommand),
    /// Read sessions and transcripts.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Import the history of a PHP web chat bridge (its SQLite database) into the compat
    /// interface; running it again imports nothing twice.
    ImportPhpBridge {
        /// The PHP bridge's SQLite database file.
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Delete sessions inactive for more than N days, with their messages and files.
    Purge {
        /// Days of inactivity (default: AIRLOCK_RETENTION_DAYS).
        #[arg(long)]
        older_than_days: Option<u32>,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the database to PATH while the bridge keeps serving (SQLite:
    /// `VACUUM INTO`; PostgreSQL: runs `pg_dump --format=custom`).
    Backup {
        /// The file to write; it must not exist yet (see --force).
        path: PathBuf,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Replace the SQLite database with a backup. Stop the bridge first.
    Restore {
        /// A file written by `airlock-bridge backup`.
        path: PathBuf,
        /// Confirm replacing the database (the previous one is kept beside it).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete everything of one visitor: all their sessions, messages and files.
    Forget {
        /// The visitor's id (`vis_…`, shown with each session).
        #[arg(long, required_unless_present = "user_id", conflicts_with = "user_id")]
        visitor_id: Option<String>,
        /// A signed-in user's id (the `sub` of their identity token), on every interface.
        #[arg(long)]
        user_id: Option<String>,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum InterfaceCommand {
    /// Create an interface (a draft unless --publish).
    Create {
        /// URL name: lowercase letters, digits and dashes, 2–64 characters.
        #[arg(long)]
        slug: String,
        /// Title shown in the chat header.
        #[arg(long)]
        title: String,
        /// Internal name for admins (default: the title).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// First message visitors see.
        #[arg(long, default_value = "")]
        welcome: String,
        /// Input placeholder.
        #[arg(long, default_value = "")]
        placeholder: String,
        /// A suggested prompt chip (repeatable).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// `session` (history survives reloads in the tab) or `local` (survives closing the browser).
        #[arg(long, default_value = "session")]
        persistence: String,
        /// Language of the widget's texts, e.g. `de` (default: the visitor's).
        #[arg(long)]
        locale: Option<String>,
        /// Accent color, e.g. `#3b5bdb`.
        #[arg(long, default_value = "#3b5bdb")]
        primary_color: String,
        /// `light`, `dark` or `auto`.
        #[arg(long, default_value = "auto")]
        theme: String,
        /// CSS font-family list (default: the system font).
        #[arg(long)]
        font: Option<String>,
        /// Corner radius in pixels (0–32).
        #[arg(long, default_value_t = 12)]
        radius: u32,
        /// Header icon: an emoji or an https:// image URL.
        #[arg(long)]
        icon: Option<String>,
        /// Header background: a color or a linear-gradient(…).
        #[arg(long)]
        cover: Option<String>,
        /// Launcher bubble position: `bottom-right` or `bottom-left`.
        #[arg(long, default_value = "bottom-right")]
        position: String,
        /// Launcher bubble label, e.g. "Questions?".
        #[arg(long)]
        launcher_label: Option<String>,
        /// Launcher bubble icon (an emoji).
        #[arg(long)]
        launcher_icon: Option<String>,
        /// Open the chat when the page loads.
        #[arg(long)]
        open_on_load: bool,
        /// Let visitors attach files.
        #[arg(long)]
        uploads: bool,
        /// Most files on one message.
        #[arg(long, default_value_t = 3)]
        upload_max_files: u32,
        /// Largest file, in megabytes.
        #[arg(long, default_value_t = 10)]
        upload_max_mb: u32,
        /// A MIME type visitors may attach (repeatable); default: common images, PDF, plain text.
        #[arg(long = "upload-type")]
        upload_types: Vec<String>,
        #[command(flatten)]
        agent: AgentArgs,
        /// Publish at once.
        #[arg(long)]
        publish: bool,
        #[arg(long)]
        json: bool,
    },
    /// List interfaces.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one interface's whole configuration and its embed snippets.
    Show {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Change an interface: only the options given change.
    Update {
        slug: String,
        /// Rename: the new slug (links with the old one stop working).
        #[arg(long = "rename")]
        new_slug: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// First message visitors see.
        #[arg(long)]
        welcome: Option<String>,
        #[arg(long)]
        placeholder: Option<String>,
        /// A suggested prompt chip (repeatable; replaces the list).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// Remove every suggested prompt.
        #[arg(long, conflicts_with = "prompts")]
        no_prompts: bool,
        /// `session` or `local`.
        #[arg(long)]
        persistence: Option<String>,
        /// Language of the widget's texts, e.g. `de`.
        #[arg(long)]
        locale: Option<String>,
        /// Accent color, e.g. `#3b5bdb`.
        #[arg(long)]
        primary_color: Option<String>,
        /// `light`, `dark` or `auto`.
        #[arg(long)]
        theme: Option<String>,
        #[command(flatten)]
        agent: AgentArgs,
        /// A JSON file with any fields of the admin API's `PATCH` body (`-` for stdin);
        /// options given on the command line win.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Make an interface visible to visitors.
    Publish {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Hide an interface from visitors (back to draft).
    Unpublish {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy an interface under a new slug, as a draft.
    Duplicate {
        slug: String,
        /// The copy's slug.
        #[arg(long = "to")]
        new_slug: String,
        /// The copy's title (default: the original's).
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete an interface with all its sessions and messages.
    Delete {
        slug: String,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Who may serve an interface and what the agent gets with it (shared by create and update).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// Minutes of inactivity before a session expires (default 1440, a day).
    #[arg(long)]
    pub session_timeout_mins: Option<u32>,
    /// Visitor messages allowed per window (default 10).
    #[arg(long)]
    pub rate_limit_messages: Option<u32>,
    /// The rate limit's window in seconds (default 60).
    #[arg(long)]
    pub rate_limit_window_secs: Option<u32>,
    /// An origin allowed to embed the chat, e.g. https://example.com (repeatable; replaces the
    /// list on update).
    #[arg(long = "origin")]
    pub origins: Vec<String>,
    /// Id of a connector key allowed to serve the interface (repeatable; replaces the list on
    /// update). Default: any connector whose own scope includes it.
    #[arg(long = "connector")]
    pub connectors: Vec<String>,
    /// The agent's system prompt for this interface (a template with the connector's tags).
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Read the system prompt from a file.
    #[arg(long, conflicts_with = "system_prompt")]
    pub system_prompt_file: Option<PathBuf>,
    /// A JSON object handed to the agent with every message, e.g. '{"plan":"pro"}'.
    #[arg(long)]
    pub agent_context: Option<String>,
    /// Refuse visitors the site has not signed in (`true`/`false`; needs identity settings).
    #[arg(long, value_name = "BOOL")]
    pub require_identity: Option<bool>,
    /// How the site signs identity tokens: `HS256` (shared secret) or `RS256` (key pair).
    #[arg(long, value_name = "ALG")]
    pub identity_algorithm: Option<String>,
    /// A file holding the HS256 secret (at least 32 bytes; kept as it is, trailing newline
    /// removed). A file, so the secret stays out of shell history and `ps`.
    #[arg(long, value_name = "PATH")]
    pub identity_secret_file: Option<PathBuf>,
    /// A file holding the site's RS256 public key (PEM).
    #[arg(long, value_name = "PATH")]
    pub identity_public_key_file: Option<PathBuf>,
    /// The `iss` identity tokens must carry (empty: any).
    #[arg(long, value_name = "ISS")]
    pub identity_issuer: Option<String>,
    /// The `aud` identity tokens must carry (empty: any).
    #[arg(long, value_name = "AUD")]
    pub identity_audience: Option<String>,
    /// Remove the identity settings (update only; visitors are anonymous again).
    #[arg(long, conflicts_with_all = ["identity_algorithm", "identity_secret_file", "identity_public_key_file", "identity_issuer", "identity_audience"])]
    pub no_identity: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConnectorKeyCommand {
    /// Create a connector key; it is printed once and stored only as a hash.
    Create {
        /// A name to recognise the connector by.
        #[arg(long)]
        name: String,
        /// Interface slug this key may serve (repeatable); default: all interfaces.
        #[arg(long = "interface")]
        interfaces: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List connector keys (never the keys themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a connector key by id; its next call is refused.
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminKeyCommand {
    /// Create an admin key; it is printed once and stored only as a hash.
    Create {
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// List admin keys (ids and names; keys themselves are never stored).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin key: requests with it are refused at once. Create the new key first.
    Revoke {
        /// The key's id, from `admin-key list`.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, most recently active first.
    List {
        /// Only sessions of this interface.
        #[arg(long)]
        interface: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Print one session's transcript.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Export messages with their sessions' fields, one row per message.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: crate::export::ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Only sessions of this interface.
        #[arg(long)]
        interface: Option<String>,
    },
}
