//! The operator's sub-commands: they work on the configured database directly, so getting
//! started needs no admin key and no hand-written JSON. Tables for people, `--json` for scripts;
//! a refused command exits non-zero with a message that says what to do.

use std::io::{BufRead, IsTerminal, Write};

use airlock_shared::admin::{
    CreateInterface, DataRemoved, DuplicateInterface, ForgetVisitor, IdentityVerification,
    RateLimit, UpdateInterface,
};
use airlock_shared::time_from_millis;
use airlock_shared::visitor::{Appearance, Launcher, SuggestedPrompt, Uploads};
use anyhow::{Context, bail};
use serde_json::json;

use crate::app::open_store;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    AdminKeyCommand, AgentArgs, Command, Config, ConnectorKeyCommand, InterfaceCommand,
    SessionsCommand,
};
use crate::export::ExportWriter;
use crate::manage::{self, ManageError};
use crate::store::{InterfaceRow, SessionFilter, Store, StoreError};

/// The actor CLI actions are recorded under in the audit log.
pub(crate) const ACTOR: &str = "cli";

/// Runs one sub-command (anything but `serve`) and prints its result.
pub async fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    // These two handle the database file themselves: restore must not hold it open.
    let command = match command {
        Command::Backup { path, force, json } => {
            return crate::backup::backup(config, &path, force, json).await;
        }
        Command::Restore { path, yes, json } => {
            return crate::backup::restore(config, &path, yes, json).await;
        }
        other => other,
    };
    let store = open_store(config).await?;
    let now = SystemClock.now_ms();
    let result = match command {
        Command::Serve => unreachable!("serve is handled by main"),
        Command::Backup { .. } | Command::Restore { .. } => unreachable!("handled above"),
        Command::Interface(cmd) => {
            let base = config.public_url(config.listen);
            interface(&store, &base, cmd, now).await
        }
        Command::ConnectorKey(cmd) => connector_key(&store, config, cmd, now).await,
        Command::AdminKey(cmd) => admin_key(&store, config, cmd, now).await,
        Command::Sessions(cmd) => sessions(&store, cmd).await,
        Command::ImportPhpBridge { path, json } => {
            import_php_bridge(&store, config, &path, json, now).await
        }
        Command::Purge {
            older_than_days,
            dry_run,
            yes,
            json,
        } => {
            let days = older_than_days.unwrap_or(config.retention_days);
            purge(&store, days, dry_run, yes, json, now).await
        }
        Command::Forget {
            visitor_id,
            user_id,
            yes,
            json,
        } => {
            let request = ForgetVisitor {
                visitor_id,
                user_id,
            };
            forget(&store, request, yes, json, now).await
        }
    };
    store.close().await;
    result
}

/// `import-php-bridge PATH`: imports an old PHP bridge's history and says what it did.
async fn import_php_bridge(
    store: &Store,
    config: &Config,
    path: &std::path::Path,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    let report = crate::import_php::import(store, path, &config.compat_interface, now).await?;
    let detail = serde_json::to_value(&report)?;
    store
        .record_audit(
            ACTOR,
            "php_bridge.import",
            &path.display().to_string(),
            Some(&detail),
            now,
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Imported {} of {} sessions as new, {} messages ({} queued for the agent) and {} \
         responses into the interface `{}`.",
        report.sessions_created,
        report.sessions_read,
        report.messages_imported,
        report.messages_queued,
        report.responses_imported,
        config.compat_interface
    );
    if report.already_imported > 0 {
        println!(
            "Skipped {} messages and responses imported by an earlier run.",
            report.already_imported
        );
    }
    Ok(())
}

