//! Every trigger of the 13 gates: one test where it fires and one where it does not, on
//! analyses of the real testbed images (see `common`). Vulnerability findings come from
//! `vigil_match::match_packages` over the real analyses with a few hand-written advisories
//! (real CVEs of python-app's and node-app's pinned packages, see `advisories`).

mod common;

use serde_json::json;
use vigil_contracts::*;
use vigil_evaluate::{evaluate, load_bundle, Bundle, EvalInput};

const NOW: i64 = 1_800_000_000_000; // 2027-01-15
const DAY: i64 = 86_400_000;

fn bundle(gate: &str, trigger: &str, params: &[(&str, &str)]) -> Bundle {
    let v = json!({
        "id": "b", "name": "b", "version": "1_0",
        "policies": [{"id": "p", "name": "p", "version": "1_0", "rules": [{
            "id": "rule-1", "gate": gate, "trigger": trigger, "action": "STOP",
            "params": params.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>()
        }]}],
        "whitelists": [],
        "mappings": [{"id": "m", "name": "m", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}]
    });
    load_bundle(&v.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn empty_report(a: &Analysis) -> VulnReport {
    VulnReport {
        image_digest: a.descriptor.image.digest.clone(),
        findings: vec![],
        namespaces_with_data: vec![],
        matched_at: 0,
    }
}

fn fire_with(
    a: &Analysis,
    r: &VulnReport,
    feeds: &[FeedState],
    gate: &str,
    trigger: &str,
    params: &[(&str, &str)],
) -> Vec<PolicyFinding> {
    let b = bundle(gate, trigger, params);
    let tag = a.descriptor.image.full_tag();
    let e = evaluate(
        &b,
        &EvalInput {
            feeds,
            ..EvalInput::new(a, r, &tag)
        },
        NOW,
    );
    assert!(e
        .findings
        .iter()
        .all(|f| f.gate == gate && f.trigger == trigger));
    e.findings
}

/// Findings of one rule on a testbed image, with no vulnerability data.
fn fire(
    image: &'static str,
    gate: &str,
    trigger: &str,
    params: &[(&str, &str)],
) -> Vec<PolicyFinding> {
    let a = common::image(image);
    fire_with(a, &empty_report(a), &[], gate, trigger, params)
}

fn fire_on(a: &Analysis, gate: &str, trigger: &str, params: &[(&str, &str)]) -> Vec<PolicyFinding> {
    fire_with(a, &empty_report(a), &[], gate, trigger, params)
}

fn messages(f: &[PolicyFinding]) -> Vec<&str> {
    f.iter().map(|f| f.message.as_str()).collect()
}

const MS: &str = "misconfig-secrets";
const PY: &str = "python-app";
const NODE: &str = "node-app";

// ---- always --------------------------------------------------------------------------------

#[test]
fn always_fires_on_every_image_and_not_when_unmapped() {
    let f = fire(MS, "always", "always", &[]);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].trigger_id,
        vigil_evaluate::md5_trigger_id("always", "always", "always")
    );
    // Not mapped: a bundle whose only mapping is for another repository.
    let a = common::image(MS);
    let v = json!({"id": "b", "version": "1_0",
        "policies": [{"id": "p", "rules": [{"id": "r", "gate": "always", "trigger": "always", "action": "STOP"}]}],
        "mappings": [{"registry": "*", "repository": "other/*", "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"]}]});
    let b = load_bundle(&v.to_string()).unwrap();
    let tag = a.descriptor.image.full_tag();
    let r = empty_report(a);
    let e = evaluate(&b, &EvalInput::new(a, &r, &tag), NOW);
    assert!(e.findings.is_empty());
    assert_eq!(
        (e.final_action, e.final_action_reason.as_str()),
        (Action::Go, "no_match")
    );
}

// ---- dockerfile ----------------------------------------------------------------------------

#[test]
fn dockerfile_instruction() {
    // misconfig-secrets' history has `EXPOSE 22` and `USER root`, and no HEALTHCHECK.
    let f = fire(
        MS,
        "dockerfile",
        "instruction",
        &[("instruction", "HEALTHCHECK"), ("check", "not_exists")],
    );
    assert_eq!(
        messages(&f),
        ["Dockerfile directive 'HEALTHCHECK' not found, matching condition 'not_exists' check"]
    );
    assert!(fire(
        MS,
        "dockerfile",
        "instruction",
        &[("instruction", "HEALTHCHECK"), ("check", "exists")]
    )
    .is_empty());
    assert_eq!(
        fire(
            MS,
            "dockerfile",
            "instruction",
            &[("instruction", "EXPOSE"), ("check", "="), ("value", "22")]
        )
        .len(),
        1
    );
    assert_eq!(
        fire(
            MS,
            "dockerfile",
            "instruction",
            &[
                ("instruction", "USER"),
                ("check", "in"),
                ("value", "root,admin")
            ]
        )
        .len(),
        1
    );
    assert_eq!(
        fire(
            MS,
            "dockerfile",
            "instruction",
            &[("instruction", "cmd"), ("check", "like"), ("value", "sshd")]
        )
        .len(),
        1
    );
    assert!(fire(
        PY,
        "dockerfile",
        "instruction",
        &[("instruction", "EXPOSE"), ("check", "exists")]
    )
    .is_empty());
    assert!(fire(
        PY,
        "dockerfile",
        "instruction",
        &[("instruction", "CMD"), ("check", "like"), ("value", "sshd")]
    )
    .is_empty());
    // A HEALTHCHECK in the config counts.
    let mut a = common::image(PY).clone();
    a.descriptor.config.healthcheck = Some(vec!["CMD".into(), "true".into()]);
    assert!(fire_on(
        &a,
        "dockerfile",
        "instruction",
        &[("instruction", "HEALTHCHECK"), ("check", "not_exists")]
    )
    .is_empty());
    // actual_dockerfile_only: the guessed Dockerfile is not looked at.
    assert!(fire(
        MS,
        "dockerfile",
        "instruction",
        &[
            ("instruction", "EXPOSE"),
            ("check", "exists"),
            ("actual_dockerfile_only", "true")
        ]
    )
    .is_empty());
}

