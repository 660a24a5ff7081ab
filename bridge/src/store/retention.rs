//! Removing visitor data: sessions past the retention period (a purge), and everything of one
//! visitor on request (a forget). Both delete whole sessions with all that hangs off them —
//! session tokens, messages, inbox items with their leases and replies, and attachments, whose
//! bytes live in the database (there is nothing on disk to remove).
//!
//! Deletions run a batch of sessions per transaction, so a large purge never holds SQLite's one
//! write lock (or PostgreSQL row locks) for long: visitors' writes get in between batches.

use super::{Backend, Result, Store, Tx};

/// Most sessions one transaction deletes.
pub const DELETE_BATCH: u32 = 50;

/// What a purge or a forget removed (or, counted beforehand, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub sessions: u64,
    pub messages: u64,
    pub attachments: u64,
}

impl From<Removed> for airlock_shared::admin::DataRemoved {
    fn from(removed: Removed) -> Self {
        airlock_shared::admin::DataRemoved {
            sessions: removed.sessions,
            messages: removed.messages,
            attachments: removed.attachments,
        }
    }
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Removed) {
        self.sessions += other.sessions;
        self.messages += other.messages;
        self.attachments += other.attachments;
    }
}

/// How a forget names the visitor whose sessions it deletes: one variant per way to name one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisitorSelector {
    /// The `visitor_id` the bridge gave the visitor (on every session of theirs).
    VisitorId(String),
    /// A signed-in user's verified id, on every interface.
    UserId(String),
}

impl VisitorSelector {
    /// The `sessions` column this selector matches, and the value it must hold.
    fn condition(&self) -> (&'static str, &str) {
        match self {
            VisitorSelector::VisitorId(id) => ("visitor_id", id),
            VisitorSelector::UserId(id) => ("identity_user_id", id),
        }
    }

    /// `column=value`, for the audit log.
    pub fn describe(&self) -> String {
        let (column, value) = self.condition();
        format!("{column}={value}")
    }
}

/// Sessions whose last activity is before `$1` and which have no visitor message waiting for
/// or held by the agent (one in flight is never pulled out from under a connector).
macro_rules! inactive_sessions {
    () => {
        "SELECT s.id FROM sessions s WHERE s.last_activity_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM inbox p WHERE p.session_id = s.id \
              AND p.state IN ('queued', 'leased'))"
    };
}

impl Store {
    /// What purging the sessions inactive since before `cutoff` (epoch ms) would remove.
    pub async fn count_inactive(&self, cutoff: i64) -> Result<Removed> {
        let count = |sql: &'static str| async move {
            let n: i64 = sqlx::query_scalar(sql)
                .bind(cutoff)
                .fetch_one(&self.read)
                .await?;
            Ok::<u64, super::StoreError>(u64::try_from(n).unwrap_or(0))
        };
        Ok(Removed {
            sessions: count(concat!(
                "SELECT COUNT(*) FROM (",
                inactive_sessions!(),
                ") x"
            ))
            .await?,
            messages: count(concat!(
                "SELECT COUNT(*) FROM messages WHERE session_id IN (",
                inactive_sessions!(),
                ")"
            ))
            .await?,
            attachments: count(concat!(
                "SELECT COUNT(*) FROM attachments WHERE session_id IN (",
                inactive_sessions!(),
                ")"
            ))
            .await?,
        })
    }

    /// Deletes every session inactive since before `cutoff` (epoch ms), with all of its data,
    /// a batch per transaction. Sessions with a message queued or leased to the agent stay.
    pub async fn purge_inactive(&self, cutoff: i64) -> Result<Removed> {
        let mut total = Removed::default();
        loop {
            let mut tx = self.begin().await?;
            let sql = match self.backend {
                Backend::Sqlite => concat!(
                    inactive_sessions!(),
                    " ORDER BY s.last_activity_at LIMIT $2"
                ),
                // A session a visitor is writing to right now is locked by that write; skip it
                // (its activity is new anyway) rather than wait.
                Backend::Postgres => concat!(
                    inactive_sessions!(),
                    " ORDER BY s.last_activity_at LIMIT $2 FOR UPDATE OF s SKIP LOCKED"
                ),
            };
            let ids: Vec<String> = sqlx::query_scalar(sql)
                .bind(cutoff)
                .bind(i64::from(DELETE_BATCH))
                .fetch_all(&mut *tx)
                .await?;
            let removed = delete_sessions(&mut tx, &ids).await?;
            tx.commit().await?;
            total += removed;
            if ids.len() < DELETE_BATCH as usize {
                return Ok(total);
            }
            // Let writers waiting for the connection (SQLite has one) go first.
            tokio::task::yield_now().await;
        }
    }

    /// Deletes every session of one visitor, with all of its data, whatever its state.
    pub async fn forget_visitor(&self, visitor: &VisitorSelector) -> Result<Removed> {
        let (column, value) = visitor.condition();
        // The column comes from the fixed list in `VisitorSelector::condition`, never from input.
        let sql = format!("SELECT id FROM sessions WHERE {column} = $1 LIMIT $2");
        let mut total = Removed::default();
        loop {
            let mut tx = self.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(value)
                .bind(i64::from(DELETE_BATCH))
                .fetch_all(&mut *tx)
                .await?;
            let removed = delete_sessions(&mut tx, &ids).await?;
            tx.commit().await?;
            total += removed;
            if ids.len() < DELETE_BATCH as usize {
                return Ok(total);
            }
        }
    }
}

/// Deletes the sessions `ids` and everything of them inside `tx`; returns what went.
async fn delete_sessions(tx: &mut Tx<'_>, ids: &[String]) -> Result<Removed> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let list = list.join(", ");
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE session_id IN ({list})");
    let mut counts = [0i64; 2];
    for (n, table) in counts.iter_mut().zip(["messages", "attachments"]) {
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(count(table)));
        for id in ids {
            query = query.bind(id);
        }
        *n = query.fetch_one(&mut **tx).await?;
    }
    // Children first, each through an index: attachments by session, inbox items (with their
    // leases and replies, by cascade) by message id, then messages, tokens and the sessions.
    let mut sessions = 0;
    for sql in [
        format!("DELETE FROM attachments WHERE session_id IN ({list})"),
        format!(
            "DELETE FROM inbox WHERE message_id IN \
             (SELECT id FROM messages WHERE session_id IN ({list}))"
        ),
        format!("DELETE FROM messages WHERE session_id IN ({list})"),
        format!("DELETE FROM session_tokens WHERE session_id IN ({list})"),
        format!("DELETE FROM sessions WHERE id IN ({list})"),
    ] {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        sessions = query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(Removed {
        sessions,
        messages: u64::try_from(counts[0]).unwrap_or(0),
        attachments: u64::try_from(counts[1]).unwrap_or(0),
    })
}
