//! SPDX: export 2.3 JSON, import 2.2/2.3 JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;
use vigil_contracts::{Analysis, Distro};

use crate::cyclonedx::ordered_packages;
use crate::import::{self, Doc, ImportedSbom, SbomFormat};
use crate::license::{is_spdx_expression, license_ref};
use crate::{rfc3339_seconds, ExportOptions, SbomError};

const FORMAT: &str = "SPDX";
const NOASSERTION: &str = "NOASSERTION";
const IMAGE_ID: &str = "SPDXRef-DocumentRoot-Image";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<SpdxPackage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<ExtractedLicense>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    supplier: &'static str,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    license_concluded: &'static str,
    license_declared: String,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct ExtractedLicense {
    license_id: String,
    extracted_text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    related_spdx_element: String,
    relationship_type: &'static str,
}

/// `[A-Za-z0-9.-]` only, as SPDX ids allow.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `LicenseRef-…` ids given to license names that are no SPDX expressions, unique per text.
#[derive(Default)]
struct LicenseRefs {
    by_text: BTreeMap<String, String>,
    ids: BTreeSet<String>,
}

impl LicenseRefs {
    fn id_for(&mut self, text: &str) -> String {
        if let Some(id) = self.by_text.get(text) {
            return id.clone();
        }
        let base = license_ref(text);
        let mut id = base.clone();
        let mut n = 1;
        while self.ids.contains(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        self.ids.insert(id.clone());
        self.by_text.insert(text.to_string(), id.clone());
        id
    }

    fn into_extracted(self) -> Vec<ExtractedLicense> {
        let mut v: Vec<ExtractedLicense> = self
            .by_text
            .into_iter()
            .map(|(extracted_text, license_id)| ExtractedLicense {
                license_id,
                extracted_text,
            })
            .collect();
        v.sort();
        v
    }
}

/// SPDX license expression for a package's licenses, registering `LicenseRef-…` for names
/// that are no SPDX identifiers.
fn declared(licenses: &[String], refs: &mut LicenseRefs) -> String {
    let mut terms: Vec<String> = Vec::new();
    for l in licenses.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let t = if is_spdx_expression(l) {
            if l.contains(' ') {
                format!("({l})")
            } else {
                l.to_string()
            }
        } else {
            refs.id_for(l)
        };
        if !terms.contains(&t) {
            terms.push(t);
        }
    }
    match terms.len() {
        0 => NOASSERTION.to_string(),
        1 => {
            let t = &terms[0];
            t.strip_prefix('(')
                .and_then(|x| x.strip_suffix(')'))
                .unwrap_or(t)
                .to_string()
        }
        _ => terms.join(" AND "),
    }
}