/// Turns a refused operation into a message an operator can act on.
fn explain(err: ManageError) -> anyhow::Error {
    match err {
        ManageError::Invalid { field, message } if message.starts_with(field) => {
            anyhow::anyhow!(message)
        }
        ManageError::Invalid { field, message } => anyhow::anyhow!("{field}: {message}"),
        ManageError::Store(StoreError::SlugTaken(slug)) => anyhow::anyhow!(
            "the slug `{slug}` is already taken; pick another, or see `airlock-bridge interface list`"
        ),
        ManageError::Store(StoreError::NotFound("interface")) => {
            anyhow::anyhow!("no such interface; see `airlock-bridge interface list`")
        }
        ManageError::Store(err) => anyhow::Error::new(err),
    }
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as left-aligned columns.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn when(ms: i64) -> String {
    time_from_millis(ms).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// "No interface is called `x`" with where to look, for a slug the operator typed.
fn no_interface(slug: &str) -> anyhow::Error {
    anyhow::anyhow!("no interface is called `{slug}`; see `airlock-bridge interface list`")
}

/// Like [`explain`], naming the slug the operator typed when it does not exist.
fn explain_for(slug: &str) -> impl FnOnce(ManageError) -> anyhow::Error + '_ {
    move |err| match err {
        ManageError::Store(StoreError::NotFound("interface")) => no_interface(slug),
        other => explain(other),
    }
}

/// Records a CLI action in the audit log (actor `cli`).
async fn audit(
    store: &Store,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
    now: i64,
) -> anyhow::Result<()> {
    store
        .record_audit(ACTOR, action, target, detail.as_ref(), now)
        .await?;
    Ok(())
}

/// The agent options of `interface create|update` as API fields, each `None` when not given.
struct AgentFields {
    session_timeout_mins: Option<u32>,
    rate_limit: Option<RateLimit>,
    origins: Option<Vec<String>>,
    connectors: Option<Vec<String>>,
    system_prompt: Option<String>,
    agent_context: Option<serde_json::Map<String, serde_json::Value>>,
    require_identity: Option<bool>,
    /// New identity settings (the stored secret is kept unless a new one is given).
    identity: Option<IdentityVerification>,
    no_identity: bool,
}

/// The identity settings the `--identity-*` options describe, on top of the `current` ones;
/// `None` when no such option was given.
fn identity_fields(
    args: &AgentArgs,
    current: Option<&IdentityVerification>,
) -> anyhow::Result<Option<IdentityVerification>> {
    if args.identity_algorithm.is_none()
        && args.identity_secret_file.is_none()
        && args.identity_public_key_file.is_none()
        && args.identity_issuer.is_none()
        && args.identity_audience.is_none()
    {
        return Ok(None);
    }
    // The stored secret is write-only: leaving it out keeps it.
    let mut identity = current
        .cloned()
        .map(|i| IdentityVerification { secret: None, ..i })
        .unwrap_or_default();
    if let Some(algorithm) = &args.identity_algorithm {
        identity.algorithm = algorithm.to_ascii_uppercase();
    }
    if identity.algorithm.is_empty() {
        bail!("give --identity-algorithm HS256 or RS256 to set up signed visitor identity");
    }
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    if let Some(path) = &args.identity_secret_file {
        identity.secret = Some(read(path)?.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Some(path) = &args.identity_public_key_file {
        identity.public_key = Some(read(path)?);
    }
    let optional = |value: &str| (!value.is_empty()).then(|| value.to_string());
    if let Some(issuer) = &args.identity_issuer {
        identity.issuer = optional(issuer);
    }
    if let Some(audience) = &args.identity_audience {
        identity.audience = optional(audience);
    }
    Ok(Some(identity))
}

fn agent_fields(
    args: AgentArgs,
    current: RateLimit,
    current_identity: Option<&IdentityVerification>,
) -> anyhow::Result<AgentFields> {
    let identity = identity_fields(&args, current_identity)?;
    let system_prompt =
        match (args.system_prompt, args.system_prompt_file) {
            (Some(prompt), _) => Some(prompt),
            (None, Some(path)) => Some(std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read the system prompt from {}", path.display())
            })?),
            (None, None) => None,
        };
    let agent_context = match args.agent_context {
        Some(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => bail!("--agent-context must be a JSON object, e.g. '{{\"plan\": \"pro\"}}'"),
        },
        None => None,
    };
    let rate_limit = match (args.rate_limit_messages, args.rate_limit_window_secs) {
        (None, None) => None,
        (messages, window) => Some(RateLimit {
            messages: messages.unwrap_or(current.messages),
            window_secs: window.unwrap_or(current.window_secs),
        }),
    };
    Ok(AgentFields {
        session_timeout_mins: args.session_timeout_mins,
        rate_limit,
        origins: (!args.origins.is_empty()).then_some(args.origins),
        connectors: (!args.connectors.is_empty()).then_some(args.connectors),
        system_prompt,
        agent_context,
        require_identity: args.require_identity,
        identity,
        no_identity: args.no_identity,
    })
}

fn prompts(texts: Vec<String>) -> Vec<SuggestedPrompt> {
    texts
        .into_iter()
        .map(|text| SuggestedPrompt { text, icon: None })
        .collect()
}

/// Prints an interface's settings as `key  value` lines, then its embed snippets.
fn print_interface(row: &InterfaceRow, base: &str) -> anyhow::Result<()> {
    let admin = row.to_admin(base);
    let value = serde_json::to_value(&admin)?;
    let serde_json::Value::Object(fields) = value else {
        unreachable!("an interface serialises to an object")
    };
    let rows: Vec<Vec<String>> = fields
        .into_iter()
        .filter(|(key, _)| key != "embed")
        .map(|(key, value)| {
            let shown = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            vec![key, shown]
        })
        .collect();
    print_table(&["FIELD", "VALUE"], &rows);
    println!(
        "\nEmbed:\n  link:   {}\n  script: {}\n  iframe: {}",
        admin.embed.link, admin.embed.script, admin.embed.iframe
    );
    Ok(())
}

/// Asks the operator to type `slug` back; refuses without a terminal.
fn confirm_delete(slug: &str, sessions: i64) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to delete `{slug}` without confirmation: stdin is not a terminal; \
             add --yes to delete it and its sessions"
        );
    }
    eprint!(
        "This deletes the interface `{slug}` and its {sessions} session(s) with all their \
         messages.\nType the slug to confirm: "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != slug {
        bail!("not deleted: the answer did not match `{slug}`");
    }
    Ok(())
}