#[test]
fn dockerfile_effective_user() {
    let f = fire(
        MS,
        "dockerfile",
        "effective_user",
        &[("users", "root"), ("type", "blacklist")],
    );
    assert_eq!(
        messages(&f),
        ["User root found as effective user, which is explicitly not allowed list"]
    );
    assert!(fire(
        MS,
        "dockerfile",
        "effective_user",
        &[("users", "root"), ("type", "whitelist")]
    )
    .is_empty());
    assert!(fire(
        MS,
        "dockerfile",
        "effective_user",
        &[("users", "app,nobody"), ("type", "blacklist")]
    )
    .is_empty());
    // No USER means root (python-app sets none).
    assert_eq!(
        fire(
            PY,
            "dockerfile",
            "effective_user",
            &[("users", "app"), ("type", "whitelist")]
        )
        .len(),
        1
    );
}

#[test]
fn dockerfile_exposed_ports() {
    let f = fire(
        MS,
        "dockerfile",
        "exposed_ports",
        &[("ports", "22"), ("type", "blacklist")],
    );
    assert_eq!(
        messages(&f),
        ["Dockerfile exposes port (22) which is in policy file DENIEDPORTS list"]
    );
    assert!(fire(
        PY,
        "dockerfile",
        "exposed_ports",
        &[("ports", "22"), ("type", "blacklist")]
    )
    .is_empty());
    assert!(fire(
        MS,
        "dockerfile",
        "exposed_ports",
        &[("ports", "22,443"), ("type", "whitelist")]
    )
    .is_empty());
    assert_eq!(
        fire(
            MS,
            "dockerfile",
            "exposed_ports",
            &[("ports", "443"), ("type", "whitelist")]
        )
        .len(),
        1
    );
}

#[test]
fn dockerfile_no_dockerfile_provided() {
    assert_eq!(
        fire(MS, "dockerfile", "no_dockerfile_provided", &[]).len(),
        1
    );
    let mut a = common::image(MS).clone();
    a.dockerfile = Some(Dockerfile {
        mode: DockerfileMode::Actual,
        text: "FROM debian\nUSER root\nEXPOSE 22\n".into(),
        instructions: vec![
            DockerInstruction {
                instruction: "FROM".into(),
                args: "debian".into(),
            },
            DockerInstruction {
                instruction: "USER".into(),
                args: "root".into(),
            },
            DockerInstruction {
                instruction: "EXPOSE".into(),
                args: "22".into(),
            },
        ],
    });
    assert!(fire_on(&a, "dockerfile", "no_dockerfile_provided", &[]).is_empty());
    // With the actual Dockerfile, actual_dockerfile_only rules look at it.
    assert_eq!(
        fire_on(
            &a,
            "dockerfile",
            "exposed_ports",
            &[
                ("ports", "22"),
                ("type", "blacklist"),
                ("actual_dockerfile_only", "true")
            ]
        )
        .len(),
        1
    );
}

// ---- files ---------------------------------------------------------------------------------

#[test]
fn files_content_regex_match() {
    // The content-search analyzer's matches: misconfig-secrets has the configured regex
    // in two files; with `regex_name` the check is limited to that regex.
    let want = [
        format!("File content analyzer found regexp match in container: file=/opt/app/.env regexp={}", common::CONTENT_REGEX),
        format!("File content analyzer found regexp match in container: file=/root/.aws/credentials regexp={}", common::CONTENT_REGEX),
    ];
    let mut all = fire(MS, "files", "content_regex_match", &[]);
    all.sort_by(|a, b| a.message.cmp(&b.message));
    assert_eq!(messages(&all), want);
    let mut named = fire(
        MS,
        "files",
        "content_regex_match",
        &[("regex_name", common::CONTENT_REGEX)],
    );
    named.sort_by(|a, b| a.message.cmp(&b.message));
    assert_eq!(messages(&named), want);
    assert!(fire(
        MS,
        "files",
        "content_regex_match",
        &[("regex_name", "no-such-regex")]
    )
    .is_empty());
    assert!(fire(PY, "files", "content_regex_match", &[]).is_empty());
    // Retrieved files (/etc/passwd here) are searched too: misconfig-secrets added `toor`.
    let f = fire(
        MS,
        "files",
        "content_regex_match",
        &[("regex_name", "^toor:")],
    );
    assert_eq!(
        messages(&f),
        ["File content analyzer found regexp match in container: file=/etc/passwd regexp=^toor:"]
    );
    assert!(fire(
        PY,
        "files",
        "content_regex_match",
        &[("regex_name", "^toor:")]
    )
    .is_empty());
}

#[test]
fn files_name_match() {
    let f = fire(
        MS,
        "files",
        "name_match",
        &[("regex", r"^/root/\.aws/credentials$")],
    );
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("file=/root/.aws/credentials"));
    assert!(fire(
        PY,
        "files",
        "name_match",
        &[("regex", r"^/root/\.aws/credentials$")]
    )
    .is_empty());
}

