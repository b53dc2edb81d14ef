//! Debian security tracker JSON:
//! `{source_package: {CVE: {description, releases: {codename: {status, fixed_version, urgency, nodsa?}}}}}`.

use serde_json::Value;
use vigil_contracts::{Advisory, AffectedRange, FixState, Severity};
use vigil_match::namespace::debian_codename_version;

use super::Warnings;
use crate::FeedError;

fn wont_fix(release: &serde_json::Map<String, Value>, urgency: &str) -> bool {
    if matches!(urgency, "unimportant" | "end-of-life") {
        return true;
    }
    if release.contains_key("nodsa") || release.contains_key("nodsa_reason") {
        return true;
    }
    ["nodsa_reason", "status", "note"].iter().any(|f| {
        release
            .get(*f)
            .and_then(Value::as_str)
            .map(|s| {
                let s = s.to_ascii_lowercase();
                s.contains("no-dsa")
                    || s.contains("ignored")
                    || s.contains("postponed")
                    || s.contains("end-of-life")
            })
            .unwrap_or(false)
    })
}

/// One release entry of one CVE, or `None` when the release is not one we know.
fn release_advisory(
    feed: &str,
    package: &str,
    id: &str,
    description: Option<&str>,
    codename: &str,
    rel: &Value,
) -> Result<Option<Advisory>, String> {
    let Some(version) = debian_codename_version(codename) else {
        return Ok(None);
    };
    let rel = rel
        .as_object()
        .ok_or_else(|| format!("{package}/{id}/{codename}: release is not an object"))?;
    let status = rel.get("status").and_then(Value::as_str).unwrap_or("");
    let fixed = rel
        .get("fixed_version")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let urgency_raw = rel.get("urgency").and_then(Value::as_str).unwrap_or("");
    let urgency = urgency_raw
        .trim()
        .trim_end_matches('*')
        .trim()
        .to_ascii_lowercase();
    let severity = Severity::parse_loose(&urgency);
    let (state, ranges) = match (status, fixed) {
        ("resolved", Some("0")) | ("resolved", None) => (FixState::NotAffected, Vec::new()),
        (_, Some(v)) if v != "0" => (
            FixState::Fixed,
            vec![AffectedRange {
                kind: Default::default(),
                introduced: None,
                fixed: Some(v.to_string()),
                last_affected: None,
            }],
        ),
        (_, Some(_)) => (FixState::NotAffected, Vec::new()),
        // open, undetermined: affected, no fix.
        (_, None) => {
            if wont_fix(rel, &urgency) {
                (FixState::WontFix, Vec::new())
            } else {
                (FixState::NotFixed, Vec::new())
            }
        }
    };
    Ok(Some(Advisory {
        id: id.to_string(),
        aliases: Vec::new(),
        namespace: format!("debian:{version}"),
        package: package.to_string(),
        feed: feed.to_string(),
        severity,
        state,
        ranges,
        versions: Vec::new(),
        description: description.map(str::to_string),
        urls: vec![format!("https://security-tracker.debian.org/tracker/{id}")],
        published: None,
        modified: None,
        cvss: Vec::new(),
        cwes: Vec::new(),
        withdrawn: false,
        vendor_only: false,
        fix_published: None,
        module: None,
    }))
}

/// Parse the tracker JSON. A malformed entry is skipped with a warning.
pub fn parse(feed: &str, bytes: &[u8]) -> Result<Vec<Advisory>, FeedError> {
    parse_with(feed, bytes, &mut Warnings::default())
}

/// [`parse`], collecting the skipped malformed entries (a package that is not an
/// object, a CVE without releases, a release that is not an object) in `warnings`:
/// the rest is still parsed; the sync becomes partial.
pub fn parse_with(
    feed: &str,
    bytes: &[u8],
    warnings: &mut Warnings,
) -> Result<Vec<Advisory>, FeedError> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| FeedError::Parse {
        feed: feed.to_string(),
        message: format!("debian tracker JSON: {e}"),
    })?;
    let root = root.as_object().ok_or_else(|| FeedError::Parse {
        feed: feed.to_string(),
        message: "debian tracker JSON is not an object".into(),
    })?;
    let mut out = Vec::new();
    for (package, cves) in root {
        let Some(cves) = cves.as_object() else {
            tracing::warn!(feed, package, "skipping malformed tracker entry");
            warnings.skipped(format!(
                "skipping malformed tracker entry {package:?}: not an object of CVEs"
            ));
            continue;
        };
        for (id, cve) in cves {
            let description = cve.get("description").and_then(Value::as_str);
            let Some(releases) = cve.get("releases").and_then(Value::as_object) else {
                tracing::warn!(feed, package, id, "skipping tracker entry without releases");
                warnings.skipped(format!(
                    "skipping tracker entry {package}/{id}: no releases object"
                ));
                continue;
            };
            for (codename, rel) in releases {
                match release_advisory(feed, package, id, description, codename, rel) {
                    Ok(Some(a)) => out.push(a),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(feed, error = e, "skipping malformed tracker entry");
                        warnings.skipped(format!("skipping malformed tracker entry {e}"));
                    }
                }
            }
        }
    }
    Ok(out)
}
