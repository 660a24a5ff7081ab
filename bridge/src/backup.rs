//! Online backup and restore of the bridge's database, for `airlock-bridge backup|restore`.
//!
//! SQLite: `backup` writes a consistent snapshot with `VACUUM INTO` while the bridge keeps
//! serving, checks it, and only then moves it into place, so PATH is either absent or a complete,
//! checked copy. `restore` checks the file is a sound Airlock database, refuses while anything
//! holds the live database open, keeps the previous database beside it, and swaps the file in
//! atomically. PostgreSQL has its own tools: `backup` runs `pg_dump`, `restore` says how to use
//! `pg_restore`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::app::open_store;
use crate::cli::{ACTOR, print_json};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::{latest_sqlite_migration, sqlite_file};

/// The tables every Airlock SQLite database has (besides sqlx's migration table).
const AIRLOCK_TABLES: [&str; 4] = ["_sqlx_migrations", "interfaces", "sessions", "messages"];

/// What a checked database file holds.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseFacts {
    pub path: PathBuf,
    pub bytes: u64,
    pub interfaces: i64,
    pub sessions: i64,
    pub messages: i64,
}

/// `backup PATH`: a consistent copy of the configured database, taken while the bridge serves.
pub async fn backup(config: &Config, path: &Path, force: bool, json: bool) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!(
            "{} is a directory; give a file name, e.g. {}",
            path.display(),
            path.join("airlock-2026-01-31.db").display()
        );
    }
    if path.exists() && !force {
        bail!(
            "{} already exists; choose a new name (e.g. with the date in it) or add --force to \
             replace it",
            path.display()
        );
    }
    match configured_sqlite_file(config)? {
        Some(_) => backup_sqlite(config, path, force, json).await,
        None => backup_postgres(config, path, json).await,
    }
}

