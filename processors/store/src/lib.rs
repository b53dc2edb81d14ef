//! The vigil store: one typed interface ([`Store`]) over a raw partitioned key-value
//! [`Backend`], with three backends that pass one conformance suite:
//!
//! * [`embedded::EmbeddedBackend`]: a single redb file in the data directory (default);
//! * [`scylla_backend::ScyllaBackend`]: ScyllaDB through the `scylla` crate (schema in
//!   `infra/scylla/schema.cql`, created on start);
//! * [`jetstream_backend::JetStreamBackend`]: NATS JetStream streams (paged dense tables,
//!   chunked large values, leader reads), for a cluster that runs nothing but NATS.
//!
//! Every logical table is `(partition, sort) → value bytes`; hot queries read one
//! partition. All logic (what keys mean, how records are encoded) lives in [`Store`],
//! so both backends stay thin mappings and the shared suite covers the logic.
//! Values are [`vigil_contracts::codec`] envelopes, so the schema-version check also
//! guards stored data.
//!
//! This crate must never interpret image content.
//!
//! ```no_run
//! # async fn f() -> Result<(), vigil_store::StoreError> {
//! let store = vigil_store::Store::open_embedded(std::path::Path::new("/tmp/vigil.redb"))?;
//! assert!(store.get_analysis("sha256:00").await?.is_none());
//! # Ok(()) }
//! ```

pub mod backend;
pub mod conformance;
pub mod embedded;
pub mod jetstream_backend;
pub mod scylla_backend;
mod typed;

pub use backend::{Backend, Table};
pub use jetstream_backend::JetStreamBackend;
pub use typed::watch::{utc_day, EventFilter};
pub use typed::Store;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("stored {table} record {key} cannot be read: {source}")]
    Codec {
        table: &'static str,
        key: String,
        source: vigil_contracts::codec::CodecError,
    },
    #[error("cannot encode record for {table}: {source}")]
    Encode {
        table: &'static str,
        source: vigil_contracts::codec::CodecError,
    },
    #[error("not found: {0}")]
    NotFound(String),
}