#[test]
fn files_attribute_match() {
    let a = common::image(MS);
    let passwd = a.files.iter().find(|f| f.path == "/etc/passwd").unwrap();
    let mode = format!("{:o}", passwd.mode & 0o7777);
    assert_eq!(
        fire(
            MS,
            "files",
            "attribute_match",
            &[("filename", "/etc/passwd"), ("mode", &mode)]
        )
        .len(),
        1
    );
    assert!(fire(
        MS,
        "files",
        "attribute_match",
        &[
            ("filename", "/etc/passwd"),
            ("mode", &mode),
            ("mode_op", "not_equals")
        ]
    )
    .is_empty());
    if let Some(sum) = &passwd.sha256 {
        assert_eq!(
            fire(
                MS,
                "files",
                "attribute_match",
                &[
                    ("filename", "/etc/passwd"),
                    ("checksum", sum),
                    ("checksum_match", "equals")
                ]
            )
            .len(),
            1
        );
        // python-app's /etc/passwd has no `toor`: another checksum.
        assert!(fire(
            PY,
            "files",
            "attribute_match",
            &[
                ("filename", "/etc/passwd"),
                ("checksum", sum),
                ("checksum_match", "equals")
            ]
        )
        .is_empty());
    }
    // Missing file: skipped by default, reported with skip_missing=false.
    assert!(fire(
        MS,
        "files",
        "attribute_match",
        &[("filename", "/nope"), ("mode", "644")]
    )
    .is_empty());
    assert_eq!(
        fire(
            MS,
            "files",
            "attribute_match",
            &[
                ("filename", "/nope"),
                ("mode", "644"),
                ("skip_missing", "false")
            ]
        )
        .len(),
        1
    );
}

#[test]
fn files_suid_or_guid_set() {
    let f = fire(PY, "files", "suid_or_guid_set", &[]);
    assert!(
        messages(&f)
            .iter()
            .any(|m| m.starts_with("SUID or SGID found set on file /usr/bin/chsh")),
        "{f:?}"
    );
    let mut a = common::image(PY).clone();
    for f in &mut a.files {
        f.mode &= !0o6000;
    }
    assert!(fire_on(&a, "files", "suid_or_guid_set", &[]).is_empty());
}

// ---- passwd_file ---------------------------------------------------------------------------

#[test]
fn passwd_content_not_available() {
    assert!(fire(MS, "passwd_file", "content_not_available", &[]).is_empty());
    let mut a = common::image(MS).clone();
    a.users.clear();
    a.passwd_present = false;
    a.retrieved_files.retain(|f| f.path != "/etc/passwd");
    assert_eq!(
        fire_on(&a, "passwd_file", "content_not_available", &[]).len(),
        1
    );
}

#[test]
fn passwd_blacklists() {
    let toor = common::image(MS)
        .users
        .iter()
        .find(|u| u.name == "toor")
        .unwrap()
        .entry
        .as_str();
    let f = fire(
        MS,
        "passwd_file",
        "blacklist_usernames",
        &[("user_names", "toor,games2")],
    );
    assert_eq!(
        messages(&f),
        [format!(
            "Blacklisted user 'toor' found in image's /etc/passwd: pentry={toor}"
        )]
    );
    assert!(fire(
        PY,
        "passwd_file",
        "blacklist_usernames",
        &[("user_names", "toor")]
    )
    .is_empty());

    // uid 0: root and toor in misconfig-secrets, only root in python-app.
    assert_eq!(
        fire(MS, "passwd_file", "blacklist_userids", &[("user_ids", "0")]).len(),
        2
    );
    assert_eq!(
        fire(PY, "passwd_file", "blacklist_userids", &[("user_ids", "0")]).len(),
        1
    );
    assert!(fire(
        MS,
        "passwd_file",
        "blacklist_userids",
        &[("user_ids", "4242")]
    )
    .is_empty());

    let g0_ms = fire(
        MS,
        "passwd_file",
        "blacklist_groupids",
        &[("group_ids", "0")],
    )
    .len();
    let g0_py = fire(
        PY,
        "passwd_file",
        "blacklist_groupids",
        &[("group_ids", "0")],
    )
    .len();
    assert_eq!(g0_ms, g0_py + 1, "toor has gid 0");
    assert!(fire(
        MS,
        "passwd_file",
        "blacklist_groupids",
        &[("group_ids", "4242")]
    )
    .is_empty());

    let bash_ms = fire(
        MS,
        "passwd_file",
        "blacklist_shells",
        &[("shells", "/bin/bash")],
    );
    assert!(messages(&bash_ms)
        .iter()
        .any(|m| m.contains("pentry=toor:")));
    assert!(fire(
        MS,
        "passwd_file",
        "blacklist_shells",
        &[("shells", "/bin/zsh")]
    )
    .is_empty());

    assert_eq!(
        fire(
            MS,
            "passwd_file",
            "blacklist_full_entry",
            &[("entry", toor)]
        )
        .len(),
        1
    );
    assert!(fire(
        PY,
        "passwd_file",
        "blacklist_full_entry",
        &[("entry", toor)]
    )
    .is_empty());
}

// ---- packages ------------------------------------------------------------------------------

#[test]
fn packages_required_package() {
    let f = fire(
        PY,
        "packages",
        "required_package",
        &[("name", "openssh-server")],
    );
    assert_eq!(
        messages(&f),
        ["Required package 'openssh-server' not present in image"]
    );
    assert!(fire(PY, "packages", "required_package", &[("name", "bash")]).is_empty());
    assert!(fire(
        PY,
        "packages",
        "required_package",
        &[
            ("name", "bash"),
            ("version", "1.0"),
            ("version_match_type", "minimum")
        ]
    )
    .is_empty());
    assert_eq!(
        fire(
            PY,
            "packages",
            "required_package",
            &[
                ("name", "bash"),
                ("version", "99.0"),
                ("version_match_type", "minimum")
            ]
        )
        .len(),
        1
    );
    assert_eq!(
        fire(
            PY,
            "packages",
            "required_package",
            &[("name", "bash"), ("version", "1.0")]
        )
        .len(),
        1,
        "exact"
    );
}

