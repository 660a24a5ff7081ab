//! Latency summaries from raw samples.

use std::time::Duration;

use serde::Serialize;

/// The runs that give `samples` samples: a tenth more, of which the first tenth warms the
/// connections and the allocator up and is not kept. Each item says whether that run's sample is
/// kept.
pub fn runs(samples: usize) -> impl Iterator<Item = bool> {
    let warm_up = samples / 10;
    (0..samples + warm_up).map(move |i| i >= warm_up)
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// The summary of `samples_ms` (nearest-rank percentiles); all zero when there are none.
    pub fn of_ms(samples_ms: &[f64]) -> Latency {
        if samples_ms.is_empty() {
            return Latency::default();
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Latency {
            samples: sorted.len(),
            p50_ms: rank(50.0),
            p95_ms: rank(95.0),
            p99_ms: rank(99.0),
            mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            max_ms: sorted[sorted.len() - 1],
        }
    }
}

/// `d` in milliseconds, with microsecond resolution.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_more_runs_are_made_and_the_first_tenth_dropped() {
        let kept: Vec<bool> = runs(40).collect();
        assert_eq!(kept.len(), 44);
        assert!(kept[..4].iter().all(|k| !k));
        assert!(kept[4..].iter().all(|k| *k));
        assert_eq!(runs(5).filter(|k| *k).count(), 5);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let latency = Latency::of_ms(&samples);
        assert_eq!(latency.samples, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p95_ms, 95.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(latency.mean_ms, 50.5);
        assert_eq!(Latency::of_ms(&[7.0]).p99_ms, 7.0);
        assert_eq!(Latency::of_ms(&[]).samples, 0);
    }
}
