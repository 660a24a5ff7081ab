//! The `command` agent end to end: a real bridge, the connector, and small shell scripts as the
//! agent. Printed lines stream to the visitor, stdin carries the documented JSON, a failing
//! program is dead-lettered at once and one asking to be retried (exit 75) runs again.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_bridge::testing::TestBridge;
use airlock_connector::Config;
use airlock_connector::config::AgentKind;
use airlock_shared::MessageStatus;
use serde_json::Value;

use common::{Visitor, dead_letters, init_logging, settled_reply, spawn_connector, stop};

/// Writes an executable `#!/bin/sh` script `name` into `dir`; `$DIR` in `body` is `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let dir = shlex::try_quote(dir.to_str().unwrap())
        .unwrap()
        .into_owned();
    std::fs::write(&path, format!("#!/bin/sh\nDIR={dir}\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// How many times a script that appends a line to `$DIR/runs` has run.
fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn command_config(bridge: &TestBridge, key: String, program: &Path) -> Config {
    let mut config = Config::new(&bridge.url, key);
    config.agent = AgentKind::Command;
    config.command.command_line = Some(
        shlex::try_quote(program.to_str().unwrap())
            .unwrap()
            .into_owned(),
    );
    config.claim_wait = 2;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_lines_stream_to_the_visitor_and_stdin_carries_the_message_json() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "agent.sh",
        r#"cat > "$DIR/in.json"
echo "Thinking about it."
sleep 0.4
echo "Still thinking."
sleep 0.4
echo "Done: 42."
"#,
    );
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("command").await;
    let mut config = command_config(&bridge, key, &program);
    config.prompt.system_prompt = Some("Answer on {interface}.".into());
    let (shutdown, handle) = spawn_connector(config);

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "What is the answer?").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;

    let full = "Thinking about it.\nStill thinking.\nDone: 42.";
    let last = versions.last().unwrap();
    assert_eq!(last.status, MessageStatus::Complete);
    assert_eq!(last.text, full);
    let partial = versions
        .iter()
        .find(|m| {
            m.status == MessageStatus::Streaming && !m.text.is_empty() && m.text.len() < full.len()
        })
        .unwrap_or_else(|| panic!("no partial streaming state seen: {versions:?}"));
    assert!(full.starts_with(&partial.text), "{partial:?}");

    let input: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("in.json")).unwrap()).unwrap();
    assert_eq!(input["message"]["id"], sent.id.as_str());
    assert_eq!(input["message"]["text"], "What is the answer?");
    assert_eq!(input["session"]["id"], visitor.session_id.as_str());
    assert_eq!(input["session"]["interface"], "demo");
    assert_eq!(input["history"], serde_json::json!([]));
    assert!(input["context"].is_null(), "{input}");
    assert_eq!(input["system_prompt"], "Answer on demo.");
    assert_eq!(input["attempt"], 1);

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_exiting_with_an_error_is_dead_lettered_at_once_with_its_stderr() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "broken.sh",
        r#"echo run >> "$DIR/runs"
echo "loading the model" >&2
echo "model file is corrupt" >&2
exit 1
"#,
    );
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("command").await;
    let (shutdown, handle) = spawn_connector(command_config(&bridge, key, &program));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Hello?").await;
    let reply = settled_reply(&mut visitor, &sent.id, Duration::from_secs(20)).await;
    assert_eq!(reply.status, MessageStatus::Failed, "{reply:?}");
    assert!(
        reply.error.as_deref().is_some_and(|e| !e.is_empty()),
        "the visitor gets an explanation: {reply:?}"
    );
    assert_eq!(runs(dir.path()), 1, "a failing program is not run again");

    let dead = dead_letters(&bridge).await;
    let item = dead
        .iter()
        .find(|d| d.message.id == sent.id)
        .unwrap_or_else(|| panic!("{} is not in the dead-letter list: {dead:?}", sent.id));
    assert_eq!(item.attempts, 1);
    let last_error = item.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("exit status: 1") && last_error.contains("model file is corrupt"),
        "last_error: {last_error:?}"
    );

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_exiting_75_is_run_again_and_its_second_answer_is_shown() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "busy.sh",
        r#"echo run >> "$DIR/runs"
if [ ! -e "$DIR/warmed-up" ]; then
  touch "$DIR/warmed-up"
  echo "model still loading" >&2
  exit 75
fi
cat > /dev/null
echo "Ready now."
"#,
    );
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("command").await;
    let (shutdown, handle) = spawn_connector(command_config(&bridge, key, &program));

    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "Are you up?").await;
    // The bridge offers a failed message again after a 1 s back-off.
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(20))
        .await;
    assert_eq!(versions.last().unwrap().text, "Ready now.");
    assert_eq!(runs(dir.path()), 2);

    stop(shutdown, handle).await;
    bridge.shutdown().await;
}
