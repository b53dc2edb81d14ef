//! OSV range types (SEMVER vs. ECOSYSTEM ordering, GIT skipped) and Red Hat module
//! streams (`nodejs:18/nodejs`, purl `rpmmod=`), from records written here, through the
//! driver, a real embedded store and the matcher.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};
use vigil_contracts::{Advisory, PackageKey, PackageType, RangeKind};
use vigil_feeds::drivers::{self, osv};
use vigil_feeds::{sync, FeedKind, FeedSource, FeedsConfig};
use vigil_store::Store;

fn key(ns: &str, p: &str) -> PackageKey {
    PackageKey {
        namespace: ns.into(),
        package: p.into(),
    }
}

fn quiet(_: &str) {}

/// PEP 440 puts `2.0.0-post1` after `2.0.0` (a post-release), SemVer before it (a
/// pre-release): the range's type decides which ordering applies.
#[test]
fn semver_range_is_compared_by_semver_in_pypi() {
    let record = json!({
        "id": "GHSA-test-semv-0001",
        "affected": [
            {"package": {"ecosystem": "PyPI", "name": "semverpkg"},
             "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]},
            {"package": {"ecosystem": "PyPI", "name": "ecopkg"},
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]},
            {"package": {"ecosystem": "PyPI", "name": "gitonly"},
             "ranges": [{"type": "GIT", "repo": "https://example.com/r.git",
                         "events": [{"introduced": "0"}, {"fixed": "0123abcd"}]}]},
            {"package": {"ecosystem": "PyPI", "name": "gitlisted"},
             "ranges": [{"type": "GIT", "repo": "https://example.com/r.git",
                         "events": [{"introduced": "0"}, {"fixed": "0123abcd"}]}],
             "versions": ["1.0"]},
        ]
    });
    let advs = osv::parse_record("osv", &record).unwrap();
    let by_pkg: BTreeMap<&str, &Advisory> = advs.iter().map(|a| (a.package.as_str(), a)).collect();
    assert_eq!(
        by_pkg.keys().copied().collect::<Vec<_>>(),
        ["ecopkg", "gitlisted", "semverpkg"],
        "an entry with only GIT ranges yields nothing; with `versions`, those"
    );
    assert_eq!(by_pkg["semverpkg"].ranges[0].kind, RangeKind::Semver);
    assert_eq!(by_pkg["ecopkg"].ranges[0].kind, RangeKind::Ecosystem);
    assert!(by_pkg["gitlisted"].ranges.is_empty());

    let g = drivers::group(advs);
    let a = analysis(
        "sha256:semver",
        None,
        vec![
            pkg(PackageType::Python, "semverpkg", "2.0.0-post1"),
            pkg(PackageType::Python, "ecopkg", "2.0.0-post1"),
        ],
    );
    let found = vigil_match::match_packages(&a, |k| g.get(k).cloned().unwrap_or_default()).findings;
    let got: Vec<(String, String)> = found
        .iter()
        .map(|f| (f.package.name.clone(), f.matched.comparator.clone()))
        .collect();
    assert_eq!(got, [("semverpkg".to_string(), "semver".to_string())]);
    assert_eq!(found[0].fixed_in.as_deref(), Some("2.0.0"));
}