/// Asks the operator to type `yes`; refuses without a terminal.
fn confirm(what: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to delete without confirmation: stdin is not a terminal; add --yes");
    }
    eprint!("{what}\nType yes to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("nothing deleted: the answer was not `yes`");
    }
    Ok(())
}

/// `purge`: deletes the sessions inactive for more than `days` days (see
/// [`Store::purge_inactive`]), or with `dry_run` only counts them.
async fn purge(
    store: &Store,
    days: u32,
    dry_run: bool,
    yes: bool,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    if days == 0 {
        bail!(
            "say how old a session must be: --older-than-days N (N ≥ 1), or set \
             AIRLOCK_RETENTION_DAYS"
        );
    }
    let cutoff = now - i64::from(days) * crate::relay::DAY_MS;
    let summary = |removed: DataRemoved| {
        format!(
            "{} session(s) inactive for more than {days} days (last activity before {} UTC), \
             with {} message(s) and {} attachment(s)",
            removed.sessions,
            when(cutoff),
            removed.messages,
            removed.attachments
        )
    };
    let report = |removed: DataRemoved, dry_run: bool| {
        json!({
            "dry_run": dry_run,
            "older_than_days": days,
            "inactive_before": time_from_millis(cutoff),
            "sessions": removed.sessions,
            "messages": removed.messages,
            "attachments": removed.attachments,
        })
    };
    let found = DataRemoved::from(store.count_inactive(cutoff).await?);
    if dry_run {
        if json {
            return print_json(&report(found, true));
        }
        println!(
            "Would delete {}. Nothing was deleted (--dry-run).",
            summary(found)
        );
        return Ok(());
    }
    if !yes && found.sessions > 0 {
        confirm(&format!("This deletes {}.", summary(found)))?;
    }
    let removed = DataRemoved::from(store.purge_inactive(cutoff).await?);
    let detail = report(removed, false);
    audit(
        store,
        "sessions.purge",
        &format!("{days} days"),
        Some(detail.clone()),
        now,
    )
    .await?;
    if json {
        return print_json(&detail);
    }
    println!("Deleted {}.", summary(removed));
    Ok(())
}

/// `forget`: deletes every session of one visitor, with their messages and files.
async fn forget(
    store: &Store,
    request: ForgetVisitor,
    yes: bool,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    let visitor = manage::visitor_selector(request).map_err(explain)?;
    let who = visitor.describe();
    if !yes {
        confirm(&format!(
            "This deletes every session of the visitor {who}, with their messages and files."
        ))?;
    }
    let removed = DataRemoved::from(store.forget_visitor(&visitor).await?);
    audit(
        store,
        "visitor.forget",
        &visitor.describe(),
        Some(json!(removed)),
        now,
    )
    .await?;
    if json {
        return print_json(&removed);
    }
    println!(
        "Deleted {} session(s) of the visitor {who}, with {} message(s) and {} attachment(s).",
        removed.sessions, removed.messages, removed.attachments
    );
    Ok(())
}

