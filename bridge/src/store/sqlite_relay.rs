//! The relay's hot writes on SQLite — a visitor's message, a claim's leases, a streamed delta and
//! the final reply — as plain functions over the writer thread's connection (see `writer`).
//!
//! Each does the same steps in the same order, with the same guarantees, as its sqlx version in
//! `relay.rs` or `sessions.rs` and PostgreSQL's server-side function (`pg_relay`);
//! `tests/store_conformance.rs` holds them all to one behaviour. The SQL keeps the shared
//! statements' `$N` parameters where it reuses them (bound by name here) and is otherwise written
//! for SQLite.

use airlock_shared::{AttachmentRef, Message};
use rusqlite::{Connection, OptionalExtension, named_params, params};

use super::relay::{
    Candidate, ClaimParts, DeadLettered, FAILED_REPLY_TEXT, LeaseState, LeaseWrite, Leased,
    OutboxRow, claim_candidates, claim_history, rendered, require_leased, select_lease,
};
use super::sessions::{MESSAGE_BY_CLIENT_ID, SendOutcome, add_pending_attachment, select_sessions};
use super::{MessageRow, Result, SessionRow, StoreError, bump_session, message_columns};
use crate::tokens::new_id;

/// Who claims: the parts of a [`super::ConnectorRow`] a claim needs, owned for the writer thread.
pub(super) struct Claimer {
    pub id: String,
    pub all_interfaces: bool,
}