/// Export an analysis as an SPDX 2.3 JSON document: the image is the described package,
/// and CONTAINS every package.
pub fn spdx_json(analysis: &Analysis, opts: &ExportOptions) -> Result<String, SbomError> {
    let image = &analysis.descriptor.image;
    let ordered = ordered_packages(analysis);
    let mut extracted = LicenseRefs::default();
    let mut packages = Vec::with_capacity(ordered.len() + 2);
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        related_spdx_element: IMAGE_ID.into(),
        relationship_type: "DESCRIBES",
    }];

    let mut image_refs = Vec::new();
    if let Some(p) = crate::purl::oci_purl(&image.name, &image.digest, image.tag.as_deref()) {
        image_refs.push(ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: p,
        });
    }
    packages.push(SpdxPackage {
        name: image.name.clone(),
        spdx_id: IMAGE_ID.into(),
        version_info: Some(image.digest.clone()),
        supplier: NOASSERTION,
        download_location: NOASSERTION,
        files_analyzed: false,
        checksums: image
            .digest
            .strip_prefix("sha256:")
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| {
                vec![Checksum {
                    algorithm: "SHA256",
                    checksum_value: h.to_ascii_lowercase(),
                }]
            })
            .unwrap_or_default(),
        source_info: image.tag.as_ref().map(|t| format!("image tag: {t}")),
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        copyright_text: NOASSERTION,
        description: None,
        external_refs: image_refs,
        primary_package_purpose: Some("CONTAINER"),
    });

    if let Some(d) = &analysis.distro {
        let id = format!("SPDXRef-OperatingSystem-{}", id_part(&d.id));
        packages.push(SpdxPackage {
            name: d.id.clone(),
            spdx_id: id.clone(),
            version_info: d.version_id.clone(),
            supplier: NOASSERTION,
            download_location: NOASSERTION,
            files_analyzed: false,
            checksums: Vec::new(),
            source_info: None,
            license_concluded: NOASSERTION,
            license_declared: NOASSERTION.into(),
            copyright_text: NOASSERTION,
            description: d.pretty_name.clone(),
            external_refs: Vec::new(),
            primary_package_purpose: Some("OPERATING-SYSTEM"),
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.into(),
            related_spdx_element: id,
            relationship_type: "CONTAINS",
        });
    }

    let mut used: HashMap<String, usize> = HashMap::new();
    for (_, p) in &ordered {
        let base = format!("SPDXRef-Package-{}-{}", p.kind.as_str(), id_part(&p.name));
        let n = used.entry(base.clone()).or_insert(0);
        *n += 1;
        let id = if *n == 1 { base } else { format!("{base}-{n}") };
        let mut refs = Vec::new();
        for c in &p.cpes {
            refs.push(ExternalRef {
                reference_category: "SECURITY",
                reference_type: if c.starts_with("cpe:2.3:") {
                    "cpe23Type"
                } else {
                    "cpe22Type"
                },
                reference_locator: c.clone(),
            });
        }
        if let Some(purl) = &p.purl {
            refs.push(ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: purl.clone(),
            });
        }
        let source_info = match (&p.found_by, p.locations.is_empty()) {
            (_, true) => None,
            (Some(f), false) => Some(format!(
                "acquired package info from {f}: {}",
                p.locations.join(", ")
            )),
            (None, false) => Some(format!(
                "acquired package info from {}",
                p.locations.join(", ")
            )),
        };
        packages.push(SpdxPackage {
            name: p.name.clone(),
            spdx_id: id.clone(),
            version_info: Some(p.version.clone()),
            supplier: NOASSERTION,
            download_location: NOASSERTION,
            files_analyzed: false,
            checksums: Vec::new(),
            source_info,
            license_concluded: NOASSERTION,
            license_declared: declared(&p.licenses, &mut extracted),
            copyright_text: NOASSERTION,
            description: None,
            external_refs: refs,
            primary_package_purpose: None,
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.into(),
            related_spdx_element: id,
            relationship_type: "CONTAINS",
        });
    }

    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: image.full_tag(),
        document_namespace: format!(
            "https://vigil.invalid/spdx/{}-{}",
            id_part(image.name.trim_start_matches('/')),
            opts.serial.hyphenated()
        ),
        creation_info: CreationInfo {
            created: rfc3339_seconds(opts.created_at)?,
            creators: vec![format!("Tool: {}-{}", opts.tool_name, opts.tool_version)],
        },
        packages,
        has_extracted_licensing_infos: extracted.into_extracted(),
        relationships,
    };
    serde_json::to_string_pretty(&doc).map_err(SbomError::Serialize)
}

// ---------------------------------------------------------------------------------
// Import