async fn interface(
    store: &Store,
    base: &str,
    command: InterfaceCommand,
    now: i64,
) -> anyhow::Result<()> {
    match command {
        InterfaceCommand::Create {
            slug,
            title,
            name,
            description,
            welcome,
            placeholder,
            prompts: prompt_texts,
            persistence,
            locale,
            primary_color,
            theme,
            font,
            radius,
            icon,
            cover,
            position,
            launcher_label,
            launcher_icon,
            open_on_load,
            uploads,
            upload_max_files,
            upload_max_mb,
            upload_types,
            agent,
            publish,
            json,
        } => {
            let defaults = Uploads::default();
            if agent.no_identity {
                bail!("--no-identity is for `interface update`");
            }
            let agent = agent_fields(agent, RateLimit::default(), None)?;
            let request = CreateInterface {
                slug,
                title,
                name,
                description,
                welcome_message: welcome,
                placeholder,
                suggested_prompts: prompts(prompt_texts),
                persistence: Some(persistence),
                locale,
                appearance: Appearance {
                    primary_color,
                    font,
                    radius,
                    theme,
                    icon,
                    cover,
                },
                launcher: Launcher {
                    position,
                    icon: launcher_icon,
                    label: launcher_label,
                    open: open_on_load,
                },
                uploads: Uploads {
                    enabled: uploads,
                    max_files: upload_max_files,
                    max_mb: upload_max_mb,
                    allowed_types: if upload_types.is_empty() {
                        defaults.allowed_types
                    } else {
                        upload_types
                    },
                },
                session_timeout_mins: agent.session_timeout_mins,
                rate_limit: agent.rate_limit,
                allowed_origins: agent.origins.unwrap_or_default(),
                connectors: agent.connectors.unwrap_or_default(),
                system_prompt: agent.system_prompt,
                agent_context: agent.agent_context,
                require_identity: agent.require_identity.unwrap_or(false),
                identity: agent.identity,
                publish,
            };
            let row = manage::create_interface(store, request, now)
                .await
                .map_err(explain)?;
            audit(store, "interface.create", &row.slug, None, now).await?;
            if json {
                return print_json(&row.to_admin(base));
            }
            println!("Created interface `{}` ({}).", row.slug, row.status);
            if !row.is_published() {
                println!(
                    "It is a draft: publish it with `airlock-bridge interface publish {}`.",
                    row.slug
                );
            }
            Ok(())
        }
        InterfaceCommand::List { json } => {
            let rows = store.list_interfaces().await?;
            if json {
                let items: Vec<_> = rows.iter().map(|r| r.to_admin(base)).collect();
                return print_json(&json!({ "items": items }));
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.slug.clone(),
                        r.status.clone(),
                        r.config.title.clone(),
                        when(r.created_at),
                    ]
                })
                .collect();
            print_table(&["SLUG", "STATUS", "TITLE", "CREATED (UTC)"], &table);
            Ok(())
        }
        InterfaceCommand::Show { slug, json } => {
            let row = store
                .interface_by_slug(&slug)
                .await?
                .ok_or_else(|| no_interface(&slug))?;
            if json {
                return print_json(&row.to_admin(base));
            }
            print_interface(&row, base)
        }
        InterfaceCommand::Update {
            slug,
            new_slug,
            name,
            title,
            description,
            welcome,
            placeholder,
            prompts: prompt_texts,
            no_prompts,
            persistence,
            locale,
            primary_color,
            theme,
            agent,
            file,
            json,
        } => {
            let current = store
                .interface_by_slug(&slug)
                .await?
                .ok_or_else(|| no_interface(&slug))?;
            let mut patch: UpdateInterface = match file {
                Some(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?
                    };
                    serde_json::from_str(&text).with_context(|| {
                        "the file is not a valid update: a JSON object with fields of \
                         `PATCH /api/v1/admin/interfaces/{slug}` (see docs/api.md)"
                    })?
                }
                None => UpdateInterface::default(),
            };
            let agent = agent_fields(
                agent,
                current.config.rate_limit,
                current.config.identity.as_ref(),
            )?;
            patch.slug = new_slug.or(patch.slug);
            patch.name = name.or(patch.name);
            patch.title = title.or(patch.title);
            patch.description = description.or(patch.description);
            patch.welcome_message = welcome.or(patch.welcome_message);
            patch.placeholder = placeholder.or(patch.placeholder);
            if no_prompts {
                patch.suggested_prompts = Some(Vec::new());
            } else if !prompt_texts.is_empty() {
                patch.suggested_prompts = Some(prompts(prompt_texts));
            }
            patch.persistence = persistence.or(patch.persistence);
            if let Some(locale) = locale {
                patch.locale = Some(Some(locale));
            }
            if primary_color.is_some() || theme.is_some() {
                let mut appearance = patch
                    .appearance
                    .take()
                    .unwrap_or_else(|| current.config.appearance.clone());
                if let Some(color) = primary_color {
                    appearance.primary_color = color;
                }
                if let Some(theme) = theme {
                    appearance.theme = theme;
                }
                patch.appearance = Some(appearance);
            }
            patch.session_timeout_mins = agent.session_timeout_mins.or(patch.session_timeout_mins);
            patch.rate_limit = agent.rate_limit.or(patch.rate_limit);
            patch.allowed_origins = agent.origins.or(patch.allowed_origins);
            patch.connectors = agent.connectors.or(patch.connectors);
            if let Some(prompt) = agent.system_prompt {
                patch.system_prompt = Some(Some(prompt));
            }
            if let Some(context) = agent.agent_context {
                patch.agent_context = Some(Some(context));
            }
            patch.require_identity = agent.require_identity.or(patch.require_identity);
            if agent.no_identity {
                patch.identity = Some(None);
            } else if let Some(identity) = agent.identity {
                patch.identity = Some(Some(identity));
            }
            let fields: Vec<String> = match serde_json::to_value(&patch)? {
                serde_json::Value::Object(fields) => fields.keys().cloned().collect(),
                _ => Vec::new(),
            };
            if fields.is_empty() {
                bail!(
                    "nothing to change: give an option such as --title, or see `airlock-bridge interface update --help`"
                );
            }
            let row = manage::update_interface(store, &slug, patch, now)
                .await
                .map_err(explain_for(&slug))?;
            let mut detail = json!({ "fields": fields });
            if row.slug != slug {
                detail["renamed_from"] = json!(slug);
            }
            audit(store, "interface.update", &row.slug, Some(detail), now).await?;
            if json {
                return print_json(&row.to_admin(base));
            }
            println!("Updated interface `{}` ({}).", row.slug, fields.join(", "));
            Ok(())
        }
        InterfaceCommand::Publish { slug, json } => {
            set_published(store, base, &slug, true, json, now).await
        }
        InterfaceCommand::Unpublish { slug, json } => {
            set_published(store, base, &slug, false, json, now).await
        }
        InterfaceCommand::Duplicate {
            slug,
            new_slug,
            title,
            json,
        } => {
            let request = DuplicateInterface {
                slug: new_slug,
                title,
            };
            let row = manage::duplicate_interface(store, &slug, request, now)
                .await
                .map_err(explain_for(&slug))?;
            audit(
                store,
                "interface.duplicate",
                &row.slug,
                Some(json!({ "from": slug })),
                now,
            )
            .await?;
            if json {
                return print_json(&row.to_admin(base));
            }
            println!(
                "Copied `{slug}` to `{}` (a draft: publish it with `airlock-bridge interface publish {}`).",
                row.slug, row.slug
            );
            Ok(())
        }
        InterfaceCommand::Delete { slug, yes, json } => {
            let row = store
                .interface_by_slug(&slug)
                .await?
                .ok_or_else(|| no_interface(&slug))?;
            if !yes {
                let sessions = store.count_sessions_of_interface(&row.id).await?;
                confirm_delete(&slug, sessions)?;
            }
            let sessions = match store.delete_interface(&slug).await {
                Ok(sessions) => sessions,
                Err(StoreError::NotFound(_)) => return Err(no_interface(&slug)),
                Err(err) => return Err(err.into()),
            };
            audit(
                store,
                "interface.delete",
                &slug,
                Some(json!({ "sessions": sessions })),
                now,
            )
            .await?;
            if json {
                return print_json(&json!({ "deleted": slug, "sessions": sessions }));
            }
            println!("Deleted interface `{slug}` and {sessions} session(s).");
            Ok(())
        }
    }
}

