//! Property-based tests of everything that parses what a stranger sends: every documented HTTP
//! operation with generated bodies, path segments and query strings (no 5xx, API errors always in
//! the envelope), the validators, and the Markdown renderer (sanitised output never carries a
//! script, an event handler or a `javascript:` URL).
//!
//! `.ci/run` also runs schemathesis against `/api/openapi.json`; these tests are the in-process
//! counterpart that `cargo test` runs everywhere.

mod common;

use std::sync::LazyLock;

use airlock_bridge::render::markdown;
use airlock_bridge::testing::TestBridge;
use airlock_bridge::validate;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

use common::http::http;

/// Generated cases per operation (more with `PROPTEST_CASES`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// Field names the API knows, so generated objects reach past "unknown field" into validation.
const KEYS: &[&str] = &[
    "client_id",
    "text",
    "attachments",
    "context",
    "resume_token",
    "identity_token",
    "page_url",
    "page_title",
    "referrer",
    "locale",
    "max",
    "lease_secs",
    "history",
    "text_delta",
    "typing",
    "error",
    "retry",
    "slug",
    "title",
    "name",
    "description",
    "interfaces",
    "appearance",
    "primary_color",
    "uploads",
    "enabled",
    "max_files",
    "max_mb",
    "allowed_types",
    "rate_limit",
    "messages",
    "window_secs",
    "allowed_origins",
    "suggested_prompts",
    "welcome_message",
    "placeholder",
    "persistence",
    "session_timeout_mins",
    "launcher",
    "connectors",
    "system_prompt",
    "agent_context",
    "visitor_id",
    "require_identity",
    "identity",
];

/// Strings that have broken parsers before: empty, huge, NUL, control and non-BMP characters,
/// markup, path tricks and numbers in disguise.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just(String::new()),
        Just("\u{0}".to_string()),
        Just("a\u{0}b".to_string()),
        Just("x".repeat(5_000)),
        Just("<script>alert(1)</script>".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("%00%ff".to_string()),
        Just("🙂".repeat(300)),
        Just("\u{202e}\u{feff}\r\n\t".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("*".to_string()),
        Just("https://example.com".to_string()),
        Just("#zz".to_string()),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(u32::MAX as i64 + 1)]
            .prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        nasty_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => prop::sample::select(KEYS).prop_map(str::to_string),
                        1 => "[a-z_]{1,12}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A request body: a JSON object with known keys (most often), any JSON, or raw bytes.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>, &'static str),
    None,
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        6 => prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..8)
            .prop_map(|fields| Body::Json(Value::Object(
                fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            ))),
        2 => json_value().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| Body::Bytes(b, "application/json")),
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| Body::Bytes(b, "text/plain")),
        1 => Just(Body::Bytes(b"{\"text\": \"\xff\xfe\"}".to_vec(), "application/json")),
        1 => Just(Body::None),
    ]
}

/// A query string built from known and unknown parameters with nasty values. Never `wait`: a
/// long-poll would only slow the run down, not parse anything new.
fn query() -> impl Strategy<Value = String> {
    let names = prop::sample::select(
        &[
            "after",
            "limit",
            "cursor",
            "before",
            "since",
            "until",
            "q",
            "status",
            "interface",
            "format",
            "period",
            "preview",
            "token",
            "x",
        ][..],
    );
    prop::collection::vec((names, nasty_string()), 0..4).prop_map(|pairs| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            url.append_pair(name, &value.chars().take(200).collect::<String>());
        }
        url.finish()
    })
}

/// What to put in a path parameter: the real id most of the time, else something hostile.
fn segment() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => nasty_string().prop_map(|s| Some(s.chars().take(300).collect())),
    ]
}

/// A documented operation and the credential that opens it.
struct Operation {
    method: Method,
    path: String,
    credential: Option<String>,
    /// The PHP web chat bridge's API, which answers in that bridge's own envelope.
    compat: bool,
}

struct Target {
    bridge: TestBridge,
    session: String,
    token: String,
    connector_key: String,
}

/// The runtime the bridge and the requests share across proptest cases.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

