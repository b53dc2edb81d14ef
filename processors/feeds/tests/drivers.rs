//! The new drivers against the real fixture records: OSV per ecosystem (directory, zip,
//! HTTP with ETag), NVD (files and the paged, incremental API over a local HTTP
//! server), CVSS scoring against NVD's published scores, export/import, withdrawn.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::http::{serve, Resp};
use common::*;
use serde_json::{json, Value};
use vigil_contracts::{Advisory, PackageKey};
use vigil_feeds::sync::feed_keys;
use vigil_feeds::{sync, FeedKind, FeedSource, FeedsConfig};
use vigil_store::Store;

fn store(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open_embedded(&dir.path().join(name)).unwrap()
}

fn quiet(_: &str) {}

fn key(ns: &str, p: &str) -> PackageKey {
    PackageKey {
        namespace: ns.into(),
        package: p.into(),
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn nvd_files() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(feeds_dir().join("nvd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn zip_dir(dir: &Path, prefix: &str) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        w.start_file(
            format!("{prefix}{}", p.file_name().unwrap().to_string_lossy()),
            opts,
        )
        .unwrap();
        w.write_all(&std::fs::read(&p).unwrap()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn one(advs: &[Advisory], id: &str) -> Advisory {
    advs.iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("{id} not in {advs:?}"))
        .clone()
}

#[tokio::test]
async fn osv_every_fixture_ecosystem() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp, "s.redb");
    let mut feeds = Vec::new();
    for eco in ["PyPI", "npm", "Maven", "Go", "Ubuntu", "AlmaLinux"] {
        feeds.push(FeedSource::new(
            FeedKind::Osv,
            format!("osv-{eco}"),
            path_str(&feeds_dir().join("osv").join(eco)),
        ));
    }
    let deltas = sync(&FeedsConfig { feeds }, &st, &quiet).await.unwrap();
    assert_eq!(deltas.len(), 6);
    let mut namespaces = BTreeMap::new();
    for s in st.list_feed_states().await.unwrap() {
        for (ns, n) in s.namespaces {
            *namespaces.entry(ns).or_insert(0u64) += n;
        }
    }
    assert_eq!(
        namespaces.keys().collect::<Vec<_>>(),
        [
            "almalinux:9",
            "go",
            "maven",
            "npm",
            "pypi",
            "ubuntu:22.04",
            "ubuntu:24.04"
        ]
    );
    // GHSA: severity word, CVSS computed from the vector, CWE, dates, aliases.
    let req = st.get_advisories(&key("pypi", "requests")).await.unwrap();
    let a = one(&req, "GHSA-x84v-xcm2-53pg");
    assert_eq!(a.aliases, ["CVE-2018-18074"]);
    assert_eq!(a.cwes, ["CWE-522"]);
    assert_eq!(a.severity, vigil_contracts::Severity::High);
    assert_eq!(a.cvss.len(), 1);
    assert_eq!(a.cvss[0].source, "ghsa");
    assert_eq!(a.cvss[0].base_score, 7.5);
    assert_eq!(a.cvss[0].exploitability_score, Some(3.9));
    assert_eq!(a.cvss[0].impact_score, Some(3.6));
    assert!(a.published.is_some() && a.modified.is_some());
    assert!(!a.withdrawn);
    // Go: module path kept exactly, v1 path separate.
    let nats = st
        .get_advisories(&key("go", "github.com/nats-io/nats-server/v2"))
        .await
        .unwrap();
    assert!(nats.iter().any(|a| a.id == "GO-2023-2133"));
    // Distro OSV.
    let alma = st
        .get_advisories(&key("almalinux:9", "openssl"))
        .await
        .unwrap();
    let a = one(&alma, "ALSA-2022:7288");
    assert_eq!(a.ranges[0].fixed.as_deref(), Some("1:3.0.1-43.el9_0"));
    let ubuntu = st
        .get_advisories(&key("ubuntu:22.04", "glibc"))
        .await
        .unwrap();
    let u = one(&ubuntu, "UBUNTU-CVE-2023-4911");
    assert_eq!(u.cvss[0].base_score, 7.8);
    assert_eq!(u.severity, vigil_contracts::Severity::High);
    assert!(!st
        .get_advisories(&key("ubuntu:24.04", "glibc"))
        .await
        .unwrap()
        .is_empty());
    // Exact names: lodash-es is its own key.
    let lodash = st.get_advisories(&key("npm", "lodash")).await.unwrap();
    let lodash_es = st.get_advisories(&key("npm", "lodash-es")).await.unwrap();
    assert!(lodash.iter().any(|a| a.id == "GHSA-p6mc-m468-83gw"));
    assert!(lodash_es.iter().all(|a| a.package == "lodash-es"));
}

#[test]
fn osv_namespaces() {
    use vigil_feeds::drivers::osv::osv_namespace;
    let cases = [
        ("PyPI", Some("pypi")),
        ("npm", Some("npm")),
        ("Maven", Some("maven")),
        ("Go", Some("go")),
        ("crates.io", Some("crates.io")),
        ("RubyGems", Some("rubygems")),
        ("NuGet", Some("nuget")),
        ("Packagist", Some("packagist")),
        ("Hex", Some("hex")),
        ("Pub", Some("pub")),
        ("Debian:12", Some("debian:12")),
        ("Debian:11", Some("debian:11")),
        ("Ubuntu:22.04:LTS", Some("ubuntu:22.04")),
        ("Ubuntu:Pro:18.04:LTS", Some("ubuntu:18.04")),
        ("Alpine:v3.19", Some("alpine:3.19")),
        ("AlmaLinux:8", Some("almalinux:8")),
        ("Rocky Linux:9", Some("rocky:9")),
        ("Red Hat:enterprise_linux:9::appstream", Some("rhel:9")),
        ("SUSE:Linux Enterprise Server 15 SP5", Some("sles:15")),
        ("openSUSE:Leap 15.5", Some("opensuse-leap:15")),
        ("openSUSE:Tumbleweed", Some("opensuse-tumbleweed")),
        ("Wolfi", Some("wolfi")),
        ("Chainguard", Some("chainguard")),
        ("Debian", None),
        ("NoSuchEcosystem", None),
    ];
    for (eco, want) in cases {
        assert_eq!(osv_namespace(eco).as_deref(), want, "{eco}");
    }
}

#[tokio::test]
async fn osv_zip_equals_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_store = store(&tmp, "dir.redb");
    let zip_store = store(&tmp, "zip.redb");
    let zip_path = tmp.path().join("all.zip");
    std::fs::write(&zip_path, zip_dir(&feeds_dir().join("osv/Maven"), "")).unwrap();
    let d = sync(
        &FeedsConfig {
            feeds: vec![FeedSource::new(
                FeedKind::Osv,
                "osv-maven",
                path_str(&feeds_dir().join("osv/Maven")),
            )],
        },
        &dir_store,
        &quiet,
    )
    .await
    .unwrap();
    let z = sync(
        &FeedsConfig {
            feeds: vec![FeedSource::new(
                FeedKind::Osv,
                "osv-maven",
                format!("file://{}", zip_path.display()),
            )],
        },
        &zip_store,
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(d[0].changed, z[0].changed);
    assert!(z[0]
        .changed
        .contains(&key("maven", "org.apache.logging.log4j:log4j-core")));
    for k in &z[0].changed {
        assert_eq!(
            dir_store.get_advisories(k).await.unwrap(),
            zip_store.get_advisories(k).await.unwrap()
        );
    }
}

#[tokio::test]
async fn osv_zip_over_http_with_etag() {
    let body = Arc::new(zip_dir(&feeds_dir().join("osv/PyPI"), ""));
    let b = body.clone();
    let (base, log) = serve(move |r| {
        if r.path() != "/PyPI/all.zip" {
            return Resp::status(404);
        }
        if r.header("if-none-match") == Some("\"pypi-1\"") {
            return Resp::status(304).header("ETag", "\"pypi-1\"");
        }
        Resp::ok(b.to_vec()).header("ETag", "\"pypi-1\"")
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp, "s.redb");
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Osv,
            "osv-pypi",
            format!("{base}/PyPI/all.zip"),
        )],
    };
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert!(deltas[0].changed.contains(&key("pypi", "jinja2")));
    let again = sync(&config, &st, &quiet).await.unwrap();
    assert!(again.is_empty());
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].header("if-none-match"), None);
    assert_eq!(log[1].header("if-none-match"), Some("\"pypi-1\""));
}

