//! CycloneDX: export 1.6 JSON, import 1.4–1.6 JSON.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use vigil_contracts::{Analysis, Distro, Finding, Package, PackageType, Severity};

use crate::import::{self, Doc, ImportedSbom, SbomFormat};
use crate::license::{is_spdx_expression, is_spdx_id};
use crate::purl::{oci_purl, package_type_from_name, package_type_from_syft};
use crate::{rfc3339_seconds, ExportOptions, SbomError};

const FORMAT: &str = "CycloneDX";
const SCHEMA_URL: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";
/// `bom-ref` of the image (metadata.component).
const IMAGE_REF: &str = "vigil:image";

#[derive(Serialize)]
struct Bom<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "bomFormat")]
    bom_format: &'static str,
    #[serde(rename = "specVersion")]
    spec_version: &'static str,
    #[serde(rename = "serialNumber")]
    serial_number: String,
    version: u32,
    metadata: Metadata<'a>,
    components: Vec<Component<'a>>,
    dependencies: Vec<Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vulnerabilities: Option<Vec<Vulnerability<'a>>>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    timestamp: String,
    tools: Tools<'a>,
    component: Component<'a>,
}

#[derive(Serialize)]
struct Tools<'a> {
    components: Vec<Component<'a>>,
}

#[derive(Serialize, Default)]
struct Component<'a> {
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
struct Property {
    name: String,
    value: String,
}

fn prop(name: impl Into<String>, value: impl Into<String>) -> Property {
    Property {
        name: name.into(),
        value: value.into(),
    }
}

#[derive(Serialize)]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(rename = "dependsOn")]
    depends_on: Vec<String>,
}

#[derive(Serialize)]
struct Vulnerability<'a> {
    #[serde(rename = "bom-ref")]
    bom_ref: String,
    id: &'a str,
    source: Source<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    references: Vec<Reference<'a>>,
    ratings: Vec<Rating<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    advisories: Vec<Advisory<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recommendation: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    affects: Vec<Affects<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
struct Source<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Reference<'a> {
    id: &'a str,
    source: Source<'a>,
}

#[derive(Serialize)]
struct Rating<'a> {
    source: Source<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<&'a str>,
}

#[derive(Serialize)]
struct Advisory<'a> {
    url: &'a str,
}

#[derive(Serialize)]
struct Affects<'a> {
    #[serde(rename = "ref")]
    reference: String,
    versions: Vec<AffectedVersion<'a>>,
}

#[derive(Serialize)]
struct AffectedVersion<'a> {
    version: &'a str,
    status: &'static str,
}

/// Packages in a stable order, each with a unique `bom-ref`: its purl when that is
/// unique in the document, else the purl (or `type:name@version`) with `#2`, `#3`… added.
pub(crate) fn ordered_packages(analysis: &Analysis) -> Vec<(String, &Package)> {
    let mut pkgs: Vec<&Package> = analysis.packages.iter().collect();
    pkgs.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    let mut seen: HashMap<String, usize> = HashMap::new();
    pkgs.into_iter()
        .map(|p| {
            let base = p
                .purl
                .clone()
                .unwrap_or_else(|| format!("{}:{}@{}", p.kind.as_str(), p.name, p.version));
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let r = if *n == 1 { base } else { format!("{base}#{n}") };
            (r, p)
        })
        .collect()
}

fn sort_key(p: &Package) -> (&str, &str, &str, &str, &str, &[String]) {
    (
        p.kind.as_str(),
        p.name.as_str(),
        p.version.as_str(),
        p.purl.as_deref().unwrap_or(""),
        p.locations.first().map(String::as_str).unwrap_or(""),
        &p.cpes,
    )
}

fn licenses(list: &[String]) -> Vec<Value> {
    let list: Vec<&str> = list
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Vec::new();
    }
    let is_compound = |s: &str| s.contains(" OR ") || s.contains(" AND ") || s.contains(" WITH ");
    // The schema allows either a list of single licenses or exactly one expression.
    if list.iter().any(|s| is_compound(s) && is_spdx_expression(s)) {
        let expr = if list.len() == 1 {
            list[0].to_string()
        } else if list.iter().all(|s| is_spdx_expression(s)) {
            list.iter()
                .map(|s| format!("({s})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        } else {
            return list.iter().map(|s| name_license(s)).collect();
        };
        return vec![serde_json::json!({ "expression": expr })];
    }
    list.iter()
        .map(|s| {
            if is_spdx_id(s) {
                serde_json::json!({ "license": { "id": s } })
            } else {
                name_license(s)
            }
        })
        .collect()
}

fn name_license(s: &str) -> Value {
    serde_json::json!({ "license": { "name": s } })
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Negligible => "info",
        Severity::Unknown => "unknown",
    }
}

