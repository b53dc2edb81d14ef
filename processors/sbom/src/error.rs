use thiserror::Error;

/// Why an SBOM could not be exported or imported.
#[derive(Debug, Error)]
pub enum SbomError {
    /// The text is not JSON at all.
    #[error("the SBOM is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but neither CycloneDX, SPDX nor Syft JSON.
    #[error("unrecognised SBOM document: {0}")]
    UnknownFormat(String),
    /// A recognised format at a version this importer does not read.
    #[error("unsupported {format} version {version:?} (supported: {supported})")]
    UnsupportedVersion {
        format: &'static str,
        version: String,
        supported: &'static str,
    },
    /// A recognised format whose content breaks its rules; `path` points at the offending
    /// part (`components[3]`, `packages[0].name`, …).
    #[error("malformed {format} document at {path}: {message}")]
    Malformed {
        format: &'static str,
        path: String,
        message: String,
    },
    /// The creation time passed to an export is out of range.
    #[error("timestamp {0} ms is out of range")]
    InvalidTimestamp(i64),
    /// Serialising the output failed (should not happen).
    #[error("could not serialise the SBOM: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl SbomError {
    pub(crate) fn malformed(
        format: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SbomError::Malformed {
            format,
            path: path.into(),
            message: message.into(),
        }
    }
}
