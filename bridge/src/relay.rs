//! The relay's moving parts above storage: waiting claims and long-polls, and the wake-ups that
//! end those waits the moment there is something to return.
//!
//! A write commits first, then wakes the waiters; a waiter registers for its wake-up *before* it
//! looks at the database, so a write landing between the look and the wait is never missed.
//! Waits end early on shutdown so a graceful stop never hangs on a 50-second claim.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_shared::admin::AdminEvent;
use airlock_shared::connector::{ClaimedItem, FailOutcome};
use airlock_shared::{Message, MessageStatus, Role, time_from_millis};
use tokio::sync::futures::Notified;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::app::AGENT_ONLINE_WINDOW_MS;
use crate::clock::Clock;
use crate::store::{Backend, ConnectorRow, DeadLettered, Store, StoreError, snippet};
use crate::wakeups::{Change, FALLBACK_RECHECK, Unannounced, Wakeups, announce_to_other_replicas};

/// How often expired last-attempt leases are dead-lettered without waiting for a claim.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// How often (by the relay's clock) idle sessions are marked expired. A visitor call on an idle
/// session expires it at once anyway; the sweep keeps the admins' view and the stats true.
const SESSION_SWEEP_MS: i64 = 60_000;

/// How often sessions past the retention period are looked for (the first time at start-up).
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// One day in epoch milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Largest batch of messages one long-poll answer carries.
const MESSAGE_PAGE: u32 = 200;

/// How long a connector's claim that got all there was is believed, while no change woke the
/// claims: bounds what could make an item claimable without waking them (an interface's
/// connectors changed from the CLI, which has no relay to wake).
const EMPTY_CLAIM_BELIEVED_FOR: Duration = Duration::from_secs(1);

/// Errors of relay operations are storage errors.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The relay: storage plus wake-ups plus the clock, and the admins' live tail of what it does.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Wakeups>,
    shutdown: CancellationToken,
    /// The admins' live tail. Per replica by design: unlike wake-ups these events are not sent
    /// to other replicas, so a tail shows what its own replica did.
    admin_events: broadcast::Sender<AdminEvent>,
    /// Connectors this replica has announced as online, with when each last called.
    connectors_online: Arc<Mutex<HashMap<String, (String, i64)>>>,
    /// Days of inactivity after which sessions are deleted; 0 keeps them.
    retention_days: u32,
    /// Where changes go to be announced to the other replicas (PostgreSQL only).
    announcer: Option<mpsc::UnboundedSender<Unannounced>>,
    /// Each connector's last claim that got all there was (see [`Relay::claim`]).
    empty_claims: Arc<Mutex<HashMap<String, EmptyClaim>>>,
    /// How long a wait for messages that found only the visitor's own new ones waits on for the
    /// agent's pickup (see [`Relay::messages`]).
    pickup_wait: Duration,
    /// Connectors' claims in progress on this replica, waiting or not: while there is one, a
    /// visitor's new message is likely picked up within milliseconds.
    claims_open: Arc<AtomicUsize>,
}

/// Counts a claim in [`Relay::claims_open`] while it lives (also when its request is dropped).
struct OpenClaim(Arc<AtomicUsize>);

impl OpenClaim {
    fn new(count: &Arc<AtomicUsize>) -> OpenClaim {
        count.fetch_add(1, Ordering::Relaxed);
        OpenClaim(count.clone())
    }
}

impl Drop for OpenClaim {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A claim that got all there was for its connector (fewer items than it asked for).
struct EmptyClaim {
    /// [`Wakeups::inbox_version`] before it looked.
    inbox_version: u64,
    /// [`EMPTY_CLAIM_BELIEVED_FOR`] after it looked.
    believed_until: tokio::time::Instant,
}

impl Relay {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        admin_events: broadcast::Sender<AdminEvent>,
    ) -> Self {
        let wakeups = Arc::new(Wakeups::default());
        let announcer = (store.backend() == Backend::Postgres).then(|| {
            let (announcer, queue) = mpsc::unbounded_channel();
            tokio::spawn(announce_to_other_replicas(
                store.clone(),
                wakeups.clone(),
                queue,
            ));
            announcer
        });
        Relay {
            store,
            clock,
            wakeups,
            shutdown,
            admin_events,
            connectors_online: Arc::default(),
            retention_days: 0,
            announcer,
            empty_claims: Arc::default(),
            pickup_wait: Duration::ZERO,
            claims_open: Arc::default(),
        }
    }

