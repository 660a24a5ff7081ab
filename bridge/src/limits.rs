//! Rate limits: how often a session may send, a client address may start sessions or read, and a
//! connector or admin key may call.
//!
//! Every limit is a GCRA ("generic cell rate algorithm", via `governor`) keyed limiter: a quota of
//! N per window allows a burst of N at once, then one more every window/N — not N again at the
//! start of the next window. A refusal says how long until the next call would be allowed, which
//! becomes the `Retry-After` of the 429.
//!
//! The state is in memory, per bridge replica: behind a load balancer spreading one client over
//! R replicas, the client gets up to R times the configured rate. Limiters forget keys idle long
//! enough to be back at a full burst (see [`Limits::forget_idle`]), so memory follows the number of
//! recently active keys.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use airlock_shared::admin::RateLimit;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;

/// How often idle keys are forgotten.
pub const FORGET_IDLE_INTERVAL: Duration = Duration::from_secs(60);

/// A refused call: how long to wait, and what was exceeded (one sentence for the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until a retry would be allowed, at least 1.
    pub retry_after_secs: u64,
    pub reason: String,
}

/// Every rate limiter of a bridge replica.
pub struct Limits {
    /// Visitor messages per session, one limiter per distinct interface quota
    /// `(messages, window_secs)`, keyed by session id.
    messages: Mutex<HashMap<(u32, u32), DefaultKeyedRateLimiter<String>>>,
    sessions_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    reads_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    connector_calls: Option<DefaultKeyedRateLimiter<String>>,
    admin_calls: Option<DefaultKeyedRateLimiter<String>>,
}

/// A limiter allowing `per_minute` calls per key per minute; `None` (no limit) for 0.
fn per_minute<K: Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)))
}

/// An interface's message quota: a burst of `messages`, then one every `window / messages`.
/// `None` (no limit) for a zero count or window, which validation never lets through.
fn message_quota(limit: RateLimit) -> Option<Quota> {
    let messages = NonZeroU32::new(limit.messages)?;
    let period = Duration::from_secs(u64::from(limit.window_secs)) / limit.messages;
    Quota::with_period(period).map(|quota| quota.allow_burst(messages))
}

/// Takes one call of `key` from `limiter`, or says how long to wait.
fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    reason: impl FnOnce() -> String,
) -> Result<(), Limited> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now());
        Limited {
            retry_after_secs: whole_seconds(wait),
            reason: reason(),
        }
    })
}