/// A Go SEMVER range with pre-releases: `rc.10` is after `rc.2` (numeric identifiers).
#[test]
fn go_semver_range_with_prereleases() {
    let record = json!({
        "id": "GO-2099-0001",
        "affected": [{"package": {"ecosystem": "Go", "name": "example.com/mod"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.2.0-rc.2"}, {"fixed": "1.2.0"}]}]}]
    });
    let g = drivers::group(osv::parse_record("osv", &record).unwrap());
    let ids = |v: &str| {
        matched_ids(
            &analysis(
                "sha256:go",
                None,
                vec![pkg(PackageType::GoModule, "example.com/mod", v)],
            ),
            &g,
        )
    };
    assert_eq!(ids("v1.2.0-rc.10"), set(&["GO-2099-0001"]));
    assert_eq!(ids("v1.2.0-rc.1"), set(&[]));
    assert_eq!(ids("v1.2.0"), set(&[]));
}

#[test]
fn red_hat_module_names_and_purls() {
    assert_eq!(
        osv::rpm_module("nodejs:18/nodejs", None),
        ("nodejs".to_string(), Some("nodejs:18".to_string()))
    );
    assert_eq!(
        osv::rpm_module(
            "nodejs",
            Some("pkg:rpm/redhat/nodejs@18.19.0?arch=src&rpmmod=nodejs%3A18%3A8090020231019152822%3Aa75119d5")
        ),
        ("nodejs".to_string(), Some("nodejs:18".to_string()))
    );
    assert_eq!(
        osv::rpm_module(
            "perl-DBI",
            Some("pkg:rpm/redhat/perl-DBI?rpmmod=perl-DBI:1.641:8090020230711074506:5e0d4c4e")
        ),
        ("perl-DBI".to_string(), Some("perl-DBI:1.641".to_string()))
    );
    assert_eq!(
        osv::rpm_module("openssl", Some("pkg:rpm/redhat/openssl?arch=src")),
        ("openssl".to_string(), None)
    );
    // Not a module spec: kept as it is.
    assert_eq!(osv::rpm_module("a/b", None), ("a/b".to_string(), None));
    // Only rpm ecosystems read module specs: a Maven `group:artifact` stays whole.
    let maven = osv::parse_record(
        "osv",
        &json!({"id": "GHSA-m", "affected": [{"package": {"ecosystem": "Maven",
            "name": "org.example:lib/x"}, "versions": ["1.0"]}]}),
    )
    .unwrap();
    assert_eq!(maven[0].module, None);
}

fn red_hat_record(with_stream_20: bool) -> Value {
    let eco = "Red Hat:enterprise_linux:8::appstream";
    let range = |fixed: &str| json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]);
    let mut affected = vec![
        json!({"package": {"ecosystem": eco, "name": "nodejs:18/nodejs",
            "purl": "pkg:rpm/redhat/nodejs?arch=src&rpmmod=nodejs:18:8090020231019152822:a75119d5"},
            "ranges": range("1:18.19.0-1.module+el8.9.0+20473+c4e3d824")}),
        json!({"package": {"ecosystem": eco, "name": "openssl"},
            "ranges": range("1:1.1.1k-12.el8_9")}),
    ];
    if with_stream_20 {
        // Stream 20 named only by its purl.
        affected.push(json!({"package": {"ecosystem": eco, "name": "nodejs",
            "purl": "pkg:rpm/redhat/nodejs?arch=src&rpmmod=nodejs%3A20%3A8090020231128150011%3A0d2ca5cf"},
            "ranges": range("1:20.10.0-1.module+el8.9.0+20688+e0f8f0c5")}));
    }
    json!({
        "id": "RHSA-2024:0001",
        "aliases": ["CVE-2024-11111"],
        "summary": "nodejs and openssl security update",
        "affected": affected,
    })
}

fn rpm(name: &str, version: &str, label: Option<&str>) -> vigil_contracts::Package {
    let mut p = pkg(PackageType::Rpm, name, version);
    if let Some(l) = label {
        p.metadata.insert("modularity_label".into(), l.into());
    }
    p
}

/// Ids and fixes matched for one package of a RHEL 8.9 image, against the store.
async fn rhel_findings(st: &Store, p: vigil_contracts::Package) -> Vec<String> {
    let a = analysis("sha256:rhel", Some(distro("rhel", "8.9")), vec![p]);
    let mut advs: BTreeMap<PackageKey, Vec<Advisory>> = BTreeMap::new();
    for k in vigil_match::lookup_keys(&a) {
        advs.insert(k.clone(), st.get_advisories(&k).await.unwrap());
    }
    vigil_match::match_packages(&a, |k| advs.get(k).cloned().unwrap_or_default())
        .findings
        .into_iter()
        .map(|f| format!("{} {}", f.vuln_id, f.fixed_in.unwrap_or_default()))
        .collect()
}

/// Two streams of one package under one advisory id are two stored records; each
/// matches only its stream's packages; a re-sync without one stream removes only it.
#[tokio::test]
async fn red_hat_module_streams_are_stored_apart_and_match_their_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("osv");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("RHSA-2024_0001.json");
    std::fs::write(&file, serde_json::to_vec(&red_hat_record(true)).unwrap()).unwrap();
    let st = Store::open_embedded(&tmp.path().join("s.redb")).unwrap();
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Osv,
            "redhat",
            dir.display().to_string(),
        )],
    };
    sync(&config, &st, &quiet).await.unwrap();

    let nodejs = st.get_advisories(&key("rhel:8", "nodejs")).await.unwrap();
    let modules: Vec<(&str, Option<&str>)> = nodejs
        .iter()
        .map(|a| (a.id.as_str(), a.module.as_deref()))
        .collect();
    assert_eq!(
        modules,
        [
            ("RHSA-2024:0001", Some("nodejs:18")),
            ("RHSA-2024:0001", Some("nodejs:20"))
        ]
    );
    let openssl = st.get_advisories(&key("rhel:8", "openssl")).await.unwrap();
    assert_eq!(openssl.len(), 1);
    assert_eq!(openssl[0].module, None);

    let label18 = Some("nodejs:18:8090020231019152822:a75119d5");
    let label20 = Some("nodejs:20:8090020231128150011:0d2ca5cf");
    assert_eq!(
        rhel_findings(
            &st,
            rpm("nodejs", "1:18.18.2-1.module+el8.9.0+19500+1", label18)
        )
        .await,
        ["RHSA-2024:0001 1:18.19.0-1.module+el8.9.0+20473+c4e3d824"]
    );
    assert_eq!(
        rhel_findings(
            &st,
            rpm("nodejs", "1:20.9.0-1.module+el8.9.0+19600+2", label20)
        )
        .await,
        ["RHSA-2024:0001 1:20.10.0-1.module+el8.9.0+20688+e0f8f0c5"]
    );
    // Stream 18, fixed: the stream-20 record (18.19 < 20.10) must not match it.
    assert!(rhel_findings(
        &st,
        rpm(
            "nodejs",
            "1:18.19.0-1.module+el8.9.0+20473+c4e3d824",
            label18
        )
    )
    .await
    .is_empty());
    // A nodejs without a modularity label is not built for either stream.
    assert!(rhel_findings(&st, rpm("nodejs", "1:10.24.0-1.el8", None))
        .await
        .is_empty());
    // The module-less record matches a package of a module too (as Grype does).
    assert_eq!(
        rhel_findings(&st, rpm("openssl", "1:1.1.1k-9.el8_7", Some("x:1:2:3"))).await,
        ["RHSA-2024:0001 1:1.1.1k-12.el8_9"]
    );

    // The record drops stream 20: only that stream's record goes.
    std::fs::write(&file, serde_json::to_vec(&red_hat_record(false)).unwrap()).unwrap();
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas[0].changed, [key("rhel:8", "nodejs")]);
    let nodejs = st.get_advisories(&key("rhel:8", "nodejs")).await.unwrap();
    assert_eq!(nodejs.len(), 1);
    assert_eq!(nodejs[0].module.as_deref(), Some("nodejs:18"));
    assert!(rhel_findings(
        &st,
        rpm("nodejs", "1:20.9.0-1.module+el8.9.0+19600+2", label20)
    )
    .await
    .is_empty());
}

