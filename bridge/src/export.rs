//! The session export: one row per message with its session's fields, as JSON Lines or CSV.
//! Shared by `airlock-bridge sessions export` and `GET /admin/sessions/export`, so both write
//! the same columns the same way.

use std::borrow::Cow;
use std::io::{self, Write};

use airlock_shared::Message;
use airlock_shared::admin::{ExportRow, SessionSummary};
use chrono::SecondsFormat;

use crate::store::{SessionFilter, Store};

/// The export's columns, in order (the CSV header and the JSON keys).
pub const COLUMNS: [&str; 13] = [
    "session_id",
    "interface",
    "visitor_id",
    "user_id",
    "user_name",
    "user_email",
    "session_created_at",
    "message_id",
    "seq",
    "role",
    "status",
    "created_at",
    "text",
];

/// The two export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl ExportFormat {
    /// The file extension and the `Content-Type` of the format.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "application/x-ndjson; charset=utf-8",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One exported row, [`ExportRow`] (the wire type of the JSON Lines export), built from a message
/// and its session.
pub fn export_row(session: &SessionSummary, message: &Message) -> ExportRow {
    ExportRow {
        session_id: session.id.clone(),
        interface: session.interface.clone(),
        visitor_id: session.visitor_id.clone(),
        user_id: session.identity.as_ref().map(|i| i.user_id.clone()),
        user_name: session.identity.as_ref().and_then(|i| i.name.clone()),
        user_email: session.identity.as_ref().and_then(|i| i.email.clone()),
        session_created_at: session.created_at,
        message_id: message.id.clone(),
        seq: message.seq,
        role: message.role,
        status: message.status,
        created_at: message.created_at,
        text: message.text.clone(),
    }
}

/// Writes rows one at a time, so an export of any size streams.
pub struct ExportWriter<W: Write> {
    out: Output<W>,
    header_written: bool,
}

enum Output<W: Write> {
    Jsonl(W),
    /// Boxed: the CSV writer carries its buffer inline.
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> ExportWriter<W> {
    pub fn new(format: ExportFormat, out: W) -> Self {
        let out = match format {
            ExportFormat::Jsonl => Output::Jsonl(out),
            ExportFormat::Csv => Output::Csv(Box::new(
                csv::WriterBuilder::new()
                    .has_headers(false)
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out),
            )),
        };
        ExportWriter {
            out,
            header_written: false,
        }
    }

    /// A writer that continues an export whose start (with the CSV header) was already written.
    pub fn continuing(format: ExportFormat, out: W) -> Self {
        ExportWriter {
            header_written: true,
            ..ExportWriter::new(format, out)
        }
    }

    /// Writes one message row (and, before the first row of a CSV, the header).
    pub fn write(&mut self, session: &SessionSummary, message: &Message) -> io::Result<()> {
        let row = export_row(session, message);
        self.write_header()?;
        match &mut self.out {
            Output::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &row)?;
                out.write_all(b"\n")
            }
            Output::Csv(out) => {
                let time = |t: chrono::DateTime<chrono::Utc>| {
                    t.to_rfc3339_opts(SecondsFormat::Millis, true)
                };
                let cells = [
                    row.session_id,
                    row.interface,
                    row.visitor_id,
                    row.user_id.unwrap_or_default(),
                    row.user_name.unwrap_or_default(),
                    row.user_email.unwrap_or_default(),
                    time(row.session_created_at),
                    row.message_id,
                    row.seq.to_string(),
                    row.role.as_str().to_string(),
                    row.status.as_str().to_string(),
                    time(row.created_at),
                    row.text,
                ];
                out.write_record(cells.iter().map(|cell| defuse_formula(cell).into_owned()))?;
                Ok(())
            }
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            if let Output::Csv(out) = &mut self.out {
                out.write_record(COLUMNS)?;
            }
        }
        Ok(())
    }

    /// Ends the export (a CSV without rows still gets its header) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        match self.out {
            Output::Jsonl(mut out) => {
                out.flush()?;
                Ok(out)
            }
            Output::Csv(out) => out.into_inner().map_err(|err| err.into_error()),
        }
    }
}

