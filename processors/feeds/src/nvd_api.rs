//! The NVD CVE API 2.0 over HTTP: paged (`startIndex` / `resultsPerPage`), incremental
//! by `lastModStartDate` / `lastModEndDate`, optional `apiKey` header, a pause between
//! pages for NVD's rate limits.
//!
//! Caps ([`crate::Limits`]): each page body is read with `max_page_bytes` (refused by
//! `Content-Length` or as soon as the stream passes it), and one sync pages through at
//! most `max_records` records (refused up front when `totalResults` says more). Every
//! page is parsed before anything is stored, so a refused sync changes nothing.
//!
//! Sync state: after a successful sync the feed's [`FeedState::last_modified`] holds the
//! `lastModEndDate` that sync asked for (`YYYY-MM-DDTHH:MM:SS.mmm+00:00`); the next sync
//! asks from there (in windows of at most 120 days, NVD's limit) and only upserts.

use std::time::Duration;

use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use vigil_contracts::{FeedDelta, FeedState, UnixMillis};
use vigil_runtime::now_millis;
use vigil_store::Store;

use crate::config::FeedSource;
use crate::drivers::{self, nvd};
use crate::fetch::{read_body_capped, BodyError};
use crate::sync::{store_err, store_grouped, StoreMode};
use crate::FeedError;

/// NVD's maximum range of one `lastModStartDate`..`lastModEndDate` query.
pub const MAX_WINDOW: Duration = Duration::from_secs(120 * 24 * 3600);

const FMT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]");

/// Format milliseconds since the epoch as NVD expects (UTC, explicit `+00:00`).
pub fn nvd_time(ms: UnixMillis) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{}+00:00", t.format(FMT).unwrap_or_default())
}

/// Parse what [`nvd_time`] wrote (also accepts a trailing `Z` or no offset).
pub fn parse_nvd_time(s: &str) -> Option<UnixMillis> {
    let s = s.trim();
    let s = s
        .strip_suffix("+00:00")
        .or_else(|| s.strip_suffix('Z'))
        .unwrap_or(s);
    let t = PrimitiveDateTime::parse(s, FMT).ok()?.assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The `(start, end)` windows covering `since..until`, each at most [`MAX_WINDOW`].
pub fn windows(since: UnixMillis, until: UnixMillis) -> Vec<(UnixMillis, UnixMillis)> {
    let step = MAX_WINDOW.as_millis() as i64;
    let mut out = Vec::new();
    let mut s = since;
    while s < until {
        let e = (s + step).min(until);
        out.push((s, e));
        s = e;
    }
    if out.is_empty() {
        out.push((since, until.max(since)));
    }
    out
}

/// The URL of one page.
pub fn page_url(
    base: &str,
    start_index: u64,
    per_page: u32,
    window: Option<(UnixMillis, UnixMillis)>,
) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut u = format!("{base}{sep}resultsPerPage={per_page}&startIndex={start_index}");
    if let Some((s, e)) = window {
        let enc = |t: String| t.replace('+', "%2B").replace(':', "%3A");
        u.push_str(&format!(
            "&lastModStartDate={}&lastModEndDate={}",
            enc(nvd_time(s)),
            enc(nvd_time(e))
        ));
    }
    u
}