async fn set_published(
    store: &Store,
    base: &str,
    slug: &str,
    published: bool,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    let row = match store.set_interface_published(slug, published, now).await {
        Ok(row) => row,
        Err(StoreError::NotFound(_)) => return Err(no_interface(slug)),
        Err(err) => return Err(err.into()),
    };
    let action = if published {
        "interface.publish"
    } else {
        "interface.unpublish"
    };
    audit(store, action, slug, None, now).await?;
    if json {
        return print_json(&row.to_admin(base));
    }
    println!("Interface `{}` is now {}.", row.slug, row.status);
    if published {
        println!("Visitors can open it at {}", row.to_admin(base).embed.link);
    }
    Ok(())
}

async fn admin_key(
    store: &Store,
    config: &Config,
    command: AdminKeyCommand,
    now: i64,
) -> anyhow::Result<()> {
    match command {
        AdminKeyCommand::Create { name } => {
            let key = manage::create_admin_key(store, &name, now)
                .await
                .map_err(explain)?;
            audit(store, "admin_key.create", &name, None, now).await?;
            println!("Admin key (shown only now; store it safely):\n\n  {key}\n");
            Ok(())
        }
        AdminKeyCommand::List { json } => {
            let rows = store.list_admin_keys().await?;
            if json {
                let items: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({
                            "id": r.id,
                            "name": r.name,
                            "created_at": time_from_millis(r.created_at),
                            "revoked_at": r.revoked_at.map(time_from_millis),
                        })
                    })
                    .collect();
                return print_json(&json!({ "items": items }));
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        when(r.created_at),
                        r.revoked_at.map(when).unwrap_or_else(|| "live".into()),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "CREATED", "REVOKED"], &table);
            if config.admin_key.is_some() {
                println!("(AIRLOCK_ADMIN_KEY is also accepted.)");
            }
            Ok(())
        }
        AdminKeyCommand::Revoke { id } => {
            let keys = store.list_admin_keys().await?;
            let live = keys.iter().filter(|r| r.revoked_at.is_none()).count();
            let is_live = keys.iter().any(|r| r.id == id && r.revoked_at.is_none());
            if !is_live {
                bail!("no live admin key has the id `{id}`; see `airlock-bridge admin-key list`");
            }
            if live == 1 && config.admin_key.is_none() {
                bail!(
                    "`{id}` is the last admin key: revoking it would lock every admin out. \
                     Create another first (`airlock-bridge admin-key create`)"
                );
            }
            store.revoke_admin_key(&id, now).await?;
            audit(store, "admin_key.revoke", &id, None, now).await?;
            println!("Revoked admin key {id}; requests with it are refused from now on.");
            Ok(())
        }
    }
}

