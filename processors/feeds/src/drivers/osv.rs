//! OSV records (https://ossf.github.io/osv-schema/): one advisory per `affected[]`
//! (namespace, package); see [`osv_namespace`] for the namespaces.

use std::io::Read;

use serde_json::Value;
use vigil_contracts::{Advisory, AffectedRange, Cvss, FixState, RangeKind, Severity};
use vigil_match::namespace::{ecosystem_namespace, normalize_name};
use vigil_match::version::Comparator;

use super::Warnings;
use crate::config::Limits;
use crate::FeedError;

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn severity_word(v: Option<&Value>) -> Option<Severity> {
    let s = v?.as_str()?;
    match Severity::parse_loose(s) {
        Severity::Unknown => None,
        s => Some(s),
    }
}

/// Ranges from OSV events: each `introduced` opens a range that the next `fixed` or
/// `last_affected` closes. Every range gets `kind` (the OSV range type).
fn ranges(events: &[Value], kind: RangeKind) -> Vec<AffectedRange> {
    let blank = || AffectedRange {
        kind,
        introduced: None,
        fixed: None,
        last_affected: None,
    };
    let mut out = Vec::new();
    let mut open: Option<AffectedRange> = None;
    for e in events {
        if let Some(i) = e.get("introduced").and_then(Value::as_str) {
            if let Some(r) = open.take() {
                out.push(r);
            }
            open = Some(AffectedRange {
                introduced: Some(i.to_string()),
                ..blank()
            });
        } else if let Some(f) = e.get("fixed").and_then(Value::as_str) {
            let mut r = open.take().unwrap_or_else(blank);
            r.fixed = Some(f.to_string());
            out.push(r);
        } else if let Some(l) = e.get("last_affected").and_then(Value::as_str) {
            let mut r = open.take().unwrap_or_else(blank);
            r.last_affected = Some(l.to_string());
            out.push(r);
        }
    }
    if let Some(r) = open {
        out.push(r);
    }
    out
}

/// `name:stream` of a modularity label or module spec (`nodejs:18:8090020231019152822:a75119d5`
/// → `nodejs:18`); `None` without both parts.
fn module_stream(label: &str) -> Option<String> {
    let mut parts = label.trim().split(':');
    let (name, stream) = (parts.next()?.trim(), parts.next()?.trim());
    (!name.is_empty() && !stream.is_empty() && !name.contains('/') && !stream.contains('/'))
        .then(|| format!("{name}:{stream}"))
}

/// The module stream of an rpm affected entry and the package name without it. Red Hat
/// names a module's package `nodejs:18/nodejs` and/or gives a purl with an
/// `rpmmod=nodejs:18:<version>:<context>` qualifier; the name form wins when both are
/// there. Anything else is the plain package name, no module.
pub fn rpm_module(name: &str, purl: Option<&str>) -> (String, Option<String>) {
    if let Some((prefix, pkg)) = name.split_once('/') {
        if let (Some(m), false) = (module_stream(prefix), pkg.trim().is_empty()) {
            return (pkg.trim().to_string(), Some(m));
        }
    }
    let qualifier = purl
        .and_then(|u| u.split_once('?'))
        .map(|(_, q)| q.split('#').next().unwrap_or(q))
        .and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == "rpmmod").then_some(v)
            })
        });
    let module = qualifier.and_then(|v| module_stream(&v.replace("%3A", ":").replace("%3a", ":")));
    (name.to_string(), module)
}

