//! Drivers on the real fixtures, and every Alpine and Debian row of EXPECTED.md through
//! the matcher.

mod common;

use common::*;
use vigil_contracts::{FixState, PackageKey, PackageType, Severity};
use vigil_feeds::drivers::{self, Grouped};
use vigil_feeds::fetch::Body;
use vigil_feeds::{parse_body, FeedKind, FeedSource};
use vigil_match::version::apk;

fn parse_file(kind: FeedKind, rel: &str) -> Grouped {
    let path = feeds_dir().join(rel);
    let bytes = std::fs::read(&path).unwrap();
    parse_body(
        &FeedSource::new(kind, kind.as_str(), path.display().to_string()),
        &Body::Bytes(bytes),
    )
    .unwrap()
}

fn key(ns: &str, p: &str) -> PackageKey {
    PackageKey {
        namespace: ns.into(),
        package: p.into(),
    }
}

#[test]
fn debian_driver() {
    let g = parse_file(FeedKind::Debian, "debian/tracker.json");
    let apparmor = &g[&key("debian:12", "apparmor")];
    let by_id = |id: &str| apparmor.iter().find(|a| a.id == id).unwrap();
    assert_eq!(by_id("CVE-2014-1424").state, FixState::NotAffected);
    let open = by_id("CVE-2016-1585");
    assert_eq!(open.state, FixState::WontFix, "urgency unimportant");
    assert_eq!(open.severity, Severity::Negligible);
    let fixed = by_id("CVE-2017-6507");
    assert_eq!(fixed.state, FixState::Fixed);
    assert_eq!(fixed.ranges[0].fixed.as_deref(), Some("2.11.0-3"));
    // Codenames map to namespaces; sid has none.
    assert!(g.contains_key(&key("debian:13", "apparmor")));
    assert!(g.contains_key(&key("debian:11", "apparmor")));
    assert!(g.contains_key(&key("debian:9", "prototypejs")));
    assert!(!g.keys().any(|k| k.namespace.contains("sid")));
    // "high**" → High; end-of-life open → WontFix.
    let proto = &g[&key("debian:10", "prototypejs")];
    assert_eq!(
        proto
            .iter()
            .find(|a| a.id == "CVE-2008-7220")
            .unwrap()
            .severity,
        Severity::High
    );
    let chromium_buster = &g[&key("debian:10", "chromium")][0];
    assert_eq!(chromium_buster.state, FixState::WontFix);
    let sope = &g[&key("debian:12", "sope")][0];
    assert_eq!(sope.ranges[0].fixed.as_deref(), Some("5.8.0-1+deb12u1"));
}

#[test]
fn alpine_driver() {
    let g = parse_file(FeedKind::Alpine, "alpine/v3.19/main.json");
    assert!(g.keys().all(|k| k.namespace == "alpine:3.19"));
    assert_eq!(g.len(), 5);
    let bb = &g[&key("alpine:3.19", "busybox")];
    let zero = bb.iter().find(|a| a.id == "CVE-2021-42373").unwrap();
    assert_eq!(zero.state, FixState::NotAffected);
    let a = bb.iter().find(|a| a.id == "ALPINE-13661").unwrap();
    assert_eq!(a.ranges[0].fixed.as_deref(), Some("1.35.0-r7"));
    assert!(bb.iter().any(|a| a.id == "CVE-2022-48174"));
}

