//! The operator's sub-commands: they work on the configured database directly, so getting
//! started needs no admin key and no hand-written JSON. Tables for people, `--json` for scripts;
//! a refused command exits non-zero with a message that says what to do.

use airlock_shared::admin::CreateInterface;
use airlock_shared::time_from_millis;
use airlock_shared::visitor::{Appearance, Launcher, Uploads};
use anyhow::{Context, bail};

use crate::app::open_store;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    AdminKeyCommand, Command, Config, ConnectorKeyCommand, InterfaceCommand, SessionsCommand,
};
use crate::manage::{self, ManageError};
use crate::store::{SessionFilter, StoreError};

/// Runs one sub-command (anything but `serve`) and prints its result.
pub async fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = SystemClock.now_ms();
    let result = match command {
        Command::Serve => unreachable!("serve is handled by main"),
        Command::Interface(cmd) => interface(&store, cmd, now).await,
        Command::ConnectorKey(cmd) => connector_key(&store, config, cmd, now).await,
        Command::AdminKey(AdminKeyCommand::Create { name }) => {
            let key = manage::create_admin_key(&store, &name, now)
                .await
                .map_err(explain)?;
            println!("Admin key (shown only now; store it safely):\n\n  {key}\n");
            Ok(())
        }
        Command::Sessions(cmd) => sessions(&store, cmd).await,
    };
    store.close().await;
    result
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
        ManageError::Store(err) => anyhow::Error::new(err),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
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

async fn interface(
    store: &crate::store::Store,
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
            prompts,
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
            publish,
            json,
        } => {
            let defaults = Uploads::default();
            let request = CreateInterface {
                slug,
                title,
                name,
                description,
                welcome_message: welcome,
                placeholder,
                suggested_prompts: prompts,
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
                publish,
            };
            let row = manage::create_interface(store, request, now)
                .await
                .map_err(explain)?;
            if json {
                return print_json(&row.to_admin());
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
                let items: Vec<_> = rows.iter().map(|r| r.to_admin()).collect();
                return print_json(&items);
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
        InterfaceCommand::Publish { slug } => set_published(store, &slug, true, now).await,
        InterfaceCommand::Unpublish { slug } => set_published(store, &slug, false, now).await,
    }
}

async fn set_published(
    store: &crate::store::Store,
    slug: &str,
    published: bool,
    now: i64,
) -> anyhow::Result<()> {
    match store.set_interface_published(slug, published, now).await {
        Ok(row) => {
            println!("Interface `{}` is now {}.", row.slug, row.status);
            Ok(())
        }
        Err(StoreError::NotFound(_)) => {
            bail!("no interface is called `{slug}`; see `airlock-bridge interface list`")
        }
        Err(err) => Err(err.into()),
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
                return print_json(&items);
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
        ConnectorKeyCommand::Revoke { id } => match store.revoke_connector(&id, now).await {
            Ok(row) => {
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
                return print_json(&items);
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
    }
}
