//! Sessions (one visitor conversation each), their tokens, and the message log visitors read.

use airlock_shared::admin::{SessionSummary, VisitorIdentity};
use airlock_shared::{AttachmentRef, Message, time_from_millis};

use super::{
    Backend, MessageRow, Result, Store, StoreError, Tx, is_unique_violation, message_columns,
    message_in_tx, next_rev,
};
use crate::tokens::new_id;

/// What opening a session stores (tokens already hashed by the caller).
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub interface_id: String,
    pub token_hash: String,
    pub resume_hash: String,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub referrer: Option<String>,
    pub locale: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The verified identity of a signed-in visitor; `None` for an anonymous one.
    pub identity: Option<VisitorIdentity>,
}

/// One row of `sessions`, joined with its interface's slug. (Also read as JSON, whose fields
/// are the columns of `select_sessions!`: see `airlock_claimed_items`,
/// migrations/postgres/0009_claimed_items.sql.)
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub interface_id: String,
    pub interface_slug: String,
    pub visitor_id: String,
    pub page_url: Option<String>,
    pub page_title: Option<String>,
    pub referrer: Option<String>,
    pub locale: Option<String>,
    pub status: String,
    pub last_seq: i64,
    pub message_count: i64,
    pub created_at: i64,
    pub last_activity_at: i64,
    /// The signed-in visitor's user id on the host site; `None` for an anonymous session.
    pub identity_user_id: Option<String>,
    pub identity_name: Option<String>,
    pub identity_email: Option<String>,
    /// The text of the latest message that has any; read only for admin views (see
    /// `select_sessions_with_last_message`), `None` elsewhere.
    #[sqlx(default)]
    #[serde(default)]
    pub last_message: Option<String>,
}

/// Longest `last_message` snippet shown in the session list.
pub const SNIPPET_CHARS: usize = 140;

/// The start of `text`, at most [`SNIPPET_CHARS`] characters, with `…` when cut.
pub fn snippet(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SNIPPET_CHARS).collect();
    if chars.next().is_some() {
        let mut cut: String = head.chars().take(SNIPPET_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        head
    }
}

impl SessionRow {
    /// Who the visitor is, when the host site signed them in.
    pub fn identity(&self) -> Option<VisitorIdentity> {
        Some(VisitorIdentity {
            user_id: self.identity_user_id.clone()?,
            name: self.identity_name.clone(),
            email: self.identity_email.clone(),
        })
    }

    pub fn to_summary(&self) -> SessionSummary {
        SessionSummary {
            id: self.id.clone(),
            interface: self.interface_slug.clone(),
            visitor_id: self.visitor_id.clone(),
            status: self.status.clone(),
            message_count: self.message_count,
            page_url: self.page_url.clone(),
            referrer: self.referrer.clone(),
            created_at: time_from_millis(self.created_at),
            last_activity_at: time_from_millis(self.last_activity_at),
            last_message: self.last_message.as_deref().map(snippet),
            identity: self.identity(),
        }
    }
}

/// `SELECT` of a session row with its interface slug, in [`SessionRow`] order.
macro_rules! select_sessions {
    () => {
        "SELECT s.id, s.interface_id, i.slug AS interface_slug, s.visitor_id, s.page_url, \
         s.page_title, s.referrer, s.locale, s.status, s.last_seq, s.message_count, \
         s.created_at, s.last_activity_at, s.identity_user_id, s.identity_name, s.identity_email \
         FROM sessions s JOIN interfaces i ON i.id = s.interface_id"
    };
}
pub(super) use select_sessions;

/// The hot reads, shared by sqlx and SQLite's `readers` (which bind `$N` by name).
pub(super) const SESSION_FOR_TOKEN: &str = concat!(
    select_sessions!(),
    " JOIN session_tokens t ON t.session_id = s.id WHERE t.token_hash = $1"
);
pub(super) const MESSAGE_BY_CLIENT_ID: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE m.session_id = $1 AND m.client_id = $2"
);
pub(super) const MESSAGES_AFTER: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE m.session_id = $1 AND m.rev > $2 ORDER BY m.rev LIMIT $3"
);

