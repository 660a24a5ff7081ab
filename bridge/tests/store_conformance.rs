//! The storage conformance suite: every case runs unchanged on SQLite and on PostgreSQL.
//! Time is passed in explicitly, so lease expiry and back-off are tested without waiting.

mod common;

use airlock_bridge::store::{
    ConnectorRow, NewAttachment, NewSession, SessionFilter, StatsQuery, Store, StoreError,
    StoreOptions,
};
use airlock_bridge::tokens::new_id;
use airlock_shared::admin::{CreateInterface, VisitorIdentity};
use airlock_shared::{MessageStatus, Role};
use common::{connector, interface, session};

/// A moment to start the tests' clock at (any fixed epoch-ms value works).
const T0: i64 = 1_800_000_000_000;
const LEASE: i64 = 30_000;
/// A day in milliseconds: the default session timeout.
const DAY: i64 = 86_400_000;

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
        let claimed = store
            .claim(&c, 10, LEASE, 20, false, T0 + 10)
            .await
            .unwrap();
        assert_eq!(claimed.items.len(), 1);
        let more = store
            .claim(&c, 10, LEASE, 20, false, T0 + 10)
            .await
            .unwrap();
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
        let first = store
            .claim(&c, 10, LEASE, 20, false, T0 + 20)
            .await
            .unwrap();
        let texts: Vec<_> = first
            .items
            .iter()
            .map(|i| i.message.text.as_str())
            .collect();
        assert_eq!(texts, ["a1", "b1"]);
        assert!(
            store
                .claim(&c, 10, LEASE, 20, false, T0 + 21)
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
            let next = store
                .claim(&c, 10, LEASE, 20, false, now + 1)
                .await
                .unwrap();
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

    /// One finished exchange in a session with nothing else waiting: the visitor's `text`
    /// (client id "1") at `now`, leased at `now + 1` and answered with `answer` at `now + 2`.
    async fn exchange(
        store: &Store,
        c: &ConnectorRow,
        session_id: &str,
        text: &str,
        answer: &str,
        now: i64,
    ) {
        store
            .send_user_message(session_id, "1", text, &[], None, now)
            .await
            .unwrap();
        let item = store
            .claim(c, 1, LEASE, 20, false, now + 1)
            .await
            .unwrap()
            .items;
        store
            .reply(&item[0].lease_id, c, answer, now + 2)
            .await
            .unwrap();
    }

    pub async fn claims_carry_history_and_session_context(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        exchange(&store, &c, &s.id, "first", "first answer", T0).await;
        let context = serde_json::json!({"page": "/pricing"});
        store
            .send_user_message(&s.id, "2", "second", &[], Some(&context), T0 + 3)
            .await
            .unwrap();
        let item = store
            .claim(&c, 1, LEASE, 20, false, T0 + 4)
            .await
            .unwrap()
            .items;
        let item = &item[0];
        let history: Vec<_> = item.history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(history, ["first", "first answer"]);
        assert_eq!(item.session.interface, "support");
        assert_eq!(item.session.id, s.id);
        assert_eq!(item.session.visitor_id, s.visitor_id);
        assert_eq!(item.session.context.as_ref(), Some(&context));
        assert_eq!(item.attempt, 1);
    }

    /// A claim's items are read after its writes (on PostgreSQL in the claim's own statement):
    /// the message as the lease left it, and no typing reply in its history.
    pub async fn a_claimed_item_is_its_message_as_the_claim_left_it(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        exchange(&store, &c, &s.id, "first", "first answer", T0).await;
        store
            .send_user_message(&s.id, "2", "second", &[], None, T0 + 3)
            .await
            .unwrap();
        for (attempt, now) in [(1, T0 + 4), (2, T0 + 4 + LEASE + 1)] {
            let items = store
                .claim(&c, 1, LEASE, 20, true, now)
                .await
                .unwrap()
                .items;
            assert_eq!(items.len(), 1, "attempt {attempt}");
            let stored = store
                .message_by_client_id(&s.id, "2")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(items[0].attempt, attempt);
            assert_eq!(items[0].message, stored, "attempt {attempt}");
            assert_eq!(stored.status, MessageStatus::Processing);
            let history: Vec<_> = items[0].history.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(history, ["first", "first answer"], "attempt {attempt}");
        }
        let messages = store.messages_after(&s.id, 0, 100).await.unwrap();
        let typing = messages
            .iter()
            .find(|m| m.status == MessageStatus::Streaming)
            .expect("the claim started a reply");
        assert_eq!(typing.text, "");
    }

    pub async fn a_claim_of_several_items_gives_each_its_own_history(store: Store) {
        let ifc = interface(&store, "support").await;
        let c = connector(&store, "agent", &[]).await;
        let a = session(&store, &ifc, T0).await;
        let b = session(&store, &ifc, T0).await;
        let e = session(&store, &ifc, T0).await;
        // An exchange in a and in b; e starts fresh.
        for (n, s) in [&a, &b].into_iter().enumerate() {
            let (text, answer) = (format!("{n} first"), format!("{n} answer"));
            exchange(&store, &c, &s.id, &text, &answer, T0 + 10 * n as i64).await;
        }
        for (n, s) in [&b, &e, &a].into_iter().enumerate() {
            store
                .send_user_message(
                    &s.id,
                    "2",
                    &format!("{n} second"),
                    &[],
                    None,
                    T0 + 30 + n as i64,
                )
                .await
                .unwrap();
        }
        let items = store
            .claim(&c, 10, LEASE, 20, false, T0 + 40)
            .await
            .unwrap()
            .items;
        let got: Vec<_> = items
            .iter()
            .map(|item| {
                let history: Vec<_> = item.history.iter().map(|m| m.text.as_str()).collect();
                (
                    item.session.id.as_str(),
                    item.message.text.as_str(),
                    history,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (b.id.as_str(), "0 second", vec!["1 first", "1 answer"]),
                (e.id.as_str(), "1 second", vec![]),
                (a.id.as_str(), "2 second", vec!["0 first", "0 answer"]),
            ],
            "leased in the order sent, each with its own session's history"
        );
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
        let got_one = store
            .claim(&one, 1, LEASE, 20, false, T0 + 2)
            .await
            .unwrap()
            .items;
        let got_two = store
            .claim(&two, 1, LEASE, 20, false, T0 + 2)
            .await
            .unwrap()
            .items;
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
        let first = store
            .claim(&c, 1, LEASE, 20, false, T0)
            .await
            .unwrap()
            .items;
        assert_eq!(first[0].attempt, 1);
        // Not before the lease runs out.
        assert!(
            store
                .claim(&c, 1, LEASE, 20, false, T0 + LEASE - 1)
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
                .claim(&c, 1, LEASE, 20, false, T0 + LEASE + 1)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let later = T0 + 2 * LEASE;
        let second = store
            .claim(&c, 1, LEASE, 20, false, later)
            .await
            .unwrap()
            .items;
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
        let old = store
            .claim(&c, 1, LEASE, 20, false, T0)
            .await
            .unwrap()
            .items;
        let old = &old[0].lease_id;
        store
            .stream_delta(old, &c, "partial from the old attempt", T0 + 1)
            .await
            .unwrap();
        let new = store
            .claim(&c, 1, LEASE, 20, false, T0 + LEASE + 1)
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
        let lease = store
            .claim(&c, 1, LEASE, 20, false, T0)
            .await
            .unwrap()
            .items[0]
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
        let lease = store
            .claim(&c, 1, LEASE, 20, false, T0)
            .await
            .unwrap()
            .items[0]
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

    pub async fn a_claim_with_typing_starts_each_reply_with_its_lease(store: Store) {
        let ifc = interface(&store, "support").await;
        let a = session(&store, &ifc, T0).await;
        let b = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        for s in [&a, &b] {
            store
                .send_user_message(&s.id, "1", "hi", &[], None, T0)
                .await
                .unwrap();
        }
        let claimed = store.claim(&c, 5, LEASE, 20, true, T0 + 1).await.unwrap();
        assert_eq!(claimed.items.len(), 2);
        let mut touched = claimed.touched_sessions.clone();
        touched.sort();
        touched.dedup();
        let mut both = vec![a.id.clone(), b.id.clone()];
        both.sort();
        assert_eq!(touched, both, "both visitors must be woken");
        for s in [&a, &b] {
            let transcript = store.transcript(&s.id).await.unwrap();
            let shown: Vec<_> = transcript
                .iter()
                .map(|m| (m.role, m.status, m.text.as_str()))
                .collect();
            assert_eq!(
                shown,
                [
                    (Role::User, MessageStatus::Processing, "hi"),
                    (Role::Assistant, MessageStatus::Streaming, ""),
                ],
                "the visitor sees the agent typing as soon as the item is leased"
            );
        }

        // The reply grows from the started one: one assistant message, not two.
        let item = claimed.items.iter().find(|i| i.session.id == a.id).unwrap();
        let lease = item.lease_id.clone();
        store.stream_delta(&lease, &c, "Hel", T0 + 2).await.unwrap();
        let done = store
            .reply(&lease, &c, "Hello", T0 + 3)
            .await
            .unwrap()
            .value;
        let transcript = store.transcript(&a.id).await.unwrap();
        assert_eq!(transcript.len(), 2);
        assert_eq!(transcript[1].id, done.id);
        assert_eq!(transcript[1].status, MessageStatus::Complete);

        // b's lease runs out after a partial answer: the redelivery, claimed with typing, starts
        // that reply over and wakes b's visitor, though it is not a first delivery.
        let other = claimed.items.iter().find(|i| i.session.id == b.id).unwrap();
        store
            .stream_delta(&other.lease_id, &c, "half an ans", T0 + 2)
            .await
            .unwrap();
        let again = store
            .claim(&c, 5, LEASE, 20, true, T0 + LEASE + 10)
            .await
            .unwrap();
        assert_eq!(again.items.len(), 1);
        assert_eq!(again.items[0].attempt, 2);
        assert_eq!(again.touched_sessions, std::slice::from_ref(&b.id));
        let transcript = store.transcript(&b.id).await.unwrap();
        assert_eq!(transcript.len(), 2);
        assert_eq!(transcript[1].text, "");
        assert_eq!(transcript[1].status, MessageStatus::Streaming);
        // The first attempt's lease can no longer write.
        assert!(
            store
                .stream_delta(&other.lease_id, &c, "late", T0 + LEASE + 11)
                .await
                .is_err()
        );
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
        let lease = store
            .claim(&c, 5, LEASE, 20, false, T0 + 2)
            .await
            .unwrap()
            .items[0]
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
                .claim(&c, 5, LEASE, 20, false, T0 + 5)
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
        let retried = store
            .claim(&c, 5, LEASE, 20, false, due)
            .await
            .unwrap()
            .items;
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

    pub async fn claims_that_must_dead_letter_at_once_each_do_it(store: Store) {
        // Connectors each alone on an interface, each with a session whose first item ran out of
        // attempts, claim at the same moment: each dead-letters its item and leases the next. (On
        // PostgreSQL such a claim starts in a server-side function that gives up and is undone.
        // The server reports the refusal before the undo, so a claim that went on on another
        // connection now and then found the call's row locks still held, skipped the row as
        // another claimer's, and came back empty: seen here and in
        // `an_item_is_dead_lettered_after_max_attempts` when several test processes ran at once.)
        const AT_ONCE: usize = 8;
        let mut lanes = Vec::new();
        for n in 0..AT_ONCE {
            let slug = format!("lane-{n}");
            let ifc = interface(&store, &slug).await;
            let c = connector(&store, &format!("agent-{n}"), &[slug]).await;
            let s = session(&store, &ifc, T0).await;
            for (client_id, text) in [("1", "doomed"), ("2", "next")] {
                store
                    .send_user_message(&s.id, client_id, text, &[], None, T0)
                    .await
                    .unwrap();
            }
            lanes.push((c, s));
        }
        let mut now = T0;
        for attempt in 1..=3 {
            for (c, _) in &lanes {
                let claimed = store.claim(c, 1, LEASE, 20, false, now).await.unwrap();
                assert_eq!(claimed.items[0].attempt, attempt);
            }
            now += LEASE + 1;
        }
        let claims = futures_util::future::join_all(
            lanes
                .iter()
                .map(|(c, _)| store.claim(c, 1, LEASE, 20, false, now)),
        )
        .await;
        for ((c, s), claim) in lanes.iter().zip(claims) {
            let claim = claim.unwrap();
            assert_eq!(claim.dead_lettered.len(), 1, "{}", c.name);
            assert_eq!(claim.dead_lettered[0].session_id, s.id);
            assert_eq!(claim.items.len(), 1, "{}", c.name);
            assert_eq!(claim.items[0].message.text, "next");
        }
    }

    /// A claim that leases one item and must dead-letter the next on the way does both, once
    /// each (on PostgreSQL the one-statement claim gives the whole claim back to the slower one).
    pub async fn a_claim_leases_and_dead_letters_in_one_call(store: Store) {
        let ifc = interface(&store, "support").await;
        let waiting = session(&store, &ifc, T0).await;
        let abandoned = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        let fresh = store
            .send_user_message(&waiting.id, "1", "waiting", &[], None, T0)
            .await
            .unwrap();
        let doomed = store
            .send_user_message(&abandoned.id, "1", "doomed", &[], None, T0 + 1)
            .await
            .unwrap();
        let next = store
            .send_user_message(&abandoned.id, "2", "after it", &[], None, T0 + 2)
            .await
            .unwrap();
        // The waiting session's item is leased to a connector that holds it; the abandoned
        // session's item runs out of leases.
        let mut now = T0 + 10;
        let first = store.claim(&c, 1, LEASE, 20, false, now).await.unwrap();
        assert_eq!(first.items[0].message.id, fresh.message.id);
        let held = first.items[0].lease_id.clone();
        for attempt in 1..=3 {
            let items = store
                .claim(&c, 1, LEASE, 20, false, now)
                .await
                .unwrap()
                .items;
            assert_eq!(items[0].message.id, doomed.message.id);
            assert_eq!(items[0].attempt, attempt);
            now += LEASE + 1;
            // The held lease is renewed, so only the abandoned one runs out.
            store
                .extend_lease(&held, &c, 10 * LEASE, now)
                .await
                .unwrap();
        }
        // A message in a third session, older than the one to dead-letter, so that the claim
        // leases it before it comes to the dead letter.
        let third = session(&store, &ifc, T0).await;
        let older = store
            .send_user_message(&third.id, "1", "older", &[], None, T0 - 1)
            .await
            .unwrap();
        let claim = store.claim(&c, 5, LEASE, 20, true, now).await.unwrap();
        let mut leased: Vec<&str> = claim.items.iter().map(|i| i.message.id.as_str()).collect();
        leased.sort_unstable();
        let mut expected = vec![older.message.id.as_str(), next.message.id.as_str()];
        expected.sort_unstable();
        assert_eq!(
            leased, expected,
            "the older item and the one behind the dead letter"
        );
        assert!(claim.items.iter().all(|i| i.attempt == 1));
        assert_eq!(claim.dead_lettered.len(), 1);
        assert_eq!(claim.dead_lettered[0].message_id, doomed.message.id);
        for s in [&third.id, &abandoned.id] {
            assert!(claim.touched_sessions.contains(s), "{s} changed");
        }
        // The older item's log changed once for the lease and once for the typing reply.
        let log = store.transcript(&third.id).await.unwrap();
        assert_eq!(
            log.len(),
            2,
            "the message and one empty streaming reply: {log:?}"
        );
        assert_eq!(log[0].status, MessageStatus::Processing);
        assert_eq!(log[1].status, MessageStatus::Streaming);
        assert_eq!((log[0].rev, log[1].rev), (2, 3));
        assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
    }

    /// After a reply, the relay wakes waiting claims only if the session has more to deliver.
    pub async fn a_session_has_pending_items_until_its_last_is_answered(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        assert!(!store.has_pending(&s.id).await.unwrap());
        for (client_id, text) in [("1", "first"), ("2", "second")] {
            store
                .send_user_message(&s.id, client_id, text, &[], None, T0)
                .await
                .unwrap();
        }
        for (answer, more) in [("one", true), ("two", false)] {
            assert!(store.has_pending(&s.id).await.unwrap());
            let item = store.claim(&c, 1, LEASE, 20, false, T0 + 1).await.unwrap();
            assert!(store.has_pending(&s.id).await.unwrap(), "leased is pending");
            store
                .reply(&item.items[0].lease_id, &c, answer, T0 + 2)
                .await
                .unwrap();
            assert_eq!(
                store.has_pending(&s.id).await.unwrap(),
                more,
                "after {answer}"
            );
        }
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
            let items = store
                .claim(&c, 1, LEASE, 20, false, now)
                .await
                .unwrap()
                .items;
            assert_eq!(items[0].attempt, attempt);
            assert_eq!(items[0].message.id, sent.message.id);
            now += LEASE + 1; // the connector "crashes": its lease runs out
        }
        // No fourth delivery: the item is dead-lettered and the session moves on.
        let next = store.claim(&c, 1, LEASE, 20, false, now).await.unwrap();
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
            store.claim(&c, 1, LEASE, 20, false, now).await.unwrap();
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
        let items = store
            .claim(&scoped, 10, LEASE, 20, false, T0)
            .await
            .unwrap()
            .items;
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
                .claim(&other, 10, LEASE, 20, false, T0)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            store
                .claim(&scoped, 10, LEASE, 20, false, T0)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        store.touch_connector(&other, T0).await.unwrap();
        assert!(!store.agent_online(&sales, T0 - 1).await.unwrap());
        assert!(!store.connector_may_serve(&other, &sales).await.unwrap());
        assert!(store.connector_may_serve(&listed, &sales).await.unwrap());
        let items = store
            .claim(&listed, 10, LEASE, 20, false, T0)
            .await
            .unwrap()
            .items;
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
            .resume_session(&ifc, "r1", "t2", None, T0 - DAY, T0 + 1)
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
                .resume_session(&ifc, "nope", "t3", None, T0 - DAY, T0)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.session_for_token("t3").await.unwrap().is_none());
    }

    fn who(user_id: &str, name: &str) -> VisitorIdentity {
        VisitorIdentity {
            user_id: user_id.into(),
            name: Some(name.into()),
            email: Some(format!("{user_id}@shop.example")),
        }
    }

    pub async fn a_signed_in_visitors_session_is_joined_from_another_device_and_by_nobody_else(
        store: Store,
    ) {
        let ifc = interface(&store, "support").await;
        let s = store
            .create_session(
                &NewSession {
                    interface_id: ifc.clone(),
                    token_hash: "t1".into(),
                    resume_hash: "r1".into(),
                    identity: Some(who("u-1", "Ada")),
                    ..Default::default()
                },
                T0,
            )
            .await
            .unwrap();
        assert_eq!(s.identity(), Some(who("u-1", "Ada")));
        let idle_since = T0 - DAY;

        // Another device of the same user joins, with its own tokens; the name follows.
        let joined = store
            .join_identity_session(&ifc, &who("u-1", "Ada L."), "t2", "r2", idle_since, T0 + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(joined.id, s.id);
        assert_eq!(joined.identity_name.as_deref(), Some("Ada L."));
        assert_eq!(
            store.session(&s.id).await.unwrap().unwrap().identity(),
            Some(who("u-1", "Ada L."))
        );
        assert_eq!(
            store.session_for_token("t2").await.unwrap().unwrap().id,
            s.id
        );
        assert_eq!(
            store.session_for_token("t1").await.unwrap().unwrap().id,
            s.id
        );
        // The resume token is now the joining device's.
        let resume = |hash: &'static str, token: &'static str, user: Option<&'static str>| {
            let store = store.clone();
            let ifc = ifc.clone();
            async move {
                store
                    .resume_session(&ifc, hash, token, user, idle_since, T0 + 2)
                    .await
                    .unwrap()
                    .map(|row| row.id)
            }
        };
        assert_eq!(resume("r1", "t3", Some("u-1")).await, None);
        assert_eq!(resume("r2", "t4", Some("u-1")).await, Some(s.id.clone()));
        // Never another user's, never anonymously.
        assert_eq!(resume("r2", "t5", Some("u-2")).await, None);
        assert_eq!(resume("r2", "t6", None).await, None);
        assert!(store.session_for_token("t5").await.unwrap().is_none());
        assert!(
            store
                .join_identity_session(&ifc, &who("u-2", "Eve"), "t7", "r7", idle_since, T0)
                .await
                .unwrap()
                .is_none()
        );
        // An anonymous session is not joined by a signed-in visitor either.
        let anonymous = session(&store, &ifc, T0).await;
        assert_eq!(anonymous.identity(), None);
        // An idle session is not joined.
        assert!(
            store
                .join_identity_session(&ifc, &who("u-1", "Ada"), "t8", "r8", T0 + 10, T0 + 10)
                .await
                .unwrap()
                .is_none()
        );

        // Admins find the session by the visitor's id, name or email.
        for text in ["U-1", "ada l", "u-1@SHOP"] {
            let found = store
                .list_sessions(&SessionFilter {
                    text: Some(text.into()),
                    ..filter(10)
                })
                .await
                .unwrap();
            assert_eq!(ids(&found), [s.id.as_str()], "{text}");
        }
    }

    pub async fn idle_sessions_expire_by_their_interfaces_timeout(store: Store) {
        let quick = airlock_bridge::manage::create_interface(
            &store,
            CreateInterface {
                slug: "quick".into(),
                session_timeout_mins: Some(5),
                ..airlock_bridge::manage::demo_interface()
            },
            0,
        )
        .await
        .unwrap()
        .id;
        let patient = interface(&store, "patient").await;
        let a = session(&store, &quick, T0).await;
        let b = session(&store, &patient, T0).await;
        let status = |id: String| {
            let store = store.clone();
            async move { store.session(&id).await.unwrap().unwrap().status }
        };

        assert!(
            store
                .expire_idle_sessions(T0 + 4 * 60_000)
                .await
                .unwrap()
                .is_empty()
        );
        let expired = store.expire_idle_sessions(T0 + 6 * 60_000).await.unwrap();
        assert_eq!(expired, [a.id.as_str()]);
        assert_eq!(status(a.id.clone()).await, "expired");
        assert_eq!(status(b.id.clone()).await, "active");
        // Once only.
        assert!(
            store
                .expire_idle_sessions(T0 + 7 * 60_000)
                .await
                .unwrap()
                .is_empty()
        );

        // One session at a time, for a visitor's call.
        assert!(!store.expire_idle_session(&b.id, T0).await.unwrap());
        assert!(store.expire_idle_session(&b.id, T0 + 1).await.unwrap());
        assert!(!store.expire_idle_session(&b.id, T0 + 1).await.unwrap());
        assert_eq!(status(b.id.clone()).await, "expired");

        // A resume of an idle session expires it instead.
        let c = store
            .create_session(
                &NewSession {
                    interface_id: patient.clone(),
                    token_hash: "tc".into(),
                    resume_hash: "rc".into(),
                    ..Default::default()
                },
                T0,
            )
            .await
            .unwrap();
        assert!(
            store
                .resume_session(&patient, "rc", "tc2", None, T0 + 1, T0 + 2)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(status(c.id.clone()).await, "expired");
        assert!(store.session_for_token("tc2").await.unwrap().is_none());
    }

    fn filter(limit: u32) -> SessionFilter {
        SessionFilter {
            limit,
            ..SessionFilter::default()
        }
    }

    fn ids(rows: &[airlock_bridge::store::SessionRow]) -> Vec<&str> {
        rows.iter().map(|r| r.id.as_str()).collect()
    }

    pub async fn the_session_list_filters_by_period_and_text(store: Store) {
        let ifc = interface(&store, "support").await;
        let early = session(&store, &ifc, T0).await;
        store
            .send_user_message(&early.id, "1", "My ORDER 100% failed", &[], None, T0 + 10)
            .await
            .unwrap();
        let late = session(&store, &ifc, T0 + 1_000).await;
        store
            .send_user_message(&late.id, "1", "where is order_7?", &[], None, T0 + 1_010)
            .await
            .unwrap();
        let quiet = session(&store, &ifc, T0 + 2_000).await;

        let all = store.list_sessions(&filter(10)).await.unwrap();
        assert_eq!(
            ids(&all),
            [quiet.id.as_str(), late.id.as_str(), early.id.as_str()]
        );
        assert_eq!(
            all[1].to_summary().last_message.as_deref(),
            Some("where is order_7?")
        );
        assert_eq!(all[0].to_summary().last_message, None);

        // Active at or after `since`, begun before `until`.
        let since = SessionFilter {
            since: Some(T0 + 1_000),
            ..filter(10)
        };
        assert_eq!(
            ids(&store.list_sessions(&since).await.unwrap()),
            [quiet.id.as_str(), late.id.as_str()]
        );
        let until = SessionFilter {
            until: Some(T0 + 1_000),
            ..filter(10)
        };
        assert_eq!(
            ids(&store.list_sessions(&until).await.unwrap()),
            [early.id.as_str()]
        );

        // Text search ignores case, and `%`, `_` and `!` match only themselves.
        let text = |q: &str| SessionFilter {
            text: Some(q.to_string()),
            ..filter(10)
        };
        assert_eq!(
            ids(&store.list_sessions(&text("order")).await.unwrap()),
            [late.id.as_str(), early.id.as_str()]
        );
        assert_eq!(
            ids(&store.list_sessions(&text("100%")).await.unwrap()),
            [early.id.as_str()]
        );
        assert_eq!(
            ids(&store.list_sessions(&text("R_7")).await.unwrap()),
            [late.id.as_str()]
        );
        assert!(store.list_sessions(&text("r%7")).await.unwrap().is_empty());
        assert!(store.list_sessions(&text("!")).await.unwrap().is_empty());

        // Filters combine with paging.
        let first = store
            .list_sessions(&SessionFilter {
                text: Some("ORDER".into()),
                ..filter(1)
            })
            .await
            .unwrap();
        assert_eq!(ids(&first), [late.id.as_str()]);
        let next = store
            .list_sessions(&SessionFilter {
                text: Some("ORDER".into()),
                before: Some((first[0].last_activity_at, first[0].id.clone())),
                ..filter(1)
            })
            .await
            .unwrap();
        assert_eq!(ids(&next), [early.id.as_str()]);
    }

    pub async fn an_ended_session_refuses_new_messages(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let ended = store.end_session(&s.id).await.unwrap();
        assert_eq!(ended.status, "ended");
        let refused = store
            .send_user_message(&s.id, "1", "hello?", &[], None, T0 + 1)
            .await;
        assert!(matches!(refused, Err(StoreError::SessionClosed(status)) if status == "ended"));
        // Ending again is harmless; an unknown session is not found.
        assert_eq!(store.end_session(&s.id).await.unwrap().status, "ended");
        assert!(matches!(
            store.end_session("ses_nope").await,
            Err(StoreError::NotFound("session"))
        ));
    }

    pub async fn deleting_a_session_removes_everything_of_it(store: Store) {
        let ifc = interface(&store, "support").await;
        let doomed = session(&store, &ifc, T0).await;
        let kept = session(&store, &ifc, T0).await;
        let file = store
            .store_attachment(
                NewAttachment {
                    session_id: doomed.id.clone(),
                    interface_id: ifc.clone(),
                    filename: "a.txt".into(),
                    content_type: "text/plain".into(),
                    data: b"hello".to_vec(),
                },
                T0,
            )
            .await
            .unwrap();
        store
            .send_user_message(
                &doomed.id,
                "1",
                "one",
                std::slice::from_ref(&file.id),
                None,
                T0 + 1,
            )
            .await
            .unwrap();
        store
            .send_user_message(&doomed.id, "2", "two", &[], None, T0 + 2)
            .await
            .unwrap();
        store
            .send_user_message(&kept.id, "1", "kept", &[], None, T0 + 3)
            .await
            .unwrap();
        let c = connector(&store, "agent", &[]).await;
        let item = store
            .claim(&c, 1, LEASE, 20, false, T0 + 4)
            .await
            .unwrap()
            .items;
        assert_eq!(item[0].session.id, doomed.id);
        store
            .reply(&item[0].lease_id, &c, "ok", T0 + 5)
            .await
            .unwrap();

        let deleted = store.delete_session(&doomed.id).await.unwrap();
        assert_eq!(deleted.id, doomed.id);
        assert!(store.session(&doomed.id).await.unwrap().is_none());
        assert!(store.transcript(&doomed.id).await.unwrap().is_empty());
        assert!(store.attachment(&file.id).await.unwrap().is_none());
        // Its queued message is gone from the inbox; the other session's is still there.
        let next = store
            .claim(&c, 10, LEASE, 20, false, T0 + 6)
            .await
            .unwrap()
            .items;
        let texts: Vec<_> = next.iter().map(|i| i.message.text.as_str()).collect();
        assert_eq!(texts, ["kept"]);
        assert!(matches!(
            store.delete_session(&doomed.id).await,
            Err(StoreError::NotFound("session"))
        ));
    }

    pub async fn a_purge_deletes_inactive_sessions_but_not_work_in_flight(store: Store) {
        const DAY: i64 = 86_400_000;
        let ifc = interface(&store, "support").await;
        let c = connector(&store, "agent", &[]).await;
        // An old conversation, answered, with a file.
        let old = session(&store, &ifc, T0).await;
        let file = store
            .store_attachment(
                NewAttachment {
                    session_id: old.id.clone(),
                    interface_id: ifc.clone(),
                    filename: "a.txt".into(),
                    content_type: "text/plain".into(),
                    data: b"hello".to_vec(),
                },
                T0,
            )
            .await
            .unwrap();
        store
            .send_user_message(
                &old.id,
                "1",
                "old",
                std::slice::from_ref(&file.id),
                None,
                T0 + 1,
            )
            .await
            .unwrap();
        let item = store
            .claim(&c, 1, LEASE, 20, false, T0 + 2)
            .await
            .unwrap()
            .items;
        store
            .reply(&item[0].lease_id, &c, "ok", T0 + 3)
            .await
            .unwrap();
        // Just as old, but a message is leased to the agent, or still queued for it.
        let leased = session(&store, &ifc, T0).await;
        store
            .send_user_message(&leased.id, "1", "leased", &[], None, T0 + 4)
            .await
            .unwrap();
        assert_eq!(
            store
                .claim(&c, 1, LEASE, 20, false, T0 + 5)
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        let queued = session(&store, &ifc, T0).await;
        store
            .send_user_message(&queued.id, "1", "queued", &[], None, T0 + 6)
            .await
            .unwrap();
        // Recent enough to keep, and more old empty ones than one batch deletes.
        let recent = session(&store, &ifc, T0 + 40 * DAY).await;
        let extra = airlock_bridge::store::DELETE_BATCH as usize + 10;
        for _ in 0..extra {
            session(&store, &ifc, T0 + 7).await;
        }

        let cutoff = T0 + 30 * DAY;
        let expected = airlock_bridge::store::Removed {
            sessions: 1 + extra as u64,
            messages: 2,
            attachments: 1,
        };
        assert_eq!(store.count_inactive(cutoff).await.unwrap(), expected);
        assert_eq!(store.purge_inactive(cutoff).await.unwrap(), expected);
        assert!(store.session(&old.id).await.unwrap().is_none());
        assert!(store.transcript(&old.id).await.unwrap().is_empty());
        assert!(store.attachment(&file.id).await.unwrap().is_none());
        for kept in [&leased, &queued, &recent] {
            assert!(
                store.session(&kept.id).await.unwrap().is_some(),
                "{}",
                kept.id
            );
        }
        assert_eq!(
            store.transcript(&queued.id).await.unwrap()[0].text,
            "queued"
        );
        // Nothing left to purge; the work in flight still goes to the agent.
        assert_eq!(
            store.count_inactive(cutoff).await.unwrap(),
            airlock_bridge::store::Removed::default()
        );
        assert_eq!(
            store.purge_inactive(cutoff).await.unwrap(),
            airlock_bridge::store::Removed::default()
        );
        let next = store
            .claim(&c, 10, LEASE, 20, false, T0 + 10 * LEASE)
            .await
            .unwrap()
            .items;
        let mut texts: Vec<_> = next.iter().map(|i| i.message.text.as_str()).collect();
        texts.sort();
        assert_eq!(texts, ["leased", "queued"]);
    }

    pub async fn forgetting_a_visitor_deletes_all_of_theirs_and_nothing_else(store: Store) {
        use airlock_bridge::store::{Removed, VisitorSelector};
        let ifc = interface(&store, "support").await;
        let gone = session(&store, &ifc, T0).await;
        let other = session(&store, &ifc, T0).await;
        let file = store
            .store_attachment(
                NewAttachment {
                    session_id: gone.id.clone(),
                    interface_id: ifc.clone(),
                    filename: "pending.txt".into(),
                    content_type: "text/plain".into(),
                    data: b"not sent yet".to_vec(),
                },
                T0,
            )
            .await
            .unwrap();
        store
            .send_user_message(&gone.id, "1", "forget me", &[], None, T0 + 1)
            .await
            .unwrap();
        store
            .send_user_message(&other.id, "1", "keep me", &[], None, T0 + 2)
            .await
            .unwrap();

        let visitor = VisitorSelector::VisitorId(gone.visitor_id.clone());
        assert_eq!(
            visitor.describe(),
            format!("visitor_id={}", gone.visitor_id)
        );
        let removed = store.forget_visitor(&visitor).await.unwrap();
        assert_eq!(
            removed,
            Removed {
                sessions: 1,
                messages: 1,
                attachments: 1
            }
        );
        assert!(store.session(&gone.id).await.unwrap().is_none());
        assert!(store.attachment(&file.id).await.unwrap().is_none());
        // Its queued message no longer reaches the agent; the other visitor's does.
        let c = connector(&store, "agent", &[]).await;
        let items = store
            .claim(&c, 10, LEASE, 20, false, T0 + 3)
            .await
            .unwrap()
            .items;
        let texts: Vec<_> = items.iter().map(|i| i.message.text.as_str()).collect();
        assert_eq!(texts, ["keep me"]);
        // Forgetting again finds nothing.
        assert_eq!(
            store.forget_visitor(&visitor).await.unwrap(),
            Removed::default()
        );
    }

    pub async fn the_export_reads_the_messages_of_many_sessions_at_once(store: Store) {
        let ifc = interface(&store, "support").await;
        let a = session(&store, &ifc, T0).await;
        let b = session(&store, &ifc, T0).await;
        let empty = session(&store, &ifc, T0).await;
        for (i, text) in ["a1", "a2"].iter().enumerate() {
            store
                .send_user_message(&a.id, text, text, &[], None, T0 + i as i64)
                .await
                .unwrap();
        }
        store
            .send_user_message(&b.id, "b1", "b1", &[], None, T0 + 5)
            .await
            .unwrap();
        let grouped = store
            .messages_of_sessions(&[b.id.clone(), empty.id.clone(), a.id.clone()])
            .await
            .unwrap();
        let shape: Vec<(String, Vec<String>)> = grouped
            .into_iter()
            .map(|(id, ms)| (id, ms.into_iter().map(|m| m.text).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                (b.id.clone(), vec!["b1".to_string()]),
                (empty.id.clone(), vec![]),
                (a.id.clone(), vec!["a1".to_string(), "a2".to_string()]),
            ]
        );
        assert!(store.messages_of_sessions(&[]).await.unwrap().is_empty());
    }

    /// Dead-letters the session's only item by failing it without retry; returns its id.
    async fn dead_item(store: &Store, session_id: &str, c: &ConnectorRow, now: i64) -> String {
        store
            .send_user_message(session_id, "1", "help", &[], None, now)
            .await
            .unwrap();
        let item = store
            .claim(c, 1, LEASE, 20, false, now + 1)
            .await
            .unwrap()
            .items;
        store
            .stream_delta(&item[0].lease_id, c, "half an ans", now + 2)
            .await
            .unwrap();
        let failed = store
            .fail(&item[0].lease_id, c, "model down", false, now + 3)
            .await
            .unwrap();
        assert_eq!(failed.value.state, "dead");
        item[0].message.id.clone()
    }

    pub async fn a_retried_dead_letter_is_delivered_again_from_the_first_attempt(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        let id = dead_item(&store, &s.id, &c, T0).await;
        assert!(
            store
                .claim(&c, 1, LEASE, 20, false, T0 + 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );

        let retried = store.retry_dead_letter(&id, T0 + 20).await.unwrap();
        assert_eq!(retried.value.id, id);
        assert_eq!(retried.value.status, MessageStatus::Queued);
        assert!(store.dead_letters(10).await.unwrap().is_empty());
        // The failed reply no longer shows an error while the item waits again.
        let transcript = store.transcript(&s.id).await.unwrap();
        let reply = transcript
            .iter()
            .find(|m| m.role == Role::Assistant)
            .unwrap();
        assert_eq!(
            (reply.status, reply.error.as_deref()),
            (MessageStatus::Streaming, None)
        );
        assert_eq!(reply.text, "");

        let again = store
            .claim(&c, 1, LEASE, 20, false, T0 + 20)
            .await
            .unwrap()
            .items;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message.id, id);
        assert_eq!(again[0].attempt, 1, "attempts start over");
        assert_eq!(again[0].message.status, MessageStatus::Processing);
        store
            .reply(&again[0].lease_id, &c, "answered now", T0 + 21)
            .await
            .unwrap();
        let transcript = store.transcript(&s.id).await.unwrap();
        let replies: Vec<_> = transcript
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| (m.text.as_str(), m.status))
            .collect();
        assert_eq!(replies, [("answered now", MessageStatus::Complete)]);

        // Only dead items can be retried.
        assert!(matches!(
            store.retry_dead_letter(&id, T0 + 30).await,
            Err(StoreError::NotDeadLettered(state)) if state == "done"
        ));
        assert!(matches!(
            store.retry_dead_letter("msg_nope", T0 + 30).await,
            Err(StoreError::NotFound("dead letter"))
        ));
    }

    pub async fn a_discarded_dead_letter_leaves_the_failure_visible(store: Store) {
        let ifc = interface(&store, "support").await;
        let s = session(&store, &ifc, T0).await;
        let c = connector(&store, "agent", &[]).await;
        let id = dead_item(&store, &s.id, &c, T0).await;
        store.discard_dead_letter(&id).await.unwrap();
        assert!(store.dead_letters(10).await.unwrap().is_empty());
        let transcript = store.transcript(&s.id).await.unwrap();
        let statuses: Vec<_> = transcript.iter().map(|m| (m.role, m.status)).collect();
        assert_eq!(
            statuses,
            [
                (Role::User, MessageStatus::Failed),
                (Role::Assistant, MessageStatus::Failed)
            ]
        );
        assert!(transcript[1].error.is_some());
        assert!(matches!(
            store.discard_dead_letter(&id).await,
            Err(StoreError::NotFound("dead letter"))
        ));
        // A live item is not a dead letter.
        let other = session(&store, &ifc, T0).await;
        let live = store
            .send_user_message(&other.id, "1", "hi", &[], None, T0 + 10)
            .await
            .unwrap();
        assert!(matches!(
            store.discard_dead_letter(&live.message.id).await,
            Err(StoreError::NotDeadLettered(state)) if state == "queued"
        ));
    }

    pub async fn leases_in_flight_are_counted_per_connector(store: Store) {
        let ifc = interface(&store, "support").await;
        let one = connector(&store, "one", &[]).await;
        let two = connector(&store, "two", &[]).await;
        for i in 0..3 {
            let s = session(&store, &ifc, T0).await;
            store
                .send_user_message(&s.id, "1", &format!("m{i}"), &[], None, T0 + i)
                .await
                .unwrap();
        }
        store
            .claim(&one, 2, LEASE, 20, false, T0 + 10)
            .await
            .unwrap();
        store
            .claim(&two, 5, LEASE, 20, false, T0 + 10)
            .await
            .unwrap();
        let mut counts = store.leases_in_flight(T0 + 11).await.unwrap();
        counts.sort();
        let mut expected = vec![(one.id.clone(), 2), (two.id.clone(), 1)];
        expected.sort();
        assert_eq!(counts, expected);
        // Expired leases are not in flight.
        assert!(
            store
                .leases_in_flight(T0 + 10 + LEASE)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn stats_count_a_known_period(store: Store) {
        const HOUR: i64 = 3_600_000;
        // A period starting at a whole hour, so bucket 0 starts at `start`.
        let start = (T0 / HOUR) * HOUR;
        let ifc = interface(&store, "support").await;
        let other = interface(&store, "sales").await;
        let c = connector(&store, "agent", &[]).await;
        let new_session = |referrer: Option<&str>, at: i64| {
            let store = store.clone();
            let ifc = ifc.clone();
            let referrer = referrer.map(str::to_string);
            async move {
                store
                    .create_session(
                        &NewSession {
                            interface_id: ifc,
                            token_hash: new_id("t"),
                            resume_hash: new_id("r"),
                            referrer,
                            ..NewSession::default()
                        },
                        at,
                    )
                    .await
                    .unwrap()
            }
        };
        // Hour 0: two sessions from the same referrer, each message answered (100 ms, 300 ms).
        // Hour 2: one session, answered in 1,000 ms, and one message that is dead-lettered.
        let a = new_session(Some("https://news.example/"), start).await;
        let b = new_session(Some("https://news.example/"), start + 10).await;
        let d = new_session(Some("https://blog.example/"), start + 2 * HOUR).await;
        let answer = |s: String, at: i64, latency: i64| {
            let store = store.clone();
            let c = c.clone();
            async move {
                store
                    .send_user_message(&s, &new_id("c"), "q", &[], None, at)
                    .await
                    .unwrap();
                let item = store
                    .claim(&c, 1, LEASE, 20, false, at)
                    .await
                    .unwrap()
                    .items;
                store
                    .reply(&item[0].lease_id, &c, "a", at + latency)
                    .await
                    .unwrap();
            }
        };
        answer(a.id.clone(), start + 100, 100).await;
        answer(b.id.clone(), start + 200, 300).await;
        answer(d.id.clone(), start + 2 * HOUR + 100, 1_000).await;
        dead_item(&store, &d.id, &c, start + 2 * HOUR + 5_000).await;
        // Outside the period or another interface: not counted.
        let before = session(&store, &ifc, start - 1).await;
        store
            .send_user_message(&before.id, "x", "x", &[], None, start - 1)
            .await
            .unwrap();
        let elsewhere = session(&store, &other, start + 5).await;
        store
            .send_user_message(&elsewhere.id, "x", "x", &[], None, start + 5)
            .await
            .unwrap();

        let stats = store
            .stats(&StatsQuery {
                interface_id: Some(ifc.clone()),
                since: start,
                until: start + 3 * HOUR,
                origin: start,
                bucket_ms: HOUR,
            })
            .await
            .unwrap();
        assert_eq!(stats.sessions, 3);
        assert_eq!(stats.visitors, 3);
        assert_eq!(stats.user_messages, 4);
        // Three answers and the dead-lettered one's failed reply.
        assert_eq!(stats.assistant_messages, 4);
        let mut latencies = stats.latencies_ms.clone();
        latencies.sort();
        assert_eq!(latencies, [100, 300, 1_000]);
        assert_eq!(stats.sessions_by_bucket, [(0, 2), (2, 1)]);
        assert_eq!(stats.messages_by_bucket, [(0, 4), (2, 4)]);
        let hour0 = (start / HOUR) % 24;
        let mut expected_hours = vec![(hour0, 4), ((hour0 + 2) % 24, 4)];
        expected_hours.sort();
        assert_eq!(stats.messages_by_hour, expected_hours);
        assert_eq!(
            stats.top_referrers,
            [
                ("https://news.example/".to_string(), 2),
                ("https://blog.example/".to_string(), 1)
            ]
        );
        assert_eq!(stats.dead_letters, 1);

        // Without the interface filter the other interface's session counts too.
        let all = store
            .stats(&StatsQuery {
                interface_id: None,
                since: start,
                until: start + 3 * HOUR,
                origin: start,
                bucket_ms: HOUR,
            })
            .await
            .unwrap();
        assert_eq!((all.sessions, all.user_messages), (4, 5));
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_database_is_refused() {
    for url in ["sqlite::memory:", "sqlite://airlock.db?mode=memory"] {
        let err = Store::connect(url, &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InMemorySqlite), "{url}: {err:?}");
        assert!(err.to_string().contains("give a file"), "{err}");
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
    a_claimed_item_is_its_message_as_the_claim_left_it,
    a_claim_of_several_items_gives_each_its_own_history,
    sessions_are_served_in_parallel_by_several_connectors,
    an_expired_lease_is_handed_out_again_under_a_new_lease,
    calls_on_a_superseded_lease_are_refused,
    a_repeated_reply_returns_the_stored_one,
    streamed_deltas_accumulate_in_one_reply,
    a_claim_with_typing_starts_each_reply_with_its_lease,
    fail_with_retry_backs_off_and_keeps_the_session_in_order,
    an_item_is_dead_lettered_after_max_attempts,
    claims_that_must_dead_letter_at_once_each_do_it,
    a_claim_leases_and_dead_letters_in_one_call,
    a_session_has_pending_items_until_its_last_is_answered,
    the_reaper_dead_letters_an_abandoned_last_attempt,
    a_scoped_connector_claims_only_its_interfaces,
    sessions_resume_with_their_resume_token,
    a_signed_in_visitors_session_is_joined_from_another_device_and_by_nobody_else,
    idle_sessions_expire_by_their_interfaces_timeout,
    the_session_list_filters_by_period_and_text,
    an_ended_session_refuses_new_messages,
    deleting_a_session_removes_everything_of_it,
    the_export_reads_the_messages_of_many_sessions_at_once,
    a_retried_dead_letter_is_delivered_again_from_the_first_attempt,
    a_discarded_dead_letter_leaves_the_failure_visible,
    leases_in_flight_are_counted_per_connector,
    stats_count_a_known_period,
    an_interface_listing_connectors_is_claimed_only_by_them,
    interfaces_are_renamed_and_deleted_with_their_sessions,
    a_purge_deletes_inactive_sessions_but_not_work_in_flight,
    forgetting_a_visitor_deletes_all_of_theirs_and_nothing_else,
);
