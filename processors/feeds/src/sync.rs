//! Syncing feeds into the store and reporting which package keys changed.

use std::collections::{BTreeMap, BTreeSet};

use vigil_contracts::{Advisory, FeedDelta, FeedState, FixState, PackageKey, Severity};
use vigil_runtime::now_millis;
use vigil_store::Store;

use crate::config::{FeedKind, FeedSource, FeedsConfig};
use crate::drivers::{self, alpine, debian, nvd, osv, Grouped, Warnings};
use crate::fetch::{fetch_limited, Body, Fetched};
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

/// The version of the drivers' parsing, recorded in [`FeedState::parser_version`]:
/// raised when the same bytes parse into different advisories (2: OSV range types and
/// RHEL module streams), so that the first sync after an upgrade parses unchanged
/// content again instead of keeping what the older parsing stored.
pub const PARSER_VERSION: u32 = 2;

/// Parse a fetched body with the feed's driver.
pub fn parse_body(source: &FeedSource, body: &Body) -> Result<Grouped, FeedError> {
    parse_body_with(source, body, &mut Warnings::default())
}

/// [`parse_body`], collecting what was skipped (malformed files, records and Debian /
/// Alpine entries, oversized zip entries, unknown ecosystems) in `warnings`.
pub fn parse_body_with(
    source: &FeedSource,
    body: &Body,
    warnings: &mut Warnings,
) -> Result<Grouped, FeedError> {
    let feed = source.name.as_str();
    let advisories = match (source.kind, body) {
        (FeedKind::Debian, Body::Bytes(b)) => debian::parse_with(feed, b, warnings)?,
        (FeedKind::Alpine, Body::Bytes(b)) => alpine::parse_with(feed, b, warnings)?,
        (FeedKind::Debian | FeedKind::Alpine, Body::Files(fs)) => {
            let mut out = Vec::new();
            for (name, b) in fs {
                let mut file_warnings = Warnings::default();
                let parsed = if source.kind == FeedKind::Debian {
                    debian::parse_with(feed, b, &mut file_warnings)
                } else {
                    alpine::parse_with(feed, b, &mut file_warnings)
                };
                for m in file_warnings.messages {
                    warnings.skipped(format!("{name}: {m}"));
                }
                match parsed {
                    Ok(a) => out.extend(a),
                    Err(e) => {
                        tracing::warn!(feed, file = name, error = %e, "skipping malformed file");
                        warnings.skipped(format!("skipping malformed file {name}: {e}"));
                    }
                }
            }
            out
        }
        (FeedKind::Osv, Body::Bytes(b)) if b.starts_with(b"PK") => {
            let files = osv::read_zip_limited(feed, &source.url, b, source.limits(), warnings)?;
            osv::parse_files_with(
                feed,
                files.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
                warnings,
            )
            .0
        }
        (FeedKind::Osv, Body::Bytes(b)) => osv::parse_document_with(feed, &source.url, b, warnings)
            .map_err(|m| FeedError::Parse {
                feed: feed.to_string(),
                message: m,
            })?,
        (FeedKind::Osv, Body::Files(fs)) => {
            osv::parse_files_with(
                feed,
                fs.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
                warnings,
            )
            .0
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
                    Err(e) => {
                        tracing::warn!(feed, error = e, "skipping malformed NVD file");
                        warnings.skipped(format!("skipping malformed NVD file {e}"));
                    }
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

/// Make the stored advisories of `key` from this feed exactly `ours` (with `keep`: `ours`
/// plus this feed's stored advisories of other ids), keeping other feeds' advisories.
/// Returns whether anything changed.
async fn replace_feed_advisories(
    store: &Store,
    feed: &str,
    key: &PackageKey,
    ours: &[Advisory],
    keep: bool,
) -> Result<bool, FeedError> {
    let existing = store.get_advisories(key).await.map_err(store_err(feed))?;
    let mut merged: Vec<Advisory> = existing
        .into_iter()
        .filter(|a| {
            (keep || a.feed != feed) && !ours.iter().any(|o| o.record_key() == a.record_key())
        })
        .collect();
    merged.extend(ours.iter().cloned());
    merged.sort_by_key(Advisory::record_key);
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
        module: None,
    }
}

/// How [`store_grouped`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreMode {
    /// The feed's advisories become exactly `grouped` (keys it no longer names lose its
    /// advisories).
    Full,
    /// Some input was skipped: `grouped` is added and updated by id, nothing the feed
    /// stored before is removed (a skipped record keeps its last good version).
    Partial,
    /// NVD by `lastModStartDate`: `grouped` replaces the feed's advisories of its keys,
    /// no key is removed.
    Incremental,
}

/// Write a feed's parsed advisories (see [`StoreMode`]). Returns the sorted changed
/// keys and the per-namespace record counts of the whole feed afterwards.
pub(crate) async fn store_grouped(
    store: &Store,
    feed: &str,
    grouped: &Grouped,
    mode: StoreMode,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(Vec<PackageKey>, BTreeMap<String, u64>), FeedError> {
    let book = keys_partition(feed);
    let old_keys = feed_keys(store, feed).await?;
    let total = grouped.len();
    let mut changed = Vec::new();
    let keep = mode == StoreMode::Partial;
    for (i, (key, advs)) in grouped.iter().enumerate() {
        if replace_feed_advisories(store, feed, key, advs, keep).await? {
            changed.push(key.clone());
        }
        if (i + 1) % 1000 == 0 {
            progress(&format!("{feed}: {}/{total} packages stored", i + 1));
        }
    }
    let namespaces = if mode != StoreMode::Full {
        let mut all = old_keys.clone();
        all.extend(grouped.keys().cloned());
        if all.len() != old_keys.len() {
            let recs: Vec<Advisory> = all.iter().map(|k| book_record(feed, k)).collect();
            store
                .replace_advisories(&book, &recs)
                .await
                .map_err(store_err(feed))?;
        }
        // Records per namespace of the whole feed: one per key for NVD (incremental, an
        // approximation for other feeds); counted from the store after a partial sync.
        let mut counts = BTreeMap::new();
        for k in &all {
            let n = if mode == StoreMode::Partial {
                store
                    .get_advisories(k)
                    .await
                    .map_err(store_err(feed))?
                    .iter()
                    .filter(|a| a.feed == feed)
                    .count() as u64
            } else {
                1
            };
            if n > 0 {
                *counts.entry(k.namespace.clone()).or_insert(0u64) += n;
            }
        }
        counts
    } else {
        for key in old_keys.iter().filter(|k| !grouped.contains_key(*k)) {
            if replace_feed_advisories(store, feed, key, &[], false).await? {
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

/// Sync one feed. Returns the delta when any key changed. What the sync skipped is
/// reported through `progress` as `<feed>: warning: …` lines.
pub async fn sync_feed(
    source: &FeedSource,
    store: &Store,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Option<FeedDelta>, FeedError> {
    Ok(sync_feed_warn(source, store, progress).await?.0)
}

/// [`sync_feed`], also returning the warnings (each as sent to `progress`).
async fn sync_feed_warn(
    source: &FeedSource,
    store: &Store,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(Option<FeedDelta>, Vec<String>), FeedError> {
    if source.kind == FeedKind::Nvd && crate::fetch::is_http(&source.url) {
        return Ok((
            crate::nvd_api::sync_nvd_api(source, store, progress).await?,
            Vec::new(),
        ));
    }
    let feed = source.name.as_str();
    // State left by an older parsing: fetch and parse again, unconditionally.
    let previous = store
        .get_feed_state(feed)
        .await
        .map_err(store_err(feed))?
        .filter(|p| p.parser_version >= PARSER_VERSION);
    progress(&format!("{feed}: fetching {}", source.url));
    let fetched = fetch_limited(feed, &source.url, previous.as_ref(), source.limits()).await?;
    let (body, etag, last_modified, skipped) = match fetched {
        Fetched::NotModified => {
            progress(&format!("{feed}: not modified"));
            if let Some(mut st) = previous {
                st.last_sync = now_millis();
                store.put_feed_state(&st).await.map_err(store_err(feed))?;
            }
            return Ok((None, Vec::new()));
        }
        Fetched::Content {
            body,
            etag,
            last_modified,
            skipped,
        } => (body, etag, last_modified, skipped),
    };
    let mut warnings = Warnings::default();
    let limit = source.limits().record;
    for (path, size) in &skipped {
        warnings.skipped(format!(
            "skipping {path}: {size} bytes, over the record limit of {limit} bytes (max_record_bytes)"
        ));
    }
    let hash = content_hash(source, &body, &skipped);
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
        return Ok((None, Vec::new()));
    }
    // Parse everything before writing anything: a broken source changes nothing.
    let grouped = parse_body_with(source, &body, &mut warnings)?;
    drop(body);
    let total = grouped.len();
    progress(&format!("{feed}: {total} packages parsed"));
    let warnings_out: Vec<String> = warnings
        .messages
        .iter()
        .map(|m| format!("{feed}: warning: {m}"))
        .collect();
    for w in &warnings_out {
        progress(w);
    }
    let mode = if warnings.partial {
        progress(&format!(
            "{feed}: input was skipped: partial sync, nothing stored before is removed"
        ));
        StoreMode::Partial
    } else {
        StoreMode::Full
    };

    // The delta's id names the transition (the content before and after), not the new
    // content alone: a feed that returns to earlier content (an advisory withdrawn, then
    // restored) is a new change, not a duplicate of the first delta's message id.
    let sync_id = delta_id(previous.as_ref(), &hash);
    let (changed, namespaces) = store_grouped(store, feed, &grouped, mode, progress).await?;
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
            parser_version: PARSER_VERSION,
        })
        .await
        .map_err(store_err(feed))?;
    progress(&format!("{feed}: {} packages changed", changed.len()));
    if changed.is_empty() {
        return Ok((None, warnings_out));
    }
    Ok((
        Some(FeedDelta {
            feed: feed.to_string(),
            sync_id,
            changed,
            synced_at,
        }),
        warnings_out,
    ))
}

/// The content hash of a fetched source: the body's, plus the path and size of every
/// file skipped as oversized, plus the size caps when configured (so changing a cap
/// resyncs content that was skipped or refused under the old one).
fn content_hash(source: &FeedSource, body: &Body, skipped: &[(String, u64)]) -> String {
    use sha2::{Digest, Sha256};
    let h = body.hash();
    let custom = source.max_record_bytes.is_some() || source.max_total_bytes.is_some();
    if skipped.is_empty() && !custom {
        return h;
    }
    let mut d = Sha256::new();
    d.update(h.as_bytes());
    if custom {
        let l = source.limits();
        d.update(format!("\0limits:{}:{}", l.record, l.total).as_bytes());
    }
    for (p, n) in skipped {
        d.update(p.as_bytes());
        d.update([0u8]);
        d.update(n.to_le_bytes());
    }
    hex::encode(d.finalize())
}

/// The outcome of syncing several feeds: the deltas of those that changed and the
/// errors of those that failed (a failed feed changes nothing in the store for itself).
#[derive(Debug, Default)]
pub struct SyncReport {
    pub deltas: Vec<FeedDelta>,
    pub errors: Vec<FeedError>,
    /// What the synced feeds skipped, one `<feed>: warning: …` line each (also sent to
    /// the progress callback).
    pub warnings: Vec<String>,
}

/// The id of a feed delta (and of its messages): the transition from the state stored
/// before (its content hash and the time of that sync; `None`: the first sync) to the new
/// content. Every sync that changes something gets a new id, also when the content goes
/// back and forth between the same versions.
pub fn delta_id(before: Option<&FeedState>, after: &str) -> String {
    use sha2::{Digest, Sha256};
    let (hash, at) = before
        .map(|b| (b.content_hash.as_deref().unwrap_or(""), b.last_sync))
        .unwrap_or(("", 0));
    hex::encode(Sha256::digest(format!("{hash}\0{at}\0{after}").as_bytes()))
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
        match sync_feed_warn(source, store, progress).await {
            Ok((delta, warnings)) => {
                report.deltas.extend(delta);
                report.warnings.extend(warnings);
            }
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