/// [`select_sessions`] plus the latest message's text, for admin views only: visitor requests
/// (which look a session up on every call) skip the extra subquery.
macro_rules! select_sessions_with_last_message {
    () => {
        "SELECT s.id, s.interface_id, i.slug AS interface_slug, s.visitor_id, s.page_url, \
         s.page_title, s.referrer, s.locale, s.status, s.last_seq, s.message_count, \
         s.created_at, s.last_activity_at, s.identity_user_id, s.identity_name, s.identity_email, \
         (SELECT lm.text FROM messages lm WHERE lm.session_id = s.id AND lm.text <> '' \
          ORDER BY lm.seq DESC LIMIT 1) AS last_message \
         FROM sessions s JOIN interfaces i ON i.id = s.interface_id"
    };
}

/// The result of a send: the stored message, and whether this call stored it.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub message: Message,
    /// False when the same `client_id` had already been sent (the earlier message is returned).
    pub created: bool,
}

/// Filters for the admin session list and export.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub interface_slug: Option<String>,
    pub status: Option<String>,
    /// Sessions active at or after this moment (last activity `>= since`).
    pub since: Option<i64>,
    /// Sessions that began before this moment (created `< until`).
    pub until: Option<i64>,
    /// Sessions with a message whose text contains this, or whose signed-in visitor's user id,
    /// name or email does, ignoring case.
    pub text: Option<String>,
    /// Keyset cursor from a previous page: `(last_activity_at, id)` of its last row.
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// A `LIKE` pattern matching `text` anywhere, lower-cased, with `!` escaping the wildcards (the
/// query says `ESCAPE '!'`, which SQLite and PostgreSQL read alike).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// Opens a session and its first session token.
    pub async fn create_session(&self, new: &NewSession, now: i64) -> Result<SessionRow> {
        let id = new_id("ses");
        let visitor_id = new_id("vis");
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, interface_id, visitor_id, resume_hash, page_url, page_title, \
             referrer, locale, ip, user_agent, created_at, last_activity_at, identity_user_id, \
             identity_name, identity_email) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)",
        )
        .bind(&id)
        .bind(&new.interface_id)
        .bind(&visitor_id)
        .bind(&new.resume_hash)
        .bind(&new.page_url)
        .bind(&new.page_title)
        .bind(&new.referrer)
        .bind(&new.locale)
        .bind(&new.ip)
        .bind(&new.user_agent)
        .bind(now)
        .bind(new.identity.as_ref().map(|i| i.user_id.clone()))
        .bind(new.identity.as_ref().and_then(|i| i.name.clone()))
        .bind(new.identity.as_ref().and_then(|i| i.email.clone()))
        .execute(&mut *tx)
        .await?;
        add_token(&mut tx, &id, &new.token_hash, now).await?;
        let row: SessionRow = sqlx::query_as(concat!(select_sessions!(), " WHERE s.id = $1"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The active session of `interface_id` whose resume token hashes to `resume_hash` and whose
    /// visitor is `user_id` (`None`: an anonymous session; a resume token never crosses from one
    /// identity to another, or between anonymous and signed-in). On a match a new session token
    /// (hash) is added, so several tabs can share the session. A session idle since before
    /// `idle_since` is marked `expired` instead, and not resumed.
    pub async fn resume_session(
        &self,
        interface_id: &str,
        resume_hash: &str,
        token_hash: &str,
        user_id: Option<&str>,
        idle_since: i64,
        now: i64,
    ) -> Result<Option<SessionRow>> {
        let mut tx = self.begin().await?;
        // Sub claims are never empty, so '' stands for "anonymous" on both engines.
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            select_sessions!(),
            " WHERE s.resume_hash = $1 AND s.interface_id = $2 AND s.status = 'active' \
              AND COALESCE(s.identity_user_id, '') = $3"
        ))
        .bind(resume_hash)
        .bind(interface_id)
        .bind(user_id.unwrap_or(""))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if row.last_activity_at < idle_since {
            expire_if_idle(&mut tx, &row.id, idle_since).await?;
            tx.commit().await?;
            return Ok(None);
        }
        add_token(&mut tx, &row.id, token_hash, now).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// The signed-in visitor's most recently active session on `interface_id` (active, and not
    /// idle since before `idle_since`), joined from another device: a new session token (hash) is
    /// added, the session's resume token becomes `resume_hash` (the joining device's), and the
    /// name and email follow the newest token. `None` when the visitor has no such session.
    pub async fn join_identity_session(
        &self,
        interface_id: &str,
        identity: &VisitorIdentity,
        token_hash: &str,
        resume_hash: &str,
        idle_since: i64,
        now: i64,
    ) -> Result<Option<SessionRow>> {
        let mut tx = self.begin().await?;
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            select_sessions!(),
            " WHERE s.interface_id = $1 AND s.identity_user_id = $2 AND s.status = 'active' \
              AND s.last_activity_at >= $3 ORDER BY s.last_activity_at DESC, s.id DESC LIMIT 1"
        ))
        .bind(interface_id)
        .bind(&identity.user_id)
        .bind(idle_since)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        add_token(&mut tx, &row.id, token_hash, now).await?;
        sqlx::query(
            "UPDATE sessions SET resume_hash = $1, identity_name = $2, identity_email = $3 \
             WHERE id = $4",
        )
        .bind(resume_hash)
        .bind(&identity.name)
        .bind(&identity.email)
        .bind(&row.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        row.identity_name = identity.name.clone();
        row.identity_email = identity.email.clone();
        Ok(Some(row))
    }

    /// Marks a session `expired` when it is active and idle since before `idle_since`. Returns
    /// whether this call expired it.
    pub async fn expire_idle_session(&self, id: &str, idle_since: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let expired = expire_if_idle(&mut tx, id, idle_since).await?;
        tx.commit().await?;
        Ok(expired)
    }

    /// Marks `expired` every active session idle for longer than its interface's session
    /// timeout: one `UPDATE` per distinct timeout. Returns the ids of the sessions expired.
    pub async fn expire_idle_sessions(&self, now: i64) -> Result<Vec<String>> {
        let mut by_timeout: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for interface in self.list_interfaces().await? {
            by_timeout
                .entry(interface.config.session_timeout_ms())
                .or_default()
                .push(interface.id);
        }
        let mut expired = Vec::new();
        for (timeout_ms, interface_ids) in by_timeout {
            let placeholders: Vec<String> = (2..interface_ids.len() + 2)
                .map(|n| format!("${n}"))
                .collect();
            let sql = format!(
                "UPDATE sessions SET status = 'expired' WHERE status = 'active' \
                 AND last_activity_at < $1 AND interface_id IN ({}) RETURNING id",
                placeholders.join(", ")
            );
            let mut query =
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(now - timeout_ms);
            for id in &interface_ids {
                query = query.bind(id);
            }
            expired.extend(query.fetch_all(&self.write).await?);
        }
        Ok(expired)
    }

    /// The session a session token (hash) belongs to.
    pub async fn session_for_token(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        if let Some(readers) = &self.readers {
            return readers.session_for_token(token_hash);
        }
        let mut hot = self.hot().await?;
        let row = sqlx::query_as(SESSION_FOR_TOKEN)
            .bind(token_hash)
            .fetch_optional(hot.conn())
            .await;
        Ok(hot.settle(row)?)
    }

    /// One session by id.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(
            sqlx::query_as(concat!(select_sessions!(), " WHERE s.id = $1"))
                .bind(id)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// Sessions, most recently active first, filtered and paged by keyset.
    ///
    /// The text search (messages, and the signed-in visitor's id, name and email) is
    /// `LOWER(text) LIKE` on both engines, so it matches the same rows on
    /// each (for non-ASCII letters SQLite's `LOWER` leaves case alone: those match exactly).
    pub async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRow>> {
        let (before_at, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
        let text = filter.text.as_deref().unwrap_or("");
        let pattern = if text.is_empty() {
            String::new()
        } else {
            contains_pattern(text)
        };
        Ok(sqlx::query_as(concat!(
            select_sessions_with_last_message!(),
            " WHERE ($1 = '' OR i.slug = $1) AND ($2 = '' OR s.status = $2) \
              AND (s.last_activity_at < $3 OR (s.last_activity_at = $3 AND ($4 = '' OR s.id < $4))) \
              AND s.last_activity_at >= $6 AND s.created_at < $7 \
              AND ($8 = '' OR EXISTS (SELECT 1 FROM messages qm WHERE qm.session_id = s.id \
                   AND LOWER(qm.text) LIKE $8 ESCAPE '!') \
                   OR LOWER(s.identity_user_id) LIKE $8 ESCAPE '!' \
                   OR LOWER(s.identity_name) LIKE $8 ESCAPE '!' \
                   OR LOWER(s.identity_email) LIKE $8 ESCAPE '!') \
              ORDER BY s.last_activity_at DESC, s.id DESC LIMIT $5"
        ))
        .bind(filter.interface_slug.clone().unwrap_or_default())
        .bind(filter.status.clone().unwrap_or_default())
        .bind(before_at)
        .bind(before_id)
        .bind(i64::from(filter.limit.max(1)))
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(pattern)
        .fetch_all(&self.read)
        .await?)
    }

    /// The messages of several sessions, each session's in order, grouped by session in the
    /// order of `session_ids`. One query, for the export.
    pub async fn messages_of_sessions(
        &self,
        session_ids: &[String],
    ) -> Result<Vec<(String, Vec<Message>)>> {
        if session_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=session_ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m WHERE m.session_id IN ({}) ORDER BY m.session_id, m.seq"
            ),
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, MessageRow>(sqlx::AssertSqlSafe(sql));
        for id in session_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.read).await?;
        let mut by_session: std::collections::HashMap<String, Vec<Message>> =
            std::collections::HashMap::new();
        for row in rows {
            by_session
                .entry(row.session_id.clone())
                .or_default()
                .push(row.into_message());
        }
        Ok(session_ids
            .iter()
            .map(|id| (id.clone(), by_session.remove(id).unwrap_or_default()))
            .collect())
    }

    /// Ends a session: its visitor can read it but not send any more. Ending an ended (or
    /// expired) session changes nothing. Unknown id is [`StoreError::NotFound`].
    pub async fn end_session(&self, id: &str) -> Result<SessionRow> {
        sqlx::query("UPDATE sessions SET status = 'ended' WHERE id = $1 AND status = 'active'")
            .bind(id)
            .execute(&self.write)
            .await?;
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            select_sessions_with_last_message!(),
            " WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        row.ok_or(StoreError::NotFound("session"))
    }

    /// Deletes a session with everything of it: tokens, messages, inbox items, replies and
    /// attachments. Unknown id is [`StoreError::NotFound`].
    pub async fn delete_session(&self, id: &str) -> Result<SessionRow> {
        let mut tx = self.begin().await?;
        let row: Option<SessionRow> =
            sqlx::query_as(concat!(select_sessions!(), " WHERE s.id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let row = row.ok_or(StoreError::NotFound("session"))?;
        // The foreign keys cascade from the session to all of these; deleting the children
        // explicitly first keeps the work visible and independent of the cascade order.
        for sql in [
            "DELETE FROM attachments WHERE session_id = $1",
            "DELETE FROM inbox WHERE session_id = $1",
            "DELETE FROM messages WHERE session_id = $1",
            "DELETE FROM session_tokens WHERE session_id = $1",
            "DELETE FROM sessions WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Stores a visitor message and its inbox item in one transaction, idempotently by
    /// `client_id`: the same `client_id` with the same text returns the stored message; with
    /// different text it is [`StoreError::ClientIdReused`]. Returns only after commit.
    pub async fn send_user_message(
        &self,
        session_id: &str,
        client_id: &str,
        text: &str,
        attachments: &[String],
        context: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<SendOutcome> {
        if let Some(writer) = &self.writer {
            let (session_id, client_id, text) =
                (session_id.to_owned(), client_id.to_owned(), text.to_owned());
            let (attachments, context) = (attachments.to_vec(), context.map(|c| c.to_string()));
            return writer
                .run(move |conn| {
                    super::sqlite_relay::send_user_message(
                        conn,
                        &session_id,
                        &client_id,
                        &text,
                        &attachments,
                        context.as_deref(),
                        now,
                    )
                })
                .await;
        }
        // Two racing sends of one client_id on PostgreSQL: the loser's insert hits the unique
        // index; on the second pass it finds the winner's message.
        for _ in 0..2 {
            match self
                .try_send_user_message(session_id, client_id, text, attachments, context, now)
                .await
            {
                Err(StoreError::Database(err)) if is_unique_violation(&err) => continue,
                other => return other,
            }
        }
        self.try_send_user_message(session_id, client_id, text, attachments, context, now)
            .await
    }

    async fn try_send_user_message(
        &self,
        session_id: &str,
        client_id: &str,
        text: &str,
        attachments: &[String],
        context: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<SendOutcome> {
        if self.backend == Backend::Postgres && attachments.is_empty() {
            // One round trip: the steps below as a server-side function.
            let context = context.map(|c| c.to_string());
            let (message, created) = super::pg_relay::send(
                &mut *self.hot().await?,
                session_id,
                client_id,
                text,
                context.as_deref(),
                now,
            )
            .await?;
            return Ok(SendOutcome {
                message: message.into_message(),
                created,
            });
        }
        let mut tx = self.begin().await?;
        let existing: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.session_id = $1 AND m.client_id = $2"
        ))
        .bind(session_id)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return if existing.text == text {
                Ok(SendOutcome {
                    message: existing.into_message(),
                    created: false,
                })
            } else {
                Err(StoreError::ClientIdReused)
            };
        }
        let session: Option<(String, String)> =
            sqlx::query_as("SELECT status, interface_id FROM sessions WHERE id = $1")
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (status, interface_id) = session.ok_or(StoreError::NotFound("session"))?;
        if status != "active" {
            return Err(StoreError::SessionClosed(status));
        }
        let rev = next_rev(&mut tx, session_id, true, now).await?;
        let refs = pending_attachments(&mut tx, session_id, attachments).await?;
        let id = new_id("msg");
        let context = context.map(|c| c.to_string());
        let refs_json = (!refs.is_empty()).then(|| serde_json::to_string(&refs).expect("refs"));
        sqlx::query(
            "INSERT INTO messages (id, session_id, seq, rev, role, text, status, client_id, context, \
             attachments, created_at, updated_at) \
             VALUES ($1, $2, $3, $3, 'user', $4, 'queued', $5, $6, $7, $8, $8)",
        )
        .bind(&id)
        .bind(session_id)
        .bind(rev)
        .bind(text)
        .bind(client_id)
        .bind(context)
        .bind(refs_json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for attachment in &refs {
            sqlx::query("UPDATE attachments SET message_id = $1 WHERE id = $2")
                .bind(&id)
                .bind(&attachment.id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO inbox (message_id, session_id, interface_id, seq, state, attempts, \
             not_before, created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5, $5)",
        )
        .bind(&id)
        .bind(session_id)
        .bind(&interface_id)
        .bind(rev)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let message = message_in_tx(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(SendOutcome {
            message,
            created: true,
        })
    }

    /// The client address a session was started from (see [`crate::client_ip`]), if recorded.
    pub async fn session_ip(&self, id: &str) -> Result<Option<String>> {
        let ip: Option<Option<String>> =
            sqlx::query_scalar("SELECT ip FROM sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(ip.flatten())
    }

    /// The message a visitor sent with `client_id` in this session, if it is stored.
    pub async fn message_by_client_id(
        &self,
        session_id: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        if let Some(readers) = &self.readers {
            return readers.message_by_client_id(session_id, client_id);
        }
        let mut hot = self.hot().await?;
        let row: sqlx::Result<Option<MessageRow>> = sqlx::query_as(MESSAGE_BY_CLIENT_ID)
            .bind(session_id)
            .bind(client_id)
            .fetch_optional(hot.conn())
            .await;
        Ok(hot.settle(row)?.map(MessageRow::into_message))
    }

    /// Messages of a session whose latest version is newer than `after`, in change order.
    pub async fn messages_after(
        &self,
        session_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        if let Some(readers) = &self.readers {
            return readers.messages_after(session_id, after, limit);
        }
        let mut hot = self.hot().await?;
        let rows: sqlx::Result<Vec<MessageRow>> = sqlx::query_as(MESSAGES_AFTER)
            .bind(session_id)
            .bind(after)
            .bind(i64::from(limit.max(1)))
            .fetch_all(hot.conn())
            .await;
        let rows = hot.settle(rows)?;
        Ok(rows.into_iter().map(MessageRow::into_message).collect())
    }

    /// The whole transcript of a session, in order.
    pub async fn transcript(&self, session_id: &str) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.session_id = $1 ORDER BY m.seq"
        ))
        .bind(session_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(MessageRow::into_message).collect())
    }
}

/// Adds a session token (hash) to a session: one per tab or device that opened it.
async fn add_token(tx: &mut Tx<'_>, session_id: &str, token_hash: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO session_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(session_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a session `expired` if it is active and idle since before `idle_since`; whether it did.
async fn expire_if_idle(tx: &mut Tx<'_>, session_id: &str, idle_since: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET status = 'expired' \
         WHERE id = $1 AND status = 'active' AND last_activity_at < $2",
    )
    .bind(session_id)
    .bind(idle_since)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The pending attachments of `session_id` named by `ids` (uploaded, not yet sent), in order.
async fn pending_attachments(
    tx: &mut Tx<'_>,
    session_id: &str,
    ids: &[String],
) -> Result<Vec<AttachmentRef>> {
    let mut refs: Vec<AttachmentRef> = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT filename, content_type, size FROM attachments \
             WHERE id = $1 AND session_id = $2 AND message_id IS NULL",
        )
        .bind(id)
        .bind(session_id)
        .fetch_optional(&mut **tx)
        .await?;
        add_pending_attachment(&mut refs, id, row)?;
    }
    Ok(refs)
}

/// Adds the attachment `id` to `refs`, given its row (`filename`, `content_type`, `size`) among
/// the session's pending uploads: an id that has no such row, or is named twice, is refused.
/// Shared by both backends' `pending_attachments`.
pub(super) fn add_pending_attachment(
    refs: &mut Vec<AttachmentRef>,
    id: &str,
    row: Option<(String, String, i64)>,
) -> Result<()> {
    match row {
        Some((filename, content_type, size)) if !refs.iter().any(|r| r.id == id) => {
            refs.push(AttachmentRef {
                id: id.to_owned(),
                filename,
                content_type,
                size: u64::try_from(size).unwrap_or(0),
            });
            Ok(())
        }
        _ => Err(StoreError::InvalidAttachment(id.to_owned())),
    }
}
