//! Chat interfaces: one bridge serves many, each with its own slug, look and rules.

use airlock_shared::admin::{
    DEFAULT_SESSION_TIMEOUT_MINS, Embed, IdentityVerification, Interface, RateLimit,
};
use airlock_shared::time_from_millis;
use airlock_shared::visitor::{Appearance, Launcher, SuggestedPrompt, Uploads};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, Tx, is_unique_violation};
use crate::tokens::new_id;

/// The branding and behaviour of an interface, stored as JSON so it can grow without migrations.
/// Every field has a default, so rows written by older bridges stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceConfig {
    pub title: String,
    pub description: String,
    pub welcome_message: String,
    pub placeholder: String,
    /// Older rows hold plain strings; [`SuggestedPrompt`] reads both shapes.
    pub suggested_prompts: Vec<SuggestedPrompt>,
    /// `session` or `local`.
    pub persistence: String,
    pub locale: Option<String>,
    pub appearance: Appearance,
    pub launcher: Launcher,
    pub uploads: Uploads,
    pub session_timeout_mins: u32,
    pub rate_limit: RateLimit,
    pub allowed_origins: Vec<String>,
    /// Connector ids allowed to serve the interface; mirrored in `interface_connectors`.
    pub connectors: Vec<String>,
    pub system_prompt: Option<String>,
    pub agent_context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Refuse visitors without a valid identity token.
    pub require_identity: bool,
    /// How identity tokens are verified, secret included (never shown back to admins).
    pub identity: Option<IdentityVerification>,
}

impl InterfaceConfig {
    /// The inactivity after which a session of this interface expires, in milliseconds.
    pub fn session_timeout_ms(&self) -> i64 {
        i64::from(self.session_timeout_mins) * 60_000
    }
}

impl Default for InterfaceConfig {
    fn default() -> Self {
        InterfaceConfig {
            title: String::new(),
            description: String::new(),
            welcome_message: String::new(),
            placeholder: String::new(),
            suggested_prompts: Vec::new(),
            persistence: "session".into(),
            locale: None,
            appearance: Appearance::default(),
            launcher: Launcher::default(),
            uploads: Uploads::default(),
            session_timeout_mins: DEFAULT_SESSION_TIMEOUT_MINS,
            rate_limit: RateLimit::default(),
            allowed_origins: Vec::new(),
            connectors: Vec::new(),
            system_prompt: None,
            agent_context: None,
            require_identity: false,
            identity: None,
        }
    }
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

    /// The admin view; `base_url` (the bridge's public URL, no trailing slash) goes into the
    /// embed snippets.
    pub fn to_admin(&self, base_url: &str) -> Interface {
        let slug = &self.slug;
        let embed = Embed {
            script: format!(
                "<script src=\"{base_url}/widget.js\" data-interface=\"{slug}\" async></script>"
            ),
            iframe: format!(
                "<iframe src=\"{base_url}/embed/{slug}\" title=\"{}\" \
                 style=\"width:100%;height:600px;border:0\" allow=\"clipboard-write\"></iframe>",
                html_attr(&self.config.title)
            ),
            link: format!("{base_url}/c/{slug}"),
        };
        let config = self.config.clone();
        Interface {
            id: self.id.clone(),
            slug: self.slug.clone(),
            name: self.name.clone(),
            status: self.status.clone(),
            title: config.title,
            description: config.description,
            welcome_message: config.welcome_message,
            placeholder: config.placeholder,
            suggested_prompts: config.suggested_prompts,
            persistence: config.persistence,
            locale: config.locale,
            appearance: config.appearance,
            launcher: config.launcher,
            uploads: config.uploads,
            session_timeout_mins: config.session_timeout_mins,
            rate_limit: config.rate_limit,
            allowed_origins: config.allowed_origins,
            connectors: config.connectors,
            system_prompt: config.system_prompt,
            agent_context: config.agent_context,
            require_identity: config.require_identity,
            // The secret is write-only: admins see whether one is stored, never what it is.
            identity: config.identity.map(|identity| IdentityVerification {
                secret: None,
                secret_set: identity.secret.is_some(),
                ..identity
            }),
            embed,
            created_at: time_from_millis(self.created_at),
            updated_at: time_from_millis(self.updated_at),
        }
    }
}

/// Escapes text for a double-quoted HTML attribute.
fn html_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `SELECT` of every interface column, in [`RawInterface`] order.
macro_rules! select_interfaces {
    () => {
        "SELECT id, slug, name, status, config, created_at, updated_at FROM interfaces"
    };
}

/// See [`Store::allowed_origins_by_session`]; shared with SQLite's `readers`.
pub(super) const INTERFACE_CONFIG_BY_SESSION: &str = "SELECT i.config FROM sessions s \
     JOIN interfaces i ON i.id = s.interface_id WHERE s.id = $1";

