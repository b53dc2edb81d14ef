//! Benchmark: a 40-rule bundle (every gate) evaluated on an image with 2,000 packages,
//! 500 vulnerability findings, 20,000 files and a 300-item allowlist.
//!
//! `cargo run --release -p vigil-evaluate --example eval_bench`

use std::time::Instant;

use serde_json::json;
use vigil_contracts::*;
use vigil_evaluate::{evaluate, load_bundle, EvalInput};

const NOW: i64 = 1_800_000_000_000;

fn rules() -> Vec<serde_json::Value> {
    let r = |gate: &str, trigger: &str, action: &str, params: &[(&str, &str)]| {
        json!({"id": format!("{gate}-{trigger}-{}", params.len()), "gate": gate, "trigger": trigger, "action": action,
               "params": params.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>()})
    };
    vec![
        r("always", "always", "GO", &[]),
        r(
            "dockerfile",
            "instruction",
            "WARN",
            &[("instruction", "HEALTHCHECK"), ("check", "not_exists")],
        ),
        r(
            "dockerfile",
            "instruction",
            "WARN",
            &[
                ("instruction", "RUN"),
                ("check", "like"),
                ("value", "curl.*\\|.*sh"),
            ],
        ),
        r(
            "dockerfile",
            "effective_user",
            "STOP",
            &[("users", "root"), ("type", "blacklist")],
        ),
        r(
            "dockerfile",
            "exposed_ports",
            "STOP",
            &[("ports", "22,23"), ("type", "blacklist")],
        ),
        r("dockerfile", "no_dockerfile_provided", "GO", &[]),
        r(
            "files",
            "content_regex_match",
            "WARN",
            &[("regex_name", "password")],
        ),
        r("files", "name_match", "WARN", &[("regex", "\\.pem$")]),
        r(
            "files",
            "attribute_match",
            "WARN",
            &[
                ("filename", "/etc/passwd"),
                ("mode", "0600"),
                ("mode_op", "not_equals"),
            ],
        ),
        r("files", "suid_or_guid_set", "WARN", &[]),
        r("passwd_file", "content_not_available", "WARN", &[]),
        r(
            "passwd_file",
            "blacklist_usernames",
            "STOP",
            &[("user_names", "toor,admin")],
        ),
        r(
            "passwd_file",
            "blacklist_userids",
            "STOP",
            &[("user_ids", "0")],
        ),
        r(
            "passwd_file",
            "blacklist_groupids",
            "WARN",
            &[("group_ids", "0")],
        ),
        r(
            "passwd_file",
            "blacklist_shells",
            "WARN",
            &[("shells", "/bin/sh")],
        ),
        r(
            "passwd_file",
            "blacklist_full_entry",
            "STOP",
            &[("entry", "toor:x:0:0::/root:/bin/bash")],
        ),
        r(
            "packages",
            "required_package",
            "WARN",
            &[
                ("name", "ca-certificates"),
                ("version", "1.0"),
                ("version_match_type", "minimum"),
            ],
        ),
        r("packages", "verify", "WARN", &[("check", "missing")]),
        r("packages", "blacklist", "STOP", &[("name", "telnetd")]),
        r("npms", "feed_data_unavailable", "GO", &[]),
        r(
            "npms",
            "blacklisted_name_version",
            "STOP",
            &[("name", "event-stream"), ("version", "3.3.6")],
        ),
        r("ruby_gems", "feed_data_unavailable", "GO", &[]),
        r(
            "ruby_gems",
            "blacklist",
            "STOP",
            &[("name", "rest-client"), ("version", "1.6.13")],
        ),
        r(
            "licenses",
            "blacklist_exact_match",
            "WARN",
            &[("licenses", "AGPL-3.0")],
        ),
        r(
            "licenses",
            "blacklist_partial_match",
            "WARN",
            &[("licenses", "GPL")],
        ),
        r(
            "metadata",
            "attribute",
            "WARN",
            &[("attribute", "size"), ("check", ">"), ("value", "1gb")],
        ),
        r(
            "metadata",
            "attribute",
            "WARN",
            &[
                ("attribute", "distro"),
                ("check", "not_in"),
                ("value", "debian,alpine"),
            ],
        ),
        r("malware", "scan_not_run", "GO", &[]),
        r(
            "retrieved_files",
            "content_not_available",
            "WARN",
            &[("path", "/etc/ssh/sshd_config")],
        ),
        r(
            "retrieved_files",
            "content_regex",
            "STOP",
            &[
                ("path", "/etc/passwd"),
                ("regex", "toor"),
                ("check", "match"),
            ],
        ),
        r("secret_scans", "content_regex_checks", "STOP", &[]),
        r(
            "vulnerabilities",
            "package",
            "WARN",
            &[
                ("package_type", "all"),
                ("severity_comparison", "="),
                ("severity", "medium"),
            ],
        ),
        r(
            "vulnerabilities",
            "package",
            "STOP",
            &[
                ("package_type", "all"),
                ("severity_comparison", ">"),
                ("severity", "medium"),
            ],
        ),
        r(
            "vulnerabilities",
            "package",
            "STOP",
            &[("package_type", "os"), ("cvss_v3_base_score", "9.0")],
        ),
        r(
            "vulnerabilities",
            "package",
            "WARN",
            &[
                ("package_type", "non-os"),
                ("fix_available", "true"),
                ("max_days_since_fix", "30"),
            ],
        ),
        r(
            "vulnerabilities",
            "package",
            "WARN",
            &[
                ("package_type", "all"),
                ("max_days_since_creation", "90"),
                ("package_path_exclude", "^/opt/"),
            ],
        ),
        r(
            "vulnerabilities",
            "package",
            "WARN",
            &[
                ("package_type", "all"),
                ("vendor_cvss_v3_impact_score", "5"),
            ],
        ),
        r(
            "vulnerabilities",
            "stale_feed_data",
            "WARN",
            &[("max_days_since_sync", "2")],
        ),
        r(
            "vulnerabilities",
            "vulnerability_data_unavailable",
            "WARN",
            &[],
        ),
        r(
            "vulnerabilities",
            "blacklist",
            "STOP",
            &[("vulnerability_ids", "CVE-2014-0160,CVE-2021-44228")],
        ),
    ]
}

