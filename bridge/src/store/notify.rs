//! PostgreSQL `LISTEN`/`NOTIFY`, through which bridge replicas on one database wake each other
//! (see [`crate::wakeups`]). Both are no-ops on SQLite, which one process owns.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::{Backend, Result, Store};

/// The `application_name` of a bridge's listening connection.
pub const LISTENER_APPLICATION_NAME: &str = "airlock-bridge wake-ups";

impl Store {
    /// Sends `payload` on `channel` to every listening connection (on PostgreSQL).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        // `pg_notify` returns `void`, which the Any driver cannot decode; select a constant. One
        // follows most writes of the relay: a hot query (see `pg_conns`).
        let mut hot = self.hot().await?;
        let sent = sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(hot.conn())
            .await;
        hot.settle(sent)?;
        Ok(())
    }

    /// A connection of its own listening on `channel`, or `None` on SQLite. It shows in
    /// `pg_stat_activity` as [`LISTENER_APPLICATION_NAME`].
    pub async fn listen(&self, channel: &str) -> Result<Option<PgListener>> {
        let Some(options) = &self.listen_options else {
            return Ok(None);
        };
        // One connection, kept open as long as the listener lives.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options.clone().application_name(LISTENER_APPLICATION_NAME))
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(channel).await?;
        Ok(Some(listener))
    }
}
