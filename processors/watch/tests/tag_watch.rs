//! Tag watches end to end: a real docker-registry behind the recording proxy, the
//! scheduler and the watch stage under the JetStream runner.

mod common;
use common::*;

use std::time::Duration;

use vigil_contracts::watch::{TagUpdated, WatchPoll, WatchedTag};
use vigil_contracts::{ScanRequest, StageName, Subject};
use vigil_testkit::proxy::{Faults, Proxy};
use vigil_testkit::{Registry, RegistryOpts};
use vigil_watch::{Scheduler, WatchConfig};

fn push(host: &str, repo: &str, tag: &str, salt: u64) -> String {
    vigil_testkit::tiny_images::push_tiny(host, repo, tag, &salt.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_tag_is_polled_and_its_moves_are_scanned() {
    let env = env("tagw").await;
    let registry = Registry::start(RegistryOpts::default());
    // A registry behind bearer-token auth: the first resolve fetches a token, the
    // polls after it reuse it.
    let proxy = Proxy::start(
        &registry.host(),
        Faults {
            require_bearer: Some("tok-123".into()),
            ..Faults::default()
        },
    );
    let digest_a = push(&registry.host(), "r/app", "1", 1);
    let key = format!("{}/r/app:1", proxy.host());
    env.store
        .put_watched_tag(&WatchedTag {
            account: "admin".into(),
            tag: key.clone(),
            interval_secs: Some(1),
            active: true,
            from_repo: None,
            digest: None,
            last_checked_at: None,
            last_error: None,
            failures: 0,
            created_at: now(),
        })
        .await
        .unwrap();
    let cfg = WatchConfig {
        scheduler_tick_ms: 100,
        ..WatchConfig::default()
    };
    let mut scans = env.reader(Subject::ScanRequest).await;
    let mut notify = env.reader(Subject::Stage(StageName::Notify)).await;
    let stage = env.stage(&cfg, true);
    let runner = env.runner(Duration::from_secs(10));
    let running = run(&runner, stage.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sched = Scheduler::new(env.store.clone(), env.publisher(), cfg.clone());
    let sched_task = tokio::spawn(sched.run(None, stop_rx));

    // The first resolve queues a scan of A (pinned by digest, keeping the tag).
    let got: Vec<ScanRequest> = scans
        .until(Duration::from_secs(20), |s: &[ScanRequest]| !s.is_empty())
        .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].request.source, format!("{key}@{digest_a}"));
    let first: Vec<TagUpdated> = notify
        .until(Duration::from_secs(10), |t: &[TagUpdated]| !t.is_empty())
        .await;
    assert_eq!(first[0].digest, digest_a);
    assert!(first[0].previous_digests.is_empty());
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/token")),
        "a token was fetched: {:?}",
        proxy.requests()
    );

    // While unchanged, each poll is one HEAD (no GET, no token).
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.clear();
    let sent_before = stage.client().requests_sent(&proxy.host());
    let checked_before = env
        .store
        .get_watched_tag(&key)
        .await
        .unwrap()
        .unwrap()
        .last_checked_at;
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let seen = proxy.requests();
    let sent_after = stage.client().requests_sent(&proxy.host());
    assert!(
        (2..=6).contains(&seen.len()),
        "about one poll a second in 4.2 s: {seen:?}"
    );
    for r in &seen {
        assert_eq!(r.method, "HEAD", "{r:?}");
        assert_eq!(r.path, "/v2/r/app/manifests/1", "{r:?}");
    }
    assert_eq!(
        sent_after - sent_before,
        seen.len() as u64,
        "no other request"
    );
    let w = env.store.get_watched_tag(&key).await.unwrap().unwrap();
    assert!(w.last_checked_at > checked_before);
    assert_eq!(w.digest.as_deref(), Some(digest_a.as_str()));
    assert_eq!(w.failures, 0);
    assert!(
        scans
            .drain::<ScanRequest>(Duration::from_millis(300))
            .await
            .len()
            == 1,
        "no new scan while unchanged"
    );

    // Moving the tag: a TagUpdated with old and new digest and a scan of B.
    let digest_b = push(&registry.host(), "r/app", "1", 2);
    assert_ne!(digest_a, digest_b);
    let got: Vec<ScanRequest> = scans
        .until(Duration::from_secs(10), |s: &[ScanRequest]| s.len() >= 2)
        .await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].request.source, format!("{key}@{digest_b}"));
    let updates: Vec<TagUpdated> = notify
        .until(Duration::from_secs(10), |t: &[TagUpdated]| t.len() >= 2)
        .await;
    assert_eq!(updates[1].digest, digest_b);
    assert_eq!(updates[1].previous_digests, vec![digest_a.clone()]);
    let history: Vec<String> = env
        .store
        .tag_history(&key)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.digest)
        .collect();
    assert_eq!(history, vec![digest_a.clone(), digest_b.clone()]);
    // And no repeats afterwards.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scans
            .drain::<ScanRequest>(Duration::from_millis(300))
            .await
            .len(),
        2
    );
    assert_eq!(
        notify
            .drain::<TagUpdated>(Duration::from_millis(300))
            .await
            .len(),
        2
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sched_task)
        .await
        .unwrap()
        .unwrap();
    running.stop().await;
}

