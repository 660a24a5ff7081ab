//! `/admin/stats`: sessions, visitors, messages, reply latency, activity over time and by hour,
//! top referrers and dead letters for a period.

use std::sync::Arc;

use airlock_shared::admin::{Latency, MessageCounts, ReferrerCount, Stats, StatsBucket};
use airlock_shared::time_from_millis;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiQuery};
use crate::store::StatsQuery;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Periods up to this long are shown in hourly buckets, longer ones daily.
const HOURLY_UP_TO_MS: i64 = 3 * DAY_MS;
/// The longest period one request may ask for.
const MAX_PERIOD_MS: i64 = 400 * DAY_MS;
/// The period when none is given.
const DEFAULT_PERIOD_MS: i64 = 7 * DAY_MS;

#[derive(Deserialize)]
pub struct StatsParams {
    interface: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

pub async fn get(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(params): ApiQuery<StatsParams>,
) -> Result<Json<Stats>, ApiError> {
    let until = super::sessions::parse_time("until", params.until.as_deref())?
        .unwrap_or_else(|| state.relay.now());
    let since = super::sessions::parse_time("since", params.since.as_deref())?
        .unwrap_or(until - DEFAULT_PERIOD_MS);
    if since >= until {
        return Err(ApiError::bad_request(
            "invalid_period",
            "since must be before until",
        ));
    }
    if until - since > MAX_PERIOD_MS {
        return Err(ApiError::bad_request(
            "invalid_period",
            "the period may be at most 400 days",
        ));
    }
    let slug = params.interface.filter(|s| !s.is_empty());
    let interface_id = match &slug {
        Some(slug) => Some(
            state
                .store
                .interface_by_slug(slug)
                .await?
                .ok_or_else(|| ApiError::not_found("interface_not_found", "interface not found"))?
                .id,
        ),
        None => None,
    };
    let (bucket, bucket_ms) = if until - since <= HOURLY_UP_TO_MS {
        ("hour", HOUR_MS)
    } else {
        ("day", DAY_MS)
    };
    let origin = since.div_euclid(bucket_ms) * bucket_ms;
    let data = state
        .store
        .stats(&StatsQuery {
            interface_id,
            since,
            until,
            origin,
            bucket_ms,
        })
        .await?;

    let bucket_count = usize::try_from((until - origin + bucket_ms - 1) / bucket_ms).unwrap_or(0);
    let mut series: Vec<StatsBucket> = (0..bucket_count)
        .map(|n| StatsBucket {
            at: time_from_millis(origin + n as i64 * bucket_ms),
            sessions: 0,
            messages: 0,
        })
        .collect();
    for (index, count) in data.sessions_by_bucket {
        if let Some(b) = usize::try_from(index).ok().and_then(|i| series.get_mut(i)) {
            b.sessions = count;
        }
    }
    for (index, count) in data.messages_by_bucket {
        if let Some(b) = usize::try_from(index).ok().and_then(|i| series.get_mut(i)) {
            b.messages = count;
        }
    }
    let mut by_hour = vec![0_i64; 24];
    for (hour, count) in data.messages_by_hour {
        if let Some(slot) = usize::try_from(hour).ok().and_then(|h| by_hour.get_mut(h)) {
            *slot = count;
        }
    }
    let mut latencies = data.latencies_ms;
    latencies.sort_unstable();
    Ok(Json(Stats {
        since: time_from_millis(since),
        until: time_from_millis(until),
        interface: slug,
        sessions: data.sessions,
        visitors: data.visitors,
        messages: MessageCounts {
            user: data.user_messages,
            assistant: data.assistant_messages,
        },
        reply_latency_ms: Latency {
            p50: percentile(&latencies, 50),
            p95: percentile(&latencies, 95),
        },
        bucket: bucket.to_string(),
        series,
        by_hour,
        top_referrers: data
            .top_referrers
            .into_iter()
            .map(|(referrer, sessions)| ReferrerCount { referrer, sessions })
            .collect(),
        dead_letters: data.dead_letters,
    }))
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p` percent
/// of the values at or below it.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 95), Some(7));
        let values: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&values, 50), Some(10));
        assert_eq!(percentile(&values, 95), Some(19));
        assert_eq!(percentile(&[100, 200, 300, 400], 50), Some(200));
        assert_eq!(percentile(&[100, 200, 300, 400], 95), Some(400));
    }
}
