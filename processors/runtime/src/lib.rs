//! What every vigil stage runs on.
//!
//! * [`stage`]: the [`Stage`] interface. A stage is a function from one input record to
//!   the records it produces; it never knows which runner drives it.
//! * [`blobs`]: the content-addressed blob cache between fetch and extract (a local
//!   directory, or a JetStream object store bucket), digest-verified while streaming.
//! * [`inprocess`]: chains the stage handlers in one process (embedded mode).
//! * [`jetstream`]: runs stages as durable JetStream pull consumers.
//! * [`config`]: configuration from file, environment and flags.
//!
//! This crate must never interpret image content.

pub mod blobs;
pub mod config;
pub mod failure;
pub mod inprocess;
pub mod jetstream;
pub mod stage;
pub mod telemetry;

pub use stage::{Outgoing, Stage, StageError};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Install the process-wide rustls crypto provider (ring) once; every TLS client of
/// vigil (registry, feeds, NATS) shares it, so only one TLS stack is compiled.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
