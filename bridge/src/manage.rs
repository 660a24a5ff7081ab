//! Admin operations shared by the admin API and the CLI, so both validate the same way and
//! answer with the same words.

use airlock_shared::admin::CreateInterface;

use crate::store::{ConnectorRow, InterfaceConfig, InterfaceRow, NewInterface, Store, StoreError};
use crate::tokens::{ADMIN_KEY_PREFIX, CONNECTOR_KEY_PREFIX, hash_secret, new_secret};
use crate::validate;

/// Why an admin operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request itself is wrong; the message names the field.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str) -> impl FnOnce(String) -> ManageError {
    move |message| ManageError::Invalid { field, message }
}

/// Longest title, name or description.
const MAX_LABEL_CHARS: usize = 200;
const MAX_BLURB_CHARS: usize = 2_000;
const MAX_PROMPTS: usize = 12;

/// Validates and creates an interface.
pub async fn create_interface(
    store: &Store,
    request: CreateInterface,
    now: i64,
) -> Result<InterfaceRow, ManageError> {
    validate::slug(&request.slug).map_err(invalid("slug"))?;
    validate::text("title", &request.title, MAX_LABEL_CHARS).map_err(invalid("title"))?;
    if let Some(name) = &request.name {
        validate::text("name", name, MAX_LABEL_CHARS).map_err(invalid("name"))?;
    }
    let persistence = request.persistence.unwrap_or_else(|| "session".into());
    validate::persistence(&persistence).map_err(invalid("persistence"))?;
    for (field, value) in [
        ("description", &request.description),
        ("welcome_message", &request.welcome_message),
        ("placeholder", &request.placeholder),
    ] {
        if value.chars().count() > MAX_BLURB_CHARS {
            return Err(ManageError::Invalid {
                field,
                message: format!("{field} is longer than {MAX_BLURB_CHARS} characters"),
            });
        }
    }
    if request.suggested_prompts.len() > MAX_PROMPTS {
        return Err(ManageError::Invalid {
            field: "suggested_prompts",
            message: format!("at most {MAX_PROMPTS} suggested prompts"),
        });
    }
    for prompt in &request.suggested_prompts {
        validate::text("suggested_prompts[]", prompt, MAX_LABEL_CHARS)
            .map_err(invalid("suggested_prompts"))?;
    }
    validate::appearance(&request.appearance)
        .map_err(|(field, message)| ManageError::Invalid { field, message })?;
    validate::launcher(&request.launcher)
        .map_err(|(field, message)| ManageError::Invalid { field, message })?;
    if let Some(locale) = &request.locale {
        validate::locale(locale).map_err(invalid("locale"))?;
    }
    validate::uploads(&request.uploads)
        .map_err(|(field, message)| ManageError::Invalid { field, message })?;
    let new = NewInterface {
        name: request.name.unwrap_or_else(|| request.title.clone()),
        slug: request.slug,
        published: request.publish,
        config: InterfaceConfig {
            title: request.title,
            description: request.description,
            welcome_message: request.welcome_message,
            placeholder: request.placeholder,
            suggested_prompts: request.suggested_prompts,
            persistence,
            locale: request.locale,
            appearance: request.appearance,
            launcher: request.launcher,
            uploads: request.uploads,
        },
    };
    Ok(store.create_interface(&new, now).await?)
}

/// Creates a connector key. Returns the record and the key, which is never shown again.
pub async fn create_connector_key(
    store: &Store,
    name: &str,
    interfaces: &[String],
    now: i64,
) -> Result<(ConnectorRow, String), ManageError> {
    validate::text("name", name, MAX_LABEL_CHARS).map_err(invalid("name"))?;
    for slug in interfaces {
        if store.interface_by_slug(slug).await?.is_none() {
            return Err(ManageError::Invalid {
                field: "interfaces",
                message: format!("no interface is called `{slug}`"),
            });
        }
    }
    let key = new_secret(CONNECTOR_KEY_PREFIX);
    let row = store
        .create_connector(name, interfaces, &hash_secret(&key), now)
        .await?;
    Ok((row, key))
}

/// Creates an admin key. Returns it; it is never shown again.
pub async fn create_admin_key(store: &Store, name: &str, now: i64) -> Result<String, ManageError> {
    validate::text("name", name, MAX_LABEL_CHARS).map_err(invalid("name"))?;
    let key = new_secret(ADMIN_KEY_PREFIX);
    store
        .create_admin_key(name, &hash_secret(&key), now)
        .await?;
    Ok(key)
}

/// The interface created on first start of an empty database, so the demo works at once.
pub fn demo_interface() -> CreateInterface {
    CreateInterface {
        slug: "demo".into(),
        title: "Airlock demo".into(),
        name: Some("Demo".into()),
        description: "A demo agent that echoes what you write, word by word.".into(),
        welcome_message: "Hi! I'm the demo agent. Write anything and I'll stream it back.".into(),
        placeholder: "Type a message…".into(),
        suggested_prompts: vec![
            "Hello, who are you?".into(),
            "Show me streaming, one word at a time".into(),
        ],
        persistence: Some("local".into()),
        publish: true,
        launcher: airlock_shared::visitor::Launcher {
            label: Some("Chat with the demo".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}