/// A visitor's message and its inbox item (see `Store::send_user_message`).
pub(super) fn send_user_message(
    conn: &Connection,
    session_id: &str,
    client_id: &str,
    text: &str,
    attachments: &[String],
    context: Option<&str>,
    now: i64,
) -> Result<SendOutcome> {
    let existing = conn
        .prepare_cached(MESSAGE_BY_CLIENT_ID)?
        .query_row(
            named_params! {"$1": session_id, "$2": client_id},
            message_row,
        )
        .optional()?;
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
    let (status, interface_id): (String, String) = conn
        .prepare_cached("SELECT status, interface_id FROM sessions WHERE id = ?1")?
        .query_row(params![session_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or(StoreError::NotFound("session"))?;
    if status != "active" {
        return Err(StoreError::SessionClosed(status));
    }
    let rev = next_rev(conn, session_id, true, now)?;
    let refs = pending_attachments(conn, session_id, attachments)?;
    let id = new_id("msg");
    let refs_json = (!refs.is_empty()).then(|| serde_json::to_string(&refs).expect("refs"));
    conn.prepare_cached(
        "INSERT INTO messages (id, session_id, seq, rev, role, text, status, client_id, context, \
         attachments, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?3, 'user', ?4, 'queued', ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![
        id, session_id, rev, text, client_id, context, refs_json, now
    ])?;
    for attachment in &refs {
        conn.prepare_cached("UPDATE attachments SET message_id = ?1 WHERE id = ?2")?
            .execute(params![id, attachment.id])?;
    }
    conn.prepare_cached(
        "INSERT INTO inbox (message_id, session_id, interface_id, seq, state, attempts, \
         not_before, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5, ?5)",
    )?
    .execute(params![id, session_id, interface_id, rev, now])?;
    Ok(SendOutcome {
        message: message(conn, &id)?,
        created: true,
    })
}

/// The leasing half of a claim (see `Store::claim`): leases up to `max` items to `claimer`,
/// dead-lettering on the way items whose lease ran out on their last attempt. Returns the leases,
/// the sessions whose log changed and the items dead-lettered.
pub(super) fn claim_leases(
    conn: &Connection,
    claimer: &Claimer,
    max: u32,
    lease_ms: i64,
    max_attempts: u32,
    now: i64,
) -> Result<(Vec<Leased>, Vec<String>, Vec<DeadLettered>)> {
    let (mut leased, mut touched, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..super::relay::MAX_CLAIM_ROUNDS {
        let wanted = i64::from(max) - leased.len() as i64;
        if wanted <= 0 {
            break;
        }
        let candidates: Vec<Candidate> = conn
            .prepare_cached(claim_candidates!())?
            .query_map(
                named_params! {
                    "$1": now,
                    "$2": i64::from(claimer.all_interfaces),
                    "$3": claimer.id,
                    "$4": wanted,
                },
                |row| {
                    Ok(Candidate {
                        message_id: row.get(0)?,
                        session_id: row.get(1)?,
                        state: row.get(2)?,
                        attempts: row.get(3)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut dead_lettered = false;
        for candidate in candidates {
            if candidate.state == "leased" && candidate.attempts >= i64::from(max_attempts) {
                let error = format!(
                    "lease expired on attempt {} of {}",
                    candidate.attempts, max_attempts
                );
                dead_letter(
                    conn,
                    &candidate.message_id,
                    &candidate.session_id,
                    &error,
                    now,
                )?;
                touched.push(candidate.session_id.clone());
                dead.push(DeadLettered {
                    message_id: candidate.message_id,
                    session_id: candidate.session_id,
                    error,
                });
                dead_lettered = true;
                continue;
            }
            if let Some(lease) = lease_item(conn, claimer, &candidate, lease_ms, now)? {
                if candidate.attempts == 0 {
                    touched.push(candidate.session_id.clone());
                }
                leased.push(lease);
            }
        }
        if !dead_lettered {
            break;
        }
    }
    Ok((leased, touched, dead))
}

/// What the connector gets with the leased message `message_id` (see `Store::claim`), read in
/// the claim's own operation.
pub(super) fn claim_parts(conn: &Connection, message_id: &str, history: u32) -> Result<ClaimParts> {
    let (message, context) = conn
        .prepare_cached(concat!(
            "SELECT ",
            message_columns!(),
            ", m.context FROM messages m WHERE m.id = ?1"
        ))?
        .query_row(params![message_id], |row| {
            Ok((message_row(row)?, row.get::<_, Option<String>>(14)?))
        })?;
    let session = conn
        .prepare_cached(concat!(select_sessions!(), " WHERE s.id = ?1"))?
        .query_row(params![message.session_id], session_row)
        .optional()?
        .ok_or(StoreError::NotFound("session"))?;
    let config: String = conn
        .prepare_cached("SELECT config FROM interfaces WHERE id = ?1")?
        .query_row(params![session.interface_id], |row| row.get(0))?;
    let mut history: Vec<MessageRow> = conn
        .prepare_cached(claim_history!())?
        .query_map(
            named_params! {
                "$1": message.session_id,
                "$2": message.seq,
                "$3": i64::from(history),
            },
            message_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    history.reverse();
    Ok(ClaimParts {
        message,
        context,
        session,
        config,
        history,
    })
}

/// A delta of the streaming reply (see `Store::stream_delta`).
pub(super) fn stream_delta(
    conn: &Connection,
    lease_id: &str,
    connector_id: &str,
    delta: &str,
    now: i64,
) -> Result<LeaseWrite<Message>> {
    let lease = lease_for_write(conn, lease_id, connector_id)?;
    require_leased(&lease)?;
    let outbox = outbox_row(conn, &lease.message_id)?;
    let message_id = match outbox {
        Some(out) if out.lease_id == lease_id => {
            if !delta.is_empty() {
                let text: String = conn
                    .prepare_cached("SELECT text FROM messages WHERE id = ?1")?
                    .query_row(params![out.message_id], |row| row.get(0))?;
                let text = text + delta;
                let rev = next_rev(conn, &lease.session_id, false, now)?;
                conn.prepare_cached(
                    "UPDATE messages SET text = ?1, html = ?2, rev = ?3, updated_at = ?4 \
                     WHERE id = ?5",
                )?
                .execute(params![
                    text,
                    rendered(&text),
                    rev,
                    now,
                    out.message_id
                ])?;
            }
            out.message_id
        }
        earlier => {
            let reply = NewReply {
                session_id: &lease.session_id,
                inbox_id: &lease.message_id,
                lease_id,
                text: delta,
                status: "streaming",
                error: None,
            };
            write_reply(conn, &reply, earlier.as_ref(), now)?
        }
    };
    Ok(LeaseWrite {
        value: message(conn, &message_id)?,
        session_id: lease.session_id,
        item_id: lease.message_id,
    })
}

/// The final reply (see `Store::reply`).
pub(super) fn reply(
    conn: &Connection,
    lease_id: &str,
    connector_id: &str,
    text: &str,
    now: i64,
) -> Result<LeaseWrite<Message>> {
    let lease = lease_for_write(conn, lease_id, connector_id)?;
    let outbox = outbox_row(conn, &lease.message_id)?;
    match lease.state.as_str() {
        "done" => {
            let out = outbox.ok_or(StoreError::ItemFinished("answered"))?;
            return Ok(LeaseWrite {
                value: message(conn, &out.message_id)?,
                session_id: lease.session_id,
                item_id: lease.message_id,
            });
        }
        "leased" => {}
        _ => require_leased(&lease)?,
    }
    let reply = NewReply {
        session_id: &lease.session_id,
        inbox_id: &lease.message_id,
        lease_id,
        text,
        status: "complete",
        error: None,
    };
    let message_id = write_reply(conn, &reply, outbox.as_ref(), now)?;
    conn.prepare_cached(
        "UPDATE inbox SET state = 'done', leased_until = NULL, updated_at = ?1 \
         WHERE message_id = ?2",
    )?
    .execute(params![now, lease.message_id])?;
    let rev = next_rev(conn, &lease.session_id, false, now)?;
    set_message_status(conn, &lease.message_id, "answered", rev, now)?;
    Ok(LeaseWrite {
        value: message(conn, &message_id)?,
        session_id: lease.session_id,
        item_id: lease.message_id,
    })
}

/// One row of `messages` in [`message_columns`] order.
pub(super) fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: row.get(0)?,
        session_id: row.get(1)?,
        seq: row.get(2)?,
        rev: row.get(3)?,
        role: row.get(4)?,
        text: row.get(5)?,
        html: row.get(6)?,
        status: row.get(7)?,
        client_id: row.get(8)?,
        reply_to: row.get(9)?,
        error: row.get(10)?,
        attachments: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

/// One row of [`select_sessions`], in its column order.
pub(super) fn session_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get(0)?,
        interface_id: row.get(1)?,
        interface_slug: row.get(2)?,
        visitor_id: row.get(3)?,
        page_url: row.get(4)?,
        page_title: row.get(5)?,
        referrer: row.get(6)?,
        locale: row.get(7)?,
        status: row.get(8)?,
        last_seq: row.get(9)?,
        message_count: row.get(10)?,
        created_at: row.get(11)?,
        last_activity_at: row.get(12)?,
        identity_user_id: row.get(13)?,
        identity_name: row.get(14)?,
        identity_email: row.get(15)?,
        last_message: None,
    })
}

fn message(conn: &Connection, id: &str) -> Result<Message> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.id = ?1"
        ))?
        .query_row(params![id], message_row)?
        .into_message())
}