fn cvss_method(version: &str) -> &'static str {
    match version {
        "2" | "2.0" => "CVSSv2",
        "3" | "3.0" => "CVSSv3",
        "3.1" => "CVSSv31",
        "4" | "4.0" => "CVSSv4",
        _ => "other",
    }
}

fn component_kind(k: PackageType) -> &'static str {
    match k {
        PackageType::Binary => "application",
        _ => "library",
    }
}

fn distro_ref(d: &Distro) -> String {
    match &d.version_id {
        Some(v) => format!("os:{}@{v}", d.id),
        None => format!("os:{}", d.id),
    }
}

/// Export an analysis as a CycloneDX 1.6 JSON document; with `findings`, a
/// `vulnerabilities` array whose entries point at the affected components.
pub fn cyclonedx_json(
    analysis: &Analysis,
    findings: Option<&[Finding]>,
    opts: &ExportOptions,
) -> Result<String, SbomError> {
    let image = &analysis.descriptor.image;
    let ordered = ordered_packages(analysis);

    let mut image_props = vec![
        prop("vigil:image:digest", &image.digest),
        prop("vigil:image:config_digest", &image.config_digest),
        prop("vigil:image:platform", &image.platform),
    ];
    if let Some(t) = &image.tag {
        image_props.push(prop("vigil:image:tag", t));
    }
    if let Some(i) = &image.index_digest {
        image_props.push(prop("vigil:image:index_digest", i));
    }
    if analysis.from_sbom {
        image_props.push(prop("vigil:from_sbom", "true"));
    }
    image_props.sort_by(|a, b| a.name.cmp(&b.name));
    let hashes = image
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| {
            vec![Hash {
                alg: "SHA-256",
                content: h.to_ascii_lowercase(),
            }]
        })
        .unwrap_or_default();
    let image_component = Component {
        bom_ref: Some(IMAGE_REF.to_string()),
        kind: "container",
        name: &image.name,
        version: Some(&image.digest),
        hashes,
        purl: oci_purl(&image.name, &image.digest, image.tag.as_deref()),
        properties: image_props,
        ..Default::default()
    };

    let mut components = Vec::with_capacity(ordered.len() + 1);
    let mut image_deps = Vec::new();
    if let Some(d) = &analysis.distro {
        let mut props = vec![prop("vigil:distro:id", &d.id)];
        if let Some(v) = &d.version_id {
            props.push(prop("vigil:distro:version_id", v));
        }
        if let Some(c) = &d.codename {
            props.push(prop("vigil:distro:codename", c));
        }
        if !d.id_like.is_empty() {
            props.push(prop("vigil:distro:id_like", d.id_like.join(" ")));
        }
        props.sort_by(|a, b| a.name.cmp(&b.name));
        let r = distro_ref(d);
        image_deps.push(r.clone());
        components.push(Component {
            bom_ref: Some(r),
            kind: "operating-system",
            name: &d.id,
            version: d.version_id.as_deref(),
            description: d.pretty_name.as_deref(),
            properties: props,
            ..Default::default()
        });
    }
    for (r, p) in &ordered {
        let mut props = vec![prop("vigil:type", p.kind.as_str())];
        if let Some(f) = &p.found_by {
            props.push(prop("vigil:found_by", f));
        }
        for (i, l) in p.locations.iter().enumerate() {
            props.push(prop(format!("vigil:location:{i}"), l));
        }
        for (i, c) in p.cpes.iter().enumerate().skip(1) {
            props.push(prop(format!("vigil:cpe:{i}"), c));
        }
        if let Some(a) = &p.arch {
            props.push(prop("vigil:arch", a));
        }
        if let Some(s) = &p.source_name {
            props.push(prop("vigil:source_name", s));
        }
        if let Some(s) = &p.source_version {
            props.push(prop("vigil:source_version", s));
        }
        for (k, v) in &p.metadata {
            props.push(prop(format!("vigil:metadata:{k}"), v));
        }
        let group = if p.kind == PackageType::JavaArchive {
            p.metadata.get("group_id").map(String::as_str)
        } else {
            None
        };
        image_deps.push(r.clone());
        components.push(Component {
            bom_ref: Some(r.clone()),
            kind: component_kind(p.kind),
            group,
            name: &p.name,
            version: Some(&p.version),
            licenses: licenses(&p.licenses),
            cpe: p.cpes.first().map(String::as_str),
            purl: p.purl.clone(),
            properties: props,
            ..Default::default()
        });
    }

    let vulnerabilities = findings.map(|f| vulnerabilities(f, &ordered));
    let bom = Bom {
        schema: SCHEMA_URL,
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: format!("urn:uuid:{}", opts.serial.hyphenated()),
        version: 1,
        metadata: Metadata {
            timestamp: rfc3339_seconds(opts.created_at)?,
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    name: &opts.tool_name,
                    version: Some(&opts.tool_version),
                    ..Default::default()
                }],
            },
            component: image_component,
        },
        components,
        dependencies: vec![Dependency {
            reference: IMAGE_REF.to_string(),
            depends_on: image_deps,
        }],
        vulnerabilities,
    };
    serde_json::to_string_pretty(&bom).map_err(SbomError::Serialize)
}