/// Sync an NVD API feed.
pub async fn sync_nvd_api(
    source: &FeedSource,
    store: &Store,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Option<FeedDelta>, FeedError> {
    let feed = source.name.as_str();
    let herr = |url: &str, m: String| FeedError::Http {
        feed: feed.to_string(),
        url: url.to_string(),
        message: m,
    };
    let previous = store.get_feed_state(feed).await.map_err(store_err(feed))?;
    let since = previous
        .as_ref()
        .filter(|p| p.url == source.url && p.content_hash.is_some())
        .and_then(|p| p.last_modified.as_deref())
        .and_then(parse_nvd_time);
    let api_key = source.effective_api_key();
    let delay = source.page_delay(api_key.is_some());
    let per_page = source.page_size.unwrap_or(2000).clamp(1, 2000);
    let until = now_millis();
    let plan: Vec<Option<(UnixMillis, UnixMillis)>> = match since {
        Some(s) => windows(s, until).into_iter().map(Some).collect(),
        None => vec![None],
    };
    vigil_runtime::install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("vigil-feeds/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| herr(&source.url, e.to_string()))?;
    match since {
        Some(s) => progress(&format!("{feed}: changes since {}", nvd_time(s))),
        None => progress(&format!("{feed}: full download from {}", source.url)),
    }
    let mut hasher = Sha256::new();
    let mut advisories = Vec::new();
    let mut requests = 0u32;
    let limits = source.limits();
    // Records paged through so far, over every window.
    let mut records = 0u64;
    for window in plan {
        let mut start_index = 0u64;
        loop {
            let url = page_url(&source.url, start_index, per_page, window);
            let mut attempt = 0;
            let bytes = loop {
                if requests > 0 {
                    tokio::time::sleep(delay).await;
                }
                requests += 1;
                attempt += 1;
                let mut req = client.get(&url);
                if let Some(k) = &api_key {
                    req = req.header("apiKey", k);
                }
                let resp = req.send().await.map_err(|e| herr(&url, e.to_string()))?;
                let status = resp.status().as_u16();
                // NVD answers 403/429/503 when rate-limited: pause and retry a few times.
                if matches!(status, 403 | 429 | 503) && attempt < 4 {
                    progress(&format!("{feed}: HTTP {status}, retrying"));
                    tokio::time::sleep(delay.max(Duration::from_millis(200)) * attempt).await;
                    continue;
                }
                if !(200..300).contains(&status) {
                    return Err(FeedError::HttpStatus {
                        feed: feed.to_string(),
                        url,
                        status,
                    });
                }
                break read_body_capped(resp, limits.page)
                    .await
                    .map_err(|e| match e {
                        BodyError::TooLarge(size) => FeedError::PageTooLarge {
                            feed: feed.to_string(),
                            url: url.clone(),
                            size,
                            limit: limits.page,
                        },
                        BodyError::Read(m) => herr(&url, m),
                    })?;
            };
            hasher.update(Sha256::digest(&bytes));
            let doc: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| FeedError::Parse {
                    feed: feed.to_string(),
                    message: format!("{url}: {e}"),
                })?;
            let info = nvd::page_info(&doc).ok_or_else(|| FeedError::Parse {
                feed: feed.to_string(),
                message: format!("{url}: not an NVD API 2.0 response (no totalResults)"),
            })?;
            let got = doc
                .get("vulnerabilities")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len) as u64;
            // Every page must continue where the last one ended, so that each one brings
            // new records and the record cap also bounds the number of pages.
            // (A response without `startIndex` is taken as the one asked for.)
            let answered = doc
                .get("startIndex")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(start_index);
            if answered != start_index {
                return Err(FeedError::Parse {
                    feed: feed.to_string(),
                    message: format!(
                        "{url}: answered startIndex {answered} for startIndex {start_index}"
                    ),
                });
            }
            let too_many = |what, count| FeedError::TooManyRecords {
                feed: feed.to_string(),
                what,
                count,
                limit: limits.records,
            };
            if records + info.total_results.saturating_sub(start_index) > limits.records {
                return Err(too_many(
                    "announced",
                    records + info.total_results.saturating_sub(start_index),
                ));
            }
            records += got;
            if records > limits.records {
                return Err(too_many("returned", records));
            }
            let parsed = nvd::parse_document(feed, &url, &bytes).map_err(|m| FeedError::Parse {
                feed: feed.to_string(),
                message: m,
            })?;
            advisories.extend(parsed);
            start_index += got;
            progress(&format!(
                "{feed}: {start_index}/{} records",
                info.total_results
            ));
            if got == 0 || start_index >= info.total_results {
                break;
            }
        }
    }
    let grouped = drivers::group(advisories);
    let mode = if since.is_some() {
        StoreMode::Incremental
    } else {
        StoreMode::Full
    };
    let (changed, namespaces) = store_grouped(store, feed, &grouped, mode, progress).await?;
    let hash = hex::encode(hasher.finalize());
    let synced_at = now_millis();
    store
        .put_feed_state(&FeedState {
            feed: feed.to_string(),
            url: source.url.clone(),
            etag: None,
            last_modified: Some(nvd_time(until)),
            content_hash: Some(hash.clone()),
            last_sync: synced_at,
            record_count: namespaces.values().sum(),
            namespaces,
            parser_version: crate::sync::PARSER_VERSION,
        })
        .await
        .map_err(store_err(feed))?;
    progress(&format!("{feed}: {} records changed", changed.len()));
    if changed.is_empty() {
        return Ok(None);
    }
    Ok(Some(FeedDelta {
        feed: feed.to_string(),
        sync_id: crate::sync::delta_id(previous.as_ref(), &hash),
        changed,
        synced_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_windows() {
        let t = 1_700_000_000_123;
        assert_eq!(nvd_time(t), "2023-11-14T22:13:20.123+00:00");
        assert_eq!(parse_nvd_time(&nvd_time(t)), Some(t));
        assert_eq!(parse_nvd_time("2023-11-14T22:13:20.123Z"), Some(t));
        assert_eq!(parse_nvd_time("yesterday"), None);
        let day = 86_400_000;
        let w = windows(0, 250 * day);
        assert_eq!(
            w,
            [
                (0, 120 * day),
                (120 * day, 240 * day),
                (240 * day, 250 * day)
            ]
        );
        assert_eq!(windows(5, 5), [(5, 5)]);
        assert_eq!(
            page_url("http://h/x", 4, 2000, Some((t, t))),
            "http://h/x?resultsPerPage=2000&startIndex=4&lastModStartDate=2023-11-14T22%3A13%3A20.123%2B00%3A00&lastModEndDate=2023-11-14T22%3A13%3A20.123%2B00%3A00"
        );
        assert!(
            page_url("http://h/x?noRejected", 0, 10, None).starts_with("http://h/x?noRejected&")
        );
    }
}
