//! Durable storage for everything the bridge knows: interfaces, keys, sessions, the message log,
//! the inbox (with its leases) and the outbox.
//!
//! One set of queries serves both backends through sqlx's `Any` driver: the SQL is written in the
//! common dialect (`$N` parameters, epoch-millisecond integers for time, text for ids and JSON),
//! and the few places where the engines differ (`FOR UPDATE SKIP LOCKED`, `BEGIN IMMEDIATE`) branch
//! on [`Backend`]. On SQLite the relay's hot writes run instead on a writer thread of their own
//! (`writer`, `sqlite_relay`), with the same steps, and its hot reads on `rusqlite` connections on
//! the calling thread (`readers`); on PostgreSQL the hot writes are server-side functions, one
//! round trip each (`pg_relay`). The conformance suite in
//! `tests/store_conformance.rs` runs unchanged on both.
//!
//! Every method that depends on time takes `now` (epoch milliseconds) from the caller, so tests move
//! time without sleeping. Every write that the bridge acknowledges is committed before the method
//! returns.

mod attachments;
mod audit;
pub(crate) mod cache;
mod compat;
mod connectors;
mod interfaces;
mod notify;
mod pg_conns;
mod pg_relay;
mod readers;
mod relay;
mod retention;
mod sessions;
mod sqlite_relay;
mod stats;
mod writer;

pub use attachments::{NewAttachment, StoredAttachment};
pub use compat::{CompatSessionRow, NewCompatSession, NewLogMessage};
pub use connectors::{AdminKeyRow, ConnectorRow};
pub use interfaces::{InterfaceConfig, InterfaceRow, NewInterface};
pub use notify::LISTENER_APPLICATION_NAME;
pub use relay::{ClaimOutcome, DEFAULT_MAX_ATTEMPTS, DeadLettered, LeaseWrite};
pub use retention::{DELETE_BATCH, Removed, VisitorSelector};
pub use sessions::{NewSession, SNIPPET_CHARS, SendOutcome, SessionFilter, SessionRow, snippet};
pub use stats::{StatsData, StatsQuery};

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use airlock_shared::{Message, MessageStatus, Role, time_from_millis};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

/// A write transaction on either backend (see [`Store::begin`]).
type Tx<'c> = Transaction<'c, Any>;

/// How long a PostgreSQL connection may have been idle before it is pinged before use.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What went wrong, in domain terms. The HTTP layer maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the slug `{0}` is already taken")]
    SlugTaken(String),
    #[error("this client_id was already used for a message with different text")]
    ClientIdReused,
    #[error("the session is {0}")]
    SessionClosed(String),
    #[error("attachment `{0}` is not a file uploaded to this session and not yet sent")]
    InvalidAttachment(String),
    #[error("this lease was superseded: the item was handed out again after the lease expired")]
    LeaseSuperseded,
    #[error("the item of this lease is already {0}")]
    ItemFinished(&'static str),
    #[error("this item is not dead-lettered (it is {0})")]
    NotDeadLettered(String),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error(
        "an in-memory SQLite database is not supported: each of the bridge's connections would \
         see a database of its own, and nothing would outlive the process; give a file"
    )]
    InMemorySqlite,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// From SQLite's writer thread (see `writer`).
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database writer: {0}")]
    Writer(String),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// How SQLite makes commits durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// `synchronous=NORMAL`: a commit survives a crash of the bridge process (the default).
    #[default]
    Normal,
    /// `synchronous=FULL`: a commit also survives a power cut or an OS crash, at the cost of an
    /// fsync per commit.
    Full,
}

/// Pool sizing, durability and relay policy.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest PostgreSQL pools: the relay's hot queries and everything else each open up to
    /// this many connections (SQLite uses one writer and a few readers).
    pub max_connections: u32,
    /// Deliveries of one inbox item before it is dead-lettered.
    pub max_attempts: u32,
    pub sqlite_sync: SqliteSync,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            sqlite_sync: SqliteSync::Normal,
        }
    }
}

