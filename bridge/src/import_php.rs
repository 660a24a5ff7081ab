//! `airlock-bridge import-php-bridge PATH.db`: brings the history of a PHP web chat bridge
//! (its SQLite database: `web_chat_sessions`, `web_chat_messages`, `web_chat_responses`) into the
//! compat interface, so a deployment that switches keeps its conversations.
//!
//! Each old session becomes a compat session with the same `session_id` and `uid` (the visitor
//! id), so the widget and the agent platform find it again. Messages and responses keep their
//! times and their order; the text is stored as it was written, undoing the HTML-escaping the old
//! bridge applied at rest. A message the old bridge never handed to the agent (`processed = 0`)
//! and never answered is queued for the agent. Running the import again imports nothing twice:
//! every imported row carries its old id as the message's `client_id`.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::compat::{ensure_interface, new_uid, parse_time, unescape_html};
use crate::manage::ManageError;
use crate::store::{NewCompatSession, NewLogMessage, Store, StoreError};

/// What went wrong, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot open {path} as a SQLite database")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0} is not a PHP web chat bridge database (its tables could not be read)")]
    NotPhpBridge(String, #[source] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manage(#[from] ManageError),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Old sessions read, and how many of them were new here.
    pub sessions_read: u64,
    pub sessions_created: u64,
    /// Visitor messages and agent responses stored by this run.
    pub messages_imported: u64,
    pub responses_imported: u64,
    /// Of the messages imported, those queued for the agent (never answered by the old bridge).
    pub messages_queued: u64,
    /// Rows an earlier run had imported already.
    pub already_imported: u64,
}

#[derive(sqlx::FromRow)]
struct OldSession {
    id: String,
    uid: Option<String>,
    created_at: Option<String>,
    last_active: Option<String>,
    ip_address: Option<String>,
}