#[test]
fn packages_verify() {
    // The testbed slims its images (no docs, man pages, locales): dpkg-listed files under
    // /usr/share/doc are really missing.
    let f = fire(PY, "packages", "verify", &[("check", "missing")]);
    assert!(
        messages(&f)
            .iter()
            .any(|m| m.contains("'/usr/share/doc/bash/")),
        "{:?}",
        &messages(&f)[..f.len().min(5)]
    );
    // Binaries and libraries are intact (merged /usr: /bin → /usr/bin resolved).
    let dirs = (
        "only_directories",
        "/bin,/sbin,/usr/bin,/usr/sbin,/lib,/usr/lib",
    );
    let f = fire(PY, "packages", "verify", &[dirs, ("check", "missing")]);
    assert!(f.is_empty(), "{:?}", &messages(&f)[..f.len().min(5)]);
    let mut a = common::image(PY).clone();
    a.files.retain(|f| f.path != "/usr/bin/bash");
    let f = fire_on(
        &a,
        "packages",
        "verify",
        &[("only_packages", "bash"), dirs, ("check", "missing")],
    );
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].message.contains("'bash'") && f[0].message.contains("'missing'"));
    assert!(fire_on(
        &a,
        "packages",
        "verify",
        &[("only_packages", "coreutils"), dirs]
    )
    .is_empty());
}

#[test]
fn packages_verify_changed() {
    let dirs = (
        "only_directories",
        "/bin,/sbin,/usr/bin,/usr/sbin,/lib,/usr/lib",
    );
    let img = common::image(PY);
    let bash = img.packages.iter().find(|p| p.name == "bash").unwrap();
    assert!(
        bash.file_digests.contains_key("/bin/bash"),
        "dpkg md5sums are read: {:?}",
        bash.file_digests.keys().take(3).collect::<Vec<_>>()
    );
    // Every packaged binary and library matches its md5sums entry.
    let f = fire(PY, "packages", "verify", &[dirs, ("check", "changed")]);
    assert!(f.is_empty(), "{:?}", &messages(&f)[..f.len().min(5)]);
    // A file whose content differs from the database's record (dpkg lists /bin/bash; the
    // merged /usr puts it at /usr/bin/bash).
    let mut a = img.clone();
    let e = a
        .files
        .iter_mut()
        .find(|f| f.path == "/usr/bin/bash")
        .unwrap();
    assert!(e.md5.is_some(), "extract hashed the file");
    e.md5 = Some("0".repeat(32));
    let f = fire_on(
        &a,
        "packages",
        "verify",
        &[("only_packages", "bash"), dirs, ("check", "changed")],
    );
    assert_eq!(messages(&f), ["VERIFY check against package db for package 'bash' failed on entry '/bin/bash' with status: 'changed'"]);
    assert!(fire_on(
        &a,
        "packages",
        "verify",
        &[("only_packages", "bash"), dirs, ("check", "missing")]
    )
    .is_empty());
}

/// An analysis of one real layer (a tar of `files`, indexed with `hash_files` as
/// `[extract] hash_files = true` does), for package databases the testbed has none of.
fn analysis_of_layer(files: &[(&str, &[u8])]) -> Analysis {
    let tar = vigil_testkit::tar_of(files);
    let digest = "sha256:00000000000000000000000000000000000000000000000000000000000000aa";
    let limits = vigil_extract::ExtractLimits {
        hash_files: true,
        ..Default::default()
    };
    let idx = vigil_extract::index_layer(&tar[..], digest, &limits).unwrap();
    let desc = ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::Registry,
            name: "127.0.0.1:5000/verify".into(),
            tag: Some("latest".into()),
            digest: "sha256:00000000000000000000000000000000000000000000000000000000000000bb"
                .into(),
            index_digest: None,
            config_digest: "sha256:cc".into(),
            platform: "linux/amd64".into(),
        },
        config: ImageConfig::default(),
        layers: vec![LayerRef {
            digest: digest.into(),
            diff_id: None,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: tar.len() as u64,
            compression: Compression::None,
        }],
    };
    let a = vigil_analyze::analyze(&desc, &[idx]);
    assert!(!a.files.is_empty(), "analysis holds the file list");
    a
}

