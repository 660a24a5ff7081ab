//! The audit log: one row per admin action, written by the admin API and the CLI alike.

use airlock_shared::admin::AuditEntry;
use airlock_shared::time_from_millis;

use super::{Result, Store};
use crate::tokens::new_id;

#[derive(sqlx::FromRow)]
struct RawEntry {
    id: String,
    at: i64,
    actor: String,
    action: String,
    target: String,
    detail: Option<String>,
}

impl From<RawEntry> for AuditEntry {
    fn from(raw: RawEntry) -> Self {
        AuditEntry {
            id: raw.id,
            at: time_from_millis(raw.at),
            actor: raw.actor,
            action: raw.action,
            target: raw.target,
            detail: raw.detail.and_then(|d| serde_json::from_str(&d).ok()),
        }
    }
}

impl Store {
    /// Records that `actor` did `action` to `target`, and returns the entry.
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<AuditEntry> {
        let id = new_id("aud");
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(now)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.map(|d| d.to_string()))
        .execute(&self.write)
        .await?;
        Ok(AuditEntry {
            id,
            at: time_from_millis(now),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.cloned(),
        })
    }

    /// Audit entries, newest first; `before` is the `(at, id)` of the last entry of the previous
    /// page.
    pub async fn list_audit(
        &self,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows: Vec<RawEntry> = match before {
            None => {
                sqlx::query_as(
                    "SELECT id, at, actor, action, target, detail FROM audit_log \
                     ORDER BY at DESC, id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?
            }
            Some((at, id)) => {
                sqlx::query_as(
                    "SELECT id, at, actor, action, target, detail FROM audit_log \
                     WHERE at < $2 OR (at = $2 AND id < $3) ORDER BY at DESC, id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .bind(at)
                .bind(id)
                .fetch_all(&self.read)
                .await?
            }
        };
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
