//! Syncing feeds into the store and reporting which package keys changed.

use std::collections::{BTreeMap, BTreeSet};

use vigil_contracts::{Advisory, FeedDelta, FeedState, FixState, PackageKey, Severity};
use vigil_runtime::now_millis;
use vigil_store::Store;

use crate::config::{FeedKind, FeedSource, FeedsConfig};
use crate::drivers::{self, alpine, debian, nvd, osv, Grouped};
use crate::fetch::{fetch, Body, Fetched};
use crate::FeedError;

/// Namespace of the bookkeeping partition that lists, per feed, the keys it wrote (one
/// record per key, never matched: no image package lives in this namespace).
pub const KEYS_NAMESPACE: &str = "vigil-feed-keys";

fn keys_partition(feed: &str) -> PackageKey {
    PackageKey {
        namespace: KEYS_NAMESPACE.to_string(),
        package: feed.to_string(),
    }
}

/// Parse a fetched body with the feed's driver.
pub fn parse_body(source: &FeedSource, body: &Body) -> Result<Grouped, FeedError> {
    let feed = source.name.as_str();
    let advisories = match (source.kind, body) {
        (FeedKind::Debian, Body::Bytes(b)) => debian::parse(feed, b)?,
        (FeedKind::Alpine, Body::Bytes(b)) => alpine::parse(feed, b)?,
        (FeedKind::Debian | FeedKind::Alpine, Body::Files(fs)) => {
            let mut out = Vec::new();
            for (name, b) in fs {
                let parsed = if source.kind == FeedKind::Debian {
                    debian::parse(feed, b)
                } else {
                    alpine::parse(feed, b)
                };
                match parsed {
                    Ok(a) => out.extend(a),
                    Err(e) => {
                        tracing::warn!(feed, file = name, error = %e, "skipping malformed file")
                    }
                }
            }
            out
        }
        (FeedKind::Osv, Body::Bytes(b)) if b.starts_with(b"PK") => {
            let files = osv::read_zip(feed, &source.url, b)?;
            osv::parse_files(feed, files.iter().map(|(n, b)| (n.as_str(), b.as_slice()))).0
        }
        (FeedKind::Osv, Body::Bytes(b)) => {
            osv::parse_document(feed, &source.url, b).map_err(|m| FeedError::Parse {
                feed: feed.to_string(),
                message: m,
            })?
        }
        (FeedKind::Osv, Body::Files(fs)) => {
            osv::parse_files(feed, fs.iter().map(|(n, b)| (n.as_str(), b.as_slice()))).0
        }
        (FeedKind::Nvd, Body::Bytes(b)) => {
            nvd::parse_document(feed, &source.url, b).map_err(|m| FeedError::Parse {
                feed: feed.to_string(),
                message: m,
            })?
        }
        (FeedKind::Nvd, Body::Files(fs)) => {
            let mut out = Vec::new();
            for (name, b) in fs {
                match nvd::parse_document(feed, name, b) {
                    Ok(a) => out.extend(a),
                    Err(e) => tracing::warn!(feed, error = e, "skipping malformed NVD file"),
                }
            }
            out
        }
    };
    Ok(drivers::group(advisories))
}

pub(crate) fn store_err(feed: &str) -> impl Fn(vigil_store::StoreError) -> FeedError + '_ {
    move |source| FeedError::Store {
        feed: feed.to_string(),
        source,
    }
}

/// Make the stored advisories of `key` from this feed exactly `ours`, keeping other
/// feeds' advisories. Returns whether anything changed.
async fn replace_feed_advisories(
    store: &Store,
    feed: &str,
    key: &PackageKey,
    ours: &[Advisory],
) -> Result<bool, FeedError> {
    let existing = store.get_advisories(key).await.map_err(store_err(feed))?;
    let mut merged: Vec<Advisory> = existing
        .into_iter()
        .filter(|a| a.feed != feed && !ours.iter().any(|o| o.id == a.id))
        .collect();
    merged.extend(ours.iter().cloned());
    merged.sort_by(|a, b| a.id.cmp(&b.id));
    store
        .replace_advisories(key, &merged)
        .await
        .map_err(store_err(feed))
}

/// The keys a feed wrote at its last sync (its bookkeeping partition).
pub async fn feed_keys(store: &Store, feed: &str) -> Result<BTreeSet<PackageKey>, FeedError> {
    Ok(store
        .get_advisories(&keys_partition(feed))
        .await
        .map_err(store_err(feed))?
        .into_iter()
        .map(|a| PackageKey {
            namespace: a.namespace,
            package: a.package,
        })
        .collect())
}

pub(crate) fn book_record(feed: &str, k: &PackageKey) -> Advisory {
    Advisory {
        id: format!("{}|{}", k.namespace, k.package),
        aliases: Vec::new(),
        namespace: k.namespace.clone(),
        package: k.package.clone(),
        feed: feed.to_string(),
        severity: Severity::Unknown,
        state: FixState::NotAffected,
        ranges: Vec::new(),
        versions: Vec::new(),
        description: None,
        urls: Vec::new(),
        published: None,
        modified: None,
        cvss: Vec::new(),
        cwes: Vec::new(),
        withdrawn: false,
        vendor_only: false,
        fix_published: None,
    }
}

