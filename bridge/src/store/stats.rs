//! Numbers for the admin stats view: counts, buckets and reply latencies over a period.
//!
//! Bucketing is integer arithmetic on epoch milliseconds (`(t - origin) / width`), which SQLite
//! and PostgreSQL compute alike; percentiles are computed by the caller from the raw latencies.

use super::{Result, Store};

/// What to count: `[since, until)` in epoch ms, optionally one interface, in buckets of
/// `bucket_ms` starting at `origin` (at or before `since`).
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub interface_id: Option<String>,
    pub since: i64,
    pub until: i64,
    pub origin: i64,
    pub bucket_ms: i64,
}

/// Raw numbers for a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsData {
    pub sessions: i64,
    pub visitors: i64,
    pub user_messages: i64,
    pub assistant_messages: i64,
    /// Reply latencies in ms (completed reply's last update minus the visitor message's
    /// creation), for visitor messages sent in the period.
    pub latencies_ms: Vec<i64>,
    /// `(bucket index, sessions)`, only non-empty buckets.
    pub sessions_by_bucket: Vec<(i64, i64)>,
    /// `(bucket index, user and assistant messages)`, only non-empty buckets.
    pub messages_by_bucket: Vec<(i64, i64)>,
    /// `(hour of day UTC, messages)`, only non-empty hours.
    pub messages_by_hour: Vec<(i64, i64)>,
    /// `(referrer, sessions)`, most first, at most 10.
    pub top_referrers: Vec<(String, i64)>,
    pub dead_letters: i64,
}

const HOUR_MS: i64 = 3_600_000;

impl Store {
    /// Counts sessions, messages, latencies and dead letters of a period.
    pub async fn stats(&self, q: &StatsQuery) -> Result<StatsData> {
        let interface = q.interface_id.clone().unwrap_or_default();
        let (sessions, visitors): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT s.visitor_id) FROM sessions s \
             WHERE s.created_at >= $1 AND s.created_at < $2 AND ($3 = '' OR s.interface_id = $3)",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .fetch_one(&self.read)
        .await?;

        let by_role: Vec<(String, i64)> = sqlx::query_as(
            "SELECT m.role, COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session_id \
             WHERE m.created_at >= $1 AND m.created_at < $2 AND ($3 = '' OR s.interface_id = $3) \
             GROUP BY m.role",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .fetch_all(&self.read)
        .await?;
        let count_of = |role: &str| {
            by_role
                .iter()
                .find(|(r, _)| r == role)
                .map_or(0, |(_, n)| *n)
        };

        let latencies_ms: Vec<i64> = sqlx::query_scalar(
            "SELECT a.updated_at - u.created_at FROM messages a \
             JOIN messages u ON u.id = a.reply_to JOIN sessions s ON s.id = a.session_id \
             WHERE a.role = 'assistant' AND a.status = 'complete' \
               AND u.created_at >= $1 AND u.created_at < $2 AND ($3 = '' OR s.interface_id = $3)",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .fetch_all(&self.read)
        .await?;

        let sessions_by_bucket: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (s.created_at - $4) / $5, COUNT(*) FROM sessions s \
             WHERE s.created_at >= $1 AND s.created_at < $2 AND ($3 = '' OR s.interface_id = $3) \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .bind(q.origin)
        .bind(q.bucket_ms)
        .fetch_all(&self.read)
        .await?;

        let messages_by_bucket: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (m.created_at - $4) / $5, COUNT(*) FROM messages m \
             JOIN sessions s ON s.id = m.session_id \
             WHERE m.created_at >= $1 AND m.created_at < $2 AND ($3 = '' OR s.interface_id = $3) \
               AND m.role IN ('user', 'assistant') GROUP BY 1 ORDER BY 1",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .bind(q.origin)
        .bind(q.bucket_ms)
        .fetch_all(&self.read)
        .await?;

        // Epoch milliseconds start at midnight UTC, so whole hours since then, modulo 24, are the
        // UTC hour of day.
        let messages_by_hour: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (m.created_at / $4) % 24, COUNT(*) FROM messages m \
             JOIN sessions s ON s.id = m.session_id \
             WHERE m.created_at >= $1 AND m.created_at < $2 AND ($3 = '' OR s.interface_id = $3) \
               AND m.role IN ('user', 'assistant') GROUP BY 1 ORDER BY 1",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .bind(HOUR_MS)
        .fetch_all(&self.read)
        .await?;

        let top_referrers: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.referrer, COUNT(*) FROM sessions s \
             WHERE s.created_at >= $1 AND s.created_at < $2 AND ($3 = '' OR s.interface_id = $3) \
               AND s.referrer IS NOT NULL AND s.referrer <> '' \
             GROUP BY s.referrer ORDER BY 2 DESC, 1 LIMIT 10",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .fetch_all(&self.read)
        .await?;

        let dead_letters: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbox i WHERE i.state = 'dead' \
             AND i.updated_at >= $1 AND i.updated_at < $2 AND ($3 = '' OR i.interface_id = $3)",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&interface)
        .fetch_one(&self.read)
        .await?;

        Ok(StatsData {
            sessions,
            visitors,
            user_messages: count_of("user"),
            assistant_messages: count_of("assistant"),
            latencies_ms,
            sessions_by_bucket,
            messages_by_bucket,
            messages_by_hour,
            top_referrers,
            dead_letters,
        })
    }
}
