//! The storage conformance suite: every case runs unchanged on SQLite and on PostgreSQL.
//! Time is passed in explicitly, so lease expiry and back-off are tested without waiting.

mod common;

use airlock_bridge::store::{Store, StoreError, StoreOptions};
use airlock_shared::{MessageStatus, Role};
use common::{connector, interface, session};

/// A moment to start the tests' clock at (any fixed epoch-ms value works).
const T0: i64 = 1_800_000_000_000;
const LEASE: i64 = 30_000;

mod cases {
    use super::*;

    pub async fn same_client_id_twice_stores_one_message(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let first = store
            .send_user_message(&s.id, "c-1", "hello", &[], None, T0)
            .await
            .unwrap();
        let again = store
            .send_user_message(&s.id, "c-1", "hello", &[], None, T0 + 5)
            .await
            .unwrap();
        assert!(first.created);
        assert!(!again.created);
        assert_eq!(first.message.id, again.message.id);
        assert_eq!(store.transcript(&s.id).await.unwrap().len(), 1);

        let reused = store
            .send_user_message(&s.id, "c-1", "something else", &[], None, T0 + 6)
            .await;
        assert!(matches!(reused, Err(StoreError::ClientIdReused)));

        // One inbox item, not two.
        let c = connector(&store, "agent", &[]).await;
        let claimed = store.claim(&c, 10, LEASE, 20, T0 + 10).await.unwrap();
        assert_eq!(claimed.items.len(), 1);
        let more = store.claim(&c, 10, LEASE, 20, T0 + 10).await.unwrap();
        assert!(more.items.is_empty());
    }

    pub async fn a_session_hands_out_one_item_at_a_time_in_order(store: Store) {
        let ifc = interface(&store, "support").await;
        let a = session(&store, &ifc, T0).await;
        let b = session(&store, &ifc, T0).await;
        for (i, text) in ["a1", "a2", "a3"].iter().enumerate() {
            store
                .send_user_message(&a.id, text, text, &[], None, T0 + i as i64)
                .await
                .unwrap();
        }
        store
            .send_user_message(&b.id, "b1", "b1", &[], None, T0 + 10)
            .await
            .unwrap();
        let c = connector(&store, "agent", &[]).await;

        // Sessions in parallel, one item per session.
        let first = store.claim(&c, 10, LEASE, 20, T0 + 20).await.unwrap();
        let texts: Vec<_> = first
            .items
            .iter()
            .map(|i| i.message.text.as_str())
            .collect();
        assert_eq!(texts, ["a1", "b1"]);
        assert!(
            store
                .claim(&c, 10, LEASE, 20, T0 + 21)
                .await
                .unwrap()
                .items
                .is_empty(),
            "a session's next item must wait while one is in flight"
        );

        // Finishing a1 releases a2, then a3: the order sent.
        let mut seen = vec!["a1".to_string()];
        let mut lease = first.items[0].lease_id.clone();
        for now in [T0 + 30, T0 + 40] {
            store.reply(&lease, &c, "ok", now).await.unwrap();
            let next = store.claim(&c, 10, LEASE, 20, now + 1).await.unwrap();
            assert_eq!(next.items.len(), 1);
            seen.push(next.items[0].message.text.clone());
            lease = next.items[0].lease_id.clone();
        }
        assert_eq!(seen, ["a1", "a2", "a3"]);

        // a3's history holds the earlier exchange, oldest first.
        store.reply(&lease, &c, "done", T0 + 50).await.unwrap();
        let transcript = store.transcript(&a.id).await.unwrap();
        let roles: Vec<_> = transcript
            .iter()
            .map(|m| (m.role, m.text.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                (Role::User, "a1"),
                (Role::User, "a2"),
                (Role::User, "a3"),
                (Role::Assistant, "ok"),
                (Role::Assistant, "ok"),
                (Role::Assistant, "done"),
            ]
        );
    }

