//! Queries for the PHP web chat bridge's API (`http::compat`) and its importer: sessions found by
//! the `session_id` an old client chose, the integer ids that API shows, replies read by time,
//! and the oldest item a compat poller holds.
//!
//! Compat sessions are ordinary sessions (of the compat interface) with a `compat_id`; their
//! messages are ordinary messages in the one log, so native connectors, the admin API and the
//! exports see them as any other.

use std::collections::HashMap;

use airlock_shared::Message;

use super::sessions::select_sessions;
use super::{
    MessageRow, Result, SessionRow, Store, StoreError, Tx, is_unique_violation, message_columns,
    message_in_tx, next_rev,
};
use crate::tokens::{hash_secret, new_id, new_secret};

/// What opening a compat session stores.
#[derive(Debug, Clone, Default)]
pub struct NewCompatSession {
    pub interface_id: String,
    /// The client's `session_id`.
    pub compat_id: String,
    /// The visitor id: the old bridge's 16-hex-digit `uid`.
    pub visitor_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
}

/// One compat session in the old admin listing, with its counts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CompatSessionRow {
    pub id: String,
    pub compat_id: String,
    pub visitor_id: String,
    pub ip: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub last_activity_at: i64,
    pub user_messages: i64,
    pub replies: i64,
}

/// A message to store as it is, for the importer and for agent-initiated messages.
#[derive(Debug, Clone)]
pub struct NewLogMessage<'a> {
    pub session_id: &'a str,
    /// `user` or `assistant`.
    pub role: &'a str,
    pub text: &'a str,
    pub status: &'a str,
    pub client_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub created_at: i64,
    /// For a user message: also queue it for the agent.
    pub queue: bool,
}

impl Store {
    /// The session of `interface_id` a compat client calls `compat_id`.
    pub async fn compat_session(
        &self,
        interface_id: &str,
        compat_id: &str,
    ) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(concat!(
            select_sessions!(),
            " WHERE s.interface_id = $1 AND s.compat_id = $2"
        ))
        .bind(interface_id)
        .bind(compat_id)
        .fetch_optional(&self.write)
        .await?)
    }

    /// Opens the compat session `new.compat_id`, or finds it when it exists (also when another
    /// request opened it at the same moment). Returns the session and whether this call opened it.
    pub async fn open_compat_session(&self, new: &NewCompatSession) -> Result<(SessionRow, bool)> {
        if let Some(row) = self
            .compat_session(&new.interface_id, &new.compat_id)
            .await?
        {
            return Ok((row, false));
        }
        let id = new_id("ses");
        // Nobody resumes a compat session through the native API: its resume token is thrown away.
        let resume_hash = hash_secret(&new_secret("res"));
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, interface_id, visitor_id, resume_hash, ip, user_agent, \
             created_at, last_activity_at, compat_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        )
        .bind(&id)
        .bind(&new.interface_id)
        .bind(&new.visitor_id)
        .bind(&resume_hash)
        .bind(&new.ip)
        .bind(&new.user_agent)
        .bind(new.created_at)
        .bind(&new.compat_id)
        .execute(&self.write)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => {}
            Err(err) => return Err(err.into()),
        }
        let row = self
            .compat_session(&new.interface_id, &new.compat_id)
            .await?
            .ok_or(StoreError::NotFound("session"))?;
        let opened = row.id == id;
        Ok((row, opened))
    }

    /// Makes an expired session active again (a compat client keeps its `session_id` for as
    /// long as it likes). Ended sessions stay ended.
    pub async fn reopen_expired_session(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE sessions SET status = 'active' WHERE id = $1 AND status = 'expired'")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The `compat_id` of each session in `session_ids` that has one.
    pub async fn compat_ids(&self, session_ids: &[String]) -> Result<HashMap<String, String>> {
        let mut ids = HashMap::new();
        for session_id in session_ids {
            let compat: Option<Option<String>> =
                sqlx::query_scalar("SELECT compat_id FROM sessions WHERE id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.read)
                    .await?;
            if let Some(Some(compat)) = compat {
                ids.insert(session_id.clone(), compat);
            }
        }
        Ok(ids)
    }

    /// The integer id the old API shows for each message, handed out on first sight and never
    /// changed.
    pub async fn compat_numbers(&self, message_ids: &[&str]) -> Result<HashMap<String, i64>> {
        let mut numbers = HashMap::new();
        if message_ids.is_empty() {
            return Ok(numbers);
        }
        let mut tx = self.begin().await?;
        for id in message_ids {
            sqlx::query(
                "INSERT INTO compat_message_numbers (message_id) VALUES ($1) \
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(*id)
            .execute(&mut *tx)
            .await?;
            let number: i64 = sqlx::query_scalar(
                "SELECT number FROM compat_message_numbers WHERE message_id = $1",
            )
            .bind(*id)
            .fetch_one(&mut *tx)
            .await?;
            numbers.insert(id.to_string(), number);
        }
        tx.commit().await?;
        Ok(numbers)
    }

    /// The message the old API calls `number`, if that number was handed out.
    pub async fn message_by_compat_number(&self, number: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT message_id FROM compat_message_numbers WHERE number = $1")
                .bind(number)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// The lease of the oldest item of `session_id` that `connector_id` holds (only `message_id`
    /// when given), expired or not, as long as nobody else was handed it since.
    pub async fn oldest_held_lease(
        &self,
        session_id: &str,
        connector_id: &str,
        message_id: Option<&str>,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT lease_id FROM inbox WHERE session_id = $1 AND state = 'leased' \
             AND leased_by = $2 AND ($3 = '' OR message_id = $3) ORDER BY seq LIMIT 1",
        )
        .bind(session_id)
        .bind(connector_id)
        .bind(message_id.unwrap_or(""))
        .fetch_optional(&self.read)
        .await?)
    }

    /// Stores a message in a session's log as given (committed before returning); a `queue`d
    /// user message also gets its inbox item. With a `client_id` already used in the session,
    /// nothing is stored and `None` is returned: what makes an import safe to run twice.
    pub async fn append_message(&self, new: &NewLogMessage<'_>) -> Result<Option<Message>> {
        let mut tx = self.begin().await?;
        let message = append_in_tx(&mut tx, new).await?;
        tx.commit().await?;
        Ok(message)
    }

    /// Sets a session's last activity to `at` when that is later, and its start to `created_at`
    /// when that is earlier (imported history keeps its dates).
    pub async fn set_session_times(&self, id: &str, created_at: i64, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET \
             last_activity_at = CASE WHEN last_activity_at < $2 THEN $2 ELSE last_activity_at END, \
             created_at = CASE WHEN created_at > $3 THEN $3 ELSE created_at END WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The finished agent messages (complete, or failed when the agent never answered) of a
    /// session last written after `since`, in log order.
    pub async fn replies_since(&self, session_id: &str, since: i64) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.session_id = $1 AND m.role = 'assistant' \
              AND m.status IN ('complete', 'failed') AND m.updated_at > $2 ORDER BY m.seq"
        ))
        .bind(session_id)
        .bind(since)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(MessageRow::into_message).collect())
    }

    /// The compat sessions of `interface_id`, most recently active first; only active ones when
    /// `active_only`. Returns one page and the total.
    pub async fn compat_sessions(
        &self,
        interface_id: &str,
        active_only: bool,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<CompatSessionRow>, i64)> {
        let status = if active_only { "active" } else { "" };
        let rows: Vec<CompatSessionRow> = sqlx::query_as(
            "SELECT s.id, s.compat_id, s.visitor_id, s.ip, s.status, s.created_at, \
             s.last_activity_at, \
             (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'user') \
               AS user_messages, \
             (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id \
               AND m.role = 'assistant') AS replies \
             FROM sessions s WHERE s.interface_id = $1 AND s.compat_id IS NOT NULL \
             AND ($2 = '' OR s.status = $2) \
             ORDER BY s.last_activity_at DESC, s.id DESC LIMIT $3 OFFSET $4",
        )
        .bind(interface_id)
        .bind(status)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.read)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE interface_id = $1 AND compat_id IS NOT NULL \
             AND ($2 = '' OR status = $2)",
        )
        .bind(interface_id)
        .bind(status)
        .fetch_one(&self.read)
        .await?;
        Ok((rows, total))
    }
}

