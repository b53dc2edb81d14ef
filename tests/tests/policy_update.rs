//! A new policy bundle reaches a running cluster: `vigil policy publish` sends it on
//! `vigil.policy.updated`; the evaluate stage stores and activates it, re-evaluates every
//! evaluated image, and a `policy_eval` notification names the image whose verdict changed.

use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_contracts::{Action, Notification, NotificationPayload};
use vigil_e2e::Vigil;
use vigil_testkit::{testbed, Nats};

const ONLY_PORT_8080: &str = r#"{"id":"only-8080","version":"1_0","name":"only 8080","policies":[{"id":"p1","version":"1_0","name":"p","rules":[
  {"id":"r1","gate":"dockerfile","trigger":"exposed_ports","action":"STOP","params":[{"name":"ports","value":"8080"},{"name":"type","value":"blacklist"}]}]}],
  "whitelists":[],"mappings":[{"id":"m","name":"m","registry":"*","repository":"*","image":{"type":"tag","value":"*"},"policy_ids":["p1"],"whitelist_ids":[]}]}"#;

#[test]
fn published_bundle_re_evaluates_and_notifies_changed_verdicts() {
    let nats = Nats::start();
    let v = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async { async_nats::connect(nats.url()).await.unwrap() });
    let mut evals = rt.block_on(async {
        let s = client.subscribe("vigil.notify.policy_eval").await.unwrap();
        client.flush().await.unwrap();
        s
    });

    // The built-in bundle stops misconfig-secrets (EXPOSE 22).
    let source = format!(
        "oci-dir:{}",
        testbed::oci_layout("misconfig-secrets").display()
    );
    let out = v.run(&[
        "submit",
        &source,
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
            v.log("run.log")
        )
    });
    assert_eq!(report["evaluation"]["final_action"], "STOP", "{report}");
    let digest = report["image"]["digest"].as_str().unwrap().to_string();
    // Whatever the first evaluation announced, drain it.
    rt.block_on(async {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), evals.next()).await {}
    });

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("only-8080.json");
    std::fs::write(&bundle, ONLY_PORT_8080).unwrap();
    let out = v.run(&["policy", "publish", bundle.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let start = Instant::now();
    let n: Notification = loop {
        let msg = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), evals.next()).await })
            .unwrap_or_else(|_| panic!("no policy_eval notification\n{}", v.log("run.log")))
            .expect("subscription open");
        let n: Notification = vigil_contracts::codec::decode(&msg.payload).unwrap();
        if n.image_digest.as_deref() == Some(digest.as_str()) {
            break n;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
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

    // The next scan uses the published bundle too.
    let out = v.run(&[
        "submit",
        &source,
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

    std::process::Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let _ = runner.wait();
}