    pub async fn claims_carry_history_and_session_context(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        store
            .send_user_message(&s.id, "1", "first", &[], None, T0)
            .await
            .unwrap();
        let item = store.claim(&c, 1, LEASE, 20, T0 + 1).await.unwrap().items;
        store
            .reply(&item[0].lease_id, &c, "first answer", T0 + 2)
            .await
            .unwrap();
        let context = serde_json::json!({"page": "/pricing"});
        store
            .send_user_message(&s.id, "2", "second", &[], Some(&context), T0 + 3)
            .await
            .unwrap();
        let item = store.claim(&c, 1, LEASE, 20, T0 + 4).await.unwrap().items;
        let item = &item[0];
        let history: Vec<_> = item.history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(history, ["first", "first answer"]);
        assert_eq!(item.session.interface, "support");
        assert_eq!(item.session.id, s.id);
        assert_eq!(item.session.visitor_id, s.visitor_id);
        assert_eq!(item.session.context.as_ref(), Some(&context));
        assert_eq!(item.attempt, 1);
    }

    pub async fn sessions_are_served_in_parallel_by_several_connectors(store: Store) {
        let ifc = interface(&store, "support").await;
        let a = session(&store, &ifc, T0).await;
        let b = session(&store, &ifc, T0).await;
        store
            .send_user_message(&a.id, "a", "a", &[], None, T0)
            .await
            .unwrap();
        store
            .send_user_message(&b.id, "b", "b", &[], None, T0 + 1)
            .await
            .unwrap();
        let one = connector(&store, "one", &[]).await;
        let two = connector(&store, "two", &[]).await;
        let got_one = store.claim(&one, 1, LEASE, 20, T0 + 2).await.unwrap().items;
        let got_two = store.claim(&two, 1, LEASE, 20, T0 + 2).await.unwrap().items;
        assert_eq!(got_one.len(), 1);
        assert_eq!(got_two.len(), 1);
        assert_ne!(got_one[0].session.id, got_two[0].session.id);
        // Neither may write through the other's lease.
        let cross = store.reply(&got_one[0].lease_id, &two, "x", T0 + 3).await;
        assert!(matches!(cross, Err(StoreError::NotFound("lease"))));
    }

    pub async fn an_expired_lease_is_handed_out_again_under_a_new_lease(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        store
            .send_user_message(&s.id, "1", "hi", &[], None, T0)
            .await
            .unwrap();
        let first = store.claim(&c, 1, LEASE, 20, T0).await.unwrap().items;
        assert_eq!(first[0].attempt, 1);
        // Not before the lease runs out.
        assert!(
            store
                .claim(&c, 1, LEASE, 20, T0 + LEASE - 1)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        // An extended lease is not handed out either.
        store
            .extend_lease(&first[0].lease_id, &c, LEASE, T0 + LEASE - 1)
            .await
            .unwrap();
        assert!(
            store
                .claim(&c, 1, LEASE, 20, T0 + LEASE + 1)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let later = T0 + 2 * LEASE;
        let second = store.claim(&c, 1, LEASE, 20, later).await.unwrap().items;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].message.id, first[0].message.id);
        assert_eq!(second[0].attempt, 2);
        assert_ne!(second[0].lease_id, first[0].lease_id);
        assert!(store.next_due(later).await.unwrap().is_some());
    }