/// [`Store::append_message`] inside a transaction.
async fn append_in_tx(tx: &mut Tx<'_>, new: &NewLogMessage<'_>) -> Result<Option<Message>> {
    if let Some(client_id) = new.client_id {
        let used: Option<String> =
            sqlx::query_scalar("SELECT id FROM messages WHERE session_id = $1 AND client_id = $2")
                .bind(new.session_id)
                .bind(client_id)
                .fetch_optional(&mut **tx)
                .await?;
        if used.is_some() {
            return Ok(None);
        }
    }
    let rev = next_rev(tx, new.session_id, true, new.created_at).await?;
    let id = new_id("msg");
    let html = (new.role == "assistant" && !new.text.is_empty())
        .then(|| crate::render::markdown(new.text));
    sqlx::query(
        "INSERT INTO messages (id, session_id, seq, rev, role, text, html, status, client_id, \
         reply_to, created_at, updated_at) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(&id)
    .bind(new.session_id)
    .bind(rev)
    .bind(new.role)
    .bind(new.text)
    .bind(html)
    .bind(new.status)
    .bind(new.client_id)
    .bind(new.reply_to)
    .bind(new.created_at)
    .execute(&mut **tx)
    .await?;
    if new.queue {
        sqlx::query(
            "INSERT INTO inbox (message_id, session_id, interface_id, seq, state, attempts, \
             not_before, created_at, updated_at) \
             SELECT $1, $2, s.interface_id, $3, 'queued', 0, $4, $4, $4 \
             FROM sessions s WHERE s.id = $2",
        )
        .bind(&id)
        .bind(new.session_id)
        .bind(rev)
        .bind(new.created_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Some(message_in_tx(tx, &id).await?))
}
