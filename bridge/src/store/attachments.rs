//! Files visitors attach: stored (bytes included) when uploaded, linked to a message when sent,
//! handed only to connectors.

use airlock_shared::AttachmentRef;
use sha2::{Digest, Sha256};

use super::{Result, Store};
use crate::tokens::new_id;

/// An uploaded file, already checked against the interface's limits.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub session_id: String,
    pub interface_id: String,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A stored file with what a connector needs to decide whether it may have it.
#[derive(Debug, Clone)]
pub struct StoredAttachment {
    pub reference: AttachmentRef,
    pub interface_id: String,
    pub interface_slug: String,
    pub data: Vec<u8>,
}

impl Store {
    /// Stores an uploaded file as pending (not yet sent with a message).
    pub async fn store_attachment(&self, new: NewAttachment, now: i64) -> Result<AttachmentRef> {
        let id = new_id("att");
        let sha256 = hex::encode(Sha256::digest(&new.data));
        let size = new.data.len() as i64;
        sqlx::query(
            "INSERT INTO attachments (id, session_id, interface_id, filename, content_type, size, \
             sha256, data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&new.session_id)
        .bind(&new.interface_id)
        .bind(&new.filename)
        .bind(&new.content_type)
        .bind(size)
        .bind(&sha256)
        .bind(new.data)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(AttachmentRef {
            id,
            filename: new.filename,
            content_type: new.content_type,
            size: size as u64,
        })
    }

    /// A stored file, with its bytes and the slug of its interface.
    pub async fn attachment(&self, id: &str) -> Result<Option<StoredAttachment>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            filename: String,
            content_type: String,
            size: i64,
            interface_id: String,
            slug: String,
            data: Vec<u8>,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT a.id, a.filename, a.content_type, a.size, a.interface_id, i.slug, a.data FROM attachments a \
             JOIN interfaces i ON i.id = a.interface_id WHERE a.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|row| StoredAttachment {
            reference: AttachmentRef {
                id: row.id,
                filename: row.filename,
                content_type: row.content_type,
                size: u64::try_from(row.size).unwrap_or(0),
            },
            interface_id: row.interface_id,
            interface_slug: row.slug,
            data: row.data,
        }))
    }
}