/// The scheduler publishes one poll per due time: two schedulers (or ticks) at once
/// publish it once (JetStream de-duplication by message id), and a poll in flight is not
/// repeated before it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_publish_each_poll_once() {
    let env = env("sched").await;
    let key = "127.0.0.1:1/r/x:1".to_string();
    let created = now() - 10_000;
    env.store
        .put_watched_tag(&WatchedTag {
            account: "admin".into(),
            tag: key.clone(),
            interval_secs: Some(60),
            active: true,
            from_repo: None,
            digest: None,
            last_checked_at: None,
            last_error: None,
            failures: 0,
            created_at: created,
        })
        .await
        .unwrap();
    let cfg = WatchConfig::default();
    let mut a = Scheduler::new(env.store.clone(), env.publisher(), cfg.clone());
    let mut b = Scheduler::new(env.store.clone(), env.publisher(), cfg.clone());
    let t = now();
    assert_eq!(a.tick(t).await.unwrap(), 1);
    assert_eq!(b.tick(t).await.unwrap(), 1);
    // In flight: not again.
    assert_eq!(a.tick(t + 1_000).await.unwrap(), 0);
    let mut polls = env.reader(Subject::WatchPoll).await;
    let got: Vec<WatchPoll> = polls.drain(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].key, key);
    assert_eq!(got[0].due_at, created);
    // Answered: due again one interval after the check.
    let mut w = env.store.get_watched_tag(&key).await.unwrap().unwrap();
    w.last_checked_at = Some(t);
    env.store.put_watched_tag(&w).await.unwrap();
    assert_eq!(a.tick(t + 30_000).await.unwrap(), 0);
    assert_eq!(a.tick(t + 60_000).await.unwrap(), 1);
    // Not answered within two intervals: asked again.
    assert_eq!(a.tick(t + 100_000).await.unwrap(), 0);
    assert_eq!(a.tick(t + 190_000).await.unwrap(), 1);
    let got: Vec<WatchPoll> = polls.drain(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    // Inactive watches are not polled.
    w.active = false;
    w.last_checked_at = None;
    env.store.put_watched_tag(&w).await.unwrap();
    let mut c = Scheduler::new(env.store.clone(), env.publisher(), cfg);
    assert_eq!(c.tick(now()).await.unwrap(), 0);
}

/// A tag that disappears becomes a `registry_lookup_failed` event (stored and
/// published), the failure count grows and the message is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_is_an_event() {
    use vigil_contracts::watch::{Event, WatchTarget};
    use vigil_runtime::Stage;
    let env = env("tagmiss").await;
    let registry = Registry::start(RegistryOpts::default());
    push(&registry.host(), "r/app", "1", 1);
    let key = format!("{}/r/app:nope", registry.host());
    env.store
        .put_watched_tag(&WatchedTag {
            account: "admin".into(),
            tag: key.clone(),
            interval_secs: Some(1),
            active: true,
            from_repo: None,
            digest: None,
            last_checked_at: None,
            last_error: None,
            failures: 0,
            created_at: now(),
        })
        .await
        .unwrap();
    let stage = env.stage(&WatchConfig::default(), false);
    let poll = WatchPoll {
        target: WatchTarget::Tag,
        key: key.clone(),
        due_at: now(),
    };
    let outs = stage
        .handle(
            &Subject::WatchPoll,
            &vigil_contracts::codec::encode(&poll).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(
        outs[0].subject,
        Subject::Event("registry_lookup_failed".into())
    );
    let e: Event = vigil_contracts::codec::decode(&outs[0].payload).unwrap();
    assert_eq!(e.resource, key);
    let w = env.store.get_watched_tag(&key).await.unwrap().unwrap();
    assert_eq!(w.failures, 1);
    assert!(w.last_error.unwrap().contains("not found"));
    let stored = env
        .store
        .list_events(&Default::default(), now())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    // The same failure again in the same hour: counted, no second event.
    let outs = stage
        .handle(
            &Subject::WatchPoll,
            &vigil_contracts::codec::encode(&poll).unwrap(),
        )
        .await
        .unwrap();
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(
        env.store
            .get_watched_tag(&key)
            .await
            .unwrap()
            .unwrap()
            .failures,
        2
    );
}

/// Only the lease holder schedules: a scheduler whose lease is held by another process
/// publishes nothing, and takes over once the lease is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_schedules() {
    use vigil_feeds::FeedLease;
    let env = env("schedlease").await;
    let key = "127.0.0.1:1/r/x:1".to_string();
    env.store
        .put_watched_tag(&WatchedTag {
            account: "admin".into(),
            tag: key.clone(),
            interval_secs: Some(60),
            active: true,
            from_repo: None,
            digest: None,
            last_checked_at: None,
            last_error: None,
            failures: 0,
            created_at: now(),
        })
        .await
        .unwrap();
    let ttl = Duration::from_secs(3);
    let other = FeedLease::new(&env.js, "schedlease_watch_lease", "scheduler", "other", ttl)
        .await
        .unwrap();
    assert!(other.try_acquire().await.unwrap());
    let mine = FeedLease::new(&env.js, "schedlease_watch_lease", "scheduler", "mine", ttl)
        .await
        .unwrap();
    let cfg = WatchConfig {
        scheduler_tick_ms: 100,
        ..WatchConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(
        Scheduler::new(env.store.clone(), env.publisher(), cfg).run(Some(mine.clone()), stop_rx),
    );
    let mut polls = env.reader(Subject::WatchPoll).await;
    let got: Vec<WatchPoll> = polls.drain(Duration::from_millis(1_500)).await;
    assert!(got.is_empty(), "{got:?}");
    other.release().await.unwrap();
    let got: Vec<WatchPoll> = polls
        .until(Duration::from_secs(5), |p: &[WatchPoll]| !p.is_empty())
        .await;
    assert_eq!(got.len(), 1);
    assert!(mine.is_held().await.unwrap());
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(!mine.is_held().await.unwrap(), "released at shutdown");
}
