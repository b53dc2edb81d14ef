//! vigil-feeds: download vulnerability feeds (Debian security tracker, Alpine secdb,
//! OSV), normalise them into advisories by (namespace, package), store them and report
//! which package keys changed.

pub mod config;
pub mod drivers;
mod error;
pub mod fetch;
pub mod stage;
pub mod sync;

pub use config::{FeedKind, FeedSource, FeedsConfig};
pub use error::FeedError;
pub use stage::FeedsStage;
pub use sync::{parse_body, sync, sync_feed, sync_selected, SyncReport};
