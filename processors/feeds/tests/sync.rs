//! Syncing into a real embedded store: incrementality, re-matching, broken sources, HTTP.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;
use vigil_contracts::codec;
use vigil_contracts::{
    AnalyzedImage, FailureKind, FeedDelta, FeedSyncRequest, MatchedImage, PackageKey, PackageType,
    RematchImages, RequestContext, StageName, Subject,
};
use vigil_feeds::{sync, FeedError, FeedKind, FeedSource, FeedsConfig, FeedsStage};
use vigil_match::MatchStage;
use vigil_runtime::Stage;
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

#[tokio::test]
async fn incremental_sync_and_rematch() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let alpine = tmp.path().join("alpine-3.19.json");
    std::fs::copy(feeds_dir().join("alpine/v3.19/main.json"), &alpine).unwrap();
    let config = FeedsConfig {
        feeds: vec![
            FeedSource::new(
                FeedKind::Alpine,
                "alpine-3.19",
                format!("file://{}", alpine.display()),
            ),
            FeedSource::new(
                FeedKind::Debian,
                "debian",
                feeds_dir()
                    .join("debian/tracker.json")
                    .display()
                    .to_string(),
            ),
            FeedSource::new(
                FeedKind::Osv,
                "osv",
                feeds_dir().join("osv").display().to_string(),
            ),
        ],
    };
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(
        deltas.iter().map(|d| d.feed.as_str()).collect::<Vec<_>>(),
        ["alpine-3.19", "debian", "osv"]
    );
    assert_eq!(deltas[0].changed.len(), 5);
    assert!(deltas[1].changed.contains(&key("debian:12", "sope")));
    let state = st.get_feed_state("alpine-3.19").await.unwrap().unwrap();
    assert_eq!(
        deltas[0].sync_id,
        vigil_feeds::sync::delta_id(None, state.content_hash.as_deref().unwrap())
    );
    assert_eq!(state.namespaces.keys().collect::<Vec<_>>(), ["alpine:3.19"]);
    assert!(state.record_count > 80);
    assert!(!st
        .get_advisories(&key("pypi", "jinja2"))
        .await
        .unwrap()
        .is_empty());

    // Unchanged sources: no delta.
    assert!(sync(&config, &st, &quiet).await.unwrap().is_empty());

    // Match an image through the stage.
    let image = analysis(
        "sha256:img1",
        Some(distro("alpine", "3.19.1")),
        vec![
            pkg(PackageType::Apk, "busybox", "1.36.1-r15"),
            pkg(PackageType::Apk, "zlib", "1.3-r0"),
        ],
    );
    st.put_analysis(&image).await.unwrap();
    let ms = MatchStage::new(st.clone());
    let req = AnalyzedImage {
        request: Some(RequestContext::new("req-1", "dir:/x")),
        image_digest: "sha256:img1".into(),
        cause: None,
    };
    let out = ms
        .handle(
            &Subject::Stage(StageName::Match),
            &codec::encode(&req).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject, Subject::Stage(StageName::Evaluate));
    let m: MatchedImage = codec::decode(&out[0].payload).unwrap();
    assert_eq!(m.diff, None);
    let report = st.get_vuln_report("sha256:img1").await.unwrap().unwrap();
    assert_eq!(report.findings.len(), 6);
    assert_eq!(report.namespaces_with_data, ["alpine:3.19"]);
    assert_eq!(
        st.images_for_key(&key("alpine:3.19", "busybox"))
            .await
            .unwrap(),
        ["sha256:img1"]
    );

    // Change the feed: drop CVE-2023-42366 from busybox and add a zlib fix.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&alpine).unwrap()).unwrap();
    for p in doc["packages"].as_array_mut().unwrap() {
        let name = p["pkg"]["name"].as_str().unwrap().to_string();
        let sf = p["pkg"]["secfixes"].as_object_mut().unwrap();
        if name == "busybox" {
            sf.remove("1.36.1-r16");
        }
        if name == "zlib" {
            sf.insert("1.3-r3".into(), serde_json::json!(["CVE-2099-0001"]));
        }
    }
    doc["packages"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["pkg"]["name"] != "apk-tools");
    std::fs::write(&alpine, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas.len(), 1);
    assert_eq!(
        deltas[0].changed,
        [
            key("alpine:3.19", "apk-tools"),
            key("alpine:3.19", "busybox"),
            key("alpine:3.19", "zlib")
        ]
    );
    assert!(st
        .get_advisories(&key("alpine:3.19", "apk-tools"))
        .await
        .unwrap()
        .is_empty());

    // Re-match from the delta: the match stage fans the delta out into re-match
    // messages naming the affected images, then re-matches them.
    let payload = codec::encode(&deltas[0]).unwrap();
    let fan = ms.handle(&Subject::FeedsUpdated, &payload).await.unwrap();
    assert_eq!(fan.len(), 1);
    let rematch: RematchImages = codec::decode(&fan[0].payload).unwrap();
    assert_eq!(rematch.images, ["sha256:img1"]);
    let out = ms.handle(&fan[0].subject, &fan[0].payload).await.unwrap();
    assert_eq!(out.len(), 1);
    let m: MatchedImage = codec::decode(&out[0].payload).unwrap();
    assert_eq!(m.request, None);
    let diff = m.diff.unwrap();
    assert_eq!(
        diff.added
            .iter()
            .map(|f| f.vuln_id.as_str())
            .collect::<Vec<_>>(),
        ["CVE-2099-0001"]
    );
    assert_eq!(
        diff.removed
            .iter()
            .map(|f| f.vuln_id.as_str())
            .collect::<Vec<_>>(),
        ["CVE-2023-42366"]
    );
    // A redelivered re-match (its first delivery may have died before publishing)
    // publishes the same message again, under the same id.
    assert_eq!(
        ms.handle(&fan[0].subject, &fan[0].payload).await.unwrap(),
        out
    );
    // A later re-match of the image that finds nothing new publishes nothing.
    let mut other = rematch.clone();
    other.cause = "debian:another-sync".into();
    assert!(ms
        .handle(&fan[0].subject, &codec::encode(&other).unwrap())
        .await
        .unwrap()
        .is_empty());

    // Missing analysis: transient internal error.
    let req = AnalyzedImage {
        request: None,
        image_digest: "sha256:none".into(),
        cause: None,
    };
    let e = ms
        .handle(
            &Subject::Stage(StageName::Match),
            &codec::encode(&req).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Internal);
    assert!(e.is_transient());
}

