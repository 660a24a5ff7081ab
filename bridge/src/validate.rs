//! Input rules shared by the admin API and the CLI, so both refuse the same things with the same
//! words.

/// Slugs that would collide with the bridge's own paths or confuse visitors.
const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "assets",
    "c",
    "embed",
    "healthz",
    "readyz",
    "metrics",
    "static",
    "widget",
    "widget-js",
    "new",
    "login",
    "logout",
    "settings",
    "www",
    "airlock",
    "openapi",
];

/// Whether `slug` has the shape of a slug, `^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$` (reserved or
/// not): what a path segment must look like before it is looked up.
pub fn slug_is_well_formed(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    (2..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `id` has the shape of an id the bridge made with `prefix` (see
/// [`crate::tokens::new_id`]): `{prefix}_` and 1–64 URL-safe characters. Ids in paths are checked
/// with this before any database work, so a malformed one is an ordinary 404.
pub fn id_is_well_formed(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|random| {
            (1..=64).contains(&random.len())
                && random
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Checks an interface slug: `^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$` and not reserved.
pub fn slug(slug: &str) -> Result<(), String> {
    if !slug_is_well_formed(slug) {
        return Err(format!(
            "slug `{slug}` is invalid: use 2–64 lowercase letters, digits and dashes, \
             starting and ending with a letter or digit"
        ));
    }
    if RESERVED_SLUGS.contains(&slug) {
        return Err(format!("slug `{slug}` is reserved; choose another"));
    }
    Ok(())
}

/// Checks a persistence mode.
pub fn persistence(mode: &str) -> Result<(), String> {
    match mode {
        "session" | "local" => Ok(()),
        other => Err(format!(
            "persistence `{other}` is invalid: use `session` or `local`"
        )),
    }
}

/// Checks a client-chosen id (`client_id`): 1–128 printable ASCII characters without spaces.
pub fn client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "client_id must be 1–128 printable ASCII characters without spaces".to_string(),
        );
    }
    Ok(())
}

/// Checks a required, bounded piece of text.
pub fn text(field: &str, value: &str, max_chars: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.contains('\0') {
        return Err(format!(
            "{field} contains a NUL character, which is not allowed"
        ));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!(
            "{field} is {chars} characters long; the limit is {max_chars}"
        ));
    }
    Ok(())
}

/// Checks that text a visitor typed holds no control characters but line breaks and tabs: a
/// browser's text field never produces others, and they would reach an operator's terminal
/// (`airlock-bridge sessions show`) as escape sequences. (NUL is refused earlier, for every
/// JSON body.)
pub fn typed_text(field: &str, value: &str) -> Result<(), String> {
    match value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        Some(c) => Err(format!(
            "{field} contains the control character U+{:04X}; only line breaks and tabs are allowed",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// Checks the look of an interface. The values end up in CSS custom properties and attributes
/// of every visitor's page, so only plain, known-safe shapes are accepted.
pub fn appearance(
    appearance: &airlock_shared::visitor::Appearance,
) -> Result<(), (&'static str, String)> {
    color(&appearance.primary_color).map_err(|m| ("appearance.primary_color", m))?;
    if let Some(font) = &appearance.font {
        let ok = !font.is_empty()
            && font.len() <= 200
            && font
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ,-_'\"".contains(c));
        if !ok {
            return Err((
                "appearance.font",
                "use a font-family list of letters, digits, spaces, commas, dashes and quotes"
                    .into(),
            ));
        }
    }
    if appearance.radius > 32 {
        return Err(("appearance.radius", "use 0 to 32 (pixels)".into()));
    }
    if !["light", "dark", "auto"].contains(&appearance.theme.as_str()) {
        return Err(("appearance.theme", "use `light`, `dark` or `auto`".into()));
    }
    if let Some(icon) = &appearance.icon {
        self::icon(icon).map_err(|m| ("appearance.icon", m))?;
    }
    if let Some(cover) = &appearance.cover
        && color(cover).is_err()
        && gradient(cover).is_err()
    {
        return Err((
            "appearance.cover",
            "use a color like #1e3a8a or a linear-gradient(…) of colors and percentages".into(),
        ));
    }
    Ok(())
}

/// Checks the launcher bubble's settings.
pub fn launcher(
    launcher: &airlock_shared::visitor::Launcher,
) -> Result<(), (&'static str, String)> {
    if !["bottom-right", "bottom-left"].contains(&launcher.position.as_str()) {
        return Err((
            "launcher.position",
            "use `bottom-right` or `bottom-left`".into(),
        ));
    }
    if let Some(icon) = &launcher.icon {
        emoji(icon).map_err(|m| ("launcher.icon", m))?;
    }
    if let Some(label) = &launcher.label
        && (label.trim().is_empty() || label.chars().count() > 40)
    {
        return Err(("launcher.label", "use 1–40 characters".into()));
    }
    Ok(())
}

/// Most file types one interface may accept, and the largest file it may allow.
const MAX_UPLOAD_TYPES: usize = 20;
pub const MAX_UPLOAD_MB: u32 = 25;
pub const MAX_UPLOAD_FILES: u32 = 10;

/// Checks the upload settings: bounded counts and sizes, well-formed MIME types.
pub fn uploads(uploads: &airlock_shared::visitor::Uploads) -> Result<(), (&'static str, String)> {
    if !(1..=MAX_UPLOAD_FILES).contains(&uploads.max_files) {
        return Err(("uploads.max_files", format!("use 1 to {MAX_UPLOAD_FILES}")));
    }
    if !(1..=MAX_UPLOAD_MB).contains(&uploads.max_mb) {
        return Err((
            "uploads.max_mb",
            format!("use 1 to {MAX_UPLOAD_MB} (megabytes)"),
        ));
    }
    if uploads.allowed_types.is_empty() || uploads.allowed_types.len() > MAX_UPLOAD_TYPES {
        return Err((
            "uploads.allowed_types",
            format!("list 1 to {MAX_UPLOAD_TYPES} MIME types, e.g. image/png"),
        ));
    }
    for mime in &uploads.allowed_types {
        let well_formed = mime.split_once('/').is_some_and(|(kind, sub)| {
            !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_lowercase())
                && !sub.is_empty()
                && sub
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
        });
        if !well_formed {
            return Err((
                "uploads.allowed_types",
                format!("`{mime}` is not a MIME type like image/png"),
            ));
        }
    }
    Ok(())
}

/// Checks a language tag such as `en`, `de-CH` or `ar`.
pub fn locale(tag: &str) -> Result<(), String> {
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or("");
    let ok = (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a language tag like `en` or `de-CH`"
        ))
    }
}

/// Longest session timeout: 30 days.
pub const MAX_SESSION_TIMEOUT_MINS: u32 = 43_200;

/// Checks a session timeout in minutes: 5 minutes to 30 days.
pub fn session_timeout_mins(minutes: u32) -> Result<(), String> {
    if (5..=MAX_SESSION_TIMEOUT_MINS).contains(&minutes) {
        Ok(())
    } else {
        Err(format!(
            "use 5 to {MAX_SESSION_TIMEOUT_MINS} minutes (30 days)"
        ))
    }
}

/// Checks a rate limit: 1–1,000 messages per 1 second to 1 day.
pub fn rate_limit(limit: &airlock_shared::admin::RateLimit) -> Result<(), (&'static str, String)> {
    if !(1..=1_000).contains(&limit.messages) {
        return Err(("rate_limit.messages", "use 1 to 1000 messages".into()));
    }
    if !(1..=86_400).contains(&limit.window_secs) {
        return Err((
            "rate_limit.window_secs",
            "use 1 to 86400 seconds (a day)".into(),
        ));
    }
    Ok(())
}

/// Checks an interface's allowed origins: each one well-formed, and `*` (any origin) only as the
/// sole entry, where it cannot hide a list that looks restrictive.
pub fn origins(origins: &[String]) -> Result<(), String> {
    for value in origins {
        origin(value)?;
    }
    if origins.len() > 1 && origins.iter().any(|o| o == "*") {
        return Err(
            "`*` allows every origin, so it must be the only entry; remove it or the others"
                .to_string(),
        );
    }
    Ok(())
}

/// Checks an allowed origin: `*`, or `http(s)://host[:port]` with nothing after it.
pub fn origin(value: &str) -> Result<(), String> {
    if value == "*" {
        return Ok(());
    }
    let refused = || {
        format!(
            "`{value}` is not an origin like https://example.com or http://localhost:8080 (or `*`)"
        )
    };
    let (scheme, rest) = value.split_once("://").ok_or_else(refused)?;
    if !matches!(scheme, "http" | "https") {
        return Err(refused());
    }
    // IPv6 literals are not accepted; use a host name.
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Longest issuer or audience an interface may require.
const MAX_CLAIM_VALUE_CHARS: usize = 512;

/// Checks an interface's identity settings before they are stored: a known algorithm, a long
/// enough HS256 secret, a usable RS256 public key, sane issuer and audience. Errors name the field.
pub fn identity(
    config: &airlock_shared::admin::IdentityVerification,
) -> Result<(), (&'static str, String)> {
    use crate::identity::{MIN_SECRET_BYTES, rsa_public_key};
    match config.algorithm.as_str() {
        "HS256" => {
            let bytes = config.secret.as_deref().map_or(0, str::len);
            if bytes < MIN_SECRET_BYTES {
                return Err((
                    "identity.secret",
                    format!(
                        "HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes (this one has \
                         {bytes}); generate one with `openssl rand -base64 48`"
                    ),
                ));
            }
        }
        "RS256" => {
            let pem = config.public_key.as_deref().unwrap_or("");
            if pem.trim().is_empty() {
                return Err((
                    "identity.public_key",
                    "RS256 needs the site's RSA public key (PEM)".into(),
                ));
            }
            rsa_public_key(pem).map_err(|m| ("identity.public_key", m))?;
        }
        other => {
            return Err((
                "identity.algorithm",
                format!("`{other}` is not supported: use HS256 or RS256"),
            ));
        }
    }
    for (field, value) in [
        ("identity.issuer", &config.issuer),
        ("identity.audience", &config.audience),
    ] {
        if let Some(value) = value
            && (value.trim().is_empty() || value.chars().count() > MAX_CLAIM_VALUE_CHARS)
        {
            return Err((
                field,
                format!("use 1–{MAX_CLAIM_VALUE_CHARS} characters, or leave it out"),
            ));
        }
    }
    Ok(())
}

/// Longest interface system prompt, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 20_000;
/// Largest `agent_context`, as compact JSON.
pub const MAX_AGENT_CONTEXT_BYTES: usize = 16 * 1024;

/// Checks an interface's system prompt template.
pub fn system_prompt(prompt: &str) -> Result<(), String> {
    text("system_prompt", prompt, MAX_SYSTEM_PROMPT_CHARS)
}

/// Checks an interface's `agent_context` object: at most 16 KB as JSON.
pub fn agent_context(context: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    let size = serde_json::to_string(context)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_AGENT_CONTEXT_BYTES {
        return Err(format!(
            "agent_context is {size} bytes as JSON; the limit is {MAX_AGENT_CONTEXT_BYTES}"
        ));
    }
    Ok(())
}

/// Checks a suggested prompt's icon: an emoji or short symbol.
pub fn prompt_icon(value: &str) -> Result<(), String> {
    emoji(value)
}

/// `#rgb`, `#rrggbb` or `#rrggbbaa`.
fn color(value: &str) -> Result<(), String> {
    let hex = value.strip_prefix('#').unwrap_or("");
    if matches!(hex.len(), 3 | 6 | 8) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("`{value}` is not a color like #3b5bdb"))
    }
}

