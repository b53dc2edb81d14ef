//! vigil-feeds: download vulnerability feeds (Debian security tracker, Alpine secdb,
//! OSV per ecosystem, NVD CVE API 2.0), normalise them into advisories by (namespace,
//! package), store them and report which package keys changed.
//!
//! # Namespaces
//! - Debian tracker: `debian:<major>`; Alpine secdb: `alpine:<major.minor>`.
//! - OSV language ecosystems keep the matcher's names: `pypi`, `npm`, `maven`, `go`,
//!   `crates.io`, `rubygems`, `nuget`, `packagist`, `hex`, `pub`.
//! - OSV distro ecosystems: see [`drivers::osv::osv_namespace`] (`Debian:12` →
//!   `debian:12`, `Ubuntu:22.04:LTS` → `ubuntu:22.04`, `Alpine:v3.19` → `alpine:3.19`,
//!   `AlmaLinux:8` → `almalinux:8`, `Rocky Linux:9` → `rocky:9`, Red Hat → `rhel:<major>`,
//!   SUSE → `sles:<major>` …, `Wolfi` → `wolfi`, `Chainguard` → `chainguard`).
//! - NVD: namespace `nvd`, package = advisory id = the CVE id, no ranges: enrichment
//!   only. The matcher side merges it with [`enrich::nvd_lookup`] + [`enrich::enrich`].
//! - `vigil-feed-keys`: bookkeeping, one partition per feed listing the keys it wrote
//!   (never matched; no image package lives there). `FeedState` has no field for it.
//!
//! # Withdrawn records
//! OSV records with `withdrawn` are stored with `Advisory::withdrawn = true`; the
//! matcher must skip them.
//!
//! # Hostile input
//! - A source that cannot be read as a whole (truncated or damaged zip, a Debian or
//!   Alpine document that is not JSON, an I/O or HTTP failure) fails the feed's sync with
//!   a [`FeedError`] before anything is written: stored advisories and the feed state
//!   stay as they were, and the next sync of a repaired source ingests it (the sync is
//!   resumable; nothing is half-written).
//! - Size caps per [`FeedSource`]: `max_record_bytes` (default 16 MiB) for one JSON file
//!   of a directory or one zip entry — over it, the record is skipped with a warning
//!   without being read; `max_total_bytes` (default 1 GiB) for the whole source (a file,
//!   an HTTP body, the files of a directory, the uncompressed entries of a zip) — over
//!   it, the sync fails with [`FeedError::TooLarge`]. Memory stays bounded by the caps.
//!   A single-document source (Debian tracker, Alpine secdb, one OSV JSON file) is only
//!   subject to `max_total_bytes`.
//! - Skipped input is reported as `<feed>: warning: …` lines through the progress
//!   callback and in [`SyncReport::warnings`]: malformed files and records, oversized
//!   records, and OSV `affected` entries of an unknown ecosystem (the record's other
//!   entries are kept).
//! - When a malformed or oversized record was skipped, the sync is *partial*: it adds
//!   and updates advisories by id but removes nothing the feed stored before, so a
//!   record that turns bad keeps its last good version. The next clean sync removes
//!   what the feed no longer names. (An unknown ecosystem does not make a sync partial:
//!   vigil never stored anything for it.)
//! - Range versions are stored as the feed spells them, unchecked: an OSV range such as
//!   `{"introduced": "0", "fixed": "not a version!!"}` neither fails the sync nor
//!   rejects the advisory; the advisory is stored and the matcher's comparator (total,
//!   with fallback rules per ecosystem) orders the string.
//! - Changing a cap changes the content hash, so content that was skipped or refused
//!   under the old cap is synced again.
//!
//! # Other entry points
//! [`sync`] / [`sync_selected`] (progress callback, [`FeedDelta`](vigil_contracts::FeedDelta)s),
//! [`airgap::export`] / [`airgap::import`], [`state::stale_feeds`],
//! [`lease::FeedLease`] (used by [`FeedsStage::with_lease`]).

pub mod airgap;
pub mod config;
pub mod cvss;
pub mod drivers;
pub mod enrich;
mod error;
pub mod fetch;
pub mod lease;
pub mod nvd_api;
pub mod stage;
pub mod state;
pub mod sync;

pub use airgap::{export, import, ExportError, TransferReport};
pub use config::{FeedKind, FeedSource, FeedsConfig, Limits};
pub use enrich::{enrich, nvd_lookup};
pub use error::FeedError;
pub use lease::{FeedLease, LeaseError};
pub use stage::FeedsStage;
pub use state::{never_synced, stale_feeds, StaleFeed};
pub use sync::{parse_body, parse_body_with, sync, sync_feed, sync_selected, SyncReport};
