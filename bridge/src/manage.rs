//! Admin operations shared by the admin API and the CLI, so both validate the same way and
//! answer with the same words.

use airlock_shared::admin::{
    CreateInterface, DEFAULT_SESSION_TIMEOUT_MINS, DuplicateInterface, ForgetVisitor,
    IdentityVerification, UpdateInterface,
};

use crate::store::{
    ConnectorRow, InterfaceConfig, InterfaceRow, NewInterface, Removed, Store, StoreError,
    VisitorSelector,
};
use crate::tokens::{ADMIN_KEY_PREFIX, CONNECTOR_KEY_PREFIX, hash_secret, new_secret};
use crate::validate;
use airlock_shared::visitor::SuggestedPrompt;

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
const MAX_ORIGINS: usize = 50;
const MAX_CONNECTORS: usize = 50;

fn invalid_field((field, message): (&'static str, String)) -> ManageError {
    ManageError::Invalid { field, message }
}

/// The one validation path for a whole interface, new or changed: what create and update store
/// has passed here.
async fn check_interface(
    store: &Store,
    slug: &str,
    name: &str,
    config: &InterfaceConfig,
) -> Result<(), ManageError> {
    validate::slug(slug).map_err(invalid("slug"))?;
    // The title first: the name defaults to it.
    validate::text("title", &config.title, MAX_LABEL_CHARS).map_err(invalid("title"))?;
    validate::text("name", name, MAX_LABEL_CHARS).map_err(invalid("name"))?;
    validate::persistence(&config.persistence).map_err(invalid("persistence"))?;
    for (field, value) in [
        ("description", &config.description),
        ("welcome_message", &config.welcome_message),
        ("placeholder", &config.placeholder),
    ] {
        if value.chars().count() > MAX_BLURB_CHARS {
            return Err(ManageError::Invalid {
                field,
                message: format!("{field} is longer than {MAX_BLURB_CHARS} characters"),
            });
        }
    }
    if config.suggested_prompts.len() > MAX_PROMPTS {
        return Err(ManageError::Invalid {
            field: "suggested_prompts",
            message: format!("at most {MAX_PROMPTS} suggested prompts"),
        });
    }
    for prompt in &config.suggested_prompts {
        validate::text("suggested_prompts[].text", &prompt.text, MAX_LABEL_CHARS)
            .map_err(invalid("suggested_prompts"))?;
        if let Some(icon) = &prompt.icon {
            validate::prompt_icon(icon).map_err(invalid("suggested_prompts"))?;
        }
    }
    validate::appearance(&config.appearance).map_err(invalid_field)?;
    validate::launcher(&config.launcher).map_err(invalid_field)?;
    if let Some(locale) = &config.locale {
        validate::locale(locale).map_err(invalid("locale"))?;
    }
    validate::uploads(&config.uploads).map_err(invalid_field)?;
    validate::session_timeout_mins(config.session_timeout_mins)
        .map_err(invalid("session_timeout_mins"))?;
    validate::rate_limit(&config.rate_limit).map_err(invalid_field)?;
    if config.allowed_origins.len() > MAX_ORIGINS {
        return Err(ManageError::Invalid {
            field: "allowed_origins",
            message: format!("at most {MAX_ORIGINS} origins"),
        });
    }
    validate::origins(&config.allowed_origins).map_err(invalid("allowed_origins"))?;
    if config.connectors.len() > MAX_CONNECTORS {
        return Err(ManageError::Invalid {
            field: "connectors",
            message: format!("at most {MAX_CONNECTORS} connectors"),
        });
    }
    for id in &config.connectors {
        if !store.connector_exists(id).await? {
            return Err(ManageError::Invalid {
                field: "connectors",
                message: format!(
                    "no connector key has the id `{id}`; see `airlock-bridge connector-key list`"
                ),
            });
        }
    }
    if let Some(prompt) = &config.system_prompt {
        validate::system_prompt(prompt).map_err(invalid("system_prompt"))?;
    }
    if let Some(context) = &config.agent_context {
        validate::agent_context(context).map_err(invalid("agent_context"))?;
    }
    if let Some(identity) = &config.identity {
        validate::identity(identity).map_err(invalid_field)?;
    }
    if config.require_identity && config.identity.is_none() {
        return Err(ManageError::Invalid {
            field: "require_identity",
            message: "require_identity needs `identity`: how to verify the site's signed \
                      identity tokens"
                .into(),
        });
    }
    Ok(())
}

/// The identity settings to store: `new`, keeping the `stored` secret when `new` has none and
/// both use HS256 (the secret is write-only, so an edit that leaves it out keeps it). A key the
/// algorithm does not use is dropped.
fn identity_to_store(
    new: IdentityVerification,
    stored: Option<&IdentityVerification>,
) -> IdentityVerification {
    let mut identity = new;
    if identity.secret.is_none()
        && let Some(stored) = stored
        && stored.algorithm == identity.algorithm
    {
        identity.secret = stored.secret.clone();
    }
    match identity.algorithm.as_str() {
        "HS256" => identity.public_key = None,
        "RS256" => identity.secret = None,
        _ => {}
    }
    identity.secret_set = identity.secret.is_some();
    identity
}

/// Removes repeated entries, keeping the first of each.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(values.len());
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen
}