    /// Makes a wait for messages that finds only the visitor's own new ones wait up to
    /// `pickup_wait` more for the agent to pick them up (see [`Relay::messages`]).
    pub fn with_pickup_wait(mut self, pickup_wait: Duration) -> Self {
        self.pickup_wait = pickup_wait;
        self
    }

    /// Deletes sessions inactive for more than `days` days (0: never), from the reaper.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// Tells the admins' live tails on this replica; nobody listening is fine.
    pub fn publish(&self, event: AdminEvent) {
        let _ = self.admin_events.send(event);
    }

    /// Resolves when the bridge starts shutting down.
    pub async fn shutting_down(&self) {
        self.shutdown.cancelled().await;
    }

    fn publish_message(&self, session_id: &str, message: &Message) {
        self.publish(AdminEvent::Message {
            session_id: session_id.to_string(),
            message_id: message.id.clone(),
            role: message.role,
            status: message.status,
            snippet: snippet(&message.text),
            at: message.updated_at,
        });
    }

    fn publish_dead_letter(&self, item: DeadLettered) {
        self.publish(AdminEvent::DeadLetter {
            session_id: item.session_id,
            message_id: item.message_id,
            error: item.error,
            at: time_from_millis(self.now()),
        });
    }

    /// Notes that a connector called; the first call after a silence is announced as online.
    fn connector_seen(&self, connector: &ConnectorRow) {
        let now = self.now();
        let announce = {
            let mut online = self
                .connectors_online
                .lock()
                .expect("connector registry poisoned");
            online
                .insert(connector.id.clone(), (connector.name.clone(), now))
                .is_none()
        };
        if announce {
            self.publish(AdminEvent::Connector {
                connector_id: connector.id.clone(),
                name: connector.name.clone(),
                online: true,
                at: time_from_millis(now),
            });
        }
    }