/// The analysis with one file's content replaced (what extract would then record).
fn with_changed_file(a: &Analysis, path: &str) -> Analysis {
    use sha1::Digest as _;
    let mut a = a.clone();
    let e = a.files.iter_mut().find(|f| f.path == path).unwrap();
    let data = b"tampered\n";
    e.sha256 = Some(hex(&sha2::Sha256::digest(data)));
    e.sha1 = Some(hex(&sha1::Sha1::digest(data)));
    e.md5 = Some("0".repeat(32));
    a
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn packages_verify_changed_apk_sha1() {
    use base64::Engine as _;
    use sha1::Digest as _;
    let busybox: &[u8] = b"\x7fELF pretend busybox\n";
    let conf: &[u8] = b"# securetty\nconsole\n";
    let q1 = |d: &[u8]| {
        format!(
            "Q1{}",
            base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(d))
        )
    };
    // An apk database as apk writes it: `Z:` (Q1 + base64 sha1) after each `R:` line.
    let db = format!(
        "C:Q1hdUpqRv5mYgJEqW52UmVsvmeedU=\nP:busybox\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\
         F:bin\nR:busybox\na:0:0:755\nZ:{}\nF:etc\nR:securetty\nZ:{}\n\n",
        q1(busybox),
        q1(conf)
    );
    let a = analysis_of_layer(&[
        ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
        ("lib/apk/db/installed", db.as_bytes()),
        ("bin/busybox", busybox),
        ("etc/securetty", conf),
    ]);
    let bb = a.packages.iter().find(|p| p.name == "busybox").unwrap();
    assert_eq!(
        bb.file_digests.get("/bin/busybox").map(String::as_str),
        Some(format!("sha1:{}", hex(&sha1::Sha1::digest(busybox))).as_str()),
        "{:?}",
        bb.file_digests
    );
    assert_eq!(bb.file_digests.len(), 2);
    let f = a.files.iter().find(|f| f.path == "/bin/busybox").unwrap();
    assert_eq!(
        f.sha1,
        Some(hex(&sha1::Sha1::digest(busybox))),
        "extract hashed sha1"
    );
    let changed = [("check", "changed")];
    // Untouched: the recorded sha1s match.
    let f = fire_on(&a, "packages", "verify", &changed);
    assert!(f.is_empty(), "{:?}", messages(&f));
    // One file changed: exactly that one fires.
    let f = fire_on(
        &with_changed_file(&a, "/etc/securetty"),
        "packages",
        "verify",
        &changed,
    );
    assert_eq!(messages(&f), ["VERIFY check against package db for package 'busybox' failed on entry '/etc/securetty' with status: 'changed'"]);
}

#[test]
fn packages_verify_changed_rpm_sha256_and_md5() {
    use sha1::Digest as _;
    use vigil_analyze::rpm::{header, ndb};
    let tool: &[u8] = b"#!/bin/sh\necho tool\n";
    let conf: &[u8] = b"setting = 1\n";
    let old: &[u8] = b"legacy binary\n";
    let sha256 = hex(&sha2::Sha256::digest(tool));
    let sha256_conf = hex(&sha2::Sha256::digest(conf));
    // rpm ≥ 4.6: FILEDIGESTALGO 8 (sha256); the directory has an empty digest.
    let modern = header::build(
        &[
            (header::tag::NAME, &["tool"]),
            (header::tag::VERSION, &["1.0"]),
            (header::tag::RELEASE, &["1.el9"]),
            (header::tag::ARCH, &["x86_64"]),
            (header::tag::BASENAMES, &["tool", "tool", "tool.conf"]),
            (
                header::tag::DIRNAMES,
                &["/usr/bin/", "/usr/share/", "/etc/"],
            ),
            (header::tag::FILEDIGESTS, &[&sha256, "", &sha256_conf]),
        ],
        &[
            (header::tag::DIRINDEXES, &[0, 1, 2]),
            (header::tag::FILEDIGESTALGO, &[8]),
        ],
    );
    // An old header without FILEDIGESTALGO: md5.
    let md5 = hex(&md5::Md5::digest(old));
    let legacy = header::build(
        &[
            (header::tag::NAME, &["legacy"]),
            (header::tag::VERSION, &["0.9"]),
            (header::tag::RELEASE, &["1.el7"]),
            (header::tag::BASENAMES, &["legacy"]),
            (header::tag::DIRNAMES, &["/usr/bin/"]),
            (header::tag::FILEDIGESTS, &[&md5]),
        ],
        &[(header::tag::DIRINDEXES, &[0])],
    );
    let db = ndb::build(&[modern, legacy]);
    let a = analysis_of_layer(&[
        ("etc/os-release", b"ID=\"rhel\"\nVERSION_ID=\"9.4\"\n"),
        ("usr/lib/sysimage/rpm/Packages.db", &db),
        ("usr/bin/tool", tool),
        ("etc/tool.conf", conf),
        ("usr/bin/legacy", old),
    ]);
    let t = a.packages.iter().find(|p| p.name == "tool").unwrap();
    assert_eq!(
        t.file_digests
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [
            ("/etc/tool.conf", format!("sha256:{sha256_conf}").as_str()),
            ("/usr/bin/tool", format!("sha256:{sha256}").as_str()),
        ],
        "the directory's empty digest is skipped"
    );
    let l = a.packages.iter().find(|p| p.name == "legacy").unwrap();
    assert_eq!(
        l.file_digests.get("/usr/bin/legacy"),
        Some(&format!("md5:{md5}"))
    );
    let changed = [("check", "changed")];
    let f = fire_on(&a, "packages", "verify", &changed);
    assert!(f.is_empty(), "untouched files match: {:?}", messages(&f));
    let f = fire_on(
        &with_changed_file(&a, "/usr/bin/tool"),
        "packages",
        "verify",
        &changed,
    );
    assert_eq!(messages(&f), ["VERIFY check against package db for package 'tool' failed on entry '/usr/bin/tool' with status: 'changed'"]);
    let f = fire_on(
        &with_changed_file(&a, "/usr/bin/legacy"),
        "packages",
        "verify",
        &changed,
    );
    assert_eq!(messages(&f), ["VERIFY check against package db for package 'legacy' failed on entry '/usr/bin/legacy' with status: 'changed'"]);
    // Without hashing (no digests recorded by extract), nothing is reported as changed.
    let mut unhashed = with_changed_file(&a, "/usr/bin/tool");
    for f in &mut unhashed.files {
        (f.sha256, f.sha1, f.md5) = (None, None, None);
    }
    assert!(fire_on(&unhashed, "packages", "verify", &changed).is_empty());
}