/// Map an OSV `package.ecosystem` to a namespace. Language ecosystems keep the matcher's
/// naming (`PyPI` → `pypi`, `crates.io` → `crates.io`, …); distro ecosystems become
/// `<distro id>:<release>` as the matcher derives it from `/etc/os-release`
/// (`Debian:12` → `debian:12`, `Ubuntu:22.04:LTS` → `ubuntu:22.04`, `Alpine:v3.19` →
/// `alpine:3.19`, `AlmaLinux:8` → `almalinux:8`, `Rocky Linux:9` → `rocky:9`,
/// `Red Hat:enterprise_linux:9::appstream` → `rhel:9`, `SUSE:Linux Enterprise Server
/// 15 SP5` → `sles:15`, `openSUSE:Leap 15.5` → `opensuse-leap:15`, `Wolfi` → `wolfi`,
/// `Chainguard` → `chainguard`). `None` for an ecosystem vigil does not know.
pub fn osv_namespace(ecosystem: &str) -> Option<String> {
    let eco = ecosystem.trim();
    let (base, rest) = match eco.split_once(':') {
        Some((b, r)) => (b.trim(), Some(r.trim())),
        None => (eco, None),
    };
    let major = |s: &str| -> Option<String> {
        s.split(|c: char| !c.is_ascii_digit())
            .find(|p| !p.is_empty())
            .map(str::to_string)
    };
    match base {
        "PyPI" | "npm" | "Maven" | "Go" | "crates.io" | "RubyGems" | "NuGet" | "Packagist"
        | "Hex" | "Pub" | "Hackage" | "CRAN" | "SwiftURL" | "GitHub Actions" | "Bitnami" => {
            ecosystem_namespace(base)
        }
        "Debian" | "Ubuntu" | "Alpine" | "AlmaLinux" | "Rocky Linux" | "Mageia" | "openEuler"
        | "Photon OS" => {
            // A distro ecosystem without a release cannot be matched to an image.
            rest?;
            let ns = ecosystem_namespace(eco)?;
            ns.contains(':').then_some(ns)
        }
        "Red Hat" => {
            let r = rest?.split(':').find_map(|p| {
                let p = p.trim();
                (p.chars().next().is_some_and(|c| c.is_ascii_digit())).then(|| major(p))?
            })?;
            Some(format!("rhel:{r}"))
        }
        "SUSE" => {
            let r = rest?;
            let id = if r.contains("Enterprise Server") {
                "sles"
            } else if r.contains("Enterprise Desktop") {
                "sled"
            } else if r.contains("Enterprise Micro") {
                "sle-micro"
            } else {
                return Some(format!("suse:{}", r.to_ascii_lowercase().replace(' ', "-")));
            };
            Some(format!("{id}:{}", major(r)?))
        }
        "openSUSE" => {
            let r = rest?;
            if r.starts_with("Tumbleweed") {
                Some("opensuse-tumbleweed".into())
            } else if let Some(v) = r.strip_prefix("Leap Micro") {
                Some(format!("opensuse-leap-micro:{}", major(v)?))
            } else if let Some(v) = r.strip_prefix("Leap") {
                Some(format!("opensuse-leap:{}", major(v)?))
            } else {
                None
            }
        }
        "Wolfi" => Some("wolfi".into()),
        "Chainguard" => Some("chainguard".into()),
        _ => None,
    }
}

/// CVSS entries of an OSV `severity` array (types `CVSS_V3` / `CVSS_V4`), scored.
fn cvss_list(source: &str, v: Option<&Value>) -> Vec<Cvss> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| {
            s.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("CVSS_V3") || t.starts_with("CVSS_V4"))
        })
        .filter_map(|s| s.get("score").and_then(Value::as_str))
        .filter_map(|vec| crate::cvss::score_vector(source, vec))
        .collect()
}

/// The severity a list of CVSS scores implies: the v3.x score first, else v4.
fn cvss_severity(cvss: &[Cvss]) -> Option<Severity> {
    cvss.iter()
        .find(|c| c.version.starts_with('3'))
        .or_else(|| cvss.first())
        .map(|c| crate::cvss::severity_of(c.base_score))
}

/// The CVSS source name of a record: `ghsa` for GitHub advisories, `go` for the Go
/// database, else the feed name.
fn cvss_source(feed: &str, id: &str) -> String {
    if id.starts_with("GHSA-") {
        "ghsa".into()
    } else if id.starts_with("GO-") {
        "go".into()
    } else {
        feed.to_string()
    }
}

