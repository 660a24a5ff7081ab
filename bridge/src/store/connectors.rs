//! Connector keys (which interfaces each may serve, when it was last seen) and admin keys.

use airlock_shared::admin::Connector;
use airlock_shared::time_from_millis;

use super::{Result, Store, StoreError};
use crate::tokens::new_id;

/// A connector as the bridge knows it. The key itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRow {
    pub id: String,
    pub name: String,
    /// True when the key may serve every interface.
    pub all_interfaces: bool,
    /// Slugs of the interfaces it may serve when `all_interfaces` is false.
    pub interfaces: Vec<String>,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ConnectorRow {
    /// The admin view; `key` is filled only by the caller that just created it.
    pub fn to_admin(&self, key: Option<String>) -> Connector {
        Connector {
            id: self.id.clone(),
            name: self.name.clone(),
            interfaces: self.interfaces.clone(),
            key,
            created_at: time_from_millis(self.created_at),
            last_seen_at: self.last_seen_at.map(time_from_millis),
            revoked_at: self.revoked_at.map(time_from_millis),
            online: false,
            in_flight: 0,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RawConnector {
    id: String,
    name: String,
    all_interfaces: i64,
    created_at: i64,
    last_seen_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// How often at most a connector's `last_seen_at` is written (claims come much more often).
const LAST_SEEN_RESOLUTION_MS: i64 = 5_000;

impl Store {
    /// Creates a connector key record. `interfaces` are slugs; empty means every interface.
    /// An unknown slug is [`StoreError::NotFound`].
    pub async fn create_connector(
        &self,
        name: &str,
        interfaces: &[String],
        key_hash: &str,
        now: i64,
    ) -> Result<ConnectorRow> {
        let id = new_id("con");
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO connectors (id, name, key_hash, all_interfaces, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(key_hash)
        .bind(i64::from(interfaces.is_empty()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for slug in interfaces {
            let done = sqlx::query(
                "INSERT INTO connector_scopes (connector_id, interface_id) \
                 SELECT $1, id FROM interfaces WHERE slug = $2",
            )
            .bind(&id)
            .bind(slug)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("interface"));
            }
        }
        tx.commit().await?;
        Ok(ConnectorRow {
            id,
            name: name.to_string(),
            all_interfaces: interfaces.is_empty(),
            interfaces: interfaces.to_vec(),
            created_at: now,
            last_seen_at: None,
            revoked_at: None,
        })
    }

    /// Every connector, revoked ones included, newest first.
    pub async fn list_connectors(&self) -> Result<Vec<ConnectorRow>> {
        let raws: Vec<RawConnector> = sqlx::query_as(
            "SELECT id, name, all_interfaces, created_at, last_seen_at, revoked_at \
             FROM connectors ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.read)
        .await?;
        let mut rows = Vec::with_capacity(raws.len());
        for raw in raws {
            rows.push(self.with_scope(raw).await?);
        }
        Ok(rows)
    }

    /// The live (not revoked) connector whose key hashes to `key_hash`.
    ///
    /// Every connector call asks this, so a live key's record is kept for a second
    /// (`store::cache`). A revocation through this bridge forgets it at once; one made through
    /// another replica or the CLI takes effect here within that second.
    pub async fn connector_by_key_hash(&self, key_hash: &str) -> Result<Option<ConnectorRow>> {
        if let Some(row) = self.connector_keys.get(key_hash) {
            return Ok(Some(row));
        }
        let row = self.connector_by_key_hash_uncached(key_hash).await?;
        if let Some(row) = &row {
            self.connector_keys.put(key_hash, row);
        }
        Ok(row)
    }

    async fn connector_by_key_hash_uncached(&self, key_hash: &str) -> Result<Option<ConnectorRow>> {
        let raw: Option<RawConnector> = sqlx::query_as(
            "SELECT id, name, all_interfaces, created_at, last_seen_at, revoked_at \
             FROM connectors WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await?;
        match raw {
            Some(raw) => Ok(Some(self.with_scope(raw).await?)),
            None => Ok(None),
        }
    }

    async fn with_scope(&self, raw: RawConnector) -> Result<ConnectorRow> {
        let interfaces: Vec<String> = if raw.all_interfaces != 0 {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT i.slug FROM connector_scopes s JOIN interfaces i ON i.id = s.interface_id \
                 WHERE s.connector_id = $1 ORDER BY i.slug",
            )
            .bind(&raw.id)
            .fetch_all(&self.read)
            .await?
        };
        Ok(ConnectorRow {
            id: raw.id,
            name: raw.name,
            all_interfaces: raw.all_interfaces != 0,
            interfaces,
            created_at: raw.created_at,
            last_seen_at: raw.last_seen_at,
            revoked_at: raw.revoked_at,
        })
    }

    /// Revokes a connector key at once; its next call gets 401. Unknown id is NotFound.
    pub async fn revoke_connector(&self, id: &str, now: i64) -> Result<ConnectorRow> {
        sqlx::query("UPDATE connectors SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.write)
            .await?;
        // After the write: a look-up racing it cannot put the live record back.
        self.connector_keys.retain(|row| row.id != id);
        let raw: Option<RawConnector> = sqlx::query_as(
            "SELECT id, name, all_interfaces, created_at, last_seen_at, revoked_at \
             FROM connectors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        match raw {
            Some(raw) => self.with_scope(raw).await,
            None => Err(StoreError::NotFound("connector")),
        }
    }

    /// Records that a connector called, at most once per few seconds.
    pub async fn touch_connector(&self, connector: &ConnectorRow, now: i64) -> Result<()> {
        if connector
            .last_seen_at
            .is_some_and(|seen| now - seen < LAST_SEEN_RESOLUTION_MS)
        {
            return Ok(());
        }
        sqlx::query("UPDATE connectors SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&connector.id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Whether a live connector that may serve `interface_id` was seen since `since`.
    pub async fn agent_online(&self, interface_id: &str, since: i64) -> Result<bool> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT c.id FROM connectors c WHERE c.revoked_at IS NULL AND c.last_seen_at >= $1 \
             AND (CASE WHEN EXISTS (SELECT 1 FROM interface_connectors x \
                                    WHERE x.interface_id = $2) \
                  THEN EXISTS (SELECT 1 FROM interface_connectors x \
                               WHERE x.interface_id = $2 AND x.connector_id = c.id) \
                  ELSE (c.all_interfaces = 1 OR EXISTS (SELECT 1 FROM connector_scopes s \
                        WHERE s.connector_id = c.id AND s.interface_id = $2)) END) LIMIT 1",
        )
        .bind(since)
        .bind(interface_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// Whether `connector` may serve the interface `interface_id`: when the interface lists
    /// connectors, only those; otherwise the connector's own scope decides.
    pub async fn connector_may_serve(
        &self,
        connector: &ConnectorRow,
        interface_id: &str,
    ) -> Result<bool> {
        let listed: Vec<String> = sqlx::query_scalar(
            "SELECT connector_id FROM interface_connectors WHERE interface_id = $1",
        )
        .bind(interface_id)
        .fetch_all(&self.read)
        .await?;
        if !listed.is_empty() {
            return Ok(listed.contains(&connector.id));
        }
        if connector.all_interfaces {
            return Ok(true);
        }
        let scoped: Option<String> = sqlx::query_scalar(
            "SELECT connector_id FROM connector_scopes \
             WHERE connector_id = $1 AND interface_id = $2",
        )
        .bind(&connector.id)
        .bind(interface_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(scoped.is_some())
    }

    /// Stores a new admin key hash.
    pub async fn create_admin_key(&self, name: &str, key_hash: &str, now: i64) -> Result<String> {
        let id = new_id("adm");
        sqlx::query(
            "INSERT INTO admin_keys (id, name, key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(name)
        .bind(key_hash)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(id)
    }

    /// The `(id, name)` of the live admin key that hashes to `key_hash`, if any.
    pub async fn admin_key_by_hash(&self, key_hash: &str) -> Result<Option<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, name FROM admin_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Every stored admin key (never its hash), newest first.
    pub async fn list_admin_keys(&self) -> Result<Vec<AdminKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, revoked_at FROM admin_keys \
             ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Revokes a live admin key; `false` when no live key has that id.
    pub async fn revoke_admin_key(&self, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE admin_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many live admin keys are stored.
    pub async fn count_admin_keys(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM admin_keys WHERE revoked_at IS NULL")
                .fetch_one(&self.read)
                .await?,
        )
    }
}

/// A stored admin key, as operators list them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminKeyRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}
