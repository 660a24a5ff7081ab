//! Wake-ups that end a waiting claim or long-poll the moment there is something to return.
//!
//! Inside one bridge process they are [`Notify`]s: one for "the inbox changed", one per session
//! being watched. On PostgreSQL several replicas share one database, so every change is also
//! announced with `NOTIFY` on [`CHANNEL`], and each replica runs one listener
//! ([`listen_to_other_replicas`]) that turns the other replicas' announcements into its own
//! in-process wake-ups. A notification can be lost (the listener's connection drops, the database
//! restarts): the listener then connects and `LISTEN`s afresh and wakes every waiter once, which
//! covers whatever was sent in between. While a replica is not listening (before the first
//! connection, and from a loss until the next), its waiters on PostgreSQL look again every
//! [`FALLBACK_RECHECK`]; while it listens they do not, so 10,000 idle visitors cost no queries.
//! A connection that dies without a word is noticed by the listener's heartbeat (a notification
//! it sends itself every [`HEARTBEAT`]), after which it is treated as lost.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};
use crate::tokens::new_id;

/// The PostgreSQL channel replicas announce changes on.
pub const CHANNEL: &str = "airlock_wakeup";

/// On PostgreSQL, while this replica is not listening for the others' notifications, a waiting
/// request looks again this often, so that another replica's write is seen within this delay.
pub const FALLBACK_RECHECK: Duration = Duration::from_secs(5);

/// How often the listener sends itself a notification, through another connection, and how long
/// it waits to hear anything before it takes its connection for dead. A connection can die
/// without a word (a NAT or firewall between the bridge and the database dropping it while it
/// is quiet), and then only this notices.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Whether the listener heard anything since its last heartbeat went out.
#[derive(Debug, Default)]
struct Heartbeat {
    awaiting_echo: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Beat {
    /// Send the next heartbeat.
    Send,
    /// Nothing came since the last one: the connection is taken for dead.
    Silent,
}

impl Heartbeat {
    fn beat(&mut self) -> Beat {
        if self.awaiting_echo {
            Beat::Silent
        } else {
            self.awaiting_echo = true;
            Beat::Send
        }
    }

    /// Any notification, the echo of a heartbeat or another replica's, shows the connection works.
    fn heard(&mut self) {
        self.awaiting_echo = false;
    }
}

/// First wait before reconnecting a lost listener; doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Longest payload sent; PostgreSQL refuses payloads of 8000 bytes or more. A longer change list
/// is sent as "everything changed".
const MAX_PAYLOAD: usize = 7000;

/// Something that changed and whose waiters should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The inbox: waiting claims.
    Inbox,
    /// One session's messages: its long-polls and event streams.
    Session(&'a str),
}

/// This replica's wake-ups.
pub struct Wakeups {
    inbox: Notify,
    /// How many times the waiting claims were woken: a claim that found nothing may skip looking
    /// again while this has not moved (see `Relay::claim`).
    inbox_version: AtomicU64,
    sessions: Mutex<SessionWaiters>,
    /// Whether the listener is connected and `LISTEN`ing, so no other replica's change is missed.
    listening: AtomicBool,
    /// Tags this replica's notifications, so its listener skips them (they were woken locally).
    origin: String,
}

#[derive(Default)]
struct SessionWaiters {
    by_session: HashMap<String, Weak<Notify>>,
    prune_at: usize,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            inbox: Notify::new(),
            inbox_version: AtomicU64::new(0),
            sessions: Mutex::default(),
            listening: AtomicBool::new(false),
            origin: new_id("replica"),
        }
    }
}

