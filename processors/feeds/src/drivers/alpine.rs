//! Alpine secdb: `{distroversion: "v3.19", packages: [{pkg: {name, secfixes: {version: [ids]}}}]}`.

use std::collections::BTreeMap;

use serde_json::Value;
use vigil_contracts::{Advisory, AffectedRange, FixState, Severity};
use vigil_match::version::apk;

use super::Warnings;
use crate::FeedError;

fn looks_like_id(s: &str) -> bool {
    s.contains('-') && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// The namespace of a secdb document: Alpine's name their release (`distroversion`);
/// the rolling Wolfi and Chainguard secdbs have none and are told apart by their
/// `urlprefix` (`https://packages.wolfi.dev`, `https://packages.cgr.dev`) or, failing
/// that, the feed's name.
pub fn secdb_namespace(feed: &str, root: &Value) -> Option<String> {
    if let Some(release) = root.get("distroversion").and_then(Value::as_str) {
        return Some(format!("alpine:{}", release.trim().trim_start_matches('v')));
    }
    let prefix = root
        .get("urlprefix")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let feed = feed.to_ascii_lowercase();
    if prefix.contains("wolfi") || feed.contains("wolfi") {
        Some("wolfi".into())
    } else if prefix.contains("cgr.dev")
        || prefix.contains("chainguard")
        || feed.contains("chainguard")
    {
        Some("chainguard".into())
    } else {
        None
    }
}

/// Parse one secdb file. A malformed package entry is skipped with a warning.
pub fn parse(feed: &str, bytes: &[u8]) -> Result<Vec<Advisory>, FeedError> {
    parse_with(feed, bytes, &mut Warnings::default())
}

/// [`parse`], collecting the skipped malformed entries (a package without a name or
/// a `secfixes` object, a `secfixes` version whose ids are not a list) in `warnings`:
/// the rest is still parsed; the sync becomes partial.
pub fn parse_with(
    feed: &str,
    bytes: &[u8],
    warnings: &mut Warnings,
) -> Result<Vec<Advisory>, FeedError> {
    let err = |m: String| FeedError::Parse {
        feed: feed.to_string(),
        message: m,
    };
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| err(format!("alpine secdb JSON: {e}")))?;
    let namespace = secdb_namespace(feed, &root).ok_or_else(|| {
        err("secdb without distroversion, and neither Wolfi nor Chainguard by its urlprefix or feed name".into())
    })?;
    let packages = root
        .get("packages")
        .and_then(Value::as_array)
        .ok_or_else(|| err("alpine secdb without packages".into()))?;
    let mut out = Vec::new();
    for (i, p) in packages.iter().enumerate() {
        let pkg = p.get("pkg").unwrap_or(p);
        let (Some(name), Some(secfixes)) = (
            pkg.get("name").and_then(Value::as_str),
            pkg.get("secfixes").and_then(Value::as_object),
        ) else {
            tracing::warn!(feed, "skipping malformed secdb package entry");
            let what = match pkg.get("name").and_then(Value::as_str) {
                Some(n) => format!("{n:?}: no secfixes object"),
                None => "no package name".to_string(),
            };
            warnings.skipped(format!(
                "{namespace}: skipping malformed secdb package entry #{i}: {what}"
            ));
            continue;
        };
        // id -> smallest fixed version ("0" = not affected).
        let mut by_id: BTreeMap<String, String> = BTreeMap::new();
        for (version, ids) in secfixes {
            let Some(ids) = ids.as_array() else {
                tracing::warn!(
                    feed,
                    package = name,
                    version,
                    "skipping malformed secfixes entry"
                );
                warnings.skipped(format!(
                    "{namespace}: skipping malformed secfixes entry {name} {version}: ids are not a list"
                ));
                continue;
            };
            for id in ids
                .iter()
                .filter_map(Value::as_str)
                .flat_map(str::split_whitespace)
            {
                if !looks_like_id(id) {
                    continue;
                }
                let v = version.trim().to_string();
                match by_id.get(id) {
                    Some(prev) if prev == "0" => {}
                    Some(prev) if v != "0" && apk::compare(prev, &v).is_le() => {}
                    _ => {
                        by_id.insert(id.to_string(), v);
                    }
                }
            }
        }
        for (id, fixed) in by_id {
            let not_affected = fixed == "0";
            let url = if id.starts_with("CVE-") {
                vec![format!("https://security.alpinelinux.org/vuln/{id}")]
            } else {
                Vec::new()
            };
            out.push(Advisory {
                id,
                aliases: Vec::new(),
                namespace: namespace.clone(),
                package: name.to_string(),
                feed: feed.to_string(),
                severity: Severity::Unknown,
                state: if not_affected {
                    FixState::NotAffected
                } else {
                    FixState::Fixed
                },
                ranges: if not_affected {
                    Vec::new()
                } else {
                    vec![AffectedRange {
                        kind: Default::default(),
                        introduced: None,
                        fixed: Some(fixed),
                        last_affected: None,
                    }]
                },
                versions: Vec::new(),
                description: None,
                urls: url,
                published: None,
                modified: None,
                cvss: Vec::new(),
                cwes: Vec::new(),
                withdrawn: false,
                vendor_only: false,
                fix_published: None,
                module: None,
            });
        }
    }
    Ok(out)
}
