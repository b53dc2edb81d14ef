//! Hostile feed input against the real fixtures and a real embedded store: unknown
//! ecosystems, oversized records and sources, unparseable range versions, malformed
//! records replacing good ones, and resuming after a failed sync.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::*;
use serde_json::{json, Value};
use vigil_contracts::{Advisory, FixState, PackageKey};
use vigil_feeds::fetch::Body;
use vigil_feeds::{parse_body, sync, sync_selected, FeedError, FeedKind, FeedSource, FeedsConfig};
use vigil_store::Store;

fn store(dir: &tempfile::TempDir) -> Store {
    Store::open_embedded(&dir.path().join("store.redb")).unwrap()
}

fn quiet(_: &str) {}

fn key(ns: &str, p: &str) -> PackageKey {
    PackageKey {
        namespace: ns.into(),
        package: p.into(),
    }
}

fn one(source: FeedSource) -> FeedsConfig {
    FeedsConfig {
        feeds: vec![source],
    }
}

/// A copy of the real OSV PyPI fixtures in `tmp/osv/PyPI`; returns `tmp/osv`.
fn pypi_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("osv");
    std::fs::create_dir_all(dir.join("PyPI")).unwrap();
    for e in std::fs::read_dir(feeds_dir().join("osv/PyPI")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join("PyPI").join(p.file_name().unwrap())).unwrap();
    }
    dir
}

/// Every advisory of `feed` under every key the fixture parse yields.
async fn stored_of(st: &Store, feed: &str, keys: &[PackageKey]) -> Vec<Advisory> {
    let mut out = Vec::new();
    for k in keys {
        out.extend(
            st.get_advisories(k)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.feed == feed),
        );
    }
    out
}

/// The keys the real PyPI fixtures produce, parsed directly.
fn fixture_pypi_keys() -> Vec<PackageKey> {
    let src = FeedSource::new(FeedKind::Osv, "osv", "x");
    let mut files = Vec::new();
    for e in std::fs::read_dir(feeds_dir().join("osv/PyPI")).unwrap() {
        let p = e.unwrap().path();
        files.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&p).unwrap(),
        ));
    }
    files.sort();
    let g = parse_body(&src, &Body::Files(files)).unwrap();
    assert!(g.len() >= 5, "the PyPI fixtures name several packages");
    g.into_keys().collect()
}

