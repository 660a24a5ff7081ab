//! Files visitors attached, served back only as downloads (never rendered in a browser): to the
//! connector that answers them and to admins.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::store::StoredAttachment;

/// The file as an `attachment` download with its declared type and `nosniff`.
pub fn download(file: StoredAttachment) -> Result<Response, ApiError> {
    let content_type =
        HeaderValue::from_str(&file.reference.content_type).map_err(ApiError::internal)?;
    let disposition = HeaderValue::from_str(&content_disposition(&file.reference.filename))
        .map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        file.data,
    )
        .into_response())
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback and the exact name (RFC 6266).
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
