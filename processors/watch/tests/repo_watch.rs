//! Repository watches: added and removed tags, autosubscribe, and tag lists that are
//! garbage or far too long.

mod common;
use common::*;

use std::time::Duration;

use vigil_contracts::watch::{
    Event, RepoUpdated, SubscriptionKind, WatchPoll, WatchTarget, WatchedRepo,
};
use vigil_contracts::{codec, StageName, Subject};
use vigil_runtime::{Outgoing, Stage};
use vigil_testkit::proxy::{Canned, Faults, Proxy};
use vigil_testkit::{Registry, RegistryOpts};
use vigil_watch::{WatchConfig, WatchStage};

fn push(host: &str, repo: &str, tag: &str, salt: u64) -> String {
    vigil_testkit::tiny_images::push_tiny(host, repo, tag, &salt.to_string())
}

fn repo_watch(key: &str, autosubscribe: bool, filter: Option<&str>) -> WatchedRepo {
    WatchedRepo {
        account: "admin".into(),
        repo: key.into(),
        interval_secs: Some(1),
        active: true,
        autosubscribe,
        tag_filter: filter.map(Into::into),
        tags: Vec::new(),
        last_checked_at: None,
        last_error: None,
        failures: 0,
        created_at: now(),
    }
}

async fn poll(stage: &WatchStage, key: &str) -> Vec<Outgoing> {
    let p = WatchPoll {
        target: WatchTarget::Repo,
        key: key.into(),
        due_at: now(),
    };
    stage
        .handle(&Subject::WatchPoll, &codec::encode(&p).unwrap())
        .await
        .unwrap()
}

fn of<T: vigil_contracts::Record>(outs: &[Outgoing], subject: &Subject) -> Vec<T> {
    outs.iter()
        .filter(|o| &o.subject == subject)
        .filter_map(|o| codec::decode(&o.payload).ok())
        .collect()
}

async fn delete_manifest(host: &str, repo: &str, digest: &str) {
    let r = reqwest::Client::new()
        .delete(format!("http://{host}/v2/{repo}/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_and_removed_tags_are_noticed() {
    let env = env("repow").await;
    let registry = Registry::start(RegistryOpts::default());
    let host = registry.host();
    push(&host, "r/svc", "a", 1);
    let digest_b = push(&host, "r/svc", "b", 2);
    push(&host, "r/svc", "skip-me", 3);
    let key = format!("{host}/r/svc");
    env.store
        .put_watched_repo(&repo_watch(&key, true, Some("^[a-z]$")))
        .await
        .unwrap();
    let stage = env.stage(&WatchConfig::default(), false);

    let outs = poll(&stage, &key).await;
    let polls: Vec<WatchPoll> = of(&outs, &Subject::WatchPoll);
    let mut polled: Vec<String> = polls.iter().map(|p| p.key.clone()).collect();
    polled.sort();
    assert_eq!(polled, vec![format!("{key}:a"), format!("{key}:b")]);
    let updates: Vec<RepoUpdated> = of(&outs, &Subject::Stage(StageName::Notify));
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].added, vec!["a".to_string(), "b".to_string()]);
    assert!(updates[0].removed.is_empty());
    for t in ["a", "b"] {
        let w = env
            .store
            .get_watched_tag(&format!("{key}:{t}"))
            .await
            .unwrap()
            .expect("watched");
        assert_eq!(w.from_repo.as_deref(), Some(key.as_str()));
        assert!(w.active);
        for kind in SubscriptionKind::FOR_TAGS {
            let s = env
                .store
                .get_subscription("admin", kind, &format!("{key}:{t}"))
                .await
                .unwrap()
                .expect("subscribed");
            assert!(s.active);
        }
    }
    assert!(env
        .store
        .get_watched_tag(&format!("{key}:skip-me"))
        .await
        .unwrap()
        .is_none());
    // Resolving the new tag (the poll above) records its digest.
    let tag_poll = &polls.iter().find(|p| p.key.ends_with(":b")).unwrap();
    stage
        .handle(&Subject::WatchPoll, &codec::encode(*tag_poll).unwrap())
        .await
        .unwrap();

    // Nothing changed: no update.
    let outs = poll(&stage, &key).await;
    assert!(outs.is_empty(), "{outs:?}");

    // c added, b removed.
    push(&host, "r/svc", "c", 4);
    delete_manifest(&host, "r/svc", &digest_b).await;
    let outs = poll(&stage, &key).await;
    let updates: Vec<RepoUpdated> = of(&outs, &Subject::Stage(StageName::Notify));
    assert_eq!(updates.len(), 1, "{outs:?}");
    assert_eq!(updates[0].added, vec!["c".to_string()]);
    assert_eq!(updates[0].removed, vec!["b".to_string()]);
    let removed = env.store.removed_tags(&key).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].tag, "b");
    assert_eq!(removed[0].last_digest.as_deref(), Some(digest_b.as_str()));
    assert!(env
        .store
        .get_watched_tag(&format!("{key}:b"))
        .await
        .unwrap()
        .is_none());
    assert!(env
        .store
        .get_watched_tag(&format!("{key}:c"))
        .await
        .unwrap()
        .is_some());
    let r = env.store.get_watched_repo(&key).await.unwrap().unwrap();
    assert_eq!(r.tags, vec!["a".to_string(), "c".to_string()]);
    assert!(r.last_checked_at.is_some());
}

/// A tag list that is not JSON, and one of a million tags (streamed by the proxy, never
/// held whole): a `list_tags_failed` event each, the repository's known tags and
/// watched tags kept, memory bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_huge_tag_lists_are_events() {
    let env = env("repog").await;
    let registry = Registry::start(RegistryOpts::default());
    push(&registry.host(), "r/ok", "1", 1);
    let proxy = Proxy::start(
        &registry.host(),
        Faults {
            canned: vec![
                (
                    "/v2/r/garbage/tags/list".into(),
                    Canned::json(200, b"{\"name\": \"r/garbage\", \"tags\": [1, {".to_vec()),
                ),
                (
                    "/v2/r/huge/tags/list".into(),
                    Canned::huge_tags("r/huge", 1_000_000),
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
    for name in ["garbage", "huge"] {
        let key = format!("{}/r/{name}", proxy.host());
        let mut w = repo_watch(&key, false, None);
        w.tags = vec!["kept".into()];
        w.last_checked_at = Some(now() - 5_000);
        env.store.put_watched_repo(&w).await.unwrap();
        let started = std::time::Instant::now();
        let outs = poll(&stage, &key).await;
        assert!(started.elapsed() < Duration::from_secs(30));
        let events: Vec<Event> = of(&outs, &Subject::Event("list_tags_failed".into()));
        assert_eq!(events.len(), 1, "{name}: {outs:?}");
        assert_eq!(events[0].resource, key);
        assert_eq!(outs.len(), 1, "only the event: {outs:?}");
        let r = env.store.get_watched_repo(&key).await.unwrap().unwrap();
        assert_eq!(r.tags, vec!["kept".to_string()], "known tags kept");
        assert_eq!(r.failures, 1);
        assert!(r.last_error.is_some());
    }
    // The healthy repository behind the same proxy still works.
    let key = format!("{}/r/ok", proxy.host());
    env.store
        .put_watched_repo(&repo_watch(&key, false, None))
        .await
        .unwrap();
    let outs = poll(&stage, &key).await;
    let updates: Vec<RepoUpdated> = of(&outs, &Subject::Stage(StageName::Notify));
    assert_eq!(updates[0].added, vec!["1".to_string()]);
    let stored = env
        .store
        .list_events(&Default::default(), now())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
}