/// A delta that hits many images fans out batches of them; each batch re-matches its
/// images with one read per key; an image that fails inside a batch is split off into a
/// re-match message of its own (so that its retries and dead letter are its own) while the
/// others go on; a batch whose every image fails is retried as a whole.
/// An Alpine secdb document without busybox's 1.36.1-r16 fix.
fn without_busybox_fix(secdb: &[u8]) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(secdb).unwrap();
    for p in doc["packages"].as_array_mut().unwrap() {
        if p["pkg"]["name"] == "busybox" {
            p["pkg"]["secfixes"]
                .as_object_mut()
                .unwrap()
                .remove("1.36.1-r16");
        }
    }
    serde_json::to_vec(&doc).unwrap()
}

/// Defect: a re-match's output was identified by its diff alone, so the same change
/// recurring (an advisory dropped, restored, dropped again) carried the id of the first
/// one and JetStream dropped it as a duplicate: the image's second `vuln_update` was lost.
#[tokio::test]
async fn a_recurring_change_is_announced_each_time() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let alpine = tmp.path().join("alpine-3.19.json");
    std::fs::copy(feeds_dir().join("alpine/v3.19/main.json"), &alpine).unwrap();
    let full = std::fs::read(&alpine).unwrap();
    let dropped = without_busybox_fix(&full);
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Alpine,
            "alpine-3.19",
            format!("file://{}", alpine.display()),
        )],
    };
    sync(&config, &st, &quiet).await.unwrap();
    let ms = MatchStage::new(st.clone());
    let d = "sha256:c1";
    st.put_analysis(&analysis(
        d,
        Some(distro("alpine", "3.19.1")),
        vec![pkg(PackageType::Apk, "busybox", "1.36.1-r15")],
    ))
    .await
    .unwrap();
    ms.match_image(d).await.unwrap();
    let mut announced = Vec::new();
    for content in [&dropped, &full, &dropped] {
        std::fs::write(&alpine, content).unwrap();
        let deltas = sync(&config, &st, &quiet).await.unwrap();
        let fan = ms
            .handle(&Subject::FeedsUpdated, &codec::encode(&deltas[0]).unwrap())
            .await
            .unwrap();
        let mut outs = Vec::new();
        for o in &fan {
            outs.extend(ms.handle(&o.subject, &o.payload).await.unwrap());
        }
        assert_eq!(outs.len(), 1, "one re-match output per change");
        announced.push(outs.remove(0).msg_id);
    }
    assert_ne!(
        announced[0], announced[2],
        "the same change a second time is a new message"
    );
}