/// `wait` rounded up to whole seconds, at least 1 (a `Retry-After: 0` invites a busy loop).
fn whole_seconds(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Forgets the keys of `limiter` that are back at a full burst, and frees their memory.
fn forget_idle<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

impl Limits {
    /// The limits configured in `config` (a 0 turns a limit off).
    pub fn new(config: &Config) -> Limits {
        Limits {
            messages: Mutex::default(),
            sessions_per_ip: per_minute(config.sessions_per_ip_per_minute),
            reads_per_ip: per_minute(config.reads_per_ip_per_minute),
            connector_calls: per_minute(config.connector_calls_per_minute),
            admin_calls: per_minute(config.admin_calls_per_minute),
        }
    }

    /// Takes one message of `session_id` under its interface's `limit`. A changed limit applies
    /// from the next message on, starting from a full burst.
    pub fn message(&self, session_id: &str, limit: RateLimit) -> Result<(), Limited> {
        let Some(quota) = message_quota(limit) else {
            return Ok(());
        };
        let mut limiters = self.messages.lock().expect("message limiters poisoned");
        let limiter = limiters
            .entry((limit.messages, limit.window_secs))
            .or_insert_with(|| DefaultKeyedRateLimiter::keyed(quota));
        check(limiter, &session_id.to_string(), || {
            format!(
                "This chat accepts {} messages per {} seconds.",
                limit.messages, limit.window_secs
            )
        })
    }

    /// Takes one new session of the client address `ip`.
    pub fn session_creation(&self, ip: IpAddr) -> Result<(), Limited> {
        match &self.sessions_per_ip {
            Some(limiter) => check(limiter, &ip, || {
                "Too many new chat sessions from your address.".into()
            }),
            None => Ok(()),
        }
    }

    /// Takes one public read (interface config, messages, event stream, upload) of `ip`.
    pub fn read(&self, ip: IpAddr) -> Result<(), Limited> {
        match &self.reads_per_ip {
            Some(limiter) => check(limiter, &ip, || {
                "Too many requests from your address.".into()
            }),
            None => Ok(()),
        }
    }

    /// Takes one call of the connector key `connector_id`.
    pub fn connector_call(&self, connector_id: &str) -> Result<(), Limited> {
        match &self.connector_calls {
            Some(limiter) => check(limiter, &connector_id.to_string(), || {
                "Too many calls with this connector key.".into()
            }),
            None => Ok(()),
        }
    }

    /// Takes one call of the admin key named `actor`.
    pub fn admin_call(&self, actor: &str) -> Result<(), Limited> {
        match &self.admin_calls {
            Some(limiter) => check(limiter, &actor.to_string(), || {
                "Too many calls with this admin key.".into()
            }),
            None => Ok(()),
        }
    }

    /// Forgets every key that is back at a full burst (a fresh key behaves the same), and message
    /// limiters left without keys, e.g. of a quota no interface uses any more.
    pub fn forget_idle(&self) {
        {
            let mut limiters = self.messages.lock().expect("message limiters poisoned");
            limiters.values().for_each(forget_idle);
            limiters.retain(|_, limiter| !limiter.is_empty());
            limiters.shrink_to_fit();
        }
        for limiter in [&self.sessions_per_ip, &self.reads_per_ip]
            .into_iter()
            .flatten()
        {
            forget_idle(limiter);
        }
        for limiter in [&self.connector_calls, &self.admin_calls]
            .into_iter()
            .flatten()
        {
            forget_idle(limiter);
        }
    }

    /// How many message limiters (distinct quotas) are held; for tests.
    pub fn message_quotas_held(&self) -> usize {
        self.messages
            .lock()
            .expect("message limiters poisoned")
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(set: impl FnOnce(&mut Config)) -> Limits {
        let mut config = Config::defaults();
        set(&mut config);
        Limits::new(&config)
    }

    fn ten_per_minute() -> RateLimit {
        RateLimit {
            messages: 10,
            window_secs: 60,
        }
    }

    #[test]
    fn a_burst_then_one_per_window_over_n() {
        let limits = limits(|_| {});
        for n in 0..10 {
            assert_eq!(limits.message("ses_a", ten_per_minute()), Ok(()), "#{n}");
        }
        let refused = limits.message("ses_a", ten_per_minute()).unwrap_err();
        // GCRA: the next message is due one emission interval (60 s / 10) after the burst.
        assert_eq!(refused.retry_after_secs, 6);
        assert!(refused.reason.contains("10 messages per 60 seconds"));
        // Sessions are independent.
        assert_eq!(limits.message("ses_b", ten_per_minute()), Ok(()));
    }

    #[test]
    fn a_changed_quota_starts_afresh() {
        let limits = limits(|_| {});
        for _ in 0..10 {
            limits.message("ses_a", ten_per_minute()).unwrap();
        }
        let hourly = RateLimit {
            messages: 2,
            window_secs: 3600,
        };
        assert_eq!(limits.message("ses_a", hourly), Ok(()));
        assert_eq!(limits.message("ses_a", hourly), Ok(()));
        let refused = limits.message("ses_a", hourly).unwrap_err();
        assert!((1795..=1800).contains(&refused.retry_after_secs));
        assert_eq!(limits.message_quotas_held(), 2);
    }

    #[test]
    fn per_minute_limits_and_zero_disables() {
        let limits = limits(|c| {
            c.sessions_per_ip_per_minute = 2;
            c.reads_per_ip_per_minute = 0;
            c.connector_calls_per_minute = 1;
            c.admin_calls_per_minute = 1;
        });
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(limits.session_creation(ip).is_ok());
        assert!(limits.session_creation(ip).is_ok());
        let refused = limits.session_creation(ip).unwrap_err();
        assert_eq!(refused.retry_after_secs, 30);
        assert!(
            limits
                .session_creation("203.0.113.10".parse().unwrap())
                .is_ok()
        );
        for _ in 0..1000 {
            assert!(limits.read(ip).is_ok());
        }
        assert!(limits.connector_call("con_a").is_ok());
        assert_eq!(
            limits.connector_call("con_a").unwrap_err().retry_after_secs,
            60
        );
        assert!(limits.connector_call("con_b").is_ok());
        assert!(limits.admin_call("configured admin key").is_ok());
        assert!(limits.admin_call("configured admin key").is_err());
    }

    #[test]
    fn idle_keys_and_quotas_are_forgotten() {
        let limits = limits(|_| {});
        // One message every millisecond: idle again almost at once.
        let fast = RateLimit {
            messages: 1000,
            window_secs: 1,
        };
        limits.message("ses_a", fast).unwrap();
        limits.message("ses_b", ten_per_minute()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        limits.forget_idle();
        // The fast quota's only key was idle, so the limiter went; the slow one is still busy.
        assert_eq!(limits.message_quotas_held(), 1);
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(5_999)), 6);
        assert_eq!(whole_seconds(Duration::from_secs(6)), 6);
        assert_eq!(whole_seconds(Duration::from_millis(6_001)), 7);
    }
}
