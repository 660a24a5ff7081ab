//! Jittered exponential back-off for talking to a bridge that is down, overloaded or refusing us.
//!
//! "Full jitter": each delay is uniform in `[0, min(cap, base · 2^n)]`, so a fleet of connectors
//! that lost the bridge at the same moment does not come back in lock-step.

use std::time::Duration;

/// Delays between attempts: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Back-off of the claim loop: 250 ms doubling up to 30 s.
    pub fn for_claims() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(30))
    }

    /// Back-off of one item's reply or fail call: short, because the lease is running out.
    pub fn for_item_calls() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5))
    }

    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff::with_rng(base, cap, fastrand::Rng::new())
    }

    /// Like [`Backoff::new`] with a given random source, so tests are repeatable.
    pub fn with_rng(base: Duration, cap: Duration, rng: fastrand::Rng) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
            rng,
        }
    }

    /// The largest delay the next failure may get.
    pub fn ceiling(&self) -> Duration {
        // Past 2^20 the cap has long been reached; stopping there keeps the shift in range.
        let factor = 1u32 << self.failures.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and says how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.u64(0..=ceiling_ms))
    }

    /// How many failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceiling_doubles_from_the_base_up_to_the_cap() {
        let mut backoff = Backoff::with_rng(ms(250), ms(30_000), fastrand::Rng::with_seed(1));
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay();
        }
        assert_eq!(
            ceilings,
            [
                250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000
            ]
        );
    }

    #[test]
    fn delays_never_exceed_the_ceiling_even_after_very_many_failures() {
        let mut backoff = Backoff::with_rng(ms(250), ms(30_000), fastrand::Rng::with_seed(2));
        for _ in 0..10_000 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            assert!(delay <= ms(30_000));
        }
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        // Full jitter: once at the cap, delays should cover nearly all of [0, cap].
        let mut backoff = Backoff::with_rng(ms(250), ms(30_000), fastrand::Rng::with_seed(3));
        for _ in 0..10 {
            backoff.next_delay();
        }
        let delays: Vec<Duration> = (0..2_000).map(|_| backoff.next_delay()).collect();
        let min = *delays.iter().min().unwrap();
        let max = *delays.iter().max().unwrap();
        assert!(min < ms(1_500), "smallest delay {min:?}");
        assert!(max > ms(28_500), "largest delay {max:?}");
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 1_000,
            "only {} distinct delays",
            distinct.len()
        );
    }

    #[test]
    fn reset_starts_again_from_the_base() {
        let mut backoff = Backoff::with_rng(ms(250), ms(30_000), fastrand::Rng::with_seed(4));
        for _ in 0..6 {
            backoff.next_delay();
        }
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert_eq!(backoff.ceiling(), ms(250));
        assert!(backoff.next_delay() <= ms(250));
    }
}