#[tokio::test]
async fn rematch_batches_split_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let alpine = tmp.path().join("alpine-3.19.json");
    std::fs::copy(feeds_dir().join("alpine/v3.19/main.json"), &alpine).unwrap();
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Alpine,
            "alpine-3.19",
            format!("file://{}", alpine.display()),
        )],
    };
    sync(&config, &st, &quiet).await.unwrap();
    let ms = MatchStage::new(st.clone()).with_rematch_batch(2);
    let images: Vec<String> = (1..=5).map(|i| format!("sha256:b{i}")).collect();
    for d in &images {
        if d == "sha256:b3" {
            // Indexed, but its analysis is gone: its re-match fails.
            st.index_image_keys(d, &[key("alpine:3.19", "busybox")])
                .await
                .unwrap();
            continue;
        }
        let a = analysis(
            d,
            Some(distro("alpine", "3.19.1")),
            vec![pkg(PackageType::Apk, "busybox", "1.36.1-r15")],
        );
        st.put_analysis(&a).await.unwrap();
        ms.match_image(d).await.unwrap();
    }

    // The feed drops one busybox vulnerability.
    std::fs::write(
        &alpine,
        without_busybox_fix(&std::fs::read(&alpine).unwrap()),
    )
    .unwrap();
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas.len(), 1);
    let fan = ms
        .handle(&Subject::FeedsUpdated, &codec::encode(&deltas[0]).unwrap())
        .await
        .unwrap();
    let batches: Vec<RematchImages> = fan
        .iter()
        .map(|o| codec::decode(&o.payload).unwrap())
        .collect();
    assert_eq!(
        batches.iter().map(|b| b.images.clone()).collect::<Vec<_>>(),
        [
            vec![images[0].clone(), images[1].clone()],
            vec![images[2].clone(), images[3].clone()],
            vec![images[4].clone()],
        ]
    );
    let ids: BTreeSet<&str> = fan.iter().map(|o| o.msg_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one id per batch");

    let mut evaluated = BTreeSet::new();
    let mut split_off = Vec::new();
    for o in &fan {
        let out = ms.handle(&o.subject, &o.payload).await.unwrap();
        assert_eq!(
            ms.handle(&o.subject, &o.payload).await.unwrap(),
            out,
            "a redelivered batch publishes the same messages"
        );
        for m in out {
            match m.subject {
                Subject::Stage(StageName::Evaluate) => {
                    let mi: MatchedImage = codec::decode(&m.payload).unwrap();
                    let diff = mi.diff.unwrap();
                    assert_eq!(diff.removed.len(), 1, "{}", mi.image_digest);
                    evaluated.insert(mi.image_digest);
                }
                Subject::Stage(StageName::Match) => split_off.push(m),
                other => panic!("unexpected output on {other:?}"),
            }
        }
    }
    assert_eq!(
        evaluated,
        ["sha256:b1", "sha256:b2", "sha256:b4", "sha256:b5"]
            .map(String::from)
            .into()
    );
    assert_eq!(split_off.len(), 1);
    let single: AnalyzedImage = codec::decode(&split_off[0].payload).unwrap();
    assert_eq!(single.image_digest, "sha256:b3");
    assert_eq!(single.cause.as_deref(), Some(batches[1].cause.as_str()));
    let e = ms
        .handle(&split_off[0].subject, &split_off[0].payload)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Internal);

    // A batch of failing images only: the message itself fails (and is retried).
    let only = RematchImages {
        cause: batches[1].cause.clone(),
        images: vec!["sha256:b3".into(), "sha256:b6".into()],
    };
    let e = ms
        .handle(
            &Subject::Stage(StageName::Match),
            &codec::encode(&only).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Internal);
}

