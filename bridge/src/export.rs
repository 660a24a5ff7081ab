//! The session export: one row per message with its session's fields, as JSON Lines or CSV.
//! Shared by `airlock-bridge sessions export` and `GET /admin/sessions/export`, so both write
//! the same columns the same way.

use std::io::{self, Write};

use airlock_shared::Message;
use airlock_shared::admin::SessionSummary;
use chrono::SecondsFormat;
use serde::Serialize;

/// The export's columns, in order (the CSV header and the JSON keys).
pub const COLUMNS: [&str; 10] = [
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

/// One exported row: a message with its session's fields. Times are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRow<'a> {
    pub session_id: &'a str,
    pub interface: &'a str,
    pub visitor_id: &'a str,
    pub session_created_at: String,
    pub message_id: &'a str,
    pub seq: i64,
    pub role: &'a str,
    pub status: &'a str,
    pub created_at: String,
    pub text: &'a str,
}

impl<'a> ExportRow<'a> {
    pub fn new(session: &'a SessionSummary, message: &'a Message) -> Self {
        ExportRow {
            session_id: &session.id,
            interface: &session.interface,
            visitor_id: &session.visitor_id,
            session_created_at: session
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            message_id: &message.id,
            seq: message.seq,
            role: message.role.as_str(),
            status: message.status.as_str(),
            created_at: message
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            text: &message.text,
        }
    }
}

/// Writes rows one at a time, so an export of any size streams.
pub struct ExportWriter<W: Write> {
    format: ExportFormat,
    out: W,
    header_written: bool,
}

impl<W: Write> ExportWriter<W> {
    pub fn new(format: ExportFormat, out: W) -> Self {
        ExportWriter {
            format,
            out,
            header_written: false,
        }
    }

    /// Writes one message row (and, before the first row of a CSV, the header).
    pub fn write(&mut self, session: &SessionSummary, message: &Message) -> io::Result<()> {
        let row = ExportRow::new(session, message);
        match self.format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, &row)?;
                self.out.write_all(b"\n")
            }
            ExportFormat::Csv => {
                self.write_header()?;
                let seq = row.seq.to_string();
                let cells = [
                    row.session_id,
                    row.interface,
                    row.visitor_id,
                    &row.session_created_at,
                    row.message_id,
                    &seq,
                    row.role,
                    row.status,
                    &row.created_at,
                    row.text,
                ];
                write_csv_line(&mut self.out, &cells)
            }
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            write_csv_line(&mut self.out, &COLUMNS)?;
        }
        Ok(())
    }

    /// Ends the export (a CSV without rows still gets its header) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.format == ExportFormat::Csv {
            self.write_header()?;
        }
        self.out.flush()?;
        Ok(self.out)
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

/// One CSV record, CRLF-terminated. Fields holding a comma, quote or line break are quoted; a
/// field a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
fn write_csv_line<W: Write>(out: &mut W, cells: &[&str]) -> io::Result<()> {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        let defused;
        let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            defused = format!("'{cell}");
            defused.as_str()
        } else {
            cell
        };
        if cell.contains([',', '"', '\n', '\r']) {
            write!(out, "\"{}\"", cell.replace('"', "\"\""))?;
        } else {
            out.write_all(cell.as_bytes())?;
        }
    }
    out.write_all(b"\r\n")
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
            "session_id,interface,visitor_id,session_created_at,message_id,seq,role,status,\
             created_at,text\r\n\
             ses_1,help,vis_1,2023-11-14T22:13:20.000Z,msg_1,1,user,complete,\
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
        assert_eq!(row["seq"], 1);
        assert_eq!(
            row.as_object().unwrap().keys().count(),
            COLUMNS.len(),
            "{row}"
        );
    }
}