/// Every CVSS v3.x score NVD published in the fixtures equals the one computed from
/// its vector (base, exploitability, impact).
#[test]
fn cvss_scores_match_nvd() {
    let mut checked = 0;
    for (name, bytes) in nvd_files() {
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        for k in ["cvssMetricV31", "cvssMetricV30"] {
            for m in v["metrics"][k].as_array().into_iter().flatten() {
                let vector = m["cvssData"]["vectorString"].as_str().unwrap();
                let c = vigil_feeds::cvss::score_vector("nvd", vector).unwrap();
                assert_eq!(
                    c.base_score,
                    m["cvssData"]["baseScore"].as_f64().unwrap(),
                    "{name} {vector}"
                );
                assert_eq!(c.exploitability_score, m["exploitabilityScore"].as_f64());
                assert_eq!(c.impact_score, m["impactScore"].as_f64(), "{name} {vector}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 11, "{checked}");
}

#[tokio::test]
async fn nvd_from_directory_and_lookup() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp, "s.redb");
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Nvd,
            "nvd",
            path_str(&feeds_dir().join("nvd")),
        )],
    };
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas[0].changed.len(), 11);
    let state = st.get_feed_state("nvd").await.unwrap().unwrap();
    assert_eq!(state.record_count, 11);
    assert_eq!(state.namespaces.get("nvd"), Some(&11));
    // EXPECTED.md's NVD table: primary v3.x score and CWE.
    let expected = [
        ("CVE-2018-18074", 7.5, "CWE-522"),
        ("CVE-2019-10906", 8.6, "NVD-CWE-noinfo"),
        ("CVE-2019-11324", 7.5, "CWE-295"),
        ("CVE-2020-14343", 9.8, "CWE-20"),
        ("CVE-2020-1747", 9.8, "CWE-20"),
        ("CVE-2020-8203", 7.4, "CWE-1321"),
        ("CVE-2021-44228", 10.0, "CWE-917"),
        ("CVE-2021-44906", 9.8, "CWE-1321"),
        ("CVE-2022-24999", 7.5, "CWE-1321"),
        ("CVE-2022-42889", 9.8, "CWE-94"),
        ("CVE-2023-32681", 6.1, "NVD-CWE-noinfo"),
    ];
    for (cve, score, cwe) in expected {
        let rec = vigil_feeds::nvd_lookup(&st, cve).await.unwrap().unwrap();
        assert_eq!(rec.cvss[0].source, "nvd", "{cve}");
        assert!(rec.cvss[0].version.starts_with('3'), "{cve}");
        assert_eq!(rec.cvss[0].base_score, score, "{cve}");
        assert!(rec.cwes.iter().any(|c| c == cwe), "{cve} {:?}", rec.cwes);
        assert!(rec.published.is_some() && rec.description.is_some());
    }
    assert!(vigil_feeds::nvd_lookup(&st, "CVE-1999-0001")
        .await
        .unwrap()
        .is_none());

    // Enrich a GHSA advisory from the OSV fixtures.
    let ghsa: Vec<Advisory> = vigil_feeds::drivers::osv::parse_document(
        "osv",
        "x",
        &std::fs::read(feeds_dir().join("osv/Maven/GHSA-jfh8-c2jp-5v3q.json")).unwrap(),
    )
    .unwrap();
    let mut a = ghsa[0].clone();
    let own = a.cvss.len();
    let cves = vigil_feeds::enrich::cve_ids(&a)
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(cves, ["CVE-2021-44228"]);
    let rec = vigil_feeds::nvd_lookup(&st, &cves[0])
        .await
        .unwrap()
        .unwrap();
    vigil_feeds::enrich(&mut a, &rec);
    assert!(a.cvss.len() > own);
    assert!(a
        .cvss
        .iter()
        .any(|c| c.source == "nvd" && c.base_score == 10.0));
    assert!(a.cwes.iter().any(|c| c == "CWE-917"));
}

