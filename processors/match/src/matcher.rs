//! Pure matching of an analysis against advisories.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use vigil_contracts::{
    Advisory, AffectedRange, Analysis, Finding, FixState, MatchDetail, Package, PackageKey,
    PackageRef, PackageType, RangeKind, Severity, VulnDiff,
};

use crate::namespace::{distro_namespace, distro_namespaces, normalize_name, package_namespace};
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

/// Options of [`match_packages_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchOptions {
    /// Drop findings whose winning advisory is vendor-only (the vendor disputes the issue
    /// or will not fix it: Debian `no-dsa`/`ignored`, …). On by default, as in Anchore.
    pub filter_vendor_only: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            filter_vendor_only: true,
        }
    }
}

/// The name a package is known by in its ecosystem's advisories: Maven packages as
/// `group:artifact` (from `metadata["group_id"]`/`["artifact_id"]`, else the purl).
pub fn ecosystem_name(p: &Package) -> String {
    if p.kind == PackageType::JavaArchive {
        let g = p
            .metadata
            .get("group_id")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty());
        let a = p
            .metadata
            .get("artifact_id")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty());
        if let (Some(g), Some(a)) = (g, a) {
            return format!("{g}:{a}");
        }
        if let Some(rest) = p.purl.as_deref().and_then(|u| u.strip_prefix("pkg:maven/")) {
            let path = rest.split(['@', '?', '#']).next().unwrap_or(rest);
            if let Some((g, a)) = path.rsplit_once('/') {
                if !g.is_empty() && !a.is_empty() {
                    return format!("{}:{a}", g.replace('/', "."));
                }
            }
        }
    }
    p.name.clone()
}

/// A source RPM name from `openssl-3.0.1-43.el9_0.src.rpm` (or a plain name).
pub fn source_rpm_name(s: &str) -> &str {
    let s = s.trim();
    let Some(base) = s
        .strip_suffix(".src.rpm")
        .or_else(|| s.strip_suffix(".nosrc.rpm"))
    else {
        return s;
    };
    // name-version-release: drop the last two `-` fields.
    match base.rsplitn(3, '-').nth(2) {
        Some(name) if !name.is_empty() => name,
        _ => base,
    }
}