async fn target() -> Target {
    // Limits off: the generated requests must reach the parsers, not the rate limiter.
    let mut config = airlock_bridge::Config::defaults();
    config.sessions_per_ip_per_minute = 0;
    config.reads_per_ip_per_minute = 0;
    config.connector_calls_per_minute = 0;
    config.admin_calls_per_minute = 0;
    let bridge = TestBridge::start_with_config(config).await;
    let opened: Value = http()
        .post(format!("{}/api/v1/interfaces/demo/sessions", bridge.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let connector_key = bridge.connector_key("fuzz").await;
    Target {
        session: opened["session_id"].as_str().unwrap().to_string(),
        token: opened["session_token"].as_str().unwrap().to_string(),
        connector_key,
        bridge,
    }
}

fn operations(spec: &Value, target: &Target) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let tag = operation["tags"][0].as_str().unwrap_or("");
            let credential = match tag {
                "admin" => Some(target.bridge.admin_key.clone()),
                "connector" | "compat" => Some(target.connector_key.clone()),
                _ if path.contains("/sessions/{id}") => Some(target.token.clone()),
                _ => None,
            };
            found.push(Operation {
                method,
                path: path.clone(),
                credential,
                compat: tag == "compat",
            });
        }
    }
    // Destructive admin calls last, so the visitor and connector calls meet a live session.
    found.sort_by_key(|op| (op.path.contains("/admin/"), op.method == Method::DELETE));
    found
}

fn fill(path: &str, target: &Target, fuzzed: &Option<String>) -> String {
    let real = |name: &str| match name {
        "slug" => "demo".to_string(),
        "id" if path.contains("/sessions/") => target.session.clone(),
        _ => "unknown".to_string(),
    };
    let mut out = String::new();
    for part in path.split('/').skip(1) {
        out.push('/');
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                let value = fuzzed.clone().unwrap_or_else(|| real(name));
                out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
            }
            None => out.push_str(part),
        }
    }
    out
}