/// (name, version, type) of a package.
type PackageKey<'a> = (&'a str, &'a str, PackageType);
/// A component's bom-ref and its package's first location.
type RefAndLocation<'a> = (&'a str, Option<&'a str>);

fn vulnerabilities<'a>(
    findings: &'a [Finding],
    ordered: &[(String, &Package)],
) -> Vec<Vulnerability<'a>> {
    // (name, version, type) → refs; a finding's location picks among duplicates.
    let mut by_key: BTreeMap<PackageKey<'_>, Vec<RefAndLocation<'_>>> = BTreeMap::new();
    for (r, p) in ordered {
        by_key
            .entry((p.name.as_str(), p.version.as_str(), p.kind))
            .or_default()
            .push((r.as_str(), p.locations.first().map(String::as_str)));
    }
    let mut out: Vec<Vulnerability<'a>> = findings
        .iter()
        .map(|f| {
            let candidates = by_key
                .get(&(
                    f.package.name.as_str(),
                    f.package.version.as_str(),
                    f.package.kind,
                ))
                .cloned()
                .unwrap_or_default();
            let target = match &f.package.location {
                Some(loc) => candidates
                    .iter()
                    .find(|(_, l)| *l == Some(loc.as_str()))
                    .or(candidates.first()),
                None => candidates.first(),
            }
            .map(|(r, _)| r.to_string());
            let mut ratings = vec![Rating {
                source: Source { name: &f.feed },
                score: None,
                severity: Some(severity_name(f.severity)),
                method: None,
                vector: None,
            }];
            for c in &f.cvss {
                ratings.push(Rating {
                    source: Source { name: &c.source },
                    score: Some(c.base_score),
                    severity: None,
                    method: Some(cvss_method(&c.version)),
                    vector: Some(&c.vector),
                });
            }
            let mut props = vec![
                prop("vigil:fix_state", fix_state(f)),
                prop("vigil:matched:namespace", &f.matched.namespace),
                prop("vigil:matched:constraint", &f.matched.constraint),
            ];
            if let Some(v) = &f.fixed_in {
                props.push(prop("vigil:fixed_in", v));
            }
            props.sort_by(|a, b| a.name.cmp(&b.name));
            let affects = target
                .iter()
                .map(|r| Affects {
                    reference: r.clone(),
                    versions: vec![AffectedVersion {
                        version: &f.package.version,
                        status: "affected",
                    }],
                })
                .collect();
            Vulnerability {
                bom_ref: format!(
                    "vuln:{}:{}",
                    f.vuln_id,
                    target.as_deref().unwrap_or(&f.package.name)
                ),
                id: &f.vuln_id,
                source: Source { name: &f.feed },
                references: f
                    .aliases
                    .iter()
                    .map(|a| Reference {
                        id: a,
                        source: Source { name: &f.feed },
                    })
                    .collect(),
                ratings,
                description: f.description.as_deref(),
                advisories: f.urls.iter().map(|u| Advisory { url: u }).collect(),
                recommendation: f.fixed_in.as_ref().map(|v| format!("Upgrade to {v}")),
                affects,
                properties: props,
            }
        })
        .collect();
    out.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref).then(a.id.cmp(b.id)));
    // Two findings can share the vulnerability and the package (two feeds); keep bom-refs unique.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for v in &mut out {
        let n = seen.entry(v.bom_ref.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            v.bom_ref = format!("{}#{n}", v.bom_ref);
        }
    }
    out
}

fn fix_state(f: &Finding) -> &'static str {
    use vigil_contracts::FixState::*;
    match f.state {
        Fixed => "fixed",
        NotFixed => "not-fixed",
        WontFix => "wont-fix",
        NotAffected => "not-affected",
    }
}