/// The NVD API over a local HTTP server: 11 fixture CVEs in pages of 4 (3 pages), the
/// API key header, then an incremental sync asking with lastModStartDate.
#[tokio::test]
async fn nvd_api_paging_and_incremental() {
    let cves: Vec<Value> = nvd_files()
        .into_iter()
        .map(|(_, b)| serde_json::from_slice(&b).unwrap())
        .collect();
    let cves = Arc::new(cves);
    let second_round = Arc::new(AtomicUsize::new(0));
    let (c, sr) = (cves.clone(), second_round.clone());
    let (base, log) = serve(move |r| {
        if r.path() != "/rest/json/cves/2.0" {
            return Resp::status(404);
        }
        let start: usize = r.query("startIndex").unwrap().parse().unwrap();
        let per: usize = r.query("resultsPerPage").unwrap().parse().unwrap();
        let items: Vec<Value> = if r.query("lastModStartDate").is_some() {
            sr.fetch_add(1, Ordering::SeqCst);
            // One CVE changed since the last sync.
            let mut changed = c[6].clone();
            changed["lastModified"] = json!("2026-11-01T00:00:00.000");
            changed["descriptions"][0]["value"] = json!("changed description");
            vec![changed]
        } else {
            c.to_vec()
        };
        let page: Vec<Value> = items
            .iter()
            .skip(start)
            .take(per)
            .map(|cve| json!({"cve": cve}))
            .collect();
        let body = json!({
            "resultsPerPage": page.len(),
            "startIndex": start,
            "totalResults": items.len(),
            "format": "NVD_CVE",
            "version": "2.0",
            "timestamp": "2026-11-27T00:00:00.000",
            "vulnerabilities": page,
        });
        Resp::ok(serde_json::to_vec(&body).unwrap())
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp, "s.redb");
    let mut src = FeedSource::new(FeedKind::Nvd, "nvd", format!("{base}/rest/json/cves/2.0"));
    src.api_key = Some("test-key".into());
    src.page_delay_ms = Some(0);
    src.page_size = Some(4);
    let config = FeedsConfig { feeds: vec![src] };
    let messages = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let m2 = messages.clone();
    let progress = move |m: &str| m2.lock().unwrap().push(m.to_string());
    let deltas = sync(&config, &st, &progress).await.unwrap();
    assert_eq!(deltas[0].changed.len(), 11);
    {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 3, "{log:?}");
        let starts: Vec<_> = log.iter().map(|r| r.query("startIndex").unwrap()).collect();
        assert_eq!(starts, ["0", "4", "8"]);
        assert!(log.iter().all(|r| r.header("apikey") == Some("test-key")));
        assert!(log.iter().all(|r| r.query("lastModStartDate").is_none()));
    }
    assert!(messages
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.contains("11/11 records")));
    let state = st.get_feed_state("nvd").await.unwrap().unwrap();
    let since = state.last_modified.clone().unwrap();
    assert!(since.ends_with("+00:00"), "{since}");

    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(second_round.load(Ordering::SeqCst), 1);
    let changed_id = cves[6]["id"].as_str().unwrap();
    assert_eq!(deltas[0].changed, [key("nvd", changed_id)]);
    {
        let log = log.lock().unwrap();
        let last = log.last().unwrap();
        let asked = last.query("lastModStartDate").unwrap();
        assert_eq!(asked, since.replace('+', "%2B").replace(':', "%3A"));
        assert!(last.query("lastModEndDate").is_some());
    }
    let rec = vigil_feeds::nvd_lookup(&st, changed_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.description.as_deref(), Some("changed description"));
    // The incremental sync removed nothing.
    assert_eq!(feed_keys(&st, "nvd").await.unwrap().len(), 11);
    assert_eq!(
        st.get_feed_state("nvd")
            .await
            .unwrap()
            .unwrap()
            .record_count,
        11
    );
}