#[tokio::test]
async fn feeds_stage_publishes_deltas() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Debian,
            "debian",
            feeds_dir()
                .join("debian/tracker.json")
                .display()
                .to_string(),
        )],
    };
    let stage = FeedsStage::new(config, st.clone());
    let req = codec::encode(&FeedSyncRequest::default()).unwrap();
    let out = stage.handle(&Subject::FeedsSync, &req).await.unwrap();
    let subjects: Vec<_> = out.iter().map(|o| o.subject.clone()).collect();
    assert_eq!(
        subjects,
        [
            Subject::Event("feed_sync_started".into()),
            Subject::Event("feed_sync_completed".into()),
            Subject::FeedsUpdated
        ]
    );
    let d: FeedDelta = codec::decode(&out[2].payload).unwrap();
    assert_eq!(d.feed, "debian");
    assert!(out[2].msg_id.contains(&d.sync_id));
    let done: vigil_contracts::watch::Event = codec::decode(&out[1].payload).unwrap();
    assert_eq!(done.resource, "debian");
    assert!(done.message.contains("1 feeds changed"), "{}", done.message);
    // Unchanged the second time: the events, no delta.
    let again = stage.handle(&Subject::FeedsSync, &req).await.unwrap();
    assert!(again.iter().all(|o| matches!(o.subject, Subject::Event(_))));
    // Events are stored as well (two syncs: four events).
    let stored = st
        .list_events(&vigil_store::EventFilter::default(), i64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        0,
        "events older than the default window are not listed"
    );
    let stored = st
        .list_events(
            &vigil_store::EventFilter {
                since: Some(0),
                ..Default::default()
            },
            vigil_runtime::now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 4, "{stored:?}");
    let bad = codec::encode(&FeedSyncRequest {
        feeds: vec!["nope".into()],
    })
    .unwrap();
    let e = stage.handle(&Subject::FeedsSync, &bad).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::InvalidRequest);
}

/// Defect: a delta's id was the hash of the feed content alone, so a feed that went back
/// to content it had before (an advisory withdrawn, then restored) published a delta
/// with the id of the earlier one, which JetStream dropped as a duplicate within its
/// 20-minute window: the affected images were never re-matched.
#[tokio::test]
async fn content_that_returns_gets_a_new_delta_id() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let full = std::fs::read_to_string(feeds_dir().join("debian/tracker.json")).unwrap();
    let mut other: serde_json::Value = serde_json::from_str(&full).unwrap();
    other.as_object_mut().unwrap().remove("sope");
    let path = tmp.path().join("tracker.json");
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Debian,
            "debian",
            path.display().to_string(),
        )],
    };
    let mut ids = Vec::new();
    for content in [full.clone(), other.to_string(), full] {
        std::fs::write(&path, content).unwrap();
        let deltas = sync(&config, &st, &quiet).await.unwrap();
        assert_eq!(deltas.len(), 1);
        ids.push(deltas[0].sync_id.clone());
    }
    assert_ne!(ids[0], ids[2], "A → B → A: the second A is a new change");
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
}

#[tokio::test]
async fn failed_feed_sync_is_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Debian,
            "debian",
            tmp.path().join("missing.json").display().to_string(),
        )],
    };
    let stage = FeedsStage::new(config, st.clone());
    let req = codec::encode(&FeedSyncRequest::default()).unwrap();
    stage.handle(&Subject::FeedsSync, &req).await.unwrap_err();
    let events = st
        .list_events(
            &vigil_store::EventFilter {
                since: Some(0),
                level: Some(vigil_contracts::watch::EventLevel::Error),
                ..Default::default()
            },
            vigil_runtime::now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "feed_sync_failed");
    assert!(
        events[0].message.contains("missing.json"),
        "{}",
        events[0].message
    );
}