// ---------------------------------------------------------------------------------
// Import

pub(crate) fn import(v: &Value) -> Result<ImportedSbom, SbomError> {
    let spec = v
        .get("specVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| SbomError::malformed(FORMAT, "specVersion", "missing or not a string"))?;
    if !matches!(spec, "1.4" | "1.5" | "1.6") {
        return Err(SbomError::UnsupportedVersion {
            format: FORMAT,
            version: spec.to_string(),
            supported: "1.4, 1.5, 1.6",
        });
    }
    let doc = Doc::new(FORMAT);
    let mut out = ImportedSbom::new(SbomFormat::CycloneDx);

    if let Some(c) = v.pointer("/metadata/component") {
        let path = "metadata.component";
        doc.object(c, path)?;
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
        let props = properties(c, path, &doc)?;
        if kind == "container" {
            out.image_name = c.get("name").and_then(Value::as_str).map(str::to_string);
            let version = c.get("version").and_then(Value::as_str);
            out.image_digest = props
                .get("vigil:image:digest")
                .cloned()
                .or_else(|| {
                    version
                        .filter(|v| v.starts_with("sha256:"))
                        .map(str::to_string)
                })
                .or_else(|| sha256_hash(c));
            out.image_tag = props.get("vigil:image:tag").cloned().or_else(|| {
                version
                    .filter(|v| !v.starts_with("sha256:") && !v.is_empty())
                    .map(str::to_string)
            });
            out.platform = props.get("vigil:image:platform").cloned();
        } else {
            out.image_name = c.get("name").and_then(Value::as_str).map(str::to_string);
        }
    }

    let mut flat = Vec::new();
    flatten(doc.opt_array(v, "components", "")?, "components", &mut flat);
    for (path, c) in flat {
        doc.object(c, &path)?;
        let name = match c.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
            Some(Value::String(_)) => {
                return Err(SbomError::malformed(
                    FORMAT,
                    format!("{path}.name"),
                    "empty component name",
                ))
            }
            Some(_) => {
                return Err(SbomError::malformed(
                    FORMAT,
                    format!("{path}.name"),
                    "not a string",
                ))
            }
            None => {
                return Err(SbomError::malformed(
                    FORMAT,
                    path.clone(),
                    format!("component{} has no name", describe(c)),
                ))
            }
        };
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("library");
        let props = properties(c, &path, &doc)?;
        match kind {
            "operating-system" => {
                out.distros.push(Distro {
                    id: props
                        .get("vigil:distro:id")
                        .or_else(|| props.get("syft:distro:id"))
                        .cloned()
                        .unwrap_or_else(|| name.to_ascii_lowercase()),
                    version_id: props
                        .get("vigil:distro:version_id")
                        .or_else(|| props.get("syft:distro:versionID"))
                        .cloned()
                        .or_else(|| doc.opt_str(c, "version")),
                    codename: props
                        .get("vigil:distro:codename")
                        .or_else(|| props.get("syft:distro:versionCodename"))
                        .cloned(),
                    id_like: props
                        .get("vigil:distro:id_like")
                        .or_else(|| props.get("syft:distro:idLike"))
                        .map(|s| {
                            s.split([' ', ','])
                                .filter(|x| !x.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                    pretty_name: props
                        .get("syft:distro:prettyName")
                        .cloned()
                        .or_else(|| doc.opt_str(c, "description")),
                });
                continue;
            }
            // Not packages: the image itself, files, data, models, services.
            "container"
            | "file"
            | "data"
            | "machine-learning-model"
            | "device"
            | "device-driver"
            | "firmware"
            | "platform"
            | "cryptographic-asset" => continue,
            _ => {}
        }
        let version = doc.opt_str(c, "version").unwrap_or_default();
        let purl = doc.opt_str(c, "purl");
        let declared_type = props
            .get("vigil:type")
            .and_then(|t| package_type_from_name(t))
            .or_else(|| {
                props
                    .get("syft:package:type")
                    .and_then(|t| package_type_from_syft(t))
            });
        let mut p = import::package_from_purl(
            name,
            &version,
            purl.as_deref(),
            declared_type,
            &mut out.warnings,
            &path,
        );
        if let Some(cpe) = doc.opt_str(c, "cpe") {
            p.cpes.push(cpe);
        }
        p.licenses = cdx_licenses(c, &path, &doc)?;
        let mut locs: BTreeMap<usize, String> = BTreeMap::new();
        let mut extra_cpes: BTreeMap<usize, String> = BTreeMap::new();
        for (k, val) in &props {
            if let Some(i) = k
                .strip_prefix("vigil:location:")
                .and_then(|i| i.parse().ok())
            {
                locs.insert(i, val.clone());
            } else if let Some(i) = k
                .strip_prefix("syft:location:")
                .and_then(|r| r.strip_suffix(":path"))
                .and_then(|i| i.parse().ok())
            {
                locs.entry(i).or_insert_with(|| val.clone());
            } else if let Some(i) = k.strip_prefix("vigil:cpe:").and_then(|i| i.parse().ok()) {
                extra_cpes.insert(i, val.clone());
            } else if let Some(m) = k.strip_prefix("vigil:metadata:") {
                p.metadata.insert(m.to_string(), val.clone());
            }
        }
        p.locations.extend(locs.into_values());
        p.cpes.extend(extra_cpes.into_values());
        for (k, val) in &props {
            if k == "syft:cpe23" && !p.cpes.contains(val) {
                p.cpes.push(val.clone());
            }
        }
        if let Some(f) = props
            .get("vigil:found_by")
            .or_else(|| props.get("syft:package:foundBy"))
        {
            p.found_by = Some(f.clone());
        }
        if let Some(a) = props.get("vigil:arch") {
            p.arch = Some(a.clone());
        }
        if let Some(s) = props.get("vigil:source_name") {
            p.source_name = Some(s.clone());
        }
        if let Some(s) = props.get("vigil:source_version") {
            p.source_version = Some(s.clone());
        }
        if p.kind == PackageType::JavaArchive {
            if let Some(g) = doc.opt_str(c, "group") {
                p.metadata.entry("group_id".into()).or_insert(g);
            }
        }
        out.packages.push(p);
    }
    Ok(out)
}

/// Components and their nested components, depth first, with their JSON path.
fn flatten<'v>(arr: &'v [Value], path: &str, out: &mut Vec<(String, &'v Value)>) {
    for (i, c) in arr.iter().enumerate() {
        let p = format!("{path}[{i}]");
        out.push((p.clone(), c));
        if let Some(Value::Array(nested)) = c.get("components").filter(|n| n.is_array()) {
            flatten(nested, &format!("{p}.components"), out);
        }
    }
}

fn describe(c: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(r) = c.get("bom-ref").and_then(Value::as_str) {
        parts.push(format!("bom-ref {r:?}"));
    }
    if let Some(r) = c.get("purl").and_then(Value::as_str) {
        parts.push(format!("purl {r:?}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn properties(c: &Value, path: &str, doc: &Doc) -> Result<BTreeMap<String, String>, SbomError> {
    let mut out = BTreeMap::new();
    let list = doc.opt_array(c, "properties", path)?;
    let path = format!("{path}.properties");
    for (i, p) in list.iter().enumerate() {
        let name = p.get("name").and_then(Value::as_str).ok_or_else(|| {
            SbomError::malformed(
                FORMAT,
                format!("{path}[{i}].name"),
                "missing or not a string",
            )
        })?;
        let value = p.get("value").and_then(Value::as_str).unwrap_or_default();
        out.entry(name.to_string())
            .or_insert_with(|| value.to_string());
    }
    Ok(out)
}

fn cdx_licenses(c: &Value, path: &str, doc: &Doc) -> Result<Vec<String>, SbomError> {
    let mut out = Vec::new();
    let list = doc.opt_array(c, "licenses", path)?;
    let path = format!("{path}.licenses");
    for (i, l) in list.iter().enumerate() {
        let text = if let Some(e) = l.get("expression").and_then(Value::as_str) {
            Some(e)
        } else if let Some(lic) = l.get("license") {
            lic.get("id")
                .and_then(Value::as_str)
                .or_else(|| lic.get("name").and_then(Value::as_str))
        } else {
            return Err(SbomError::malformed(
                FORMAT,
                format!("{path}[{i}]"),
                "neither `license` nor `expression`",
            ));
        };
        if let Some(t) = text.map(str::trim).filter(|t| !t.is_empty()) {
            if !out.iter().any(|x| x == t) {
                out.push(t.to_string());
            }
        }
    }
    Ok(out)
}

fn sha256_hash(c: &Value) -> Option<String> {
    c.get("hashes")?.as_array()?.iter().find_map(|h| {
        (h.get("alg")?.as_str()? == "SHA-256")
            .then(|| h.get("content")?.as_str().map(|x| format!("sha256:{x}")))
            .flatten()
    })
}
