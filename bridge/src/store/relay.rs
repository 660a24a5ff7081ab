//! The inbox and outbox: claims, leases, streamed deltas, replies, failures and dead letters.
//!
//! Guarantees kept here, in one transaction each:
//! - per-session FIFO: only the oldest unfinished item of a session can be leased, so a session has
//!   at most one item in flight and its items reach the agent in the order sent;
//! - leases: an item leased for `lease_ms` and not finished in time is handed out again under a new
//!   `lease_id` with `attempts + 1`; calls on the old lease are refused (fencing);
//! - a reply is stored once: a repeated reply on the same lease returns the stored one;
//! - after `max_attempts` deliveries the item is dead-lettered and the visitor's log shows a failed
//!   reply, so the visitor is never left waiting in silence.

use std::collections::HashMap;

use airlock_shared::admin::DeadLetter;
use airlock_shared::connector::{ClaimedItem, FailOutcome, SessionContext};
use airlock_shared::{Message, time_from_millis};

use super::pg_relay::{self, PgLeased};
use super::{
    Backend, ConnectorRow, InterfaceConfig, MessageRow, Result, SessionRow, Store, StoreError, Tx,
    message_columns, message_in_tx, next_rev, sqlite_relay,
};
use crate::tokens::new_id;

/// Deliveries of one item before it is dead-lettered, unless configured otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// What the visitor reads when the agent never answered a message.
pub const FAILED_REPLY_TEXT: &str = "The agent could not answer this message. Please try again.";

/// First retry back-off after `fail` with `retry`; doubles per attempt up to the cap.
const RETRY_BASE_MS: i64 = 1_000;
const RETRY_CAP_MS: i64 = 60_000;

/// Candidate look-ups one claim makes at most (each after dead-lettering some heads).
pub(super) const MAX_CLAIM_ROUNDS: usize = 8;

/// The result of one claim transaction.
#[derive(Debug, Default)]
pub struct ClaimOutcome {
    /// The items now leased to the caller.
    pub items: Vec<ClaimedItem>,
    /// Sessions whose log changed (a first delivery, or an item dead-lettered on the way).
    pub touched_sessions: Vec<String>,
    /// Items dead-lettered on the way.
    pub dead_lettered: Vec<DeadLettered>,
}

/// An item that was just dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLettered {
    pub message_id: String,
    pub session_id: String,
    pub error: String,
}

/// The result of a stream, reply or fail call: what the visitor's log now shows.
#[derive(Debug, Clone)]
pub struct LeaseWrite<T> {
    pub session_id: String,
    /// The inbox item written for: the visitor message's id.
    pub item_id: String,
    pub value: T,
}

#[derive(sqlx::FromRow)]
pub(super) struct Candidate {
    pub message_id: String,
    pub session_id: String,
    pub state: String,
    pub attempts: i64,
}

/// A lease joined with the current state of its item.
#[derive(sqlx::FromRow)]
pub(super) struct LeaseState {
    pub message_id: String,
    pub session_id: String,
    pub connector_id: String,
    pub state: String,
    pub current_lease: Option<String>,
    pub attempts: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct OutboxRow {
    pub message_id: String,
    pub lease_id: String,
    pub state: String,
}

/// A lease a claim just made: `(lease_id, message_id, attempt, leased_until)`.
pub(super) type Leased = (String, String, i64, i64);

/// The earlier messages a claimed item carries, newest first (`$1` session, `$2` the item's
/// `seq`, `$3` how many), on SQLite; PostgreSQL's `airlock_claimed_items` has the same query.
macro_rules! claim_history {
    () => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.session_id = $1 AND m.seq < $2 \
              AND (m.role = 'user' OR (m.role = 'assistant' AND m.status = 'complete')) \
              ORDER BY m.seq DESC LIMIT $3"
        )
    };
}
pub(super) use claim_history;

/// The leased items as the connector gets them, in one read (PostgreSQL) whatever their number:
/// for each of the message ids in `$1` (separated by spaces) the item's row and up to `$2` of its
/// history's (the function says how, migrations/postgres/0009_claimed_items.sql). A claim reads
/// them in its own statement (`pg_relay::claim`); this is for the claims that dead-letter first.
/// The same reads as SQLite's `sqlite_relay::claim_parts`, which are calls on the writer's
/// thread rather than round trips.
const CLAIMED_ITEMS: &str = "SELECT * FROM airlock_claimed_items($1, $2)";

/// One row of `airlock_claimed_items`: an item's message (`part` 0, with the visitor's context,
/// the session as JSON and the interface's configuration), or one of the earlier messages of its
/// history (`part` 1).
#[derive(sqlx::FromRow)]
pub(super) struct ItemPart {
    part: i64,
    pub item_id: String,
    #[sqlx(flatten)]
    pub message: MessageRow,
    context: Option<String>,
    session: Option<String>,
    config: Option<String>,
}