#[tokio::test]
async fn unknown_ecosystem_is_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let dir = pypi_copy(tmp.path());
    // Only an unknown ecosystem.
    std::fs::write(
        dir.join("PyPI/UNKNOWN-1.json"),
        serde_json::to_vec(&json!({
            "id": "UNKNOWN-1",
            "affected": [{
                "package": {"ecosystem": "NoSuchEcosystem", "name": "foo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}]
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    // A known and an unknown ecosystem in one record: the known one is kept.
    std::fs::write(
        dir.join("PyPI/MIXED-1.json"),
        serde_json::to_vec(&json!({
            "id": "MIXED-1",
            "affected": [
                {
                    "package": {"ecosystem": "Frobnix:7", "name": "bar"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
                },
                {
                    "package": {"ecosystem": "PyPI", "name": "mixedpkg"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]
                }
            ]
        }))
        .unwrap(),
    )
    .unwrap();
    let log = Mutex::new(Vec::<String>::new());
    let progress = |m: &str| log.lock().unwrap().push(m.to_string());
    let config = one(FeedSource::new(
        FeedKind::Osv,
        "osv",
        dir.display().to_string(),
    ));
    let report = sync_selected(&config, &[], &st, &progress).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let unknown: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("unknown ecosystem"))
        .collect();
    assert_eq!(unknown.len(), 2, "{:?}", report.warnings);
    assert!(unknown.iter().any(|w| w.contains("UNKNOWN-1")
        && w.contains("NoSuchEcosystem")
        && w.starts_with("osv: warning:")));
    assert!(unknown
        .iter()
        .any(|w| w.contains("MIXED-1") && w.contains("Frobnix:7")));
    // The same warnings went through the progress callback.
    let log = log.lock().unwrap().clone();
    for w in &unknown {
        assert!(log.contains(w), "{w} not in {log:?}");
    }
    // An unknown ecosystem carries nothing vigil stores: the sync is not partial.
    assert!(!log.iter().any(|l| l.contains("partial sync")), "{log:?}");

    let mixed = st.get_advisories(&key("pypi", "mixedpkg")).await.unwrap();
    assert_eq!(
        mixed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["MIXED-1"]
    );
    // Every good fixture record is ingested.
    let keys = fixture_pypi_keys();
    for k in &keys {
        assert!(
            !st.get_advisories(k).await.unwrap().is_empty(),
            "{k:?} not stored"
        );
    }
    let changed = &report.deltas[0].changed;
    assert_eq!(changed.len(), keys.len() + 1, "{changed:?}");
    assert!(!changed
        .iter()
        .any(|k| k.package == "foo" || k.package == "bar"));
}

/// Write `record` as JSON with a `details` string of `pad` bytes, streamed (the test
/// never holds the big record in memory).
fn write_padded_record(path: &Path, mut record: Value, pad: usize) {
    record["details"] = json!("@@PAD@@");
    let text = serde_json::to_string(&record).unwrap();
    let (head, tail) = text.split_once("@@PAD@@").unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut left = pad;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.write_all(tail.as_bytes()).unwrap();
    f.flush().unwrap();
}

#[tokio::test]
async fn record_of_100_mb_is_skipped_and_keeps_stored_data() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let dir = pypi_copy(tmp.path());
    let config = one(FeedSource::new(
        FeedKind::Osv,
        "osv",
        dir.display().to_string(),
    ));
    sync(&config, &st, &quiet).await.unwrap();
    let keys = fixture_pypi_keys();
    let before = stored_of(&st, "osv", &keys).await;
    let requests_before = st.get_advisories(&key("pypi", "requests")).await.unwrap();
    assert!(requests_before
        .iter()
        .any(|a| a.id == "GHSA-x84v-xcm2-53pg"));

    // The requests record grows to over 100 MB; a new small record arrives too.
    let path = dir.join("PyPI/GHSA-x84v-xcm2-53pg.json");
    let original: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    write_padded_record(&path, original, 101 << 20);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 100 << 20);
    std::fs::write(
        dir.join("PyPI/NEW-1.json"),
        serde_json::to_vec(&json!({
            "id": "NEW-1",
            "affected": [{
                "package": {"ecosystem": "PyPI", "name": "newpkg"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]}]
            }]
        }))
        .unwrap(),
    )
    .unwrap();

    let report = sync_selected(&config, &[], &st, &quiet).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let w = report
        .warnings
        .iter()
        .find(|w| w.contains("GHSA-x84v-xcm2-53pg.json"))
        .unwrap_or_else(|| panic!("no warning for the big record: {:?}", report.warnings));
    assert!(w.contains(&size.to_string()), "{w}");
    assert!(w.contains("max_record_bytes"), "{w}");
    assert!(w.contains(&(16u64 << 20).to_string()), "{w}");
    // The rest is ingested, the skipped record keeps its last stored version.
    assert_eq!(report.deltas[0].changed, [key("pypi", "newpkg")]);
    assert_eq!(
        st.get_advisories(&key("pypi", "requests")).await.unwrap(),
        requests_before
    );
    assert_eq!(stored_of(&st, "osv", &keys).await, before);
    let state = st.get_feed_state("osv").await.unwrap().unwrap();
    assert_eq!(state.record_count, before.len() as u64 + 1);

    // Unchanged content: nothing to do, the skip is not repeated as a change.
    let report = sync_selected(&config, &[], &st, &quiet).await.unwrap();
    assert!(report.deltas.is_empty() && report.errors.is_empty());
}

#[tokio::test]
async fn zip_entry_over_the_configured_record_cap_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<PathBuf> = std::fs::read_dir(feeds_dir().join("osv/PyPI"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in &names {
        w.start_file(p.file_name().unwrap().to_string_lossy(), opts)
            .unwrap();
        w.write_all(&std::fs::read(p).unwrap()).unwrap();
    }
    // A 3 MiB record (compresses to a few KiB).
    let big = tmp.path().join("big.json");
    write_padded_record(
        &big,
        json!({
            "id": "BIG-1",
            "affected": [{
                "package": {"ecosystem": "PyPI", "name": "bigpkg"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
            }]
        }),
        3 << 20,
    );
    w.start_file("BIG-1.json", opts).unwrap();
    w.write_all(&std::fs::read(&big).unwrap()).unwrap();
    let bytes = w.finish().unwrap().into_inner();
    let zip_path = tmp.path().join("PyPI.zip");
    std::fs::write(&zip_path, &bytes).unwrap();

    let mut src = FeedSource::new(FeedKind::Osv, "osv-pypi", zip_path.display().to_string());
    src.max_record_bytes = Some(1 << 20);
    let report = sync_selected(&one(src.clone()), &[], &st, &quiet)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("BIG-1.json") && w.contains("max_record_bytes")),
        "{:?}",
        report.warnings
    );
    assert!(st
        .get_advisories(&key("pypi", "bigpkg"))
        .await
        .unwrap()
        .is_empty());
    for k in fixture_pypi_keys() {
        assert!(!st.get_advisories(&k).await.unwrap().is_empty(), "{k:?}");
    }

    // The uncompressed total is capped as well: a clear error, nothing changed.
    let before = st.get_advisories(&key("pypi", "django")).await.unwrap();
    let state_before = st.get_feed_state("osv-pypi").await.unwrap().unwrap();
    // (Changed caps are part of the content hash: the same bytes are parsed again.)
    let mut tight = src.clone();
    tight.max_total_bytes = Some(bytes.len() as u64 + 1);
    tight.max_record_bytes = Some(4 << 20);
    let err = sync(&one(tight), &st, &quiet).await.unwrap_err();
    assert!(matches!(err, FeedError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("uncompressed"), "{err}");
    assert_eq!(
        st.get_advisories(&key("pypi", "django")).await.unwrap(),
        before
    );
    assert_eq!(
        st.get_feed_state("osv-pypi").await.unwrap().unwrap(),
        state_before
    );
}

#[tokio::test]
async fn debian_tracker_over_the_total_cap_is_an_error_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let tracker = tmp.path().join("tracker.json");
    std::fs::copy(feeds_dir().join("debian/tracker.json"), &tracker).unwrap();
    // The caps come from the configuration; absent, they default.
    let config: FeedsConfig = serde_json::from_value(json!({
        "feeds": [{"kind": "debian", "name": "debian", "url": tracker.display().to_string()}]
    }))
    .unwrap();
    assert_eq!(config.feeds[0].max_total_bytes, None);
    sync(&config, &st, &quiet).await.unwrap();
    let sope = st.get_advisories(&key("debian:12", "sope")).await.unwrap();
    assert!(!sope.is_empty());
    let state_before = st.get_feed_state("debian").await.unwrap().unwrap();

    // The tracker grows past 100 MB (one package entry with a huge description);
    // the feed is configured with a 64 MiB cap.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&tracker).unwrap()).unwrap();
    doc["hugepkg"] = json!({"CVE-2099-0001": {
        "description": "@@PAD@@",
        "releases": {"bookworm": {"status": "open", "urgency": "low"}}
    }});
    let text = serde_json::to_string(&doc).unwrap();
    let (head, tail) = text.split_once("@@PAD@@").unwrap();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tracker).unwrap());
        f.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'y'; 1 << 20];
        for _ in 0..101 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(tail.as_bytes()).unwrap();
    }
    let size = std::fs::metadata(&tracker).unwrap().len();
    let config: FeedsConfig = serde_json::from_value(json!({
        "feeds": [{
            "kind": "debian", "name": "debian", "url": tracker.display().to_string(),
            "max_total_bytes": 64u64 << 20
        }]
    }))
    .unwrap();
    assert_eq!(config.feeds[0].max_total_bytes, Some(64 << 20));
    let err = sync(&config, &st, &quiet).await.unwrap_err();
    assert!(matches!(err, FeedError::TooLarge { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("debian") && msg.contains("tracker.json"),
        "{msg}"
    );
    assert!(msg.contains(&size.to_string()), "{msg}");
    assert!(msg.contains(&(64u64 << 20).to_string()), "{msg}");
    assert_eq!(
        st.get_advisories(&key("debian:12", "sope")).await.unwrap(),
        sope
    );
    assert!(st
        .get_advisories(&key("debian:12", "hugepkg"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        st.get_feed_state("debian").await.unwrap().unwrap(),
        state_before
    );
}

#[tokio::test]
async fn unparseable_range_version_is_stored_and_does_not_fail_the_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let dir = pypi_copy(tmp.path());
    std::fs::write(
        dir.join("PyPI/BADVER-1.json"),
        serde_json::to_vec(&json!({
            "id": "BADVER-1",
            "affected": [{
                "package": {"ecosystem": "PyPI", "name": "badverpkg"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version!!"}]},
                    {"type": "SEMVER", "events": [{"introduced": "¯\\_(ツ)_/¯"}, {"last_affected": ""}]}
                ]
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    let config = one(FeedSource::new(
        FeedKind::Osv,
        "osv",
        dir.display().to_string(),
    ));
    let report = sync_selected(&config, &[], &st, &quiet).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let bad = st.get_advisories(&key("pypi", "badverpkg")).await.unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].id, "BADVER-1");
    assert_eq!(bad[0].state, FixState::Fixed);
    assert_eq!(bad[0].ranges[0].introduced.as_deref(), Some("0"));
    assert_eq!(bad[0].ranges[0].fixed.as_deref(), Some("not a version!!"));
    assert_eq!(bad[0].ranges[1].introduced.as_deref(), Some("¯\\_(ツ)_/¯"));
    for k in fixture_pypi_keys() {
        assert!(!st.get_advisories(&k).await.unwrap().is_empty(), "{k:?}");
    }
    // The matcher's comparator orders the string without panicking.
    let cmp = vigil_match::version::Comparator::for_namespace("pypi");
    let _ = cmp.compare("1.0", "not a version!!");
}

#[tokio::test]
async fn malformed_record_keeps_its_last_good_version_until_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let dir = pypi_copy(tmp.path());
    let config = one(FeedSource::new(
        FeedKind::Osv,
        "osv",
        dir.display().to_string(),
    ));
    sync(&config, &st, &quiet).await.unwrap();
    let keys = fixture_pypi_keys();
    let before = stored_of(&st, "osv", &keys).await;
    let path = dir.join("PyPI/GHSA-x84v-xcm2-53pg.json");
    let good = std::fs::read(&path).unwrap();

    // The requests record turns into broken JSON, and an array document arrives with a
    // record whose affected entry has no package next to a good one.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    std::fs::write(
        dir.join("PyPI/batch.json"),
        serde_json::to_vec(&json!([
            {"id": "NOPKG-1", "affected": [{"ranges": []}]},
            {"id": "BATCH-1", "affected": [{
                "package": {"ecosystem": "PyPI", "name": "batchpkg"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
            }]}
        ]))
        .unwrap(),
    )
    .unwrap();
    let log = Mutex::new(Vec::<String>::new());
    let progress = |m: &str| log.lock().unwrap().push(m.to_string());
    let report = sync_selected(&config, &[], &st, &progress).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("GHSA-x84v-xcm2-53pg.json") && w.contains("malformed")),
        "{:?}",
        report.warnings
    );
    assert!(
        report.warnings.iter().any(|w| w.contains("NOPKG-1")),
        "{:?}",
        report.warnings
    );
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("partial sync")));
    assert_eq!(report.deltas[0].changed, [key("pypi", "batchpkg")]);
    // Nothing already stored is lost.
    assert_eq!(stored_of(&st, "osv", &keys).await, before);

    // Fixed upstream: the next sync is full again.
    std::fs::write(&path, &good).unwrap();
    std::fs::remove_file(dir.join("PyPI/batch.json")).unwrap();
    let report = sync_selected(&config, &[], &st, &quiet).await.unwrap();
    assert!(report.errors.is_empty() && report.warnings.is_empty());
    assert_eq!(report.deltas[0].changed, [key("pypi", "batchpkg")]);
    assert!(st
        .get_advisories(&key("pypi", "batchpkg"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(stored_of(&st, "osv", &keys).await, before);
}

#[tokio::test]
async fn sync_resumes_after_a_truncated_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<PathBuf> = std::fs::read_dir(feeds_dir().join("osv/Go"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in &names {
        w.start_file(p.file_name().unwrap().to_string_lossy(), opts)
            .unwrap();
        w.write_all(&std::fs::read(p).unwrap()).unwrap();
    }
    let full = w.finish().unwrap().into_inner();
    let zip_path = tmp.path().join("Go.zip");
    let src = FeedSource::new(
        FeedKind::Osv,
        "osv-go",
        format!("file://{}", zip_path.display()),
    );
    let config = one(src.clone());
    let expected = parse_body(&src, &Body::Bytes(full.clone())).unwrap();
    assert!(expected.len() > 5, "{}", expected.len());
    let expected_count: u64 = expected.values().map(|v| v.len() as u64).sum();

    // A download cut off mid-way: a clear error, nothing stored, no feed state.
    std::fs::write(&zip_path, &full[..full.len() * 2 / 3]).unwrap();
    let err = sync(&config, &st, &quiet).await.unwrap_err();
    assert!(matches!(err, FeedError::Zip { .. }), "{err}");
    assert!(err.to_string().contains("osv-go"), "{err}");
    assert!(st.get_feed_state("osv-go").await.unwrap().is_none());
    for k in expected.keys() {
        assert!(st.get_advisories(k).await.unwrap().is_empty());
    }

    // The source is repaired: the next sync ingests everything.
    std::fs::write(&zip_path, &full).unwrap();
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas.len(), 1);
    assert_eq!(
        deltas[0].changed,
        expected.keys().cloned().collect::<Vec<_>>()
    );
    for (k, advs) in &expected {
        assert_eq!(&st.get_advisories(k).await.unwrap(), advs, "{k:?}");
    }
    let state = st.get_feed_state("osv-go").await.unwrap().unwrap();
    assert_eq!(
        deltas[0].sync_id,
        vigil_feeds::sync::delta_id(None, state.content_hash.as_deref().unwrap())
    );
    assert_eq!(state.url, src.url);
    assert_eq!(state.record_count, expected_count);
    assert_eq!(state.namespaces.keys().collect::<Vec<_>>(), ["go"]);

    // Broken again after a good sync: the error leaves data and state alone, and the
    // repair (same content as stored) resumes with nothing to change.
    std::fs::write(&zip_path, &full[..100]).unwrap();
    assert!(sync(&config, &st, &quiet).await.is_err());
    assert_eq!(st.get_feed_state("osv-go").await.unwrap().unwrap(), state);
    std::fs::write(&zip_path, &full).unwrap();
    assert!(sync(&config, &st, &quiet).await.unwrap().is_empty());
    let resumed = st.get_feed_state("osv-go").await.unwrap().unwrap();
    assert_eq!(resumed.content_hash, state.content_hash);
    assert!(resumed.last_sync >= state.last_sync);
    for (k, advs) in &expected {
        assert_eq!(&st.get_advisories(k).await.unwrap(), advs, "{k:?}");
    }
}

#[tokio::test]
async fn http_body_over_the_total_cap_is_an_error() {
    use common::http::{serve, Resp};
    let body = std::fs::read(feeds_dir().join("debian/tracker.json")).unwrap();
    let b = body.clone();
    let (base, _log) = serve(move |_| Resp::ok(b.clone())).await;
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let mut src = FeedSource::new(FeedKind::Debian, "debian", format!("{base}/json"));
    src.max_total_bytes = Some(body.len() as u64 - 1);
    let err = sync(&one(src.clone()), &st, &quiet).await.unwrap_err();
    assert!(matches!(err, FeedError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("HTTP body"), "{err}");
    assert!(st.get_feed_state("debian").await.unwrap().is_none());
    src.max_total_bytes = Some(body.len() as u64);
    assert_eq!(sync(&one(src), &st, &quiet).await.unwrap().len(), 1);
}

#[tokio::test]
async fn http_body_without_length_is_cut_at_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Streams an endless body without Content-Length: the sync must stop at the cap.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n[")
                    .await;
                let chunk = vec![b' '; 64 << 10];
                while sock.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let mut src = FeedSource::new(FeedKind::Osv, "osv", format!("http://{addr}/all.json"));
    src.max_total_bytes = Some(8 << 20);
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sync(&one(src), &st, &quiet),
    )
    .await
    .expect("the sync stops at the cap")
    .unwrap_err();
    assert!(
        matches!(err, FeedError::TooLarge { limit, .. } if limit == 8 << 20),
        "{err}"
    );
    assert!(st.get_feed_state("osv").await.unwrap().is_none());
}

/// Every advisory a feed stored, by key.
async fn feed_contents(st: &Store, feed: &str) -> Vec<(PackageKey, Vec<Advisory>)> {
    let mut out = Vec::new();
    for k in vigil_feeds::sync::feed_keys(st, feed).await.unwrap() {
        let advs = st.get_advisories(&k).await.unwrap();
        out.push((k, advs));
    }
    out
}

/// Sync `doc` as the only feed of a fresh store; the report and what was stored.
async fn sync_doc(
    kind: FeedKind,
    name: &str,
    doc: &Value,
) -> (vigil_feeds::SyncReport, Vec<(PackageKey, Vec<Advisory>)>) {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let path = tmp.path().join("feed.json");
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
    let src = FeedSource::new(kind, name, path.display().to_string());
    let report = sync_selected(&one(src), &[], &st, &quiet).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let stored = feed_contents(&st, name).await;
    (report, stored)
}

#[tokio::test]
async fn malformed_debian_entries_are_sync_warnings_and_the_rest_is_stored() {
    let clean: Value =
        serde_json::from_slice(&std::fs::read(feeds_dir().join("debian/tracker.json")).unwrap())
            .unwrap();
    let (report, expected) = sync_doc(FeedKind::Debian, "debian", &clean).await;
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(!expected.is_empty());

    let mut bad = clean.clone();
    bad["brokenpkg"] = json!("not an object");
    bad["sope"]["CVE-2099-0002"] = json!({"description": "no releases"});
    bad["sope"]["CVE-2099-0003"] = json!({"releases": {"bookworm": "not an object"}});
    let (report, stored) = sync_doc(FeedKind::Debian, "debian", &bad).await;
    let w = &report.warnings;
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w.iter().all(|m| m.starts_with("debian: warning: ")),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.contains("\"brokenpkg\"")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("sope/CVE-2099-0002")), "{w:?}");
    assert!(
        w.iter().any(|m| m.contains("sope/CVE-2099-0003/bookworm")),
        "{w:?}"
    );
    assert_eq!(stored, expected, "every well-formed entry is still stored");
}

#[tokio::test]
async fn malformed_alpine_entries_are_sync_warnings_and_the_rest_is_stored() {
    let clean: Value =
        serde_json::from_slice(&std::fs::read(feeds_dir().join("alpine/v3.19/main.json")).unwrap())
            .unwrap();
    let (report, expected) = sync_doc(FeedKind::Alpine, "alpine", &clean).await;
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(!expected.is_empty());

    let mut bad = clean.clone();
    let pkgs = bad["packages"].as_array_mut().unwrap();
    pkgs.push(json!({"pkg": {"name": "nosecfixes", "secfixes": "nope"}}));
    pkgs.push(json!({"pkg": {"secfixes": {"1.0-r0": ["CVE-2099-0004"]}}}));
    // A malformed version entry inside a good package: its other versions still count.
    pkgs[0]["pkg"]["secfixes"]["9.9.9-r0"] = json!("CVE-2099-0005");
    let (report, stored) = sync_doc(FeedKind::Alpine, "alpine", &bad).await;
    let w = &report.warnings;
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w.iter().all(|m| m.starts_with("alpine: warning: ")),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.contains("\"nosecfixes\"")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("no package name")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("apk-tools 9.9.9-r0")), "{w:?}");
    assert_eq!(stored, expected, "every well-formed entry is still stored");
}

