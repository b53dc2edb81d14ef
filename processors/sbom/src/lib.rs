//! SBOM in and out for vigil.
//!
//! * Export an [`Analysis`](vigil_contracts::Analysis) (and optionally its
//!   [`Finding`](vigil_contracts::Finding)s) as
//!   [CycloneDX 1.6 JSON](cyclonedx_json) or [SPDX 2.3 JSON](spdx_json). The output is
//!   deterministic: packages are sorted, and the timestamp and serial number come from
//!   [`ExportOptions`].
//! * Import a CycloneDX (1.4–1.6), SPDX (2.2, 2.3) or Syft JSON document with
//!   [`import_sbom`], or straight into an `Analysis` with [`analysis_from_sbom`].
//!
//! Pure logic: no I/O.

mod cyclonedx;
mod error;
mod import;
mod license;
mod purl;
mod spdx;
mod syft;

pub use cyclonedx::cyclonedx_json;
pub use error::SbomError;
pub use import::{analysis_from_sbom, detect_format, import_sbom, ImportedSbom, SbomFormat};
pub use purl::{distro_from_purl, package_type_from_purl};
pub use spdx::spdx_json;

use vigil_contracts::UnixMillis;

/// Version of the SBOM importer, written as `analyzer_version` of imported analyses.
pub const IMPORTER_VERSION: u32 = 1;

/// What makes an exported document differ from run to run, passed in so that output
/// can be pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Document creation time, milliseconds since the Unix epoch (written to the second, UTC).
    pub created_at: UnixMillis,
    /// CycloneDX `serialNumber` (`urn:uuid:…`) and the unique part of the SPDX `documentNamespace`.
    pub serial: uuid::Uuid,
    /// Tool name written as the document's creator.
    pub tool_name: String,
    /// Tool version written as the document's creator.
    pub tool_version: String,
}

impl ExportOptions {
    /// Options with vigil as the tool, at this crate's version.
    pub fn new(created_at: UnixMillis, serial: uuid::Uuid) -> Self {
        ExportOptions {
            created_at,
            serial,
            tool_name: "vigil".to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// `2026-11-27T04:20:29Z`: RFC 3339 in UTC to the second, the form both SPDX (which
/// requires it) and CycloneDX accept.
pub(crate) fn rfc3339_seconds(millis: UnixMillis) -> Result<String, SbomError> {
    let secs = millis.div_euclid(1000);
    let t = time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| SbomError::InvalidTimestamp(millis))?;
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f)
        .map_err(|_| SbomError::InvalidTimestamp(millis))
}
