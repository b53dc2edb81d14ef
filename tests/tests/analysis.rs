//! The `vigil` binary on the testbed images: content beyond packages (secrets, users,
//! setuid files), SBOM output and input, every platform of an index, and the policy
//! commands, each checked against expected.json or the images' known content.

use vigil_e2e::{package_names, Vigil};
use vigil_testkit::testbed;

fn layout(name: &str) -> String {
    format!("oci-dir:{}", testbed::oci_layout(name).display())
}

fn expected(image: &str) -> serde_json::Value {
    testbed::expected()["images"][image].clone()
}

/// Anchore's rule names for the testbed's rule labels.
fn rule_name(expected_rule: &str) -> &str {
    match expected_rule {
        "aws-access-key-id" => "AWS_ACCESS_KEY",
        "aws-secret-access-key" => "AWS_SECRET_KEY",
        "github-pat" => "GITHUB_TOKEN",
        "private-key" => "PRIV_KEY",
        other => other,
    }
}

#[test]
fn secrets_users_and_setuid_files_without_the_secret_values() {
    let v = Vigil::new();
    let out = v.run(&["scan", &layout("misconfig-secrets"), "-o", "json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    let want = expected("misconfig-secrets");
    let hits = r["secrets"].as_array().unwrap();
    for s in want["secrets"].as_array().unwrap() {
        let rule = rule_name(s["rule"].as_str().unwrap());
        assert!(
            hits.iter()
                .any(|h| h["path"] == s["path"] && h["rule"] == rule && h["line"] == s["line"]),
            "secret {s} not reported: {hits:?}"
        );
        // Never the secret itself, not even its beginning.
        let prefix = s["prefix"].as_str().unwrap();
        assert!(
            !text.contains(prefix),
            "the report leaks secret text {prefix}"
        );
    }
    let users = r["users"].as_array().unwrap();
    for u in want["passwd"].as_array().unwrap() {
        assert!(
            users.iter().any(|x| x["name"] == u["user"]
                && x["uid"] == u["uid"]
                && x["shell"] == u["shell"]),
            "user {u} missing"
        );
    }
    let setuid: Vec<&str> = r["setuid_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(setuid.contains(&"/usr/bin/passwd"), "{setuid:?}");
    assert!(
        !setuid.contains(&"/usr/bin/apt"),
        "apt is not setuid: {setuid:?}"
    );
}

#[test]
fn language_packages_are_found_in_the_images() {
    let v = Vigil::new();
    for (image, kind) in [
        ("python-app", "python"),
        ("node-app", "npm"),
        ("java-app", "java-archive"),
        ("go-bin", "go-module"),
    ] {
        let (code, r, stderr) = v.scan_json(&layout(image), &[]);
        assert_eq!(code, 0, "{image}: {stderr}");
        let found = package_names(&r, kind);
        for p in expected(image)["must_find"].as_array().unwrap() {
            if p["type"] != kind {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            assert!(
                found.iter().any(|f| f.eq_ignore_ascii_case(name)),
                "{image}: {kind} package {name} missing from {found:?}"
            );
        }
    }
}

#[test]
fn sbom_out_and_back_in() {
    let v = Vigil::new();
    let out = v.run(&["scan", &layout("python-app"), "-o", "cyclonedx-json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cdx: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.6");
    let components = cdx["components"].as_array().unwrap();
    let (_, report, _) = v.scan_json(&layout("python-app"), &[]);
    let n_packages = report["packages"].as_array().unwrap().len();
    let pkg_components = components
        .iter()
        .filter(|c| c["type"] != "operating-system")
        .count();
    assert_eq!(pkg_components, n_packages, "one component per package");
    assert!(
        components.iter().any(|c| c["purl"]
            .as_str()
            .is_some_and(|p| p.starts_with("pkg:pypi/"))),
        "python packages carry pypi purls"
    );

    let out = v.run(&["sbom", &layout("python-app"), "-o", "spdx-json"]);
    assert!(out.status.success());
    let spdx: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert!(spdx["packages"].as_array().unwrap().len() > n_packages);

    // The CycloneDX document scanned as an SBOM: the same packages, no image needed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.cdx.json");
    std::fs::write(&file, serde_json::to_vec(&cdx).unwrap()).unwrap();
    let (code, back, stderr) = v.scan_json(&format!("sbom:{}", file.display()), &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut a = package_names(&report, "python");
    let mut b = package_names(&back, "python");
    a.sort();
    b.sort();
    assert_eq!(a, b, "python packages survive the round trip");
    assert_eq!(
        package_names(&back, "deb").len(),
        package_names(&report, "deb").len()
    );

    // Not an SBOM: a clear failure.
    std::fs::write(&file, b"{\"hello\": 1}").unwrap();
    let (code, r, _) = v.scan_json(&format!("sbom:{}", file.display()), &[]);
    assert_eq!(code, 2);
    assert_eq!(r["failure"]["kind"], "invalid_request", "{r}");
}

#[test]
fn every_platform_of_an_index() {
    let v = Vigil::new();
    let out = v.run(&[
        "scan",
        &layout("multiarch"),
        "--platform",
        "all",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut counts: Vec<usize> = all.iter().map(|r| package_names(r, "deb").len()).collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![1, 88],
        "arm64 has busybox-static only, amd64 88 debs"
    );
    let digests: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|r| r["image"]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 2, "each platform is its own image");
}

#[test]
fn policy_commands_and_ci_exit_codes() {
    let v = Vigil::new();
    let dir = tempfile::tempdir().unwrap();
    // A bundle with an invalid regex: rejected, naming the rule.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"id":"b","version":"1_0","name":"b","policies":[{"id":"p1","version":"1_0","name":"p","rules":[
            {"id":"r1","gate":"files","trigger":"name_match","action":"STOP","params":[{"name":"regex","value":"(unclosed"}]}]}],
            "whitelists":[],"mappings":[{"id":"m","name":"m","registry":"*","repository":"*","image":{"type":"tag","value":"*"},"policy_ids":["p1"],"whitelist_ids":[]}]}"#,
    )
    .unwrap();
    let out = v.run(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("r1") && err.contains("regex"), "{err}");

    // A bundle that stops on EXPOSE 22, made active.
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"id":"ports","version":"1_0","name":"ports","policies":[{"id":"p1","version":"1_0","name":"p","rules":[
            {"id":"r1","gate":"dockerfile","trigger":"exposed_ports","action":"STOP","params":[{"name":"ports","value":"22"},{"name":"type","value":"blacklist"}]}]}],
            "whitelists":[],"mappings":[{"id":"m","name":"m","registry":"*","repository":"*","image":{"type":"tag","value":"*"},"policy_ids":["p1"],"whitelist_ids":[]}]}"#,
    )
    .unwrap();
    let out = v.run(&["policy", "add", good.to_str().unwrap(), "--activate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = v.run(&["policy", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("* ports"));

    // misconfig-secrets exposes 22: STOP, exit 1 only with --fail-on-policy.
    let (code, stopped, _) = v.scan_json(&layout("misconfig-secrets"), &[]);
    assert_eq!(code, 0);
    assert_eq!(
        stopped["evaluation"]["final_action"], "STOP",
        "{}",
        stopped["evaluation"]
    );
    let (code, _, _) = v.scan_json(&layout("misconfig-secrets"), &["--fail-on-policy"]);
    assert_eq!(code, 1);
    // debian-base exposes nothing: GO, exit 0 with --fail-on-policy.
    let (code, r, _) = v.scan_json(&layout("debian-base"), &["--fail-on-policy"]);
    assert_eq!(code, 0);
    assert_eq!(r["evaluation"]["final_action"], "GO");

    // Interactive evaluation of the stored analysis, and the stored history.
    let digest = testbed::image_info("misconfig-secrets")["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let out = v.run(&["policy", "eval", &digest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("exposed_ports") && table.contains("STOP"),
        "{table}"
    );
    // Two scans of misconfig-secrets: two STOP evaluations in its history for that tag.
    let tag = stopped["image"]["tag"].as_str().expect("tag").to_string();
    let out = v.run(&["policy", "history", &digest, "--tag", &tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        history.lines().filter(|l| l.contains("STOP")).count(),
        2,
        "{history}"
    );
}

#[test]
fn feeds_move_to_an_air_gapped_store() {
    let feeds = testbed::feeds_dir();
    let online = Vigil::new();
    let out = online.run(&[
        "feeds",
        "sync",
        "--feed",
        &format!("debian={}", feeds.join("debian/tracker.json").display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feeds.vigil");
    let out = online.run(&["feeds", "export", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let offline = Vigil::new();
    let out = offline.run(&["feeds", "import", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = String::from_utf8_lossy(&online.run(&["feeds", "list"]).stdout).into_owned();
    let b = String::from_utf8_lossy(&offline.run(&["feeds", "list"]).stdout).into_owned();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split("synced").next().unwrap().trim().to_string())
            .collect()
    };
    assert_eq!(strip(&a), strip(&b), "same feeds, records and namespaces");
    assert!(b.contains("debian:12"));
}

#[test]
fn zipped_egg_is_a_python_package() {
    // A real egg (setuptools `bdist_egg`) installed as a zip file in site-packages.
    let build = tempfile::tempdir().unwrap();
    std::fs::write(
        build.path().join("setup.py"),
        "from setuptools import setup\nsetup(name='zipped_demo', version='0.4.1', py_modules=['zd'])\n",
    )
    .unwrap();
    std::fs::write(build.path().join("zd.py"), "X = 1\n").unwrap();
    let out = std::process::Command::new("python3")
        .args(["setup.py", "-q", "bdist_egg"])
        .current_dir(build.path())
        .output()
        .expect("python3 with setuptools");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let egg = std::fs::read_dir(build.path().join("dist"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "egg"))
        .unwrap();
    let name = egg.file_name().unwrap().to_string_lossy().into_owned();
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("usr/lib/python3.11/site-packages");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::copy(&egg, site.join(&name)).unwrap();

    let v = Vigil::new();
    let (code, report, stderr) = v.scan_json(&format!("dir:{}", root.path().display()), &[]);
    assert_eq!(code, 0, "{stderr}");
    let pkgs: Vec<&serde_json::Value> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "python")
        .collect();
    assert_eq!(pkgs.len(), 1, "{:#?}", report["packages"]);
    let p = pkgs[0];
    assert_eq!(p["name"], "zipped-demo");
    assert_eq!(p["version"], "0.4.1");
    assert_eq!(p["purl"], "pkg:pypi/zipped-demo@0.4.1");
    assert_eq!(
        p["locations"][0],
        format!("/usr/lib/python3.11/site-packages/{name}")
    );
    assert_eq!(p["found_by"], "python-egg");
}