/// Write a feed's parsed advisories. Full mode: the feed's advisories become exactly
/// `grouped` (keys it no longer names lose its advisories). Incremental mode (NVD by
/// `lastModStartDate`): `grouped` is upserted, nothing is removed. Returns the sorted
/// changed keys and the per-namespace record counts of the whole feed afterwards.
pub(crate) async fn store_grouped(
    store: &Store,
    feed: &str,
    grouped: &Grouped,
    incremental: bool,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(Vec<PackageKey>, BTreeMap<String, u64>), FeedError> {
    let book = keys_partition(feed);
    let old_keys = feed_keys(store, feed).await?;
    let total = grouped.len();
    let mut changed = Vec::new();
    for (i, (key, advs)) in grouped.iter().enumerate() {
        if replace_feed_advisories(store, feed, key, advs).await? {
            changed.push(key.clone());
        }
        if (i + 1) % 1000 == 0 {
            progress(&format!("{feed}: {}/{total} packages stored", i + 1));
        }
    }
    let namespaces = if incremental {
        let mut all = old_keys.clone();
        all.extend(grouped.keys().cloned());
        if all.len() != old_keys.len() {
            let recs: Vec<Advisory> = all.iter().map(|k| book_record(feed, k)).collect();
            store
                .replace_advisories(&book, &recs)
                .await
                .map_err(store_err(feed))?;
        }
        // Records per namespace of the whole feed: one per key for NVD; for other feeds
        // an approximation (keys, not advisories) in incremental mode.
        let mut counts = BTreeMap::new();
        for k in &all {
            *counts.entry(k.namespace.clone()).or_insert(0u64) += 1;
        }
        counts
    } else {
        for key in old_keys.iter().filter(|k| !grouped.contains_key(*k)) {
            if replace_feed_advisories(store, feed, key, &[]).await? {
                changed.push(key.clone());
            }
        }
        let recs: Vec<Advisory> = grouped.keys().map(|k| book_record(feed, k)).collect();
        store
            .replace_advisories(&book, &recs)
            .await
            .map_err(store_err(feed))?;
        drivers::counts(grouped)
    };
    changed.sort();
    Ok((changed, namespaces))
}

/// Sync one feed. Returns the delta when any key changed.
pub async fn sync_feed(
    source: &FeedSource,
    store: &Store,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Option<FeedDelta>, FeedError> {
    if source.kind == FeedKind::Nvd && crate::fetch::is_http(&source.url) {
        return crate::nvd_api::sync_nvd_api(source, store, progress).await;
    }
    let feed = source.name.as_str();
    let previous = store.get_feed_state(feed).await.map_err(store_err(feed))?;
    progress(&format!("{feed}: fetching {}", source.url));
    let (body, etag, last_modified) = match fetch(feed, &source.url, previous.as_ref()).await? {
        Fetched::NotModified => {
            progress(&format!("{feed}: not modified"));
            if let Some(mut st) = previous {
                st.last_sync = now_millis();
                store.put_feed_state(&st).await.map_err(store_err(feed))?;
            }
            return Ok(None);
        }
        Fetched::Content {
            body,
            etag,
            last_modified,
        } => (body, etag, last_modified),
    };
    let hash = body.hash();
    if let Some(prev) = previous
        .as_ref()
        .filter(|p| p.url == source.url && p.content_hash.as_deref() == Some(hash.as_str()))
    {
        progress(&format!("{feed}: unchanged content"));
        let mut st = prev.clone();
        st.last_sync = now_millis();
        st.etag = etag.or(st.etag);
        st.last_modified = last_modified.or(st.last_modified);
        store.put_feed_state(&st).await.map_err(store_err(feed))?;
        return Ok(None);
    }
    // Parse everything before writing anything: a broken source changes nothing.
    let grouped = parse_body(source, &body)?;
    let total = grouped.len();
    progress(&format!("{feed}: {total} packages parsed"));

    let (changed, namespaces) = store_grouped(store, feed, &grouped, false, progress).await?;
    let synced_at = now_millis();
    store
        .put_feed_state(&FeedState {
            feed: feed.to_string(),
            url: source.url.clone(),
            etag,
            last_modified,
            content_hash: Some(hash.clone()),
            last_sync: synced_at,
            record_count: namespaces.values().sum(),
            namespaces,
        })
        .await
        .map_err(store_err(feed))?;
    progress(&format!("{feed}: {} packages changed", changed.len()));
    if changed.is_empty() {
        return Ok(None);
    }
    Ok(Some(FeedDelta {
        feed: feed.to_string(),
        sync_id: hash,
        changed,
        synced_at,
    }))
}

/// The outcome of syncing several feeds: the deltas of those that changed and the
/// errors of those that failed (a failed feed changes nothing in the store for itself).
#[derive(Debug, Default)]
pub struct SyncReport {
    pub deltas: Vec<FeedDelta>,
    pub errors: Vec<FeedError>,
}

/// Sync the named feeds (all when `only` is empty), one after the other.
pub async fn sync_selected(
    config: &FeedsConfig,
    only: &[String],
    store: &Store,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<SyncReport, FeedError> {
    for name in only {
        if !config.feeds.iter().any(|f| &f.name == name) {
            return Err(FeedError::UnknownFeed(name.clone()));
        }
    }
    let mut report = SyncReport::default();
    for source in config
        .feeds
        .iter()
        .filter(|f| only.is_empty() || only.contains(&f.name))
    {
        match sync_feed(source, store, progress).await {
            Ok(Some(d)) => report.deltas.push(d),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(feed = source.name, error = %e, "feed sync failed");
                progress(&format!("{}: failed: {e}", source.name));
                report.errors.push(e);
            }
        }
    }
    Ok(report)
}

/// Sync every configured feed. Returns one delta per feed whose advisories changed;
/// fails with the first error when a feed failed and none produced a delta (errors of
/// other feeds are logged).
pub async fn sync(
    config: &FeedsConfig,
    store: &Store,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Vec<FeedDelta>, FeedError> {
    let mut report = sync_selected(config, &[], store, progress).await?;
    if report.deltas.is_empty() && !report.errors.is_empty() {
        return Err(report.errors.remove(0));
    }
    Ok(report.deltas)
}