/// Validates and creates an interface.
pub async fn create_interface(
    store: &Store,
    request: CreateInterface,
    now: i64,
) -> Result<InterfaceRow, ManageError> {
    let config = InterfaceConfig {
        title: request.title,
        description: request.description,
        welcome_message: request.welcome_message,
        placeholder: request.placeholder,
        suggested_prompts: request.suggested_prompts,
        persistence: request.persistence.unwrap_or_else(|| "session".into()),
        locale: request.locale,
        appearance: request.appearance,
        launcher: request.launcher,
        uploads: request.uploads,
        session_timeout_mins: request
            .session_timeout_mins
            .unwrap_or(DEFAULT_SESSION_TIMEOUT_MINS),
        rate_limit: request.rate_limit.unwrap_or_default(),
        allowed_origins: dedup(request.allowed_origins),
        connectors: dedup(request.connectors),
        system_prompt: request.system_prompt,
        agent_context: request.agent_context,
        require_identity: request.require_identity,
        identity: request.identity.map(|i| identity_to_store(i, None)),
    };
    let new = NewInterface {
        name: request.name.unwrap_or_else(|| config.title.clone()),
        slug: request.slug,
        published: request.publish,
        config,
    };
    check_interface(store, &new.slug, &new.name, &new.config).await?;
    Ok(store.create_interface(&new, now).await?)
}

/// The stored interface called `slug`, or [`StoreError::NotFound`].
async fn existing(store: &Store, slug: &str) -> Result<InterfaceRow, ManageError> {
    Ok(store
        .interface_by_slug(slug)
        .await?
        .ok_or(StoreError::NotFound("interface"))?)
}

