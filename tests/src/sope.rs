//! A Debian 12 root file system holding `sope` at an affected version, and a Debian
//! tracker feed that gains sope's advisory on demand: the setup of the re-match and
//! webhook tests.

use std::time::{Duration, Instant};

use vigil_testkit::testbed;

use crate::{write, Vigil};

/// The Debian tracker fixture without the `sope` source package.
pub fn tracker_without_sope() -> String {
    let full: serde_json::Value = serde_json::from_slice(
        &std::fs::read(testbed::feeds_dir().join("debian/tracker.json")).unwrap(),
    )
    .unwrap();
    let mut m = full.as_object().unwrap().clone();
    assert!(m.remove("sope").is_some(), "the fixture has sope");
    serde_json::to_string(&m).unwrap()
}

/// A Debian 12 root file system holding sope at an affected version, a feed file
/// without sope's advisory, and a config naming that feed.
pub struct Setup {
    pub work: tempfile::TempDir,
    pub feed: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub root: std::path::PathBuf,
}

pub fn setup() -> Setup {
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
    Setup {
        work,
        feed,
        config,
        root,
    }
}

/// First sync (no sope advisory), then scans until one finds apparmor's CVE.
pub fn first_sync_and_scan(v: &Vigil, root: &std::path::Path, log: &str) {
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
                v.log(log)
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
            v.log(log)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The advisory appears upstream; the cluster is asked to sync.
pub fn advisory_arrives(v: &Vigil, s: &Setup) {
    std::fs::copy(testbed::feeds_dir().join("debian/tracker.json"), &s.feed).unwrap();
    let out = v.run(&["feeds", "request"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