/// See `store::next_rev`.
///
/// An `UPDATE` and a `SELECT` rather than one `UPDATE … RETURNING`: SQLite collects the rows
/// of a `RETURNING` in a temporary table, which it creates and drops on every run (a fifth of
/// this function's time in the writer's profile); the `SELECT` reads the page just written.
fn next_rev(conn: &Connection, session_id: &str, new_message: bool, now: i64) -> Result<i64> {
    let updated = conn
        .prepare_cached(bump_session!())?
        .execute(named_params! {
            "$1": session_id, "$2": i64::from(new_message), "$3": now
        })?;
    if updated == 0 {
        return Err(StoreError::NotFound("session"));
    }
    Ok(conn
        .prepare_cached("SELECT last_seq FROM sessions WHERE id = ?1")?
        .query_row(params![session_id], |row| row.get(0))?)
}

/// See `sessions::pending_attachments`.
fn pending_attachments(
    conn: &Connection,
    session_id: &str,
    ids: &[String],
) -> Result<Vec<AttachmentRef>> {
    let mut refs: Vec<AttachmentRef> = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<(String, String, i64)> = conn
            .prepare_cached(
                "SELECT filename, content_type, size FROM attachments \
                 WHERE id = ?1 AND session_id = ?2 AND message_id IS NULL",
            )?
            .query_row(params![id, session_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        add_pending_attachment(&mut refs, id, row)?;
    }
    Ok(refs)
}

/// See `Store::lease_for_write`.
fn lease_for_write(conn: &Connection, lease_id: &str, connector_id: &str) -> Result<LeaseState> {
    let lease = conn
        .prepare_cached(select_lease!())?
        .query_row(named_params! {"$1": lease_id}, |row| {
            Ok(LeaseState {
                message_id: row.get(0)?,
                session_id: row.get(1)?,
                connector_id: row.get(2)?,
                state: row.get(3)?,
                current_lease: row.get(4)?,
                attempts: row.get(5)?,
            })
        })
        .optional()?
        .filter(|l| l.connector_id == connector_id)
        .ok_or(StoreError::NotFound("lease"))?;
    if lease.current_lease.as_deref() != Some(lease_id) {
        return Err(StoreError::LeaseSuperseded);
    }
    Ok(lease)
}

/// See `relay::lease_item`.
fn lease_item(
    conn: &Connection,
    claimer: &Claimer,
    candidate: &Candidate,
    lease_ms: i64,
    now: i64,
) -> Result<Option<Leased>> {
    let lease_id = new_id("lse");
    let attempt = candidate.attempts + 1;
    let leased_until = now + lease_ms;
    let changed = conn
        .prepare_cached(
            "UPDATE inbox SET state = 'leased', lease_id = ?1, leased_until = ?2, \
             leased_by = ?3, attempts = ?4, updated_at = ?5 \
             WHERE message_id = ?6 AND state = ?7 AND attempts = ?8",
        )?
        .execute(params![
            lease_id,
            leased_until,
            claimer.id,
            attempt,
            now,
            candidate.message_id,
            candidate.state,
            candidate.attempts
        ])?;
    if changed == 0 {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO leases (lease_id, message_id, connector_id, attempt, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        lease_id,
        candidate.message_id,
        claimer.id,
        attempt,
        now
    ])?;
    if candidate.attempts == 0 {
        let rev = next_rev(conn, &candidate.session_id, false, now)?;
        set_message_status(conn, &candidate.message_id, "processing", rev, now)?;
    }
    Ok(Some((
        lease_id,
        candidate.message_id.clone(),
        attempt,
        leased_until,
    )))
}

fn outbox_row(conn: &Connection, inbox_id: &str) -> Result<Option<OutboxRow>> {
    Ok(conn
        .prepare_cached("SELECT message_id, lease_id, state FROM outbox WHERE inbox_id = ?1")?
        .query_row(params![inbox_id], |row| {
            Ok(OutboxRow {
                message_id: row.get(0)?,
                lease_id: row.get(1)?,
                state: row.get(2)?,
            })
        })
        .optional()?)
}

/// See `relay::NewReply`.
struct NewReply<'a> {
    session_id: &'a str,
    inbox_id: &'a str,
    lease_id: &'a str,
    text: &'a str,
    status: &'a str,
    error: Option<&'a str>,
}

