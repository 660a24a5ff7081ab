//! One-line texts for operators: an error with its causes, the start of a response body.

/// Longest body excerpt put into an error message or a log line.
pub(crate) const SNIPPET_CHARS: usize = 200;

/// `error: cause: root cause`, as one line. reqwest's own text ("error sending request") leaves
/// out the part an operator needs ("Connection refused"); some layers repeat their inner error's
/// text, so each thing is said once.
pub(crate) fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The start of a body on one line (whitespace collapsed), cut to [`SNIPPET_CHARS`]; bodies from
/// proxies can be whole HTML pages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b"  a\n\n b  "), "a b");
        let long = "x".repeat(500);
        assert_eq!(snippet(long.as_bytes()).chars().count(), SNIPPET_CHARS + 1);
    }

    #[test]
    fn a_cause_chain_says_each_cause_once() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(cause_chain(&outer), "Connection refused");
    }
}