#[test]
fn wolfi_and_chainguard_secdbs_have_their_own_namespaces() {
    // Wolfi's security.json shape: no distroversion, a urlprefix, apk-style secfixes.
    let wolfi = br#"{"apkurl":"{{urlprefix}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
        "archs":["x86_64","aarch64"],"reponame":"os","urlprefix":"https://packages.wolfi.dev",
        "packages":[{"pkg":{"name":"openssl","secfixes":{"3.1.4-r1":["CVE-2023-5678"],"0":["CVE-2022-0001"]}}}]}"#;
    let advs = vigil_feeds::drivers::alpine::parse("wolfi", wolfi).unwrap();
    assert!(advs.iter().all(|a| a.namespace == "wolfi"), "{advs:?}");
    let fixed = advs.iter().find(|a| a.id == "CVE-2023-5678").unwrap();
    assert_eq!(fixed.ranges[0].fixed.as_deref(), Some("3.1.4-r1"));
    let zero = advs.iter().find(|a| a.id == "CVE-2022-0001").unwrap();
    assert_eq!(zero.state, FixState::NotAffected);
    let cg = br#"{"reponame":"enterprise","urlprefix":"https://packages.cgr.dev",
        "packages":[{"pkg":{"name":"curl","secfixes":{"8.5.0-r0":["CVE-2023-46218"]}}}]}"#;
    let advs = vigil_feeds::drivers::alpine::parse("cg", cg).unwrap();
    assert_eq!(advs[0].namespace, "chainguard");
    // Neither Alpine nor recognisable: a clear error.
    let e = vigil_feeds::drivers::alpine::parse("x", br#"{"packages":[]}"#).unwrap_err();
    assert!(e.to_string().contains("distroversion"), "{e}");
}

#[test]
fn osv_driver() {
    let dir = feeds_dir().join("osv");
    let files: Vec<(String, Vec<u8>)> = walk(&dir);
    let src = FeedSource::new(FeedKind::Osv, "osv", dir.display().to_string());
    let g = parse_body(&src, &Body::Files(files)).unwrap();
    // PyPI names are normalised (Jinja2 → jinja2).
    let jinja = &g[&key("pypi", "jinja2")];
    assert!(jinja.iter().any(|a| a.id == "GHSA-462w-v97r-4m45"));
    let req = &g[&key("pypi", "requests")];
    let a = req.iter().find(|a| a.id == "GHSA-x84v-xcm2-53pg").unwrap();
    assert_eq!(a.aliases, vec!["CVE-2018-18074"]);
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.ranges[0].fixed.as_deref(), Some("2.20.0"));
    assert!(g.contains_key(&key("npm", "lodash")));
    assert!(g.contains_key(&key("npm", "lodash-es")));
    assert!(g.contains_key(&key("maven", "org.apache.logging.log4j:log4j-core")));
    assert!(g.contains_key(&key("go", "stdlib")));
    assert!(g.contains_key(&key("go", "github.com/nats-io/nats-server/v2")));
    // Distro OSV: AlmaLinux and Ubuntu namespaces; ALSA related CVEs become aliases.
    let zlib = &g[&key("almalinux:9", "zlib")];
    let alsa = zlib.iter().find(|a| a.id == "ALSA-2022:7314").unwrap();
    assert!(alsa.aliases.contains(&"CVE-2022-37434".to_string()));
    assert!(g.keys().any(|k| k.namespace.starts_with("ubuntu:")));
    let counts = drivers::counts(&g);
    assert!(counts["go"] > 100, "{counts:?}");
}

