//! Files a visitor attaches reach the agent: the connector fetches their bytes from the bridge
//! and hands them over (here to a local program, as base64 in its JSON).

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use airlock_bridge::testing::TestBridge;
use airlock_connector::Config;
use airlock_connector::config::AgentKind;
use airlock_shared::MessageStatus;
use airlock_shared::admin::CreateInterface;
use airlock_shared::visitor::{SessionCreated, Uploads};
use base64::Engine;
use serde_json::{Value, json};

use common::{http_client, init_logging, spawn_connector, stop, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_file_reaches_the_agent_with_its_bytes() {
    init_logging();
    let bridge = TestBridge::start().await;
    airlock_bridge::manage::create_interface(
        &bridge.store,
        CreateInterface {
            slug: "files".into(),
            title: "Files".into(),
            publish: true,
            uploads: Uploads {
                enabled: true,
                ..Uploads::default()
            },
            ..CreateInterface::default()
        },
        0,
    )
    .await
    .unwrap();
    let http = http_client();
    let session: SessionCreated = http
        .post(format!("{}/api/v1/interfaces/files/sessions", bridge.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let notes = "Order 42: two tents, one stove.\n".as_bytes().to_vec();
    let part = reqwest::multipart::Part::bytes(notes.clone())
        .file_name("order.txt")
        .mime_str("text/plain")
        .unwrap();
    let uploaded: Value = http
        .post(format!(
            "{}/api/v1/sessions/{}/attachments",
            bridge.url, session.session_id
        ))
        .bearer_auth(&session.session_token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uploaded["attachment"]["id"].as_str().unwrap().to_string();
    let sent = http
        .post(format!(
            "{}/api/v1/sessions/{}/messages",
            bridge.url, session.session_id
        ))
        .bearer_auth(&session.session_token)
        .json(&json!({"client_id": "c1", "text": "see attached", "attachments": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);

    // The agent: saves its stdin, answers one line.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > '{}/in.json'\necho 'got it'\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = bridge.connector_key("files").await;
    let mut config = Config::new(&bridge.url, key);
    config.agent = AgentKind::Command;
    config.command.command_line = Some(script.display().to_string());
    config.claim_wait = 2;
    let (shutdown, handle) = spawn_connector(config);

    let input = dir.path().join("in.json");
    let payload: Value = wait_for("the agent to run", Duration::from_secs(20), || {
        let input = input.clone();
        async move {
            let text = std::fs::read_to_string(&input).ok()?;
            serde_json::from_str(&text).ok()
        }
    })
    .await;
    let file = &payload["attachments"][0];
    assert_eq!(file["filename"], "order.txt");
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(file["size"], notes.len());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, notes, "the agent got the exact bytes");
    assert_eq!(payload["message"]["attachments"][0]["id"], file["id"]);

    // And the visitor gets the agent's reply.
    let transcript = || {
        let http = http.clone();
        let url = format!(
            "{}/api/v1/sessions/{}/messages?after=0",
            bridge.url, session.session_id
        );
        let token = session.session_token.clone();
        async move {
            let list: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            list["messages"]
                .as_array()?
                .iter()
                .find(|m| {
                    m["role"] == "assistant"
                        && m["status"] == serde_json::to_value(MessageStatus::Complete).unwrap()
                })
                .map(|m| m["text"].as_str().unwrap_or("").to_string())
        }
    };
    let reply = wait_for("the reply", Duration::from_secs(20), transcript).await;
    assert_eq!(reply, "got it");
    stop(shutdown, handle).await;
    bridge.shutdown().await;
}