fn lookups_in(analysis: &Analysis, os_namespace: Option<&str>, os_only: bool) -> Vec<Lookup> {
    let mut out = Vec::new();
    for (i, p) in analysis.packages.iter().enumerate() {
        let ns = if p.kind.is_os() {
            match os_namespace {
                Some(ns) => ns.to_string(),
                None => continue,
            }
        } else if os_only {
            continue;
        } else {
            match package_namespace(p.kind, None) {
                Some(ns) => ns,
                None => continue,
            }
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
            if out
                .iter()
                .rev()
                .take_while(|l: &&Lookup| l.package == i)
                .any(|l| l.key == key)
            {
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
        let source = p
            .source_name
            .as_deref()
            .filter(|s| p.kind.is_os() && !s.trim().is_empty())
            .map(|s| {
                if p.kind == PackageType::Rpm {
                    source_rpm_name(s)
                } else {
                    s
                }
            });
        let name = ecosystem_name(p);
        match source {
            Some(src) if src == name => push(src, source_version),
            Some(src) => {
                push(&name, &p.version);
                // An RPM's source package has the binary's EVR.
                let v = if p.kind == PackageType::Rpm {
                    &p.version
                } else {
                    source_version
                };
                push(src, v);
            }
            None => push(&name, &p.version),
        }
    }
    out
}

/// The keys to look up for every package of an analysis. OS packages are looked up under
/// their binary name (with the binary version) and their source/origin name (with the
/// source version when known; RPMs by source RPM name); language packages under their
/// normalised ecosystem name (Maven: `group:artifact`). OS packages use the distro's own
/// namespace; see [`match_packages_with`] for the like-distro fallback.
pub fn lookups(analysis: &Analysis) -> Vec<Lookup> {
    let ns = analysis.distro.as_ref().and_then(distro_namespace);
    lookups_in(analysis, ns.as_deref(), false)
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
    if let Some(f) = r.fixed.as_deref().filter(|f| !f.trim().is_empty()) {
        parts.push(format!("< {f}"));
    } else if let Some(l) = r.last_affected.as_deref().filter(|l| !l.trim().is_empty()) {
        parts.push(format!("<= {l}"));
    }
    if parts.is_empty() {
        "all versions".to_string()
    } else {
        parts.join(", ")
    }
}

/// `introduced <= v < fixed` (or `<= last_affected`) under the ordering `cmp`.
fn in_range_by(v: &str, r: &AffectedRange, cmp: impl Fn(&str, &str) -> Ordering) -> bool {
    if !is_zero(&r.introduced) {
        let intro = r.introduced.as_deref().unwrap_or_default();
        if cmp(v, intro) == Ordering::Less {
            return false;
        }
    }
    if let Some(f) = r.fixed.as_deref().filter(|f| !f.trim().is_empty()) {
        return cmp(v, f) == Ordering::Less;
    }
    if let Some(l) = r.last_affected.as_deref().filter(|l| !l.trim().is_empty()) {
        return cmp(v, l) != Ordering::Greater;
    }
    true
}

/// The comparator name of SemVer 2.0 precedence in [`MatchDetail::comparator`].
pub const SEMVER_COMPARATOR: &str = "semver";

/// Whether `v` is in the range, and the name of the ordering used: a SEMVER range
/// ([`RangeKind::Semver`]) is compared by SemVer 2.0 precedence whatever the ecosystem
/// when the version and every bound of the range parse as SemVer (leniently, as osv.dev
/// does: [`crate::version::semver::parse_lenient`]); otherwise, and for every ECOSYSTEM
/// range, by the ecosystem's comparator.
fn in_range(cmp: Comparator, v: &str, r: &AffectedRange) -> (bool, &'static str) {
    if r.kind == RangeKind::Semver {
        use crate::version::semver::parse_lenient;
        let bounds = [&r.introduced, &r.fixed, &r.last_affected];
        let all_semver = parse_lenient(v).is_some()
            && bounds.iter().all(|b| {
                b.as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "0")
                    .is_none_or(|s| parse_lenient(s).is_some())
            });
        if all_semver {
            let by_semver = in_range_by(v, r, |a, b| {
                crate::version::semver::compare_semver(a, b).unwrap_or(Ordering::Equal)
            });
            return (by_semver, SEMVER_COMPARATOR);
        }
    }
    (in_range_by(v, r, |a, b| cmp.compare(a, b)), cmp.name())
}

/// How a version is affected by an advisory (see [`affects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// The constraint that matched, e.g. `>= 1.0, < 2.0`.
    pub constraint: String,
    /// The fixed version of the matching range, if any.
    pub fixed: Option<String>,
    /// The ordering used: the ecosystem comparator's name, or [`SEMVER_COMPARATOR`] for
    /// a SEMVER range compared by SemVer precedence.
    pub comparator: &'static str,
}

/// Whether `version` is affected by `adv`: the constraint that matched, the fixed
/// version of the matching range and the ordering used. Withdrawn and not-affected
/// advisories never match; an explicit `versions` entry matches by equality under the
/// comparator; a range matches when `introduced <= v < fixed` (or `<= last_affected`),
/// SEMVER ranges by SemVer precedence ([`in_range`]).
pub fn affects(cmp: Comparator, version: &str, adv: &Advisory) -> Option<Affected> {
    if adv.withdrawn || adv.state == FixState::NotAffected {
        return None;
    }
    for r in &adv.ranges {
        let (hit, comparator) = in_range(cmp, version, r);
        if hit {
            return Some(Affected {
                constraint: range_text(r),
                fixed: r.fixed.clone().filter(|f| !f.trim().is_empty()),
                comparator,
            });
        }
    }
    if let Some(v) = adv
        .versions
        .iter()
        .find(|v| cmp.compare(version, v) == Ordering::Equal)
    {
        // The fix is the lowest fixed version above the listed one, if any range says.
        let fixed = adv
            .ranges
            .iter()
            .filter_map(|r| r.fixed.as_deref())
            .filter(|f| cmp.compare(f, version) == Ordering::Greater)
            .min_by(|a, b| cmp.compare(a, b))
            .map(str::to_string);
        return Some(Affected {
            constraint: format!("= {v} (listed)"),
            fixed,
            comparator: cmp.name(),
        });
    }
    if adv.ranges.is_empty()
        && adv.versions.is_empty()
        && matches!(adv.state, FixState::NotFixed | FixState::WontFix)
    {
        return Some(Affected {
            constraint: "all versions".to_string(),
            fixed: None,
            comparator: cmp.name(),
        });
    }
    None
}

