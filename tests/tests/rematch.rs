//! Re-match on new data, end to end: `vigil run all` on a real nats-server scans an image
//! whose package has no advisory yet; the feed file then gains the advisory, a sync is
//! requested on NATS, and a `vuln_update` notification names the new finding for that
//! image — without the image being submitted again.

use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_e2e::{write, Vigil};
use vigil_testkit::{testbed, Nats};

/// The Debian tracker fixture without the `sope` source package.
fn tracker_without_sope() -> String {
    let full: serde_json::Value = serde_json::from_slice(
        &std::fs::read(testbed::feeds_dir().join("debian/tracker.json")).unwrap(),
    )
    .unwrap();
    let mut m = full.as_object().unwrap().clone();
    assert!(m.remove("sope").is_some(), "the fixture has sope");
    serde_json::to_string(&m).unwrap()
}

#[test]
fn new_advisory_notifies_the_images_it_hits() {
    let nats = Nats::start();
    let work = tempfile::tempdir().unwrap();
    let feed = work.path().join("tracker.json");
    std::fs::write(&feed, tracker_without_sope()).unwrap();
    let config = work.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[[feeds.feeds]]\nkind = \"debian\"\nname = \"debian\"\nurl = \"{}\"\n",
            feed.display()
        ),
    )
    .unwrap();
    // A Debian 12 root file system holding sope at an affected version.
    let root = work.path().join("rootfs");
    write(
        &root,
        "etc/os-release",
        "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    );
    write(
        &root,
        "var/lib/dpkg/status",
        "Package: sope4.9-libsope1\nStatus: install ok installed\nSource: sope\nArchitecture: amd64\nVersion: 5.8.0-1\nDescription: x\n\n\
         Package: apparmor\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.8-3\nDescription: x\n\n",
    );

    let v = Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_CONFIG", config.to_str().unwrap());
    let mut runner = v.spawn(&["run", "all"], "run.log");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async { async_nats::connect(nats.url()).await.unwrap() });
    let mut notes = rt.block_on(async {
        let s = client.subscribe("vigil.notify.vuln_update").await.unwrap();
        client.flush().await.unwrap();
        s
    });

    // First sync (no sope advisory), then the scan.
    let out = v.run(&["feeds", "request"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    loop {
        // The scan only finds apparmor's CVE once the first sync has landed.
        let out = v.run(&[
            "submit",
            &format!("dir:{}", root.display()),
            "--wait",
            "--timeout",
            "60",
            "-o",
            "json",
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "submit: {e}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                v.log("run.log")
            )
        });
        assert_eq!(report["status"], "succeeded", "{report}");
        let ids: Vec<String> = report["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !ids.contains(&"CVE-2025-53603".to_string()),
            "sope's advisory is not in the feed yet: {ids:?}"
        );
        if ids.contains(&"CVE-2016-1585".to_string()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first feed sync never reached the scans: {ids:?}\n{}",
            v.log("run.log")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The advisory appears upstream; the cluster syncs.
    std::fs::copy(testbed::feeds_dir().join("debian/tracker.json"), &feed).unwrap();
    let out = v.run(&["feeds", "request"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let note = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), notes.next()).await })
        .unwrap_or_else(|_| panic!("no vuln_update notification\n{}", v.log("run.log")))
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

    std::process::Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let _ = runner.wait();
}