    pub async fn calls_on_a_superseded_lease_are_refused(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        store
            .send_user_message(&s.id, "1", "hi", &[], None, T0)
            .await
            .unwrap();
        let old = store.claim(&c, 1, LEASE, 20, T0).await.unwrap().items;
        let old = &old[0].lease_id;
        store
            .stream_delta(old, &c, "partial from the old attempt", T0 + 1)
            .await
            .unwrap();
        let new = store
            .claim(&c, 1, LEASE, 20, T0 + LEASE + 1)
            .await
            .unwrap()
            .items;
        let new = &new[0].lease_id;
        let now = T0 + LEASE + 2;

        assert!(matches!(
            store.stream_delta(old, &c, "x", now).await,
            Err(StoreError::LeaseSuperseded)
        ));
        assert!(matches!(
            store.reply(old, &c, "stale", now).await,
            Err(StoreError::LeaseSuperseded)
        ));
        assert!(matches!(
            store.extend_lease(old, &c, LEASE, now).await,
            Err(StoreError::LeaseSuperseded)
        ));
        assert!(matches!(
            store.fail(old, &c, "boom", false, now).await,
            Err(StoreError::LeaseSuperseded)
        ));

        // The new attempt starts its reply over, and it is the one that lands.
        let streamed = store.stream_delta(new, &c, "fresh", now).await.unwrap();
        assert_eq!(streamed.value.text, "fresh");
        let reply = store.reply(new, &c, "fresh answer", now + 1).await.unwrap();
        assert_eq!(reply.value.text, "fresh answer");
        assert!(matches!(
            store.reply(old, &c, "stale", now + 2).await,
            Err(StoreError::LeaseSuperseded)
        ));
        let assistant: Vec<_> = store
            .transcript(&s.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.role == Role::Assistant)
            .collect();
        assert_eq!(assistant.len(), 1);
        assert_eq!(assistant[0].text, "fresh answer");
    }

    pub async fn a_repeated_reply_returns_the_stored_one(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        let sent = store
            .send_user_message(&s.id, "1", "hi", &[], None, T0)
            .await
            .unwrap();
        let lease = store.claim(&c, 1, LEASE, 20, T0).await.unwrap().items[0]
            .lease_id
            .clone();
        let first = store
            .reply(&lease, &c, "answer", T0 + 1)
            .await
            .unwrap()
            .value;
        let again = store
            .reply(&lease, &c, "answer, retried", T0 + 2)
            .await
            .unwrap()
            .value;
        assert_eq!(first.id, again.id);
        assert_eq!(again.text, "answer");
        assert_eq!(again.status, MessageStatus::Complete);
        assert_eq!(again.reply_to.as_deref(), Some(sent.message.id.as_str()));
        let transcript = store.transcript(&s.id).await.unwrap();
        assert_eq!(transcript.len(), 2);
        assert_eq!(transcript[0].status, MessageStatus::Answered);
        // A finished item cannot be streamed into or failed.
        assert!(matches!(
            store.stream_delta(&lease, &c, "more", T0 + 3).await,
            Err(StoreError::ItemFinished(_))
        ));
        assert!(matches!(
            store.fail(&lease, &c, "late", true, T0 + 3).await,
            Err(StoreError::ItemFinished(_))
        ));
    }

