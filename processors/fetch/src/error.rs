//! Fetch errors and their mapping to failure kinds.

use vigil_contracts::FailureKind;
use vigil_runtime::blobs::BlobError;
use vigil_runtime::StageError;

/// Why fetching an image failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid source {input:?}: {reason}")]
    InvalidSource { input: String, reason: String },
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    InvalidPlatform(String),
    #[error(
        "{image}: digest mismatch for {what}: expected {expected}, content hashes to {actual}"
    )]
    DigestMismatch {
        image: String,
        what: String,
        expected: String,
        actual: String,
    },
    /// Any other failure, already classified.
    #[error("{image}: {message}")]
    Other {
        kind: FailureKind,
        image: String,
        message: String,
    },
}

impl FetchError {
    pub fn new(kind: FailureKind, image: impl Into<String>, message: impl Into<String>) -> Self {
        FetchError::Other {
            kind,
            image: image.into(),
            message: message.into(),
        }
    }

    pub fn malformed(image: &str, message: impl Into<String>) -> Self {
        FetchError::new(FailureKind::MalformedImage, image, message)
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            FetchError::InvalidSource { .. } | FetchError::InvalidPlatform(_) => {
                FailureKind::InvalidRequest
            }
            FetchError::DigestMismatch { .. } => FailureKind::DigestMismatch,
            FetchError::Other { kind, .. } => *kind,
        }
    }

    /// Classify a blob-cache error that happened while staging `what` of `image`.
    pub fn from_blob(image: &str, what: &str, e: BlobError) -> Self {
        match e {
            BlobError::DigestMismatch { expected, actual } => FetchError::DigestMismatch {
                image: image.into(),
                what: what.into(),
                expected,
                actual,
            },
            BlobError::TooLarge { digest, limit } => FetchError::new(
                FailureKind::LimitExceeded,
                image,
                format!("{what} {digest} is larger than the limit of {limit} bytes"),
            ),
            BlobError::UnsupportedDigest(d) => FetchError::new(
                FailureKind::Unsupported,
                image,
                format!("{what}: unsupported digest {d}"),
            ),
            other => FetchError::new(FailureKind::Upstream, image, format!("{what}: {other}")),
        }
    }
}

impl From<FetchError> for StageError {
    fn from(e: FetchError) -> Self {
        StageError::new(e.kind(), e.to_string())
    }
}

/// `err` and its sources, joined with `: ` (reqwest hides the useful part in sources).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = e.source();
    }
    s
}