/// Writes every `(session, message)` row to `out` in `format`; returns the writer.
pub fn write_export<'a, W, I>(format: ExportFormat, rows: I, out: W) -> io::Result<W>
where
    W: Write,
    I: IntoIterator<Item = (&'a SessionSummary, &'a Message)>,
{
    let mut writer = ExportWriter::new(format, out);
    for (session, message) in rows {
        writer.write(session, message)?;
    }
    writer.finish()
}

/// Sessions read per database round trip while exporting.
pub const EXPORT_PAGE: u32 = 200;

/// What one page of an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageWritten {
    pub sessions: u64,
    pub messages: u64,
    /// Whether another page may follow (this one was full).
    pub more: bool,
}

/// Writes the next page of sessions matching `filter` (at most `filter.limit`, newest activity
/// first) with all their messages, read in one query, and moves `filter`'s cursor past them.
/// The CLI and the HTTP export both page through an export with this.
pub async fn write_page<W: Write>(
    store: &Store,
    filter: &mut SessionFilter,
    writer: &mut ExportWriter<W>,
) -> anyhow::Result<PageWritten> {
    let sessions = store.list_sessions(filter).await?;
    let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
    let mut written = PageWritten {
        sessions: sessions.len() as u64,
        messages: 0,
        more: sessions.len() == filter.limit as usize,
    };
    for (session, (_, messages)) in sessions.iter().zip(store.messages_of_sessions(&ids).await?) {
        let summary = session.to_summary();
        for message in &messages {
            writer.write(&summary, message)?;
        }
        written.messages += messages.len() as u64;
    }
    if let Some(last) = sessions.last() {
        filter.before = Some((last.last_activity_at, last.id.clone()));
    }
    Ok(written)
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
fn defuse_formula(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_shared::{MessageStatus, Role};
    use chrono::TimeZone;

    fn sample() -> (SessionSummary, Message) {
        let at = chrono::Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let session = SessionSummary {
            id: "ses_1".into(),
            interface: "help".into(),
            visitor_id: "vis_1".into(),
            status: "active".into(),
            message_count: 1,
            page_url: None,
            referrer: None,
            created_at: at,
            last_activity_at: at,
            last_message: None,
            identity: Some(airlock_shared::admin::VisitorIdentity {
                user_id: "u-7".into(),
                name: Some("=HYPERLINK(\"x\"), Ann".into()),
                email: None,
            }),
        };
        let message = Message {
            id: "msg_1".into(),
            seq: 1,
            rev: 1,
            role: Role::User,
            text: "Hi, \"you\"\n=SUM(A1)".into(),
            html: None,
            status: MessageStatus::Complete,
            client_id: None,
            reply_to: None,
            error: None,
            attachments: Vec::new(),
            created_at: at,
            updated_at: at,
        };
        (session, message)
    }

    #[test]
    fn csv_quotes_and_has_a_header() {
        let (session, message) = sample();
        let out = write_export(ExportFormat::Csv, [(&session, &message)], Vec::new()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "session_id,interface,visitor_id,user_id,user_name,user_email,session_created_at,\
             message_id,seq,role,status,created_at,text\r\n\
             ses_1,help,vis_1,u-7,\"'=HYPERLINK(\"\"x\"\"), Ann\",,2023-11-14T22:13:20.000Z,\
             msg_1,1,user,complete,\
             2023-11-14T22:13:20.000Z,\"Hi, \"\"you\"\"\n=SUM(A1)\"\r\n"
        );
        let empty = write_export(ExportFormat::Csv, [], Vec::new()).unwrap();
        assert_eq!(empty.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn jsonl_is_one_object_per_message() {
        let (session, message) = sample();
        let out = write_export(ExportFormat::Jsonl, [(&session, &message)], Vec::new()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(row["text"], message.text);
        assert_eq!(row["user_id"], "u-7");
        assert_eq!(row["user_email"], serde_json::Value::Null);
        assert_eq!(row["seq"], 1);
        assert_eq!(
            row.as_object().unwrap().keys().count(),
            COLUMNS.len(),
            "{row}"
        );
    }
}