/// The module stream (`name:stream`) an rpm package was built for, from its
/// modularity label (`metadata["modularity_label"]`, rpm's `MODULARITYLABEL`, e.g.
/// `nodejs:18:8090020231019152822:a75119d5` → `nodejs:18`). `None` for a package not
/// built for a module (no label, or an empty one).
pub fn package_module(p: &Package) -> Option<String> {
    let label = p.metadata.get("modularity_label")?.trim();
    let mut parts = label.split(':');
    let (name, stream) = (parts.next()?.trim(), parts.next()?.trim());
    (!name.is_empty() && !stream.is_empty()).then(|| format!("{name}:{stream}"))
}

/// Whether an advisory applies to a package as far as RHEL modularity goes. An
/// advisory about a module stream (`module = "nodejs:18"`) applies only to a package
/// whose modularity label has that `name:stream`; not to another stream's package,
/// not to a package without a label. An advisory without a module applies to every
/// package, modular or not, as an advisory without a modularity qualifier does in Grype.
pub fn module_applies(adv: &Advisory, p: &Package) -> bool {
    match adv.module.as_deref().map(str::trim) {
        None => true,
        Some(m) => package_module(p).is_some_and(|pm| pm == m),
    }
}

/// How much a source is trusted when several describe the same vulnerability for the
/// same package: the distro's own feed (3) over GHSA/OSV language data (2) over NVD (1).
pub fn source_rank(adv: &Advisory) -> u8 {
    let feed = adv.feed.to_ascii_lowercase();
    let ns = adv.namespace.to_ascii_lowercase();
    if feed == "nvd" || ns.starts_with("nvd") {
        return 1;
    }
    match Comparator::for_namespace(&ns) {
        Comparator::Dpkg | Comparator::Apk | Comparator::Rpm => 3,
        _ => 2,
    }
}

/// Preference among ids of one vulnerability from equally ranked sources: the record's
/// own id over a bare CVE, GHSA first, then alphabetical.
fn id_preference(id: &str) -> (u8, &str) {
    let rank = if id.starts_with("GHSA-") {
        0
    } else if id.starts_with("CVE-") {
        2
    } else {
        1
    };
    (rank, id)
}

