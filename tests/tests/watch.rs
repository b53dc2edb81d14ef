//! Watch mode end to end: `vigil run all` on a real nats-server (JetStream store, shared
//! with the CLI), a real registry, a real webhook receiver. A watched tag is pushed
//! again to a new digest: `tag_update` (old and new digest) reaches NATS and the
//! webhook, the new digest is scanned (`analysis_update`), and the tag history holds both.

use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_contracts::{codec, Notification, NotificationKind, NotificationPayload};
use vigil_e2e::receiver::Receiver;
use vigil_e2e::{subscribe, terminate, Vigil};
use vigil_testkit::tiny_images::push_tiny;
use vigil_testkit::{Nats, Registry, RegistryOpts};

/// The next notification on `sub` that `pred` accepts, within `secs`.
fn next_matching(
    rt: &tokio::runtime::Runtime,
    sub: &mut async_nats::Subscriber,
    secs: u64,
    what: &str,
    logs: &dyn Fn() -> String,
    pred: impl Fn(&Notification) -> bool,
) -> Notification {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = rt
            .block_on(async { tokio::time::timeout(left, sub.next()).await })
            .unwrap_or_else(|_| panic!("no {what} within {secs} s\n{}", logs()))
            .expect("subscription open");
        let n: Notification = codec::decode(&msg.payload).unwrap();
        if pred(&n) {
            return n;
        }
    }
}

#[test]
fn a_watched_tag_moved_to_a_new_digest_is_announced_scanned_and_kept_in_history() {
    let nats = Nats::start();
    let registry = Registry::start(RegistryOpts::default());
    let hook = Receiver::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[watch]\ndefault_interval_secs = 1\n\n[deliver.webhooks.tag_update]\nurl = \"{}\"\n",
            hook.url("/tags")
        ),
    )
    .unwrap();
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_STORE__BACKEND", "jetstream")
        .env("VIGIL_LOG", "info")
        .env("VIGIL_CONFIG", config.to_str().unwrap());
    let host = registry.host();
    let tag = format!("{host}/team/app:1");
    let first = push_tiny(&host, "team/app", "1", "one");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut analyses = subscribe(&rt, &nats.url(), "vigil.notify.analysis_update");
    let mut tags = subscribe(&rt, &nats.url(), "vigil.notify.tag_update");
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let out = v.run(&["watch", "add", &tag, "--autosubscribe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = || v.log("run.log");

    // First resolve: the digest is scanned.
    let n = next_matching(
        &rt,
        &mut analyses,
        60,
        "analysis of the first digest",
        &logs,
        |n| n.image_digest.as_deref() == Some(first.as_str()),
    );
    assert!(
        matches!(&n.payload, NotificationPayload::AnalysisUpdate { status, .. } if status == "analyzed"),
        "{n:?}"
    );
    assert_eq!(n.subscription_key, tag);
    next_matching(
        &rt,
        &mut tags,
        30,
        "tag_update of the first digest",
        &logs,
        |n| n.image_digest.as_deref() == Some(first.as_str()),
    );

    // Pushed again with other content: announced with both digests, then scanned.
    let second = push_tiny(&host, "team/app", "1", "two");
    assert_ne!(first, second);
    let moved = next_matching(
        &rt,
        &mut tags,
        30,
        "tag_update of the new digest",
        &logs,
        |n| n.image_digest.as_deref() == Some(second.as_str()),
    );
    assert_eq!(moved.kind, NotificationKind::TagUpdate);
    assert_eq!(
        moved.payload,
        NotificationPayload::TagUpdate {
            previous_digests: vec![first.clone()],
            current_digest: second.clone()
        }
    );
    next_matching(
        &rt,
        &mut analyses,
        60,
        "analysis of the new digest",
        &logs,
        |n| n.image_digest.as_deref() == Some(second.as_str()),
    );

    // The history holds both digests, oldest first; the watch shows the new one.
    let out = v.run(&["watch", "history", &tag, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digests: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [first.as_str(), second.as_str()]);
    let out = v.run(&["watch", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["digest"], second.as_str(), "{list}");

    // The subscribed tag_update reached the webhook, once per notification.
    let got = hook.wait_for(30, |r| {
        r.iter()
            .any(|d| d.header("x-vigil-notification-id") == Some(moved.id.as_str()))
    });
    let ids: Vec<&str> = got
        .iter()
        .filter_map(|d| d.header("x-vigil-notification-id"))
        .collect();
    assert!(ids.contains(&moved.id.as_str()), "{ids:?}\n{}", logs());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "each notification delivered once: {ids:?}"
    );
    assert!(got.iter().all(|d| d.path == "/tags"));

    // Moved back to the first digest: a new move (not a duplicate of the first one).
    assert_eq!(push_tiny(&host, "team/app", "1", "one"), first);
    let back = next_matching(
        &rt,
        &mut tags,
        30,
        "tag_update back to the first digest",
        &logs,
        |n| n.image_digest.as_deref() == Some(first.as_str()),
    );
    assert_eq!(
        back.payload,
        NotificationPayload::TagUpdate {
            previous_digests: vec![second.clone()],
            current_digest: first.clone()
        }
    );

    // A tag that does not exist is an event, not a silent stop.
    let out = v.run(&["watch", "add", &format!("{host}/team/missing:1")]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = v.run(&[
            "event",
            "list",
            "--type",
            "registry_lookup_failed",
            "-o",
            "json",
        ]);
        let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"].as_str().unwrap_or("").contains("missing"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no registry_lookup_failed event: {events}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    terminate(&mut runner);
}
