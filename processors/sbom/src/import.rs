//! Format detection, the shared import result, and building an [`Analysis`] from an SBOM.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use vigil_contracts::{
    Analysis, Distro, ImageConfig, ImageDescriptor, ImageRef, Package, PackageType, SourceKind,
    UnixMillis,
};

use crate::purl::{package_type_from_purl, parse_purl};
use crate::{SbomError, IMPORTER_VERSION};

/// The SBOM formats vigil reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbomFormat {
    /// CycloneDX JSON, spec 1.4–1.6.
    CycloneDx,
    /// SPDX JSON, 2.2 or 2.3.
    Spdx,
    /// Syft's own JSON (`syft -o syft-json`).
    SyftJson,
}

impl SbomFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            SbomFormat::CycloneDx => "cyclonedx-json",
            SbomFormat::Spdx => "spdx-json",
            SbomFormat::SyftJson => "syft-json",
        }
    }
}

/// What an SBOM document says: its packages, the distro and the image, when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedSbom {
    pub format: SbomFormat,
    /// In document order.
    pub packages: Vec<Package>,
    /// The document's operating-system element, else the distro most OS packages' purls
    /// name (`distro=debian-12`).
    pub distro: Option<Distro>,
    pub image_name: Option<String>,
    /// `sha256:…` manifest digest.
    pub image_digest: Option<String>,
    pub image_tag: Option<String>,
    /// Image config digest, when the document says (Syft's `imageID`).
    pub config_digest: Option<String>,
    /// `os/arch`, when the document says.
    pub platform: Option<String>,
    /// Things imported with a guess (unknown package types, invalid purls).
    pub warnings: Vec<String>,
    /// Distros named by the document itself, first one wins.
    pub(crate) distros: Vec<Distro>,
}

impl ImportedSbom {
    pub(crate) fn new(format: SbomFormat) -> Self {
        ImportedSbom {
            format,
            packages: Vec::new(),
            distro: None,
            image_name: None,
            image_digest: None,
            image_tag: None,
            config_digest: None,
            platform: None,
            warnings: Vec::new(),
            distros: Vec::new(),
        }
    }
}

/// Typed access to a JSON document with errors that name the format and path.
pub(crate) struct Doc {
    pub format: &'static str,
}

impl Doc {
    pub fn new(format: &'static str) -> Self {
        Doc { format }
    }

    pub fn object<'v>(
        &self,
        v: &'v Value,
        path: &str,
    ) -> Result<&'v Map<String, Value>, SbomError> {
        v.as_object().ok_or_else(|| {
            SbomError::malformed(
                self.format,
                path,
                format!("expected an object, found {}", kind(v)),
            )
        })
    }

    pub fn array<'v>(&self, v: &'v Value, path: &str) -> Result<&'v [Value], SbomError> {
        v.as_array().map(Vec::as_slice).ok_or_else(|| {
            SbomError::malformed(
                self.format,
                path,
                format!("expected an array, found {}", kind(v)),
            )
        })
    }

    /// An optional array field: missing or `null` is empty, anything else but an array is an error.
    pub fn opt_array<'v>(
        &self,
        v: &'v Value,
        key: &str,
        path: &str,
    ) -> Result<&'v [Value], SbomError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(a) => {
                let p = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                self.array(a, &p)
            }
        }
    }

    /// A non-empty string field, trimmed.
    pub fn opt_str(&self, v: &Value, key: &str) -> Option<String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// A required non-empty string field.
    pub fn req_str<'v>(&self, v: &'v Value, key: &str, path: &str) -> Result<&'v str, SbomError> {
        match v.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.as_str()),
            Some(Value::String(_)) => Err(SbomError::malformed(
                self.format,
                format!("{path}.{key}"),
                "empty",
            )),
            Some(other) => Err(SbomError::malformed(
                self.format,
                format!("{path}.{key}"),
                format!("expected a string, found {}", kind(other)),
            )),
            None => Err(SbomError::malformed(
                self.format,
                path,
                format!("`{key}` is missing"),
            )),
        }
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Which format a parsed JSON document is in.
pub fn detect_format(v: &Value) -> Result<SbomFormat, SbomError> {
    let Some(obj) = v.as_object() else {
        return Err(SbomError::UnknownFormat(format!(
            "the top level is {}, expected an object",
            kind(v)
        )));
    };
    if let Some(f) = obj.get("bomFormat") {
        return match f.as_str() {
            Some("CycloneDX") => Ok(SbomFormat::CycloneDx),
            _ => Err(SbomError::UnknownFormat(format!(
                "`bomFormat` is {f}, expected \"CycloneDX\""
            ))),
        };
    }
    if obj.contains_key("spdxVersion") {
        return Ok(SbomFormat::Spdx);
    }
    if obj.contains_key("@context")
        && obj
            .get("@context")
            .map(|c| c.to_string().contains("spdx.org/rdf/3"))
            .unwrap_or(false)
    {
        return Err(SbomError::UnsupportedVersion {
            format: "SPDX",
            version: "3".into(),
            supported: "2.2, 2.3",
        });
    }
    if obj.contains_key("artifacts") {
        return Ok(SbomFormat::SyftJson);
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(10).collect();
    keys.sort_unstable();
    Err(SbomError::UnknownFormat(format!(
        "expected a CycloneDX (`bomFormat`), SPDX (`spdxVersion`) or Syft JSON (`artifacts`) document; its top-level keys are [{}]",
        keys.join(", ")
    )))
}

/// Detect and read a CycloneDX, SPDX or Syft JSON document.
pub fn import_sbom(text: &str) -> Result<ImportedSbom, SbomError> {
    let v: Value = serde_json::from_str(text).map_err(SbomError::NotJson)?;
    let mut out = match detect_format(&v)? {
        SbomFormat::CycloneDx => crate::cyclonedx::import(&v)?,
        SbomFormat::Spdx => crate::spdx::import(&v)?,
        SbomFormat::SyftJson => crate::syft::import(&v)?,
    };
    out.distro = out
        .distros
        .first()
        .cloned()
        .or_else(|| distro_from_packages(&out.packages));
    Ok(out)
}

/// The distro most OS packages' purls name.
fn distro_from_packages(pkgs: &[Package]) -> Option<Distro> {
    let mut counts: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    for p in pkgs.iter().filter(|p| p.kind.is_os()) {
        if let Some(d) = p.purl.as_deref().and_then(crate::purl::distro_from_purl) {
            *counts.entry((d.id, d.version_id)).or_default() += 1;
        }
    }
    let max = counts.values().copied().max()?;
    let ((id, version_id), _) = counts.into_iter().find(|(_, n)| *n == max)?;
    Some(Distro {
        id,
        version_id,
        ..Default::default()
    })
}

/// A package from its name, version and purl: the type comes from the purl type, else
/// from `declared` (the document's own type field), else it is `binary` with a warning.
pub(crate) fn package_from_purl(
    name: &str,
    version: &str,
    purl: Option<&str>,
    declared: Option<PackageType>,
    warnings: &mut Vec<String>,
    path: &str,
) -> Package {
    let facts = purl.and_then(|p| {
        let f = parse_purl(p);
        if f.is_none() {
            warnings.push(format!("{path}: invalid purl {p:?}"));
        }
        f
    });
    let from_purl = facts
        .as_ref()
        .and_then(|f| package_type_from_purl(&f.purl_type));
    let kind = match (from_purl, declared) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            warnings.push(match &facts {
                Some(f) => format!(
                    "{path}: package {name:?} has purl type {:?} that vigil has no ecosystem for; imported as binary",
                    f.purl_type
                ),
                None => format!("{path}: package {name:?} has no purl or type; imported as binary"),
            });
            PackageType::Binary
        }
    };
    let version = if version.is_empty() {
        facts
            .as_ref()
            .and_then(|f| f.version.clone())
            .unwrap_or_default()
    } else {
        version.to_string()
    };
    let mut p = Package::new(name, version, kind);
    p.purl = purl.map(str::to_string);
    if let Some(f) = facts {
        p.arch = f.arch;
        if let Some(up) = f.upstream {
            match up.split_once('@') {
                Some((n, v)) => {
                    p.source_name = Some(n.to_string());
                    p.source_version = Some(v.to_string());
                }
                None => p.source_name = Some(up),
            }
        }
        if kind == PackageType::JavaArchive && f.purl_type == "maven" {
            if let Some(ns) = f.namespace {
                p.metadata.insert("group_id".into(), ns);
            }
            p.metadata.insert("artifact_id".into(), f.name);
        }
    }
    p
}

