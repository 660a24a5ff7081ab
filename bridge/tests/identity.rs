//! Signed visitor identity and session expiry over real HTTP, on both backends, with the manual
//! clock: host sites sign identity tokens (HS256 with a shared secret, RS256 with the test-only key
//! pair in `tests/fixtures/`), visitors open sessions with them, one user's conversation follows
//! them across devices, the agent and the admins see who they are, and idle sessions expire.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_bridge::clock::{Clock, ManualClock};
use airlock_bridge::store::StoreOptions;
use airlock_bridge::testing::TestBridge;
use airlock_shared::connector::ClaimResponse;
use airlock_shared::visitor::{MessageList, SessionCreated};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::http::{assert_error, http};

/// The shared secret of the HS256 interface (a host site would keep it as safe as a password).
const SECRET: &str = "test-only-identity-secret-0123456789abcdef";
/// A test-only RSA key pair: the "host site" signs with the private key.
const RS_PRIVATE: &str = include_str!("fixtures/identity_rs256_private.pem");
const RS_PUBLIC: &str = include_str!("fixtures/identity_rs256_public.pem");

/// The bridge's "now" in seconds, for `exp`/`nbf`.
fn now_secs(bridge: &TestBridge) -> i64 {
    bridge.clock.as_ref().expect("manual clock").now_ms() / 1_000
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// A user's token as a host site signs it: valid for ten minutes from the bridge's now.
fn user_token(bridge: &TestBridge, sub: &str) -> String {
    hs256(
        &json!({"sub": sub, "name": format!("User {sub}"), "email": format!("{sub}@shop.example"),
                  "exp": now_secs(bridge) + 600}),
    )
}

async fn admin(bridge: &TestBridge, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = http()
        .request(method, format!("{}/api/v1/admin{path}", bridge.url))
        .bearer_auth(&bridge.admin_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Creates a published interface with `extra` fields.
async fn interface(bridge: &TestBridge, slug: &str, extra: Value) {
    let mut body = json!({"slug": slug, "title": format!("Chat {slug}"), "publish": true});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    admin(bridge, Method::POST, "/interfaces", Some(body)).await;
}

fn hs256_settings() -> Value {
    json!({"identity": {"algorithm": "HS256", "secret": SECRET}})
}

/// `POST /interfaces/{slug}/sessions` with `body`.
async fn open(bridge: &TestBridge, slug: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}/api/v1/interfaces/{slug}/sessions", bridge.url))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Opens a session that must succeed with `status`.
async fn opened(
    bridge: &TestBridge,
    slug: &str,
    body: Value,
    status: StatusCode,
) -> SessionCreated {
    let response = open(bridge, slug, body).await;
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

async fn send(bridge: &TestBridge, session: &SessionCreated, client_id: &str, text: &str) {
    let response = http()
        .post(format!(
            "{}/api/v1/sessions/{}/messages",
            bridge.url, session.session_id
        ))
        .bearer_auth(&session.session_token)
        .json(&json!({"client_id": client_id, "text": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

async fn poll(bridge: &TestBridge, session: &SessionCreated) -> reqwest::Response {
    http()
        .get(format!(
            "{}/api/v1/sessions/{}/messages?after=0",
            bridge.url, session.session_id
        ))
        .bearer_auth(&session.session_token)
        .send()
        .await
        .unwrap()
}

async fn texts(bridge: &TestBridge, session: &SessionCreated) -> Vec<String> {
    let response = poll(bridge, session).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list: MessageList = response.json().await.unwrap();
    list.messages.into_iter().map(|m| m.text).collect()
}

async fn claim(bridge: &TestBridge, key: &str) -> ClaimResponse {
    let response = http()
        .post(format!("{}/api/v1/connector/claim", bridge.url))
        .bearer_auth(key)
        .json(&json!({"max": 5, "wait": 0, "lease_secs": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn valid_tokens_of_both_algorithms_sign_the_visitor_in(bridge: TestBridge) {
    interface(&bridge, "hs", hs256_settings()).await;
    interface(
        &bridge,
        "rs",
        json!({"identity": {"algorithm": "RS256", "public_key": RS_PUBLIC,
                            "issuer": "https://shop.example", "audience": "airlock"}}),
    )
    .await;
    let now = now_secs(&bridge);
    let hs = opened(
        &bridge,
        "hs",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::CREATED,
    )
    .await;
    assert!(!hs.resumed);
    let rs_token = rs256(&json!({"sub": "u-2", "name": "Grace", "exp": now + 300,
                                 "iss": "https://shop.example", "aud": ["airlock"]}));
    let rs = opened(
        &bridge,
        "rs",
        json!({"identity_token": rs_token}),
        StatusCode::CREATED,
    )
    .await;

    // The agent knows who it talks to.
    send(&bridge, &hs, "c-1", "Where is my order?").await;
    send(&bridge, &rs, "c-1", "Hello").await;
    let key = bridge.connector_key("agent").await;
    let claimed = claim(&bridge, &key).await;
    assert_eq!(claimed.items.len(), 2);
    for item in &claimed.items {
        let session = &item.session;
        if session.interface == "hs" {
            assert_eq!(session.visitor_user_id.as_deref(), Some("u-1"));
            assert_eq!(session.visitor_name.as_deref(), Some("User u-1"));
            assert_eq!(session.visitor_email.as_deref(), Some("u-1@shop.example"));
        } else {
            assert_eq!(session.visitor_user_id.as_deref(), Some("u-2"));
            assert_eq!(session.visitor_name.as_deref(), Some("Grace"));
            assert_eq!(session.visitor_email, None);
        }
    }

    // So do the admins: in the transcript, the list, and the search.
    let transcript = admin(
        &bridge,
        Method::GET,
        &format!("/sessions/{}", hs.session_id),
        None,
    )
    .await;
    assert_eq!(
        transcript["session"]["identity"],
        json!({"user_id": "u-1", "name": "User u-1", "email": "u-1@shop.example"})
    );
    let found = admin(&bridge, Method::GET, "/sessions?q=U-1%40SHOP", None).await;
    let ids: Vec<&str> = found["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [hs.session_id.as_str()]);
    let by_name = admin(&bridge, Method::GET, "/sessions?q=grace", None).await;
    assert_eq!(by_name["sessions"][0]["id"], rs.session_id);
    assert_eq!(by_name["sessions"][0]["identity"]["user_id"], "u-2");
    bridge.shutdown().await;
}

async fn each_bad_token_is_refused_with_the_reason(bridge: TestBridge) {
    interface(
        &bridge,
        "strict",
        json!({"identity": {"algorithm": "HS256", "secret": SECRET,
                            "issuer": "https://shop.example", "audience": "airlock"}}),
    )
    .await;
    interface(&bridge, "plain", json!({})).await;
    let now = now_secs(&bridge);
    let good =
        json!({"sub": "u-1", "exp": now + 300, "iss": "https://shop.example", "aud": "airlock"});
    let with = |changes: Value| {
        let mut claims = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let forged = {
        let key = EncodingKey::from_secret(b"not-the-secret-not-the-secret-not-the-secret");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &good, &key).unwrap()
    };
    let cases = [
        (hs256(&with(json!({"exp": now - 120}))), "expired"),
        (hs256(&with(json!({"exp": null}))), "exp"),
        (forged, "signature"),
        ("abc.def".to_string(), "malformed"),
        ("not a token at all".to_string(), "malformed"),
        (hs256(&with(json!({"sub": null}))), "sub"),
        (hs256(&with(json!({"sub": ""}))), "sub"),
        (hs256(&with(json!({"sub": "x".repeat(300)}))), "256"),
        (
            hs256(&with(json!({"iss": "https://evil.example"}))),
            "issuer",
        ),
        (hs256(&with(json!({"aud": "someone-else"}))), "audience"),
        (hs256(&with(json!({"nbf": now + 3_600}))), "not valid yet"),
        (rs256(&good), "expects hs256"),
    ];
    for (token, why) in cases {
        let response = open(&bridge, "strict", json!({"identity_token": token})).await;
        let message = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_identity").await;
        assert!(
            message.to_lowercase().contains(why),
            "`{message}` should say `{why}`"
        );
    }
    // The good one passes; leeway covers a little clock skew.
    let skewed = hs256(&with(json!({"exp": now - 20})));
    opened(
        &bridge,
        "strict",
        json!({"identity_token": skewed}),
        StatusCode::CREATED,
    )
    .await;
    // An interface that does not verify identities says so.
    let response = open(&bridge, "plain", json!({"identity_token": hs256(&good)})).await;
    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "identity_not_configured",
    )
    .await;
    bridge.shutdown().await;
}

async fn require_identity_refuses_anonymous_visitors(bridge: TestBridge) {
    let mut settings = hs256_settings();
    settings["require_identity"] = json!(true);
    interface(&bridge, "members", settings).await;
    interface(&bridge, "optional", hs256_settings()).await;

    let response = open(
        &bridge,
        "members",
        json!({"page_url": "https://shop.example/account"}),
    )
    .await;
    let message = assert_error(response, StatusCode::UNAUTHORIZED, "identity_required").await;
    assert!(message.contains("signed in on shop.example"), "{message}");
    // Not even an old anonymous resume token gets in.
    let response = open(&bridge, "members", json!({"resume_token": "alk_r_x"})).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "identity_required").await;
    opened(
        &bridge,
        "members",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::CREATED,
    )
    .await;
    // Without require_identity, anonymous visitors still chat.
    opened(&bridge, "optional", json!({}), StatusCode::CREATED).await;
    bridge.shutdown().await;
}

async fn one_users_conversation_follows_them_across_devices(bridge: TestBridge) {
    interface(&bridge, "shop", hs256_settings()).await;
    let laptop = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::CREATED,
    )
    .await;
    send(&bridge, &laptop, "c-1", "from the laptop").await;

    // The phone signs in as the same user: the same session, with its history.
    let phone = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::OK,
    )
    .await;
    assert!(phone.resumed);
    assert_eq!(phone.session_id, laptop.session_id);
    assert_eq!(phone.visitor_id, laptop.visitor_id);
    assert_eq!(phone.messages[0].text, "from the laptop");
    assert_ne!(phone.session_token, laptop.session_token);
    // Both devices' tokens work, and each sees what the other sent.
    send(&bridge, &phone, "c-2", "from the phone").await;
    assert_eq!(
        texts(&bridge, &laptop).await,
        ["from the laptop", "from the phone"]
    );
    // The laptop coming back with its old resume token lands in the same session.
    let again = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1"), "resume_token": laptop.resume_token}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(again.session_id, laptop.session_id);

    // Another user never gets in: not by identity, not with this user's resume token.
    for body in [
        json!({"identity_token": user_token(&bridge, "u-2")}),
        json!({"identity_token": user_token(&bridge, "u-3"), "resume_token": phone.resume_token}),
        // Nor an anonymous visitor holding the resume token.
        json!({"resume_token": phone.resume_token}),
    ] {
        let other = opened(&bridge, "shop", body, StatusCode::CREATED).await;
        assert!(!other.resumed);
        assert_ne!(other.session_id, laptop.session_id);
        assert!(other.messages.is_empty());
    }
    // An anonymous session does not become a signed-in one either.
    let anonymous = opened(&bridge, "shop", json!({}), StatusCode::CREATED).await;
    let signed_in = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-9"), "resume_token": anonymous.resume_token}),
        StatusCode::CREATED,
    )
    .await;
    assert_ne!(signed_in.session_id, anonymous.session_id);

    // "New conversation" starts a new session even while one is active (a second later, so
    // "most recent" is not a tie on the manual clock)...
    bridge
        .clock
        .as_ref()
        .expect("manual clock")
        .advance_ms(1_000);
    let fresh = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1"), "fresh": true}),
        StatusCode::CREATED,
    )
    .await;
    assert_ne!(fresh.session_id, laptop.session_id);
    // ...which the user's next device joins: the most recent one.
    let tablet = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(tablet.session_id, fresh.session_id);
    bridge.shutdown().await;
}

async fn an_idle_session_expires_and_its_accepted_message_is_still_answered(bridge: TestBridge) {
    interface(&bridge, "quick", json!({"session_timeout_mins": 5})).await;
    let clock = bridge.clock.clone().expect("manual clock");
    let visitor = opened(&bridge, "quick", json!({}), StatusCode::CREATED).await;
    send(&bridge, &visitor, "c-1", "Are you there?").await;
    let key = bridge.connector_key("slow-agent").await;
    let claimed = claim(&bridge, &key).await;
    assert_eq!(claimed.items.len(), 1);

    // Four minutes of quiet are fine; six are not.
    clock.advance_ms(4 * 60_000);
    assert_eq!(poll(&bridge, &visitor).await.status(), StatusCode::OK);
    clock.advance_ms(2 * 60_000 + 1);
    let message = assert_error(
        poll(&bridge, &visitor).await,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    )
    .await;
    assert!(message.contains("expired"), "{message}");
    let session = admin(
        &bridge,
        Method::GET,
        &format!("/sessions/{}", visitor.session_id),
        None,
    )
    .await;
    assert_eq!(session["session"]["status"], "expired");
    // Sending is refused the same way.
    let response = http()
        .post(format!(
            "{}/api/v1/sessions/{}/messages",
            bridge.url, visitor.session_id
        ))
        .bearer_auth(&visitor.session_token)
        .json(&json!({"client_id": "c-2", "text": "hello?"}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "session_expired").await;

    // The agent's answer to the message accepted before is still stored.
    let lease = &claimed.items[0].lease_id;
    let response = http()
        .post(format!(
            "{}/api/v1/connector/leases/{lease}/reply",
            bridge.url
        ))
        .bearer_auth(&key)
        .json(&json!({"text": "Yes, sorry for the wait."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let transcript = admin(
        &bridge,
        Method::GET,
        &format!("/sessions/{}", visitor.session_id),
        None,
    )
    .await;
    assert_eq!(
        transcript["messages"][1]["text"],
        "Yes, sorry for the wait."
    );
    assert_eq!(transcript["messages"][1]["status"], "complete");
    assert_eq!(transcript["session"]["status"], "expired");

    // Resuming the expired session starts a fresh one.
    let fresh = opened(
        &bridge,
        "quick",
        json!({"resume_token": visitor.resume_token}),
        StatusCode::CREATED,
    )
    .await;
    assert!(!fresh.resumed);
    assert_ne!(fresh.session_id, visitor.session_id);
    assert!(fresh.messages.is_empty());
    bridge.shutdown().await;
}

async fn a_signed_in_visitors_idle_session_is_not_joined_again(bridge: TestBridge) {
    let mut settings = hs256_settings();
    settings["session_timeout_mins"] = json!(5);
    interface(&bridge, "quick", settings).await;
    let clock = bridge.clock.clone().expect("manual clock");
    let first = opened(
        &bridge,
        "quick",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::CREATED,
    )
    .await;
    clock.advance_ms(6 * 60_000);
    let later = opened(
        &bridge,
        "quick",
        json!({"identity_token": user_token(&bridge, "u-1"), "resume_token": first.resume_token}),
        StatusCode::CREATED,
    )
    .await;
    assert!(!later.resumed);
    assert_ne!(later.session_id, first.session_id);
    bridge.shutdown().await;
}

async fn the_reaper_expires_idle_sessions_without_a_visitor_call(bridge: TestBridge) {
    interface(&bridge, "quick", json!({"session_timeout_mins": 5})).await;
    interface(&bridge, "patient", json!({"session_timeout_mins": 60})).await;
    let clock = bridge.clock.clone().expect("manual clock");
    let quick = opened(&bridge, "quick", json!({}), StatusCode::CREATED).await;
    let patient = opened(&bridge, "patient", json!({}), StatusCode::CREATED).await;
    clock.advance_ms(10 * 60_000);
    let status = |id: String| {
        let bridge = &bridge;
        async move {
            admin(bridge, Method::GET, &format!("/sessions/{id}"), None).await["session"]["status"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(quick.session_id.clone()).await != "expired" {
        assert!(
            Instant::now() < deadline,
            "the reaper did not expire the idle session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(patient.session_id.clone()).await, "active");
    let expired = admin(&bridge, Method::GET, "/sessions?status=expired", None).await;
    assert_eq!(expired["sessions"].as_array().unwrap().len(), 1);
    bridge.shutdown().await;
}

async fn identity_settings_are_validated_and_the_secret_never_shown(bridge: TestBridge) {
    let create = |body: Value| {
        let bridge = &bridge;
        async move {
            http()
                .post(format!("{}/api/v1/admin/interfaces", bridge.url))
                .bearer_auth(&bridge.admin_key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for (identity, require, field) in [
        (
            json!({"algorithm": "HS256", "secret": "too-short"}),
            false,
            "identity.secret",
        ),
        (json!({"algorithm": "HS256"}), false, "identity.secret"),
        (
            json!({"algorithm": "RS256", "public_key": "nope"}),
            false,
            "identity.public_key",
        ),
        (
            json!({"algorithm": "RS256", "public_key": RS_PRIVATE}),
            false,
            "identity.public_key",
        ),
        (json!({"algorithm": "none"}), false, "identity.algorithm"),
        (
            json!({"algorithm": "HS256", "secret": SECRET, "issuer": ""}),
            false,
            "identity.issuer",
        ),
        (Value::Null, true, "require_identity"),
    ] {
        let response = create(json!({"slug": "x1", "title": "X", "identity": identity,
                                     "require_identity": require}))
        .await;
        let message =
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert!(message.starts_with(field), "{message} should name {field}");
    }

    let response = create(json!({"slug": "x1", "title": "X", "require_identity": true,
                                 "identity": {"algorithm": "HS256", "secret": SECRET}}))
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["identity"]["secret"], Value::Null);
    assert_eq!(created["identity"]["secret_set"], true);
    assert!(!created.to_string().contains(SECRET));
    // A change without the secret keeps it (tokens still verify)...
    let patched = admin(
        &bridge,
        Method::PATCH,
        "/interfaces/x1",
        Some(json!({"identity": {"algorithm": "HS256", "issuer": "https://shop.example"}})),
    )
    .await;
    assert_eq!(patched["identity"]["secret_set"], true);
    assert_eq!(patched["identity"]["issuer"], "https://shop.example");
    admin(&bridge, Method::POST, "/interfaces/x1/publish", None).await;
    let token = hs256(&json!({"sub": "u", "exp": now_secs(&bridge) + 60,
                              "iss": "https://shop.example"}));
    opened(
        &bridge,
        "x1",
        json!({"identity_token": token}),
        StatusCode::CREATED,
    )
    .await;
    let listed = admin(&bridge, Method::GET, "/interfaces", None).await;
    assert!(!listed.to_string().contains(SECRET));
    // ...and identity cannot go while it is required.
    let response = http()
        .patch(format!("{}/api/v1/admin/interfaces/x1", bridge.url))
        .bearer_auth(&bridge.admin_key)
        .json(&json!({"identity": null}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let cleared = admin(
        &bridge,
        Method::PATCH,
        "/interfaces/x1",
        Some(json!({"identity": null, "require_identity": false})),
    )
    .await;
    assert_eq!(cleared["identity"], Value::Null);
    bridge.shutdown().await;
}

async fn a_signed_in_user_is_forgotten_on_every_interface_and_device(bridge: TestBridge) {
    interface(&bridge, "shop", hs256_settings()).await;
    interface(&bridge, "help", hs256_settings()).await;
    let laptop = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::CREATED,
    )
    .await;
    send(&bridge, &laptop, "c-1", "please forget me").await;
    let phone = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::OK,
    )
    .await;
    let elsewhere = opened(
        &bridge,
        "help",
        json!({"identity_token": user_token(&bridge, "u-1")}),
        StatusCode::CREATED,
    )
    .await;
    let someone_else = opened(
        &bridge,
        "shop",
        json!({"identity_token": user_token(&bridge, "u-2")}),
        StatusCode::CREATED,
    )
    .await;
    send(&bridge, &someone_else, "c-1", "keep me").await;
    let anonymous = opened(&bridge, "shop", json!({}), StatusCode::CREATED).await;

    let removed = admin(
        &bridge,
        Method::POST,
        "/visitors/forget",
        Some(json!({"user_id": "u-1"})),
    )
    .await;
    assert_eq!(removed["sessions"], 2, "{removed}");
    assert_eq!(removed["messages"], 1, "{removed}");
    // Both devices' tokens and the other interface's session are gone; nobody else's data is.
    for gone in [&laptop, &phone, &elsewhere] {
        assert_eq!(poll(&bridge, gone).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(texts(&bridge, &someone_else).await, ["keep me"]);
    assert_eq!(poll(&bridge, &anonymous).await.status(), StatusCode::OK);
    let audit = admin(&bridge, Method::GET, "/audit", None).await;
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "visitor.forget")
        .expect("the deletion is audited");
    assert_eq!(entry["target"], "identity_user_id=u-1");

    // Naming a visitor two ways, or no way, is refused.
    for body in [
        json!({}),
        json!({"user_id": "u-1", "visitor_id": laptop.visitor_id}),
    ] {
        let refused = http()
            .post(format!("{}/api/v1/admin/visitors/forget", bridge.url))
            .bearer_auth(&bridge.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    bridge.shutdown().await;
}

on_both_backends!(
    valid_tokens_of_both_algorithms_sign_the_visitor_in,
    each_bad_token_is_refused_with_the_reason,
    require_identity_refuses_anonymous_visitors,
    one_users_conversation_follows_them_across_devices,
    an_idle_session_expires_and_its_accepted_message_is_still_answered,
    a_signed_in_visitors_idle_session_is_not_joined_again,
    the_reaper_expires_idle_sessions_without_a_visitor_call,
    identity_settings_are_validated_and_the_secret_never_shown,
    a_signed_in_user_is_forgotten_on_every_interface_and_device,
);