/// The fixture CVEs, as the NVD API pages them.
fn nvd_cves() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(feeds_dir().join("nvd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

/// One NVD API 2.0 page of `items` from `start` (`per` per page), claiming `total`.
fn nvd_page(items: &[Value], start: usize, per: usize, total: usize) -> Vec<u8> {
    let page: Vec<Value> = items
        .iter()
        .skip(start)
        .take(per)
        .map(|cve| json!({"cve": cve}))
        .collect();
    serde_json::to_vec(&json!({
        "resultsPerPage": page.len(), "startIndex": start, "totalResults": total,
        "format": "NVD_CVE", "version": "2.0", "timestamp": "2026-11-27T00:00:00.000",
        "vulnerabilities": page,
    }))
    .unwrap()
}

fn nvd_source(name: &str, url: String) -> FeedSource {
    let mut src = FeedSource::new(FeedKind::Nvd, name, url);
    src.page_delay_ms = Some(0);
    src.page_size = Some(4);
    src
}

/// An NVD API page over `max_page_bytes` fails the sync with a clear error whether its
/// size is declared (Content-Length) or not (an endless stream, cut at the cap); what
/// the feed stored before, and its sync state, stay as they were.
#[tokio::test]
async fn nvd_api_page_over_the_cap_is_refused_and_keeps_stored_data() {
    use common::http::{serve, Resp};
    let cves = std::sync::Arc::new(nvd_cves());
    let c = cves.clone();
    let (base, log) = serve(move |r| {
        let start: usize = r.query("startIndex").unwrap().parse().unwrap();
        let per: usize = r.query("resultsPerPage").unwrap().parse().unwrap();
        if r.query("lastModStartDate").is_some() {
            // The incremental sync: one changed CVE with a 2 MiB description.
            let mut big = c[0].clone();
            big["descriptions"][0]["value"] = json!("x".repeat(2 << 20));
            return Resp::ok(nvd_page(&[big], start, per, 1));
        }
        Resp::ok(nvd_page(&c, start, per, c.len()))
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let mut src = nvd_source("nvd", format!("{base}/rest/json/cves/2.0"));
    src.max_page_bytes = Some(1 << 20);
    let report = sync_selected(&one(src.clone()), &[], &st, &quiet)
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let before = feed_contents(&st, "nvd").await;
    assert_eq!(before.len(), cves.len());
    let state = st.get_feed_state("nvd").await.unwrap().unwrap();

    let err = sync(&one(src.clone()), &st, &quiet).await.unwrap_err();
    let asked = log.lock().unwrap().last().unwrap().target.clone();
    assert!(
        matches!(&err, FeedError::PageTooLarge { limit, size, url, .. }
            if *limit == 1 << 20 && *size > 2 << 20 && url.ends_with(&asked)),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("max_page_bytes") && msg.contains(&(1u64 << 20).to_string()),
        "{msg}"
    );
    assert_eq!(feed_contents(&st, "nvd").await, before);
    assert_eq!(st.get_feed_state("nvd").await.unwrap().unwrap(), state);

    // A page without Content-Length that never ends: reading stops at the cap.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"vulnerabilities\": [",
                    )
                    .await;
                let chunk = vec![b' '; 64 << 10];
                while sock.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let mut endless = src.clone();
    endless.url = format!("http://{addr}/rest/json/cves/2.0");
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sync(&one(endless), &st, &quiet),
    )
    .await
    .expect("the sync stops at the page cap")
    .unwrap_err();
    assert!(
        matches!(&err, FeedError::PageTooLarge { limit, size, .. }
            if *limit == 1 << 20 && *size > 1 << 20 && *size < 2 << 20),
        "{err}"
    );
    assert_eq!(feed_contents(&st, "nvd").await, before);
    assert_eq!(st.get_feed_state("nvd").await.unwrap().unwrap(), state);

    // Under a larger cap the incremental sync goes through.
    src.max_page_bytes = Some(4 << 20);
    assert_eq!(sync(&one(src), &st, &quiet).await.unwrap().len(), 1);
}

/// The record cap: refused when `totalResults` announces more, and when the pages
/// bring more than announced; a server that does not advance `startIndex` is refused
/// too. Nothing is stored by a refused sync.
#[tokio::test]
async fn nvd_api_record_cap_and_stuck_paging_are_refused() {
    use common::http::{serve, Resp};
    let cves = std::sync::Arc::new(nvd_cves());
    let c = cves.clone();
    let (base, _log) = serve(move |r| {
        let start: usize = r.query("startIndex").unwrap().parse().unwrap();
        let per: usize = r.query("resultsPerPage").unwrap().parse().unwrap();
        match r.path() {
            // Honest: 11 records.
            "/honest" => Resp::ok(nvd_page(&c, start, per, c.len())),
            // Announces one record left, returns a full page.
            "/liar" => Resp::ok(nvd_page(&c, start, per, start + 1)),
            // Always announces one more page than it has returned: endless paging.
            "/growing" => {
                let many: Vec<Value> = c.iter().cycle().take(start + per).cloned().collect();
                Resp::ok(nvd_page(&many, start, per, start + per + 1))
            }
            // Always answers the first page.
            _ => Resp::ok(nvd_page(&c, 0, per, c.len())),
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);

    let mut capped = nvd_source("nvd", format!("{base}/honest"));
    capped.max_records = Some(10);
    let err = sync(&one(capped.clone()), &st, &quiet).await.unwrap_err();
    assert!(
        matches!(
            &err,
            FeedError::TooManyRecords {
                what: "announced",
                count: 11,
                limit: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_records"), "{err}");
    assert!(st.get_feed_state("nvd").await.unwrap().is_none());
    assert!(feed_contents(&st, "nvd").await.is_empty());

    let mut liar = nvd_source("nvd", format!("{base}/liar"));
    liar.max_records = Some(3);
    let err = sync(&one(liar), &st, &quiet).await.unwrap_err();
    assert!(
        matches!(
            &err,
            FeedError::TooManyRecords {
                what: "returned",
                count: 4,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(st.get_feed_state("nvd").await.unwrap().is_none());

    let mut growing = nvd_source("nvd", format!("{base}/growing"));
    growing.max_records = Some(10);
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sync(&one(growing), &st, &quiet),
    )
    .await
    .expect("the record cap ends endless paging")
    .unwrap_err();
    assert!(
        matches!(
            &err,
            FeedError::TooManyRecords {
                what: "announced",
                limit: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(st.get_feed_state("nvd").await.unwrap().is_none());

    let stuck = nvd_source("nvd", format!("{base}/stuck"));
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sync(&one(stuck), &st, &quiet),
    )
    .await
    .expect("a server that does not advance is refused")
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("answered startIndex 0 for startIndex 4"),
        "{err}"
    );
    assert!(st.get_feed_state("nvd").await.unwrap().is_none());

    capped.max_records = Some(11);
    assert_eq!(sync(&one(capped), &st, &quiet).await.unwrap().len(), 1);
    assert_eq!(feed_contents(&st, "nvd").await.len(), cves.len());
}