/// `linear-gradient(…)` made only of angles, colors and percentages.
fn gradient(value: &str) -> Result<(), String> {
    let inner = value
        .strip_prefix("linear-gradient(")
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| "not a linear-gradient(…)".to_string())?;
    let ok = value.len() <= 200
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " #%,.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("unexpected characters in the gradient".into())
    }
}

/// A short emoji or symbol (no markup).
fn emoji(value: &str) -> Result<(), String> {
    let ok = !value.trim().is_empty()
        && value.chars().count() <= 8
        && !value
            .chars()
            .any(|c| c.is_ascii_punctuation() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err("use an emoji or a short symbol".into())
    }
}

/// An emoji, an `https:` image URL or a small `data:image/` URL.
fn icon(value: &str) -> Result<(), String> {
    if value.starts_with("https://") || value.starts_with("data:image/") {
        let ok = value.len() <= 65_536
            && !value
                .chars()
                .any(|c| c.is_whitespace() || "\"'<>()\\".contains(c));
        return if ok {
            Ok(())
        } else {
            Err("the icon URL holds characters that are not allowed".into())
        };
    }
    emoji(value).map_err(|_| "use an emoji, an https:// image URL or a data:image/ URL".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_follow_the_pattern_and_skip_reserved_words() {
        for good in ["demo", "help-desk", "a1", "0-0", &"x".repeat(64)] {
            assert!(super::slug(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "-ab",
            "ab-",
            "Ab",
            "a_b",
            "a b",
            "ümlaut",
            &"x".repeat(65),
        ] {
            assert!(super::slug(bad).is_err(), "{bad}");
        }
        assert!(super::slug("admin").unwrap_err().contains("reserved"));
    }

    #[test]
    fn appearance_values_are_safe_shapes_only() {
        use airlock_shared::visitor::{Appearance, Launcher};
        let good = Appearance {
            primary_color: "#0a7".into(),
            font: Some("\"Inter\", system-ui, sans-serif".into()),
            radius: 16,
            theme: "dark".into(),
            icon: Some("🤖".into()),
            cover: Some("linear-gradient(135deg, #1e3a8a 0%, #3b82f6 100%)".into()),
        };
        assert!(super::appearance(&good).is_ok());
        for bad in [
            Appearance {
                primary_color: "red; background: url(x)".into(),
                ..good.clone()
            },
            Appearance {
                font: Some("x; } body { display: none".into()),
                ..good.clone()
            },
            Appearance {
                radius: 99,
                ..good.clone()
            },
            Appearance {
                theme: "neon".into(),
                ..good.clone()
            },
            Appearance {
                icon: Some("<img src=x>".into()),
                ..good.clone()
            },
            Appearance {
                icon: Some("https://x.example/a.png\" onerror=\"x".into()),
                ..good.clone()
            },
            Appearance {
                cover: Some("url(https://evil.example/x.png)".into()),
                ..good.clone()
            },
            Appearance {
                cover: Some("linear-gradient(red, url(x))".into()),
                ..good.clone()
            },
        ] {
            assert!(super::appearance(&bad).is_err(), "{bad:?}");
        }
        assert!(super::launcher(&Launcher::default()).is_ok());
        let top = Launcher {
            position: "top-left".into(),
            ..Launcher::default()
        };
        assert!(super::launcher(&top).is_err());
        assert!(super::locale("de-CH").is_ok());
        assert!(super::locale("ar").is_ok());
        assert!(super::locale("english please").is_err());
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "*",
            "https://example.com",
            "http://localhost:8080",
            "https://shop.example.co.uk",
            "http://127.0.0.1:3000",
        ] {
            assert!(super::origin(good).is_ok(), "{good}");
        }
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/path",
            "ftp://example.com",
            "https://",
            "https://exa mple.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://*.example.com",
            "javascript:alert(1)",
        ] {
            assert!(super::origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_star_is_allowed_only_alone() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::origins(&list(&["*"])).is_ok());
        assert!(super::origins(&list(&[])).is_ok());
        assert!(super::origins(&list(&["https://a.example", "http://b.example:8080"])).is_ok());
        let mixed = super::origins(&list(&["https://a.example", "*"])).unwrap_err();
        assert!(mixed.contains("only entry"), "{mixed}");
        assert!(super::origins(&list(&["https://a.example/"])).is_err());
    }

    #[test]
    fn path_ids_and_slugs_are_checked_by_shape() {
        assert!(super::id_is_well_formed(
            "ses",
            &crate::tokens::new_id("ses")
        ));
        assert!(super::id_is_well_formed("ses", "ses_nope"));
        for bad in [
            "", "ses", "ses_", "msg_abc", "ses_a b", "ses_a\0", "ses_é", "sesx_abc",
        ] {
            assert!(!super::id_is_well_formed("ses", bad), "{bad:?}");
        }
        assert!(!super::id_is_well_formed(
            "ses",
            &format!("ses_{}", "a".repeat(65))
        ));
        assert!(
            super::slug_is_well_formed("admin"),
            "reserved, yet well-formed"
        );
        assert!(!super::slug_is_well_formed("de\0mo"));
    }

    #[test]
    fn typed_text_keeps_line_breaks_and_tabs_only() {
        assert!(super::typed_text("text", "two\nlines\r\n\tindented").is_ok());
        let escape = super::typed_text("text", "red \u{1b}[31m").unwrap_err();
        assert!(escape.contains("U+001B"), "{escape}");
        assert!(super::typed_text("text", "nul \0").is_err());
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(super::text("text", "ééé", 3).is_ok());
        assert!(super::text("text", "éééé", 3).is_err());
        assert!(super::text("text", "  ", 3).is_err());
    }

    #[test]
    fn identity_settings_need_a_usable_key() {
        use airlock_shared::admin::IdentityVerification;
        let good = IdentityVerification {
            algorithm: "HS256".into(),
            secret: Some("x".repeat(32)),
            issuer: Some("https://shop.example".into()),
            ..Default::default()
        };
        assert!(super::identity(&good).is_ok());
        let field = |config: IdentityVerification| super::identity(&config).unwrap_err().0;
        let short = IdentityVerification {
            secret: Some("x".repeat(31)),
            ..good.clone()
        };
        assert_eq!(field(short), "identity.secret");
        let empty_issuer = IdentityVerification {
            issuer: Some(" ".into()),
            ..good.clone()
        };
        assert_eq!(field(empty_issuer), "identity.issuer");
        for pem in [
            "",
            "not a key",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            let rs256 = IdentityVerification {
                algorithm: "RS256".into(),
                public_key: Some(pem.into()),
                ..Default::default()
            };
            assert_eq!(field(rs256), "identity.public_key", "{pem}");
        }
        let none = IdentityVerification {
            algorithm: "none".into(),
            ..Default::default()
        };
        assert_eq!(field(none), "identity.algorithm");
    }
}
