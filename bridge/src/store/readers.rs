//! SQLite's hot reads — a visitor's session by token, a message by `client_id`, the messages
//! after a cursor, the interface configuration CORS checks, when a waiting claim is next due,
//! whether a session has an unfinished item —
//! on `rusqlite` connections of their own, run on the calling thread.
//!
//! Why: sqlx runs every SQLite connection on a thread of its own, so each read was a hand-off to
//! that thread and back, plus sqlx's pool and its `Any` row conversion; the relay does a few such
//! reads for every message (docs/performance-history.md). Each read here is one indexed look-up
//! that takes microseconds on a warm page cache, so it runs where it is asked, like the in-memory
//! work around it. WAL mode lets these connections read beside the writer without waiting for it.
//! The other reads (admin lists, transcripts, stats) are larger and stay on sqlx's pool. The SQL is
//! sqlx's own (`$N` parameters, bound here by name).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use airlock_shared::Message;
use rusqlite::{Connection, OpenFlags, OptionalExtension, named_params};

use super::interfaces::INTERFACE_CONFIG_BY_SESSION;
use super::relay::{HAS_PENDING, NEXT_DUE};
use super::sessions::{MESSAGE_BY_CLIENT_ID, MESSAGES_AFTER, SESSION_FOR_TOKEN};
use super::sqlite_relay::{message_row, session_row};
use super::{Result, SessionRow};

/// Connections kept open between reads; more are opened when more reads run at once, and closed
/// after.
const MAX_IDLE: usize = 4;

/// Prepared statements each connection keeps: every read here, with room to spare.
const STATEMENT_CACHE: usize = 16;

/// How long a read waits on a lock. In WAL mode a reader waits only in rare moments (another
/// process recovering the log), so this is a bound on something that should not happen.
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// A small pool of read-only connections to one SQLite file.
pub(crate) struct Readers {
    path: PathBuf,
    /// `None` once closed.
    idle: Mutex<Option<Vec<Connection>>>,
}

impl Readers {
    /// Connections to the database file at `path` (already migrated, in WAL mode).
    pub fn open(path: &Path) -> Result<Readers> {
        let readers = Readers {
            path: path.to_owned(),
            idle: Mutex::new(None),
        };
        let first = readers.connect()?;
        *readers.idle.lock().expect("readers") = Some(vec![first]);
        Ok(readers)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        super::writer::plan_once(&conn)?;
        // Read-write only so that it can take part in WAL (the shared-memory index); it writes
        // nothing.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(conn)
    }

    /// Closes the idle connections; later reads fail as those of a closed sqlx pool do.
    pub fn close(&self) {
        self.idle.lock().expect("readers").take();
    }

    /// Runs `read` on an idle connection (or a new one), on this thread.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = match self.idle.lock().expect("readers").as_mut() {
            Some(idle) => idle.pop(),
            None => return Err(sqlx::Error::PoolClosed.into()),
        };
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = read(&conn);
        if let Some(idle) = self.idle.lock().expect("readers").as_mut()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
        result
    }

    /// See `Store::session_for_token`.
    pub fn session_for_token(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(SESSION_FOR_TOKEN)?
                .query_row(named_params! {"$1": token_hash}, session_row)
                .optional()?)
        })
    }

    /// See `Store::message_by_client_id`.
    pub fn message_by_client_id(
        &self,
        session_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(MESSAGE_BY_CLIENT_ID)?
                .query_row(
                    named_params! {"$1": session_id, "$2": client_id},
                    message_row,
                )
                .optional()?
                .map(|row| row.into_message()))
        })
    }

    /// See `Store::messages_after`.
    pub fn messages_after(&self, session_id: &str, after: i64, limit: u32) -> Result<Vec<Message>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(MESSAGES_AFTER)?;
            let rows = statement.query_map(
                named_params! {"$1": session_id, "$2": after, "$3": i64::from(limit.max(1))},
                message_row,
            )?;
            let mut messages = Vec::new();
            for row in rows {
                messages.push(row?.into_message());
            }
            Ok(messages)
        })
    }

    /// The configuration (JSON) of the interface the session `session_id` belongs to (see
    /// `Store::allowed_origins_by_session`).
    pub fn interface_config_by_session(&self, session_id: &str) -> Result<Option<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(INTERFACE_CONFIG_BY_SESSION)?
                .query_row(named_params! {"$1": session_id}, |row| row.get(0))
                .optional()?)
        })
    }

    /// See `Store::next_due`.
    pub fn next_due(&self, now: i64) -> Result<Option<i64>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(NEXT_DUE)?
                .query_row(named_params! {"$1": now}, |row| row.get(0))?)
        })
    }

    pub fn has_pending(&self, session_id: &str) -> Result<bool> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(HAS_PENDING)?
                .query_row(named_params! {"$1": session_id}, |_| Ok(()))
                .optional()?
                .is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::store::{Store, StoreOptions, sqlite_url};

    /// How often the statement `sql` was prepared again since it was first prepared.
    fn reprepared(readers: &Readers, sql: &str) -> i32 {
        readers
            .read(|conn| {
                Ok(conn
                    .prepare_cached(sql)?
                    .get_status(StatementStatus::RePrepare))
            })
            .unwrap()
    }

    #[tokio::test]
    async fn each_read_is_prepared_once_whatever_values_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&sqlite_url(dir.path()), &StoreOptions::default())
            .await
            .unwrap();
        let readers = store.readers.clone().expect("a file database has readers");
        for n in 1..=3 {
            let id = format!("ses_{n}");
            readers.session_for_token(&id).unwrap();
            readers.message_by_client_id(&id, &id).unwrap();
            readers.messages_after(&id, n, 10 * n as u32).unwrap();
            readers.interface_config_by_session(&id).unwrap();
            readers.next_due(n).unwrap();
        }
        for sql in [
            SESSION_FOR_TOKEN,
            MESSAGE_BY_CLIENT_ID,
            MESSAGES_AFTER,
            INTERFACE_CONFIG_BY_SESSION,
            NEXT_DUE,
        ] {
            assert_eq!(reprepared(&readers, sql), 0, "{sql}");
        }
    }
}