/// What is read for one leased item, on either backend.
pub(super) struct ClaimParts {
    pub message: MessageRow,
    /// The visitor's `context` (JSON), which only the agent gets.
    pub context: Option<String>,
    pub session: SessionRow,
    /// The interface's configuration (JSON).
    pub config: String,
    /// The earlier messages, oldest first.
    pub history: Vec<MessageRow>,
}

impl ClaimParts {
    /// The item as the connector gets it.
    pub fn into_item(self, (lease_id, _, attempt, leased_until): Leased) -> ClaimedItem {
        let ClaimParts {
            message,
            context,
            session,
            config,
            history,
        } = self;
        let config: InterfaceConfig = serde_json::from_str(&config).unwrap_or_default();
        ClaimedItem {
            lease_id,
            lease_expires_at: time_from_millis(leased_until),
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            message: message.into_message(),
            session: SessionContext {
                id: session.id,
                interface: session.interface_slug,
                interface_title: config.title,
                visitor_id: session.visitor_id,
                visitor_name: session.identity_name,
                visitor_user_id: session.identity_user_id,
                visitor_email: session.identity_email,
                page_url: session.page_url,
                page_title: session.page_title,
                referrer: session.referrer,
                locale: session.locale,
                context: context.and_then(|c| serde_json::from_str(&c).ok()),
                system_prompt: config.system_prompt,
                agent_context: config.agent_context,
            },
            history: history.into_iter().map(MessageRow::into_message).collect(),
        }
    }
}

/// Back-off before the next delivery after `attempts` failed ones.
fn retry_delay_ms(attempts: i64) -> i64 {
    let doublings = (attempts - 1).clamp(0, 16) as u32;
    (RETRY_BASE_MS << doublings).min(RETRY_CAP_MS)
}

/// Claimable items: queued and due, or leased with the lease run out; only the oldest unfinished
/// item of each session (per-session FIFO); only interfaces the connector may serve: the ones the
/// interface lists in `interface_connectors` when it lists any, else its own scope.
macro_rules! claim_candidates {
    () => {
        "SELECT i.message_id, i.session_id, i.state, i.attempts FROM inbox i \
         WHERE i.state IN ('queued', 'leased') \
           AND ((i.state = 'queued' AND i.not_before <= $1) \
                OR (i.state = 'leased' AND i.leased_until <= $1)) \
           AND NOT EXISTS (SELECT 1 FROM inbox p WHERE p.session_id = i.session_id \
                AND p.state IN ('queued', 'leased') AND p.seq < i.seq) \
           AND (CASE WHEN EXISTS (SELECT 1 FROM interface_connectors x \
                          WHERE x.interface_id = i.interface_id) \
                THEN EXISTS (SELECT 1 FROM interface_connectors x \
                          WHERE x.interface_id = i.interface_id AND x.connector_id = $3) \
                ELSE ($2 = 1 OR i.interface_id IN \
                     (SELECT s.interface_id FROM connector_scopes s WHERE s.connector_id = $3)) \
                END) \
         ORDER BY i.created_at, i.seq LIMIT $4"
    };
}
pub(super) use claim_candidates;

/// A lease joined with the current state of its item, in [`LeaseState`] order.
macro_rules! select_lease {
    () => {
        "SELECT l.message_id, i.session_id, l.connector_id, i.state, \
         i.lease_id AS current_lease, i.attempts FROM leases l \
         JOIN inbox i ON i.message_id = l.message_id WHERE l.lease_id = $1"
    };
}
pub(super) use select_lease;

/// See [`Store::has_pending`].
pub(super) const HAS_PENDING: &str =
    "SELECT 1 FROM inbox WHERE session_id = $1 AND state IN ('queued', 'leased') LIMIT 1";

/// See [`Store::next_due`].
pub(super) const NEXT_DUE: &str = "SELECT MIN(CASE WHEN state = 'queued' THEN not_before ELSE leased_until END) \
     FROM inbox WHERE state IN ('queued', 'leased') \
     AND (CASE WHEN state = 'queued' THEN not_before ELSE leased_until END) > $1";