    /// Announces as offline the connectors silent for longer than the online window.
    fn expire_connectors(&self) {
        let now = self.now();
        let gone: Vec<(String, String)> = {
            let mut online = self
                .connectors_online
                .lock()
                .expect("connector registry poisoned");
            let gone = online
                .iter()
                .filter(|(_, (_, seen))| now - seen > AGENT_ONLINE_WINDOW_MS)
                .map(|(id, (name, _))| (id.clone(), name.clone()))
                .collect::<Vec<_>>();
            for (id, _) in &gone {
                online.remove(id);
            }
            gone
        };
        for (connector_id, name) in gone {
            self.publish(AdminEvent::Connector {
                connector_id,
                name,
                online: false,
                at: time_from_millis(now),
            });
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether every change reaches this replica's waiters as it happens: always on SQLite (one
    /// bridge per database); on PostgreSQL while its listener for the other replicas' changes is
    /// connected (see `Wakeups::listening`).
    pub fn hears_every_change(&self) -> bool {
        self.store.backend() == Backend::Sqlite || self.wakeups.listening()
    }

    /// Whether the bridge is shutting down: open streams should end.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Stores a visitor message (idempotent by `client_id`) and wakes waiting claims.
    pub async fn send(
        &self,
        session_id: &str,
        client_id: &str,
        text: &str,
        attachments: &[String],
        context: Option<&serde_json::Value>,
    ) -> Result<crate::store::SendOutcome> {
        let outcome = self
            .store
            .send_user_message(
                session_id,
                client_id,
                text,
                attachments,
                context,
                self.now(),
            )
            .await?;
        if outcome.created {
            self.changed(&[Change::Inbox, Change::Session(session_id)]);
            self.publish_message(session_id, &outcome.message);
        }
        Ok(outcome)
    }

    /// After a message was stored outside the relay (the PHP bridge's API): wakes the session's
    /// waiters, and waiting claims when `queued` (a new inbox item), and tells the admins.
    pub fn message_stored(&self, session_id: &str, message: &Message, queued: bool) {
        if queued {
            self.changed(&[Change::Session(session_id), Change::Inbox]);
        } else {
            self.changed(&[Change::Session(session_id)]);
        }
        self.publish_message(session_id, message);
    }

    /// After an interface's connectors changed: the waiting claims look again, since some may
    /// now lease what they could not (on every replica).
    pub fn connectors_reassigned(&self) {
        self.changed(&[Change::Inbox]);
    }

    /// Leases up to `max` items, waiting up to `wait` for one to become available; with `typing`
    /// the visitors see the agent typing for each item leased (see [`Store::claim`]).
    pub async fn claim(
        &self,
        connector: &ConnectorRow,
        max: u32,
        wait: Duration,
        lease_ms: i64,
        history: u32,
        typing: bool,
    ) -> Result<Vec<ClaimedItem>> {
        let _open = OpenClaim::new(&self.claims_open);
        let deadline = tokio::time::Instant::now() + wait;
        self.store.touch_connector(connector, self.now()).await?;
        self.connector_seen(connector);
        loop {
            let notified = self.wakeups.inbox().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let inbox_version = self.wakeups.inbox_version();
            let now = self.now();

            // A connector claims again as soon as it got an item, so most claims on a quiet
            // bridge would look in vain. While no change woke the claims since this connector's
            // last claim found all there was, only the clock can have made an item claimable
            // (a retry back-off ending, a lease running out): that is one cheap read, where a
            // claim is a write.
            // A claim that does not wait always looks.
            let believed_empty = if wait.is_zero() {
                None
            } else {
                self.empty_believed_until(&connector.id, inbox_version)
            };
            if let Some(believed_until) = believed_empty {
                let next_due = self.store.next_due(now).await?;
                if next_due.is_none_or(|due| due > now) {
                    if tokio::time::Instant::now() >= deadline || self.shutdown.is_cancelled() {
                        return Ok(Vec::new());
                    }
                    self.pause(
                        notified.as_mut(),
                        wake_at(deadline.min(believed_until), next_due, now),
                    )
                    .await;
                    continue;
                }
            }

            let outcome = self
                .store
                .claim(connector, max, lease_ms, history, typing, now)
                .await?;
            // An item dead-lettered on the way may have let the next of its session through.
            let unblocked_others = !outcome.dead_lettered.is_empty();
            if !outcome.touched_sessions.is_empty() {
                let changes: Vec<Change<'_>> = outcome
                    .touched_sessions
                    .iter()
                    .map(|id| Change::Session(id))
                    .collect();
                self.changed(&changes);
            }
            for item in outcome.dead_lettered {
                self.publish_dead_letter(item);
            }
            // Fewer items than asked for: this connector got all there was when it looked.
            if outcome.items.len() < max as usize && !unblocked_others {
                self.remember_empty(&connector.id, inbox_version);
            } else {
                self.forget_empty(&connector.id);
            }
            if !outcome.items.is_empty()
                || tokio::time::Instant::now() >= deadline
                || self.shutdown.is_cancelled()
            {
                return Ok(outcome.items);
            }
            // Sleep no longer than until the next retry back-off or lease expiry is due.
            let next_due = self.store.next_due(now).await?;
            self.pause(notified.as_mut(), wake_at(deadline, next_due, now))
                .await;
        }
    }

    /// Until when the last claim of `connector_id` that got all there was still holds, if it
    /// does: no claim was woken since it looked (`inbox_version`), it is recent, and on
    /// PostgreSQL this replica hears the other replicas' changes.
    fn empty_believed_until(
        &self,
        connector_id: &str,
        inbox_version: u64,
    ) -> Option<tokio::time::Instant> {
        if !self.hears_every_change() {
            return None;
        }
        let empty_claims = self.empty_claims.lock().expect("empty claims poisoned");
        let empty = empty_claims.get(connector_id)?;
        (empty.inbox_version == inbox_version && tokio::time::Instant::now() < empty.believed_until)
            .then_some(empty.believed_until)
    }

    fn remember_empty(&self, connector_id: &str, inbox_version: u64) {
        let mut empty_claims = self.empty_claims.lock().expect("empty claims poisoned");
        // Forget the connectors that stopped claiming (deleted keys, say) now and then.
        let now = tokio::time::Instant::now();
        if empty_claims.len() >= 64 {
            empty_claims.retain(|_, empty| now < empty.believed_until);
        }
        empty_claims.insert(
            connector_id.to_owned(),
            EmptyClaim {
                inbox_version,
                believed_until: now + EMPTY_CLAIM_BELIEVED_FOR,
            },
        );
    }

    fn forget_empty(&self, connector_id: &str) {
        self.empty_claims
            .lock()
            .expect("empty claims poisoned")
            .remove(connector_id);
    }

    /// Wakes the waiters for `changes` on this replica at once and, on PostgreSQL, queues them
    /// for the other replicas (see [`announce_to_other_replicas`]). Called after the write
    /// committed. The notification goes out from a task of its own, so it is sent even when the
    /// request that wrote is dropped (its client went away), and the writer's answer does not
    /// wait for it.
    fn changed(&self, changes: &[Change<'_>]) {
        self.wakeups.changed(changes);
        if let Some(announcer) = &self.announcer {
            let mut unannounced = Unannounced::default();
            unannounced.add(changes);
            // Refused only once the announcer has stopped: the bridge is shutting down.
            let _ = announcer.send(unannounced);
        }
    }

    /// Until shutdown: wakes this replica's waiters for the changes other replicas announce
    /// (PostgreSQL only; returns at once on SQLite).
    pub async fn listen_to_other_replicas(self) {
        crate::wakeups::listen_to_other_replicas(self.store, self.wakeups, self.shutdown).await;
    }

    /// Messages of a session changed after `after`, waiting up to `wait` for the first one. When
    /// they are only the visitor's own, not yet picked up, it waits up to the pickup wait more
    /// (within `wait`) for the agent's side to change too ([`Relay::awaits_pickup`]).
    pub async fn messages(
        &self,
        session_id: &str,
        after: i64,
        wait: Duration,
    ) -> Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + wait;
        let session_wakeup = self.wakeups.session(session_id);
        loop {
            let notified = session_wakeup.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let messages = self
                .store
                .messages_after(session_id, after, MESSAGE_PAGE)
                .await?;
            if !messages.is_empty()
                || tokio::time::Instant::now() >= deadline
                || self.shutdown.is_cancelled()
            {
                if self.awaits_pickup(&messages, deadline) {
                    // The wake-up registered before the read also catches a pickup since.
                    let until = deadline.min(tokio::time::Instant::now() + self.pickup_wait);
                    self.pause(notified.as_mut(), until).await;
                    if !self.shutdown.is_cancelled() {
                        return self
                            .store
                            .messages_after(session_id, after, MESSAGE_PAGE)
                            .await;
                    }
                }
                return Ok(messages);
            }
            self.pause(notified.as_mut(), deadline).await;
        }
    }

    /// Whether `messages`, the answer to a wait that has until `deadline`, are only the
    /// visitor's own, not yet picked up by the agent, while a connector's claim is open here:
    /// the pickup (the message handed to the agent, often with the reply started as the typing
    /// signal) then usually follows within milliseconds, and waiting for it saves the visitor a
    /// round trip, or an event, per message. With no claim open (no agent, or every connector
    /// busy) nothing would come soon, and the answer goes at once.
    fn awaits_pickup(&self, messages: &[Message], deadline: tokio::time::Instant) -> bool {
        !self.pickup_wait.is_zero()
            && !messages.is_empty()
            && messages
                .iter()
                .all(|m| m.role == Role::User && m.status == MessageStatus::Queued)
            && self.claims_open.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
    }

    /// Waits for a wake-up, `wake_at`, or shutdown, whichever comes first. On PostgreSQL, while
    /// this replica is not listening for the others' notifications, it also returns after
    /// [`FALLBACK_RECHECK`], so another replica's write is seen within that time.
    async fn pause(&self, notified: Pin<&mut Notified<'_>>, wake_at: tokio::time::Instant) {
        let mut wake_at = wake_at;
        if !self.hears_every_change() {
            wake_at = wake_at.min(tokio::time::Instant::now() + FALLBACK_RECHECK);
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    pub async fn extend(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        lease_ms: i64,
    ) -> Result<i64> {
        self.connector_seen(connector);
        self.store
            .extend_lease(lease_id, connector, lease_ms, self.now())
            .await
    }

    pub async fn stream(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        delta: &str,
    ) -> Result<Message> {
        self.connector_seen(connector);
        let write = self
            .store
            .stream_delta(lease_id, connector, delta, self.now())
            .await?;
        self.changed(&[Change::Session(&write.session_id)]);
        Ok(write.value)
    }

    pub async fn reply(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        text: &str,
    ) -> Result<Message> {
        self.connector_seen(connector);
        let write = self
            .store
            .reply(lease_id, connector, text, self.now())
            .await?;
        self.changed(&[Change::Session(&write.session_id)]);
        // The session's next message, if any, is now at the head of its queue: only then is
        // there something new for the waiting claims, which would otherwise each look in vain.
        // If that cannot be read, they look.
        if self
            .store
            .has_pending(&write.session_id)
            .await
            .unwrap_or(true)
        {
            self.changed(&[Change::Inbox]);
        }
        self.publish_message(&write.session_id, &write.value);
        Ok(write.value)
    }

    pub async fn fail(
        &self,
        lease_id: &str,
        connector: &ConnectorRow,
        error: &str,
        retry: bool,
    ) -> Result<FailOutcome> {
        self.connector_seen(connector);
        let write = self
            .store
            .fail(lease_id, connector, error, retry, self.now())
            .await?;
        self.changed(&[Change::Session(&write.session_id), Change::Inbox]);
        if write.value.state == "dead" {
            self.publish_dead_letter(DeadLettered {
                message_id: write.item_id,
                session_id: write.session_id,
                error: error.to_string(),
            });
        }
        Ok(write.value)
    }

    /// Puts a dead-lettered item back in the queue and wakes waiting claims. Returns the
    /// visitor's message, `queued` again.
    pub async fn retry_dead_letter(&self, message_id: &str) -> Result<Message> {
        let write = self.store.retry_dead_letter(message_id, self.now()).await?;
        self.changed(&[Change::Session(&write.session_id), Change::Inbox]);
        Ok(write.value)
    }

    /// Marks sessions idle past their interface's timeout `expired` and tells the admins.
    async fn expire_idle_sessions(&self) {
        let now = self.now();
        match self.store.expire_idle_sessions(now).await {
            Ok(ids) => {
                for session_id in ids {
                    self.publish(AdminEvent::Session {
                        action: "expired".into(),
                        session_id,
                        interface: None,
                        at: time_from_millis(now),
                    });
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not expire idle sessions"),
        }
    }

    /// The bridge's background work until shutdown: dead-lettering expired leases, expiring idle sessions, and deleting
    /// sessions past the retention period.
    pub async fn run_reaper(self) {
        // The first sweep finishes before the first purge starts: at start-up both look at the
        // same long-idle sessions, and on PostgreSQL a purge skips a row another transaction
        // holds, which would leave it for an hour.
        let swept_at = self.now();
        self.expire_idle_sessions().await;
        tokio::join!(
            self.reap_expired_leases(swept_at),
            self.purge_past_retention()
        );
    }

    /// Deletes the sessions inactive for longer than the retention period, at start-up and then
    /// hourly, and records what went in the audit log (actor `retention`).
    async fn purge_past_retention(&self) {
        if self.retention_days == 0 {
            return;
        }
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = self.now();
            let cutoff = now - i64::from(self.retention_days) * DAY_MS;
            // A purge cut short by shutdown rolls back only its current batch.
            let removed = tokio::select! {
                removed = self.store.purge_inactive(cutoff) => removed,
                _ = self.shutdown.cancelled() => return,
            };
            match removed {
                Ok(removed) if removed.sessions > 0 => {
                    tracing::info!(
                        sessions = removed.sessions,
                        messages = removed.messages,
                        attachments = removed.attachments,
                        days = self.retention_days,
                        "deleted sessions past the retention period"
                    );
                    let detail = serde_json::json!({
                        "older_than_days": self.retention_days,
                        "inactive_before": time_from_millis(cutoff),
                        "sessions": removed.sessions,
                        "messages": removed.messages,
                        "attachments": removed.attachments,
                    });
                    let target = format!("{} days", self.retention_days);
                    match self
                        .store
                        .record_audit("retention", "sessions.purge", &target, Some(&detail), now)
                        .await
                    {
                        Ok(entry) => self.publish(AdminEvent::Audit { entry }),
                        Err(err) => tracing::warn!(error = %err, "could not record the purge"),
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "could not delete sessions past the retention period")
                }
            }
        }
    }

    /// Until shutdown: dead-letters expired last-attempt leases, so a visitor whose message the
    /// agent never answered sees the failure even when no connector is claiming; and every
    /// [`SESSION_SWEEP_MS`] after `swept_at` marks idle sessions expired.
    async fn reap_expired_leases(&self, mut swept_at: i64) {
        let mut tick = tokio::time::interval(REAP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            self.expire_connectors();
            if self.now().saturating_sub(swept_at) >= SESSION_SWEEP_MS {
                swept_at = self.now();
                self.expire_idle_sessions().await;
            }
            match self.store.reap_expired(self.now()).await {
                Ok(items) => {
                    if !items.is_empty() {
                        let mut changes = vec![Change::Inbox];
                        changes.extend(items.iter().map(|item| Change::Session(&item.session_id)));
                        self.changed(&changes);
                    }
                    for item in items {
                        tracing::warn!(
                            session_id = %item.session_id,
                            "dead-lettered an item whose last lease expired"
                        );
                        self.publish_dead_letter(item);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not reap expired leases"),
            }
        }
    }
}

/// When a waiting claim should look again: at `limit`, or just after `next_due` (by the relay's
/// clock, which reads `now`) if that comes first.
fn wake_at(limit: tokio::time::Instant, next_due: Option<i64>, now: i64) -> tokio::time::Instant {
    match next_due {
        Some(due) => {
            let delay = Duration::from_millis(u64::try_from(due - now).unwrap_or(0) + 1);
            limit.min(tokio::time::Instant::now() + delay)
        }
        None => limit,
    }
}
