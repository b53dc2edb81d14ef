//! Registry ingestion: a 300-repository registry walked under the JetStream runner,
//! killed in the middle and resumed; already-analysed digests skipped; a registry that
//! answers 429 to every fifth request; garbage tag lists.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_contracts::watch::{Event, IngestProgress, IngestRequest, IngestState, TagSelection};
use vigil_contracts::{codec, Analysis, ScanRequest, Subject};
use vigil_runtime::jetstream::publish;
use vigil_runtime::{Outgoing, Stage};
use vigil_testkit::proxy::{Canned, Faults, Proxy};
use vigil_testkit::{Registry, RegistryOpts};
use vigil_watch::{Publisher, WatchConfig, WatchStage};

fn push(host: &str, repo: &str, tag: &str, salt: u64) -> String {
    vigil_testkit::tiny_images::push_tiny(host, repo, tag, &salt.to_string())
}

fn request(id: &str, registry: &str, tags: TagSelection, rate: Option<f64>) -> IngestRequest {
    IngestRequest {
        id: id.into(),
        account: "admin".into(),
        registry: registry.into(),
        prefix: String::new(),
        tags,
        max_images: None,
        rate_per_sec: rate,
        requested_at: now(),
    }
}

async fn submit(env: &Env, req: &IngestRequest) {
    publish(
        &env.js,
        &env.subjects,
        &Outgoing::record(Subject::IngestRequest, format!("ingest-{}", req.id), req).unwrap(),
    )
    .await
    .unwrap();
}

async fn wait_done(env: &Env, id: &str, timeout: Duration) -> IngestProgress {
    let store = env.store.clone();
    eventually(timeout, "the ingestion to finish", || {
        let store = store.clone();
        async move {
            store
                .get_ingest_progress(id)
                .await
                .unwrap()
                .filter(|p| p.state == IngestState::Done)
        }
    })
    .await
}