#[test]
fn packages_blacklist() {
    let bash = common::image(PY)
        .packages
        .iter()
        .find(|p| p.name == "bash")
        .unwrap();
    assert_eq!(
        fire(PY, "packages", "blacklist", &[("name", "bash")]).len(),
        1
    );
    assert_eq!(
        fire(
            PY,
            "packages",
            "blacklist",
            &[("name", "bash"), ("version", &bash.version)]
        )
        .len(),
        1
    );
    assert!(fire(
        PY,
        "packages",
        "blacklist",
        &[("name", "bash"), ("version", "0.1")]
    )
    .is_empty());
    assert!(fire(PY, "packages", "blacklist", &[("name", "openssh-server")]).is_empty());
    // Language packages are not OS packages.
    assert!(fire(PY, "packages", "blacklist", &[("name", "requests")]).is_empty());
}

// ---- npms / ruby_gems ----------------------------------------------------------------------

#[test]
fn npms() {
    let f = fire(
        NODE,
        "npms",
        "blacklisted_name_version",
        &[("name", "lodash"), ("version", "4.17.15")],
    );
    assert_eq!(messages(&f), ["NPM Package is blacklisted: lodash-4.17.15"]);
    assert!(fire(
        NODE,
        "npms",
        "blacklisted_name_version",
        &[("name", "lodash"), ("version", "4.17.21")]
    )
    .is_empty());
    assert!(fire(
        PY,
        "npms",
        "blacklisted_name_version",
        &[("name", "lodash")]
    )
    .is_empty());
    // No npm package feed exists: the feed triggers never fire, feed_data_unavailable does.
    for t in [
        "newer_version_in_feed",
        "unknown_in_feeds",
        "version_not_in_feeds",
    ] {
        assert!(fire(NODE, "npms", t, &[]).is_empty(), "{t}");
    }
    assert_eq!(fire(NODE, "npms", "feed_data_unavailable", &[]).len(), 1);
}

#[test]
fn ruby_gems() {
    // No testbed image has gems: the firing case adds one to python-app's analysis.
    assert!(fire(PY, "ruby_gems", "blacklist", &[("name", "rails")]).is_empty());
    let mut a = common::image(PY).clone();
    a.packages
        .push(Package::new("rails", "5.2.0", PackageType::Gem));
    assert_eq!(
        messages(&fire_on(&a, "ruby_gems", "blacklist", &[("name", "rails")])),
        ["Gem is blacklisted: rails"]
    );
    assert!(fire_on(
        &a,
        "ruby_gems",
        "blacklist",
        &[("name", "rails"), ("version", "6.0")]
    )
    .is_empty());
    for t in [
        "newer_version_found_in_feed",
        "not_found_in_feed",
        "version_not_found_in_feed",
    ] {
        assert!(fire_on(&a, "ruby_gems", t, &[]).is_empty(), "{t}");
    }
    assert_eq!(
        fire_on(&a, "ruby_gems", "feed_data_unavailable", &[]).len(),
        1
    );
}

// ---- licenses ------------------------------------------------------------------------------

#[test]
fn licenses() {
    let exact = fire(
        PY,
        "licenses",
        "blacklist_exact_match",
        &[("licenses", "GPL-2+")],
    );
    assert!(
        messages(&exact).iter().any(|m| m.contains("adduser")),
        "{exact:?}"
    );
    let partial = fire(
        PY,
        "licenses",
        "blacklist_partial_match",
        &[("licenses", "gpl")],
    );
    assert!(partial.len() > exact.len());
    assert!(fire(
        PY,
        "licenses",
        "blacklist_exact_match",
        &[("licenses", "GPL-9")]
    )
    .is_empty());
    assert!(fire(
        PY,
        "licenses",
        "blacklist_partial_match",
        &[("licenses", "WTFPL")]
    )
    .is_empty());
}

// ---- metadata ------------------------------------------------------------------------------

#[test]
fn metadata_attribute() {
    let m = |attr: &str, check: &str, value: &str| {
        fire(
            MS,
            "metadata",
            "attribute",
            &[("attribute", attr), ("check", check), ("value", value)],
        )
        .len()
    };
    assert_eq!(m("distro", "=", "debian"), 1);
    assert_eq!(m("distro", "=", "alpine"), 0);
    assert_eq!(m("distro_version", ">=", "12"), 1);
    assert_eq!(m("architecture", "in", "amd64,arm64"), 1);
    assert_eq!(m("os_type", "not_in", "linux"), 0);
    assert_eq!(m("layer_count", "=", "2"), 1);
    assert_eq!(m("size", ">", "10mb"), 1);
    assert_eq!(m("size", ">", "1gb"), 0);
    assert_eq!(m("size", "<", "1gb"), 1);
    assert_eq!(m("distro", "like", "^deb"), 1);
    assert_eq!(
        fire(
            MS,
            "metadata",
            "attribute",
            &[("attribute", "distro"), ("check", "exists")]
        )
        .len(),
        1
    );
    assert_eq!(
        fire(
            MS,
            "metadata",
            "attribute",
            &[("attribute", "like_distro"), ("check", "exists")]
        )
        .len(),
        0,
        "debian has no ID_LIKE"
    );
}

// ---- malware -------------------------------------------------------------------------------

#[test]
fn malware() {
    // No scanner: `scans` never fires, `scan_not_run` always does.
    assert!(fire(MS, "malware", "scans", &[]).is_empty());
    assert_eq!(
        messages(&fire(MS, "malware", "scan_not_run", &[])),
        ["No malware scans found for image"]
    );
}

// ---- retrieved_files -----------------------------------------------------------------------

