//! Every matching row of `shared/feeds/EXPECTED.md`, checked with advisories built
//! from the fixture records themselves (OSV JSON, Alpine secdb, Debian tracker) and the
//! pure matcher — no store. The language and Alpine tables are read from EXPECTED.md, so
//! a row added there is tested too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use vigil_contracts::{
    Advisory, AffectedRange, Analysis, Distro, Finding, FixState, Package, PackageType, Severity,
};
use vigil_match::{ecosystem_namespace, match_packages, normalize_name};

fn feeds_dir() -> PathBuf {
    // A copy to test the test with, else the fixtures the other crates use.
    for var in ["VIGIL_FEED_FIXTURES", "VIGIL_FEEDS"] {
        if let Ok(d) = std::env::var(var) {
            return d.into();
        }
    }
    // processors/match → ../../../shared/feeds (the work tree sits beside shared/).
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../../../shared/feeds")
}

fn advisory(id: &str, ns: &str, pkg: &str, state: FixState) -> Advisory {
    Advisory {
        id: id.into(),
        aliases: vec![],
        namespace: ns.into(),
        package: pkg.into(),
        feed: "fixture".into(),
        severity: Severity::Unknown,
        state,
        ranges: vec![],
        versions: vec![],
        description: None,
        urls: vec![],
        published: None,
        modified: None,
        cvss: vec![],
        cwes: vec![],
        withdrawn: false,
        vendor_only: false,
        fix_published: None,
        module: None,
    }
}

/// OSV record → advisories, one per `affected[]` entry (ECOSYSTEM and SEMVER ranges,
/// explicit versions, `last_affected`, `withdrawn`), aliases plus related CVEs.
fn osv_advisories(v: &Value) -> Vec<Advisory> {
    let id = v["id"].as_str().unwrap();
    let strs = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut aliases = strs(&v["aliases"]);
    for r in strs(&v["related"]) {
        if r.starts_with("CVE-") && !aliases.contains(&r) {
            aliases.push(r);
        }
    }
    let mut out = Vec::new();
    for a in v["affected"].as_array().into_iter().flatten() {
        let Some(ns) = ecosystem_namespace(a["package"]["ecosystem"].as_str().unwrap()) else {
            continue;
        };
        let name = a["package"]["name"].as_str().unwrap();
        let mut ranges = Vec::new();
        for r in a["ranges"].as_array().into_iter().flatten() {
            if !matches!(r["type"].as_str(), Some("ECOSYSTEM" | "SEMVER")) {
                continue;
            }
            let mut open: Option<AffectedRange> = None;
            for e in r["events"].as_array().unwrap() {
                let blank = AffectedRange {
                    kind: Default::default(),
                    introduced: None,
                    fixed: None,
                    last_affected: None,
                };
                if let Some(i) = e["introduced"].as_str() {
                    if let Some(o) = open.take() {
                        ranges.push(o);
                    }
                    open = Some(AffectedRange {
                        introduced: Some(i.into()),
                        ..blank
                    });
                } else if let Some(f) = e["fixed"].as_str() {
                    let mut o = open.take().unwrap_or(blank);
                    o.fixed = Some(f.into());
                    ranges.push(o);
                } else if let Some(l) = e["last_affected"].as_str() {
                    let mut o = open.take().unwrap_or(blank);
                    o.last_affected = Some(l.into());
                    ranges.push(o);
                }
            }
            ranges.extend(open);
        }
        let state = if ranges.iter().any(|r| r.fixed.is_some()) {
            FixState::Fixed
        } else {
            FixState::NotFixed
        };
        let mut adv = advisory(id, &ns, &normalize_name(&ns, name), state);
        adv.aliases = aliases.clone();
        adv.ranges = ranges;
        adv.versions = strs(&a["versions"]);
        adv.withdrawn = !v["withdrawn"].is_null();
        adv.feed = "osv".into();
        out.push(adv);
    }
    out
}

fn load_osv() -> Vec<Advisory> {
    let root = feeds_dir().join("osv");
    let mut out = Vec::new();
    let mut files = 0;
    for eco in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        for f in std::fs::read_dir(eco.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                out.extend(osv_advisories(&v));
                files += 1;
            }
        }
    }
    assert!(files > 200, "only {files} OSV fixture files");
    out
}