/// Push `n` repositories `ing/rNNN:latest`, every tenth also with a second tag `v2`
/// (another digest) and every seventh with `alias` pointing at the same digest as
/// `latest`; the distinct digests.
fn fill(host: &str, n: u64) -> BTreeSet<String> {
    let mut digests = BTreeSet::new();
    for i in 0..n {
        let repo = format!("ing/r{i:03}");
        digests.insert(push(host, &repo, "latest", i));
        if i % 10 == 0 {
            digests.insert(push(host, &repo, "v2", 10_000 + i));
        }
        if i % 7 == 0 {
            digests.insert(push(host, &repo, "alias", i));
        }
    }
    digests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingestion_killed_in_the_middle_resumes_and_queues_every_digest_once() {
    let env = env("ingest").await;
    let registry = Registry::start(RegistryOpts::default());
    let host = registry.host();
    let started = Instant::now();
    let digests = tokio::task::spawn_blocking({
        let host = host.clone();
        move || fill(&host, 300)
    })
    .await
    .unwrap();
    eprintln!(
        "pushed {} digests in {:?}",
        digests.len(),
        started.elapsed()
    );
    assert!(digests.len() > 300);
    let cfg = WatchConfig {
        scan_rate_per_sec: 100.0,
        ..WatchConfig::default()
    };
    let mut scans = env.reader(Subject::ScanRequest).await;
    let ack_wait = Duration::from_secs(3);
    let req = request("big", &host, TagSelection::All, Some(300.0));

    // First process: its own runtime, NATS connection and stage; killed after 100 scans.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    {
        let url = env.nats.url();
        let subjects = env.subjects.clone();
        let store = env.store.clone();
        let cfg = cfg.clone();
        rt.spawn(async move {
            let client = vigil_runtime::jetstream::connect(&url).await.unwrap();
            let publisher =
                Publisher::new(async_nats::jetstream::new(client.clone()), subjects.clone());
            let stage = Arc::new(WatchStage::new(
                store,
                Arc::new(cfg.registry_client().unwrap()),
                cfg,
                Some(publisher),
            ));
            let runner = runner_on(client, &subjects, ack_wait);
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let _ = runner.run_stage(stage, rx).await;
            drop(_tx);
        });
    }
    submit(&env, &req).await;
    let first: Vec<ScanRequest> = scans
        .until(Duration::from_secs(60), |s: &[ScanRequest]| s.len() >= 100)
        .await;
    assert!(first.len() >= 100, "{}", first.len());
    rt.shutdown_background();
    let at_kill = env.store.get_ingest_progress("big").await.unwrap().unwrap();
    eprintln!("killed with progress {at_kill:?}");
    assert_eq!(at_kill.state, IngestState::Running);

    // Second process: the message comes back after the ack wait and the walk resumes.
    let stage = env.stage(&cfg, true);
    let runner = env.runner(ack_wait);
    let running = run(&runner, stage);
    let done = wait_done(&env, "big", Duration::from_secs(120)).await;
    let all: Vec<ScanRequest> = scans.drain(Duration::from_secs(2)).await;
    let mut per_digest: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        *per_digest
            .entry(digest_of_source(&s.request.source))
            .or_default() += 1;
    }
    let twice: Vec<_> = per_digest.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "queued twice: {twice:?}");
    let queued: BTreeSet<String> = per_digest.keys().cloned().collect();
    assert_eq!(queued, digests, "every digest once");
    assert_eq!(done.repositories_done, 300);
    assert!(done.catalog_complete);
    assert_eq!(done.errors, 0, "{done:?}");
    for s in &all {
        assert!(
            s.request.source.starts_with(&format!("{host}/ing/r")),
            "{s:?}"
        );
        assert!(s.request.request_id.starts_with("ingest-big-"));
    }
    // Progress was published while it ran, and the end.
    let mut progress = env.reader(Subject::IngestProgress("big".into())).await;
    let ps: Vec<IngestProgress> = progress
        .until(Duration::from_secs(5), |p: &[IngestProgress]| {
            p.iter().any(|p| p.state == IngestState::Done)
        })
        .await;
    assert!(ps.len() >= 2, "{}", ps.len());
    assert_eq!(ps.last().unwrap().state, IngestState::Done);
    let completed = env
        .store
        .list_events(
            &vigil_store::EventFilter {
                kind: Some("ingest_completed".into()),
                ..Default::default()
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);

    // A second delivery of the finished ingestion does nothing.
    submit(
        &env,
        &IngestRequest {
            requested_at: now(),
            ..req.clone()
        },
    )
    .await;
    // (Different payload, same message id: dropped; publish it under a new id too.)
    publish(
        &env.js,
        &env.subjects,
        &Outgoing::record(Subject::IngestRequest, "ingest-big-again", &req).unwrap(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        scans
            .drain::<ScanRequest>(Duration::from_secs(1))
            .await
            .len()
            == all.len()
    );
    running.stop().await;
}

/// Already analysed digests are skipped (counted), as are digests this ingestion
/// queued before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysed_digests_are_skipped() {
    let env = env("ingskip").await;
    let registry = Registry::start(RegistryOpts::default());
    let host = registry.host();
    let digests = tokio::task::spawn_blocking({
        let host = host.clone();
        move || fill(&host, 12)
    })
    .await
    .unwrap();
    let analysed: Vec<&String> = digests.iter().take(5).collect();
    for d in &analysed {
        let mut desc = Analysis::test_descriptor();
        desc.image.digest = (*d).clone();
        env.store
            .put_analysis(&Analysis::of_packages(desc, None, Vec::new()))
            .await
            .unwrap();
    }
    let stage = env.stage(&WatchConfig::default(), false);
    let req = request("skip", &host, TagSelection::All, Some(100.0));
    let outs = stage
        .handle(&Subject::IngestRequest, &codec::encode(&req).unwrap())
        .await
        .unwrap();
    let scans: Vec<ScanRequest> = outs
        .iter()
        .filter(|o| o.subject == Subject::ScanRequest)
        .map(|o| codec::decode(&o.payload).unwrap())
        .collect();
    let queued: BTreeSet<String> = scans
        .iter()
        .map(|s| digest_of_source(&s.request.source))
        .collect();
    assert_eq!(queued.len(), scans.len());
    assert_eq!(queued.len(), digests.len() - 5);
    for d in &analysed {
        assert!(!queued.contains(*d));
    }
    let p = env
        .store
        .get_ingest_progress("skip")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.state, IngestState::Done);
    assert_eq!(p.queued as usize, digests.len() - 5);
    // 5 analysed, plus the `alias` tags (same digest as `latest`).
    assert_eq!(p.skipped, 5 + 2);
    let done: Vec<IngestProgress> = outs
        .iter()
        .filter(|o| matches!(o.subject, Subject::IngestProgress(_)))
        .map(|o| codec::decode(&o.payload).unwrap())
        .collect();
    assert_eq!(done.last().unwrap().state, IngestState::Done);
    // A prefix: only its repositories (`ing/r000` … `ing/r009`).
    let mut req = request("prefix", &host, TagSelection::Latest, Some(100.0));
    req.prefix = "ing/r00".into();
    stage
        .handle(&Subject::IngestRequest, &codec::encode(&req).unwrap())
        .await
        .unwrap();
    let p = env
        .store
        .get_ingest_progress("prefix")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.repositories_done, p.state), (10, IngestState::Done));
    let mut req = request("prefix2", &host, TagSelection::Latest, Some(100.0));
    req.prefix = "ing/".into();
    stage
        .handle(&Subject::IngestRequest, &codec::encode(&req).unwrap())
        .await
        .unwrap();
    let p = env
        .store
        .get_ingest_progress("prefix2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.repositories_done, 12);
    // Latest only, with a limit.
    let mut req = request("latest", &host, TagSelection::Latest, Some(100.0));
    req.max_images = Some(4);
    let outs = stage
        .handle(&Subject::IngestRequest, &codec::encode(&req).unwrap())
        .await
        .unwrap();
    let scans: Vec<ScanRequest> = outs
        .iter()
        .filter(|o| o.subject == Subject::ScanRequest)
        .map(|o| codec::decode(&o.payload).unwrap())
        .collect();
    assert_eq!(scans.len(), 4);
    assert!(scans.iter().all(|s| s.request.source.contains(":latest@")));
    // Finished: a second delivery does nothing.
    let again = stage
        .handle(&Subject::IngestRequest, &codec::encode(&req).unwrap())
        .await
        .unwrap();
    assert!(again.is_empty());
}