fn all_fixture_feeds() -> FeedsConfig {
    let f = feeds_dir();
    let mut feeds = Vec::new();
    for v in ["v3.18", "v3.19", "v3.20"] {
        feeds.push(FeedSource::new(
            FeedKind::Alpine,
            format!("alpine-{v}"),
            path_str(&f.join("alpine").join(v).join("main.json")),
        ));
    }
    feeds.push(FeedSource::new(
        FeedKind::Debian,
        "debian",
        path_str(&f.join("debian/tracker.json")),
    ));
    feeds.push(FeedSource::new(
        FeedKind::Osv,
        "osv",
        path_str(&f.join("osv")),
    ));
    feeds.push(FeedSource::new(
        FeedKind::Nvd,
        "nvd",
        path_str(&f.join("nvd")),
    ));
    FeedsConfig { feeds }
}

#[tokio::test]
async fn export_import_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = store(&tmp, "src.redb");
    sync(&all_fixture_feeds(), &src, &quiet).await.unwrap();
    let mut file = Vec::new();
    let exported = vigil_feeds::export(&src, &mut file).await.unwrap();
    assert_eq!(exported.feeds, 6);
    assert!(exported.advisories > 500, "{exported:?}");

    // A truncated file is refused and writes nothing.
    let dst = store(&tmp, "dst.redb");
    let err = vigil_feeds::import(&dst, &file[..file.len() / 2])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("truncated") || err.to_string().contains("damaged"),
        "{err}"
    );
    assert!(dst.list_feed_states().await.unwrap().is_empty());

    let imported = vigil_feeds::import(&dst, file.as_slice()).await.unwrap();
    assert_eq!(imported.advisories, exported.advisories);
    assert_eq!(imported.deltas.len(), 6);
    let mut a_states = src.list_feed_states().await.unwrap();
    let mut b_states = dst.list_feed_states().await.unwrap();
    a_states.sort_by(|a, b| a.feed.cmp(&b.feed));
    b_states.sort_by(|a, b| a.feed.cmp(&b.feed));
    assert_eq!(a_states, b_states);
    let mut compared = 0;
    for s in &a_states {
        let ka = feed_keys(&src, &s.feed).await.unwrap();
        assert_eq!(ka, feed_keys(&dst, &s.feed).await.unwrap());
        for k in ka {
            assert_eq!(
                src.get_advisories(&k).await.unwrap(),
                dst.get_advisories(&k).await.unwrap(),
                "{k:?}"
            );
            compared += 1;
        }
    }
    assert!(compared > 100);
    // Importing the same file again changes nothing.
    let again = vigil_feeds::import(&dst, file.as_slice()).await.unwrap();
    assert!(again.deltas.is_empty());
}

#[tokio::test]
async fn withdrawn_records_are_stored_flagged() {
    // A real GHSA record with a `withdrawn` date added by this test (no withdrawn record
    // is among the fixtures).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("osv");
    std::fs::create_dir_all(&dir).unwrap();
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(feeds_dir().join("osv/PyPI/GHSA-q2q7-5pp4-w6pg.json")).unwrap(),
    )
    .unwrap();
    v["withdrawn"] = json!("2024-05-01T00:00:00Z");
    std::fs::write(dir.join("w.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    std::fs::copy(
        feeds_dir().join("osv/PyPI/GHSA-mh33-7rrq-662w.json"),
        dir.join("ok.json"),
    )
    .unwrap();
    let st = store(&tmp, "s.redb");
    sync(
        &FeedsConfig {
            feeds: vec![FeedSource::new(FeedKind::Osv, "osv", path_str(&dir))],
        },
        &st,
        &quiet,
    )
    .await
    .unwrap();
    let advs = st.get_advisories(&key("pypi", "urllib3")).await.unwrap();
    assert!(one(&advs, "GHSA-q2q7-5pp4-w6pg").withdrawn);
    assert!(!one(&advs, "GHSA-mh33-7rrq-662w").withdrawn);
}
