//! End to end: the `vigil` binary against the real testbed images, a real registry and a
//! real nats-server. Expected package sets come from the testbed's expected.json.

use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::{package_names, Vigil};
use vigil_testkit::{testbed, Nats, Registry, RegistryOpts};

fn expected(image: &str) -> serde_json::Value {
    testbed::expected()["images"][image].clone()
}

fn must_find_names(image: &str, kind: &str) -> Vec<String> {
    expected(image)["must_find"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == kind)
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn assert_debian_base(report: &serde_json::Value, ctx: &str) {
    let debs = package_names(report, "deb");
    let want = expected("debian-base")["deb_package_count"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(debs.len(), want, "{ctx}: deb package count");
    for n in must_find_names("debian-base", "deb") {
        assert!(debs.contains(&n), "{ctx}: {n} missing");
    }
    assert_eq!(report["image"]["distro"]["id"], "debian", "{ctx}");
    assert_eq!(report["image"]["distro"]["version_id"], "12", "{ctx}");
}

fn assert_layered_whiteout(report: &serde_json::Value, ctx: &str) {
    let debs = package_names(report, "deb");
    let want = expected("layered-whiteout")["deb_package_count"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(debs.len(), want, "{ctx}: deb package count after whiteouts");
    assert!(
        !debs.contains(&"e2fsprogs".to_string()),
        "{ctx}: purged e2fsprogs still reported"
    );
    assert!(debs.contains(&"bash".to_string()), "{ctx}");
}

#[test]
fn embedded_scan_of_layouts_and_archives() {
    let v = Vigil::new();
    let layout = format!("oci-dir:{}", testbed::oci_layout("debian-base").display());
    let (code, report, stderr) = v.scan_json(&layout, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["status"], "succeeded");
    assert_debian_base(&report, "oci-dir debian-base");
    assert_eq!(
        report["image"]["digest"],
        testbed::image_info("debian-base")["manifest_digest"]
    );
    assert!(
        report["evaluation"]["final_action"].is_string(),
        "an evaluation is always present"
    );

    let layout = format!(
        "oci-dir:{}",
        testbed::oci_layout("layered-whiteout").display()
    );
    let (code, report, stderr) = v.scan_json(&layout, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_layered_whiteout(&report, "oci-dir layered-whiteout");

    let archive = format!(
        "docker-archive:{}",
        testbed::docker_archive("layered-whiteout").display()
    );
    let (code, report, stderr) = v.scan_json(&archive, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_layered_whiteout(&report, "docker-archive layered-whiteout");
}

#[test]
fn embedded_scan_from_registry_with_platforms() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["debian-base", "layered-whiteout", "multiarch"]);
    let v = Vigil::new();
    let (code, report, stderr) = v.scan_json(&format!("{}/debian-base:latest", reg.host()), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_debian_base(&report, "registry debian-base");

    let (code, report, stderr) =
        v.scan_json(&format!("{}/layered-whiteout:latest", reg.host()), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_layered_whiteout(&report, "registry layered-whiteout");

    let (code, report, stderr) = v.scan_json(
        &format!("{}/multiarch:latest", reg.host()),
        &["--platform", "linux/arm64"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        package_names(&report, "deb"),
        vec!["busybox-static".to_string()]
    );
}

/// Publish-subscribe mode: `vigil run all` + `vigil submit --wait` give the same report.
#[test]
fn distributed_scan_matches_embedded() {
    let nats = Nats::start();
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["debian-base", "layered-whiteout"]);
    let v = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    let mut runner = v.spawn(&["run", "all"], "run.log");
    for (image, check) in [
        (
            "debian-base",
            assert_debian_base as fn(&serde_json::Value, &str),
        ),
        ("layered-whiteout", assert_layered_whiteout),
    ] {
        let out = v.run(&[
            "submit",
            &format!("{}/{image}:latest", reg.host()),
            "--wait",
            "--timeout",
            "120",
            "-o",
            "json",
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "submit {image}: {e}\nstderr: {}\nrunner log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                v.log("run.log")
            )
        });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(report["status"], "succeeded");
        check(&report, &format!("distributed {image}"));
    }
    // SIGTERM: graceful shutdown, exit 0.
    Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let status =
        wait_exit(&mut runner, Duration::from_secs(40)).expect("runner exits after SIGTERM");
    assert!(status.success(), "runner exit status {status:?}");
}

fn wait_exit(c: &mut std::process::Child, t: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < t {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    None
}

/// A stage process SIGKILLed while it holds a message: after restart the request still
/// completes, and exactly one result is published and stored.
#[test]
fn stage_killed_while_holding_a_message_still_completes() {
    let nats = Nats::start();
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["debian-base"]);
    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_NATS__ACK_WAIT_SECS", "3");
    // Same data dir for both runs of the pipeline process: the embedded store survives.
    let data = v.data_dir.path().to_path_buf();
    let mut first = v
        .command(&["run", "all"])
        .env("VIGIL_NATS__HOLD_STAGE", "extract")
        .env("VIGIL_NATS__HOLD_MS", "60000")
        .stderr(std::fs::File::create(data.join("first.log")).unwrap())
        .spawn()
        .unwrap();
    let id = "killed-request-1";
    let submit = v
        .command(&[
            "submit",
            &format!("{}/debian-base:latest", reg.host()),
            "--request-id",
            id,
            "--wait",
            "--timeout",
            "120",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the extract stage holds the message.
    let start = Instant::now();
    while !std::fs::read_to_string(data.join("first.log"))
        .unwrap_or_default()
        .contains("holding the message")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "extract never got the message"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = v.spawn(&["run", "all"], "second.log");
    let out = submit.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            v.log("second.log")
        )
    });
    assert_eq!(report["status"], "succeeded");
    assert_debian_base(&report, "after SIGKILL");

    // Exactly one result message for the request on the results stream.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("VIGIL_RESULTS").await.unwrap();
        let info = stream
            .info_with_subjects(format!("vigil.result.{id}"))
            .await
            .unwrap();
        let mut n = 0;
        use futures::StreamExt;
        let mut info = info;
        while let Some(Ok((_, c))) = info.next().await {
            n += c;
        }
        n
    });
    assert_eq!(count, 1, "exactly one published result");
    Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    wait_exit(&mut second, Duration::from_secs(40)).expect("second runner exits");
    let stored = rt.block_on(async {
        let store = vigil_store::Store::open_embedded(&data.join("vigil.redb")).unwrap();
        store.get_scan_result(id).await.unwrap()
    });
    let stored = stored.expect("the result is stored");
    assert_eq!(stored.status, vigil_contracts::ScanStatus::Succeeded);
}
