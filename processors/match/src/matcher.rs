//! Pure matching of an analysis against advisories.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use vigil_contracts::{
    Advisory, AffectedRange, Analysis, Finding, FixState, MatchDetail, Package, PackageKey,
    PackageRef, VulnDiff,
};

use crate::namespace::{normalize_name, package_namespace};
use crate::version::Comparator;

/// One lookup to make for one package: the key and the version to compare under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Index into `Analysis::packages`.
    pub package: usize,
    pub key: PackageKey,
    /// The name as looked up (before normalisation).
    pub searched_name: String,
    pub version: String,
}

/// The keys to look up for every package of an analysis. OS packages are looked up under
/// their binary name (with the binary version) and their source/origin name (with the
/// source version when known); language packages under their normalised name.
pub fn lookups(analysis: &Analysis) -> Vec<Lookup> {
    let mut out = Vec::new();
    for (i, p) in analysis.packages.iter().enumerate() {
        let Some(ns) = package_namespace(p.kind, analysis.distro.as_ref()) else {
            continue;
        };
        let mut push = |name: &str, version: &str| {
            let name = name.trim();
            if name.is_empty() || version.trim().is_empty() {
                return;
            }
            let key = PackageKey {
                namespace: ns.clone(),
                package: normalize_name(&ns, name),
            };
            if out.iter().any(|l: &Lookup| l.package == i && l.key == key) {
                return;
            }
            out.push(Lookup {
                package: i,
                key,
                searched_name: name.to_string(),
                version: version.trim().to_string(),
            });
        };
        let source_version = p.source_version.as_deref().unwrap_or(&p.version);
        match p
            .source_name
            .as_deref()
            .filter(|s| p.kind.is_os() && !s.is_empty())
        {
            Some(src) if src == p.name => push(src, source_version),
            Some(src) => {
                push(&p.name, &p.version);
                push(src, source_version);
            }
            None => push(&p.name, &p.version),
        }
    }
    out
}