pub(crate) fn import(v: &Value) -> Result<ImportedSbom, SbomError> {
    let doc = Doc::new(FORMAT);
    let version = v
        .get("spdxVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| SbomError::malformed(FORMAT, "spdxVersion", "not a string"))?;
    if !matches!(version, "SPDX-2.2" | "SPDX-2.3") {
        return Err(SbomError::UnsupportedVersion {
            format: FORMAT,
            version: version.to_string(),
            supported: "SPDX-2.2, SPDX-2.3",
        });
    }
    let mut out = ImportedSbom::new(SbomFormat::Spdx);
    let mut extracted: HashMap<String, String> = HashMap::new();
    if let Some(Value::Array(infos)) = v.get("hasExtractedLicensingInfos") {
        for info in infos {
            if let (Some(id), Some(text)) = (
                doc.opt_str(info, "licenseId"),
                doc.opt_str(info, "extractedText"),
            ) {
                extracted.insert(id, text);
            }
        }
    }
    let packages = doc.opt_array(v, "packages", "")?;

    // What the document describes: DESCRIBES relationships, else (2.2) documentDescribes.
    let mut described: BTreeSet<String> = BTreeSet::new();
    for (i, r) in doc.opt_array(v, "relationships", "")?.iter().enumerate() {
        let path = format!("relationships[{i}]");
        let a = doc.req_str(r, "spdxElementId", &path)?;
        let t = doc.req_str(r, "relationshipType", &path)?;
        let b = doc.req_str(r, "relatedSpdxElement", &path)?;
        match t {
            "DESCRIBES" if a == "SPDXRef-DOCUMENT" => {
                described.insert(b.to_string());
            }
            "DESCRIBED_BY" if b == "SPDXRef-DOCUMENT" => {
                described.insert(a.to_string());
            }
            _ => {}
        }
    }
    if let Some(Value::Array(d)) = v.get("documentDescribes") {
        described.extend(d.iter().filter_map(Value::as_str).map(str::to_string));
    }

    for (i, p) in packages.iter().enumerate() {
        let path = format!("packages[{i}]");
        doc.object(p, &path)?;
        let spdx_id = doc.req_str(p, "SPDXID", &path)?;
        let name = doc.req_str(p, "name", &path)?;
        let version = doc.opt_str(p, "versionInfo").unwrap_or_default();
        let purpose = p.get("primaryPackagePurpose").and_then(Value::as_str);
        let mut purl = None;
        let mut cpes = Vec::new();
        for (j, r) in doc.opt_array(p, "externalRefs", &path)?.iter().enumerate() {
            let rpath = format!("{path}.externalRefs[{j}]");
            let ty = doc.req_str(r, "referenceType", &rpath)?;
            let loc = doc.req_str(r, "referenceLocator", &rpath)?;
            match ty {
                "purl" if purl.is_none() => purl = Some(loc.to_string()),
                "cpe23Type" | "cpe22Type" => cpes.push(loc.to_string()),
                _ => {}
            }
        }
        let is_image = purpose == Some("CONTAINER")
            || (described.contains(spdx_id)
                && purl
                    .as_deref()
                    .is_none_or(|u| u.starts_with("pkg:oci/") || u.starts_with("pkg:docker/")));
        if is_image {
            out.image_name = Some(name.to_string());
            out.image_digest = version
                .starts_with("sha256:")
                .then(|| version.clone())
                .or_else(|| sha256_checksum(p));
            out.image_tag = doc
                .opt_str(p, "sourceInfo")
                .and_then(|s| s.strip_prefix("image tag: ").map(str::to_string))
                .or_else(|| purl.as_deref().and_then(oci_tag));
            continue;
        }
        if purpose == Some("OPERATING-SYSTEM") {
            out.distros.push(Distro {
                id: name.to_ascii_lowercase(),
                version_id: (!version.is_empty()).then(|| version.clone()),
                pretty_name: doc.opt_str(p, "description"),
                ..Default::default()
            });
            continue;
        }
        let mut pkg = import::package_from_purl(
            name,
            &version,
            purl.as_deref(),
            None,
            &mut out.warnings,
            &path,
        );
        pkg.cpes = cpes;
        pkg.licenses = spdx_licenses(p, &doc)
            .into_iter()
            .map(|l| extracted.get(&l).cloned().unwrap_or(l))
            .collect();
        if let Some(si) = doc.opt_str(p, "sourceInfo") {
            if let Some(rest) = si.strip_prefix("acquired package info from ") {
                let (by, locs) = match rest.split_once(": ") {
                    Some((by, locs)) => (Some(by), locs),
                    None => (None, rest),
                };
                pkg.found_by = by.map(str::to_string);
                pkg.locations = locs
                    .split(", ")
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
            }
        }
        out.packages.push(pkg);
    }
    Ok(out)
}

fn sha256_checksum(p: &Value) -> Option<String> {
    p.get("checksums")?.as_array()?.iter().find_map(|c| {
        (c.get("algorithm")?.as_str()? == "SHA256")
            .then(|| {
                c.get("checksumValue")?
                    .as_str()
                    .map(|v| format!("sha256:{v}"))
            })
            .flatten()
    })
}

fn oci_tag(purl: &str) -> Option<String> {
    let q = purl.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix("tag="))
        .map(str::to_string)
}

/// licenseDeclared, else licenseConcluded, unless NOASSERTION/NONE; split on top-level
/// ` AND ` so that the terms come back as the list they were exported from.
fn spdx_licenses(p: &Value, doc: &Doc) -> Vec<String> {
    let expr = ["licenseDeclared", "licenseConcluded"]
        .iter()
        .filter_map(|k| doc.opt_str(p, k))
        .find(|s| s != NOASSERTION && s != "NONE");
    let Some(expr) = expr else { return Vec::new() };
    split_top_level_and(&expr)
}

fn split_top_level_and(expr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b' ' if depth == 0 && expr[i..].starts_with(" AND ") => {
                parts.push(expr[start..i].to_string());
                i += 5;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(expr[start..].to_string());
    parts
        .into_iter()
        .map(|p| {
            let t = p.trim();
            let inner = t.strip_prefix('(').and_then(|x| x.strip_suffix(')'));
            match inner {
                Some(x) if balanced(x) => x.to_string(),
                _ => t.to_string(),
            }
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn balanced(s: &str) -> bool {
    let mut d = 0i32;
    for c in s.chars() {
        match c {
            '(' => d += 1,
            ')' => {
                d -= 1;
                if d < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    d == 0
}