#[test]
fn retrieved_files() {
    assert!(fire(
        MS,
        "retrieved_files",
        "content_not_available",
        &[("path", "/etc/passwd")]
    )
    .is_empty());
    assert_eq!(
        fire(
            MS,
            "retrieved_files",
            "content_not_available",
            &[("path", "/etc/nginx/nginx.conf")]
        )
        .len(),
        1
    );

    let f = fire(
        MS,
        "retrieved_files",
        "content_regex",
        &[
            ("path", "/etc/passwd"),
            ("regex", "toor:"),
            ("check", "match"),
        ],
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].trigger_id, "rule-1+file:///etc/passwd");
    assert!(fire(
        PY,
        "retrieved_files",
        "content_regex",
        &[
            ("path", "/etc/passwd"),
            ("regex", "toor:"),
            ("check", "match")
        ]
    )
    .is_empty());
    assert_eq!(
        fire(
            PY,
            "retrieved_files",
            "content_regex",
            &[
                ("path", "/etc/passwd"),
                ("regex", "toor:"),
                ("check", "no_match")
            ]
        )
        .len(),
        1
    );
    // A file that was not retrieved: nothing either way.
    assert!(fire(
        MS,
        "retrieved_files",
        "content_regex",
        &[("path", "/nope"), ("regex", "x"), ("check", "no_match")]
    )
    .is_empty());
}

// ---- secret_scans --------------------------------------------------------------------------

#[test]
fn secret_scans() {
    let any = fire(MS, "secret_scans", "content_regex_checks", &[]);
    let ms = messages(&any);
    assert!(ms.contains(&"Secret search analyzer found regexp match in container: file=/root/.aws/credentials regexp=AWS_ACCESS_KEY"), "{ms:?}");
    assert!(fire(PY, "secret_scans", "content_regex_checks", &[]).is_empty());
    let aws_root = fire(
        MS,
        "secret_scans",
        "content_regex_checks",
        &[
            ("content_regex_name", "AWS_ACCESS_KEY"),
            ("filename_regex", "^/root/"),
        ],
    );
    assert_eq!(aws_root.len(), 1);
    // The documentation example key (…EXAMPLE) is not a finding.
    assert!(fire(
        MS,
        "secret_scans",
        "content_regex_checks",
        &[("filename_regex", "aws-example")]
    )
    .is_empty());
    assert_eq!(
        fire(
            PY,
            "secret_scans",
            "content_regex_checks",
            &[
                ("content_regex_name", "AWS_ACCESS_KEY"),
                ("match_type", "notfound")
            ]
        )
        .len(),
        1
    );
    assert!(fire(
        MS,
        "secret_scans",
        "content_regex_checks",
        &[
            ("content_regex_name", "AWS_ACCESS_KEY"),
            ("match_type", "notfound")
        ]
    )
    .is_empty());
}

// ---- vulnerabilities -----------------------------------------------------------------------

fn vfire(image: &'static str, trigger: &str, params: &[(&str, &str)]) -> Vec<PolicyFinding> {
    let a = common::image(image);
    fire_with(
        a,
        &common::matched_report(a),
        &[],
        "vulnerabilities",
        trigger,
        params,
    )
}

fn ids(f: &[PolicyFinding]) -> Vec<&str> {
    let mut v: Vec<&str> = f.iter().map(|f| f.trigger_id.as_str()).collect();
    v.sort();
    v
}

#[test]
fn vulnerabilities_package() {
    let all = vfire(PY, "package", &[("package_type", "all")]);
    assert_eq!(
        ids(&all),
        [
            "CVE-2018-18074+requests",
            "CVE-2019-11324+urllib3",
            "CVE-2020-14343+PyYAML"
        ]
    );
    assert!(vfire(PY, "package", &[("package_type", "os")]).is_empty());
    assert!(vfire(MS, "package", &[("package_type", "all")]).is_empty());
    let crit = vfire(
        PY,
        "package",
        &[
            ("package_type", "non-os"),
            ("severity_comparison", "="),
            ("severity", "critical"),
        ],
    );
    assert_eq!(ids(&crit), ["CVE-2020-14343+PyYAML"]);
    assert!(crit[0].message.starts_with("CRITICAL Vulnerability found in non-os package type (python) - PyYAML-5.3 (fixed in: 5.4 - CVE-2020-14343)"));
    // Medium only in node-app (minimist).
    assert_eq!(
        ids(&vfire(
            NODE,
            "package",
            &[
                ("package_type", "all"),
                ("severity_comparison", "="),
                ("severity", "medium")
            ]
        )),
        ["CVE-2020-7598+minimist"]
    );
    // CVSS v3 (NVD): base >= 9 → pyyaml only; vendor scores absent (-1) → nothing.
    assert_eq!(
        ids(&vfire(
            PY,
            "package",
            &[("package_type", "all"), ("cvss_v3_base_score", "9.0")]
        )),
        ["CVE-2020-14343+PyYAML"]
    );
    assert_eq!(
        vfire(
            PY,
            "package",
            &[
                ("package_type", "all"),
                ("cvss_v3_base_score", "9.0"),
                ("cvss_v3_base_score_comparison", "<")
            ]
        )
        .len(),
        2
    );
    assert_eq!(
        vfire(
            PY,
            "package",
            &[
                ("package_type", "all"),
                ("cvss_v3_exploitability_score", "3.9"),
                ("cvss_v3_exploitability_score_comparison", "=")
            ]
        )
        .len(),
        3
    );
    assert_eq!(
        ids(&vfire(
            PY,
            "package",
            &[("package_type", "all"), ("cvss_v3_impact_score", "5.0")]
        )),
        ["CVE-2020-14343+PyYAML"]
    );
    assert!(vfire(
        PY,
        "package",
        &[("package_type", "all"), ("vendor_cvss_v3_base_score", "0")]
    )
    .is_empty());
    assert_eq!(
        vfire(
            PY,
            "package",
            &[
                ("package_type", "all"),
                ("vendor_cvss_v3_base_score", "0"),
                ("vendor_cvss_v3_base_score_comparison", "<")
            ]
        )
        .len(),
        3
    );
    assert!(vfire(
        PY,
        "package",
        &[
            ("package_type", "all"),
            ("vendor_cvss_v3_exploitability_score", "1")
        ]
    )
    .is_empty());
    assert!(vfire(
        PY,
        "package",
        &[
            ("package_type", "all"),
            ("vendor_cvss_v3_impact_score", "1")
        ]
    )
    .is_empty());
    // Fix available: all have one.
    assert_eq!(
        vfire(
            PY,
            "package",
            &[("package_type", "all"), ("fix_available", "true")]
        )
        .len(),
        3
    );
    assert!(vfire(
        PY,
        "package",
        &[("package_type", "all"), ("fix_available", "false")]
    )
    .is_empty());
    // Published 2019, now 2027: older than 365 days, not older than 4000.
    assert_eq!(
        vfire(
            PY,
            "package",
            &[("package_type", "all"), ("max_days_since_creation", "365")]
        )
        .len(),
        3
    );
    assert!(vfire(
        PY,
        "package",
        &[("package_type", "all"), ("max_days_since_creation", "4000")]
    )
    .is_empty());
    assert_eq!(
        vfire(
            PY,
            "package",
            &[
                ("package_type", "all"),
                ("fix_available", "true"),
                ("max_days_since_fix", "30")
            ]
        )
        .len(),
        3
    );
    assert!(vfire(
        PY,
        "package",
        &[
            ("package_type", "all"),
            ("fix_available", "true"),
            ("max_days_since_fix", "4000")
        ]
    )
    .is_empty());
    // package_path_exclude (non-os): the site-packages path.
    assert!(vfire(
        PY,
        "package",
        &[
            ("package_type", "all"),
            ("package_path_exclude", "site-packages")
        ]
    )
    .is_empty());
    assert_eq!(
        vfire(
            PY,
            "package",
            &[("package_type", "all"), ("package_path_exclude", "^/opt/")]
        )
        .len(),
        3
    );
}