/// Parse one OSV record into advisories, one per affected (namespace, package, module
/// stream). A withdrawn record is kept with `withdrawn = true` (the matcher must ignore
/// it); ECOSYSTEM and SEMVER ranges keep their type ([`RangeKind`]); GIT ranges are
/// ignored (an entry with only GIT ranges and no `versions` yields nothing); an unknown
/// ecosystem is skipped with a warning. In rpm ecosystems a Red Hat module package
/// (`nodejs:18/nodejs`, or a purl `rpmmod` qualifier) becomes package `nodejs` with
/// `module = "nodejs:18"` ([`rpm_module`]).
///
/// Range versions are stored as the record spells them, unchecked: a version the
/// ecosystem's grammar does not accept (`"fixed": "not a version!!"`) does not reject the
/// record; the matcher's comparators are total and order such a string by their
/// fallback rules.
pub fn parse_record(feed: &str, v: &Value) -> Result<Vec<Advisory>, String> {
    parse_record_with(feed, v, &mut Warnings::default())
}

/// [`parse_record`], collecting the affected entries skipped for an unknown ecosystem
/// in `warnings`.
pub fn parse_record_with(
    feed: &str,
    v: &Value,
    warnings: &mut Warnings,
) -> Result<Vec<Advisory>, String> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or("OSV record without id")?;
    let withdrawn = v.get("withdrawn").is_some_and(|w| !w.is_null());
    let affected = v
        .get("affected")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{id}: no affected list"))?;
    let mut aliases = strs(v.get("aliases"));
    for r in strs(v.get("related")) {
        if r.starts_with("CVE-") && !aliases.contains(&r) {
            aliases.push(r);
        }
    }
    let description = v
        .get("summary")
        .and_then(Value::as_str)
        .or_else(|| v.get("details").and_then(Value::as_str))
        .map(str::to_string);
    let urls: Vec<String> = v
        .get("references")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("url").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let source = cvss_source(feed, id);
    let record_cvss = cvss_list(&source, v.get("severity"));
    let record_severity = severity_word(v.pointer("/database_specific/severity"))
        .or_else(|| {
            v.get("severity")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find_map(|s| severity_word(s.get("score"))))
        })
        .or_else(|| cvss_severity(&record_cvss));
    let cwes = strs(v.pointer("/database_specific/cwe_ids"));
    let str_at = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::new();
    for a in affected {
        let (Some(eco), Some(name)) = (
            a.pointer("/package/ecosystem").and_then(Value::as_str),
            a.pointer("/package/name").and_then(Value::as_str),
        ) else {
            return Err(format!("{id}: affected entry without package"));
        };
        let (name, module) = if Comparator::for_ecosystem(eco) == Comparator::Rpm {
            rpm_module(name, a.pointer("/package/purl").and_then(Value::as_str))
        } else {
            (name.to_string(), None)
        };
        let name = name.as_str();
        let Some(namespace) = osv_namespace(eco) else {
            tracing::warn!(feed, id, ecosystem = eco, "skipping unknown OSV ecosystem");
            warnings.note(format!(
                "{id}: skipping affected package {name:?} of unknown ecosystem {eco:?}"
            ));
            continue;
        };
        let mut rs = Vec::new();
        for r in a
            .get("ranges")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // GIT ranges (commit hashes) cannot be compared with a package version.
            let kind = match r.get("type").and_then(Value::as_str).unwrap_or("") {
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "SEMVER" => RangeKind::Semver,
                _ => continue,
            };
            let events = r
                .get("events")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{id}: range without events"))?;
            rs.extend(ranges(events, kind));
        }
        let versions = strs(a.get("versions"));
        if rs.is_empty() && versions.is_empty() {
            continue;
        }
        let mut cvss = cvss_list(&source, a.get("severity"));
        for c in &record_cvss {
            if !cvss.contains(c) {
                cvss.push(c.clone());
            }
        }
        let severity = severity_word(a.pointer("/ecosystem_specific/severity"))
            .or_else(|| severity_word(a.pointer("/database_specific/severity")))
            .or(record_severity)
            .or_else(|| cvss_severity(&cvss))
            .unwrap_or(Severity::Unknown);
        let state = if rs.iter().any(|r| r.fixed.is_some()) {
            FixState::Fixed
        } else {
            FixState::NotFixed
        };
        out.push(Advisory {
            id: id.to_string(),
            aliases: aliases.clone(),
            package: normalize_name(&namespace, name),
            namespace,
            feed: feed.to_string(),
            severity,
            state,
            ranges: rs,
            versions,
            description: description.clone(),
            urls: urls.clone(),
            published: str_at("published"),
            modified: str_at("modified"),
            cvss,
            cwes: cwes.clone(),
            withdrawn,
            vendor_only: false,
            fix_published: None,
            module,
        });
    }
    Ok(out)
}

