//! Errors of the delivery stage.

use vigil_contracts::codec::CodecError;
use vigil_runtime::jetstream::RunnerError;
use vigil_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// A webhook's configuration cannot be used (no URL, unreadable CA, …).
    #[error("webhook {endpoint}: {message}")]
    Config { endpoint: String, message: String },
    #[error(
        "no webhook is configured for {0}: configure [deliver.webhooks.{0}] or \
         [deliver.webhooks.general]"
    )]
    NoEndpoint(String),
    #[error(
        "unknown notification type {0} (tag_update, analysis_update, vuln_update, \
         policy_eval, repo_update or event)"
    )]
    UnknownType(String),
    #[error("invalid [deliver] setting: {0}")]
    Setting(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Nats(#[from] RunnerError),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}
