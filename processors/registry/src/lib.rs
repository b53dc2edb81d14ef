//! The registry HTTP API as the watch stage needs it (the fetch stage pulls images with
//! `oci-client`; this crate lists and resolves):
//!
//! * [`RegistryClient::head_manifest`]: resolve a tag to its digest with one conditional
//!   `HEAD` (an unchanged tag is one round trip once a bearer token is cached);
//! * [`RegistryClient::catalog_page`] / [`RegistryClient::tags_page`]: one page of
//!   `/v2/_catalog` or `/v2/<repo>/tags/list`, following `Link` headers and `n`/`last`;
//!   [`RegistryClient::list_tags`]: every page, bounded in count and bytes;
//! * [`Credentials`]: configured basic or bearer credentials per registry and
//!   repository prefix, `~/.docker/config.json` `auths`, `credHelpers` and `credsStore`;
//! * [`RateLimiter`]: a token bucket per registry; 429 answers wait `Retry-After`, 5xx
//!   answers back off, both bounded.
//!
//! Pure parts ([`link`], [`ratelimit`], [`auth`] header parsing, docker config parsing)
//! do no I/O and are tested alone.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod link;
pub mod ratelimit;

pub use client::{ClientConfig, HeadResult, Page, RegistryClient};
pub use credentials::{CredentialEntry, Credentials, RegistryAuth};
pub use ratelimit::RateLimiter;

/// Errors of registry calls. Each names the registry and what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: {what}: authentication failed ({status}): {message}")]
    Unauthorized {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{registry}: {what}: not found")]
    NotFound { registry: String, what: String },
    #[error("{registry}: {what}: rate limited (429) {attempts} times in a row")]
    RateLimited {
        registry: String,
        what: String,
        attempts: u32,
    },
    #[error("{registry}: {what}: server error {status} after {attempts} attempts")]
    Server {
        registry: String,
        what: String,
        status: u16,
        attempts: u32,
    },
    #[error("{registry}: {what}: unexpected status {status}")]
    Status {
        registry: String,
        what: String,
        status: u16,
    },
    #[error("{registry}: {what}: malformed answer: {message}")]
    Malformed {
        registry: String,
        what: String,
        message: String,
    },
    #[error("{registry}: {what}: answer larger than {limit} bytes")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("{registry}: {what}: more than {limit} entries")]
    TooMany {
        registry: String,
        what: String,
        limit: usize,
    },
    #[error("{registry}: {what}: {message}")]
    Transport {
        registry: String,
        what: String,
        message: String,
    },
    #[error("credentials for {registry}: {message}")]
    Credentials { registry: String, message: String },
}

impl RegistryError {
    /// Whether trying again later may help (rate limits, server errors, transport).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::RateLimited { .. }
                | RegistryError::Server { .. }
                | RegistryError::Transport { .. }
        )
    }
}