fn alpine_advisories(release: &str) -> Vec<Advisory> {
    let p = feeds_dir().join(format!("alpine/{release}/main.json"));
    let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let ns = format!("alpine:{}", release.trim_start_matches('v'));
    let mut out = Vec::new();
    for p in v["packages"].as_array().unwrap() {
        let name = p["pkg"]["name"].as_str().unwrap();
        for (fixed, ids) in p["pkg"]["secfixes"].as_object().into_iter().flatten() {
            for id in ids.as_array().unwrap().iter().filter_map(Value::as_str) {
                for id in id.split_whitespace() {
                    let mut a = if fixed == "0" {
                        advisory(id, &ns, name, FixState::NotAffected)
                    } else {
                        let mut a = advisory(id, &ns, name, FixState::Fixed);
                        a.ranges = vec![AffectedRange {
                            kind: Default::default(),
                            introduced: None,
                            fixed: Some(fixed.clone()),
                            last_affected: None,
                        }];
                        a
                    };
                    a.feed = "alpine".into();
                    out.push(a);
                }
            }
        }
    }
    out
}

fn debian_advisories(release: &str, version: &str) -> Vec<Advisory> {
    let p = feeds_dir().join("debian/tracker.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let ns = format!("debian:{version}");
    let mut out = Vec::new();
    for (pkg, cves) in v.as_object().unwrap() {
        for (cve, data) in cves.as_object().unwrap() {
            let Some(r) = data["releases"].get(release) else {
                continue;
            };
            let fixed = r["fixed_version"].as_str();
            let mut a = match (r["status"].as_str(), fixed) {
                (_, Some("0")) => advisory(cve, &ns, pkg, FixState::NotAffected),
                (Some("resolved"), Some(f)) => {
                    let mut a = advisory(cve, &ns, pkg, FixState::Fixed);
                    a.ranges = vec![AffectedRange {
                        kind: Default::default(),
                        introduced: None,
                        fixed: Some(f.into()),
                        last_affected: None,
                    }];
                    a
                }
                _ => advisory(cve, &ns, pkg, FixState::NotFixed),
            };
            a.feed = "debian".into();
            out.push(a);
        }
    }
    out
}

fn analysis(distro: Option<Distro>, packages: Vec<Package>) -> Analysis {
    Analysis::of_packages(Analysis::test_descriptor(), distro, packages)
}

fn package(kind: PackageType, name: &str, version: &str, source: Option<&str>) -> Package {
    let mut p = Package {
        name: name.into(),
        version: version.into(),
        kind,
        arch: None,
        source_name: source.map(Into::into),
        source_version: None,
        licenses: vec![],
        locations: vec![],
        purl: None,
        cpes: Vec::new(),
        files: Vec::new(),
        metadata: Default::default(),
        found_by: None,
        file_digests: Default::default(),
    };
    if kind == PackageType::JavaArchive {
        let (g, a) = name.split_once(':').unwrap();
        p.name = a.into();
        p.metadata.insert("group_id".into(), g.into());
        p.metadata.insert("artifact_id".into(), a.into());
    }
    p
}

fn run(distro: Option<Distro>, packages: Vec<Package>, advs: &[Advisory]) -> Vec<Finding> {
    let mut index: BTreeMap<(String, String), Vec<Advisory>> = BTreeMap::new();
    for a in advs {
        index
            .entry((a.namespace.clone(), a.package.clone()))
            .or_default()
            .push(a.clone());
    }
    let a = analysis(distro, packages);
    match_packages(&a, |k| {
        index
            .get(&(k.namespace.clone(), k.package.clone()))
            .cloned()
            .unwrap_or_default()
    })
    .findings
}

fn ids(f: &[Finding]) -> BTreeSet<String> {
    f.iter().map(|f| f.vuln_id.clone()).collect()
}

fn expected_md() -> String {
    std::fs::read_to_string(feeds_dir().join("EXPECTED.md")).unwrap()
}

/// `GHSA-a (CVE-1); GO-b (CVE-2, GHSA-c)` → id → aliases.
fn parse_ids(cell: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if cell.contains("none") {
        return out;
    }
    for item in cell.split(';') {
        let item = item.trim();
        let (id, aliases) = match item.split_once('(') {
            Some((id, rest)) => (
                id.trim(),
                rest.trim_end_matches(')')
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect(),
            ),
            None => (item, vec![]),
        };
        out.insert(id.to_string(), aliases);
    }
    out
}

fn table_rows<'a>(md: &'a str, heading: &str) -> Vec<Vec<&'a str>> {
    let start = md
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} not in EXPECTED.md"));
    md[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect()
        })
        .collect()
}

