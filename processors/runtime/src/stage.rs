//! The stage interface.

use async_trait::async_trait;
use serde::Deserialize;
use vigil_contracts::codec::{self, CodecError, Record};
use vigil_contracts::{FailureKind, RequestContext, StageName, Subject};

/// A record to publish: where, its de-duplication id (`Nats-Msg-Id`) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub subject: Subject,
    /// Derived from content so that a redelivered input publishes nothing new.
    pub msg_id: String,
    pub payload: Vec<u8>,
}

impl Outgoing {
    pub fn record<T: Record>(
        subject: Subject,
        msg_id: impl Into<String>,
        record: &T,
    ) -> Result<Self, StageError> {
        Ok(Outgoing {
            subject,
            msg_id: msg_id.into(),
            payload: codec::encode(record)
                .map_err(|e| StageError::new(FailureKind::Internal, e.to_string()))?,
        })
    }
}

/// Why a stage could not handle a message. Transient kinds are retried by the runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct StageError {
    pub kind: FailureKind,
    pub message: String,
}

impl StageError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        StageError {
            kind,
            message: message.into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        StageError::new(FailureKind::Internal, message.to_string())
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

impl From<CodecError> for StageError {
    fn from(e: CodecError) -> Self {
        StageError::new(FailureKind::InvalidRequest, e.to_string())
    }
}

impl From<vigil_store::StoreError> for StageError {
    fn from(e: vigil_store::StoreError) -> Self {
        StageError::new(FailureKind::Store, e.to_string())
    }
}

/// One pipeline stage. Implementations hold their own dependencies (store, blob cache).
#[async_trait]
pub trait Stage: Send + Sync {
    fn name(&self) -> StageName;

    /// Handle one message that arrived on `subject`. Must be idempotent: a redelivery
    /// of the same message must write the same data and produce the same outputs.
    async fn handle(&self, subject: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError>;
}

#[derive(Deserialize)]
struct RequestProbe {
    #[serde(default)]
    request: Option<RequestContext>,
}

#[derive(Deserialize)]
struct ProbeEnvelope {
    body: RequestProbe,
}

/// The request context carried by a stage record, if any; used by runners to report a
/// failure to the requester without knowing the record type.
pub fn request_of(payload: &[u8]) -> Option<RequestContext> {
    rmp_serde::from_slice::<ProbeEnvelope>(payload)
        .ok()
        .and_then(|e| e.body.request)
}