/// The distinct keys of [`lookups`], sorted.
pub fn lookup_keys(analysis: &Analysis) -> Vec<PackageKey> {
    lookups(analysis)
        .into_iter()
        .map(|l| l.key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn is_zero(v: &Option<String>) -> bool {
    v.as_deref()
        .is_none_or(|s| s.trim().is_empty() || s.trim() == "0")
}

fn range_text(r: &AffectedRange) -> String {
    let mut parts = Vec::new();
    if !is_zero(&r.introduced) {
        parts.push(format!(
            ">= {}",
            r.introduced.as_deref().unwrap_or_default()
        ));
    }
    if let Some(f) = &r.fixed {
        parts.push(format!("< {f}"));
    } else if let Some(l) = &r.last_affected {
        parts.push(format!("<= {l}"));
    }
    if parts.is_empty() {
        "all versions".to_string()
    } else {
        parts.join(", ")
    }
}

fn in_range(cmp: Comparator, v: &str, r: &AffectedRange) -> bool {
    if !is_zero(&r.introduced) {
        let intro = r.introduced.as_deref().unwrap_or_default();
        if cmp.compare(v, intro) == Ordering::Less {
            return false;
        }
    }
    if let Some(f) = r.fixed.as_deref().filter(|f| !f.trim().is_empty()) {
        return cmp.compare(v, f) == Ordering::Less;
    }
    if let Some(l) = r.last_affected.as_deref().filter(|l| !l.trim().is_empty()) {
        return cmp.compare(v, l) != Ordering::Greater;
    }
    true
}

/// Whether `version` is affected by `adv`: returns the constraint that matched and the
/// fixed version of the matching range.
pub fn affects(cmp: Comparator, version: &str, adv: &Advisory) -> Option<(String, Option<String>)> {
    if adv.state == FixState::NotAffected {
        return None;
    }
    if adv
        .versions
        .iter()
        .any(|v| cmp.compare(version, v) == Ordering::Equal)
    {
        let fixed = adv.ranges.iter().find_map(|r| r.fixed.clone());
        return Some((format!("= {version}"), fixed));
    }
    for r in &adv.ranges {
        if in_range(cmp, version, r) {
            return Some((range_text(r), r.fixed.clone()));
        }
    }
    if adv.ranges.is_empty()
        && adv.versions.is_empty()
        && matches!(adv.state, FixState::NotFixed | FixState::WontFix)
    {
        return Some(("all versions".to_string(), None));
    }
    None
}

fn finding(
    p: &Package,
    l: &Lookup,
    cmp: Comparator,
    adv: &Advisory,
    constraint: String,
    fixed: Option<String>,
) -> Finding {
    Finding {
        vuln_id: adv.id.clone(),
        aliases: adv.aliases.clone(),
        severity: adv.severity,
        package: PackageRef {
            name: p.name.clone(),
            version: p.version.clone(),
            kind: p.kind,
            location: p.locations.first().cloned(),
        },
        fixed_in: if adv.state == FixState::Fixed {
            fixed
        } else {
            None
        },
        state: adv.state,
        feed: adv.feed.clone(),
        matched: MatchDetail {
            namespace: l.key.namespace.clone(),
            searched_name: l.searched_name.clone(),
            comparator: cmp.name().to_string(),
            constraint,
        },
        description: adv.description.clone(),
        urls: adv.urls.clone(),
        cvss: adv.cvss.clone(),
        fix_published: adv.fix_published.clone(),
        published: adv.published.clone(),
        vendor_only: adv.vendor_only,
    }
}

/// Result of matching one analysis.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatchOutcome {
    /// One finding per (vulnerability id, package name, package version), sorted.
    pub findings: Vec<Finding>,
    /// Every key looked up (for the reverse index), sorted.
    pub keys: Vec<PackageKey>,
    /// Namespaces looked up that had any advisory.
    pub namespaces_with_data: Vec<String>,
}

/// Match every package of `analysis` against the advisories `lookup` returns per key.
pub fn match_packages(
    analysis: &Analysis,
    mut lookup: impl FnMut(&PackageKey) -> Vec<Advisory>,
) -> MatchOutcome {
    let ls = lookups(analysis);
    let mut cache: BTreeMap<PackageKey, Vec<Advisory>> = BTreeMap::new();
    let mut found: BTreeMap<(String, String, String), Finding> = BTreeMap::new();
    let mut with_data = BTreeSet::new();
    for l in &ls {
        let advs = cache.entry(l.key.clone()).or_insert_with(|| lookup(&l.key));
        if !advs.is_empty() {
            with_data.insert(l.key.namespace.clone());
        }
        let cmp = Comparator::for_namespace(&l.key.namespace);
        let p = &analysis.packages[l.package];
        for adv in advs.iter() {
            let Some((constraint, fixed)) = affects(cmp, &l.version, adv) else {
                continue;
            };
            let k = (adv.id.clone(), p.name.clone(), p.version.clone());
            found
                .entry(k)
                .or_insert_with(|| finding(p, l, cmp, adv, constraint, fixed));
        }
    }
    MatchOutcome {
        findings: found.into_values().collect(),
        keys: cache.into_keys().collect(),
        namespaces_with_data: with_data.into_iter().collect(),
    }
}

fn finding_key(f: &Finding) -> (String, String, String) {
    (
        f.vuln_id.clone(),
        f.package.name.clone(),
        f.package.version.clone(),
    )
}

/// Findings added, updated (same key, different fix, severity or state) and removed.
pub fn diff(old: &[Finding], new: &[Finding]) -> VulnDiff {
    let old_map: BTreeMap<_, &Finding> = old.iter().map(|f| (finding_key(f), f)).collect();
    let new_map: BTreeMap<_, &Finding> = new.iter().map(|f| (finding_key(f), f)).collect();
    let mut d = VulnDiff::default();
    for (k, n) in &new_map {
        match old_map.get(k) {
            None => d.added.push((*n).clone()),
            Some(o) => {
                if o.fixed_in != n.fixed_in || o.severity != n.severity || o.state != n.state {
                    d.updated.push((*n).clone());
                }
            }
        }
    }
    for (k, o) in &old_map {
        if !new_map.contains_key(k) {
            d.removed.push((*o).clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_contracts::{
        Distro, ImageConfig, ImageDescriptor, ImageRef, PackageType, Severity, SourceKind,
    };

    fn adv(id: &str, ns: &str, pkg: &str, state: FixState, ranges: Vec<AffectedRange>) -> Advisory {
        Advisory {
            id: id.into(),
            aliases: vec![],
            namespace: ns.into(),
            package: pkg.into(),
            feed: "test".into(),
            severity: Severity::High,
            state,
            ranges,
            versions: vec![],
            description: None,
            urls: vec![],
            published: None,
            modified: None,
            cvss: Vec::new(),
            cwes: Vec::new(),
            withdrawn: false,
            vendor_only: false,
            fix_published: None,
        }
    }

    fn range(i: Option<&str>, f: Option<&str>, l: Option<&str>) -> AffectedRange {
        AffectedRange {
            introduced: i.map(Into::into),
            fixed: f.map(Into::into),
            last_affected: l.map(Into::into),
        }
    }

    fn package(kind: PackageType, name: &str, v: &str, src: Option<&str>) -> Package {
        Package {
            name: name.into(),
            version: v.into(),
            kind,
            arch: None,
            source_name: src.map(Into::into),
            source_version: None,
            licenses: vec![],
            locations: vec!["/var/lib/dpkg/status".into()],
            purl: None,
            cpes: Vec::new(),
            files: Vec::new(),
            metadata: Default::default(),
            found_by: None,
        }
    }

    fn analysis(distro: Option<Distro>, packages: Vec<Package>) -> Analysis {
        Analysis {
            descriptor: ImageDescriptor {
                image: ImageRef {
                    source_kind: SourceKind::Dir,
                    name: "t".into(),
                    tag: None,
                    digest: "sha256:t".into(),
                    index_digest: None,
                    config_digest: "sha256:c".into(),
                    platform: "linux/amd64".into(),
                },
                config: ImageConfig::default(),
                layers: vec![],
            },
            distro,
            packages,
            file_count: 0,
            image_size: 0,
            analyzed_at: 0,
            analyzer_version: 1,
            warnings: vec![],
            files: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            secrets: Vec::new(),
            retrieved_files: Vec::new(),
            dockerfile: None,
            passwd_present: false,
            from_sbom: false,
        }
    }

    #[test]
    fn ranges_and_states() {
        let c = Comparator::Generic;
        let a = adv(
            "X",
            "pypi",
            "p",
            FixState::Fixed,
            vec![range(Some("1.0"), Some("2.0"), None)],
        );
        assert!(affects(c, "0.9", &a).is_none());
        assert_eq!(affects(c, "1.0", &a).unwrap().0, ">= 1.0, < 2.0");
        assert!(affects(c, "2.0", &a).is_none());
        let l = adv(
            "Y",
            "pypi",
            "p",
            FixState::NotFixed,
            vec![range(Some("0"), None, Some("1.5"))],
        );
        assert_eq!(affects(c, "1.5", &l).unwrap().0, "<= 1.5");
        assert!(affects(c, "1.5.1", &l).is_none());
        let mut v = adv("Z", "pypi", "p", FixState::NotFixed, vec![]);
        v.versions = vec!["3.1".into()];
        assert!(affects(c, "3.1.0", &v).is_some());
        assert!(affects(c, "3.2", &v).is_none());
        let na = adv(
            "N",
            "pypi",
            "p",
            FixState::NotAffected,
            vec![range(None, None, None)],
        );
        assert!(affects(c, "1", &na).is_none());
        let open = adv("O", "debian:12", "p", FixState::WontFix, vec![]);
        assert_eq!(
            affects(Comparator::Dpkg, "1", &open).unwrap().0,
            "all versions"
        );
    }

    #[test]
    fn source_lookup_dedupe_and_diff() {
        let d = Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        };
        let a = analysis(
            Some(d),
            vec![
                package(PackageType::Deb, "libc6", "2.36-9", Some("glibc")),
                package(PackageType::Deb, "libc-bin", "2.36-9", Some("glibc")),
                package(PackageType::Python, "Foo_Bar", "1.0", None),
            ],
        );
        let keys = lookup_keys(&a);
        assert_eq!(
            keys.iter()
                .map(|k| format!("{}|{}", k.namespace, k.package))
                .collect::<Vec<_>>(),
            [
                "debian:12|glibc",
                "debian:12|libc-bin",
                "debian:12|libc6",
                "pypi|foo-bar"
            ]
        );
        let g = adv(
            "CVE-1",
            "debian:12",
            "glibc",
            FixState::Fixed,
            vec![range(None, Some("2.36-9+deb12u4"), None)],
        );
        // The same id also under the binary name: still one finding per package.
        let b = adv(
            "CVE-1",
            "debian:12",
            "libc6",
            FixState::Fixed,
            vec![range(None, Some("2.36-9+deb12u4"), None)],
        );
        let p = adv(
            "PY-1",
            "pypi",
            "foo-bar",
            FixState::NotFixed,
            vec![range(Some("0"), None, None)],
        );
        let out = match_packages(&a, |k| match k.package.as_str() {
            "glibc" => vec![g.clone()],
            "libc6" => vec![b.clone()],
            "foo-bar" => vec![p.clone()],
            _ => vec![],
        });
        let ids: Vec<_> = out
            .findings
            .iter()
            .map(|f| format!("{}+{}", f.vuln_id, f.package.name))
            .collect();
        assert_eq!(ids, ["CVE-1+libc-bin", "CVE-1+libc6", "PY-1+Foo_Bar"]);
        let f = &out.findings[0];
        assert_eq!(f.matched.searched_name, "glibc");
        assert_eq!(f.matched.constraint, "< 2.36-9+deb12u4");
        assert_eq!(f.fixed_in.as_deref(), Some("2.36-9+deb12u4"));
        assert_eq!(out.namespaces_with_data, ["debian:12", "pypi"]);

        let mut changed = out.findings.clone();
        changed[0].severity = Severity::Low;
        changed.remove(2);
        let d = diff(&out.findings, &changed);
        assert_eq!(d.updated.len(), 1);
        assert_eq!(d.removed.len(), 1);
        assert!(d.added.is_empty());
        assert!(diff(&changed, &changed).is_empty());
    }
}