#[test]
fn vulnerabilities_vendor_only() {
    let a = common::image(PY);
    let mut r = common::matched_report(a);
    for f in &mut r.findings {
        if f.package.name == "urllib3" {
            f.state = FixState::WontFix;
        }
    }
    let with = fire_with(
        a,
        &r,
        &[],
        "vulnerabilities",
        "package",
        &[("package_type", "all")],
    );
    assert_eq!(with.len(), 2, "vendor_only=true (default) skips won't-fix");
    let without = fire_with(
        a,
        &r,
        &[],
        "vulnerabilities",
        "package",
        &[("package_type", "all"), ("vendor_only", "false")],
    );
    assert_eq!(without.len(), 3);
}

fn feed(last_sync: i64) -> Vec<FeedState> {
    vec![FeedState {
        feed: "debian".into(),
        url: String::new(),
        last_sync,
        record_count: 1,
        namespaces: [("debian:12".to_string(), 1u64)].into_iter().collect(),
        ..Default::default()
    }]
}

#[test]
fn vulnerabilities_stale_feed_data() {
    let a = common::image(PY);
    let r = common::matched_report(a);
    let p = [("max_days_since_sync", "2")];
    let f = fire_with(
        a,
        &r,
        &feed(NOW - 3 * DAY),
        "vulnerabilities",
        "stale_feed_data",
        &p,
    );
    assert_eq!(
        messages(&f),
        ["The vulnerability feed for this image distro is older than MAXAGE (2) days"]
    );
    assert!(fire_with(
        a,
        &r,
        &feed(NOW - DAY),
        "vulnerabilities",
        "stale_feed_data",
        &p
    )
    .is_empty());
    // No feed for the namespace counts as stale.
    assert_eq!(
        fire_with(a, &r, &[], "vulnerabilities", "stale_feed_data", &p).len(),
        1
    );
}

#[test]
fn vulnerabilities_data_unavailable() {
    assert!(vfire(PY, "vulnerability_data_unavailable", &[]).is_empty());
    let f = fire(PY, "vulnerabilities", "vulnerability_data_unavailable", &[]);
    assert_eq!(
        messages(&f),
        ["Feed data unavailable, cannot perform CVE scan for distro: debian:12"]
    );
}

#[test]
fn vulnerabilities_blacklist() {
    let f = vfire(
        PY,
        "blacklist",
        &[("vulnerability_ids", "CVE-2019-11324, CVE-0000-0001")],
    );
    assert_eq!(ids(&f), ["CVE-2019-11324+urllib3"]);
    assert!(vfire(PY, "blacklist", &[("vulnerability_ids", "CVE-0000-0001")]).is_empty());
    assert!(vfire(MS, "blacklist", &[("vulnerability_ids", "CVE-2019-11324")]).is_empty());
}

// ---- every trigger of the table is exercised ---------------------------------------------------

#[test]
fn table_has_13_gates_and_40_triggers() {
    let gates = vigil_evaluate::gates::GATES;
    assert_eq!(gates.len(), 13);
    assert_eq!(gates.iter().map(|g| g.triggers.len()).sum::<usize>(), 40);
    let pkg = vigil_evaluate::gates::gate("vulnerabilities")
        .unwrap()
        .trigger("package")
        .unwrap();
    assert_eq!(pkg.params.len(), 20);
}