async fn backup_sqlite(
    config: &Config,
    path: &Path,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let target = absolute_file_path(path)?;
    let store = open_store(config).await?;
    let started = Instant::now();
    let result = async {
        // Written beside the target and moved into place only once complete and checked: an
        // interrupted backup never leaves a half-written file under the operator's name.
        let dir = target.parent().unwrap_or(Path::new("."));
        let partial = tempfile::Builder::new()
            .prefix(".airlock-backup-")
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let partial_path = partial
            .path()
            .to_str()
            .context("the backup path must be valid UTF-8")?
            .to_string();
        store
            .snapshot_sqlite(&partial_path)
            .await
            .context("the backup failed")?;
        partial.as_file().sync_all()?;
        let mut facts = inspect_sqlite(partial.path())
            .await
            .context("the backup just written does not check out")?;
        let persisted = if force {
            partial.persist(&target)
        } else {
            partial.persist_noclobber(&target)
        };
        persisted
            .map_err(|err| err.error)
            .with_context(|| format!("cannot move the backup to {}", target.display()))?;
        sync_dir(dir)?;
        facts.path = target.clone();
        let detail = serde_json::to_value(&facts)?;
        store
            .record_audit(
                ACTOR,
                "database.backup",
                &target.display().to_string(),
                Some(&detail),
                SystemClock.now_ms(),
            )
            .await?;
        anyhow::Ok(facts)
    }
    .await;
    store.close().await;
    let facts = result?;
    if json {
        return print_json(&facts);
    }
    println!(
        "Backed up the database to {} ({}; {} interface(s), {} session(s), {} message(s); \
         integrity check ok) in {:.1} s.",
        facts.path.display(),
        human_bytes(facts.bytes),
        facts.interfaces,
        facts.sessions,
        facts.messages,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// PostgreSQL: `pg_dump --format=custom`, the password handed over in `PGPASSWORD` so it never
/// shows in the process list.
async fn backup_postgres(config: &Config, path: &Path, json: bool) -> anyhow::Result<()> {
    let url = config.database_url();
    let (url_without_password, password) = split_password(&url);
    let shown = format!(
        "pg_dump --format=custom --file {} '{}'",
        path.display(),
        url_without_password
    );
    let mut command = std::process::Command::new("pg_dump");
    command
        .args(["--format=custom", "--file"])
        .arg(path)
        .arg(&url_without_password);
    if let Some(password) = &password {
        command.env("PGPASSWORD", password);
    }
    let with_password = if password.is_some() {
        "PGPASSWORD=… "
    } else {
        ""
    };
    match command.status() {
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(
            "pg_dump is not installed here, and a PostgreSQL database is backed up with it. \
             Install PostgreSQL's client tools (the same major version as the server), or run \
             on a machine that has them:\n\n  {with_password}{shown}\n"
        ),
        Err(err) => return Err(err).context("cannot run pg_dump"),
        Ok(status) if !status.success() => {
            bail!("pg_dump failed ({status}); the command was:\n\n  {with_password}{shown}\n")
        }
        Ok(_) => {}
    }
    let store = open_store(config).await?;
    let result = async {
        let (sessions, messages) = store.count_sessions_and_messages().await?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let detail = serde_json::json!({
            "path": path,
            "bytes": bytes,
            "sessions": sessions,
            "messages": messages,
            "tool": "pg_dump",
        });
        store
            .record_audit(
                ACTOR,
                "database.backup",
                &path.display().to_string(),
                Some(&detail),
                SystemClock.now_ms(),
            )
            .await?;
        anyhow::Ok(detail)
    }
    .await;
    store.close().await;
    let detail = result?;
    if json {
        return print_json(&detail);
    }
    println!(
        "Backed up the database to {} with pg_dump ({}; about {} session(s), {} message(s)). \
         Restore it with pg_restore.",
        path.display(),
        human_bytes(detail["bytes"].as_u64().unwrap_or(0)),
        detail["sessions"],
        detail["messages"]
    );
    Ok(())
}

/// `restore PATH`: replaces the configured SQLite database with a checked backup.
pub async fn restore(config: &Config, source: &Path, yes: bool, json: bool) -> anyhow::Result<()> {
    let Some(target) = configured_sqlite_file(config)? else {
        bail!(
            "restore replaces an SQLite database; PostgreSQL is restored with its own tool. \
             Stop the bridge, then:\n\n  pg_restore --clean --if-exists --no-owner --dbname '{}' {}\n",
            config.database_url_for_display(),
            source.display()
        );
    };
    let wal = with_suffix(source, "-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        bail!(
            "{} has a write-ahead log beside it ({}): it is a live database, not a backup. \
             Make a backup of it with `airlock-bridge backup` and restore that",
            source.display(),
            wal.display()
        );
    }
    let facts = inspect_sqlite(source).await?;
    if let (Ok(a), Ok(b)) = (source.canonicalize(), target.canonicalize())
        && a == b
    {
        bail!("{} is the configured database itself", source.display());
    }
    if !yes {
        bail!(
            "restore replaces the database {} with {} ({} session(s), {} message(s)); everything \
             written since that backup is set aside. Stop the bridge first, then run again with \
             --yes",
            target.display(),
            source.display(),
            facts.sessions,
            facts.messages
        );
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let previous = if target.exists() {
        take_over(&target).await?;
        Some(keep_previous(&target)?)
    } else {
        None
    };
    swap_in(source, &target)?;

    // Opening the store migrates an older backup to this version and puts it back in WAL mode.
    let store = open_store(config).await?;
    let detail = serde_json::json!({
        "source": source,
        "database": target,
        "previous": previous,
        "sessions": facts.sessions,
        "messages": facts.messages,
    });
    let audited = store
        .record_audit(
            ACTOR,
            "database.restore",
            &source.display().to_string(),
            Some(&detail),
            SystemClock.now_ms(),
        )
        .await;
    store.close().await;
    audited?;
    if json {
        return print_json(&detail);
    }
    println!(
        "Restored {} into {}: {} interface(s), {} session(s), {} message(s).",
        source.display(),
        target.display(),
        facts.interfaces,
        facts.sessions,
        facts.messages
    );
    if let Some(previous) = previous {
        println!("The previous database is kept as {}.", previous.display());
    }
    println!("Start the bridge again.");
    Ok(())
}

/// The file of the configured SQLite database; `None` for PostgreSQL.
fn configured_sqlite_file(config: &Config) -> anyhow::Result<Option<PathBuf>> {
    if config.uses_default_sqlite() {
        return Ok(Some(config.data_dir.join("airlock.db")));
    }
    let url = config.database_url();
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let file = sqlite_file(&url).with_context(|| {
        format!(
            "cannot read the database URL {}",
            config.database_url_for_display()
        )
    })?;
    match file {
        Some(file) => Ok(Some(file)),
        None => bail!("an in-memory SQLite database cannot be backed up or restored"),
    }
}

/// Opens `path` read-only and checks it is a sound Airlock SQLite database this bridge can run.
pub async fn inspect_sqlite(path: &Path) -> anyhow::Result<DatabaseFacts> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    if !metadata.is_file() {
        bail!("{shown} is not a file");
    }
    let not_sqlite = |err: sqlx::Error| {
        anyhow::anyhow!(
            "{shown} is not an SQLite database ({err}); give a file written by \
             `airlock-bridge backup`"
        )
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .foreign_keys(false);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(not_sqlite)?;
    let result = async {
        let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .map_err(not_sqlite)?;
        if problems != ["ok"] {
            let first: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
            bail!(
                "{shown} is damaged; SQLite's integrity check says: {}",
                first.join("; ")
            );
        }
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await?;
        let missing: Vec<&str> = AIRLOCK_TABLES
            .into_iter()
            .filter(|table| !tables.iter().any(|t| t == table))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{shown} is an SQLite database but not an Airlock one (it has no {} table); give \
                 a file written by `airlock-bridge backup`",
                missing.join(", ")
            );
        }
        let migration: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&mut conn)
        .await?;
        let known = latest_sqlite_migration();
        if migration > known {
            bail!(
                "{shown} was written by a newer airlock-bridge (migration {migration}; this one \
                 knows up to {known}); restore it with that version"
            );
        }
        let interfaces: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM interfaces")
            .fetch_one(&mut conn)
            .await?;
        let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&mut conn)
            .await?;
        let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&mut conn)
            .await?;
        Ok(DatabaseFacts {
            path: path.to_path_buf(),
            bytes: metadata.len(),
            interfaces,
            sessions,
            messages,
        })
    }
    .await;
    let _ = conn.close().await;
    result
}