fn main() {
    let rules = rules();
    assert_eq!(rules.len(), 40);
    let items: Vec<_> = (0..300)
        .map(|i| json!({"id": format!("wl-{i}"), "gate": "vulnerabilities", "trigger_id": format!("CVE-2024-{:04}+pkg-{}", i * 3, i * 5)}))
        .chain([json!({"id": "wl-wild", "gate": "vulnerabilities", "trigger_id": "CVE-2023-*+*"})])
        .collect();
    let bundle_json = json!({
        "id": "bench", "name": "bench", "version": "1_0",
        "policies": [{"id": "p", "name": "p", "version": "1_0", "rules": rules}],
        "whitelists": [{"id": "wl", "name": "wl", "version": "1_0", "items": items}],
        "mappings": [{"id": "m", "name": "m", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"},
                      "policy_ids": ["p"], "whitelist_ids": ["wl"]}]
    })
    .to_string();
    let t = Instant::now();
    let bundle = load_bundle(&bundle_json).unwrap();
    let load_us = t.elapsed().as_secs_f64() * 1e6;

    let kinds = [
        PackageType::Deb,
        PackageType::Python,
        PackageType::Npm,
        PackageType::JavaArchive,
    ];
    let packages: Vec<Package> = (0..2000)
        .map(|i| {
            let mut p = Package::new(
                format!("pkg-{i}"),
                format!("1.{}.{}", i % 7, i % 13),
                kinds[i % 4],
            );
            p.licenses = vec![if i % 3 == 0 {
                "GPL-2+".into()
            } else {
                "MIT".into()
            }];
            p.locations = vec![format!("/usr/lib/pkg-{i}/METADATA")];
            if p.kind == PackageType::Deb {
                p.files = (0..5).map(|j| format!("/usr/share/pkg-{i}/f{j}")).collect();
            }
            p
        })
        .collect();
    let mut files: Vec<FileEntry> = (0..20_000)
        .map(|i| FileEntry {
            path: format!("/usr/share/pkg-{}/f{}", i / 10, i % 10),
            kind: EntryKind::File,
            mode: if i % 997 == 0 { 0o4755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 1000,
            link: None,
            sha256: None,
            md5: None,
            sha1: None,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let sevs = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
        Severity::Negligible,
    ];
    let findings: Vec<Finding> = (0..500)
        .map(|i| {
            let p = &packages[(i * 4) % 2000];
            Finding {
                vuln_id: format!("CVE-{}-{:04}", 2020 + i % 5, i),
                aliases: vec![],
                severity: sevs[i % 5],
                package: PackageRef {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    kind: p.kind,
                    location: p.locations.first().cloned(),
                },
                fixed_in: (i % 2 == 0).then(|| "9.9".to_string()),
                state: if i % 2 == 0 {
                    FixState::Fixed
                } else {
                    FixState::NotFixed
                },
                feed: "debian".into(),
                matched: MatchDetail {
                    namespace: "debian:12".into(),
                    searched_name: p.name.clone(),
                    comparator: "dpkg".into(),
                    constraint: "< 9.9".into(),
                },
                description: None,
                urls: vec![],
                cvss: vec![Cvss {
                    source: "nvd".into(),
                    version: "3.1".into(),
                    vector: String::new(),
                    base_score: (i % 100) as f64 / 10.0,
                    exploitability_score: Some(3.9),
                    impact_score: Some(5.9),
                }],
                published: Some("2024-01-01T00:00:00Z".into()),
                fix_published: Some("2024-02-01T00:00:00Z".into()),
                vendor_only: false,
            }
        })
        .collect();
    let passwd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\ntoor:x:0:0::/root:/bin/bash\n";
    let analysis = Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Registry,
                name: "registry.example.com/team/app".into(),
                tag: Some("1.0".into()),
                digest: "sha256:bench".into(),
                index_digest: None,
                config_digest: "sha256:c".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                user: Some("root".into()),
                exposed_ports: vec!["22/tcp".into(), "8080/tcp".into()],
                history: (0..30)
                    .map(|i| HistoryEntry {
                        created_by: Some(format!("RUN step {i}")),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            layers: vec![],
        },
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        }),
        packages,
        file_count: files.len() as u64,
        image_size: 300 * 1024 * 1024,
        analyzed_at: 0,
        analyzer_version: 1,
        warnings: vec![],
        files,
        users: vigil_evaluate::triggers::parse_passwd(passwd),
        groups: vec![],
        secrets: vec![SecretHit {
            path: "/app/.env".into(),
            rule: "AWS_ACCESS_KEY".into(),
            line: 1,
        }],
        retrieved_files: vec![RetrievedFile {
            path: "/etc/passwd".into(),
            content: passwd.as_bytes().to_vec(),
            truncated: false,
        }],
        dockerfile: None,
        passwd_present: true,
        from_sbom: false,
        content_matches: Vec::new(),
    };
    let report = VulnReport {
        image_digest: "sha256:bench".into(),
        findings,
        namespaces_with_data: vec!["debian:12".into()],
        matched_at: 0,
    };
    let feeds = vec![FeedState {
        feed: "debian".into(),
        last_sync: NOW - 3_600_000,
        namespaces: [("debian:12".to_string(), 1u64)].into_iter().collect(),
        ..Default::default()
    }];
    let tag = analysis.descriptor.image.full_tag();
    let input = EvalInput {
        feeds: &feeds,
        ..EvalInput::new(&analysis, &report, &tag)
    };

    let warm = evaluate(&bundle, &input, NOW);
    let iters = 200;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let e = evaluate(&bundle, &input, NOW);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(e);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = times.iter().sum::<f64>() / iters as f64;
    println!(
        "bundle: 40 rules, 301 allowlist items; image: {} packages, {} findings, {} files",
        analysis.packages.len(),
        report.findings.len(),
        analysis.files.len()
    );
    println!("load_bundle: {load_us:.0} µs");
    println!(
        "evaluate ({iters} runs): median {:.3} ms, mean {mean:.3} ms, p95 {:.3} ms, max {:.3} ms",
        times[iters / 2],
        times[iters * 95 / 100],
        times[iters - 1]
    );
    println!(
        "result: {} findings ({} allowlisted), final action {}",
        warm.findings.len(),
        warm.findings.iter().filter(|f| f.allowlisted).count(),
        warm.final_action.as_str()
    );
}
