//! `/admin/sessions…`: the session list (filtered, paged), transcripts, ending and deleting a
//! session, and the export of transcripts as JSON Lines or CSV.

use std::sync::Arc;

use airlock_shared::admin::{
    AdminEvent, DeletedId, ExportRow, SessionPage, SessionSummary, Transcript,
};
use airlock_shared::time_from_millis;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiPath, ApiQuery};
use crate::store::{SessionFilter, SessionRow};

/// Sessions read per database round trip while exporting.
const EXPORT_PAGE: u32 = 200;

/// The filters shared by the list and the export.
#[derive(Deserialize)]
pub struct SessionQuery {
    interface: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    /// Export only: `jsonl` or `csv`.
    format: Option<String>,
}

/// Page cursors are `<last_activity_at>.<id>` of the last row of the previous page.
fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    Some((at.parse().ok()?, id.to_string()))
}

/// An RFC 3339 time as epoch ms; a bad one is a 400 naming the parameter.
pub(super) fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(value) => chrono::DateTime::parse_from_rfc3339(value)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_time",
                    format!("{field}: not an RFC 3339 time (e.g. 2026-01-31T09:00:00Z)"),
                )
            }),
    }
}

impl SessionQuery {
    /// The validated filter; `limit` is the page size.
    fn filter(&self, limit: u32) -> Result<SessionFilter, ApiError> {
        let before = match self.cursor.as_deref() {
            Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
            })?),
            None => None,
        };
        if let Some(status) = &self.status
            && !["active", "ended", "expired"].contains(&status.as_str())
        {
            return Err(ApiError::bad_request(
                "invalid_status",
                "status must be active, ended or expired",
            ));
        }
        Ok(SessionFilter {
            interface_slug: self.interface.clone().filter(|s| !s.is_empty()),
            status: self.status.clone(),
            since: parse_time("since", self.since.as_deref())?,
            until: parse_time("until", self.until.as_deref())?,
            text: self.q.clone().filter(|q| !q.trim().is_empty()),
            before,
            limit,
        })
    }
}

fn next_cursor(rows: &[SessionRow], limit: u32) -> Option<String> {
    (rows.len() == limit as usize)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.last_activity_at, r.id))
        })
        .flatten()
}

pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let rows = state.store.list_sessions(&query.filter(limit)?).await?;
    Ok(Json(SessionPage {
        sessions: rows.iter().map(SessionRow::to_summary).collect(),
        next_cursor: next_cursor(&rows, limit),
    }))
}

pub async fn get(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Transcript>, ApiError> {
    let session = state
        .store
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("session_not_found", "session not found"))?;
    let messages = state.store.transcript(&id).await?;
    Ok(Json(Transcript {
        session: session.to_summary(),
        messages,
    }))
}

/// `POST /admin/sessions/{id}/end`: the visitor's next send is refused (409 `session_closed`).
pub async fn end(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionSummary>, ApiError> {
    let row = state.store.end_session(&id).await?;
    super::audit(&state, &auth, "session.end", &id, None).await?;
    state.publish(AdminEvent::Session {
        action: "ended".into(),
        session_id: row.id.clone(),
        interface: Some(row.interface_slug.clone()),
        at: time_from_millis(state.relay.now()),
    });
    Ok(Json(row.to_summary()))
}

/// `DELETE /admin/sessions/{id}`: the session and everything of it.
pub async fn delete(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeletedId>, ApiError> {
    let row = state.store.delete_session(&id).await?;
    let detail = serde_json::json!({
        "interface": row.interface_slug,
        "messages": row.message_count,
    });
    super::audit(&state, &auth, "session.delete", &id, Some(detail)).await?;
    state.publish(AdminEvent::Session {
        action: "deleted".into(),
        session_id: row.id.clone(),
        interface: Some(row.interface_slug),
        at: time_from_millis(state.relay.now()),
    });
    Ok(Json(DeletedId { deleted: row.id }))
}

/// The two export formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    JsonLines,
    Csv,
}

/// Where an export stream is.
struct ExportCursor {
    state: Arc<AppState>,
    filter: SessionFilter,
    format: ExportFormat,
    header_written: bool,
    done: bool,
}

/// `GET /admin/sessions/export?format=jsonl|csv&<list filters>`: one line per message, with its
/// session's fields, sessions in list order. Streamed a page of sessions at a time, so a large
/// database is never held in memory. An error mid-way aborts the download (the client sees a
/// truncated transfer, never a silently short file).
pub async fn export(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<SessionQuery>,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => ExportFormat::JsonLines,
        "csv" => ExportFormat::Csv,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_format",
                "format must be jsonl or csv",
            ));
        }
    };
    if query.cursor.is_some() || query.limit.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "the export takes the list's filters, not cursor or limit",
        ));
    }
    let filter = query.filter(EXPORT_PAGE)?;
    let (extension, content_type) = match format {
        ExportFormat::JsonLines => ("jsonl", "application/x-ndjson; charset=utf-8"),
        ExportFormat::Csv => ("csv", "text/csv; charset=utf-8"),
    };
    let date = time_from_millis(state.relay.now()).format("%Y-%m-%d");
    let disposition = format!("attachment; filename=\"airlock-sessions-{date}.{extension}\"");
    let start = ExportCursor {
        state,
        filter,
        format,
        header_written: false,
        done: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(start, next_export_chunk));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The next page of the export as bytes; `None` when every page was sent.
async fn next_export_chunk(
    mut at: ExportCursor,
) -> Option<(Result<Bytes, std::io::Error>, ExportCursor)> {
    if at.done {
        return None;
    }
    match export_page(&mut at).await {
        Ok(bytes) => Some((Ok(bytes), at)),
        Err(err) => {
            tracing::error!(error = ?err, "session export failed mid-way");
            at.done = true;
            Some((Err(std::io::Error::other(err)), at))
        }
    }
}

async fn export_page(at: &mut ExportCursor) -> anyhow::Result<Bytes> {
    let sessions = at.state.store.list_sessions(&at.filter).await?;
    if sessions.len() < at.filter.limit as usize {
        at.done = true;
    }
    if let Some(last) = sessions.last() {
        at.filter.before = Some((last.last_activity_at, last.id.clone()));
    }
    let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
    let messages = at.state.store.messages_of_sessions(&ids).await?;
    let rows = sessions
        .iter()
        .zip(messages)
        .flat_map(|(session, (_, messages))| {
            messages.into_iter().map(move |m| ExportRow {
                session_id: session.id.clone(),
                interface: session.interface_slug.clone(),
                visitor_id: session.visitor_id.clone(),
                session_created_at: time_from_millis(session.created_at),
                message_id: m.id,
                seq: m.seq,
                role: m.role,
                status: m.status,
                created_at: m.created_at,
                text: m.text,
            })
        });
    let mut out = Vec::new();
    match at.format {
        ExportFormat::JsonLines => {
            for row in rows {
                serde_json::to_writer(&mut out, &row)?;
                out.push(b'\n');
            }
        }
        ExportFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut out);
            if !at.header_written {
                // Written even when there is no row, so an empty export still names its columns.
                writer.write_record(CSV_COLUMNS)?;
                at.header_written = true;
            }
            for row in rows {
                writer.serialize(row)?;
            }
            writer.flush()?;
        }
    }
    Ok(Bytes::from(out))
}

/// The CSV header: [`ExportRow`]'s fields in order.
const CSV_COLUMNS: [&str; 10] = [
    "session_id",
    "interface",
    "visitor_id",
    "session_created_at",
    "message_id",
    "seq",
    "role",
    "status",
    "created_at",
    "text",
];