impl Store {
    /// Leases up to `max` items to `connector` for `lease_ms`, oldest first, at most one per
    /// session. Items whose lease ran out with no attempts left are dead-lettered instead. With
    /// `typing`, each leased item's reply is started in the same transaction, as an empty
    /// streaming message (what a `{typing: true}` stream call writes).
    pub async fn claim(
        &self,
        connector: &ConnectorRow,
        max: u32,
        lease_ms: i64,
        history: u32,
        typing: bool,
        now: i64,
    ) -> Result<ClaimOutcome> {
        let mut outcome = ClaimOutcome::default();
        if max == 0 {
            return Ok(outcome);
        }
        if let Some(writer) = &self.writer {
            // On SQLite the items are read in the same operation as their leases: one hand-off
            // to the writer thread instead of one more per query.
            let claimer = sqlite_relay::Claimer {
                id: connector.id.clone(),
                all_interfaces: connector.all_interfaces,
            };
            let max_attempts = self.max_attempts;
            let (items, touched, dead) = writer
                .run(move |conn| {
                    let (leased, mut touched, dead) = sqlite_relay::claim_leases(
                        conn,
                        &claimer,
                        max,
                        lease_ms,
                        max_attempts,
                        now,
                    )?;
                    if typing {
                        for (lease_id, _, attempt, _) in &leased {
                            let started =
                                sqlite_relay::stream_delta(conn, lease_id, &claimer.id, "", now)?;
                            // A first delivery's session is in `touched` already.
                            if *attempt > 1 {
                                touched.push(started.session_id);
                            }
                        }
                    }
                    let items = leased
                        .into_iter()
                        .map(|leased| {
                            let parts = sqlite_relay::claim_parts(conn, &leased.1, history)?;
                            Ok(parts.into_item(leased))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((items, touched, dead))
                })
                .await?;
            outcome.items = items;
            outcome.touched_sessions = touched;
            outcome.dead_lettered = dead;
            return Ok(outcome);
        }
        // PostgreSQL: the leases in a task of their own, because the fallback begins a
        // transaction (see `finish_detached`); the function reads the items with them, the
        // fallback after.
        let store = self.clone();
        let connector = connector.clone();
        let (leased, parts, mut outcome) = super::finish_detached(async move {
            store
                .pg_lease(&connector, max, lease_ms, typing, history, now, outcome)
                .await
        })
        .await??;
        let parts = match parts {
            Some(parts) => parts,
            None => self.claimed_items(&leased, history).await?,
        };
        outcome.items = assemble_items(leased, parts)?;
        Ok(outcome)
    }

    /// The leases of [`Store::claim`] on PostgreSQL: one round trip to the function, which reads
    /// the items too (`Some` rows), or, when an item must be dead-lettered on the way,
    /// [`Store::lease_in_tx`]'s on the same connection (`None`: the items are still to read).
    /// The server reports the function's refusal before it has undone the call, so for a moment
    /// the call's row locks are still held, and a claim on another connection would skip those
    /// rows as another claimer's (`SKIP LOCKED`) and find nothing. The same connection starts its
    /// next statement only once the undo is done.
    #[allow(clippy::too_many_arguments)]
    async fn pg_lease(
        &self,
        connector: &ConnectorRow,
        max: u32,
        lease_ms: i64,
        typing: bool,
        history: u32,
        now: i64,
        mut outcome: ClaimOutcome,
    ) -> Result<(Vec<Leased>, Option<Vec<ItemPart>>, ClaimOutcome)> {
        let mut hot = self.hot().await?;
        let claimer = (connector.id.as_str(), connector.all_interfaces);
        let made = pg_relay::claim(
            &mut hot,
            claimer,
            max,
            lease_ms,
            self.max_attempts,
            typing,
            history,
            now,
        )
        .await?;
        let (leased, parts) = match made {
            Some((made, parts)) => {
                let leased = made
                    .into_iter()
                    .map(|PgLeased { leased, session_id }| {
                        // A first delivery changes the visitor's message; with `typing` every
                        // one starts a reply.
                        if leased.2 == 1 || typing {
                            outcome.touched_sessions.push(session_id);
                        }
                        leased
                    })
                    .collect();
                (leased, Some(parts))
            }
            None => {
                let tx = sqlx::Connection::begin(hot.conn()).await?;
                let leased = self
                    .lease_in_tx(tx, connector, max, lease_ms, typing, now, &mut outcome)
                    .await?;
                hot.settle(Ok(()))?;
                (leased, None)
            }
        };
        Ok((leased, parts, outcome))
    }

    /// The leasing half of [`Store::claim`] on PostgreSQL when an item must be dead-lettered on
    /// the way (`pg_relay::claim` leaves that case here), in `tx`, which it commits: the leases
    /// made (their replies started with `typing`), with the touched sessions and dead letters in
    /// `outcome`.
    #[allow(clippy::too_many_arguments)]
    async fn lease_in_tx(
        &self,
        mut tx: Tx<'_>,
        connector: &ConnectorRow,
        max: u32,
        lease_ms: i64,
        typing: bool,
        now: i64,
        outcome: &mut ClaimOutcome,
    ) -> Result<Vec<Leased>> {
        // Several bridges on one database: each candidate row goes to one claimer only.
        let sql = concat!(claim_candidates!(), " FOR UPDATE OF i SKIP LOCKED");
        // Dead-lettering a session's head makes its next item claimable: look again, a bounded
        // number of times, until nothing more was dead-lettered or the batch is full.
        let mut leased = Vec::new();
        for _ in 0..MAX_CLAIM_ROUNDS {
            let wanted = i64::from(max) - leased.len() as i64;
            if wanted <= 0 {
                break;
            }
            let candidates: Vec<Candidate> = sqlx::query_as(sql)
                .bind(now)
                .bind(i64::from(connector.all_interfaces))
                .bind(&connector.id)
                .bind(wanted)
                .fetch_all(&mut *tx)
                .await?;
            let mut dead_lettered = false;
            for candidate in candidates {
                if candidate.state == "leased" && candidate.attempts >= i64::from(self.max_attempts)
                {
                    let error = format!(
                        "lease expired on attempt {} of {}",
                        candidate.attempts, self.max_attempts
                    );
                    dead_letter(
                        &mut tx,
                        &candidate.message_id,
                        &candidate.session_id,
                        &error,
                        now,
                    )
                    .await?;
                    outcome.touched_sessions.push(candidate.session_id.clone());
                    outcome.dead_lettered.push(DeadLettered {
                        message_id: candidate.message_id,
                        session_id: candidate.session_id,
                        error,
                    });
                    dead_lettered = true;
                    continue;
                }
                if let Some(lease) =
                    lease_item(&mut tx, connector, &candidate, lease_ms, now).await?
                {
                    if candidate.attempts == 0 {
                        outcome.touched_sessions.push(candidate.session_id.clone());
                    }
                    leased.push(lease);
                }
            }
            if !dead_lettered {
                break;
            }
        }
        if typing {
            for (lease_id, _, attempt, _) in &leased {
                let started = self
                    .stream_delta_in_tx(&mut tx, lease_id, connector, "", now)
                    .await?;
                // A first delivery's session is in `touched_sessions` already.
                if *attempt > 1 {
                    outcome.touched_sessions.push(started.session_id);
                }
            }
        }
        tx.commit().await?;
        Ok(leased)
    }

    /// The rows of everything the agent needs for the leased items: one read after the claim
    /// committed, however many there are.
    async fn claimed_items(&self, leased: &[Leased], history: u32) -> Result<Vec<ItemPart>> {
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let ids = leased
            .iter()
            .map(|(_, message_id, _, _)| message_id.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut hot = self.hot().await?;
        let parts = sqlx::query_as(CLAIMED_ITEMS)
            .bind(ids)
            .bind(i64::from(history))
            .fetch_all(hot.conn())
            .await;
        Ok(hot.settle(parts)?)
    }

    /// The earliest future moment at which an item becomes claimable (a retry back-off ends or
    /// a lease runs out), so a waiting claim can wake then instead of polling.
    pub async fn next_due(&self, now: i64) -> Result<Option<i64>> {
        if let Some(readers) = &self.readers {
            return readers.next_due(now);
        }
        Ok(sqlx::query_scalar(NEXT_DUE)
            .bind(now)
            .fetch_one(&self.read)
            .await?)
    }

    /// Whether `session_id` has an unfinished item (queued, or leased): after its head item was
    /// answered, whether the connectors have something new to claim.
    pub async fn has_pending(&self, session_id: &str) -> Result<bool> {
        if let Some(readers) = &self.readers {
            return readers.has_pending(session_id);
        }
        let mut hot = self.hot().await?;
        let found: sqlx::Result<Option<i64>> = sqlx::query_scalar(HAS_PENDING)
            .bind(session_id)
            .fetch_optional(hot.conn())
            .await;
        Ok(hot.settle(found)?.is_some())
    }

    /// Locks and checks a lease for a write by `connector`. `Ok(None)` means the item is done and
    /// this lease wrote its reply (only a repeated `reply` may use that).
    async fn lease_for_write(
        &self,
        tx: &mut Tx<'_>,
        lease_id: &str,
        connector: &ConnectorRow,
    ) -> Result<LeaseState> {
        let sql = match self.backend {
            Backend::Sqlite => select_lease!(),
            // Serialises with a concurrent claim or reply of the same item on another replica.
            Backend::Postgres => concat!(select_lease!(), " FOR UPDATE OF i"),
        };
        let lease: Option<LeaseState> = sqlx::query_as(sql)
            .bind(lease_id)
            .fetch_optional(&mut **tx)
            .await?;
        let lease = lease
            .filter(|l| l.connector_id == connector.id)
            .ok_or(StoreError::NotFound("lease"))?;
        if lease.current_lease.as_deref() != Some(lease_id) {
            return Err(StoreError::LeaseSuperseded);
        }
        Ok(lease)
    }

    /// Renews a lease for another `lease_ms` from now. Returns the new expiry.
    pub async fn extend_lease(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        lease_ms: i64,
        now: i64,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let lease = self.lease_for_write(&mut tx, lease_id, connector).await?;
        require_leased(&lease)?;
        let until = now + lease_ms;
        sqlx::query("UPDATE inbox SET leased_until = $1, updated_at = $2 WHERE message_id = $3")
            .bind(until)
            .bind(now)
            .bind(&lease.message_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(until)
    }

    /// Appends `delta` to the streaming reply of the lease's item (creating the reply on the first
    /// call). A new delivery of the item starts its reply over. An empty delta only makes sure the
    /// reply exists, which the visitor sees as the agent typing.
    pub async fn stream_delta(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        delta: &str,
        now: i64,
    ) -> Result<LeaseWrite<Message>> {
        if let Some(writer) = &self.writer {
            let (lease_id, connector_id, delta) =
                (lease_id.to_owned(), connector.id.clone(), delta.to_owned());
            return writer
                .run(move |conn| {
                    sqlite_relay::stream_delta(conn, &lease_id, &connector_id, &delta, now)
                })
                .await;
        }
        let mut tx = self.begin().await?;
        let write = self
            .stream_delta_in_tx(&mut tx, lease_id, connector, delta, now)
            .await?;
        tx.commit().await?;
        Ok(write)
    }

    /// [`Store::stream_delta`] inside the caller's transaction (sqlx).
    async fn stream_delta_in_tx(
        &self,
        tx: &mut Tx<'_>,
        lease_id: &str,
        connector: &ConnectorRow,
        delta: &str,
        now: i64,
    ) -> Result<LeaseWrite<Message>> {
        let lease = self.lease_for_write(tx, lease_id, connector).await?;
        require_leased(&lease)?;
        let outbox = outbox_row(tx, &lease.message_id).await?;
        let message_id = match outbox {
            Some(out) if out.lease_id == lease_id => {
                if !delta.is_empty() {
                    let text: String =
                        sqlx::query_scalar("SELECT text FROM messages WHERE id = $1")
                            .bind(&out.message_id)
                            .fetch_one(&mut **tx)
                            .await?;
                    let text = text + delta;
                    let rev = next_rev(tx, &lease.session_id, false, now).await?;
                    sqlx::query(
                        "UPDATE messages SET text = $1, html = $2, rev = $3, updated_at = $4 \
                         WHERE id = $5",
                    )
                    .bind(&text)
                    .bind(rendered(&text))
                    .bind(rev)
                    .bind(now)
                    .bind(&out.message_id)
                    .execute(&mut **tx)
                    .await?;
                }
                out.message_id
            }
            // The first delta of this attempt: a new reply, or an earlier attempt's started over.
            earlier => {
                let reply = NewReply {
                    session_id: &lease.session_id,
                    inbox_id: &lease.message_id,
                    lease_id,
                    text: delta,
                    status: "streaming",
                    error: None,
                };
                write_reply(tx, reply, earlier.as_ref(), now).await?
            }
        };
        let message = message_in_tx(tx, &message_id).await?;
        Ok(LeaseWrite {
            session_id: lease.session_id,
            item_id: lease.message_id,
            value: message,
        })
    }

    /// Stores the final reply and finishes the item, in one transaction. Repeating it on the same
    /// lease returns the stored reply; on a superseded lease it is refused.
    pub async fn reply(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        text: &str,
        now: i64,
    ) -> Result<LeaseWrite<Message>> {
        if let Some(writer) = &self.writer {
            let (lease_id, connector_id, text) =
                (lease_id.to_owned(), connector.id.clone(), text.to_owned());
            return writer
                .run(move |conn| sqlite_relay::reply(conn, &lease_id, &connector_id, &text, now))
                .await;
        }
        let reply =
            pg_relay::reply(&mut *self.hot().await?, lease_id, &connector.id, text, now).await?;
        Ok(LeaseWrite {
            session_id: reply.session_id.clone(),
            // A reply answers its inbox item.
            item_id: reply.reply_to.clone().unwrap_or_default(),
            value: reply.into_message(),
        })
    }

    /// The agent could not answer. With `retry` and attempts left, the item is offered again after
    /// a back-off (and any partial reply is cleared); otherwise it is dead-lettered now.
    pub async fn fail(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        error: &str,
        retry: bool,
        now: i64,
    ) -> Result<LeaseWrite<FailOutcome>> {
        let mut tx = self.begin().await?;
        let lease = self.lease_for_write(&mut tx, lease_id, connector).await?;
        require_leased(&lease)?;
        let attempts = u32::try_from(lease.attempts).unwrap_or(u32::MAX);
        let outcome = if retry && lease.attempts < i64::from(self.max_attempts) {
            let retry_at = now + retry_delay_ms(lease.attempts);
            sqlx::query(
                "UPDATE inbox SET state = 'queued', lease_id = NULL, leased_until = NULL, \
                 not_before = $1, last_error = $2, updated_at = $3 WHERE message_id = $4",
            )
            .bind(retry_at)
            .bind(error)
            .bind(now)
            .bind(&lease.message_id)
            .execute(&mut *tx)
            .await?;
            if let Some(out) = outbox_row(&mut tx, &lease.message_id).await?
                && out.state == "streaming"
            {
                let rev = next_rev(&mut tx, &lease.session_id, false, now).await?;
                sqlx::query(
                    "UPDATE messages SET text = '', html = NULL, rev = $1, updated_at = $2 \
                     WHERE id = $3",
                )
                .bind(rev)
                .bind(now)
                .bind(&out.message_id)
                .execute(&mut *tx)
                .await?;
            }
            FailOutcome {
                state: "queued".into(),
                attempts,
                retry_at: Some(time_from_millis(retry_at)),
            }
        } else {
            dead_letter(&mut tx, &lease.message_id, &lease.session_id, error, now).await?;
            FailOutcome {
                state: "dead".into(),
                attempts,
                retry_at: None,
            }
        };
        tx.commit().await?;
        Ok(LeaseWrite {
            session_id: lease.session_id,
            item_id: lease.message_id,
            value: outcome,
        })
    }

    /// Dead-letters items whose lease ran out on their last attempt, so their visitors see the
    /// failure even when no connector claims again. Returns the items dead-lettered.
    pub async fn reap_expired(&self, now: i64) -> Result<Vec<DeadLettered>> {
        let expired: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT message_id, session_id, attempts FROM inbox \
             WHERE state = 'leased' AND leased_until <= $1 AND attempts >= $2 LIMIT 100",
        )
        .bind(now)
        .bind(i64::from(self.max_attempts))
        .fetch_all(&self.read)
        .await?;
        let mut touched = Vec::new();
        for (message_id, session_id, attempts) in expired {
            let mut tx = self.begin().await?;
            // Re-check under the write lock: a late reply may have finished it meanwhile.
            let still: Option<String> = sqlx::query_scalar(
                "SELECT message_id FROM inbox WHERE message_id = $1 AND state = 'leased' \
                 AND leased_until <= $2",
            )
            .bind(&message_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if still.is_none() {
                continue;
            }
            let error = format!(
                "lease expired on attempt {attempts} of {}",
                self.max_attempts
            );
            dead_letter(&mut tx, &message_id, &session_id, &error, now).await?;
            tx.commit().await?;
            touched.push(DeadLettered {
                message_id,
                session_id,
                error,
            });
        }
        Ok(touched)
    }

    /// Puts a dead-lettered item back in the queue as if just sent: attempts reset, due now, the
    /// visitor's message `queued` again and its failed reply reset to an empty pending one (the
    /// next delivery writes it over, as a redelivery does). Returns the visitor's message.
    /// Unknown id is [`StoreError::NotFound`]; an item that is not dead is
    /// [`StoreError::NotDeadLettered`].
    pub async fn retry_dead_letter(
        &self,
        message_id: &str,
        now: i64,
    ) -> Result<LeaseWrite<Message>> {
        let mut tx = self.begin().await?;
        let session_id = dead_item(&mut tx, message_id).await?;
        // `state = 'dead'` again: on PostgreSQL a concurrent retry may have won meanwhile.
        let done = sqlx::query(
            "UPDATE inbox SET state = 'queued', attempts = 0, lease_id = NULL, leased_until = NULL, \
             leased_by = NULL, not_before = $1, last_error = NULL, updated_at = $1 \
             WHERE message_id = $2 AND state = 'dead'",
        )
        .bind(now)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotDeadLettered("queued".into()));
        }
        let rev = next_rev(&mut tx, &session_id, false, now).await?;
        set_message_status(&mut tx, message_id, "queued", rev, now).await?;
        if let Some(out) = outbox_row(&mut tx, message_id).await? {
            let rev = next_rev(&mut tx, &session_id, false, now).await?;
            sqlx::query(
                "UPDATE messages SET text = '', html = NULL, status = 'streaming', error = NULL, \
                 rev = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(rev)
            .bind(now)
            .bind(&out.message_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE outbox SET state = 'streaming', updated_at = $1 WHERE inbox_id = $2",
            )
            .bind(now)
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        }
        let message = message_in_tx(&mut tx, message_id).await?;
        tx.commit().await?;
        Ok(LeaseWrite {
            session_id,
            item_id: message_id.to_string(),
            value: message,
        })
    }

    /// Drops a dead-lettered item from the dead-letter list; the visitor's log keeps showing
    /// the failure. Errors as [`Store::retry_dead_letter`].
    pub async fn discard_dead_letter(&self, message_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        dead_item(&mut tx, message_id).await?;
        // Its leases and outbox row go with it; the messages stay.
        let done = sqlx::query("DELETE FROM inbox WHERE message_id = $1 AND state = 'dead'")
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("dead letter"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many items each connector holds a live lease on, by connector id.
    pub async fn leases_in_flight(&self, now: i64) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT leased_by, COUNT(*) FROM inbox \
             WHERE state = 'leased' AND leased_until > $1 AND leased_by IS NOT NULL \
             GROUP BY leased_by",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    /// Dead-lettered items, most recent first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            message_id: String,
            session_id: String,
            slug: String,
            attempts: i64,
            last_error: Option<String>,
            updated_at: i64,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT i.message_id, i.session_id, f.slug, i.attempts, i.last_error, i.updated_at \
             FROM inbox i JOIN interfaces f ON f.id = i.interface_id WHERE i.state = 'dead' \
             ORDER BY i.updated_at DESC LIMIT $1",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let message: MessageRow = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m WHERE m.id = $1"
            ))
            .bind(&row.message_id)
            .fetch_one(&self.read)
            .await?;
            out.push(DeadLetter {
                message: message.into_message(),
                session_id: row.session_id,
                interface: row.slug,
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                last_error: row.last_error,
                dead_at: time_from_millis(row.updated_at),
            });
        }
        Ok(out)
    }
}

/// Locks a dead-lettered inbox item for a change and returns its session id.
async fn dead_item(tx: &mut Tx<'_>, message_id: &str) -> Result<String> {
    let sql = "SELECT session_id, state FROM inbox WHERE message_id = $1";
    let row: Option<(String, String)> = sqlx::query_as(sql)
        .bind(message_id)
        .fetch_optional(&mut **tx)
        .await?;
    match row {
        None => Err(StoreError::NotFound("dead letter")),
        Some((session_id, state)) if state == "dead" => Ok(session_id),
        Some((_, state)) => Err(StoreError::NotDeadLettered(state)),
    }
}

/// Leases one candidate to `connector`. Returns `(lease_id, message_id, attempt, leased_until)`,
/// or `None` when the item changed since it was selected.
async fn lease_item(
    tx: &mut Tx<'_>,
    connector: &ConnectorRow,
    candidate: &Candidate,
    lease_ms: i64,
    now: i64,
) -> Result<Option<(String, String, i64, i64)>> {
    let lease_id = new_id("lse");
    let attempt = candidate.attempts + 1;
    let leased_until = now + lease_ms;
    let done = sqlx::query(
        "UPDATE inbox SET state = 'leased', lease_id = $1, leased_until = $2, \
         leased_by = $3, attempts = $4, updated_at = $5 \
         WHERE message_id = $6 AND state = $7 AND attempts = $8",
    )
    .bind(&lease_id)
    .bind(leased_until)
    .bind(&connector.id)
    .bind(attempt)
    .bind(now)
    .bind(&candidate.message_id)
    .bind(&candidate.state)
    .bind(candidate.attempts)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO leases (lease_id, message_id, connector_id, attempt, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&lease_id)
    .bind(&candidate.message_id)
    .bind(&connector.id)
    .bind(attempt)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if candidate.attempts == 0 {
        // First delivery: the visitor's message is now with the agent.
        let rev = next_rev(tx, &candidate.session_id, false, now).await?;
        set_message_status(tx, &candidate.message_id, "processing", rev, now).await?;
    }
    Ok(Some((
        lease_id,
        candidate.message_id.clone(),
        attempt,
        leased_until,
    )))
}

pub(super) fn require_leased(lease: &LeaseState) -> Result<()> {
    match lease.state.as_str() {
        "leased" => Ok(()),
        "done" => Err(StoreError::ItemFinished("answered")),
        "dead" => Err(StoreError::ItemFinished("dead-lettered")),
        // Queued again after `fail`: the lease was given up.
        _ => Err(StoreError::LeaseSuperseded),
    }
}

async fn outbox_row(tx: &mut Tx<'_>, inbox_id: &str) -> Result<Option<OutboxRow>> {
    Ok(
        sqlx::query_as("SELECT message_id, lease_id, state FROM outbox WHERE inbox_id = $1")
            .bind(inbox_id)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// The sanitised HTML of an assistant reply (none while it is still empty).
pub(super) fn rendered(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| crate::render::markdown(text))
}

/// The assistant message answering an inbox item, about to be created.
struct NewReply<'a> {
    session_id: &'a str,
    inbox_id: &'a str,
    lease_id: &'a str,
    text: &'a str,
    /// `streaming`, `complete` or `failed`; the outbox row takes the same state.
    status: &'a str,
    error: Option<&'a str>,
}

/// Creates the assistant message answering an inbox item, and its outbox row.
async fn insert_reply(tx: &mut Tx<'_>, reply: NewReply<'_>, now: i64) -> Result<String> {
    let rev = next_rev(tx, reply.session_id, true, now).await?;
    let id = new_id("msg");
    sqlx::query(
        "INSERT INTO messages (id, session_id, seq, rev, role, text, html, status, reply_to, \
         error, created_at, updated_at) \
         VALUES ($1, $2, $3, $3, 'assistant', $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(reply.session_id)
    .bind(rev)
    .bind(reply.text)
    .bind(rendered(reply.text))
    .bind(reply.status)
    .bind(reply.inbox_id)
    .bind(reply.error)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (inbox_id, message_id, lease_id, state, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(reply.inbox_id)
    .bind(&id)
    .bind(reply.lease_id)
    .bind(reply.status)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Writes the reply to an inbox item: creates it, or replaces the text, status and attempt of the
/// `existing` one. Returns the reply's message id.
async fn write_reply(
    tx: &mut Tx<'_>,
    reply: NewReply<'_>,
    existing: Option<&OutboxRow>,
    now: i64,
) -> Result<String> {
    let Some(existing) = existing else {
        return insert_reply(tx, reply, now).await;
    };
    let rev = next_rev(tx, reply.session_id, false, now).await?;
    sqlx::query(
        "UPDATE messages SET text = $1, html = $2, status = $3, error = $4, rev = $5, \
         updated_at = $6 WHERE id = $7",
    )
    .bind(reply.text)
    .bind(rendered(reply.text))
    .bind(reply.status)
    .bind(reply.error)
    .bind(rev)
    .bind(now)
    .bind(&existing.message_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE outbox SET lease_id = $1, state = $2, updated_at = $3 WHERE inbox_id = $4")
        .bind(reply.lease_id)
        .bind(reply.status)
        .bind(now)
        .bind(reply.inbox_id)
        .execute(&mut **tx)
        .await?;
    Ok(existing.message_id.clone())
}

async fn set_message_status(
    tx: &mut Tx<'_>,
    message_id: &str,
    status: &str,
    rev: i64,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE messages SET status = $1, rev = $2, updated_at = $3 WHERE id = $4")
        .bind(status)
        .bind(rev)
        .bind(now)
        .bind(message_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Gives up on an item: marks it dead, the visitor's message failed, and the reply (partial or
/// newly created) failed with a clear explanation.
async fn dead_letter(
    tx: &mut Tx<'_>,
    message_id: &str,
    session_id: &str,
    error: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE inbox SET state = 'dead', leased_until = NULL, last_error = $1, updated_at = $2 \
         WHERE message_id = $3",
    )
    .bind(error)
    .bind(now)
    .bind(message_id)
    .execute(&mut **tx)
    .await?;
    let rev = next_rev(tx, session_id, false, now).await?;
    set_message_status(tx, message_id, "failed", rev, now).await?;
    match outbox_row(tx, message_id).await? {
        Some(out) => {
            let rev = next_rev(tx, session_id, false, now).await?;
            sqlx::query(
                "UPDATE messages SET status = 'failed', error = $1, rev = $2, updated_at = $3 \
                 WHERE id = $4",
            )
            .bind(FAILED_REPLY_TEXT)
            .bind(rev)
            .bind(now)
            .bind(&out.message_id)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE outbox SET state = 'failed', updated_at = $1 WHERE inbox_id = $2")
                .bind(now)
                .bind(message_id)
                .execute(&mut **tx)
                .await?;
        }
        None => {
            let lease_id: Option<String> =
                sqlx::query_scalar("SELECT lease_id FROM inbox WHERE message_id = $1")
                    .bind(message_id)
                    .fetch_one(&mut **tx)
                    .await?;
            let reply = NewReply {
                session_id,
                inbox_id: message_id,
                lease_id: lease_id.as_deref().unwrap_or(""),
                text: "",
                status: "failed",
                error: Some(FAILED_REPLY_TEXT),
            };
            insert_reply(tx, reply, now).await?;
        }
    }
    Ok(())
}

/// The leased items as the connector gets them, in the order leased, from the rows
/// `airlock_claimed_items` gave for them (PostgreSQL).
fn assemble_items(leased: Vec<Leased>, parts: Vec<ItemPart>) -> Result<Vec<ClaimedItem>> {
    let mut items: HashMap<String, (Option<ItemPart>, Vec<MessageRow>)> =
        HashMap::with_capacity(leased.len());
    for part in parts {
        let entry = items.entry(part.item_id.clone()).or_default();
        if part.part == 0 {
            entry.0 = Some(part);
        } else {
            entry.1.push(part.message);
        }
    }
    leased
        .into_iter()
        .map(|leased| {
            let (item, mut earlier) = items.remove(&leased.1).unwrap_or_default();
            let ItemPart {
                message,
                context,
                session,
                config,
                ..
            } = item.ok_or(StoreError::NotFound("message"))?;
            let session: SessionRow =
                serde_json::from_str(session.as_deref().ok_or(StoreError::NotFound("session"))?)
                    .map_err(|err| StoreError::Database(sqlx::Error::Decode(err.into())))?;
            earlier.sort_by_key(|m| m.seq);
            Ok(ClaimParts {
                message,
                context,
                session,
                config: config.unwrap_or_default(),
                history: earlier,
            }
            .into_item(leased))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_back_off_doubles_from_one_second_up_to_a_minute() {
        assert_eq!(retry_delay_ms(1), 1_000);
        assert_eq!(retry_delay_ms(2), 2_000);
        assert_eq!(retry_delay_ms(3), 4_000);
        assert_eq!(retry_delay_ms(7), 60_000);
        assert_eq!(retry_delay_ms(100), 60_000);
    }
}
