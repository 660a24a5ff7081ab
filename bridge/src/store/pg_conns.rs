//! PostgreSQL connections for the relay's hot queries — a visitor's session by token, the
//! messages after a cursor, a message by `client_id`, the three hot writes, a claim's items,
//! whether a session has more waiting, and the `NOTIFY` to the other replicas that follows a
//! write — pooled by `deadpool` instead of sqlx's pool.
//!
//! Why: sqlx's pool sends every connection given back a round trip of its own (a `Sync`, from a
//! task it spawns for it) before another caller may take it, which doubled the round trips of
//! these one-statement queries. With that round trip cut out of sqlx (an experiment, not kept),
//! PostgreSQL's throughput at 64 visitors rose by a fifth and the bridge's CPU per message fell
//! by a fifth (docs/performance.md, "Fourteenth round"). sqlx offers no setting for it.
//!
//! What the round trip was for is kept another way. sqlx waits for the server to be ready before
//! it sends a query, so a connection whose caller gave up mid-query (a visitor hanging up) is
//! brought back into step by its next query. A connection that broke is found as before: a
//! connection idle for [`PING_WHEN_IDLE_FOR`] is pinged before it is handed out, and so is one
//! whose last query failed for any reason but the database's refusal of that one statement, or
//! was given up before it finished ([`PooledConn::settle`] was not reached); a failed ping drops
//! it and a new one is opened.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use sqlx::any::AnyConnectOptions;
use sqlx::postgres::{PgDatabaseError, PgSeverity};
use sqlx::{AnyConnection, Connection};

use super::{PING_WHEN_IDLE_FOR, Result, StoreError};

/// How long a caller waits for a connection before the request fails, as with sqlx's pool.
const WAIT: Duration = Duration::from_secs(10);

/// Opens and checks the connections of a [`Pool`].
pub(super) struct Manager {
    options: AnyConnectOptions,
}

/// One pooled connection, and whether it must be pinged before its next use.
pub(crate) struct PooledConn {
    conn: AnyConnection,
    unsettled: bool,
}

/// The pool of connections for the hot queries.
pub(super) type Pool = managed::Pool<Manager>;

/// A connection taken from the [`Pool`]; given back when dropped.
pub(super) type Hot = managed::Object<Manager>;

/// A pool of at most `size` connections to the database of `options`, opened as needed.
pub(super) fn pool(options: AnyConnectOptions, size: u32) -> Pool {
    managed::Pool::builder(Manager { options })
        .max_size(usize::try_from(size.max(1)).unwrap_or(1))
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("a runtime is set for the timeouts")
}

/// A connection for one hot query.
pub(super) async fn get(pool: &Pool) -> Result<Hot> {
    // Boxed: the pool's future (waiting, checking, connecting) is large, and it would otherwise
    // be part of the future of every store method that takes a connection here — and of the
    // futures that await them, such as a long-poll's, held for the whole wait by each of
    // thousands of waiting visitors, on SQLite too (about 500 bytes more for each, measured).
    Box::pin(pool.get()).await.map_err(|err| match err {
        managed::PoolError::Backend(err) => StoreError::Database(err),
        _ => StoreError::Database(sqlx::Error::PoolTimedOut),
    })
}

impl PooledConn {
    /// The connection, for one query; until [`PooledConn::settle`] it counts as unsettled.
    pub fn conn(&mut self) -> &mut AnyConnection {
        self.unsettled = true;
        &mut self.conn
    }

    /// The query's result, passed through. A failure other than the database's refusal of the
    /// statement leaves the connection unsettled, to be pinged before its next use.
    pub fn settle<T>(&mut self, result: sqlx::Result<T>) -> sqlx::Result<T> {
        self.unsettled = match &result {
            Ok(_) | Err(sqlx::Error::RowNotFound) => false,
            Err(sqlx::Error::Database(err)) => ends_the_session(err.as_ref()),
            Err(_) => true,
        };
        result
    }
}

/// Whether the server ended the connection with this error (severity `FATAL` or `PANIC`: it was
/// terminated, the server is shutting down) rather than refusing one statement.
fn ends_the_session(err: &dyn sqlx::error::DatabaseError) -> bool {
    err.try_downcast_ref::<PgDatabaseError>()
        .is_none_or(|err| matches!(err.severity(), PgSeverity::Fatal | PgSeverity::Panic))
}

impl managed::Manager for Manager {
    type Type = PooledConn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PooledConn, sqlx::Error> {
        Ok(PooledConn {
            conn: AnyConnection::connect_with(&self.options).await?,
            unsettled: false,
        })
    }

    async fn recycle(
        &self,
        pooled: &mut PooledConn,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if pooled.unsettled || metrics.last_used() >= PING_WHEN_IDLE_FOR {
            pooled.conn.ping().await?;
            pooled.unsettled = false;
        }
        Ok(())
    }
}
