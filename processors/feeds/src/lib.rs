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
pub use config::{FeedKind, FeedSource, FeedsConfig};
pub use enrich::{enrich, nvd_lookup};
pub use error::FeedError;
pub use lease::{FeedLease, LeaseError};
pub use stage::FeedsStage;
pub use state::{never_synced, stale_feeds, StaleFeed};
pub use sync::{parse_body, sync, sync_feed, sync_selected, SyncReport};