/// See `relay::insert_reply`.
fn insert_reply(conn: &Connection, reply: &NewReply<'_>, now: i64) -> Result<String> {
    let rev = next_rev(conn, reply.session_id, true, now)?;
    let id = new_id("msg");
    conn.prepare_cached(
        "INSERT INTO messages (id, session_id, seq, rev, role, text, html, status, reply_to, \
         error, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?3, 'assistant', ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        id,
        reply.session_id,
        rev,
        reply.text,
        rendered(reply.text),
        reply.status,
        reply.inbox_id,
        reply.error,
        now
    ])?;
    conn.prepare_cached(
        "INSERT INTO outbox (inbox_id, message_id, lease_id, state, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        reply.inbox_id,
        id,
        reply.lease_id,
        reply.status,
        now
    ])?;
    Ok(id)
}

/// See `relay::write_reply`.
fn write_reply(
    conn: &Connection,
    reply: &NewReply<'_>,
    existing: Option<&OutboxRow>,
    now: i64,
) -> Result<String> {
    let Some(existing) = existing else {
        return insert_reply(conn, reply, now);
    };
    let rev = next_rev(conn, reply.session_id, false, now)?;
    conn.prepare_cached(
        "UPDATE messages SET text = ?1, html = ?2, status = ?3, error = ?4, rev = ?5, \
         updated_at = ?6 WHERE id = ?7",
    )?
    .execute(params![
        reply.text,
        rendered(reply.text),
        reply.status,
        reply.error,
        rev,
        now,
        existing.message_id
    ])?;
    conn.prepare_cached(
        "UPDATE outbox SET lease_id = ?1, state = ?2, updated_at = ?3 WHERE inbox_id = ?4",
    )?
    .execute(params![reply.lease_id, reply.status, now, reply.inbox_id])?;
    Ok(existing.message_id.clone())
}

fn set_message_status(
    conn: &Connection,
    message_id: &str,
    status: &str,
    rev: i64,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET status = ?1, rev = ?2, updated_at = ?3 WHERE id = ?4",
    )?
    .execute(params![status, rev, now, message_id])?;
    Ok(())
}

/// See `relay::dead_letter`.
fn dead_letter(
    conn: &Connection,
    message_id: &str,
    session_id: &str,
    error: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE inbox SET state = 'dead', leased_until = NULL, last_error = ?1, updated_at = ?2 \
         WHERE message_id = ?3",
    )?
    .execute(params![error, now, message_id])?;
    let rev = next_rev(conn, session_id, false, now)?;
    set_message_status(conn, message_id, "failed", rev, now)?;
    match outbox_row(conn, message_id)? {
        Some(out) => {
            let rev = next_rev(conn, session_id, false, now)?;
            conn.prepare_cached(
                "UPDATE messages SET status = 'failed', error = ?1, rev = ?2, updated_at = ?3 \
                 WHERE id = ?4",
            )?
            .execute(params![FAILED_REPLY_TEXT, rev, now, out.message_id])?;
            conn.prepare_cached(
                "UPDATE outbox SET state = 'failed', updated_at = ?1 WHERE inbox_id = ?2",
            )?
            .execute(params![now, message_id])?;
        }
        None => {
            let lease_id: Option<String> = conn
                .prepare_cached("SELECT lease_id FROM inbox WHERE message_id = ?1")?
                .query_row(params![message_id], |row| row.get(0))?;
            let reply = NewReply {
                session_id,
                inbox_id: message_id,
                lease_id: lease_id.as_deref().unwrap_or(""),
                text: "",
                status: "failed",
                error: Some(FAILED_REPLY_TEXT),
            };
            insert_reply(conn, &reply, now)?;
        }
    }
    Ok(())
}
