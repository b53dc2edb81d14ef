//! A new policy bundle reaches a running cluster: `vigil policy publish` sends it on
//! `vigil.policy.updated`; the evaluate stage stores and activates it, re-evaluates every
//! evaluated image, and a `policy_eval` notification names the image whose verdict changed.

use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_contracts::{Action, Notification, NotificationPayload};
use vigil_e2e::{drain, subscribe, terminate, Vigil};
use vigil_testkit::{testbed, Nats};

const ONLY_PORT_8080: &str = r#"{"id":"only-8080","version":"1_0","name":"only 8080","policies":[{"id":"p1","version":"1_0","name":"p","rules":[
  {"id":"r1","gate":"dockerfile","trigger":"exposed_ports","action":"STOP","params":[{"name":"ports","value":"8080"},{"name":"type","value":"blacklist"}]}]}],
  "whitelists":[],"mappings":[{"id":"m","name":"m","registry":"*","repository":"*","image":{"type":"tag","value":"*"},"policy_ids":["p1"],"whitelist_ids":[]}]}"#;

fn source() -> String {
    format!(
        "oci-dir:{}",
        testbed::oci_layout("misconfig-secrets").display()
    )
}

/// Scan misconfig-secrets (the built-in bundle stops it: EXPOSE 22); its digest.
fn scan_stopped(v: &Vigil, log: &str) -> String {
    let out = v.run(&[
        "submit",
        &source(),
        "--wait",
        "--timeout",
        "120",
        "-o",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            v.log(log)
        )
    });
    assert_eq!(report["evaluation"]["final_action"], "STOP", "{report}");
    report["image"]["digest"].as_str().unwrap().to_string()
}

fn publish_only_8080(v: &Vigil) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("only-8080.json");
    std::fs::write(&bundle, ONLY_PORT_8080).unwrap();
    let out = v.run(&["policy", "publish", bundle.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `policy_eval` of `digest`: STOP → GO.
fn expect_stop_to_go(
    rt: &tokio::runtime::Runtime,
    evals: &mut async_nats::Subscriber,
    digest: &str,
    logs: &dyn Fn() -> String,
) {
    let start = Instant::now();
    let n: Notification = loop {
        let msg = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(90), evals.next()).await })
            .unwrap_or_else(|_| panic!("no policy_eval notification\n{}", logs()))
            .expect("subscription open");
        let n: Notification = vigil_contracts::codec::decode(&msg.payload).unwrap();
        if n.image_digest.as_deref() == Some(digest) {
            break n;
        }
        assert!(start.elapsed() < Duration::from_secs(90));
    };
    let NotificationPayload::PolicyEval {
        previous_action,
        current_action,
        ..
    } = n.payload
    else {
        panic!("payload {:?}", n.payload)
    };
    assert_eq!(previous_action, Some(Action::Stop));
    assert_eq!(current_action, Action::Go, "port 22 no longer matters");
}

#[test]
fn published_bundle_re_evaluates_and_notifies_changed_verdicts() {
    let nats = Nats::start();
    let v = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut evals = subscribe(&rt, &nats.url(), "vigil.notify.policy_eval");
    let digest = scan_stopped(&v, "run.log");
    // Whatever the first evaluation announced, drain it.
    drain(&rt, &mut evals);
    publish_only_8080(&v);
    expect_stop_to_go(&rt, &mut evals, &digest, &|| v.log("run.log"));

    // The next scan uses the published bundle too.
    let out = v.run(&[
        "submit",
        &source(),
        "--force",
        "--wait",
        "--timeout",
        "120",
        "-o",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["evaluation"]["final_action"], "GO", "{report}");
    assert_eq!(report["evaluation"]["bundle_id"], "only-8080");
    terminate(&mut runner);
}

/// Defect: the re-evaluation of every image stored its evaluations before publishing,
/// with the clock as their time, so a redelivered `policy.updated` (the process died in
/// between) compared each image with its own new evaluation and sent no `policy_eval`.
#[test]
fn a_re_evaluation_interrupted_before_publishing_still_notifies() {
    let nats = Nats::start();
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_NATS__ACK_WAIT_SECS", "3");
    let mut first = v.spawn(&["run", "all"], "first.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut evals = subscribe(&rt, &nats.url(), "vigil.notify.policy_eval");
    let digest = scan_stopped(&v, "first.log");
    drain(&rt, &mut evals);
    terminate(&mut first);

    let mut crashing = v
        .command(&["run", "all"])
        .env(
            "VIGIL_NATS__CRASH_BEFORE_PUBLISH",
            "evaluate:policy.updated",
        )
        .stderr(std::fs::File::create(v.data_dir.path().join("crash.log")).unwrap())
        .spawn()
        .unwrap();
    publish_only_8080(&v);
    let start = Instant::now();
    while crashing.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the re-evaluation never ran\n{}",
            v.log("crash.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        v.log("crash.log")
            .contains("ending the process before publishing"),
        "{}",
        v.log("crash.log")
    );
    let mut last = v.spawn(&["run", "all"], "last.log");
    expect_stop_to_go(&rt, &mut evals, &digest, &|| {
        format!("{}\n{}", v.log("crash.log"), v.log("last.log"))
    });
    terminate(&mut last);
}