/// Build a full [`Analysis`] from an SBOM document: `from_sbom` is set, and the image is
/// the one the document names; where it names no digest, the digest is the sha256 of
/// the document text.
pub fn analysis_from_sbom(text: &str, now: UnixMillis) -> Result<Analysis, SbomError> {
    let imported = import_sbom(text)?;
    let doc_digest = format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())));
    let digest = imported.image_digest.clone().unwrap_or(doc_digest);
    let name = imported
        .image_name
        .clone()
        .unwrap_or_else(|| format!("sbom:{digest}"));
    // os/arch[/variant] when the document says; else "unknown" and an empty config os/arch.
    let (platform, os, architecture, variant) = match imported.platform.clone() {
        Some(p) => {
            let mut parts = p.splitn(3, '/');
            let os = parts.next().unwrap_or_default().to_string();
            let arch = parts.next().unwrap_or_default().to_string();
            let variant = parts.next().map(str::to_string);
            (p, os, arch, variant)
        }
        None => ("unknown".to_string(), String::new(), String::new(), None),
    };
    let source_kind = if looks_like_registry_ref(&name) {
        SourceKind::Registry
    } else {
        SourceKind::Dir
    };
    let mut warnings = vec![format!(
        "imported from a {} SBOM; image content was not analysed",
        imported.format.as_str()
    )];
    warnings.extend(imported.warnings);
    Ok(Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind,
                name,
                tag: imported.image_tag,
                config_digest: imported.config_digest.unwrap_or_else(|| digest.clone()),
                digest,
                index_digest: None,
                platform,
            },
            config: ImageConfig {
                os,
                architecture,
                variant,
                ..Default::default()
            },
            layers: Vec::new(),
        },
        distro: imported.distro,
        packages: imported.packages,
        file_count: 0,
        image_size: 0,
        analyzed_at: now,
        analyzer_version: IMPORTER_VERSION,
        warnings,
        files: Vec::new(),
        users: Vec::new(),
        groups: Vec::new(),
        secrets: Vec::new(),
        retrieved_files: Vec::new(),
        dockerfile: None,
        passwd_present: false,
        from_sbom: true,
        content_matches: Vec::new(),
    })
}

/// `registry.example.com/repo`, `docker.io/library/x`: a first segment with a dot or a
/// port, or `localhost`; not an absolute or relative path.
fn looks_like_registry_ref(name: &str) -> bool {
    if name.starts_with('/') || name.starts_with('.') || name.starts_with("sbom:") {
        return false;
    }
    match name.split_once('/') {
        Some((host, rest)) => {
            !rest.is_empty() && (host.contains('.') || host.contains(':') || host == "localhost")
        }
        None => false,
    }
}