/// The bridge's database. Cheap to clone.
///
/// On SQLite the relay's hot writes go through the writer thread (`writer`), the other writes
/// through a single sqlx connection (SQLite has one writer anyway; queueing is cheaper and fairer
/// than lock retries), the relay's hot reads through `readers`, and the other reads through a
/// small separate pool; WAL mode lets the readers run beside the writers.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    /// The connections for the relay's hot queries on PostgreSQL (see `pg_conns`); `None` on
    /// SQLite, whose hot queries go through `writer` and `readers`.
    hot: Option<pg_conns::Pool>,
    /// SQLite's writer thread, which runs the relay's hot writes (see `writer`); `None` on
    /// PostgreSQL and for an in-memory SQLite database.
    writer: Option<writer::Writer>,
    /// SQLite's hot reads on the calling thread (see `readers`); `None` where `writer` is.
    readers: Option<std::sync::Arc<readers::Readers>>,
    /// Live connector keys recently looked up (see [`Store::connector_by_key_hash`]).
    connector_keys: cache::TtlCache<ConnectorRow>,
    /// Interfaces recently looked up by id (see [`Store::interface_by_id`]).
    interfaces_by_id: cache::TtlCache<InterfaceRow>,
    max_attempts: u32,
    /// Where a wake-up listener connects, on PostgreSQL.
    listen_options: Option<sqlx::postgres::PgConnectOptions>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The SQLite URL of the default database file in `data_dir`.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("airlock.db").display()
    )
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let file = match backend {
            Backend::Sqlite => Some(sqlite_file(url)?.ok_or(StoreError::InMemorySqlite)?),
            Backend::Postgres => None,
        };
        let connect_options = AnyConnectOptions::from_str(url)?;
        let hot = (backend == Backend::Postgres)
            .then(|| pg_conns::pool(connect_options.clone(), options.max_connections.max(2)));
        let listen_options = match backend {
            Backend::Postgres => Some(sqlx::postgres::PgConnectOptions::from_str(url)?),
            Backend::Sqlite => None,
        };
        let (read, write) = match backend {
            Backend::Sqlite => {
                let write = sqlite_pool(1, options.sqlite_sync)
                    .connect_with(connect_options.clone())
                    .await?;
                // Migrate through the writer first so the readers open a ready WAL database.
                SQLITE_MIGRATIONS.run(&write).await?;
                let read = sqlite_pool(4, options.sqlite_sync)
                    .connect_with(connect_options)
                    .await?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    // A connection can break (the server restarted, a firewall dropped it while
                    // quiet). One that was idle a while is pinged before use, and replaced if it
                    // does not answer; one in use within the last second is taken as working,
                    // which spares every query of a busy bridge a round trip of its own.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for < PING_WHEN_IDLE_FOR {
                                return Ok(true);
                            }
                            Ok(conn.ping().await.is_ok())
                        })
                    })
                    .connect_with(connect_options)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                (pool.clone(), pool)
            }
        };
        let writer = file
            .as_deref()
            .map(|file| writer::Writer::open(file, options.sqlite_sync))
            .transpose()?;
        let readers = file
            .as_deref()
            .map(readers::Readers::open)
            .transpose()?
            .map(std::sync::Arc::new);
        Ok(Store {
            backend,
            read,
            write,
            hot,
            writer,
            readers,
            connector_keys: cache::TtlCache::default(),
            interfaces_by_id: cache::TtlCache::default(),
            max_attempts: options.max_attempts.max(1),
            listen_options,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for one of the relay's hot queries (see `pg_conns`). Only PostgreSQL has
    /// them: SQLite's hot queries go through `writer` and `readers`.
    async fn hot(&self) -> Result<pg_conns::Hot> {
        match &self.hot {
            Some(pool) => pg_conns::get(pool).await,
            None => Err(StoreError::Writer(
                "no connections for hot queries: not PostgreSQL".into(),
            )),
        }
    }

    /// How many deliveries an inbox item gets before it is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The engine and its durability settings as in force, for the start-up log.
    pub async fn describe(&self) -> Result<String> {
        match self.backend {
            Backend::Postgres => Ok("PostgreSQL".to_string()),
            Backend::Sqlite => {
                let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&self.write)
                    .await?;
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&self.write)
                    .await?;
                let synchronous = match synchronous {
                    0 => "off",
                    1 => "normal",
                    2 => "full",
                    _ => "extra",
                };
                Ok(format!(
                    "SQLite (journal_mode={journal}, synchronous={synchronous})"
                ))
            }
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        self.read.execute("SELECT 1").await?;
        Ok(())
    }

    /// How many sessions and messages the database holds (for backup reports).
    pub async fn count_sessions_and_messages(&self) -> Result<(i64, i64)> {
        let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.read)
            .await?;
        let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&self.read)
            .await?;
        Ok((sessions, messages))
    }

    /// Closes every connection; pending work finishes first.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        if let Some(readers) = &self.readers {
            readers.close();
        }
        self.write.close().await;
        self.read.close().await;
    }

    /// Writes a consistent snapshot of the SQLite database to the file `path` (`VACUUM INTO`)
    /// while the bridge keeps reading and writing: the copy holds every transaction committed
    /// before it started and none after. `path` must not exist or be an empty file. Runs on a
    /// reader, so it never holds the write lock.
    pub async fn snapshot_sqlite(&self, path: &str) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::UnsupportedUrl(
                "postgres://… (use pg_dump)".into(),
            ));
        }
        // Bound, not spliced: the path needs no quoting, whatever characters it holds.
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.read)
            .await?;
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so a transaction that reads before it writes can never fail half-way on a lock upgrade when
    /// another process (a CLI command) writes too. Begun detached ([`finish_detached`]), so that
    /// a caller dropped meanwhile never leaves a pooled connection inside it.
    async fn begin(&self) -> Result<Tx<'static>> {
        let (pool, backend) = (self.write.clone(), self.backend);
        Ok(finish_detached(async move {
            match backend {
                Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => pool.begin().await,
            }
        })
        .await??)
    }
}

