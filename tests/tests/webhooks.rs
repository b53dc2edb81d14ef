//! Notifications leave NATS for a webhook only for an active subscription: `vigil run
//! all` on a real nats-server (JetStream store, so the CLI shares it), a real HTTP
//! receiver, a new advisory for a package of a scanned image.

use std::time::Duration;

use futures::StreamExt;
use vigil_e2e::receiver::Receiver;
use vigil_e2e::sope::{advisory_arrives, first_sync_and_scan, setup};
use vigil_e2e::{drain, subscribe, terminate, Vigil};
use vigil_testkit::Nats;

/// The full Debian tracker with sope's bookworm urgency set to `urgency`.
fn tracker_with_sope_urgency(urgency: &str) -> String {
    let mut full: serde_json::Value = serde_json::from_slice(
        &std::fs::read(vigil_testkit::testbed::feeds_dir().join("debian/tracker.json")).unwrap(),
    )
    .unwrap();
    full["sope"]["CVE-2025-53603"]["releases"]["bookworm"]["urgency"] = urgency.into();
    full.to_string()
}

fn next_note(
    rt: &tokio::runtime::Runtime,
    notes: &mut async_nats::Subscriber,
    logs: &dyn Fn() -> String,
) -> vigil_contracts::Notification {
    let msg = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(90), notes.next()).await })
        .unwrap_or_else(|_| panic!("no vuln_update notification\n{}", logs()))
        .expect("subscription open");
    vigil_contracts::codec::decode(&msg.payload).unwrap()
}

#[test]
fn vuln_update_reaches_the_webhook_only_while_subscribed() {
    let nats = Nats::start();
    let s = setup();
    let hook = Receiver::start();
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&format!(
        "\n[deliver]\ninitial_backoff_ms = 200\n\n[deliver.webhooks.general]\nurl = \"{}\"\nsecret = \"s3cret\"\n",
        hook.url("/hook/<account>/<notification_type>")
    ));
    std::fs::write(&s.config, config).unwrap();
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_STORE__BACKEND", "jetstream")
        .env("VIGIL_CONFIG", s.config.to_str().unwrap());
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut notes = subscribe(&rt, &nats.url(), "vigil.notify.vuln_update");
    first_sync_and_scan(&v, &s.root, "run.log");
    drain(&rt, &mut notes);

    // Not subscribed: the notification is on NATS, nothing reaches the webhook.
    advisory_arrives(&v, &s);
    let first = next_note(&rt, &mut notes, &|| v.log("run.log"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        hook.received().is_empty(),
        "unsubscribed notification delivered: {:?}",
        hook.received()
    );

    // Subscribed (inactive first: still nothing), then active.
    let key = first.subscription_key.clone();
    let out = v.run(&["subscription", "activate", "vuln_update", &key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = v.run(&["subscription", "list", "-o", "json"]);
    let subs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(subs[0]["key"], key.as_str(), "{subs}");
    assert_eq!(subs[0]["active"], true);

    // The advisory's urgency changes: a vuln_update with the finding updated, delivered.
    std::fs::write(&s.feed, tracker_with_sope_urgency("high")).unwrap();
    let out = v.run(&["feeds", "request"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = next_note(&rt, &mut notes, &|| v.log("run.log"));
    let got = hook.wait_for(60, |r| !r.is_empty());
    assert_eq!(got.len(), 1, "one delivery: {got:?}\n{}", v.log("run.log"));
    let d = &got[0];
    assert_eq!(d.path, "/hook/admin/vuln_update");
    assert_eq!(
        d.header("x-vigil-notification-id"),
        Some(second.id.as_str())
    );
    assert_eq!(
        d.header("x-vigil-signature-256"),
        Some(vigil_deliver::sign("s3cret", &d.body).as_str()),
        "the body is signed with the shared secret"
    );
    let body = d.json();
    assert_eq!(body["data"]["notification_type"], "vuln_update", "{body}");
    assert_eq!(body["data"]["notification_user"], "admin", "{body}");
    assert!(
        body.to_string().contains("CVE-2025-53603"),
        "the updated finding is in the payload: {body}"
    );

    // Deactivated: the next change is on NATS only.
    let out = v.run(&["subscription", "deactivate", "vuln_update", &key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    advisory_arrives(&v, &s);
    let third = next_note(&rt, &mut notes, &|| v.log("run.log"));
    assert_ne!(third.id, second.id);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.received().len(), 1, "nothing delivered while inactive");

    // The delivery log names the attempt.
    let out = v.run(&["notify", "log", &second.id, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(logs[0]["state"], "delivered", "{logs}");
    assert_eq!(logs[0]["attempts"][0]["status"], 200, "{logs}");
    terminate(&mut runner);
    drop(s.work);
}
