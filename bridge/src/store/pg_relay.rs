//! The relay's hot writes on PostgreSQL — a visitor's message, a claim's leases (with the typing
//! signal) and the final reply — as calls of the server-side functions of
//! `migrations/postgres/0007_relay_functions.sql`: one statement, one round trip and one commit
//! each, where the same steps through sqlx took one round trip per statement (ten to fifteen).
//!
//! The functions take the steps of the sqlx versions in `relay.rs` and `sessions.rs`, which stay
//! for what the functions leave to them: a message with attachments, and a claim that must
//! dead-letter an item first. `tests/store_conformance.rs` holds all of them to one behaviour.

use super::pg_conns::PooledConn;
use super::relay::{ItemPart, Leased, rendered};
use super::{MessageRow, Result, StoreError};
use crate::tokens::new_id;

/// The SQLSTATE with which the functions refuse a call; the message says why.
const REFUSED: &str = "AL000";

/// The message of a claim that must dead-letter an item before it can lease.
const NEEDS_DEAD_LETTER: &str = "claim_needs_dead_letter";

/// The store's error for a refusal raised by a function, or the database error as it is.
fn refusal(err: sqlx::Error) -> StoreError {
    let sqlx::Error::Database(db) = &err else {
        return err.into();
    };
    if db.code().as_deref() != Some(REFUSED) {
        return err.into();
    }
    match db.message().split_once(':').unwrap_or((db.message(), "")) {
        ("not_found", "session") => StoreError::NotFound("session"),
        ("not_found", _) => StoreError::NotFound("lease"),
        ("client_id_reused", _) => StoreError::ClientIdReused,
        ("session_closed", status) => StoreError::SessionClosed(status.to_owned()),
        ("lease_superseded", _) => StoreError::LeaseSuperseded,
        ("item_finished", "dead-lettered") => StoreError::ItemFinished("dead-lettered"),
        ("item_finished", _) => StoreError::ItemFinished("answered"),
        _ => err.into(),
    }
}

/// A visitor's message without attachments (see `Store::send_user_message`): the stored message,
/// and whether this call stored it (else the same `client_id` had stored it before).
pub(super) async fn send(
    hot: &mut PooledConn,
    session_id: &str,
    client_id: &str,
    text: &str,
    context: Option<&str>,
    now: i64,
) -> Result<(MessageRow, bool)> {
    let id = new_id("msg");
    let message =
        sqlx::query_as::<_, MessageRow>("SELECT * FROM airlock_send($1, $2, $3, $4, $5, $6)")
            .bind(session_id)
            .bind(client_id)
            .bind(text)
            .bind(context)
            .bind(&id)
            .bind(now)
            .fetch_one(hot.conn())
            .await;
    let message = hot.settle(message).map_err(refusal)?;
    let created = message.id == id;
    Ok((message, created))
}

/// A lease the claim function made, with the session of its item.
pub(super) struct PgLeased {
    pub leased: Leased,
    pub session_id: String,
}

/// A claim's leases and its items' rows (`airlock_claimed_items`), in one statement: the items
/// are read by a function, whose queries see what the claim wrote in the same statement
/// (migrations/postgres/0009_claimed_items.sql); `n` numbers the leases in the order made.
const CLAIM_WITH_ITEMS: &str = "WITH c AS MATERIALIZED (\
     SELECT * FROM airlock_claim($1, $2, $3, $4, $5, $6, $7, $8) WITH ORDINALITY \
     AS a(lease_id, message_id, session_id, attempt, leased_until, n)) \
     SELECT c.n, c.lease_id, c.attempt, c.leased_until, i.* \
     FROM airlock_claimed_items((SELECT string_agg(message_id, ' ') FROM c), $9) i \
     LEFT JOIN c ON i.part = 0 AND c.message_id = i.item_id";

/// One row of [`CLAIM_WITH_ITEMS`]: an item's row, with its lease on its message's row.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    n: Option<i64>,
    lease_id: Option<String>,
    attempt: Option<i64>,
    leased_until: Option<i64>,
    #[sqlx(flatten)]
    part: ItemPart,
}

/// Leases up to `max` items (see `Store::claim`) and reads them, each with up to `history`
/// earlier messages: the leases in the order made, and the items' rows. `None`: an item must be
/// dead-lettered first, which the function leaves to the sqlx version; nothing was changed,
/// though the undone call may still hold its row locks for a moment: go on on the same
/// connection.
#[allow(clippy::too_many_arguments)]
pub(super) async fn claim(
    hot: &mut PooledConn,
    claimer: (&str, bool),
    max: u32,
    lease_ms: i64,
    max_attempts: u32,
    typing: bool,
    history: u32,
    now: i64,
) -> Result<Option<(Vec<PgLeased>, Vec<ItemPart>)>> {
    let (connector_id, all_interfaces) = claimer;
    // Two ids per item: its lease's and its reply's.
    let ids: Vec<String> = (0..max)
        .flat_map(|_| [new_id("lse"), new_id("msg")])
        .collect();
    let rows: Result<Vec<ClaimRow>, sqlx::Error> = sqlx::query_as(CLAIM_WITH_ITEMS)
        .bind(connector_id)
        .bind(i64::from(all_interfaces))
        .bind(i64::from(max))
        .bind(lease_ms)
        .bind(i64::from(max_attempts))
        .bind(typing)
        .bind(ids.join(" "))
        .bind(now)
        .bind(i64::from(history))
        .fetch_all(hot.conn())
        .await;
    let rows = match hot.settle(rows) {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(db))
            if db.code().as_deref() == Some(REFUSED) && db.message() == NEEDS_DEAD_LETTER =>
        {
            return Ok(None);
        }
        Err(err) => return Err(refusal(err)),
    };
    let mut leases = Vec::new();
    let mut parts = Vec::with_capacity(rows.len());
    for row in rows {
        if let (Some(n), Some(lease_id), Some(attempt), Some(leased_until)) =
            (row.n, row.lease_id, row.attempt, row.leased_until)
        {
            let leased = (lease_id, row.part.item_id.clone(), attempt, leased_until);
            let session_id = row.part.message.session_id.clone();
            leases.push((n, PgLeased { leased, session_id }));
        }
        parts.push(row.part);
    }
    leases.sort_by_key(|(n, _)| *n);
    Ok(Some((
        leases.into_iter().map(|(_, leased)| leased).collect(),
        parts,
    )))
}

/// Stores the final reply and finishes the item (see `Store::reply`); returns the reply.
pub(super) async fn reply(
    hot: &mut PooledConn,
    lease_id: &str,
    connector_id: &str,
    text: &str,
    now: i64,
) -> Result<MessageRow> {
    let reply = sqlx::query_as("SELECT * FROM airlock_reply($1, $2, $3, $4, $5, $6)")
        .bind(lease_id)
        .bind(connector_id)
        .bind(text)
        .bind(rendered(text))
        .bind(new_id("msg"))
        .bind(now)
        .fetch_one(hot.conn())
        .await;
    hot.settle(reply).map_err(refusal)
}
