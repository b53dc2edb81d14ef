//! Re-match on new data, end to end: `vigil run all` on a real nats-server scans an image
//! whose package has no advisory yet; the feed file then gains the advisory, a sync is
//! requested on NATS, and a `vuln_update` notification names the new finding for that
//! image — without the image being submitted again.

use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_e2e::sope::{advisory_arrives, first_sync_and_scan, setup};
use vigil_e2e::{drain, subscribe, terminate, Vigil};
use vigil_testkit::Nats;

/// The next `vuln_update` names exactly sope's new finding.
fn expect_sope_notification(
    rt: &tokio::runtime::Runtime,
    notes: &mut async_nats::Subscriber,
    logs: &dyn Fn() -> String,
) {
    let note = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(90), notes.next()).await })
        .unwrap_or_else(|_| panic!("no vuln_update notification\n{}", logs()))
        .expect("subscription open");
    let n: vigil_contracts::Notification = vigil_contracts::codec::decode(&note.payload).unwrap();
    assert_eq!(n.kind, vigil_contracts::NotificationKind::VulnUpdate);
    let vigil_contracts::NotificationPayload::VulnUpdate { diff } = &n.payload else {
        panic!("payload {:?}", n.payload)
    };
    let added: Vec<(&str, &str)> = diff
        .added
        .iter()
        .map(|f| (f.vuln_id.as_str(), f.package.name.as_str()))
        .collect();
    assert_eq!(added, vec![("CVE-2025-53603", "sope4.9-libsope1")]);
    assert!(diff.removed.is_empty(), "{:?}", diff.removed);
    // Nothing else changed, so no second notification.
    let more =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), notes.next()).await });
    assert!(more.is_err(), "unexpected second vuln_update");
}

#[test]
fn new_advisory_notifies_the_images_it_hits() {
    let nats = Nats::start();
    let s = setup();
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_CONFIG", s.config.to_str().unwrap());
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut notes = subscribe(&rt, &nats.url(), "vigil.notify.vuln_update");
    first_sync_and_scan(&v, &s.root, "run.log");
    drain(&rt, &mut notes);
    advisory_arrives(&v, &s);
    expect_sope_notification(&rt, &mut notes, &|| v.log("run.log"));
    terminate(&mut runner);
    drop(s.work);
}

/// Defect: match stored the new report before publishing, so a re-match redelivered
/// after the process died between the two saw an empty diff and the `vuln_update` was
/// never sent. Here the process aborts right after the re-match's store writes; the
/// next process handles the redelivered message and the notification still goes out.
#[test]
fn a_rematch_interrupted_before_publishing_still_notifies() {
    let nats = Nats::start();
    let s = setup();
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_NATS__ACK_WAIT_SECS", "3")
        .env("VIGIL_CONFIG", s.config.to_str().unwrap());
    let mut first = v.spawn(&["run", "all"], "first.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut notes = subscribe(&rt, &nats.url(), "vigil.notify.vuln_update");
    first_sync_and_scan(&v, &s.root, "first.log");
    drain(&rt, &mut notes);
    terminate(&mut first);

    // This process dies after matching the image again and before publishing.
    let mut crashing = v
        .command(&["run", "all"])
        .env("VIGIL_NATS__CRASH_BEFORE_PUBLISH", "match:stage.match")
        .stderr(std::fs::File::create(v.data_dir.path().join("crash.log")).unwrap())
        .spawn()
        .unwrap();
    advisory_arrives(&v, &s);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = crashing.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the re-match never ran\n{}",
            v.log("crash.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "aborted: {status:?}");
    assert!(
        v.log("crash.log")
            .contains("ending the process before publishing"),
        "{}",
        v.log("crash.log")
    );
    let mut last = v.spawn(&["run", "all"], "last.log");
    expect_sope_notification(&rt, &mut notes, &|| {
        format!("{}\n{}", v.log("crash.log"), v.log("last.log"))
    });
    terminate(&mut last);
    drop(s.work);
}