/// A registry that answers 429 (Retry-After 1) to every fifth request, at a configured
/// 20 requests/s: the ingestion completes without errors and no one-second window at
/// the proxy holds more than rate + burst requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_registry_is_walked_within_the_rate() {
    let env = env("ing429").await;
    let registry = Registry::start(RegistryOpts::default());
    let digests = tokio::task::spawn_blocking({
        let host = registry.host();
        move || fill(&host, 20)
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &registry.host(),
        Faults {
            every_nth: Some((5, 429, Some(1))),
            ..Faults::default()
        },
    );
    let cfg = WatchConfig {
        ingest_burst: 5,
        ..WatchConfig::default()
    };
    let stage = env.stage(&cfg, false);
    let req = request("limited", &proxy.host(), TagSelection::All, Some(20.0));
    let outs = tokio::time::timeout(
        Duration::from_secs(120),
        stage.handle(&Subject::IngestRequest, &codec::encode(&req).unwrap()),
    )
    .await
    .expect("bounded")
    .unwrap();
    let queued: BTreeSet<String> = outs
        .iter()
        .filter(|o| o.subject == Subject::ScanRequest)
        .map(|o| {
            digest_of_source(
                &codec::decode::<ScanRequest>(&o.payload)
                    .unwrap()
                    .request
                    .source,
            )
        })
        .collect();
    assert_eq!(queued, digests);
    let p = env
        .store
        .get_ingest_progress("limited")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.state, IngestState::Done);
    assert_eq!(p.errors, 0, "{p:?}");
    let seen = proxy.requests();
    assert!(seen.iter().any(|r| r.status == 429), "the fault was hit");
    let limit = 20 + 5;
    for (i, r) in seen.iter().enumerate() {
        let in_window = seen[i..]
            .iter()
            .take_while(|s| s.at.duration_since(r.at) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= limit,
            "{in_window} requests within a second from request {i} ({} in all)",
            seen.len()
        );
    }
}

/// A repository whose tag list is garbage, and one with a million tags, during an
/// ingestion: an error and a `list_tags_failed` event each, the walk goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tag_lists_during_ingestion_are_events() {
    let env = env("ingbad").await;
    let registry = Registry::start(RegistryOpts::default());
    let host = registry.host();
    let mut digests = BTreeSet::new();
    for (i, repo) in ["a/one", "b/garbage", "c/huge", "d/two"].iter().enumerate() {
        digests.insert(
            tokio::task::spawn_blocking({
                let host = host.clone();
                let repo = repo.to_string();
                move || push(&host, &repo, "latest", i as u64)
            })
            .await
            .unwrap(),
        );
    }
    let proxy = Proxy::start(
        &host,
        Faults {
            canned: vec![
                (
                    "/v2/b/garbage/tags/list".into(),
                    Canned::json(200, b"<html>not json</html>".to_vec()),
                ),
                (
                    "/v2/c/huge/tags/list".into(),
                    Canned::huge_tags("c/huge", 1_000_000),
                ),
            ],
            ..Faults::default()
        },
    );
    let cfg = WatchConfig {
        max_tags_per_repo: 1_000,
        ..WatchConfig::default()
    };
    let stage = env.stage(&cfg, false);
    let req = request("bad", &proxy.host(), TagSelection::All, Some(100.0));
    let outs = stage
        .handle(&Subject::IngestRequest, &codec::encode(&req).unwrap())
        .await
        .unwrap();
    let queued: Vec<ScanRequest> = outs
        .iter()
        .filter(|o| o.subject == Subject::ScanRequest)
        .map(|o| codec::decode(&o.payload).unwrap())
        .collect();
    assert_eq!(queued.len(), 2, "{queued:?}");
    let events: Vec<Event> = outs
        .iter()
        .filter(|o| o.subject == Subject::Event("list_tags_failed".into()))
        .map(|o| codec::decode(&o.payload).unwrap())
        .collect();
    let mut resources: Vec<String> = events.iter().map(|e| e.resource.clone()).collect();
    resources.sort();
    assert_eq!(
        resources,
        vec![
            format!("{}/b/garbage", proxy.host()),
            format!("{}/c/huge", proxy.host())
        ]
    );
    let p = env.store.get_ingest_progress("bad").await.unwrap().unwrap();
    assert_eq!(p.state, IngestState::Done);
    assert_eq!(p.errors, 2);
    assert_eq!(p.repositories_done, 4);
}