#[test]
fn language_packages_table() {
    let advs = load_osv();
    let md = expected_md();
    let rows = table_rows(&md, "## Language packages");
    assert!(rows.len() >= 25, "{} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let (eco, name, version, cell) = (row[0], row[1], row[2], row[3]);
        let kind = match eco {
            "PyPI" => PackageType::Python,
            "npm" => PackageType::Npm,
            "Maven" => PackageType::JavaArchive,
            "Go" => PackageType::GoModule,
            other => panic!("ecosystem {other} in EXPECTED.md"),
        };
        let want = parse_ids(cell);
        let got = run(None, vec![package(kind, name, version, None)], &advs);
        if ids(&got) != want.keys().cloned().collect() {
            failures.push(format!(
                "{eco} {name} {version}: got {:?}, want {:?}",
                ids(&got),
                want.keys().collect::<Vec<_>>()
            ));
            continue;
        }
        for f in &got {
            for alias in &want[&f.vuln_id] {
                if !f.aliases.contains(alias) {
                    failures.push(format!(
                        "{name} {version} {}: alias {alias} missing",
                        f.vuln_id
                    ));
                }
            }
            assert!(
                f.matched.constraint.contains('<') || f.matched.constraint.contains('='),
                "{}: constraint {:?}",
                f.vuln_id,
                f.matched.constraint
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn express_tree_reports_eight() {
    // EXPECTED.md, notes: express 4.16.0 with its dependency tree → 8 advisories in all.
    let advs = load_osv();
    let tree = [
        ("express", "4.16.0"),
        ("body-parser", "1.18.2"),
        ("cookie", "0.3.1"),
        ("path-to-regexp", "0.1.7"),
        ("qs", "6.5.1"),
        ("send", "0.16.0"),
        ("serve-static", "1.13.0"),
    ];
    let pkgs = tree
        .iter()
        .map(|(n, v)| package(PackageType::Npm, n, v, None))
        .collect();
    let got = run(None, pkgs, &advs);
    assert_eq!(got.len(), 8, "{:?}", ids(&got));
}

#[test]
fn go_stdlib_sections() {
    let advs = load_osv();
    let md = expected_md();
    for version in ["1.20.5", "1.22.0"] {
        let head = format!("### Go standard library `stdlib` {version}");
        let start = md.find(&head).unwrap();
        let line = md[start..]
            .lines()
            .skip(1)
            .find(|l| l.starts_with("GO-"))
            .unwrap();
        let want: BTreeSet<String> = line.split(',').map(|s| s.trim().to_string()).collect();
        let count: usize = md[start + head.len()..]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(want.len(), count);
        for v in [version.to_string(), format!("go{version}")] {
            let got = ids(&run(
                None,
                vec![package(PackageType::GoModule, "stdlib", &v, None)],
                &advs,
            ));
            assert_eq!(got, want, "stdlib {v}");
        }
    }
}

#[test]
fn alpine_secdb_table() {
    let md = expected_md();
    let rows = table_rows(&md, "## Alpine secdb");
    assert_eq!(rows.len(), 15);
    for row in rows {
        let (release, name, installed, want_cell, zero_cell) =
            (row[0], row[1], row[2], row[3], row[4]);
        let advs = alpine_advisories(release);
        let want: BTreeSet<String> = if want_cell.contains("none") {
            BTreeSet::new()
        } else {
            want_cell
                .split(',')
                .map(|s| s.split('(').next().unwrap().trim().to_string())
                .collect()
        };
        let distro = Distro {
            id: "alpine".into(),
            version_id: Some(format!("{}.1", release.trim_start_matches('v'))),
            ..Default::default()
        };
        let got = run(
            Some(distro),
            vec![package(PackageType::Apk, name, installed, None)],
            &advs,
        );
        assert_eq!(ids(&got), want, "{release} {name} {installed}");
        for zero in zero_cell
            .split(',')
            .map(str::trim)
            .filter(|z| z.starts_with("CVE"))
        {
            assert!(
                !ids(&got).contains(zero),
                "{zero} listed under 0 was reported"
            );
        }
        for f in &got {
            assert_eq!(f.matched.comparator, "apk");
            assert_eq!(f.state, FixState::Fixed);
            assert!(f.fixed_in.is_some());
        }
    }
    // ALPINE-13661: busybox fixed in 1.35.0-r7.
    let advs = alpine_advisories("v3.18");
    let d = Distro {
        id: "alpine".into(),
        version_id: Some("3.18.0".into()),
        ..Default::default()
    };
    let old = run(
        Some(d.clone()),
        vec![package(PackageType::Apk, "busybox", "1.35.0-r6", None)],
        &advs,
    );
    assert!(ids(&old).contains("ALPINE-13661"));
    let new = run(
        Some(d),
        vec![package(PackageType::Apk, "busybox", "1.35.0-r7", None)],
        &advs,
    );
    assert!(!ids(&new).contains("ALPINE-13661"));
}

#[test]
fn debian_tracker_bookworm() {
    let advs = debian_advisories("bookworm", "12");
    let d = Distro {
        id: "debian".into(),
        version_id: Some("12".into()),
        ..Default::default()
    };
    for (src, version, want) in [
        ("apparmor", "3.0.8-3", vec!["CVE-2016-1585"]),
        ("chromium", "98.0.4758.102-1", vec![]),
        ("sope", "5.8.0-1", vec!["CVE-2025-53603"]),
        ("sope", "5.8.0-1+deb12u1", vec![]),
        ("backupninja", "0.2", vec![]),
        ("prototypejs", "1.7.1-3", vec![]),
        ("txt2man", "1.7.1-2", vec![]),
    ] {
        // Matched by source package: the binary is named differently.
        let bin = format!("lib{src}-bin");
        let got = run(
            Some(d.clone()),
            vec![package(PackageType::Deb, &bin, version, Some(src))],
            &advs,
        );
        let want: BTreeSet<String> = want.into_iter().map(String::from).collect();
        assert_eq!(ids(&got), want, "{src} {version}");
        for f in &got {
            assert_eq!(f.matched.searched_name, src);
            assert_eq!(f.matched.namespace, "debian:12");
            assert_eq!(f.matched.comparator, "dpkg");
        }
    }
    let open = run(
        Some(d),
        vec![package(PackageType::Deb, "apparmor", "3.0.8-3", None)],
        &advs,
    );
    assert_eq!(open[0].state, FixState::NotFixed);
    assert_eq!(open[0].matched.constraint, "all versions");
}

#[test]
fn distro_osv_samples() {
    let advs = load_osv();
    let alma = Distro {
        id: "almalinux".into(),
        version_id: Some("9.1".into()),
        ..Default::default()
    };
    for (name, src, version, want) in [
        (
            "openssl-libs",
            "openssl",
            "1:3.0.1-41.el9_0",
            vec!["ALSA-2022:7288", "ALSA-2023:0946"],
        ),
        (
            "openssl",
            "openssl",
            "1:3.0.1-43.el9_0",
            vec!["ALSA-2023:0946"],
        ),
        ("openssl-libs", "openssl", "1:3.0.1-47.el9_1", vec![]),
        ("zlib", "zlib", "1.2.11-31.el9", vec!["ALSA-2022:7314"]),
        ("zlib", "zlib", "1.2.11-32.el9_0", vec![]),
        (
            "systemd-libs",
            "systemd",
            "250-12.el9_1",
            vec!["ALSA-2023:0336"],
        ),
        (
            "python3-requests",
            "python-requests",
            "2.25.1-6.el9",
            vec!["ALSA-2023:4350"],
        ),
        (
            "glibc-common",
            "glibc",
            "2.34-60.el9_2.6",
            vec!["ALSA-2023:5453"],
        ),
        (
            "sqlite-libs",
            "sqlite",
            "3.34.1-6.el9_1",
            vec!["ALSA-2024:0465"],
        ),
    ] {
        let srpm = format!(
            "{src}-{}.src.rpm",
            version.split_once(':').map_or(version, |x| x.1)
        );
        let got = run(
            Some(alma.clone()),
            vec![package(PackageType::Rpm, name, version, Some(&srpm))],
            &advs,
        );
        let want: BTreeSet<String> = want.into_iter().map(String::from).collect();
        assert_eq!(ids(&got), want, "{name} {version}");
        for f in &got {
            assert_eq!(f.matched.comparator, "rpm");
            assert_eq!(f.matched.namespace, "almalinux:9");
        }
    }
    let ubuntu = Distro {
        id: "ubuntu".into(),
        version_id: Some("22.04".into()),
        ..Default::default()
    };
    let got = run(
        Some(ubuntu.clone()),
        vec![package(
            PackageType::Deb,
            "libc6",
            "2.35-0ubuntu3.1",
            Some("glibc"),
        )],
        &advs,
    );
    assert_eq!(
        ids(&got),
        ["UBUNTU-CVE-2023-4911", "USN-6409-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let u = got
        .iter()
        .find(|f| f.vuln_id == "UBUNTU-CVE-2023-4911")
        .unwrap();
    assert!(u.aliases.contains(&"CVE-2023-4911".to_string()));
    assert_eq!(u.fixed_in.as_deref(), Some("2.35-0ubuntu3.4"));
    let fixed = run(
        Some(ubuntu),
        vec![package(
            PackageType::Deb,
            "libc6",
            "2.35-0ubuntu3.4",
            Some("glibc"),
        )],
        &advs,
    );
    assert!(fixed.is_empty());
}
