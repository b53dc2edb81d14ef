//! `vigil run` as an operator deploys it: refused on a store it would split, plain-text
//! logs in files, its operations endpoints, and results too large for one NATS message
//! (a real nats-server with the default 1 MiB `max_payload`, a real registry).

use std::time::{Duration, Instant};

use vigil_e2e::{package_names, terminate, Vigil};
use vigil_testkit::{free_port, Nats, NatsOpts, Registry, RegistryOpts};

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    vigil_testkit::http_get(port, path).ok()
}

#[test]
fn a_subset_of_stages_on_the_embedded_store_is_refused() {
    let nats = Nats::start();
    let v = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    let out = v.run(&["run", "fetch", "extract"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("embedded store") && err.contains("jetstream"),
        "{err}"
    );
}

/// Logs written to a file carry no ANSI escapes; metrics, health and readiness are
/// served, and the metrics count the stage's messages.
#[test]
fn logs_are_plain_text_and_operations_endpoints_answer() {
    let nats = Nats::start();
    let port = free_port();
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_OPS__LISTEN", &format!("127.0.0.1:{port}"))
        .env("VIGIL_LOG", "vigil=info,vigil_runtime=info");
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let start = Instant::now();
    loop {
        if let Some((200, body)) = http_get(port, "/readyz") {
            assert!(body.contains("ready"), "{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never ready: {:?}\n{}",
            http_get(port, "/readyz"),
            v.log("run.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(port, "/healthz").map(|(s, _)| s), Some(200));
    let dir = tempfile::tempdir().unwrap();
    vigil_e2e::write(
        dir.path(),
        "app/package-lock.json",
        r#"{"name":"x","lockfileVersion":3,"packages":{"":{"name":"x"},"node_modules/left-pad":{"version":"1.3.0"}}}"#,
    );
    let out = v.run(&[
        "submit",
        &format!("dir:{}", dir.path().display()),
        "--wait",
        "--timeout",
        "120",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    for stage in ["fetch", "analyze", "match", "evaluate", "notify"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("vigil_messages_total{{stage=\"{stage}\"}}")))
            .unwrap_or_else(|| panic!("no message count for {stage}:\n{metrics}"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }
    assert!(
        metrics.contains("vigil_handler_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_in_flight"), "{metrics}");
    // Consumer state polled from JetStream every 5 s.
    let start = Instant::now();
    loop {
        let (_, m) = http_get(port, "/metrics").expect("metrics");
        if m.contains("vigil_consumer_pending{stage=\"fetch\"}") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{m}");
        std::thread::sleep(Duration::from_millis(500));
    }
    terminate(&mut runner);
    let log = v.log("run.log");
    assert!(log.contains("consuming"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log}"
    );
}

/// Defect: a result larger than `max_payload` could not be published, so the request
/// was lost (python-app's result is about 1 MB; a directory of 20,000 packages several
/// MB). Both now arrive, by reference, through `submit --wait`.
#[test]
fn results_larger_than_a_message_reach_the_requester() {
    let nats = Nats::start();
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["python-app"]);
    let v = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    let mut runner = v.spawn(&["run", "all"], "run.log");

    let out = v.run(&[
        "submit",
        &format!("{}/python-app:latest", reg.host()),
        "--wait",
        "--timeout",
        "180",
        "-o",
        "json",
    ]);
    assert!(
        out.stdout.len() > 1024 * 1024,
        "python-app's report is larger than a message: {} bytes\n{}\n{}",
        out.stdout.len(),
        String::from_utf8_lossy(&out.stderr),
        v.log("run.log")
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "succeeded");
    let want = vigil_testkit::testbed::expected()["images"]["python-app"]["must_find"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "python")
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let found = package_names(&report, "python");
    for n in want {
        assert!(
            found.iter().any(|f| f.eq_ignore_ascii_case(&n)),
            "{n} missing from {found:?}"
        );
    }

    // 20,000 npm packages in one directory.
    let dir = tempfile::tempdir().unwrap();
    let mut packages = serde_json::Map::new();
    packages.insert(
        "".into(),
        serde_json::json!({"name": "big", "version": "1.0.0"}),
    );
    for i in 0..20_000 {
        packages.insert(
            format!("node_modules/generated-package-{i:05}"),
            serde_json::json!({"version": format!("1.{}.{}", i / 100, i % 100)}),
        );
    }
    let lock = serde_json::json!({"name": "big", "version": "1.0.0", "lockfileVersion": 3, "packages": packages});
    vigil_e2e::write(dir.path(), "package-lock.json", &lock.to_string());
    let out = v.run(&[
        "submit",
        &format!("dir:{}", dir.path().display()),
        "--wait",
        "--timeout",
        "300",
        "-o",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            v.log("run.log")
        )
    });
    assert_eq!(report["status"], "succeeded");
    let npm = package_names(&report, "npm");
    assert!(npm.len() >= 20_000, "{} npm packages", npm.len());
    assert!(npm.contains(&"generated-package-12345".to_string()));
    terminate(&mut runner);
}

/// A server that wants a user and password: without them a command fails at once with
/// the server's refusal; with them (`VIGIL_NATS__USER`, `VIGIL_NATS__PASSWORD`) the
/// pipeline runs. The password never appears in the logs.
#[test]
fn credentials_are_sent_and_a_refusal_is_a_clear_error() {
    let nats = Nats::start_with(NatsOpts {
        auth: Some(("scanner".into(), "s3cret-pass".into())),
        ..Default::default()
    });
    let anonymous = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    vigil_e2e::vigil_bin(); // built before the clock starts
    let t = Instant::now();
    let out = anonymous.run(&["submit", "dir:/nonexistent", "--timeout", "5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("authorization"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_NATS__USER", "scanner")
        .env("VIGIL_NATS__PASSWORD", "s3cret-pass");
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let dir = tempfile::tempdir().unwrap();
    vigil_e2e::write(dir.path(), "requirements.txt", "requests==2.19.1\n");
    let out = v.run(&[
        "submit",
        &format!("dir:{}", dir.path().display()),
        "--wait",
        "--timeout",
        "120",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.log("run.log")
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        package_names(&report, "python"),
        vec!["requests".to_string()]
    );
    terminate(&mut runner);
    assert!(!v.log("run.log").contains("s3cret-pass"));
}