    pub async fn streamed_deltas_accumulate_in_one_reply(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        store
            .send_user_message(&s.id, "1", "hi", &[], None, T0)
            .await
            .unwrap();
        let lease = store.claim(&c, 1, LEASE, 20, T0).await.unwrap().items[0]
            .lease_id
            .clone();
        let typing = store
            .stream_delta(&lease, &c, "", T0 + 1)
            .await
            .unwrap()
            .value;
        assert_eq!(typing.text, "");
        assert_eq!(typing.status, MessageStatus::Streaming);
        let cursor = typing.rev;
        store.stream_delta(&lease, &c, "Hel", T0 + 2).await.unwrap();
        let grown = store
            .stream_delta(&lease, &c, "lo", T0 + 3)
            .await
            .unwrap()
            .value;
        assert_eq!(grown.id, typing.id);
        assert_eq!(grown.text, "Hello");
        // A reader following the cursor sees the reply again, grown.
        let changed = store.messages_after(&s.id, cursor, 100).await.unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].text, "Hello");
        assert_eq!(changed[0].html.as_deref(), Some("<p>Hello</p>\n"));
        let done = store
            .reply(&lease, &c, "Hello, *world*!", T0 + 4)
            .await
            .unwrap()
            .value;
        assert_eq!(done.id, typing.id);
        assert_eq!(done.status, MessageStatus::Complete);
        // Replies are rendered from Markdown on the bridge, for every client alike.
        assert_eq!(
            done.html.as_deref(),
            Some("<p>Hello, <em>world</em>!</p>\n")
        );
        assert_eq!(typing.html, None);
    }

    pub async fn fail_with_retry_backs_off_and_keeps_the_session_in_order(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        store
            .send_user_message(&s.id, "1", "first", &[], None, T0)
            .await
            .unwrap();
        store
            .send_user_message(&s.id, "2", "second", &[], None, T0 + 1)
            .await
            .unwrap();
        let lease = store.claim(&c, 5, LEASE, 20, T0 + 2).await.unwrap().items[0]
            .lease_id
            .clone();
        store
            .stream_delta(&lease, &c, "half an ans", T0 + 3)
            .await
            .unwrap();
        let outcome = store
            .fail(&lease, &c, "agent timed out", true, T0 + 4)
            .await
            .unwrap();
        assert_eq!(outcome.value.state, "queued");
        // During the back-off nothing of this session is handed out: "second" must not overtake.
        assert!(
            store
                .claim(&c, 5, LEASE, 20, T0 + 5)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let due = store
            .next_due(T0 + 5)
            .await
            .unwrap()
            .expect("a retry is due");
        let retried = store.claim(&c, 5, LEASE, 20, due).await.unwrap().items;
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].message.text, "first");
        assert_eq!(retried[0].attempt, 2);
        // The partial reply of the failed attempt was cleared for the visitor.
        let partial = store
            .transcript(&s.id)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.role == Role::Assistant)
            .unwrap();
        assert_eq!(partial.text, "");
    }

    pub async fn an_item_is_dead_lettered_after_max_attempts(store: Store) {
        assert_eq!(store.max_attempts(), 3);
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        let sent = store
            .send_user_message(&s.id, "1", "hi", &[], None, T0)
            .await
            .unwrap();
        store
            .send_user_message(&s.id, "2", "next", &[], None, T0)
            .await
            .unwrap();
        let mut now = T0;
        for attempt in 1..=3 {
            let items = store.claim(&c, 1, LEASE, 20, now).await.unwrap().items;
            assert_eq!(items[0].attempt, attempt);
            assert_eq!(items[0].message.id, sent.message.id);
            now += LEASE + 1; // the connector "crashes": its lease runs out
        }
        // No fourth delivery: the item is dead-lettered and the session moves on.
        let next = store.claim(&c, 1, LEASE, 20, now).await.unwrap();
        assert!(next.touched_sessions.contains(&s.id));
        assert_eq!(next.items.len(), 1);
        assert_eq!(next.items[0].message.text, "next");

        let transcript = store.transcript(&s.id).await.unwrap();
        assert_eq!(transcript[0].status, MessageStatus::Failed);
        let failed_reply = transcript
            .iter()
            .find(|m| m.reply_to.as_deref() == Some(sent.message.id.as_str()))
            .expect("the visitor sees a failed reply");
        assert_eq!(failed_reply.status, MessageStatus::Failed);
        assert!(
            failed_reply
                .error
                .as_deref()
                .unwrap()
                .contains("could not answer")
        );

        let dead = store.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.id, sent.message.id);
        assert_eq!(dead[0].attempts, 3);
        assert!(dead[0].last_error.as_deref().unwrap().contains("expired"));

        // `fail` without retry dead-letters at once.
        let lease = &next.items[0].lease_id;
        let outcome = store
            .fail(lease, &c, "unsupported input", false, now + 1)
            .await
            .unwrap();
        assert_eq!(outcome.value.state, "dead");
        assert_eq!(store.dead_letters(10).await.unwrap().len(), 2);
    }

    pub async fn the_reaper_dead_letters_an_abandoned_last_attempt(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        store
            .send_user_message(&s.id, "1", "hi", &[], None, T0)
            .await
            .unwrap();
        let mut now = T0;
        for _ in 0..3 {
            store.claim(&c, 1, LEASE, 20, now).await.unwrap();
            now += LEASE + 1;
        }
        // Nobody claims any more; the reaper still tells the visitor.
        assert!(
            store
                .reap_expired(now - LEASE - 2)
                .await
                .unwrap()
                .is_empty()
        );
        let reaped = store.reap_expired(now).await.unwrap();
        let sessions: Vec<_> = reaped.iter().map(|d| d.session_id.clone()).collect();
        assert_eq!(sessions, vec![s.id.clone()]);
        assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
    }

    pub async fn a_scoped_connector_claims_only_its_interfaces(store: Store) {
        let sales = interface(&store, "sales").await;
        let help = interface(&store, "help").await;
        let s1 = session(&store, &sales, T0).await;
        let s2 = session(&store, &help, T0).await;
        store
            .send_user_message(&s1.id, "1", "buy", &[], None, T0)
            .await
            .unwrap();
        store
            .send_user_message(&s2.id, "1", "help", &[], None, T0)
            .await
            .unwrap();
        let scoped = connector(&store, "help-bot", &["help".to_string()]).await;
        assert_eq!(scoped.interfaces, vec!["help".to_string()]);
        let items = store.claim(&scoped, 10, LEASE, 20, T0).await.unwrap().items;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].message.text, "help");
        store.touch_connector(&scoped, T0).await.unwrap();
        assert!(store.agent_online(&help, T0 - 1).await.unwrap());
        assert!(!store.agent_online(&sales, T0 - 1).await.unwrap());
    }

    pub async fn an_interface_listing_connectors_is_claimed_only_by_them(store: Store) {
        let sales = interface(&store, "sales").await;
        let s1 = session(&store, &sales, T0).await;
        store
            .send_user_message(&s1.id, "1", "buy", &[], None, T0)
            .await
            .unwrap();
        let listed = connector(&store, "listed", &[]).await;
        let other = connector(&store, "other", &[]).await;
        // Scoped to this interface from its own side; but the interface names only `listed`,
        // and its list decides.
        let scoped = connector(&store, "scoped", &["sales".to_string()]).await;
        let row = store.interface_by_id(&sales).await.unwrap().unwrap();
        let mut config = row.config.clone();
        config.connectors = vec![listed.id.clone()];
        store
            .update_interface(&sales, "sales", &row.name, &config, T0)
            .await
            .unwrap();
        assert!(
            store
                .claim(&other, 10, LEASE, 20, T0)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            store
                .claim(&scoped, 10, LEASE, 20, T0)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        store.touch_connector(&other, T0).await.unwrap();
        assert!(!store.agent_online(&sales, T0 - 1).await.unwrap());
        assert!(!store.connector_may_serve(&other, &sales).await.unwrap());
        assert!(store.connector_may_serve(&listed, &sales).await.unwrap());
        let items = store.claim(&listed, 10, LEASE, 20, T0).await.unwrap().items;
        assert_eq!(items.len(), 1);

        // An unknown connector id is refused and changes nothing.
        config.connectors = vec!["con_nope".into()];
        let refused = store
            .update_interface(&sales, "sales", &row.name, &config, T0)
            .await;
        assert!(matches!(refused, Err(StoreError::NotFound("connector"))));
        let kept = store.interface_by_id(&sales).await.unwrap().unwrap();
        assert_eq!(kept.config.connectors, vec![listed.id.clone()]);
    }

    pub async fn interfaces_are_renamed_and_deleted_with_their_sessions(store: Store) {
        let sales = interface(&store, "sales").await;
        interface(&store, "help").await;
        let s1 = session(&store, &sales, T0).await;
        session(&store, &sales, T0).await;
        store
            .send_user_message(&s1.id, "1", "buy", &[], None, T0)
            .await
            .unwrap();
        let row = store.interface_by_id(&sales).await.unwrap().unwrap();
        let taken = store
            .update_interface(&sales, "help", &row.name, &row.config, T0 + 1)
            .await;
        assert!(matches!(taken, Err(StoreError::SlugTaken(_))));
        let renamed = store
            .update_interface(&sales, "shop", "Shop", &row.config, T0 + 1)
            .await
            .unwrap();
        assert_eq!(renamed.slug, "shop");
        assert_eq!(renamed.updated_at, T0 + 1);
        assert!(store.interface_by_slug("sales").await.unwrap().is_none());
        assert_eq!(store.count_sessions_of_interface(&sales).await.unwrap(), 2);

        assert_eq!(store.delete_interface("shop").await.unwrap(), 2);
        assert!(store.session(&s1.id).await.unwrap().is_none());
        assert!(store.interface_by_id(&sales).await.unwrap().is_none());
        assert!(matches!(
            store.delete_interface("shop").await,
            Err(StoreError::NotFound(_))
        ));

        // Settings are shared: the first value written wins.
        let first = store.setting_or_insert("k", || "one".into()).await.unwrap();
        let second = store.setting_or_insert("k", || "two".into()).await.unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
    }

    pub async fn sessions_resume_with_their_resume_token(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = store
            .create_session(
                &airlock_bridge::store::NewSession {
                    interface_id: ifc.clone(),
                    token_hash: "t1".into(),
                    resume_hash: "r1".into(),
                    page_url: Some("https://example.com/a".into()),
                    ..Default::default()
                },
                T0,
            )
            .await
            .unwrap();
        let resumed = store
            .resume_session(&ifc, "r1", "t2", T0 + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resumed.id, s.id);
        // Both tabs' tokens work.
        assert_eq!(
            store.session_for_token("t1").await.unwrap().unwrap().id,
            s.id
        );
        assert_eq!(
            store.session_for_token("t2").await.unwrap().unwrap().id,
            s.id
        );
        assert!(
            store
                .resume_session(&ifc, "nope", "t3", T0)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.session_for_token("t3").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn sqlite_durability_follows_the_setting() {
    use airlock_bridge::store::SqliteSync;
    for (sync, expected) in [(SqliteSync::Normal, "normal"), (SqliteSync::Full, "full")] {
        let db = common::TestDb::sqlite(StoreOptions {
            sqlite_sync: sync,
            ..StoreOptions::default()
        })
        .await;
        assert_eq!(
            db.store.describe().await.unwrap(),
            format!("SQLite (journal_mode=wal, synchronous={expected})")
        );
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_attempts: 3,
        ..StoreOptions::default()
    }
}

/// Runs every case on both backends.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::common::TestDb::sqlite(super::options()).await;
                    super::cases::$case(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::common::TestDb::postgres(super::options()).await else {
                        return;
                    };
                    super::cases::$case(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

conformance!(
    same_client_id_twice_stores_one_message,
    a_session_hands_out_one_item_at_a_time_in_order,
    claims_carry_history_and_session_context,
    sessions_are_served_in_parallel_by_several_connectors,
    an_expired_lease_is_handed_out_again_under_a_new_lease,
    calls_on_a_superseded_lease_are_refused,
    a_repeated_reply_returns_the_stored_one,
    streamed_deltas_accumulate_in_one_reply,
    fail_with_retry_backs_off_and_keeps_the_session_in_order,
    an_item_is_dead_lettered_after_max_attempts,
    the_reaper_dead_letters_an_abandoned_last_attempt,
    a_scoped_connector_claims_only_its_interfaces,
    sessions_resume_with_their_resume_token,
    an_interface_listing_connectors_is_claimed_only_by_them,
    interfaces_are_renamed_and_deleted_with_their_sessions,
);
