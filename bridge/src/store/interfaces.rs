//! Chat interfaces: one bridge serves many, each with its own slug, look and rules.

use airlock_shared::admin::Interface;
use airlock_shared::time_from_millis;
use airlock_shared::visitor::{Appearance, Launcher, Uploads};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, is_unique_violation};
use crate::tokens::new_id;

/// The branding and behaviour of an interface, stored as JSON so it can grow without migrations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceConfig {
    pub title: String,
    pub description: String,
    pub welcome_message: String,
    pub placeholder: String,
    pub suggested_prompts: Vec<String>,
    /// `session` or `local`.
    pub persistence: String,
    pub locale: Option<String>,
    pub appearance: Appearance,
    pub launcher: Launcher,
    pub uploads: Uploads,
}

/// What creating an interface takes (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewInterface {
    pub slug: String,
    pub name: String,
    pub published: bool,
    pub config: InterfaceConfig,
}

/// One row of `interfaces`.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub config: InterfaceConfig,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RawInterface {
    id: String,
    slug: String,
    name: String,
    status: String,
    config: String,
    created_at: i64,
    updated_at: i64,
}

impl From<RawInterface> for InterfaceRow {
    fn from(raw: RawInterface) -> Self {
        InterfaceRow {
            // A config the bridge wrote itself always parses; defaults keep an old row readable.
            config: serde_json::from_str(&raw.config).unwrap_or_default(),
            id: raw.id,
            slug: raw.slug,
            name: raw.name,
            status: raw.status,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        }
    }
}

impl InterfaceRow {
    pub fn is_published(&self) -> bool {
        self.status == "published"
    }

    pub fn to_admin(&self) -> Interface {
        Interface {
            id: self.id.clone(),
            slug: self.slug.clone(),
            name: self.name.clone(),
            status: self.status.clone(),
            title: self.config.title.clone(),
            description: self.config.description.clone(),
            welcome_message: self.config.welcome_message.clone(),
            placeholder: self.config.placeholder.clone(),
            suggested_prompts: self.config.suggested_prompts.clone(),
            persistence: self.config.persistence.clone(),
            locale: self.config.locale.clone(),
            appearance: self.config.appearance.clone(),
            launcher: self.config.launcher.clone(),
            uploads: self.config.uploads.clone(),
            created_at: time_from_millis(self.created_at),
            updated_at: time_from_millis(self.updated_at),
        }
    }
}

/// `SELECT` of every interface column, in [`RawInterface`] order.
macro_rules! select_interfaces {
    () => {
        "SELECT id, slug, name, status, config, created_at, updated_at FROM interfaces"
    };
}

impl Store {
    /// Creates an interface; a taken slug is [`StoreError::SlugTaken`].
    pub async fn create_interface(&self, new: &NewInterface, now: i64) -> Result<InterfaceRow> {
        let id = new_id("ifc");
        let config = serde_json::to_string(&new.config).expect("config serialises");
        let status = if new.published { "published" } else { "draft" };
        let result = sqlx::query(
            "INSERT INTO interfaces (id, slug, name, status, config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(&new.slug)
        .bind(&new.name)
        .bind(status)
        .bind(&config)
        .bind(now)
        .execute(&self.write)
        .await;
        match result {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::SlugTaken(new.slug.clone()));
            }
            other => other?,
        };
        Ok(InterfaceRow {
            id,
            slug: new.slug.clone(),
            name: new.name.clone(),
            status: status.to_string(),
            config: new.config.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    /// All interfaces, by slug.
    pub async fn list_interfaces(&self) -> Result<Vec<InterfaceRow>> {
        let rows: Vec<RawInterface> =
            sqlx::query_as(concat!(select_interfaces!(), " ORDER BY slug"))
                .fetch_all(&self.read)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One interface by slug, draft or published.
    pub async fn interface_by_slug(&self, slug: &str) -> Result<Option<InterfaceRow>> {
        let row: Option<RawInterface> =
            sqlx::query_as(concat!(select_interfaces!(), " WHERE slug = $1"))
                .bind(slug)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(Into::into))
    }

    /// One interface by id.
    pub async fn interface_by_id(&self, id: &str) -> Result<Option<InterfaceRow>> {
        let row: Option<RawInterface> =
            sqlx::query_as(concat!(select_interfaces!(), " WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(Into::into))
    }

    /// Publishes (`true`) or unpublishes (`false`) an interface.
    pub async fn set_interface_published(
        &self,
        slug: &str,
        published: bool,
        now: i64,
    ) -> Result<InterfaceRow> {
        let status = if published { "published" } else { "draft" };
        let done =
            sqlx::query("UPDATE interfaces SET status = $1, updated_at = $2 WHERE slug = $3")
                .bind(status)
                .bind(now)
                .bind(slug)
                .execute(&self.write)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("interface"));
        }
        let row: RawInterface = sqlx::query_as(concat!(select_interfaces!(), " WHERE slug = $1"))
            .bind(slug)
            .fetch_one(&self.write)
            .await?;
        Ok(row.into())
    }

    /// How many interfaces exist (to seed the demo one on an empty database).
    pub async fn count_interfaces(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM interfaces")
            .fetch_one(&self.read)
            .await?)
    }
}
