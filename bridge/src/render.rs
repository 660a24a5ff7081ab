//! Markdown → safe HTML for assistant replies, rendered on the bridge so every client shows the
//! same thing and none has to sanitise: the widget inserts this HTML as is, and visitor text only
//! as text.
//!
//! pulldown-cmark renders CommonMark (with tables, strikethrough and task lists); ammonia then
//! keeps only a conservative allow-list of tags and attributes, drops raw HTML that is not on it
//! (scripts, styles, event handlers, `javascript:` URLs), and makes every link open in a new tab
//! with `rel="noopener noreferrer"`.

use std::sync::LazyLock;

use pulldown_cmark::{Options, Parser, html};

/// The sanitiser, built once: its allow-lists are fixed.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        // `class` only where pulldown-cmark sets it: the language of a fenced code block.
        .add_tag_attributes("code", ["class"])
        .attribute_filter(|element, attribute, value| {
            if element == "code" && attribute == "class" {
                let safe = value.starts_with("language-")
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'));
                return safe.then_some(value.into());
            }
            Some(value.into())
        });
    builder
});

/// The sanitised HTML of a Markdown text.
pub fn markdown(text: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    let mut rendered = String::with_capacity(text.len() * 3 / 2 + 16);
    html::push_html(&mut rendered, Parser::new_ext(text, options));
    SANITIZER.clean(&rendered).to_string()
}

#[cfg(test)]
mod tests {
    use super::markdown;

    #[test]
    fn markdown_becomes_html() {
        let html = markdown("**Hello** _there_\n\n- one\n- two\n\n`code`");
        assert!(html.contains("<strong>Hello</strong>"), "{html}");
        assert!(html.contains("<em>there</em>"), "{html}");
        assert!(html.contains("<li>one</li>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
    }

    #[test]
    fn code_blocks_keep_their_language_and_escape_their_content() {
        let html = markdown("```rust\nlet x = \"<b>\";\n```");
        assert!(html.contains(r#"<code class="language-rust">"#), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        let hostile = markdown("```x\" onclick=\"alert(1)\nhi\n```");
        assert!(!hostile.contains("onclick"), "{hostile}");
    }

    #[test]
    fn links_open_in_a_new_tab_without_an_opener() {
        let html = markdown("[docs](https://example.com/docs)");
        assert!(
            html.contains(r#"href="https://example.com/docs""#),
            "{html}"
        );
        assert!(html.contains(r#"rel="noopener noreferrer""#), "{html}");
        assert!(html.contains(r#"target="_blank""#), "{html}");
    }

    #[test]
    fn hostile_html_and_urls_are_removed() {
        let corpus = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<svg onload=alert(1)>",
            "<style>body{display:none}</style>",
            "<div style=\"background:url(javascript:alert(1))\">x</div>",
            "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
            "<form action=\"https://evil.example\"><input></form>",
        ];
        for input in corpus {
            let html = markdown(input).to_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onload",
                "javascript:",
                "<iframe",
                "<style",
                "style=",
                "data:text",
                "<form",
                "<input",
                "<svg",
            ] {
                assert!(!html.contains(bad), "{input:?} rendered as {html:?}");
            }
        }
    }
}