#[derive(sqlx::FromRow)]
struct OldMessage {
    id: i64,
    session_id: Option<String>,
    message: Option<String>,
    timestamp: Option<String>,
    processed: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct OldResponse {
    id: i64,
    session_id: Option<String>,
    response: Option<String>,
    timestamp: Option<String>,
    message_id: Option<i64>,
}

/// One row of an old session's history, in the order it happened.
enum Entry<'a> {
    Message(&'a OldMessage),
    Response(&'a OldResponse),
}

/// Imports the PHP bridge database at `path` into the compat interface `interface_slug`
/// (created when missing). Safe to run again: what was imported is skipped.
pub async fn import(
    store: &Store,
    path: &Path,
    interface_slug: &str,
    now: i64,
) -> Result<ImportReport, ImportError> {
    let display = path.display().to_string();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let mut old = SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| ImportError::Open {
            path: display.clone(),
            source,
        })?;
    let not_bridge = |err| ImportError::NotPhpBridge(display.clone(), err);
    let sessions: Vec<OldSession> = sqlx::query_as(
        "SELECT CAST(id AS TEXT) AS id, uid, created_at, last_active, ip_address \
         FROM web_chat_sessions ORDER BY created_at, id",
    )
    .fetch_all(&mut old)
    .await
    .map_err(not_bridge)?;
    let messages: Vec<OldMessage> = sqlx::query_as(
        "SELECT id, CAST(session_id AS TEXT) AS session_id, message, timestamp, processed \
         FROM web_chat_messages ORDER BY id",
    )
    .fetch_all(&mut old)
    .await
    .map_err(not_bridge)?;
    let responses: Vec<OldResponse> = sqlx::query_as(
        "SELECT id, CAST(session_id AS TEXT) AS session_id, response, timestamp, message_id \
         FROM web_chat_responses ORDER BY id",
    )
    .fetch_all(&mut old)
    .await
    .map_err(not_bridge)?;
    let _ = old.close().await;

    let interface = ensure_interface(store, interface_slug, now).await?;
    let mut report = ImportReport::default();
    for session in &sessions {
        report.sessions_read += 1;
        let created_at = session
            .created_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(now);
        let uid = session
            .uid
            .clone()
            .filter(|uid| !uid.trim().is_empty())
            .unwrap_or_else(new_uid);
        let (row, created) = store
            .open_compat_session(&NewCompatSession {
                interface_id: interface.id.clone(),
                compat_id: session.id.clone(),
                visitor_id: uid,
                ip: session.ip_address.clone(),
                user_agent: None,
                created_at,
            })
            .await?;
        if created {
            report.sessions_created += 1;
        }
        let answered: std::collections::HashSet<i64> = responses
            .iter()
            .filter(|r| r.session_id.as_deref() == Some(&session.id))
            .filter_map(|r| r.message_id)
            .collect();
        let mut entries: Vec<(i64, u8, i64, Entry<'_>)> = Vec::new();
        for message in messages
            .iter()
            .filter(|m| m.session_id.as_deref() == Some(&session.id))
        {
            let at = message.timestamp.as_deref().and_then(parse_time);
            entries.push((
                at.unwrap_or(created_at),
                0,
                message.id,
                Entry::Message(message),
            ));
        }
        for response in responses
            .iter()
            .filter(|r| r.session_id.as_deref() == Some(&session.id))
        {
            let at = response.timestamp.as_deref().and_then(parse_time);
            entries.push((
                at.unwrap_or(created_at),
                1,
                response.id,
                Entry::Response(response),
            ));
        }
        // By time; at the same time a message before the response to it.
        entries.sort_by_key(|(at, kind, id, _)| (*at, *kind, *id));

        let mut imported_ids: HashMap<i64, String> = HashMap::new();
        let mut last_at = created_at;
        for (at, _, _, entry) in &entries {
            last_at = last_at.max(*at);
            match entry {
                Entry::Message(message) => {
                    let client_id = format!("php-message-{}", message.id);
                    let text = unescape_html(message.message.as_deref().unwrap_or(""));
                    // Handed to the agent (or answered) by the old bridge: history. Otherwise
                    // the agent still owes an answer.
                    let handled =
                        message.processed.unwrap_or(0) != 0 || answered.contains(&message.id);
                    let stored = store
                        .append_message(&NewLogMessage {
                            session_id: &row.id,
                            role: "user",
                            text: &text,
                            status: if handled { "answered" } else { "queued" },
                            client_id: Some(&client_id),
                            reply_to: None,
                            created_at: *at,
                            queue: !handled,
                        })
                        .await?;
                    match stored {
                        Some(stored) => {
                            report.messages_imported += 1;
                            if !handled {
                                report.messages_queued += 1;
                            }
                            imported_ids.insert(message.id, stored.id);
                        }
                        None => {
                            report.already_imported += 1;
                            if let Some(earlier) =
                                store.message_by_client_id(&row.id, &client_id).await?
                            {
                                imported_ids.insert(message.id, earlier.id);
                            }
                        }
                    }
                }
                Entry::Response(response) => {
                    let client_id = format!("php-response-{}", response.id);
                    let text = unescape_html(response.response.as_deref().unwrap_or(""));
                    let reply_to = response
                        .message_id
                        .and_then(|id| imported_ids.get(&id))
                        .map(String::as_str);
                    let stored = store
                        .append_message(&NewLogMessage {
                            session_id: &row.id,
                            role: "assistant",
                            text: &text,
                            status: "complete",
                            client_id: Some(&client_id),
                            reply_to,
                            created_at: *at,
                            queue: false,
                        })
                        .await?;
                    if stored.is_some() {
                        report.responses_imported += 1;
                    } else {
                        report.already_imported += 1;
                    }
                }
            }
        }
        let last_active = session
            .last_active
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(last_at)
            .max(last_at)
            // A session also used through the API since: its activity never goes back.
            .max(row.last_activity_at);
        store
            .set_session_times(&row.id, created_at, last_active)
            .await?;
    }
    Ok(report)
}
