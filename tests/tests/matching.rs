//! Matching against real advisory records (../shared/feeds): root filesystems built here
//! hold the fixture packages at affected and unaffected versions; each expected match and
//! non-match from EXPECTED.md is asserted one by one.

use vigil_e2e::{vuln_ids, write, Vigil};
use vigil_testkit::testbed;

fn sync(v: &Vigil) {
    let feeds = testbed::feeds_dir();
    let out = v.run(&[
        "feeds",
        "sync",
        "--feed",
        &format!("alpine={}", feeds.join("alpine/v3.19/main.json").display()),
        "--feed",
        &format!("alpine={}", feeds.join("alpine/v3.20/main.json").display()),
        "--feed",
        &format!("debian={}", feeds.join("debian/tracker.json").display()),
    ]);
    assert!(
        out.status.success(),
        "feeds sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn apk_db(pkgs: &[(&str, &str, &str)]) -> String {
    pkgs.iter()
        .map(|(n, v, origin)| format!("C:Q1abc=\nP:{n}\nV:{v}\nA:x86_64\no:{origin}\nL:MIT\n\n"))
        .collect()
}

fn dpkg_status(pkgs: &[(&str, &str, Option<&str>)]) -> String {
    pkgs.iter()
        .map(|(n, v, src)| {
            let src = src.map(|s| format!("Source: {s}\n")).unwrap_or_default();
            format!("Package: {n}\nStatus: install ok installed\n{src}Architecture: amd64\nVersion: {v}\nDescription: x\n\n")
        })
        .collect()
}

#[test]
fn alpine_secdb_rows() {
    let v = Vigil::new();
    sync(&v);
    // Affected versions (the EXPECTED.md v3.19 rows).
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/os-release",
        "ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
    );
    write(
        root.path(),
        "lib/apk/db/installed",
        &apk_db(&[
            ("busybox", "1.36.1-r15", "busybox"),
            ("openssl", "3.1.4-r1", "openssl"),
            ("zlib", "1.3-r2", "zlib"),
            ("apk-tools", "2.14.0-r5", "apk-tools"),
            ("musl", "1.2.4_git20230717-r4", "musl"),
        ]),
    );
    let (code, r, stderr) = v.scan_json(&format!("dir:{}", root.path().display()), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        vuln_ids(&r, "busybox"),
        vec![
            "CVE-2023-42363",
            "CVE-2023-42364",
            "CVE-2023-42365",
            "CVE-2023-42366",
            "CVE-2024-58251",
            "CVE-2025-46394"
        ]
    );
    assert_eq!(
        vuln_ids(&r, "openssl"),
        vec!["CVE-2023-6129", "CVE-2023-6237"]
    );
    assert_eq!(
        vuln_ids(&r, "musl"),
        vec!["CVE-2025-26519", "CVE-2026-40200", "CVE-2026-6042"]
    );
    assert!(
        vuln_ids(&r, "zlib").is_empty(),
        "zlib entries are under \"0\": never reported"
    );
    assert!(vuln_ids(&r, "apk-tools").is_empty());
    for never in [
        "CVE-2021-42373",
        "CVE-2021-42376",
        "CVE-2021-42377",
        "CVE-2022-1292",
        "CVE-2023-45853",
    ] {
        assert!(
            !r["vulnerabilities"].to_string().contains(never),
            "{never} is listed under \"0\""
        );
    }
    // The fixed versions: nothing.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/os-release",
        "ID=alpine\nVERSION_ID=3.19.4\n",
    );
    write(
        root.path(),
        "lib/apk/db/installed",
        &apk_db(&[
            ("busybox", "1.36.1-r21", "busybox"),
            ("openssl", "3.1.4-r4", "openssl"),
            ("musl", "1.2.4_git20230717-r6", "musl"),
        ]),
    );
    let (code, r, stderr) = v.scan_json(&format!("dir:{}", root.path().display()), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        r["vulnerabilities"].as_array().map(|a| a.len()),
        Some(0),
        "{}",
        r["vulnerabilities"]
    );
    // v3.20 namespace is kept apart from v3.19.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/os-release",
        "ID=alpine\nVERSION_ID=3.20.0\n",
    );
    write(
        root.path(),
        "lib/apk/db/installed",
        &apk_db(&[("busybox", "1.36.1-r28", "busybox")]),
    );
    let (_, r, _) = v.scan_json(&format!("dir:{}", root.path().display()), &[]);
    assert_eq!(
        vuln_ids(&r, "busybox"),
        vec![
            "CVE-2023-42364",
            "CVE-2023-42365",
            "CVE-2024-58251",
            "CVE-2025-46394"
        ]
    );
}

#[test]
fn debian_tracker_rows() {
    let v = Vigil::new();
    sync(&v);
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/os-release",
        "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    );
    write(
        root.path(),
        "var/lib/dpkg/status",
        &dpkg_status(&[
            ("apparmor", "3.0.8-3", None),
            ("libapparmor1", "3.0.8-3", Some("apparmor")),
            ("chromium", "98.0.4758.102-1", None),
            ("sope4.9-libsope1", "5.8.0-1", Some("sope")),
            ("backupninja", "1.2.1-1", None),
        ]),
    );
    let (code, r, stderr) = v.scan_json(&format!("dir:{}", root.path().display()), &[]);
    assert_eq!(code, 0, "{stderr}");
    // apparmor: CVE-2016-1585 open (affected); CVE-2014-1424 fixed_version 0; CVE-2017-6507 fixed before 3.0.8-3.
    assert_eq!(vuln_ids(&r, "apparmor"), vec!["CVE-2016-1585"]);
    assert_eq!(
        vuln_ids(&r, "libapparmor1"),
        vec!["CVE-2016-1585"],
        "matched through the source package"
    );
    assert_eq!(vuln_ids(&r, "sope4.9-libsope1"), vec!["CVE-2025-53603"]);
    assert!(
        vuln_ids(&r, "chromium").is_empty(),
        "98.0.4758.102-1 >= 98.0.4758.80-1"
    );
    assert!(vuln_ids(&r, "backupninja").is_empty(), "no bookworm entry");
    let sope = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "CVE-2025-53603")
        .unwrap();
    assert_eq!(sope["fixed_in"], "5.8.0-1+deb12u1");
    assert_eq!(sope["matched"]["namespace"], "debian:12");

    // sope at the fixed version: not affected.
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "etc/os-release",
        "ID=debian\nVERSION_ID=\"12\"\n",
    );
    write(
        root.path(),
        "var/lib/dpkg/status",
        &dpkg_status(&[("sope4.9-libsope1", "5.8.0-1+deb12u1", Some("sope"))]),
    );
    let (_, r, _) = v.scan_json(&format!("dir:{}", root.path().display()), &[]);
    assert!(vuln_ids(&r, "sope4.9-libsope1").is_empty());
}
