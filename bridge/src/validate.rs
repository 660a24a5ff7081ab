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

/// Checks an interface slug: `^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$` and not reserved.
pub fn slug(slug: &str) -> Result<(), String> {
    let bytes = slug.as_bytes();
    let well_formed = (2..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if !well_formed {
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
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!(
            "{field} is {chars} characters long; the limit is {max_chars}"
        ));
    }
    Ok(())
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
    fn text_limits_count_characters_not_bytes() {
        assert!(super::text("text", "ééé", 3).is_ok());
        assert!(super::text("text", "éééé", 3).is_err());
        assert!(super::text("text", "  ", 3).is_err());
    }
}
