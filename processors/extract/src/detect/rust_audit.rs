//! `cargo-auditable` dependency data: the `.dep-v0` ELF section holds zlib-compressed
//! JSON `{"packages":[{"name","version","source","kind","dependencies","root"}]}`.

use std::io::Read;

use serde::Deserialize;
use vigil_contracts::{Package, PackageType};

use super::elf::Elf;

/// Most bytes the decompressed JSON may have (zlib-bomb bound).
pub const MAX_JSON: u64 = 8 << 20;

#[derive(Debug, Deserialize)]
struct VersionInfo {
    packages: Vec<Dep>,
}

#[derive(Debug, Deserialize)]
struct Dep {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    root: bool,
}

/// Why the section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("cargo-auditable data does not decompress: {0}")]
    Zlib(String),
    #[error("cargo-auditable data is over {MAX_JSON} bytes decompressed")]
    TooLarge,
    #[error("cargo-auditable data is not the expected JSON: {0}")]
    Json(String),
}

/// One crate of the dependency tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub source: Option<String>,
    pub root: bool,
    /// A build dependency (not linked into the binary).
    pub build: bool,
}

/// Decode the `.dep-v0` section bytes.
pub fn decode(section: &[u8]) -> Result<Vec<Crate>, AuditError> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| AuditError::Zlib(e.to_string()))?;
    if json.len() as u64 > MAX_JSON {
        return Err(AuditError::TooLarge);
    }
    let v: VersionInfo =
        serde_json::from_slice(&json).map_err(|e| AuditError::Json(e.to_string()))?;
    Ok(v.packages
        .into_iter()
        .map(|d| Crate {
            build: d.kind.as_deref() == Some("build"),
            name: d.name,
            version: d.version,
            source: d.source,
            root: d.root,
        })
        .collect())
}

/// The crates recorded in an ELF file. `Ok(empty)`: no auditable data.
pub fn from_elf(data: &[u8], location: &str) -> Result<Vec<Package>, AuditError> {
    let Some(sec) = Elf::parse(data).and_then(|e| e.section_data(".dep-v0")) else {
        return Ok(Vec::new());
    };
    let deps = decode(sec)?;
    let root = deps
        .iter()
        .find(|d| d.root)
        .map(|d| d.name.clone())
        .unwrap_or_default();
    Ok(deps
        .into_iter()
        .map(|c| {
            let Crate {
                name,
                version,
                source,
                root: is_root,
                build,
            } = c;
            let mut p = Package::new(name.clone(), version.clone(), PackageType::RustCrate);
            p.purl = packageurl::PackageUrl::new("cargo", name.as_str())
                .ok()
                .and_then(|mut u| u.with_version(version.as_str()).ok().map(|u| u.to_string()));
            p.locations = vec![location.to_string()];
            p.found_by = Some("rust-auditable".into());
            if let Some(s) = source {
                p.metadata.insert("source".into(), s);
            }
            if build {
                p.metadata.insert("kind".into(), "build".into());
            }
            if is_root {
                p.metadata.insert("root".into(), "true".into());
            }
            if !root.is_empty() {
                p.metadata.insert("main_crate".into(), root.clone());
            }
            p
        })
        .collect())
}