#[test]
fn no_generated_request_gets_a_server_error_or_an_answer_outside_the_envelope() {
    let target = RUNTIME.block_on(target());
    let spec: Value = RUNTIME.block_on(async {
        http()
            .get(format!("{}/api/openapi.json", target.bridge.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let client = http();
    let operations = operations(&spec, &target);
    assert!(operations.len() > 40, "the spec lists the API");
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    for operation in &operations {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let strategy = (segment(), query(), body());
        let result = runner.run(&strategy, |(fuzzed, query, body)| {
            let path = fill(&operation.path, &target, &fuzzed);
            let url = if query.is_empty() {
                format!("{}{path}", target.bridge.url)
            } else {
                format!("{}{path}?{query}", target.bridge.url)
            };
            let mut request = client
                .request(operation.method.clone(), &url)
                .timeout(std::time::Duration::from_secs(10));
            if let Some(credential) = &operation.credential {
                request = request.bearer_auth(credential);
            }
            // Bodies only where the API reads them: a server answers a DELETE without reading
            // its body and closes, which a client sees as a reset, not as an answer.
            let takes_body = matches!(operation.method, Method::POST | Method::PATCH);
            request = match &body {
                _ if !takes_body => request,
                Body::Json(value) => request.json(value),
                Body::Bytes(bytes, content_type) => request
                    .header("content-type", *content_type)
                    .body(bytes.clone()),
                Body::None => request,
            };
            let (status, content_type, text) = RUNTIME.block_on(async {
                let response = request.send().await.expect("the bridge answers");
                let status = response.status();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                // Streams are live: their head is enough.
                let text = if content_type.starts_with("text/event-stream") {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                };
                (status, content_type, text)
            });
            *statuses.lock().unwrap().entry(status.as_u16()).or_default() += 1;
            if status.is_server_error() {
                return Err(TestCaseError::fail(format!(
                    "{} {url} → {status}: {text}",
                    operation.method
                )));
            }
            if status.is_client_error() && operation.compat {
                let envelope: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                prop_assert!(
                    envelope["success"] == Value::Bool(false)
                        && envelope["error"].is_string()
                        && envelope["code"] == status.as_u16()
                        && content_type.starts_with("application/json"),
                    "{} {url} → {status} outside the PHP bridge's envelope: {text}",
                    operation.method
                );
            } else if status.is_client_error() && path.starts_with("/api/") {
                let envelope: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                prop_assert!(
                    envelope["error"]["code"].is_string()
                        && envelope["error"]["message"].is_string()
                        && content_type.starts_with("application/json"),
                    "{} {url} → {status} outside the envelope: {text}",
                    operation.method
                );
            }
            Ok(())
        });
        if let Err(error) = result {
            panic!("{} {}: {error}", operation.method, operation.path);
        }
    }
    RUNTIME.block_on(target.bridge.shutdown());
    // The generated requests reached past the front door: some were accepted, some refused by
    // validation, not all stopped at authentication.
    let statuses = statuses.into_inner().unwrap();
    eprintln!("fuzzed requests by status: {statuses:?}");
    let count = |range: std::ops::RangeInclusive<u16>| -> usize {
        statuses.range(range).map(|(_, n)| n).sum()
    };
    assert!(count(200..=299) > 100, "{statuses:?}");
    assert!(count(422..=422) + count(400..=400) > 100, "{statuses:?}");
}

/// Markdown built from fragments attackers use, mixed with arbitrary text.
fn hostile_markdown() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("<script>alert(1)</script>"),
        Just("<img src=x onerror=alert(1)>"),
        Just("<svg/onload=alert(1)>"),
        Just("[click](javascript:alert(1))"),
        Just("[click](JaVaScRiPt:alert(1))"),
        Just("[click](jav&#x09;ascript:alert(1))"),
        Just("[x](&#106;avascript:alert(1))"),
        Just("![i](javascript:alert(1))"),
        Just("[d](data:text/html;base64,PHNjcmlwdD4=)"),
        Just("[v](vbscript:msgbox(1))"),
        Just("<a href=\"javascript:alert(1)\">a</a>"),
        Just("<iframe src=//evil></iframe>"),
        Just("<style>*{}</style>"),
        Just("<form action=//evil><input></form>"),
        Just("<div style=\"background:url(javascript:x)\">"),
        Just("<p onclick=\"x\">"),
        Just("```\" onmouseover=\"alert(1)\n"),
        Just("<<script>script>"),
        Just("[a]: javascript:alert(1)\n[a]"),
        Just("<https://ok.example>"),
        Just("<javascript:alert(1)>"),
        Just("**"),
        Just("\n\n"),
        Just("| a | b |\n|---|---|\n| <b onmouseover=x> | 2 |"),
        Just("`"),
        Just("&lt;script&gt;"),
        Just("<math><mi xlink:href=\"javascript:alert(1)\">"),
        Just("<object data=x></object>"),
        Just("<base href=//evil>"),
        Just("<meta http-equiv=refresh content=0;url=javascript:x>"),
    ];
    prop::collection::vec(
        prop_oneof![3 => fragment.prop_map(str::to_string), 1 => ".{0,12}"],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Every tag of an HTML text, lower-cased.
fn tags(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .map_or(rest.len(), |e| start + e + 1);
        found.push(rest[start..end].to_ascii_lowercase());
        rest = &rest[end..];
    }
    found
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases() * 20,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rendered_markdown_never_carries_script(text in hostile_markdown()) {
        let html = markdown(&text);
        for tag in tags(&html) {
            let name: String = tag
                .trim_start_matches(['<', '/'])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            prop_assert!(
                !["script", "iframe", "style", "form", "input", "object", "embed", "svg", "math",
                  "base", "meta", "link"].contains(&name.as_str()),
                "tag {tag} in {html}"
            );
            prop_assert!(!tag.contains("javascript:"), "{tag} in {html}");
            prop_assert!(!tag.contains("vbscript:"), "{tag} in {html}");
            prop_assert!(!tag.contains("data:"), "{tag} in {html}");
            prop_assert!(!tag.contains("style="), "{tag} in {html}");
            let handler = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .any(|word| word.starts_with("on") && word.contains('='));
            prop_assert!(!handler, "event handler in {tag} of {html}");
        }
    }

    #[test]
    fn validators_answer_any_input_without_panicking(text in ".{0,300}", number in any::<u32>()) {
        let _ = validate::slug(&text);
        let _ = validate::client_id(&text);
        let _ = validate::text("text", &text, 100);
        let _ = validate::origin(&text);
        let _ = validate::locale(&text);
        let _ = validate::persistence(&text);
        let _ = validate::prompt_icon(&text);
        let _ = validate::system_prompt(&text);
        let _ = validate::session_timeout_mins(number);
        // Whatever passes the slug check is safe in a URL path and an HTML attribute.
        if validate::slug(&text).is_ok() {
            prop_assert!(text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
        if validate::origin(&text).is_ok() && text != "*" {
            let parsed = url::Url::parse(&text);
            prop_assert!(parsed.is_ok(), "{text}");
        }
    }
}