async fn connector_key(
    store: &crate::store::Store,
    config: &Config,
    command: ConnectorKeyCommand,
    now: i64,
) -> anyhow::Result<()> {
    match command {
        ConnectorKeyCommand::Create {
            name,
            interfaces,
            json,
        } => {
            let (row, key) = manage::create_connector_key(store, &name, &interfaces, now)
                .await
                .map_err(explain)?;
            audit(
                store,
                "connector.create",
                &row.id,
                Some(json!({ "name": row.name, "interfaces": row.interfaces })),
                now,
            )
            .await?;
            if json {
                return print_json(&row.to_admin(Some(key)));
            }
            let scope = if row.all_interfaces {
                "all interfaces".to_string()
            } else {
                row.interfaces.join(", ")
            };
            let bridge_url = config.public_url(config.listen);
            println!(
                "Created connector key `{}` ({}) for {scope}.",
                row.name, row.id
            );
            println!("The key is shown only now; store it safely:\n\n  {key}\n");
            println!("Run a connector with it on the agent's host:\n");
            println!(
                "  AIRLOCK_BRIDGE_URL={bridge_url} AIRLOCK_CONNECTOR_KEY={key} airlock-connector\n"
            );
            Ok(())
        }
        ConnectorKeyCommand::List { json } => {
            let rows = store.list_connectors().await?;
            if json {
                let items: Vec<_> = rows.iter().map(|r| r.to_admin(None)).collect();
                return print_json(&json!({ "items": items }));
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        if r.all_interfaces {
                            "*".into()
                        } else {
                            r.interfaces.join(",")
                        },
                        r.last_seen_at.map(when).unwrap_or_else(|| "never".into()),
                        if r.revoked_at.is_some() {
                            "revoked".into()
                        } else {
                            "active".into()
                        },
                    ]
                })
                .collect();
            print_table(
                &["ID", "NAME", "INTERFACES", "LAST SEEN (UTC)", "STATUS"],
                &table,
            );
            Ok(())
        }
        ConnectorKeyCommand::Revoke { id, json } => match store.revoke_connector(&id, now).await {
            Ok(row) => {
                audit(store, "connector.revoke", &row.id, None, now).await?;
                if json {
                    return print_json(&row.to_admin(None));
                }
                println!("Revoked connector key `{}` ({}).", row.name, row.id);
                Ok(())
            }
            Err(StoreError::NotFound(_)) => {
                bail!("no connector key has the id `{id}`; see `airlock-bridge connector-key list`")
            }
            Err(err) => Err(err.into()),
        },
    }
}