fn finding(p: &Package, l: &Lookup, adv: &Advisory, hit: Affected) -> Finding {
    let Affected {
        constraint,
        fixed,
        comparator,
    } = hit;
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
            comparator: comparator.to_string(),
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

/// Match every package of `analysis` against the advisories `lookup` returns per key,
/// with the default [`MatchOptions`] (vendor-only findings dropped).
pub fn match_packages(
    analysis: &Analysis,
    lookup: impl FnMut(&PackageKey) -> Vec<Advisory>,
) -> MatchOutcome {
    match_packages_with(analysis, &MatchOptions::default(), lookup)
}

/// Group advisory indices into vulnerabilities: two advisories are the same
/// vulnerability when their ids or aliases share an id (GHSA ↔ CVE, GO ↔ GHSA, …).
fn clusters(advs: &[&Advisory]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..advs.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, a) in advs.iter().enumerate() {
        for id in std::iter::once(&a.id).chain(a.aliases.iter()) {
            match owner.get(id.as_str()) {
                Some(&j) => {
                    let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                    if ri != rj {
                        parent[ri.max(rj)] = ri.min(rj);
                    }
                }
                None => {
                    owner.insert(id.as_str(), i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..advs.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().collect()
}

/// Match every package of `analysis` against the advisories `lookup` returns per key.
///
/// - OS packages are looked up in the distro's namespace; when none of them has any data
///   there, in each like-distro namespace in turn ([`distro_namespaces`]).
/// - Withdrawn advisories never match; not-affected advisories never match but still
///   outrank lower-ranked sources.
/// - Advisories of one package that share an id or alias are one vulnerability; the
///   highest-ranked source ([`source_rank`]) decides, and one finding results, carrying
///   every other id as an alias.
/// - With `filter_vendor_only`, a finding whose deciding advisory is vendor-only is
///   dropped.
pub fn match_packages_with(
    analysis: &Analysis,
    opts: &MatchOptions,
    mut lookup: impl FnMut(&PackageKey) -> Vec<Advisory>,
) -> MatchOutcome {
    let mut cache: BTreeMap<PackageKey, Vec<Advisory>> = BTreeMap::new();
    let mut with_data = BTreeSet::new();
    let candidates = analysis
        .distro
        .as_ref()
        .map(distro_namespaces)
        .unwrap_or_default();
    let mut ls = lookups_in(analysis, candidates.first().map(String::as_str), false);
    let mut fetch = |ls: &[Lookup], cache: &mut BTreeMap<PackageKey, Vec<Advisory>>| {
        let mut os_data = false;
        for l in ls {
            let advs = cache.entry(l.key.clone()).or_insert_with(|| lookup(&l.key));
            if !advs.is_empty() {
                with_data.insert(l.key.namespace.clone());
                os_data |= analysis.packages[l.package].kind.is_os();
            }
        }
        os_data
    };
    let has_os = ls.iter().any(|l| analysis.packages[l.package].kind.is_os());
    let mut os_data = fetch(&ls, &mut cache);
    if has_os && !os_data {
        for ns in candidates.iter().skip(1) {
            let alt = lookups_in(analysis, Some(ns), true);
            os_data = fetch(&alt, &mut cache);
            if os_data {
                ls.retain(|l| !analysis.packages[l.package].kind.is_os());
                ls.extend(alt);
                break;
            }
        }
    }

    let mut per_package: BTreeMap<usize, Vec<&Lookup>> = BTreeMap::new();
    for l in &ls {
        per_package.entry(l.package).or_default().push(l);
    }
    let mut found: BTreeMap<(String, String, String), Finding> = BTreeMap::new();
    for (i, pls) in per_package {
        let p = &analysis.packages[i];
        let mut advs: Vec<&Advisory> = Vec::new();
        let mut via: Vec<&Lookup> = Vec::new();
        for l in pls {
            for a in cache.get(&l.key).map(Vec::as_slice).unwrap_or_default() {
                if !a.withdrawn && module_applies(a, p) {
                    advs.push(a);
                    via.push(l);
                }
            }
        }
        if advs.is_empty() {
            continue;
        }
        let ranks: Vec<u8> = advs.iter().map(|a| source_rank(a)).collect();
        let cmps: Vec<Comparator> = via
            .iter()
            .map(|l| Comparator::for_namespace(&l.key.namespace))
            .collect();
        for group in clusters(&advs) {
            let best = group.iter().map(|&k| ranks[k]).max().unwrap_or(0);
            let mut hits: Vec<(usize, Affected)> = Vec::new();
            for &k in group.iter().filter(|&&k| ranks[k] == best) {
                if let Some(hit) = affects(cmps[k], &via[k].version, advs[k]) {
                    hits.push((k, hit));
                }
            }
            let Some((k, hit)) = hits
                .into_iter()
                .min_by(|x, y| id_preference(&advs[x.0].id).cmp(&id_preference(&advs[y.0].id)))
            else {
                continue;
            };
            let adv = advs[k];
            if opts.filter_vendor_only && adv.vendor_only {
                continue;
            }
            let mut f = finding(p, via[k], adv, hit);
            let mut aliases: BTreeSet<String> = BTreeSet::new();
            for &j in &group {
                aliases.insert(advs[j].id.clone());
                aliases.extend(advs[j].aliases.iter().cloned());
            }
            aliases.remove(&adv.id);
            f.aliases = aliases.into_iter().collect();
            if f.severity == Severity::Unknown {
                if let Some(s) = group
                    .iter()
                    .map(|&j| advs[j].severity)
                    .find(|s| *s != Severity::Unknown)
                {
                    f.severity = s;
                }
            }
            if f.cvss.is_empty() {
                if let Some(c) = group.iter().map(|&j| &advs[j].cvss).find(|c| !c.is_empty()) {
                    f.cvss = c.clone();
                }
            }
            let key = (adv.id.clone(), p.name.clone(), p.version.clone());
            found.entry(key).or_insert(f);
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
    use vigil_contracts::Distro;

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
            module: None,
        }
    }

    fn range(i: Option<&str>, f: Option<&str>, l: Option<&str>) -> AffectedRange {
        AffectedRange {
            kind: Default::default(),
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
            file_digests: Default::default(),
        }
    }

    fn analysis(distro: Option<Distro>, packages: Vec<Package>) -> Analysis {
        Analysis::of_packages(Analysis::test_descriptor(), distro, packages)
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
        assert_eq!(affects(c, "1.0", &a).unwrap().constraint, ">= 1.0, < 2.0");
        assert!(affects(c, "2.0", &a).is_none());
        let l = adv(
            "Y",
            "pypi",
            "p",
            FixState::NotFixed,
            vec![range(Some("0"), None, Some("1.5"))],
        );
        assert_eq!(affects(c, "1.5", &l).unwrap().constraint, "<= 1.5");
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
            affects(Comparator::Dpkg, "1", &open).unwrap().constraint,
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

    fn one(a: &Analysis, advs: Vec<Advisory>, opts: &MatchOptions) -> Vec<Finding> {
        match_packages_with(a, opts, |k| {
            advs.iter()
                .filter(|x| x.namespace == k.namespace && x.package == k.package)
                .cloned()
                .collect()
        })
        .findings
    }

    #[test]
    fn withdrawn_aliases_ranking_vendor_only() {
        let a = analysis(
            None,
            vec![package(PackageType::Python, "requests", "2.19.1", None)],
        );
        let r = || vec![range(Some("0"), Some("2.20.0"), None)];
        let mut ghsa = adv(
            "GHSA-x84v-xcm2-53pg",
            "pypi",
            "requests",
            FixState::Fixed,
            r(),
        );
        ghsa.aliases = vec!["CVE-2018-18074".into()];
        let mut pysec = adv("PYSEC-2018-28", "pypi", "requests", FixState::Fixed, r());
        pysec.aliases = vec!["CVE-2018-18074".into()];
        let mut nvd = adv(
            "CVE-2018-18074",
            "pypi",
            "requests",
            FixState::NotFixed,
            vec![],
        );
        nvd.feed = "nvd".into();
        let opts = MatchOptions::default();
        // Three records of one vulnerability: one finding, GHSA id, the rest as aliases.
        let f = one(&a, vec![pysec.clone(), nvd.clone(), ghsa.clone()], &opts);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].vuln_id, "GHSA-x84v-xcm2-53pg");
        assert_eq!(f[0].aliases, ["CVE-2018-18074", "PYSEC-2018-28"]);
        assert_eq!(f[0].state, FixState::Fixed);
        assert_eq!(f[0].fixed_in.as_deref(), Some("2.20.0"));
        assert_eq!(f[0].matched.comparator, "pep440");
        assert_eq!(f[0].matched.namespace, "pypi");
        // GHSA outranks NVD: the GHSA says 2.20.0 is fixed, NVD's "all versions" loses.
        let b = analysis(
            None,
            vec![package(PackageType::Python, "requests", "2.20.0", None)],
        );
        assert!(one(&b, vec![nvd.clone(), ghsa.clone()], &opts).is_empty());
        // NVD alone still reports.
        assert_eq!(one(&b, vec![nvd.clone()], &opts).len(), 1);
        // Withdrawn: never.
        let mut w = ghsa.clone();
        w.withdrawn = true;
        assert!(one(&a, vec![w], &opts).is_empty());
        // Vendor-only: dropped by default, kept when the filter is off.
        let mut v = ghsa.clone();
        v.vendor_only = true;
        assert!(one(&a, vec![v.clone()], &opts).is_empty());
        let kept = one(
            &a,
            vec![v],
            &MatchOptions {
                filter_vendor_only: false,
            },
        );
        assert_eq!(kept.len(), 1);
        assert!(kept[0].vendor_only);
    }

    #[test]
    fn distro_outranks_language_and_not_affected_wins() {
        let d = Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        };
        let a = analysis(
            Some(d),
            vec![package(
                PackageType::Deb,
                "libssl3",
                "3.0.11-1~deb12u2",
                Some("openssl"),
            )],
        );
        let mut deb = adv(
            "CVE-2024-1",
            "debian:12",
            "openssl",
            FixState::NotAffected,
            vec![],
        );
        deb.aliases = vec![];
        let mut nvd = adv(
            "CVE-2024-1",
            "debian:12",
            "openssl",
            FixState::NotFixed,
            vec![],
        );
        nvd.feed = "nvd".into();
        nvd.namespace = "nvd".into();
        // Same CVE: Debian's "not affected" decides, NVD's "affected" is ignored.
        let f = match_packages(&a, |k| {
            if k.package == "openssl" {
                vec![deb.clone(), nvd.clone()]
            } else {
                vec![]
            }
        })
        .findings;
        assert!(f.is_empty(), "{f:?}");
        // Wont-fix is reported as such, with no fix version.
        let wf = adv(
            "CVE-2024-2",
            "debian:12",
            "openssl",
            FixState::WontFix,
            vec![],
        );
        let f = match_packages(&a, |k| {
            if k.package == "openssl" {
                vec![wf.clone()]
            } else {
                vec![]
            }
        })
        .findings;
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].state, FixState::WontFix);
        assert_eq!(f[0].fixed_in, None);
        assert_eq!(f[0].matched.comparator, "dpkg");
        assert_eq!(f[0].matched.searched_name, "openssl");
    }

    #[test]
    fn like_distro_fallback_and_rpm_source() {
        let d = Distro {
            id: "rocky".into(),
            version_id: Some("9.3".into()),
            id_like: vec!["rhel centos fedora".into()],
            ..Default::default()
        };
        let mut p = package(PackageType::Rpm, "openssl-libs", "1:3.0.1-43.el9_0", None);
        p.source_name = Some("openssl-3.0.1-43.el9_0.src.rpm".into());
        let a = analysis(Some(d), vec![p]);
        let rh = adv(
            "RHSA-2022:7288",
            "rhel:9",
            "openssl",
            FixState::Fixed,
            vec![range(Some("0"), Some("1:3.0.1-47.el9_1"), None)],
        );
        let mut asked = Vec::new();
        let out = match_packages(&a, |k| {
            asked.push(format!("{}|{}", k.namespace, k.package));
            if k.namespace == "rhel:9" && k.package == "openssl" {
                vec![rh.clone()]
            } else {
                vec![]
            }
        });
        assert_eq!(
            asked,
            [
                "rocky:9|openssl-libs",
                "rocky:9|openssl",
                "rhel:9|openssl-libs",
                "rhel:9|openssl"
            ]
        );
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert_eq!(f.matched.namespace, "rhel:9");
        assert_eq!(f.matched.comparator, "rpm");
        assert_eq!(f.matched.searched_name, "openssl");
        assert_eq!(f.matched.constraint, "< 1:3.0.1-47.el9_1");
        assert_eq!(out.namespaces_with_data, ["rhel:9"]);
    }

    #[test]
    fn language_names_and_comparators() {
        let mut j = package(PackageType::JavaArchive, "log4j-core", "2.14.1", None);
        j.metadata
            .insert("group_id".into(), "org.apache.logging.log4j".into());
        j.metadata.insert("artifact_id".into(), "log4j-core".into());
        let mut j2 = package(PackageType::JavaArchive, "jackson-databind", "2.12.3", None);
        j2.purl = Some("pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.12.3".into());
        let a = analysis(
            None,
            vec![
                j,
                j2,
                package(
                    PackageType::GoModule,
                    "github.com/nats-io/nats-server/v2",
                    "v2.9.15",
                    None,
                ),
                package(PackageType::RustCrate, "smallvec", "1.6.0", None),
                package(PackageType::Gem, "rack", "2.2.3", None),
                package(PackageType::Dotnet, "Newtonsoft.Json", "12.0.3", None),
                package(PackageType::Php, "Symfony/HTTP-Kernel", "v5.4.10", None),
                package(PackageType::Npm, "lodash", "4.17.15", None),
            ],
        );
        let keys: Vec<_> = lookups(&a)
            .into_iter()
            .map(|l| format!("{}|{}", l.key.namespace, l.key.package))
            .collect();
        assert_eq!(
            keys,
            [
                "maven|org.apache.logging.log4j:log4j-core",
                "maven|com.fasterxml.jackson.core:jackson-databind",
                "go|github.com/nats-io/nats-server/v2",
                "crates.io|smallvec",
                "rubygems|rack",
                "nuget|newtonsoft.json",
                "packagist|symfony/http-kernel",
                "npm|lodash",
            ]
        );
        let mk = |id: &str, ns: &str, pkg: &str, i: &str, f: &str| {
            adv(
                id,
                ns,
                pkg,
                FixState::Fixed,
                vec![range(Some(i), Some(f), None)],
            )
        };
        let advs = vec![
            mk(
                "A1",
                "maven",
                "org.apache.logging.log4j:log4j-core",
                "2.13.0",
                "2.15.0",
            ),
            mk(
                "A2",
                "maven",
                "com.fasterxml.jackson.core:jackson-databind",
                "2.12.0",
                "2.12.7.1",
            ),
            mk(
                "A3",
                "go",
                "github.com/nats-io/nats-server/v2",
                "2.2.0",
                "2.10.0",
            ),
            mk("A4", "crates.io", "smallvec", "1.6.0", "1.6.1"),
            mk("A5", "rubygems", "rack", "2.2.0", "2.2.3.1"),
            mk("A6", "nuget", "newtonsoft.json", "0", "13.0.1"),
            mk("A7", "packagist", "symfony/http-kernel", "5.4.0", "5.4.20"),
            mk("A8", "npm", "lodash", "0", "4.17.21"),
            // Must not match: lodash-es is another package.
            mk("A9", "npm", "lodash-es", "0", "4.17.21"),
        ];
        let f = one(&a, advs, &MatchOptions::default());
        let got: Vec<_> = f
            .iter()
            .map(|f| format!("{}:{}", f.vuln_id, f.matched.comparator))
            .collect();
        assert_eq!(
            got,
            [
                "A1:maven",
                "A2:maven",
                "A3:go-semver",
                "A4:cargo-semver",
                "A5:rubygems",
                "A6:nuget",
                "A7:composer",
                "A8:npm-semver"
            ]
        );
    }

    fn semver(i: Option<&str>, f: Option<&str>) -> AffectedRange {
        AffectedRange {
            kind: RangeKind::Semver,
            ..range(i, f, None)
        }
    }

    /// PEP 440 and SemVer disagree on `-post1` (after the release vs. a pre-release of
    /// it) and on `-dev` vs. `-alpha`: a SEMVER range follows SemVer, the same bounds as
    /// an ECOSYSTEM range follow PEP 440.
    #[test]
    fn semver_range_uses_semver_precedence_in_any_ecosystem() {
        let c = Comparator::Pep440;
        let s = adv(
            "S",
            "pypi",
            "p",
            FixState::Fixed,
            vec![semver(Some("0"), Some("1.0.0"))],
        );
        let e = adv(
            "E",
            "pypi",
            "p",
            FixState::Fixed,
            vec![range(Some("0"), Some("1.0.0"), None)],
        );
        let hit = affects(c, "1.0.0-post1", &s).expect("SemVer: 1.0.0-post1 < 1.0.0");
        assert_eq!(hit.comparator, "semver");
        assert_eq!(hit.fixed.as_deref(), Some("1.0.0"));
        assert!(
            affects(c, "1.0.0-post1", &e).is_none(),
            "PEP 440: a post-release of 1.0.0"
        );
        assert!(affects(c, "v1.0", &s).is_none(), "lenient: v1.0 is 1.0.0");
        assert!(affects(c, "0.9", &s).is_some(), "lenient: 0.9 is 0.9.0");

        let s2 = adv(
            "S2",
            "pypi",
            "p",
            FixState::Fixed,
            vec![semver(Some("1.0.0-alpha"), Some("1.0.1"))],
        );
        let e2 = adv(
            "E2",
            "pypi",
            "p",
            FixState::Fixed,
            vec![range(Some("1.0.0-alpha"), Some("1.0.1"), None)],
        );
        assert_eq!(affects(c, "1.0.0-dev", &s2).unwrap().comparator, "semver");
        assert!(
            affects(c, "1.0.0-dev", &e2).is_none(),
            "PEP 440: 1.0.0.dev0 < 1.0.0a0"
        );

        // A version that is not SemVer: the ecosystem's comparator decides and is named.
        let hit = affects(c, "0.9.0rc1", &s).expect("PEP 440: 0.9.0rc1 < 1.0.0");
        assert_eq!(hit.comparator, "pep440");
        // So does a bound that is not SemVer.
        let s3 = adv(
            "S3",
            "pypi",
            "p",
            FixState::Fixed,
            vec![semver(Some("0"), Some("1.0.0.post2"))],
        );
        let hit = affects(c, "1.0.0-post1", &s3).expect("PEP 440: post1 < post2");
        assert_eq!(hit.comparator, "pep440");

        // Go: the Go database's SEMVER ranges name versions without `v`.
        let g = adv(
            "G",
            "go",
            "example.com/m",
            FixState::Fixed,
            vec![semver(Some("1.2.0-rc.2"), Some("1.2.0"))],
        );
        let hit = affects(Comparator::Go, "v1.2.0-rc.10", &g).expect("rc.10 > rc.2 numerically");
        assert_eq!(hit.comparator, "semver");
        assert!(affects(Comparator::Go, "v1.2.0-rc.1", &g).is_none());
        assert!(affects(Comparator::Go, "v1.2.0", &g).is_none());
    }

    /// Through the whole matcher: the finding says which ordering matched.
    #[test]
    fn semver_finding_names_its_comparator() {
        let a = analysis(
            None,
            vec![package(PackageType::Python, "p", "1.0.0-post1", None)],
        );
        let advs = vec![
            adv(
                "GHSA-semver",
                "pypi",
                "p",
                FixState::Fixed,
                vec![semver(Some("0"), Some("1.0.0"))],
            ),
            adv(
                "GHSA-eco",
                "pypi",
                "p",
                FixState::Fixed,
                vec![range(Some("0"), Some("1.0.0"), None)],
            ),
        ];
        let f = one(&a, advs, &MatchOptions::default());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].vuln_id, "GHSA-semver");
        assert_eq!(f[0].matched.comparator, "semver");
        assert_eq!(f[0].matched.constraint, "< 1.0.0");
    }

    fn rpm(name: &str, v: &str, label: Option<&str>) -> Package {
        let mut p = package(PackageType::Rpm, name, v, None);
        if let Some(l) = label {
            p.metadata.insert("modularity_label".into(), l.into());
        }
        p
    }

    #[test]
    fn module_streams_match_only_their_packages() {
        let d = Distro {
            id: "rhel".into(),
            version_id: Some("8.9".into()),
            ..Default::default()
        };
        let ns = distro_namespace(&d).unwrap();
        assert_eq!(ns, "rhel:8");
        let fixed = |id: &str, module: Option<&str>, f: &str| {
            let mut a = adv(
                id,
                &ns,
                "nodejs",
                FixState::Fixed,
                vec![range(Some("0"), Some(f), None)],
            );
            a.module = module.map(Into::into);
            a
        };
        let advs = vec![
            // One id, two streams: each applies to its own stream's package only.
            fixed(
                "CVE-2024-1",
                Some("nodejs:18"),
                "1:18.19.0-1.module+el8.9.0+1+aaaa",
            ),
            fixed(
                "CVE-2024-1",
                Some("nodejs:20"),
                "1:20.11.0-1.module+el8.9.0+2+bbbb",
            ),
            // Without a module: applies to every nodejs package.
            fixed("CVE-2024-2", None, "1:99.0.0-1.el8"),
        ];
        let ids = |p: Package| -> Vec<String> {
            let f = one(
                &analysis(Some(d.clone()), vec![p]),
                advs.clone(),
                &MatchOptions::default(),
            );
            f.iter()
                .map(|f| format!("{}:{}", f.vuln_id, f.fixed_in.as_deref().unwrap_or("-")))
                .collect()
        };
        // Stream 18 at 18.18: affected by its stream's record (fix 18.19), not by the
        // stream-20 record although 18.18 < 20.11 under rpm ordering.
        assert_eq!(
            ids(rpm(
                "nodejs",
                "1:18.18.2-1.module+el8.9.0+1+aaaa",
                Some("nodejs:18:8090020231019152822:a75119d5")
            )),
            [
                "CVE-2024-1:1:18.19.0-1.module+el8.9.0+1+aaaa",
                "CVE-2024-2:1:99.0.0-1.el8"
            ]
        );
        // Stream 20 at 20.10: its own stream's fix.
        assert_eq!(
            ids(rpm(
                "nodejs",
                "1:20.10.0-1.module+el8.9.0+2+bbbb",
                Some("nodejs:20:8090020231120101010:bbbbbbbb")
            )),
            [
                "CVE-2024-1:1:20.11.0-1.module+el8.9.0+2+bbbb",
                "CVE-2024-2:1:99.0.0-1.el8"
            ]
        );
        // Stream 18 fixed: the stream-20 record must not bring it back.
        assert_eq!(
            ids(rpm(
                "nodejs",
                "1:18.19.0-1.module+el8.9.0+1+aaaa",
                Some("nodejs:18:8090020231019152822:a75119d5")
            )),
            ["CVE-2024-2:1:99.0.0-1.el8"]
        );
        // No label (not built for a module) and an empty label: only module-less records.
        assert_eq!(
            ids(rpm("nodejs", "1:10.0.0-1.el8", None)),
            ["CVE-2024-2:1:99.0.0-1.el8"]
        );
        assert_eq!(
            ids(rpm("nodejs", "1:10.0.0-1.el8", Some(""))),
            ["CVE-2024-2:1:99.0.0-1.el8"]
        );
        // Another module's package of the same name.
        assert_eq!(
            ids(rpm("nodejs", "1:18.0.0-1.el8", Some("nodejs-other:18:1:x"))),
            ["CVE-2024-2:1:99.0.0-1.el8"]
        );
        assert_eq!(
            package_module(&rpm("n", "1", Some("perl:5.32:8090:abc"))).as_deref(),
            Some("perl:5.32")
        );
        assert_eq!(package_module(&rpm("n", "1", Some("nostream"))), None);
    }
}