/// Applies a partial update (fields present replace the stored ones), validates the result as
/// a whole and stores it.
pub async fn update_interface(
    store: &Store,
    slug: &str,
    patch: UpdateInterface,
    now: i64,
) -> Result<InterfaceRow, ManageError> {
    let row = existing(store, slug).await?;
    let mut config = row.config;
    let new_slug = patch.slug.unwrap_or(row.slug);
    let name = patch.name.unwrap_or(row.name);
    if let Some(title) = patch.title {
        config.title = title;
    }
    if let Some(description) = patch.description {
        config.description = description;
    }
    if let Some(welcome) = patch.welcome_message {
        config.welcome_message = welcome;
    }
    if let Some(placeholder) = patch.placeholder {
        config.placeholder = placeholder;
    }
    if let Some(prompts) = patch.suggested_prompts {
        config.suggested_prompts = prompts;
    }
    if let Some(persistence) = patch.persistence {
        config.persistence = persistence;
    }
    if let Some(locale) = patch.locale {
        config.locale = locale;
    }
    if let Some(appearance) = patch.appearance {
        config.appearance = appearance;
    }
    if let Some(launcher) = patch.launcher {
        config.launcher = launcher;
    }
    if let Some(uploads) = patch.uploads {
        config.uploads = uploads;
    }
    if let Some(minutes) = patch.session_timeout_mins {
        config.session_timeout_mins = minutes;
    }
    if let Some(limit) = patch.rate_limit {
        config.rate_limit = limit;
    }
    if let Some(origins) = patch.allowed_origins {
        config.allowed_origins = dedup(origins);
    }
    if let Some(connectors) = patch.connectors {
        config.connectors = dedup(connectors);
    }
    if let Some(prompt) = patch.system_prompt {
        config.system_prompt = prompt;
    }
    if let Some(context) = patch.agent_context {
        config.agent_context = context;
    }
    if let Some(require) = patch.require_identity {
        config.require_identity = require;
    }
    if let Some(identity) = patch.identity {
        config.identity = identity.map(|i| identity_to_store(i, config.identity.as_ref()));
    }
    check_interface(store, &new_slug, &name, &config).await?;
    Ok(store
        .update_interface(&row.id, &new_slug, &name, &config, now)
        .await?)
}

/// Copies an interface under a new slug (and optionally a new title), as a draft.
pub async fn duplicate_interface(
    store: &Store,
    slug: &str,
    request: DuplicateInterface,
    now: i64,
) -> Result<InterfaceRow, ManageError> {
    let original = existing(store, slug).await?;
    let mut config = original.config;
    let mut name = original.name;
    if let Some(title) = request.title {
        // The copy's admin name follows its new title unless the original had its own.
        if name == config.title {
            name = title.clone();
        }
        config.title = title;
    }
    let new = NewInterface {
        slug: request.slug,
        name,
        published: false,
        config,
    };
    check_interface(store, &new.slug, &new.name, &new.config).await?;
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

/// The one visitor a forget request names: exactly one selector, well-formed.
pub fn visitor_selector(request: ForgetVisitor) -> Result<VisitorSelector, ManageError> {
    let ForgetVisitor {
        visitor_id,
        user_id,
    } = request;
    if let Some(id) = &visitor_id
        && !validate::id_is_well_formed("vis", id)
    {
        return Err(ManageError::Invalid {
            field: "visitor_id",
            message: format!("`{id}` is not a visitor id (vis_…)"),
        });
    }
    if let Some(id) = &user_id
        && !(1..=256).contains(&id.chars().count())
    {
        return Err(ManageError::Invalid {
            field: "user_id",
            message: "user_id is 1 to 256 characters (the `sub` of the identity token)".into(),
        });
    }
    let mut given: Vec<VisitorSelector> = [
        visitor_id.map(VisitorSelector::VisitorId),
        user_id.map(VisitorSelector::UserId),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.len() {
        1 => Ok(given.remove(0)),
        0 => Err(ManageError::Invalid {
            field: "visitor_id",
            message: "name the visitor: give visitor_id or user_id".into(),
        }),
        _ => Err(ManageError::Invalid {
            field: "visitor_id",
            message: "name the visitor one way only".into(),
        }),
    }
}

/// Deletes every session of the visitor a request names, with their messages and files.
pub async fn forget_visitor(
    store: &Store,
    request: ForgetVisitor,
) -> Result<(VisitorSelector, Removed), ManageError> {
    let selector = visitor_selector(request)?;
    let removed = store.forget_visitor(&selector).await?;
    Ok((selector, removed))
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
            SuggestedPrompt {
                text: "Hello, who are you?".into(),
                icon: Some("👋".into()),
            },
            SuggestedPrompt {
                text: "Show me streaming, one word at a time".into(),
                icon: Some("⚡".into()),
            },
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
