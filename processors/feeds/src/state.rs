//! Sync state queries: stale-feed detection for the `stale_feed_data` policy trigger.

use std::time::Duration;

use vigil_contracts::{FeedState, UnixMillis};

use crate::config::FeedsConfig;

/// A feed whose data is older than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFeed {
    pub feed: String,
    /// Last successful sync (0 = never).
    pub last_sync: UnixMillis,
    /// `now - last_sync` in milliseconds.
    pub age_ms: i64,
}

/// The feeds whose last sync is more than `max_age` before `now`, oldest first. Pure.
pub fn stale_feeds(states: &[FeedState], now: UnixMillis, max_age: Duration) -> Vec<StaleFeed> {
    let max = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let mut out: Vec<StaleFeed> = states
        .iter()
        .map(|s| StaleFeed {
            feed: s.feed.clone(),
            last_sync: s.last_sync,
            age_ms: now.saturating_sub(s.last_sync),
        })
        .filter(|s| s.age_ms > max)
        .collect();
    out.sort_by(|a, b| b.age_ms.cmp(&a.age_ms).then(a.feed.cmp(&b.feed)));
    out
}

/// Configured feeds that have never synced (no state at all). Pure.
pub fn never_synced(config: &FeedsConfig, states: &[FeedState]) -> Vec<String> {
    config
        .feeds
        .iter()
        .filter(|f| !states.iter().any(|s| s.feed == f.name))
        .map(|f| f.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(feed: &str, last_sync: i64) -> FeedState {
        FeedState {
            feed: feed.into(),
            url: String::new(),
            etag: None,
            last_modified: None,
            content_hash: None,
            last_sync,
            record_count: 0,
            namespaces: Default::default(),
            parser_version: 0,
        }
    }

    #[test]
    fn stale() {
        let day = 86_400_000;
        let states = [st("a", 10 * day), st("b", 9 * day), st("c", 3 * day)];
        let s = stale_feeds(&states, 11 * day, Duration::from_secs(86_400));
        assert_eq!(
            s.iter().map(|s| s.feed.as_str()).collect::<Vec<_>>(),
            ["c", "b"],
            "a is exactly one day old: not stale"
        );
        let s = stale_feeds(&states, 20 * day, Duration::from_secs(2 * 86_400));
        assert_eq!(
            s.iter().map(|s| s.feed.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        assert_eq!(s[0].age_ms, 17 * day);
        assert!(stale_feeds(&[], 0, Duration::ZERO).is_empty());
    }

    #[test]
    fn never() {
        use crate::{FeedKind, FeedSource};
        let config = FeedsConfig {
            feeds: vec![
                FeedSource::new(FeedKind::Osv, "a", "x"),
                FeedSource::new(FeedKind::Nvd, "n", "y"),
            ],
        };
        assert_eq!(never_synced(&config, &[st("a", 1)]), ["n"]);
    }
}