/// Makes sure nothing else has the live database open, and folds its write-ahead log into the
/// file. Leaving WAL mode needs exclusive access that SQLite does not wait for, so a running
/// bridge (or any other connection) makes this fail at once.
async fn take_over(target: &Path) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(target)
        .busy_timeout(Duration::ZERO);
    let switched = async {
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let mode = sqlx::query_scalar::<_, String>("PRAGMA journal_mode = DELETE")
            .fetch_one(&mut conn)
            .await;
        let _ = conn.close().await;
        mode
    }
    .await;
    match switched {
        Err(sqlx::Error::Database(err))
            if err.message().contains("locked") || err.message().contains("busy") =>
        {
            bail!(
                "{} is in use: a running bridge (or another airlock-bridge command) has it open. \
                 Stop the bridge first, then run restore again",
                target.display()
            )
        }
        // A damaged live database is what a restore is for: it is kept aside and replaced.
        _ => Ok(()),
    }
}

/// Keeps the database about to be replaced as `NAME.before-restore` (a hard link where the
/// file system allows, so the swap stays a single rename).
fn keep_previous(target: &Path) -> anyhow::Result<PathBuf> {
    let kept = with_suffix(target, ".before-restore");
    match std::fs::remove_file(&kept) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot replace {}", kept.display()));
        }
        _ => {}
    }
    if std::fs::hard_link(target, &kept).is_err() {
        std::fs::copy(target, &kept)
            .with_context(|| format!("cannot keep the previous database as {}", kept.display()))?;
    }
    Ok(kept)
}

/// Copies `source` beside `target`, makes it durable, removes the old database's write-ahead
/// log and shared memory (they must never be replayed onto the restored file), and renames the
/// copy over `target`.
fn swap_in(source: &Path, target: &Path) -> anyhow::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut copy = tempfile::Builder::new()
        .prefix(".airlock-restore-")
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut from =
        std::fs::File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
    std::io::copy(&mut from, copy.as_file_mut())
        .with_context(|| format!("cannot copy {}", source.display()))?;
    // The restored file gets the access rights of the one it replaces (the copy starts private).
    if let Ok(previous) = std::fs::metadata(target) {
        copy.as_file().set_permissions(previous.permissions())?;
    }
    copy.as_file().sync_all()?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let stale = with_suffix(target, suffix);
        match std::fs::remove_file(&stale) {
            Err(err) if err.kind() != ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("cannot remove {}", stale.display()));
            }
            _ => {}
        }
    }
    copy.persist(target)
        .map_err(|err| err.error)
        .with_context(|| format!("cannot replace {}", target.display()))?;
    sync_dir(dir)
}

/// `path` with `suffix` appended to its file name (`airlock.db` → `airlock.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `path` made absolute through its (existing) directory, so SQLite never reads it as a URI.
fn absolute_file_path(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} does not name a file", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = dir.canonicalize().with_context(|| {
        format!(
            "the directory {} does not exist; create it first",
            dir.display()
        )
    })?;
    Ok(dir.join(name))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Splits the password out of a PostgreSQL URL: `(URL without it, the password decoded)`.
fn split_password(url: &str) -> (String, Option<String>) {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let password = parsed.password().map(percent_decode);
            let _ = parsed.set_password(None);
            (parsed.to_string(), password)
        }
        _ => (url.to_string(), None),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_decoded() {
        let (url, password) = split_password("postgres://app:p%40ss@db.example:5432/airlock");
        assert_eq!(url, "postgres://app@db.example:5432/airlock");
        assert_eq!(password.as_deref(), Some("p@ss"));
        assert_eq!(
            split_password("postgres://db/airlock"),
            ("postgres://db/airlock".to_string(), None)
        );
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
    }
}