/// Parse one JSON document: a record, or an array of records. Malformed records are
/// skipped with a warning; `Err` only when the bytes are not JSON at all.
pub fn parse_document(feed: &str, origin: &str, bytes: &[u8]) -> Result<Vec<Advisory>, String> {
    parse_document_with(feed, origin, bytes, &mut Warnings::default())
}

/// [`parse_document`], collecting what it skipped in `warnings`.
pub fn parse_document_with(
    feed: &str,
    origin: &str,
    bytes: &[u8],
    warnings: &mut Warnings,
) -> Result<Vec<Advisory>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("{origin}: {e}"))?;
    let records = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut out = Vec::new();
    for r in &records {
        match parse_record_with(feed, r, warnings) {
            Ok(a) => out.extend(a),
            Err(e) => {
                tracing::warn!(feed, origin, error = e, "skipping malformed OSV record");
                warnings.skipped(format!("{origin}: skipping malformed OSV record: {e}"));
            }
        }
    }
    Ok(out)
}

/// Parse a set of named JSON files; a malformed file is skipped with a warning.
pub fn parse_files<'a>(
    feed: &str,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Vec<Advisory>, usize) {
    parse_files_with(feed, files, &mut Warnings::default())
}

/// [`parse_files`], collecting what it skipped in `warnings`.
pub fn parse_files_with<'a>(
    feed: &str,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    warnings: &mut Warnings,
) -> (Vec<Advisory>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for (name, bytes) in files {
        match parse_document_with(feed, name, bytes, warnings) {
            Ok(a) => out.extend(a),
            Err(e) => {
                skipped += 1;
                tracing::warn!(feed, error = e, "skipping malformed OSV file");
                warnings.skipped(format!("skipping malformed OSV file {e}"));
            }
        }
    }
    (out, skipped)
}

/// Read every `.json` entry of a zip archive (as osv.dev publishes per ecosystem),
/// sorted by name. A damaged archive is an error.
pub fn read_zip(
    feed: &str,
    origin: &str,
    bytes: &[u8],
) -> Result<Vec<(String, Vec<u8>)>, FeedError> {
    read_zip_limited(
        feed,
        origin,
        bytes,
        Limits::default(),
        &mut Warnings::default(),
    )
}

/// [`read_zip`] with size caps: an entry over `limits.record` (uncompressed) is skipped
/// with a warning, unread; entries adding up to more than `limits.total` uncompressed
/// are an error ([`FeedError::TooLarge`]). A declared size is not trusted: reading
/// stops at the cap.
pub fn read_zip_limited(
    feed: &str,
    origin: &str,
    bytes: &[u8],
    limits: Limits,
    warnings: &mut Warnings,
) -> Result<Vec<(String, Vec<u8>)>, FeedError> {
    let zerr = |m: String| FeedError::Zip {
        feed: feed.to_string(),
        path: origin.to_string(),
        message: m,
    };
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| zerr(e.to_string()))?;
    let mut files = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let f = archive.by_index(i).map_err(|e| zerr(e.to_string()))?;
        if !f.is_file() || !f.name().ends_with(".json") {
            continue;
        }
        let name = f.name().to_string();
        let skip = |w: &mut Warnings, size: u64| {
            w.skipped(format!(
                "{origin}: skipping {name}: {size} bytes, over the record limit of {} bytes (max_record_bytes)",
                limits.record
            ))
        };
        if f.size() > limits.record {
            skip(warnings, f.size());
            continue;
        }
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.take(limits.record + 1)
            .read_to_end(&mut buf)
            .map_err(|e| zerr(format!("{name}: {e}")))?;
        if buf.len() as u64 > limits.record {
            skip(warnings, buf.len() as u64);
            continue;
        }
        total += buf.len() as u64;
        if total > limits.total {
            return Err(FeedError::TooLarge {
                feed: feed.to_string(),
                what: format!("zip archive {origin} (uncompressed)"),
                size: total,
                limit: limits.total,
            });
        }
        files.push((name, buf));
    }
    files.sort();
    Ok(files)
}