/// Writes every message of every matching session, newest activity first, a page at a time.
async fn export(
    store: &Store,
    format: crate::export::ExportFormat,
    output: Option<std::path::PathBuf>,
    interface: Option<String>,
) -> anyhow::Result<()> {
    if let Some(slug) = &interface
        && store.interface_by_slug(slug).await?.is_none()
    {
        return Err(no_interface(slug));
    }
    let out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut writer = ExportWriter::new(format, out);
    let mut filter = SessionFilter {
        interface_slug: interface,
        limit: crate::export::EXPORT_PAGE,
        ..SessionFilter::default()
    };
    let (mut sessions, mut messages) = (0u64, 0u64);
    loop {
        let page = crate::export::write_page(store, &mut filter, &mut writer).await?;
        sessions += page.sessions;
        messages += page.messages;
        if !page.more {
            break;
        }
    }
    writer.finish()?;
    if let Some(path) = output {
        eprintln!(
            "Exported {messages} message(s) of {sessions} session(s) to {}.",
            path.display()
        );
    }
    Ok(())
}

async fn sessions(store: &crate::store::Store, command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List {
            interface,
            limit,
            json,
        } => {
            let rows = store
                .list_sessions(&SessionFilter {
                    interface_slug: interface,
                    status: None,
                    before: None,
                    limit: limit.clamp(1, 1_000),
                    ..SessionFilter::default()
                })
                .await?;
            if json {
                let items: Vec<_> = rows.iter().map(|r| r.to_summary()).collect();
                return print_json(&json!({ "items": items }));
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.interface_slug.clone(),
                        r.status.clone(),
                        r.message_count.to_string(),
                        when(r.last_activity_at),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "INTERFACE",
                    "STATUS",
                    "MESSAGES",
                    "LAST ACTIVITY (UTC)",
                ],
                &table,
            );
            Ok(())
        }
        SessionsCommand::Show { id, json } => {
            let session = store.session(&id).await?.with_context(|| {
                format!("no session has the id `{id}`; see `airlock-bridge sessions list`")
            })?;
            let messages = store.transcript(&id).await?;
            if json {
                return print_json(&airlock_shared::admin::Transcript {
                    session: session.to_summary(),
                    messages,
                });
            }
            println!(
                "Session {} on `{}` ({}), visitor {}",
                session.id, session.interface_slug, session.status, session.visitor_id
            );
            for m in messages {
                println!(
                    "[{}] {:<9} {}{}",
                    m.created_at.format("%Y-%m-%d %H:%M:%S"),
                    m.role.as_str(),
                    m.text,
                    match m.status {
                        airlock_shared::MessageStatus::Failed => " (failed)",
                        airlock_shared::MessageStatus::Streaming => " (streaming…)",
                        _ => "",
                    }
                );
            }
            Ok(())
        }
        SessionsCommand::Export {
            format,
            output,
            interface,
        } => export(store, format, output, interface).await,
    }
}
