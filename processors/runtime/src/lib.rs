//! What every vigil stage runs on.
//!
//! * [`stage`]: the [`Stage`] interface. A stage is a function from one input record to
//!   the records it produces; it never knows which runner drives it.
//! * [`blobs`]: the content-addressed blob cache between fetch and extract (a local
//!   directory, or a JetStream object store bucket), digest-verified while streaming.
//! * [`inprocess`]: chains the stage handlers in one process (embedded mode).
//! * [`jetstream`]: runs stages as durable JetStream pull consumers.
//! * [`setup`]: connects to NATS (server lists, credentials, TLS) and keeps streams and
//!   consumers in line with the configuration.
//! * [`objects`]: digest-checked object-store puts, the blob cache bucket and the
//!   payload bucket for messages too large for NATS.
//! * [`metrics`]: Prometheus metrics, `/healthz` and `/readyz`.
//! * [`config`]: configuration from file, environment and flags.
//!
//! This crate must never interpret image content.

pub mod blobs;
pub mod config;
pub mod events;
pub mod failure;
pub mod inprocess;
pub mod jetstream;
pub mod metrics;
pub mod objects;
pub mod setup;
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

/// Drop `value` on the blocking pool when inside a tokio runtime, else here. For records
/// of many small allocations (a scan result lists every package with its files): freeing
/// them takes milliseconds that the message's next stage need not wait for.
pub fn drop_off_thread<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// Install the process-wide rustls crypto provider (ring) once; every TLS client of
/// vigil (registry, feeds, NATS) shares it, so only one TLS stack is compiled.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