pub fn walk(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// (release, package, installed, expected ids, ids under "0").
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const ALPINE_ROWS: &[Row] = &[
    ("3.18", "apk-tools", "2.14.0-r0", &[], &[]),
    (
        "3.18",
        "busybox",
        "1.36.0-r9",
        &[
            ("CVE-2022-48174", "1.36.1-r1"),
            ("CVE-2023-42366", "1.36.1-r6"),
            ("CVE-2023-42363", "1.36.1-r7"),
            ("CVE-2023-42364", "1.36.1-r7"),
            ("CVE-2023-42365", "1.36.1-r7"),
        ],
        &["CVE-2021-42373", "CVE-2021-42376", "CVE-2021-42377"],
    ),
    (
        "3.18",
        "musl",
        "1.2.4-r0",
        &[("CVE-2025-26519", "1.2.4-r3")],
        &[],
    ),
    (
        "3.18",
        "openssl",
        "3.1.0-r4",
        &[
            ("CVE-2023-2650", "3.1.1-r0"),
            ("CVE-2023-2975", "3.1.1-r2"),
            ("CVE-2023-3446", "3.1.1-r3"),
            ("CVE-2023-3817", "3.1.2-r0"),
            ("CVE-2023-5363", "3.1.4-r0"),
            ("CVE-2023-5678", "3.1.4-r1"),
            ("CVE-2023-6129", "3.1.4-r3"),
            ("CVE-2023-6237", "3.1.4-r4"),
        ],
        &[
            "CVE-2022-1292",
            "CVE-2022-2068",
            "CVE-2022-2274",
            "CVE-2023-0466",
            "CVE-2023-4807",
        ],
    ),
    (
        "3.18",
        "zlib",
        "1.2.13-r1",
        &[],
        &["CVE-2023-45853", "CVE-2023-6992"],
    ),
    ("3.19", "apk-tools", "2.14.0-r5", &[], &[]),
    (
        "3.19",
        "busybox",
        "1.36.1-r15",
        &[
            ("CVE-2023-42366", "1.36.1-r16"),
            ("CVE-2023-42363", "1.36.1-r17"),
            ("CVE-2023-42364", "1.36.1-r19"),
            ("CVE-2023-42365", "1.36.1-r19"),
            ("CVE-2024-58251", "1.36.1-r21"),
            ("CVE-2025-46394", "1.36.1-r21"),
        ],
        &["CVE-2021-42373", "CVE-2021-42376", "CVE-2021-42377"],
    ),
    (
        "3.19",
        "musl",
        "1.2.4_git20230717-r4",
        &[
            ("CVE-2025-26519", "1.2.4_git20230717-r5"),
            ("CVE-2026-40200", "1.2.4_git20230717-r6"),
            ("CVE-2026-6042", "1.2.4_git20230717-r6"),
        ],
        &[],
    ),
    (
        "3.19",
        "openssl",
        "3.1.4-r1",
        &[("CVE-2023-6129", "3.1.4-r3"), ("CVE-2023-6237", "3.1.4-r4")],
        &[
            "CVE-2022-1292",
            "CVE-2022-2068",
            "CVE-2022-2274",
            "CVE-2023-0466",
            "CVE-2023-4807",
        ],
    ),
    (
        "3.19",
        "zlib",
        "1.3-r2",
        &[],
        &["CVE-2023-45853", "CVE-2023-6992"],
    ),
    ("3.20", "apk-tools", "2.14.4-r0", &[], &[]),
    (
        "3.20",
        "busybox",
        "1.36.1-r28",
        &[
            ("CVE-2023-42364", "1.36.1-r29"),
            ("CVE-2023-42365", "1.36.1-r29"),
            ("CVE-2024-58251", "1.36.1-r31"),
            ("CVE-2025-46394", "1.36.1-r31"),
        ],
        &["CVE-2021-42373", "CVE-2021-42376", "CVE-2021-42377"],
    ),
    (
        "3.20",
        "musl",
        "1.2.5-r0",
        &[
            ("CVE-2025-26519", "1.2.5-r1"),
            ("CVE-2026-6042", "1.2.5-r2"),
            ("CVE-2026-40200", "1.2.5-r3"),
        ],
        &[],
    ),
    (
        "3.20",
        "openssl",
        "3.3.0-r2",
        &[
            ("CVE-2024-4741", "3.3.0-r3"),
            ("CVE-2024-5535", "3.3.1-r1"),
            ("CVE-2024-6119", "3.3.2-r0"),
            ("CVE-2024-9143", "3.3.2-r1"),
            ("CVE-2024-13176", "3.3.2-r2"),
            ("CVE-2024-12797", "3.3.3-r0"),
            ("CVE-2025-9230", "3.3.5-r0"),
            ("CVE-2025-9231", "3.3.5-r0"),
            ("CVE-2025-9232", "3.3.5-r0"),
            ("CVE-2025-15467", "3.3.6-r0"),
            ("CVE-2025-15468", "3.3.6-r0"),
            ("CVE-2025-66199", "3.3.6-r0"),
            ("CVE-2025-68160", "3.3.6-r0"),
            ("CVE-2025-69418", "3.3.6-r0"),
            ("CVE-2025-69419", "3.3.6-r0"),
            ("CVE-2025-69420", "3.3.6-r0"),
            ("CVE-2025-69421", "3.3.6-r0"),
            ("CVE-2026-22795", "3.3.6-r0"),
            ("CVE-2026-22796", "3.3.6-r0"),
            ("CVE-2026-28387", "3.3.7-r0"),
            ("CVE-2026-28388", "3.3.7-r0"),
            ("CVE-2026-28389", "3.3.7-r0"),
            ("CVE-2026-28390", "3.3.7-r0"),
            ("CVE-2026-31789", "3.3.7-r0"),
            ("CVE-2026-31790", "3.3.7-r0"),
        ],
        &[
            "CVE-2022-1292",
            "CVE-2022-2068",
            "CVE-2022-2274",
            "CVE-2023-0466",
            "CVE-2023-4807",
        ],
    ),
    (
        "3.20",
        "zlib",
        "1.3.1-r1",
        &[],
        &["CVE-2023-45853", "CVE-2023-6992"],
    ),
];

#[test]
fn expected_alpine_rows() {
    for release in ["3.18", "3.19", "3.20"] {
        let g = parse_file(FeedKind::Alpine, &format!("alpine/v{release}/main.json"));
        let d = distro("alpine", &format!("{release}.1"));
        for (_, name, installed, expected, zero) in ALPINE_ROWS.iter().filter(|r| r.0 == release) {
            let a = analysis(
                "sha256:a",
                Some(d.clone()),
                vec![pkg(PackageType::Apk, name, installed)],
            );
            let out = vigil_match::match_packages(&a, |k| g.get(k).cloned().unwrap_or_default());
            let got: std::collections::BTreeSet<String> =
                out.findings.iter().map(|f| f.vuln_id.clone()).collect();
            let want = set(&expected.iter().map(|e| e.0).collect::<Vec<_>>());
            assert_eq!(got, want, "alpine {release} {name} {installed}");
            for z in *zero {
                assert!(!got.contains(*z), "{z} is listed under \"0\"");
            }
            for f in &out.findings {
                let fixed = expected.iter().find(|e| e.0 == f.vuln_id).unwrap().1;
                assert_eq!(f.fixed_in.as_deref(), Some(fixed), "{}", f.vuln_id);
                assert_eq!(f.state, FixState::Fixed);
                assert_eq!(f.matched.comparator, "apk");
                assert_eq!(f.matched.namespace, format!("alpine:{release}"));
                assert_eq!(f.matched.constraint, format!("< {fixed}"));
            }
            // Negative: at the highest expected fixed version nothing is left.
            if let Some(max) = expected
                .iter()
                .map(|e| e.1)
                .max_by(|a, b| apk::compare(a, b))
            {
                let a = analysis(
                    "sha256:a",
                    Some(d.clone()),
                    vec![pkg(PackageType::Apk, name, max)],
                );
                assert!(
                    matched_ids(&a, &g).is_empty(),
                    "alpine {release} {name} {max}"
                );
            }
        }
        // ALPINE-13661: busybox older than 1.35.0-r7.
        for (v, want) in [("1.35.0-r6", true), ("1.35.0-r7", false)] {
            let a = analysis(
                "sha256:a",
                Some(d.clone()),
                vec![pkg(PackageType::Apk, "busybox", v)],
            );
            assert_eq!(
                matched_ids(&a, &g).contains("ALPINE-13661"),
                want,
                "{release} {v}"
            );
        }
    }
}

#[test]
fn expected_alpine_origin_lookup() {
    // Subpackages are matched under their origin: `ssl_client` comes from busybox.
    let g = parse_file(FeedKind::Alpine, "alpine/v3.19/main.json");
    let p = with_source(
        pkg(PackageType::Apk, "libcrypto3", "3.1.4-r1"),
        "openssl",
        None,
    );
    let a = analysis("sha256:a", Some(distro("alpine", "3.19.0")), vec![p]);
    let out = vigil_match::match_packages(&a, |k| g.get(k).cloned().unwrap_or_default());
    assert_eq!(
        out.findings
            .iter()
            .map(|f| f.vuln_id.as_str())
            .collect::<Vec<_>>(),
        vec!["CVE-2023-6129", "CVE-2023-6237"]
    );
    assert_eq!(out.findings[0].package.name, "libcrypto3");
    assert_eq!(out.findings[0].matched.searched_name, "openssl");
}

#[test]
fn expected_debian_rows() {
    let g = parse_file(FeedKind::Debian, "debian/tracker.json");
    let bookworm = distro("debian", "12");
    let deb = |name: &str, v: &str| pkg(PackageType::Deb, name, v);
    let rows: Vec<(vigil_contracts::Package, Vec<&str>)> = vec![
        (deb("apparmor", "3.0.8-3"), vec!["CVE-2016-1585"]),
        // Binary package matched through its source package.
        (
            with_source(deb("libapparmor1", "3.0.8-3"), "apparmor", None),
            vec!["CVE-2016-1585"],
        ),
        (deb("chromium", "98.0.4758.102-1"), vec![]),
        (deb("chromium", "98.0.4758.79-1"), vec!["CVE-2022-0456"]),
        (deb("sope", "5.8.0-1"), vec!["CVE-2025-53603"]),
        (deb("sope", "5.8.0-1+deb12u1"), vec![]),
        (
            with_source(deb("libsope1", "5.8.0-1"), "sope", Some("5.8.0-1")),
            vec!["CVE-2025-53603"],
        ),
        (
            with_source(
                deb("libsope1", "5.8.0-1+b1"),
                "sope",
                Some("5.8.0-1+deb12u1"),
            ),
            vec![],
        ),
        (deb("backupninja", "0.1-1"), vec![]),
        (deb("prototypejs", "1.0-1"), vec![]),
        (deb("txt2man", "1.0-1"), vec![]),
        (
            deb("apparmor", "2.10-1"),
            vec!["CVE-2016-1585", "CVE-2017-6507"],
        ),
    ];
    for (p, want) in rows {
        let label = format!("{} {}", p.name, p.version);
        let a = analysis("sha256:d", Some(bookworm.clone()), vec![p]);
        assert_eq!(matched_ids(&a, &g), set(&want), "{label}");
    }
    // States and details on one image holding all of them.
    let a = analysis(
        "sha256:d",
        Some(distro("debian", "12")),
        vec![deb("apparmor", "3.0.8-3"), deb("sope", "5.8.0-1")],
    );
    let out = vigil_match::match_packages(&a, |k| g.get(k).cloned().unwrap_or_default());
    let f = out
        .findings
        .iter()
        .find(|f| f.vuln_id == "CVE-2016-1585")
        .unwrap();
    assert_eq!(f.state, FixState::WontFix);
    assert_eq!(f.fixed_in, None);
    let f = out
        .findings
        .iter()
        .find(|f| f.vuln_id == "CVE-2025-53603")
        .unwrap();
    assert_eq!(f.state, FixState::Fixed);
    assert_eq!(f.fixed_in.as_deref(), Some("5.8.0-1+deb12u1"));
    assert_eq!(f.matched.comparator, "dpkg");
    assert_eq!(f.matched.constraint, "< 5.8.0-1+deb12u1");
    assert!(!out.findings.iter().any(|f| f.vuln_id == "CVE-2014-1424"));
    // Codename-only os-release.
    let d = vigil_contracts::Distro {
        id: "debian".into(),
        codename: Some("bookworm".into()),
        ..Default::default()
    };
    let a = analysis("sha256:d", Some(d), vec![deb("sope", "5.8.0-1")]);
    assert_eq!(matched_ids(&a, &g), set(&["CVE-2025-53603"]));
}

#[test]
fn osv_language_rows_generic() {
    let dir = feeds_dir().join("osv");
    let src = FeedSource::new(FeedKind::Osv, "osv", dir.display().to_string());
    let g = parse_body(&src, &Body::Files(walk(&dir))).unwrap();
    let check = |kind, name: &str, v: &str, want: &[&str]| {
        let a = analysis("sha256:l", None, vec![pkg(kind, name, v)]);
        assert_eq!(matched_ids(&a, &g), set(want), "{name} {v}");
    };
    check(
        PackageType::Python,
        "requests",
        "2.19.1",
        &[
            "GHSA-9wx4-h78v-vm56",
            "GHSA-j8r2-6x86-q33q",
            "GHSA-x84v-xcm2-53pg",
        ],
    );
    check(
        PackageType::Python,
        "urllib3",
        "1.24.1",
        &[
            "GHSA-34jh-p97f-mpxf",
            "GHSA-g4mx-q9vg-27p4",
            "GHSA-mh33-7rrq-662w",
            "GHSA-v845-jxx5-vc9f",
        ],
    );
    check(
        PackageType::Python,
        "Jinja2",
        "2.10",
        &[
            "GHSA-462w-v97r-4m45",
            "GHSA-g3rq-g295-4j3m",
            "GHSA-h5c8-rqwp-cp95",
            "GHSA-h75v-3vvj-5mfj",
        ],
    );
    check(
        PackageType::Python,
        "PyYAML",
        "5.3",
        &["GHSA-6757-jp84-gxfx", "GHSA-8q59-q68h-6hv4"],
    );
    check(
        PackageType::Npm,
        "lodash",
        "4.17.15",
        &[
            "GHSA-29mw-wpgm-hmr9",
            "GHSA-35jh-r3h4-6jhm",
            "GHSA-p6mc-m468-83gw",
        ],
    );
    check(
        PackageType::Npm,
        "minimist",
        "1.2.0",
        &["GHSA-vh95-rmgr-6w4m", "GHSA-xvch-5gv4-984h"],
    );
    check(
        PackageType::JavaArchive,
        "org.apache.logging.log4j:log4j-core",
        "2.14.1",
        &[
            "GHSA-7rjr-3q55-vv33",
            "GHSA-jfh8-c2jp-5v3q",
            "GHSA-p6xc-xr62-6r2g",
        ],
    );
    check(
        PackageType::JavaArchive,
        "org.apache.logging.log4j:log4j-core",
        "2.16.0",
        &["GHSA-p6xc-xr62-6r2g"],
    );
    check(
        PackageType::JavaArchive,
        "org.apache.logging.log4j:log4j-core",
        "2.17.1",
        &[],
    );
    check(
        PackageType::JavaArchive,
        "com.fasterxml.jackson.core:jackson-databind",
        "2.13.4.2",
        &[],
    );
    let count = |kind, name: &str, v: &str| {
        let a = analysis("sha256:l", None, vec![pkg(kind, name, v)]);
        matched_ids(&a, &g).len()
    };
    assert_eq!(count(PackageType::GoModule, "stdlib", "1.20.5"), 75);
    assert_eq!(count(PackageType::GoModule, "stdlib", "1.22.0"), 68);
    assert_eq!(
        count(
            PackageType::GoModule,
            "github.com/nats-io/nats-server/v2",
            "v2.9.15"
        ),
        15
    );
    assert_eq!(
        count(
            PackageType::GoModule,
            "github.com/nats-io/nats-server/v2",
            "2.10.27"
        ),
        13
    );
    check(
        PackageType::Npm,
        "express",
        "4.16.0",
        &["GHSA-qw6h-vgh9-j6wx", "GHSA-rv95-896h-c2vc"],
    );
    check(
        PackageType::Python,
        "Django",
        "3.2.0",
        &[
            "GHSA-2gwj-7jmv-h26r",
            "GHSA-p64x-8rxx-wf6q",
            "GHSA-v6rh-hp5x-86rv",
            "GHSA-xxj9-f6rv-m3x4",
        ],
    );
    check(
        PackageType::JavaArchive,
        "org.apache.commons:commons-text",
        "1.9",
        &["GHSA-599f-7c49-w659"],
    );
}