impl Store {
    /// Creates an interface; a taken slug is [`StoreError::SlugTaken`], an unknown connector id
    /// [`StoreError::NotFound`].
    pub async fn create_interface(&self, new: &NewInterface, now: i64) -> Result<InterfaceRow> {
        let id = new_id("ifc");
        let config = serde_json::to_string(&new.config).expect("config serialises");
        let status = if new.published { "published" } else { "draft" };
        let mut tx = self.begin().await?;
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
        .execute(&mut *tx)
        .await;
        match result {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::SlugTaken(new.slug.clone()));
            }
            other => other?,
        };
        set_interface_connectors(&mut tx, &id, &new.config.connectors).await?;
        tx.commit().await?;
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

    /// Replaces an interface's slug, name and configuration. A taken slug is
    /// [`StoreError::SlugTaken`]; an unknown id or connector id [`StoreError::NotFound`].
    pub async fn update_interface(
        &self,
        id: &str,
        slug: &str,
        name: &str,
        config: &InterfaceConfig,
        now: i64,
    ) -> Result<InterfaceRow> {
        let json = serde_json::to_string(config).expect("config serialises");
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "UPDATE interfaces SET slug = $1, name = $2, config = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(slug)
        .bind(name)
        .bind(&json)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await;
        let done = match result {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::SlugTaken(slug.to_string()));
            }
            other => other?,
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("interface"));
        }
        sqlx::query("DELETE FROM interface_connectors WHERE interface_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        set_interface_connectors(&mut tx, id, &config.connectors).await?;
        let row: RawInterface = sqlx::query_as(concat!(select_interfaces!(), " WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        self.interfaces_by_id.clear();
        Ok(row.into())
    }

    /// Deletes an interface with its sessions (and their messages, inbox items and files).
    /// Returns how many sessions went with it; an unknown slug is [`StoreError::NotFound`].
    pub async fn delete_interface(&self, slug: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM interfaces WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?;
        let id = id.ok_or(StoreError::NotFound("interface"))?;
        let sessions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE interface_id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
        // The inbox names the interface without a foreign key; its rows go with their sessions.
        sqlx::query("DELETE FROM sessions WHERE interface_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM interfaces WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.interfaces_by_id.clear();
        Ok(u64::try_from(sessions).unwrap_or(0))
    }

    /// How many sessions an interface has (to say what a delete would take with it).
    pub async fn count_sessions_of_interface(&self, interface_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE interface_id = $1")
                .bind(interface_id)
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Whether a connector id names a stored connector key (revoked ones included).
    pub async fn connector_exists(&self, id: &str) -> Result<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM connectors WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(found.is_some())
    }

    /// A bridge-wide setting, created with `make` on first use. Every replica on the database
    /// sees the same value: the first writer wins.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String> {
        let found: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        if let Some(value) = found {
            return Ok(value);
        }
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(make())
        .execute(&self.write)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(&self.write)
                .await?,
        )
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
    ///
    /// Every visitor request asks this, so an interface is kept for a second (`store::cache`).
    /// A change through this bridge is seen at once; one made through another replica or the
    /// CLI within that second.
    pub async fn interface_by_id(&self, id: &str) -> Result<Option<InterfaceRow>> {
        if let Some(row) = self.interfaces_by_id.get(id) {
            return Ok(Some(row));
        }
        let row: Option<RawInterface> =
            sqlx::query_as(concat!(select_interfaces!(), " WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        let row: Option<InterfaceRow> = row.map(Into::into);
        if let Some(row) = &row {
            self.interfaces_by_id.put(id, row);
        }
        Ok(row)
    }

    /// The allowed origins of the interface called `slug` (draft or published), for CORS; `None`
    /// when there is none.
    pub async fn allowed_origins_by_slug(&self, slug: &str) -> Result<Option<Vec<String>>> {
        let config: Option<String> =
            sqlx::query_scalar("SELECT config FROM interfaces WHERE slug = $1")
                .bind(slug)
                .fetch_optional(&self.read)
                .await?;
        Ok(config.map(|json| origins_of(&json)))
    }

    /// The allowed origins of the interface a session belongs to, for CORS, in one look-up by
    /// primary key; `None` when there is no such session.
    pub async fn allowed_origins_by_session(
        &self,
        session_id: &str,
    ) -> Result<Option<Vec<String>>> {
        if let Some(readers) = &self.readers {
            let config = readers.interface_config_by_session(session_id)?;
            return Ok(config.map(|json| origins_of(&json)));
        }
        let config: Option<String> = sqlx::query_scalar(INTERFACE_CONFIG_BY_SESSION)
            .bind(session_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(config.map(|json| origins_of(&json)))
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
        self.interfaces_by_id.clear();
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

/// `allowed_origins` of a stored config, read without the rest of it.
fn origins_of(config: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Origins {
        #[serde(default)]
        allowed_origins: Vec<String>,
    }
    serde_json::from_str::<Origins>(config)
        .map(|o| o.allowed_origins)
        .unwrap_or_default()
}

/// Writes the `interface_connectors` rows of an interface; an unknown connector id is
/// [`StoreError::NotFound`].
async fn set_interface_connectors(
    tx: &mut Tx<'_>,
    interface_id: &str,
    connectors: &[String],
) -> Result<()> {
    for connector_id in connectors {
        let done = sqlx::query(
            "INSERT INTO interface_connectors (interface_id, connector_id) \
             SELECT $1, id FROM connectors WHERE id = $2",
        )
        .bind(interface_id)
        .bind(connector_id)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("connector"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::InterfaceConfig;

    #[test]
    fn a_config_written_by_an_older_bridge_still_reads() {
        let old = r#"{"title": "Shop", "suggested_prompts": ["📦 Where is my order?"],
                      "persistence": "local"}"#;
        let config: InterfaceConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.title, "Shop");
        assert_eq!(config.suggested_prompts[0].text, "Where is my order?");
        assert_eq!(config.suggested_prompts[0].icon.as_deref(), Some("📦"));
        assert_eq!(config.persistence, "local");
        assert_eq!(config.session_timeout_mins, 1_440);
        assert_eq!(config.rate_limit.messages, 10);
        assert!(config.connectors.is_empty());
        assert_eq!(config.system_prompt, None);
        assert!(!config.require_identity);
        assert_eq!(config.identity, None);
    }
}