impl Wakeups {
    /// Whether the other replicas' changes reach this one as they happen (see the module doc).
    /// Read by a waiter after it registered for its wake-up: a change of this flag wakes every
    /// waiter, so none keeps a wait chosen under the old value.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
        self.everything_changed();
    }

    /// Wakes every waiting claim on this replica.
    pub fn inbox_changed(&self) {
        self.inbox_version.fetch_add(1, Ordering::SeqCst);
        self.inbox.notify_waiters();
    }

    /// Moves on each time the waiting claims are woken. Read by a claim after it registered for
    /// its wake-up and before it looks at the database.
    pub fn inbox_version(&self) -> u64 {
        self.inbox_version.load(Ordering::SeqCst)
    }

    /// Wakes every long-poll of `session_id` on this replica.
    pub fn session_changed(&self, session_id: &str) {
        let waiters = self.sessions.lock().expect("wake-up registry poisoned");
        if let Some(notify) = waiters.by_session.get(session_id).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter on this replica: after notifications may have been missed.
    pub fn everything_changed(&self) {
        self.inbox_changed();
        let waiters = self.sessions.lock().expect("wake-up registry poisoned");
        for notify in waiters.by_session.values().filter_map(Weak::upgrade) {
            notify.notify_waiters();
        }
    }

    /// Wakes this replica's waiters for `changes`.
    pub fn changed(&self, changes: &[Change<'_>]) {
        for change in changes {
            match change {
                Change::Inbox => self.inbox_changed(),
                Change::Session(session_id) => self.session_changed(session_id),
            }
        }
    }

    /// The wake-up of waiting claims.
    pub(crate) fn inbox(&self) -> &Notify {
        &self.inbox
    }

    /// The wake-up of one session, shared by all its waiters and dropped with the last of them.
    pub(crate) fn session(&self, session_id: &str) -> Arc<Notify> {
        let mut waiters = self.sessions.lock().expect("wake-up registry poisoned");
        if let Some(notify) = waiters.by_session.get(session_id).and_then(Weak::upgrade) {
            return notify;
        }
        let notify = Arc::new(Notify::new());
        waiters
            .by_session
            .insert(session_id.to_string(), Arc::downgrade(&notify));
        if waiters.by_session.len() >= waiters.prune_at {
            waiters.by_session.retain(|_, w| w.strong_count() > 0);
            waiters.prune_at = (waiters.by_session.len() * 2).max(64);
        }
        notify
    }

    /// The `NOTIFY` payload announcing `changes` to the other replicas: this replica's tag, then
    /// `inbox`, `session:<id>` or `all`, separated by spaces.
    pub fn payload(&self, changes: &[Change<'_>]) -> String {
        let mut payload = self.origin.clone();
        for change in changes {
            match change {
                Change::Inbox => payload.push_str(" inbox"),
                Change::Session(session_id) => {
                    payload.push_str(" session:");
                    payload.push_str(session_id);
                }
            }
        }
        if payload.len() > MAX_PAYLOAD {
            payload = format!("{} all", self.origin);
        }
        payload
    }

    /// Wakes this replica's waiters for a payload another replica sent; its own are skipped.
    pub fn apply(&self, payload: &str) {
        let mut words = payload.split_whitespace();
        if words.next() == Some(self.origin.as_str()) {
            return;
        }
        for word in words {
            if word == "inbox" {
                self.inbox_changed();
            } else if let Some(session_id) = word.strip_prefix("session:") {
                self.session_changed(session_id);
            } else if word == "all" {
                self.everything_changed();
            }
        }
    }
}

/// Changes not yet announced to the other replicas, merged: each session named once.
#[derive(Debug, Default)]
pub struct Unannounced {
    inbox: bool,
    sessions: BTreeSet<String>,
}

impl Unannounced {
    pub fn add(&mut self, changes: &[Change<'_>]) {
        for change in changes {
            match change {
                Change::Inbox => self.inbox = true,
                Change::Session(session_id) => {
                    self.sessions.insert((*session_id).to_owned());
                }
            }
        }
    }

    fn merge(&mut self, other: Unannounced) {
        self.inbox |= other.inbox;
        self.sessions.extend(other.sessions);
    }

    fn changes(&self) -> Vec<Change<'_>> {
        let inbox = self.inbox.then_some(Change::Inbox);
        inbox
            .into_iter()
            .chain(self.sessions.iter().map(|id| Change::Session(id)))
            .collect()
    }
}

/// How many times a `NOTIFY` to the other replicas is tried, the first retry after
/// [`NOTIFY_RETRY`] and each later one after four times the last pause.
const NOTIFY_ATTEMPTS: u32 = 3;
const NOTIFY_RETRY: Duration = Duration::from_millis(100);

/// Until the last sender of `queue` is gone: announces this replica's changes to the others
/// (PostgreSQL). One `NOTIFY` is sent at a time, carrying every change queued while the one
/// before was on its way, so that under load one notification (a transaction with a commit of
/// its own) covers many writes instead of one each; a change made while none is on its way goes
/// out at once.
pub async fn announce_to_other_replicas(
    store: Store,
    wakeups: Arc<Wakeups>,
    mut queue: mpsc::UnboundedReceiver<Unannounced>,
) {
    let mut queued = Vec::new();
    while queue.recv_many(&mut queued, 256).await > 0 {
        let mut batch = Unannounced::default();
        for changes in queued.drain(..) {
            batch.merge(changes);
        }
        let payload = wakeups.payload(&batch.changes());
        // A listening replica does not look again by itself, so a notification that cannot be
        // sent is tried again a few times before its waiters are left to their deadline.
        let mut pause = NOTIFY_RETRY;
        for attempt in 1..=NOTIFY_ATTEMPTS {
            match store.notify(CHANNEL, &payload).await {
                Ok(()) => break,
                // Shutting down: the pool closed under the last notifications.
                Err(StoreError::Database(sqlx::Error::PoolClosed)) => return,
                Err(err) if attempt == NOTIFY_ATTEMPTS => tracing::warn!(
                    error = %err,
                    "could not notify the other replicas; their waiters see this change when \
                     their wait ends (at most {} s) or their listener reconnects",
                    airlock_shared::MAX_CLAIM_WAIT_SECS
                ),
                Err(err) => {
                    tracing::debug!(error = %err, attempt, "could not notify the other replicas; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                }
            }
        }
    }
}

/// Until `shutdown`: listens on [`CHANNEL`] and wakes this replica's waiters for what other
/// replicas announce. A lost connection is re-opened with back-off, and every (re)connect wakes
/// everything once, since notifications sent meanwhile are gone. Returns at once on SQLite.
pub async fn listen_to_other_replicas(
    store: Store,
    wakeups: Arc<Wakeups>,
    shutdown: CancellationToken,
) {
    let mut backoff = RECONNECT_MIN;
    let mut lost_once = false;
    loop {
        let connected = tokio::select! {
            connected = store.listen(CHANNEL) => connected,
            _ = shutdown.cancelled() => return,
        };
        let mut listener = match connected {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for other replicas' wake-ups; waits fall back to re-checking every {} s",
                    FALLBACK_RECHECK.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        if lost_once {
            tracing::info!("listening for other replicas' wake-ups again");
        }
        backoff = RECONNECT_MIN;
        // Whatever was sent before this LISTEN took effect is covered by waking everyone.
        wakeups.set_listening(true);
        let mut heartbeat = Heartbeat::default();
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        // Each beat a whole period after the last one was handled: ticks missed while a
        // heartbeat was being sent (or the process stalled) must not come in a burst, which
        // would find the echo missing before it had time to arrive.
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = beat.tick() => {
                    if heartbeat.beat() == Beat::Silent {
                        tracing::warn!(
                            "the wake-up listener heard nothing, not even its own heartbeat, for {} s; reconnecting",
                            HEARTBEAT.as_secs()
                        );
                        lost_once = true;
                        break;
                    }
                    // A failure here means no echo, which the next beat notices.
                    if let Err(err) = store.notify(CHANNEL, &wakeups.payload(&[])).await {
                        tracing::debug!(error = %err, "could not send the listener's heartbeat");
                    }
                    continue;
                }
                _ = shutdown.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    heartbeat.heard();
                    wakeups.apply(notification.payload());
                }
                // The connection dropped. Listen afresh rather than let sqlx reconnect on the
                // next call: only then is it known when listening resumed.
                Ok(None) => {
                    tracing::info!("the wake-up listener's connection dropped; reconnecting");
                    lost_once = true;
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "lost the listener for other replicas' wake-ups");
                    lost_once = true;
                    break;
                }
            }
        }
        // Until listening again, waiters look again every FALLBACK_RECHECK.
        wakeups.set_listening(false);
        drop(listener);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_wakes_what_it_names_on_other_replicas_only() {
        let sender = Wakeups::default();
        let receiver = Wakeups::default();
        let session = receiver.session("s1");
        let other = receiver.session("s2");
        let woken = session.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let not_woken = other.notified();
        tokio::pin!(not_woken);
        not_woken.as_mut().enable();
        let claim = receiver.inbox().notified();
        tokio::pin!(claim);
        claim.as_mut().enable();

        let payload = sender.payload(&[Change::Inbox, Change::Session("s1")]);
        // Its own notification is skipped by the sender.
        sender.apply(&payload);
        receiver.apply(&payload);

        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        assert!(claim.as_mut().poll(&mut cx).is_ready());
        assert!(not_woken.as_mut().poll(&mut cx).is_pending());
    }

    /// A waiter that chose its wait under one value of `listening` is woken when it changes, so
    /// none sleeps past the fallback re-check once the listener is lost.
    #[test]
    fn losing_or_regaining_the_listener_wakes_every_waiter() {
        let wakeups = Wakeups::default();
        assert!(
            !wakeups.listening(),
            "not listening until the listener connects"
        );
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for listening in [true, false] {
            let session = wakeups.session("s1");
            let long_poll = session.notified();
            tokio::pin!(long_poll);
            long_poll.as_mut().enable();
            let claim = wakeups.inbox().notified();
            tokio::pin!(claim);
            claim.as_mut().enable();

            wakeups.set_listening(listening);
            assert_eq!(wakeups.listening(), listening);
            assert!(long_poll.as_mut().poll(&mut cx).is_ready());
            assert!(claim.as_mut().poll(&mut cx).is_ready());
        }
    }

    /// A heartbeat goes out on each beat while something was heard since the last one; a beat
    /// with nothing heard since the last heartbeat declares the connection dead.
    #[test]
    fn a_listener_that_hears_nothing_between_two_beats_is_taken_for_dead() {
        let mut heartbeat = Heartbeat::default();
        assert_eq!(heartbeat.beat(), Beat::Send);
        heartbeat.heard();
        assert_eq!(heartbeat.beat(), Beat::Send);
        heartbeat.heard();
        heartbeat.heard();
        assert_eq!(heartbeat.beat(), Beat::Send);
        assert_eq!(heartbeat.beat(), Beat::Silent);
    }

    /// The heartbeat's payload names no change: the replicas that hear it wake nobody.
    #[test]
    fn a_heartbeat_wakes_nobody() {
        let sender = Wakeups::default();
        let receiver = Wakeups::default();
        let session = receiver.session("s1");
        let long_poll = session.notified();
        tokio::pin!(long_poll);
        long_poll.as_mut().enable();
        let claim = receiver.inbox().notified();
        tokio::pin!(claim);
        claim.as_mut().enable();
        receiver.apply(&sender.payload(&[]));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(long_poll.as_mut().poll(&mut cx).is_pending());
        assert!(claim.as_mut().poll(&mut cx).is_pending());
    }

    /// Changes queued while a notification was on its way go out together, each session once.
    #[test]
    fn queued_changes_are_announced_together_each_once() {
        let mut batch = Unannounced::default();
        let mut more = Unannounced::default();
        batch.add(&[Change::Session("s2"), Change::Session("s1")]);
        more.add(&[Change::Session("s1"), Change::Inbox]);
        batch.merge(more);
        assert_eq!(
            batch.changes(),
            [Change::Inbox, Change::Session("s1"), Change::Session("s2")]
        );
        let wakeups = Wakeups::default();
        assert!(
            wakeups
                .payload(&batch.changes())
                .ends_with(" inbox session:s1 session:s2")
        );
    }

    #[test]
    fn an_overlong_change_list_becomes_everything() {
        let wakeups = Wakeups::default();
        let ids: Vec<String> = (0..1000).map(|i| format!("sess_{i:020}")).collect();
        let changes: Vec<Change<'_>> = ids.iter().map(|id| Change::Session(id)).collect();
        let payload = wakeups.payload(&changes);
        assert!(payload.len() < MAX_PAYLOAD);
        assert!(payload.ends_with(" all"));
    }
}
