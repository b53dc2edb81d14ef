//! The wire contract of vigil: the data model every stage speaks, and nothing else.
//!
//! * [`records`]: the record types that travel between stages or are stored
//!   (scan request, fetched/extracted image, layer index, analysis, vulnerability
//!   report, evaluation, scan result, notification, feed delta, dead letter).
//! * [`codec`]: MessagePack with named fields inside a versioned [`codec::Envelope`].
//!   Old readers tolerate new fields; a record with a newer schema version than the
//!   reader knows is rejected, never misread.
//! * [`subjects`]: subject names under a configurable prefix (default `vigil`).
//! * [`watch`]: watched tags and repositories, ingestion, subscriptions, webhook
//!   deliveries and events.
//! * [`streams`]: JetStream stream and consumer definitions, as plain data.
//!
//! This crate must never do I/O or depend on a runtime.
//!
//! ```
//! use vigil_contracts::{codec, records::ScanRequest, records::RequestContext};
//! let req = ScanRequest { request: RequestContext::new("r1", "127.0.0.1:5000/app:latest"), force: false, sbom: None };
//! let bytes = codec::encode(&req).unwrap();
//! let back: ScanRequest = codec::decode(&bytes).unwrap();
//! assert_eq!(back, req);
//! ```

pub mod codec;
pub mod records;
pub mod streams;
pub mod subjects;
pub mod watch;

pub use codec::{decode, encode, Record, SCHEMA_VERSION};
pub use records::*;
pub use subjects::{StageName, Subject, Subjects};
