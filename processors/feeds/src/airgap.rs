//! Air-gapped transfer of a synced feed set: [`export`] writes every feed state and
//! every advisory the feeds wrote into one file, [`import`] loads it into another store.
//!
//! File format: a zstd-compressed stream of MessagePack values (named fields, so
//! records stay readable across versions that add `#[serde(default)]` fields):
//! a [`Header`], then [`Entry`] values, the last one [`Entry::End`] with the totals
//! (a truncated file is detected by its missing `End`).

use std::collections::BTreeSet;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vigil_contracts::{Advisory, FeedDelta, FeedState, PackageKey};
use vigil_runtime::now_millis;
use vigil_store::{Store, StoreError};

use crate::sync::{book_record, feed_keys, KEYS_NAMESPACE};

/// Identifies an export file.
pub const FORMAT: &str = "vigil-feeds-export";
/// Current format version.
pub const VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("feed export/import I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("feed export/import store: {0}")]
    Store(#[from] StoreError),
    #[error("feed export encoding: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("not a vigil feed export or damaged: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("not a vigil feed export (format {format:?}, version {version})")]
    Format { format: String, version: u32 },
    #[error("feed export is truncated: no end marker")]
    Truncated,
    #[error("feed export is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A feed's state and the keys it wrote.
    Feed {
        state: FeedState,
        keys: Vec<PackageKey>,
    },
    /// All advisories stored under a key (every feed's).
    Key {
        key: PackageKey,
        advisories: Vec<Advisory>,
    },
    End {
        feeds: u64,
        keys: u64,
        advisories: u64,
    },
}

/// What an export or import moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    pub feeds: u64,
    pub keys: u64,
    pub advisories: u64,
    /// Import only: per feed, the keys whose advisories changed (feed to the re-match
    /// pipeline as after a sync).
    pub deltas: Vec<FeedDelta>,
}

/// Write every synced feed (states, bookkeeping, advisories) to `writer`.
pub async fn export<W: Write>(store: &Store, writer: W) -> Result<TransferReport, ExportError> {
    let mut z = zstd::Encoder::new(writer, 9)?;
    rmp_serde::encode::write_named(
        &mut z,
        &Header {
            format: FORMAT.into(),
            version: VERSION,
            created: now_millis(),
        },
    )?;
    let mut report = TransferReport::default();
    let mut all_keys = BTreeSet::new();
    let states = store.list_feed_states().await?;
    for state in states {
        let keys: Vec<PackageKey> = feed_keys(store, &state.feed)
            .await
            .map_err(|e| ExportError::Inconsistent(e.to_string()))?
            .into_iter()
            .collect();
        all_keys.extend(keys.iter().cloned());
        rmp_serde::encode::write_named(&mut z, &Entry::Feed { state, keys })?;
        report.feeds += 1;
    }
    for key in all_keys {
        let advisories = store.get_advisories(&key).await?;
        report.keys += 1;
        report.advisories += advisories.len() as u64;
        rmp_serde::encode::write_named(&mut z, &Entry::Key { key, advisories })?;
    }
    rmp_serde::encode::write_named(
        &mut z,
        &Entry::End {
            feeds: report.feeds,
            keys: report.keys,
            advisories: report.advisories,
        },
    )?;
    z.finish()?.flush()?;
    Ok(report)
}

fn keys_partition(feed: &str) -> PackageKey {
    PackageKey {
        namespace: KEYS_NAMESPACE.to_string(),
        package: feed.to_string(),
    }
}

/// Load an export into `store`. The whole file is read and checked before anything is
/// written. Each exported key gets exactly the exported advisories; for each exported
/// feed, keys it wrote in `store` before but not in the export lose that feed's
/// advisories. Feeds not in the export are left alone.
pub async fn import<R: Read>(store: &Store, reader: R) -> Result<TransferReport, ExportError> {
    let mut z = zstd::Decoder::new(reader)?;
    let header: Header = rmp_serde::decode::from_read(&mut z)?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(ExportError::Format {
            format: header.format,
            version: header.version,
        });
    }
    let mut feeds = Vec::new();
    let mut keys = Vec::new();
    loop {
        let entry: Entry = match rmp_serde::decode::from_read(&mut z) {
            Ok(e) => e,
            Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Err(ExportError::Truncated)
            }
            Err(e) => return Err(e.into()),
        };
        match entry {
            Entry::Feed { state, keys: k } => feeds.push((state, k)),
            Entry::Key { key, advisories } => keys.push((key, advisories)),
            Entry::End {
                feeds: f,
                keys: k,
                advisories: a,
            } => {
                let n: u64 = keys.iter().map(|(_, v)| v.len() as u64).sum();
                if f != feeds.len() as u64 || k != keys.len() as u64 || a != n {
                    return Err(ExportError::Inconsistent(format!(
                        "end marker says {f} feeds, {k} keys, {a} advisories; read {}, {}, {n}",
                        feeds.len(),
                        keys.len()
                    )));
                }
                break;
            }
        }
    }
    let mut report = TransferReport {
        feeds: feeds.len() as u64,
        keys: keys.len() as u64,
        advisories: keys.iter().map(|(_, v)| v.len() as u64).sum(),
        deltas: Vec::new(),
    };
    let mut changed_any: BTreeSet<PackageKey> = BTreeSet::new();
    for (key, advisories) in &keys {
        if store.replace_advisories(key, advisories).await? {
            changed_any.insert(key.clone());
        }
    }
    for (state, feed_keyset) in &feeds {
        let feed = state.feed.as_str();
        let old = feed_keys(store, feed)
            .await
            .map_err(|e| ExportError::Inconsistent(e.to_string()))?;
        let new: BTreeSet<&PackageKey> = feed_keyset.iter().collect();
        let mut changed: Vec<PackageKey> = feed_keyset
            .iter()
            .filter(|k| changed_any.contains(*k))
            .cloned()
            .collect();
        for gone in old.iter().filter(|k| !new.contains(k)) {
            let existing = store.get_advisories(gone).await?;
            let kept: Vec<Advisory> = existing.into_iter().filter(|a| a.feed != feed).collect();
            if store.replace_advisories(gone, &kept).await? {
                changed.push(gone.clone());
            }
        }
        let book: Vec<Advisory> = feed_keyset.iter().map(|k| book_record(feed, k)).collect();
        store
            .replace_advisories(&keys_partition(feed), &book)
            .await?;
        store.put_feed_state(state).await?;
        changed.sort();
        if !changed.is_empty() {
            report.deltas.push(FeedDelta {
                feed: feed.to_string(),
                sync_id: state.content_hash.clone().unwrap_or_default(),
                changed,
                synced_at: now_millis(),
            });
        }
    }
    Ok(report)
}
