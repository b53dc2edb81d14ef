//! vigil fetch stage: resolves a scan source (registry, OCI layout, docker archive or
//! root directory) to a single-platform image, reads and verifies its manifest and
//! config, and stages the layer blobs that have no layer index into the blob cache.
//!
//! Pure logic lives in [`source`], [`platform`] and [`image`]; I/O in [`registry`]
//! and [`fetcher`]; the pipeline stage in [`stage`].

pub mod config;
pub mod error;
pub mod fetcher;
pub mod image;
pub mod platform;
mod registry;
pub mod source;
pub mod stage;

pub use config::{FetchConfig, RegistryCredential};
pub use error::FetchError;
pub use fetcher::{Fetcher, Resolved};
pub use platform::Platform;
pub use source::{parse_source, RegistryRef, Source};
pub use stage::FetchStage;
