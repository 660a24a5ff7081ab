//! `/admin/sessions…`: the session list (filtered, paged), transcripts, ending and deleting a
//! session, and the export of transcripts as JSON Lines or CSV.

use std::sync::Arc;

use airlock_shared::admin::{
    AdminEvent, DeletedId, ExportRow, SessionPage, SessionSummary, Transcript,
};
use airlock_shared::error::ErrorEnvelope;
use airlock_shared::time_from_millis;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::export::{self, EXPORT_PAGE, ExportFormat, ExportWriter};
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiQuery, SessionIdPath};
use crate::store::{SessionFilter, SessionRow};

/// The filters shared by the list and the export.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only sessions of this interface (slug)
    interface: Option<String>,
    /// `active`, `ended` or `expired`
    status: Option<String>,
    /// Only sessions active at or after this time (RFC 3339)
    since: Option<String>,
    /// Only sessions created before this time (RFC 3339)
    until: Option<String>,
    /// Only sessions with a message containing this text (case-insensitive)
    q: Option<String>,
    /// `next_cursor` of the previous page
    cursor: Option<String>,
    /// Page size, 1–200 (default 50)
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

#[utoipa::path(get, path = "/admin/sessions", tag = "admin", summary = "Sessions, newest activity first, a page at a time",
    params(SessionQuery), security(("admin_key" = [])),
    responses((status = 200, body = SessionPage), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
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

#[utoipa::path(get, path = "/admin/sessions/{id}", tag = "admin", summary = "One session with its transcript",
    params(("id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Transcript), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    SessionIdPath(id): SessionIdPath,
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
#[utoipa::path(post, path = "/admin/sessions/{id}/end", tag = "admin", summary = "End a session: the visitor can no longer send",
    params(("id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = SessionSummary), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn end(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    SessionIdPath(id): SessionIdPath,
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
#[utoipa::path(delete, path = "/admin/sessions/{id}", tag = "admin", summary = "Delete a session with its messages and files",
    params(("id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = DeletedId), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    SessionIdPath(id): SessionIdPath,
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
#[utoipa::path(get, path = "/admin/sessions/export", tag = "admin", summary = "Download transcripts as JSON Lines or CSV, one row per message",
    params(SessionQuery), security(("admin_key" = [])),
    responses((status = 200, content_type = "application/x-ndjson", body = ExportRow, description = "One JSON object per line (or CSV with `format=csv`)"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn export(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<SessionQuery>,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => ExportFormat::Jsonl,
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
    let (extension, content_type) = (format.extension(), format.content_type());
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
    // The CSV header goes with the first page, even when it has no row.
    let mut writer = if at.header_written {
        ExportWriter::continuing(at.format, Vec::new())
    } else {
        ExportWriter::new(at.format, Vec::new())
    };
    let page = export::write_page(&at.state.store, &mut at.filter, &mut writer).await?;
    at.done = !page.more;
    at.header_written = true;
    Ok(Bytes::from(writer.finish()?))
}