/// Runs `work` to its end in a task of its own, even if the caller stops waiting for it.
///
/// For what begins a transaction: sqlx 0.9 leaves a PostgreSQL connection inside the
/// transaction when the future is dropped while it waits for `BEGIN`'s answer (its guard rolls
/// back only a transaction it has counted, and it counts one only once the answer is in), and the
/// pool hands that connection out again: every later statement on it would run in a transaction
/// never committed, and after the first error in it, fail. A client that hangs up drops its
/// request's future at any point. Run to its end, a `BEGIN` is counted, and a transaction nobody
/// took is dropped, which rolls it back.
pub(crate) async fn finish_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))
}

/// The newest SQLite migration this build knows: a database migrated further was written by a
/// newer bridge.
pub fn latest_sqlite_migration() -> i64 {
    SQLITE_MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0)
}

fn sqlite_pool(max: u32, sync: SqliteSync) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        // A local file cannot hang up: no ping before every use of a connection.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; every commit is in the WAL before the
                // call returns, so NORMAL survives a process crash and FULL also a power cut.
                let pragmas = match sync {
                    SqliteSync::Normal => {
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;"
                    }
                    SqliteSync::Full => {
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;"
                    }
                };
                conn.execute(pragmas).await?;
                Ok(())
            })
        })
}

/// The file of an SQLite database URL; `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    // Read the way sqlx reads it: `sqlite::memory:`, or `mode=memory` among the parameters.
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:"
        || url::form_urlencoded::parse(params.as_bytes())
            .any(|(key, value)| key == "mode" && value == "memory");
    let file = options.get_filename();
    Ok((!in_memory && !file.as_os_str().is_empty()).then(|| file.to_path_buf()))
}

/// Hides the password of a database URL for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The columns of a message row, in [`MessageRow`] order.
macro_rules! message_columns {
    () => {
        "m.id, m.session_id, m.seq, m.rev, m.role, m.text, m.html, m.status, m.client_id, \
         m.reply_to, m.error, m.attachments, m.created_at, m.updated_at"
    };
}
pub(crate) use message_columns;

/// One row of `messages`, as read from either backend.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub id: String,
    pub session_id: String,
    pub seq: i64,
    pub rev: i64,
    pub role: String,
    pub text: String,
    pub html: Option<String>,
    pub status: String,
    pub client_id: Option<String>,
    pub reply_to: Option<String>,
    pub error: Option<String>,
    /// JSON array of [`airlock_shared::AttachmentRef`]s.
    pub attachments: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MessageRow {
    pub fn into_message(self) -> Message {
        Message {
            id: self.id,
            seq: self.seq,
            rev: self.rev,
            role: Role::parse(&self.role).unwrap_or(Role::Event),
            text: self.text,
            html: self.html,
            status: MessageStatus::parse(&self.status).unwrap_or(MessageStatus::Failed),
            client_id: self.client_id,
            reply_to: self.reply_to,
            error: self.error,
            attachments: self
                .attachments
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            created_at: time_from_millis(self.created_at),
            updated_at: time_from_millis(self.updated_at),
        }
    }
}

/// The update behind every change number: the session `$1`'s next one, `$2` (0 or 1) more
/// messages, and activity at `$3`.
///
/// Activity is kept to the second: a change less than a second after the recorded activity leaves
/// it as it is, so that on PostgreSQL most of these updates leave the row's indexed columns alone
/// and are made in place (migrations/postgres/0008_session_activity_hot.sql says why; its
/// `airlock_next_rev` has the same rule). Used by [`next_rev`] and `sqlite_relay::next_rev`.
macro_rules! bump_session {
    () => {
        "UPDATE sessions SET last_seq = last_seq + 1, message_count = message_count + $2, \
         last_activity_at = CASE WHEN $3 >= last_activity_at AND $3 < last_activity_at + 1000 \
         THEN last_activity_at ELSE $3 END WHERE id = $1"
    };
}
pub(crate) use bump_session;

/// Takes the session's next change number (for a new message or a changed one) and marks activity.
/// On PostgreSQL this locks the session row until commit, so one session's changes commit in
/// change-number order and a reader following the cursor never skips one.
async fn next_rev(tx: &mut Tx<'_>, session_id: &str, new_message: bool, now: i64) -> Result<i64> {
    let rev: Option<i64> = sqlx::query_scalar(concat!(bump_session!(), " RETURNING last_seq"))
        .bind(session_id)
        .bind(i64::from(new_message))
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
    rev.ok_or(StoreError::NotFound("session"))
}

/// Reads one message by id inside a transaction.
async fn message_in_tx(tx: &mut Tx<'_>, id: &str) -> Result<Message> {
    let row: MessageRow = sqlx::query_as(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id = $1"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.into_message())
}

/// Whether a database error is a unique-constraint violation.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