/// A feed synced by an older vigil (its state has an older `parser_version`) is parsed
/// again on the next sync although its content did not change, so stored advisories
/// gain the range types; with the current version, unchanged content is skipped.
#[tokio::test]
async fn unchanged_content_parsed_by_an_older_vigil_is_parsed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("osv");
    std::fs::create_dir_all(&dir).unwrap();
    let record = json!({
        "id": "GO-2099-0002",
        "affected": [{"package": {"ecosystem": "Go", "name": "example.com/old"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.0"}]}]}]
    });
    std::fs::write(
        dir.join("GO-2099-0002.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let st = Store::open_embedded(&tmp.path().join("s.redb")).unwrap();
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Osv,
            "osv",
            dir.display().to_string(),
        )],
    };
    sync(&config, &st, &quiet).await.unwrap();
    let k = key("go", "example.com/old");
    let stored = st.get_advisories(&k).await.unwrap();
    assert_eq!(stored[0].ranges[0].kind, RangeKind::Semver);
    let state = st.get_feed_state("osv").await.unwrap().unwrap();
    assert_eq!(state.parser_version, vigil_feeds::sync::PARSER_VERSION);

    // What an older vigil stored: no range type, no parser version.
    let mut old = stored.clone();
    old[0].ranges[0].kind = RangeKind::Ecosystem;
    st.replace_advisories(&k, &old).await.unwrap();
    let mut old_state = state.clone();
    old_state.parser_version = 0;
    st.put_feed_state(&old_state).await.unwrap();

    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas.len(), 1, "the unchanged content was parsed again");
    assert_eq!(deltas[0].changed, std::slice::from_ref(&k));
    assert_eq!(st.get_advisories(&k).await.unwrap(), stored);
    let again = st.get_feed_state("osv").await.unwrap().unwrap();
    assert_eq!(again.parser_version, vigil_feeds::sync::PARSER_VERSION);
    assert_eq!(again.content_hash, state.content_hash);

    // Now current: unchanged content is skipped as before.
    assert!(sync(&config, &st, &quiet).await.unwrap().is_empty());
}
