//! Drop-in for the PHP web chat bridge: what its API (`http::compat`) and its importer
//! (`import_php`) share — the compat interface, the formats of time the old clients send and
//! read, the `session_id` rule, and `uid`s.

use airlock_shared::admin::CreateInterface;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::manage::{self, ManageError};
use crate::store::{InterfaceRow, Store, StoreError};

/// The compat API's settings, from [`crate::Config`].
#[derive(Debug, Clone)]
pub struct CompatSettings {
    /// Slug of the interface compat sessions belong to.
    pub interface_slug: String,
    /// How long an `inbox` read holds what it returns.
    pub lease_ms: i64,
}

impl CompatSettings {
    pub fn from_config(config: &crate::Config) -> Self {
        CompatSettings {
            interface_slug: config.compat_interface.clone(),
            lease_ms: i64::try_from(config.compat_lease_secs)
                .unwrap_or(300)
                .saturating_mul(1_000),
        }
    }
}

/// The compat interface, created as a draft on first use (a concurrent creation is fine).
pub async fn ensure_interface(
    store: &Store,
    slug: &str,
    now: i64,
) -> Result<InterfaceRow, ManageError> {
    if let Some(row) = store.interface_by_slug(slug).await? {
        return Ok(row);
    }
    let request = CreateInterface {
        slug: slug.to_string(),
        title: "Web chat".into(),
        name: Some("Web chat (PHP bridge API)".into()),
        description: "Sessions opened through the PHP web chat bridge's API.".into(),
        publish: false,
        ..Default::default()
    };
    match manage::create_interface(store, request, now).await {
        Ok(row) => Ok(row),
        Err(ManageError::Store(StoreError::SlugTaken(_))) => store
            .interface_by_slug(slug)
            .await?
            .ok_or(ManageError::Store(StoreError::NotFound("interface"))),
        Err(err) => Err(err),
    }
}

/// Whether `id` is a `session_id` the old bridge accepted: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn session_id_is_valid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A new `uid` in the old bridge's format: 16 lowercase hex digits.
pub fn new_uid() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

/// Reads a time the old clients send or the old database holds, as epoch milliseconds:
/// ISO-8601 / RFC 3339 with an offset or `Z` (`2025-08-04T03:08:55.484Z`,
/// `2025-08-04T03:17:33+00:00`), and `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS` with optional
/// fractions and no offset, which SQLite's `CURRENT_TIMESTAMP` writes and which is UTC.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    // RFC 3339 wants a colon in the offset; PHP's `DATE_ISO8601` writes `+0000`.
    if let Ok(time) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(time.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&naive).timestamp_millis());
        }
    }
    None
}

/// A message's time as the old API shows it: `2025-08-04T03:08:55.484Z`. Milliseconds, so a
/// client that sends it back as `since` misses nothing written in the same second.
pub fn message_time(ms: i64) -> String {
    airlock_shared::time_from_millis(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The envelope's time, as PHP's `date('c')` writes it: `2025-08-04T03:17:33+00:00`.
pub fn envelope_time(ms: i64) -> String {
    airlock_shared::time_from_millis(ms).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A session's time in the old admin listing, as its SQLite column held it: `2025-08-04 03:08:53`.
pub fn database_time(ms: i64) -> String {
    airlock_shared::time_from_millis(ms)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Undoes PHP's `htmlspecialchars`, which the old bridge applied to text before storing it:
/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, and `&#039;` / `&#39;` / `&apos;` for the apostrophe. One pass
/// from left to right, so `&amp;lt;` (a visitor who typed `&lt;`) becomes `&lt;` again. Nothing
/// else is touched: those five are all `htmlspecialchars` ever writes.
pub fn unescape_html(text: &str) -> String {
    const ENTITIES: [(&str, char); 7] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#039;", '\''),
        ("&#39;", '\''),
        ("&apos;", '\''),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match ENTITIES.iter().find(|(entity, _)| rest.starts_with(entity)) {
            Some((entity, c)) => {
                out.push(*c);
                rest = &rest[entity.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_formats_old_clients_send_are_read_as_the_same_instant() {
        let expected = parse_time("2025-08-04T03:17:33Z").unwrap();
        for text in [
            "2025-08-04T03:17:33+00:00",
            "2025-08-04T03:17:33.000Z",
            "2025-08-04T05:17:33+02:00",
            "2025-08-04T03:17:33+0000",
            "2025-08-04 03:17:33",
            "2025-08-04T03:17:33",
        ] {
            assert_eq!(parse_time(text), Some(expected), "{text}");
        }
        assert_eq!(parse_time("2025-08-04T03:08:55.484Z").unwrap() % 1000, 484);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2025-13-01 00:00:00"), None);
    }

    #[test]
    fn times_are_written_in_the_old_formats() {
        let ms = parse_time("2025-08-04T03:08:55.484Z").unwrap();
        assert_eq!(message_time(ms), "2025-08-04T03:08:55.484Z");
        assert_eq!(envelope_time(ms), "2025-08-04T03:08:55+00:00");
        assert_eq!(database_time(ms), "2025-08-04 03:08:55");
    }

    #[test]
    fn html_escaping_of_the_old_bridge_is_undone_once() {
        assert_eq!(
            unescape_html("&lt;b&gt;Tom &amp; Jerry&lt;/b&gt; &quot;hi&quot; it&#039;s"),
            "<b>Tom & Jerry</b> \"hi\" it's"
        );
        assert_eq!(unescape_html("&amp;lt; stays &lt;"), "&lt; stays <");
        assert_eq!(unescape_html("AT&T &copy; & &"), "AT&T &copy; & &");
    }

    #[test]
    fn session_ids_follow_the_old_rule() {
        assert!(session_id_is_valid("session_mdwj6vj5_okiiczierw"));
        assert!(session_id_is_valid(&"a".repeat(64)));
        assert!(!session_id_is_valid(&"a".repeat(65)));
        assert!(!session_id_is_valid(""));
        assert!(!session_id_is_valid("a b"));
        assert!(!session_id_is_valid("ünï"));
        assert_eq!(new_uid().len(), 16);
    }
}