#[tokio::test]
async fn malformed_osv_file_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let dir = tmp.path().join("osv");
    std::fs::create_dir_all(dir.join("PyPI")).unwrap();
    for f in ["GHSA-x84v-xcm2-53pg.json", "GHSA-462w-v97r-4m45.json"] {
        std::fs::copy(
            feeds_dir().join("osv/PyPI").join(f),
            dir.join("PyPI").join(f),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("PyPI/broken.json"),
        b"{\"id\": \"GHSA-bad\", \"affected\": [",
    )
    .unwrap();
    std::fs::write(
        dir.join("PyPI/no-affected.json"),
        b"{\"id\": \"GHSA-none\"}",
    )
    .unwrap();
    std::fs::write(
        dir.join("PyPI/withdrawn.json"),
        br#"{"id": "GHSA-gone", "withdrawn": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}"#,
    )
    .unwrap();
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Osv,
            "osv",
            dir.display().to_string(),
        )],
    };
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(
        deltas[0].changed,
        [key("pypi", "jinja2"), key("pypi", "requests")]
    );
    // The withdrawn record is stored, flagged, for the matcher to ignore.
    let req = st.get_advisories(&key("pypi", "requests")).await.unwrap();
    assert_eq!(
        req.iter()
            .map(|a| (a.id.as_str(), a.withdrawn))
            .collect::<Vec<_>>(),
        [("GHSA-gone", true), ("GHSA-x84v-xcm2-53pg", false)]
    );
}

fn zip_of(dir: &std::path::Path) -> Vec<u8> {
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
        w.start_file(p.file_name().unwrap().to_string_lossy(), opts)
            .unwrap();
        w.write_all(&std::fs::read(&p).unwrap()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn truncated_zip_is_an_error_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let zip_path = tmp.path().join("PyPI.zip");
    let full = zip_of(&feeds_dir().join("osv/PyPI"));
    std::fs::write(&zip_path, &full).unwrap();
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Osv,
            "osv-pypi",
            zip_path.display().to_string(),
        )],
    };
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert!(deltas[0].changed.contains(&key("pypi", "django")));
    let before = st.get_advisories(&key("pypi", "django")).await.unwrap();
    assert!(before.len() >= 4);
    let state_before = st.get_feed_state("osv-pypi").await.unwrap().unwrap();

    std::fs::write(&zip_path, &full[..full.len() / 2]).unwrap();
    let err = sync(&config, &st, &quiet).await.unwrap_err();
    assert!(matches!(err, FeedError::Zip { .. }), "{err}");
    assert!(err.to_string().contains("bad zip archive"), "{err}");
    assert_eq!(
        st.get_advisories(&key("pypi", "django")).await.unwrap(),
        before
    );
    let state_after = st.get_feed_state("osv-pypi").await.unwrap().unwrap();
    assert_eq!(state_after.content_hash, state_before.content_hash);
}

#[tokio::test]
async fn http_conditional_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = std::fs::read(feeds_dir().join("debian/tracker.json")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            seen2.lock().unwrap().push(head.clone());
            let resp = if head.contains("if-none-match: \"v1\"") {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_vec()
            } else {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nLast-Modified: Wed, 01 Jan 2025 00:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            };
            sock.write_all(&resp).await.unwrap();
            sock.shutdown().await.ok();
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let st = store(&tmp);
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Debian,
            "debian",
            format!("http://{addr}/tracker/data/json"),
        )],
    };
    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert_eq!(deltas.len(), 1);
    let state = st.get_feed_state("debian").await.unwrap().unwrap();
    assert_eq!(state.etag.as_deref(), Some("\"v1\""));
    assert_eq!(
        state.last_modified.as_deref(),
        Some("Wed, 01 Jan 2025 00:00:00 GMT")
    );
    assert!(!st
        .get_advisories(&key("debian:12", "sope"))
        .await
        .unwrap()
        .is_empty());

    let deltas = sync(&config, &st, &quiet).await.unwrap();
    assert!(deltas.is_empty());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].contains("if-none-match"));
    assert!(seen[1].contains("if-none-match: \"v1\""), "{}", seen[1]);
    assert!(seen[1].contains("if-modified-since: wed, 01 jan 2025"));
}
