use serde_json::json;
use vigil_contracts::*;

use crate::bundle::{load_bundle, PolicyError};
use crate::engine::{evaluate, md5_trigger_id, EvalInput};
use crate::{default_bundle, Bundle};

const NOW: i64 = 1_800_000_000_000;
const DIGEST: &str = "sha256:aaaa";

fn analysis(name: &str, tag: Option<&str>, ports: &[&str], user: Option<&str>) -> Analysis {
    Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Registry,
                name: name.into(),
                tag: tag.map(String::from),
                digest: DIGEST.into(),
                index_digest: None,
                config_digest: "sha256:cccc".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                user: user.map(String::from),
                exposed_ports: ports.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
            layers: vec![],
        },
        distro: None,
        packages: vec![],
        file_count: 0,
        image_size: 0,
        analyzed_at: 0,
        analyzer_version: 1,
        warnings: vec![],
        files: Vec::new(),
        users: Vec::new(),
        groups: Vec::new(),
        secrets: Vec::new(),
        retrieved_files: Vec::new(),
        dockerfile: None,
        passwd_present: false,
        from_sbom: false,
        content_matches: Vec::new(),
    }
}

fn finding(id: &str, pkg: &str, kind: PackageType, sev: Severity, state: FixState) -> Finding {
    Finding {
        vuln_id: id.into(),
        aliases: vec![],
        severity: sev,
        package: PackageRef {
            name: pkg.into(),
            version: "1.0".into(),
            kind,
            location: None,
        },
        fixed_in: (state == FixState::Fixed).then(|| "1.1".to_string()),
        state,
        feed: "test".into(),
        matched: MatchDetail {
            namespace: "debian:12".into(),
            searched_name: pkg.into(),
            comparator: "dpkg".into(),
            constraint: "< 1.1".into(),
        },
        description: None,
        urls: vec![],
        cvss: Vec::new(),
        published: None,
        fix_published: None,
        vendor_only: false,
    }
}

fn report(findings: Vec<Finding>) -> VulnReport {
    VulnReport {
        image_digest: DIGEST.into(),
        findings,
        namespaces_with_data: vec![],
        matched_at: 0,
    }
}

fn empty_report() -> VulnReport {
    report(vec![])
}

fn rule(gate: &str, trigger: &str, action: &str, params: &[(&str, &str)]) -> serde_json::Value {
    json!({
        "id": format!("r-{gate}-{trigger}"),
        "gate": gate, "trigger": trigger, "action": action,
        "params": params.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>()
    })
}

fn mapping(
    id: &str,
    registry: &str,
    repo: &str,
    ty: &str,
    value: &str,
    policy: &str,
) -> serde_json::Value {
    json!({"id": id, "name": id, "registry": registry, "repository": repo,
           "image": {"type": ty, "value": value}, "policy_ids": [policy], "whitelist_ids": ["wl"]})
}

fn bundle_json(rules: Vec<serde_json::Value>, items: Vec<serde_json::Value>) -> serde_json::Value {
    json!({
        "id": "b1", "name": "test", "version": "1_0",
        "policies": [
            {"id": "p1", "name": "p1", "version": "1_0", "rules": rules},
            {"id": "p-go", "name": "go", "version": "1_0", "rules": []}
        ],
        "whitelists": [{"id": "wl", "name": "wl", "version": "1_0", "items": items}],
        "mappings": [mapping("m1", "*", "*", "tag", "*", "p1")],
        "whitelisted_images": [], "blacklisted_images": []
    })
}

fn load(v: &serde_json::Value) -> Bundle {
    load_bundle(&v.to_string()).unwrap()
}

fn run(bundle: &Bundle, a: &Analysis, r: &VulnReport) -> Evaluation {
    let tag = a.descriptor.image.full_tag();
    evaluate(bundle, &EvalInput::new(a, r, &tag), NOW)
}

fn one_rule(gate: &str, trigger: &str, params: &[(&str, &str)]) -> Bundle {
    load(&bundle_json(
        vec![rule(gate, trigger, "STOP", params)],
        vec![],
    ))
}

fn img() -> Analysis {
    analysis("registry.example.com/team/app", Some("1.0"), &[], None)
}

// ---- triggers --------------------------------------------------------------------------

#[test]
fn always_fires() {
    let e = run(&one_rule("always", "always", &[]), &img(), &empty_report());
    assert_eq!(e.final_action, Action::Stop);
    assert_eq!(e.final_action_reason, "policy_evaluation");
    assert_eq!(e.findings.len(), 1);
    assert_eq!(
        e.findings[0].trigger_id,
        md5_trigger_id("always", "always", "always")
    );
    assert_eq!(e.findings[0].policy_id, "p1");
    assert_eq!(e.findings[0].rule_id, "r-always-always");
}

#[test]
fn nothing_fires_is_go() {
    let b = load(&bundle_json(vec![], vec![]));
    let e = run(&b, &img(), &empty_report());
    assert_eq!(e.final_action, Action::Go);
    assert!(e.findings.is_empty());
    assert_eq!(e.policy_ids, vec!["p1".to_string()]);
}

#[test]
fn exposed_ports_blacklist_and_whitelist() {
    let a = analysis("r.io/x", Some("1"), &["22/tcp", "80/tcp"], None);
    let bl = one_rule(
        "dockerfile",
        "exposed_ports",
        &[("ports", "22,23"), ("type", "blacklist")],
    );
    let e = run(&bl, &a, &empty_report());
    assert_eq!(e.findings.len(), 1);
    assert!(e.findings[0].message.contains("(22)"));
    assert_eq!(e.findings[0].trigger_id.len(), 32);

    let wl = one_rule(
        "dockerfile",
        "exposed_ports",
        &[("ports", "22"), ("type", "whitelist")],
    );
    let e = run(&wl, &a, &empty_report());
    assert_eq!(e.findings.len(), 1);
    assert!(e.findings[0].message.contains("(80)"));

    let none = analysis("r.io/x", Some("1"), &["8080/tcp"], None);
    assert!(run(&bl, &none, &empty_report()).findings.is_empty());
    let ok = analysis("r.io/x", Some("1"), &["22/tcp"], None);
    assert!(run(&wl, &ok, &empty_report()).findings.is_empty());
}

#[test]
fn effective_user_root_rules() {
    let bl = one_rule(
        "dockerfile",
        "effective_user",
        &[("users", "root"), ("type", "blacklist")],
    );
    // No USER means root.
    assert_eq!(
        run(
            &bl,
            &analysis("r.io/x", Some("1"), &[], None),
            &empty_report()
        )
        .findings
        .len(),
        1
    );
    assert_eq!(
        run(
            &bl,
            &analysis("r.io/x", Some("1"), &[], Some("")),
            &empty_report()
        )
        .findings
        .len(),
        1
    );
    // uid 0 counts as root.
    assert_eq!(
        run(
            &bl,
            &analysis("r.io/x", Some("1"), &[], Some("0:0")),
            &empty_report()
        )
        .findings
        .len(),
        1
    );
    assert!(run(
        &bl,
        &analysis("r.io/x", Some("1"), &[], Some("app")),
        &empty_report()
    )
    .findings
    .is_empty());

    let wl = one_rule(
        "dockerfile",
        "effective_user",
        &[("users", "app,nobody"), ("type", "whitelist")],
    );
    assert!(run(
        &wl,
        &analysis("r.io/x", Some("1"), &[], Some("nobody")),
        &empty_report()
    )
    .findings
    .is_empty());
    let e = run(
        &wl,
        &analysis("r.io/x", Some("1"), &[], None),
        &empty_report(),
    );
    assert_eq!(e.findings.len(), 1);
    assert!(e.findings[0].message.contains("root"));
}

#[test]
fn vuln_package_severity_comparisons() {
    let r = report(vec![
        finding(
            "CVE-1",
            "openssl",
            PackageType::Deb,
            Severity::Medium,
            FixState::Fixed,
        ),
        finding(
            "CVE-2",
            "zlib",
            PackageType::Deb,
            Severity::High,
            FixState::NotFixed,
        ),
        finding(
            "CVE-3",
            "requests",
            PackageType::Python,
            Severity::Critical,
            FixState::Fixed,
        ),
        finding(
            "CVE-4",
            "libx",
            PackageType::Deb,
            Severity::Low,
            FixState::Fixed,
        ),
    ]);
    let ids = |b: &Bundle| -> Vec<String> {
        run(b, &img(), &r)
            .findings
            .into_iter()
            .map(|f| f.trigger_id)
            .collect()
    };
    let eq = one_rule(
        "vulnerabilities",
        "package",
        &[
            ("package_type", "all"),
            ("severity_comparison", "="),
            ("severity", "medium"),
        ],
    );
    assert_eq!(ids(&eq), vec!["CVE-1+openssl"]);
    let gt = one_rule(
        "vulnerabilities",
        "package",
        &[
            ("package_type", "all"),
            ("severity_comparison", ">"),
            ("severity", "medium"),
        ],
    );
    assert_eq!(ids(&gt), vec!["CVE-2+zlib", "CVE-3+requests"]);
    let os = one_rule(
        "vulnerabilities",
        "package",
        &[
            ("package_type", "os"),
            ("severity_comparison", ">="),
            ("severity", "medium"),
        ],
    );
    assert_eq!(ids(&os), vec!["CVE-1+openssl", "CVE-2+zlib"]);
    let nonos = one_rule("vulnerabilities", "package", &[("package_type", "non-os")]);
    assert_eq!(ids(&nonos), vec!["CVE-3+requests"]);
    let lt = one_rule(
        "vulnerabilities",
        "package",
        &[
            ("package_type", "all"),
            ("severity_comparison", "<"),
            ("severity", "medium"),
        ],
    );
    assert_eq!(ids(&lt), vec!["CVE-4+libx"]);
    let ne = one_rule(
        "vulnerabilities",
        "package",
        &[
            ("package_type", "all"),
            ("severity_comparison", "!="),
            ("severity", "medium"),
        ],
    );
    assert_eq!(ids(&ne).len(), 3);
    let le = one_rule(
        "vulnerabilities",
        "package",
        &[
            ("package_type", "all"),
            ("severity_comparison", "<="),
            ("severity", "negligible"),
        ],
    );
    assert!(ids(&le).is_empty());
}

#[test]
fn vuln_package_fix_available_and_vendor_only() {
    let r = report(vec![
        finding(
            "CVE-1",
            "a",
            PackageType::Deb,
            Severity::High,
            FixState::Fixed,
        ),
        finding(
            "CVE-2",
            "b",
            PackageType::Deb,
            Severity::High,
            FixState::NotFixed,
        ),
        finding(
            "CVE-3",
            "c",
            PackageType::Deb,
            Severity::High,
            FixState::WontFix,
        ),
    ]);
    let ids = |b: &Bundle| -> Vec<String> {
        run(b, &img(), &r)
            .findings
            .into_iter()
            .map(|f| f.trigger_id)
            .collect()
    };
    let fixed = one_rule(
        "vulnerabilities",
        "package",
        &[("package_type", "all"), ("fix_available", "true")],
    );
    assert_eq!(ids(&fixed), vec!["CVE-1+a"]);
    let unfixed = one_rule(
        "vulnerabilities",
        "package",
        &[("package_type", "all"), ("fix_available", "FALSE")],
    );
    assert_eq!(ids(&unfixed), vec!["CVE-2+b"]);
    let all_vendor = one_rule(
        "vulnerabilities",
        "package",
        &[("package_type", "all"), ("vendor_only", "false")],
    );
    assert_eq!(ids(&all_vendor), vec!["CVE-1+a", "CVE-2+b", "CVE-3+c"]);
    // Parameter names are case-insensitive.
    let upper = one_rule(
        "vulnerabilities",
        "package",
        &[("Package_Type", "all"), ("VENDOR_ONLY", "true")],
    );
    assert_eq!(ids(&upper), vec!["CVE-1+a", "CVE-2+b"]);
}

// ---- mappings ----------------------------------------------------------------------------

fn mapped(mappings: Vec<serde_json::Value>) -> Bundle {
    let mut b = bundle_json(vec![rule("always", "always", "STOP", &[])], vec![]);
    b["mappings"] = json!(mappings);
    load(&b)
}

#[test]
fn mappings_first_match_wins() {
    let b = mapped(vec![
        mapping("go", "registry.example.com", "team/*", "tag", "1.*", "p-go"),
        mapping("stop", "*", "*", "tag", "*", "p1"),
    ]);
    let e = run(&b, &img(), &empty_report());
    assert_eq!(e.final_action, Action::Go);
    assert_eq!(e.policy_ids, vec!["p-go".to_string()]);
    let other = analysis("registry.example.com/team/app", Some("2.0"), &[], None);
    assert_eq!(run(&b, &other, &empty_report()).final_action, Action::Stop);
    // Order matters: the catch-all first shadows the specific one.
    let b = mapped(vec![
        mapping("stop", "*", "*", "tag", "*", "p1"),
        mapping("go", "registry.example.com", "team/*", "tag", "1.*", "p-go"),
    ]);
    assert_eq!(run(&b, &img(), &empty_report()).final_action, Action::Stop);
}

#[test]
fn mappings_regexp_digest_id_and_docker_hub() {
    let b = mapped(vec![mapping(
        "re",
        "regexp:registry\\.(example|other)\\.com",
        "regexp:team/a.p",
        "tag",
        "regexp:[0-9]+\\.[0-9]+",
        "p1",
    )]);
    assert_eq!(run(&b, &img(), &empty_report()).final_action, Action::Stop);
    let miss = analysis("registry.example.com/team/app", Some("latest"), &[], None);
    let e = run(&b, &miss, &empty_report());
    assert_eq!(
        (e.final_action, e.final_action_reason.as_str()),
        (Action::Go, "no_match")
    );

    let b = mapped(vec![mapping("d", "*", "*", "digest", DIGEST, "p1")]);
    assert_eq!(run(&b, &img(), &empty_report()).final_action, Action::Stop);
    let b = mapped(vec![mapping("d", "*", "*", "digest", "sha256:bbbb", "p1")]);
    assert_eq!(
        run(&b, &img(), &empty_report()).final_action_reason,
        "no_match"
    );
    let b = mapped(vec![mapping("i", "*", "*", "id", "cccc", "p1")]);
    assert_eq!(run(&b, &img(), &empty_report()).final_action, Action::Stop);

    // Short Docker Hub names map to docker.io/library/…; `dockerhub` means docker.io.
    let hub = analysis("nginx", Some("latest"), &[], None);
    let b = mapped(vec![mapping(
        "h",
        "dockerhub",
        "library/nginx",
        "tag",
        "latest",
        "p1",
    )]);
    assert_eq!(run(&b, &hub, &empty_report()).final_action, Action::Stop);
    // A digest-named image only matches tag `*`.
    let by_digest = analysis("r.io/x", None, &[], None);
    let b = mapped(vec![
        mapping("t", "*", "*", "tag", "latest", "p-go"),
        mapping("all", "*", "*", "tag", "*", "p1"),
    ]);
    assert_eq!(
        run(&b, &by_digest, &empty_report()).policy_ids,
        vec!["p1".to_string()]
    );
}

#[test]
fn no_mappings_is_stop() {
    let mut b = bundle_json(vec![], vec![]);
    b["mappings"] = json!([]);
    let e = run(&load(&b), &img(), &empty_report());
    assert_eq!(
        (e.final_action, e.final_action_reason.as_str()),
        (Action::Stop, "no_mappings")
    );
}

// ---- allowlists ----------------------------------------------------------------------------

#[test]
fn allowlist_exact_wildcard_and_expired() {
    let r = report(vec![
        finding(
            "CVE-1",
            "openssl",
            PackageType::Deb,
            Severity::High,
            FixState::Fixed,
        ),
        finding(
            "CVE-2",
            "zlib",
            PackageType::Deb,
            Severity::High,
            FixState::Fixed,
        ),
    ]);
    let rules = vec![rule(
        "vulnerabilities",
        "package",
        "STOP",
        &[("package_type", "all")],
    )];
    let b = load(&bundle_json(
        rules.clone(),
        vec![json!({"id": "i1", "gate": "vulnerabilities", "trigger_id": "CVE-1+openssl"})],
    ));
    let e = run(&b, &img(), &r);
    assert_eq!(e.final_action, Action::Stop);
    let f1 = e
        .findings
        .iter()
        .find(|f| f.trigger_id == "CVE-1+openssl")
        .unwrap();
    assert!(f1.allowlisted);
    assert_eq!(f1.allowlist_id.as_deref(), Some("i1"));

    let b = load(&bundle_json(
        rules.clone(),
        vec![
            json!({"id": "i1", "gate": "vulnerabilities", "trigger_id": "CVE-1+openssl"}),
            json!({"id": "i2", "gate": "vulnerabilities", "trigger_id": "CVE-2+*"}),
        ],
    ));
    let e = run(&b, &img(), &r);
    assert_eq!(e.final_action, Action::Go);
    assert!(e.findings.iter().all(|f| f.allowlisted));

    // Expired items are skipped; future ones apply; wrong gate does not match.
    let b = load(&bundle_json(
        rules.clone(),
        vec![
            json!({"id": "old", "gate": "vulnerabilities", "trigger_id": "*", "expires_on": "2020-01-01T00:00:00Z"}),
            json!({"id": "gate", "gate": "dockerfile", "trigger_id": "*"}),
        ],
    ));
    let e = run(&b, &img(), &r);
    assert_eq!(e.final_action, Action::Stop);
    assert!(e.findings.iter().all(|f| !f.allowlisted));
    let b = load(&bundle_json(
        rules,
        vec![
            json!({"id": "fut", "gate": "vulnerabilities", "trigger_id": "*", "expires_on": "2099-01-01T00:00:00+02:00"}),
        ],
    ));
    assert_eq!(run(&b, &img(), &r).final_action, Action::Go);
}

#[test]
fn allowlist_md5_trigger_id() {
    let msg_id = md5_trigger_id("always", "always", "always");
    let b = load(&bundle_json(
        vec![
            rule("always", "always", "STOP", &[]),
            rule(
                "dockerfile",
                "effective_user",
                "WARN",
                &[("users", "root"), ("type", "blacklist")],
            ),
        ],
        vec![json!({"id": "a", "gate": "always", "trigger_id": msg_id})],
    ));
    let e = run(&b, &img(), &empty_report());
    assert_eq!(e.final_action, Action::Warn);
}

// ---- image lists -----------------------------------------------------------------------------

#[test]
fn blacklist_beats_whitelist_beats_policy() {
    let sel =
        json!({"registry": "*", "repository": "team/*", "image": {"type": "tag", "value": "*"}});
    let mut b = bundle_json(vec![rule("always", "always", "STOP", &[])], vec![]);
    b["whitelisted_images"] = json!([sel]);
    let e = run(&load(&b), &img(), &empty_report());
    assert_eq!(
        (e.final_action, e.final_action_reason.as_str()),
        (Action::Go, "whitelisted")
    );
    b["rules"] = json!([]);
    b["policies"][0]["rules"] = json!([]);
    b["blacklisted_images"] = json!([sel]);
    let e = run(&load(&b), &img(), &empty_report());
    assert_eq!(
        (e.final_action, e.final_action_reason.as_str()),
        (Action::Stop, "blacklisted")
    );
    // Not selected: plain policy evaluation.
    let other = analysis("registry.example.com/other/app", Some("1"), &[], None);
    let e = run(&load(&b), &other, &empty_report());
    assert_eq!(
        (e.final_action, e.final_action_reason.as_str()),
        (Action::Go, "policy_evaluation")
    );
}

// ---- default bundle ------------------------------------------------------------------------

#[test]
fn default_bundle_stops_on_port_22_and_warns_on_medium() {
    let b = default_bundle();
    let a = analysis("docker.io/library/debian", Some("12"), &["22/tcp"], None);
    let e = run(&b, &a, &empty_report());
    assert_eq!(e.final_action, Action::Stop);
    assert_eq!(e.findings[0].gate, "dockerfile");

    // No HEALTHCHECK, no distro (so no vulnerability data): WARN.
    assert_eq!(run(&b, &img(), &empty_report()).final_action, Action::Warn);
    // Healthcheck, a distro with vulnerability data, fresh feeds: GO.
    let mut clean = img();
    clean.descriptor.config.healthcheck = Some(vec!["CMD".into(), "true".into()]);
    clean.distro = Some(Distro {
        id: "debian".into(),
        version_id: Some("12".into()),
        ..Default::default()
    });
    let feeds = [FeedState {
        feed: "debian".into(),
        last_sync: NOW - 3_600_000,
        namespaces: [("debian:12".to_string(), 10u64)].into_iter().collect(),
        ..Default::default()
    }];
    let with_data = |mut r: VulnReport| {
        r.namespaces_with_data = vec!["debian:12".into()];
        r
    };
    let run_f = |a: &Analysis, r: &VulnReport| {
        let tag = a.descriptor.image.full_tag();
        evaluate(
            &b,
            &EvalInput {
                feeds: &feeds,
                ..EvalInput::new(a, r, &tag)
            },
            NOW,
        )
    };
    assert_eq!(
        run_f(&clean, &with_data(empty_report())).final_action,
        Action::Go
    );
    // Stale feed (3 days): WARN.
    let stale = [FeedState {
        last_sync: NOW - 3 * 86_400_000,
        ..feeds[0].clone()
    }];
    let tag = clean.descriptor.image.full_tag();
    let r = with_data(empty_report());
    let e = evaluate(
        &b,
        &EvalInput {
            feeds: &stale,
            ..EvalInput::new(&clean, &r, &tag)
        },
        NOW,
    );
    assert_eq!(e.final_action, Action::Warn);
    assert_eq!(e.findings[0].trigger, "stale_feed_data");
    let medium = with_data(report(vec![finding(
        "CVE-1",
        "a",
        PackageType::Deb,
        Severity::Medium,
        FixState::Fixed,
    )]));
    assert_eq!(run_f(&clean, &medium).final_action, Action::Warn);
    let high = with_data(report(vec![finding(
        "CVE-1",
        "a",
        PackageType::Npm,
        Severity::High,
        FixState::NotFixed,
    )]));
    assert_eq!(run_f(&clean, &high).final_action, Action::Stop);
}

// ---- malformed bundles ---------------------------------------------------------------------

fn err_of(rules: Vec<serde_json::Value>) -> PolicyError {
    load_bundle(&bundle_json(rules, vec![]).to_string()).unwrap_err()
}

#[test]
fn rejects_unknown_gate_and_trigger() {
    let e = err_of(vec![rule("nosuch", "x", "STOP", &[])]);
    assert!(matches!(e, PolicyError::UnknownGate { .. }), "{e}");
    assert!(
        e.to_string().contains("r-nosuch-x") && e.to_string().contains("p1"),
        "{e}"
    );
    let e = err_of(vec![rule("dockerfile", "nosuch", "STOP", &[])]);
    assert!(matches!(e, PolicyError::UnknownTrigger { .. }), "{e}");
    assert!(e.to_string().contains("nosuch"), "{e}");
    let e = err_of(vec![rule("anchoresec", "vulnhigh", "STOP", &[])]);
    assert!(matches!(e, PolicyError::EolGate { .. }), "{e}");
}

#[test]
fn rejects_bad_params() {
    let e = err_of(vec![rule(
        "dockerfile",
        "exposed_ports",
        "STOP",
        &[("type", "blacklist")],
    )]);
    assert!(
        matches!(&e, PolicyError::MissingParam { param, .. } if param == "ports"),
        "{e}"
    );
    assert!(e.to_string().contains("r-dockerfile-exposed_ports"), "{e}");
    let e = err_of(vec![rule(
        "dockerfile",
        "exposed_ports",
        "STOP",
        &[("ports", "22"), ("type", "blacklist"), ("colour", "red")],
    )]);
    assert!(
        matches!(&e, PolicyError::UnknownParam { param, .. } if param == "colour"),
        "{e}"
    );
    let e = err_of(vec![rule(
        "dockerfile",
        "exposed_ports",
        "STOP",
        &[("ports", "22,ssh"), ("type", "blacklist")],
    )]);
    assert!(
        matches!(&e, PolicyError::InvalidParam { param, .. } if param == "ports"),
        "{e}"
    );
    let e = err_of(vec![rule(
        "dockerfile",
        "exposed_ports",
        "STOP",
        &[("ports", "22"), ("type", "greylist")],
    )]);
    assert!(e.to_string().contains("whitelist, blacklist"), "{e}");
    let e = err_of(vec![rule(
        "vulnerabilities",
        "package",
        "STOP",
        &[("package_type", "all"), ("fix_available", "maybe")],
    )]);
    assert!(
        matches!(&e, PolicyError::InvalidParam { param, .. } if param == "fix_available"),
        "{e}"
    );
    let e = err_of(vec![rule(
        "vulnerabilities",
        "package",
        "STOP",
        &[("package_type", "all"), ("severity", "huge")],
    )]);
    assert!(
        matches!(&e, PolicyError::InvalidParam { param, .. } if param == "severity"),
        "{e}"
    );
    let e = err_of(vec![rule("always", "always", "MAYBE", &[])]);
    assert!(matches!(e, PolicyError::InvalidAction { .. }), "{e}");
}

#[test]
fn rejects_wrong_types_versions_and_regex() {
    let mut b = bundle_json(vec![], vec![]);
    b["policies"][0]["rules"] = json!([{"id": "r9", "gate": "always", "trigger": "always", "action": "GO", "params": "oops"}]);
    let e = load_bundle(&b.to_string()).unwrap_err();
    assert!(e.to_string().contains("policy \"p1\" rule \"r9\""), "{e}");
    let mut b = bundle_json(vec![], vec![]);
    b["policies"] = json!("nope");
    assert!(matches!(
        load_bundle(&b.to_string()).unwrap_err(),
        PolicyError::Structure { .. }
    ));
    let mut b = bundle_json(vec![], vec![]);
    b["version"] = json!("2_0");
    assert!(matches!(
        load_bundle(&b.to_string()).unwrap_err(),
        PolicyError::Version { .. }
    ));
    let mut b = bundle_json(vec![], vec![]);
    b["mappings"][0]["repository"] = json!("regexp:(unclosed");
    let e = load_bundle(&b.to_string()).unwrap_err();
    assert!(matches!(e, PolicyError::InvalidSelector { .. }), "{e}");
    assert!(e.to_string().contains("m1"), "{e}");
    let mut b = bundle_json(vec![], vec![]);
    b["mappings"][0]["policy_ids"] = json!(["missing"]);
    assert!(matches!(
        load_bundle(&b.to_string()).unwrap_err(),
        PolicyError::UnknownReference { .. }
    ));
    let b = bundle_json(
        vec![],
        vec![json!({"id": "x", "gate": "always", "trigger_id": "*", "expires_on": "tomorrow"})],
    );
    assert!(load_bundle(&b.to_string())
        .unwrap_err()
        .to_string()
        .contains("RFC 3339"));
    assert!(matches!(
        load_bundle("{").unwrap_err(),
        PolicyError::Json(_)
    ));
    // Numeric and boolean values are accepted where strings are expected; objects are not.
    let mut b = bundle_json(vec![], vec![]);
    b["policies"][0]["rules"] = json!([{"id": "r", "gate": "dockerfile", "trigger": "exposed_ports", "action": "STOP",
        "params": [{"name": "ports", "value": 22}, {"name": "type", "value": "blacklist"}]}]);
    assert!(load_bundle(&b.to_string()).is_ok());
    b["policies"][0]["rules"][0]["params"][0]["value"] = json!({"a": 1});
    assert!(matches!(
        load_bundle(&b.to_string()).unwrap_err(),
        PolicyError::InvalidParam { .. }
    ));
}

#[test]
fn legacy_policy_id_mapping() {
    let mut b = bundle_json(vec![rule("always", "always", "WARN", &[])], vec![]);
    b["mappings"] = json!([{"id": "m", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p1"}]);
    let e = run(&load(&b), &img(), &empty_report());
    assert_eq!(e.final_action, Action::Warn);
}

// ---- stage -----------------------------------------------------------------------------------

mod stage {
    use super::*;
    use crate::EvaluateStage;
    use vigil_runtime::Stage;
    use vigil_store::Store;

    async fn store_with_image(dir: &std::path::Path, ports: &[&str]) -> Store {
        let store = Store::open_embedded(&dir.join("s.redb")).unwrap();
        store
            .put_analysis(&analysis("r.io/app", Some("1"), ports, Some("app")))
            .await
            .unwrap();
        store.put_vuln_report(&empty_report()).await.unwrap();
        store
    }

    fn matched(req: Option<RequestContext>) -> Vec<u8> {
        codec::encode(&MatchedImage {
            request: req,
            image_digest: DIGEST.into(),
            diff: None,
            matched_at: 0,
        })
        .unwrap()
    }

    async fn handle(stage: &EvaluateStage, payload: &[u8]) -> (String, EvaluatedImage) {
        let outs = stage
            .handle(&Subject::Stage(StageName::Evaluate), payload)
            .await
            .unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].subject, Subject::Stage(StageName::Notify));
        (
            outs[0].msg_id.clone(),
            codec::decode(&outs[0].payload).unwrap(),
        )
    }

    /// Feed states are read again at once when the cached ones miss a namespace the
    /// report has data for: a feed synced for the first time is seen by the very next
    /// evaluation, not up to the cache's age later.
    #[tokio::test]
    async fn a_feed_synced_since_the_cached_states_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(&dir.path().join("s.redb")).unwrap();
        let mut a = analysis("r.io/app", Some("1"), &[], Some("app"));
        a.distro = Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        });
        store.put_analysis(&a).await.unwrap();
        let mut r = empty_report();
        r.namespaces_with_data = vec!["debian:12".into()];
        store.put_vuln_report(&r).await.unwrap();
        let stale = bundle_json(
            vec![rule(
                "vulnerabilities",
                "stale_feed_data",
                "STOP",
                &[("max_days_since_sync", "1")],
            )],
            vec![],
        )
        .to_string();
        store
            .put_bundle(&StoredBundle {
                id: "b1".into(),
                name: "b".into(),
                json: stale,
                active: false,
                created_at: 0,
            })
            .await
            .unwrap();
        store.activate_bundle("b1").await.unwrap();
        let stage = EvaluateStage::new(store.clone());
        let (_, first) = handle(&stage, &matched(None)).await;
        assert_eq!(
            first.evaluation.final_action,
            Action::Stop,
            "no feed state yet"
        );
        store
            .put_feed_state(&FeedState {
                feed: "debian".into(),
                url: "file:///debian.json".into(),
                last_sync: vigil_runtime::now_millis(),
                record_count: 1,
                namespaces: [("debian:12".to_string(), 1)].into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_, second) = handle(&stage, &matched(None)).await;
        assert_eq!(
            second.evaluation.final_action,
            Action::Go,
            "the new feed's state is read although the cached states are fresh"
        );
    }

    #[tokio::test]
    async fn stores_history_and_reports_previous_action() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_image(dir.path(), &["22/tcp"]).await;
        let stage = EvaluateStage::new(store.clone());
        let (id, first) = handle(
            &stage,
            &matched(Some(RequestContext::new("req-1", "r.io/app:1"))),
        )
        .await;
        assert_eq!(id, "evaluated-req-1");
        assert_eq!(first.evaluation.final_action, Action::Stop); // default bundle, port 22
        assert_eq!(first.previous_action, None);
        assert_eq!(first.evaluation.tag, "r.io/app:1");

        // A stored, activated bundle that allows everything.
        let go = bundle_json(vec![], vec![]).to_string();
        store
            .put_bundle(&StoredBundle {
                id: "b1".into(),
                name: "b".into(),
                json: go,
                active: false,
                created_at: 0,
            })
            .await
            .unwrap();
        store.activate_bundle("b1").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let (id, second) = handle(&stage, &matched(None)).await;
        assert!(id.starts_with("evaluated-sha256:aaaa-"));
        assert_eq!(second.evaluation.final_action, Action::Go);
        assert_eq!(second.evaluation.bundle_id, "b1");
        assert_eq!(second.previous_action, Some(Action::Stop));
        let hist = store
            .evaluation_history(DIGEST, "r.io/app:1")
            .await
            .unwrap();
        assert_eq!(hist.len(), 2);
        assert_eq!(hist[1], second.evaluation);
    }

    #[tokio::test]
    async fn policy_updated_reevaluates_evaluated_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_image(dir.path(), &["22/tcp"]).await;
        let stage = EvaluateStage::new(store.clone());
        // Nothing evaluated yet: a policy update re-evaluates nothing.
        let upd = |id: &str, at: i64| {
            codec::encode(&PolicyUpdated {
                bundle_id: id.into(),
                updated_at: at,
                bundle_json: None,
            })
            .unwrap()
        };
        assert!(stage
            .handle(&Subject::PolicyUpdated, &upd("x", 1))
            .await
            .unwrap()
            .is_empty());
        let (_, first) = handle(&stage, &matched(None)).await;
        assert_eq!(first.evaluation.final_action, Action::Stop);
        assert_eq!(
            stage.evaluated_images().await.unwrap(),
            vec![(DIGEST.to_string(), "r.io/app:1".to_string())]
        );

        // Activate a GO bundle and announce it.
        let go = bundle_json(vec![], vec![]).to_string();
        crate::policy::add_bundle(&store, &go, 1).await.unwrap();
        let update = crate::policy::activate_bundle(&store, "b1", 2)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let outs = stage
            .handle(&Subject::PolicyUpdated, &codec::encode(&update).unwrap())
            .await
            .unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].subject, Subject::Stage(StageName::Notify));
        assert!(outs[0].msg_id.starts_with("policy-updated-b1-2-"));
        let ev: EvaluatedImage = codec::decode(&outs[0].payload).unwrap();
        assert_eq!(ev.previous_action, Some(Action::Stop));
        assert_eq!(ev.evaluation.final_action, Action::Go);
        assert_eq!(ev.evaluation.bundle_id, "b1");
        assert_eq!(
            store
                .evaluation_history(DIGEST, "r.io/app:1")
                .await
                .unwrap()
                .len(),
            2
        );

        // Redelivered (the first delivery's process died before publishing): the same
        // outputs as the first delivery, under the same message ids, so the change is
        // announced once whichever delivery gets through.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let again = stage
            .handle(&Subject::PolicyUpdated, &codec::encode(&update).unwrap())
            .await
            .unwrap();
        assert_eq!(again, outs);
        // Another update with the same verdict: no change, nothing out.
        let later = crate::policy::activate_bundle(&store, "b1", 3)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        assert!(stage
            .handle(&Subject::PolicyUpdated, &codec::encode(&later).unwrap())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn bundle_selection_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_image(dir.path(), &[]).await;
        let stage = EvaluateStage::new(store.clone());
        let mut req = RequestContext::new("r", "r.io/app:1");
        req.policy_bundle =
            Some(bundle_json(vec![rule("nosuch", "x", "STOP", &[])], vec![]).to_string());
        let err = stage
            .handle(&Subject::Stage(StageName::Evaluate), &matched(Some(req)))
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::InvalidRequest);
        assert!(err.message.contains("unknown gate"), "{}", err.message);

        let mut req = RequestContext::new("r", "r.io/app:1");
        req.policy_id = Some("missing".into());
        let err = stage
            .handle(&Subject::Stage(StageName::Evaluate), &matched(Some(req)))
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::InvalidRequest);

        // An inline bundle is used as given.
        let mut req = RequestContext::new("r", "r.io/app:1");
        req.policy_bundle =
            Some(bundle_json(vec![rule("always", "always", "WARN", &[])], vec![]).to_string());
        let (_, out) = handle(&stage, &matched(Some(req))).await;
        assert_eq!(out.evaluation.final_action, Action::Warn);

        // Missing analysis is a transient internal error.
        let payload = codec::encode(&MatchedImage {
            request: None,
            image_digest: "sha256:none".into(),
            diff: None,
            matched_at: 0,
        })
        .unwrap();
        let err = stage
            .handle(&Subject::Stage(StageName::Evaluate), &payload)
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::Internal);
        assert!(err.is_transient());
    }
}

// ---- validation: size, cross-parameter checks, names -----------------------------------------

#[test]
fn rejects_a_10_mb_bundle_with_a_clear_error() {
    let mut v = bundle_json(vec![], vec![]);
    v["comment"] = json!("x".repeat(10 * 1024 * 1024));
    let e = load_bundle(&v.to_string()).unwrap_err();
    assert!(matches!(e, PolicyError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn each_malformed_rule_names_policy_rule_and_parameter() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        // missing required parameter
        (
            rule("files", "name_match", "STOP", &[]),
            "missing required parameter \"regex\"",
        ),
        // invalid regex
        (
            rule("files", "name_match", "STOP", &[("regex", "([")]),
            "\"regex\" value \"([\" is invalid",
        ),
        // wrong types
        (
            rule(
                "vulnerabilities",
                "stale_feed_data",
                "WARN",
                &[("max_days_since_sync", "two")],
            ),
            "expected an integer",
        ),
        (
            rule(
                "vulnerabilities",
                "package",
                "WARN",
                &[("package_type", "all"), ("cvss_v3_base_score", "high")],
            ),
            "\"cvss_v3_base_score\"",
        ),
        (
            rule(
                "vulnerabilities",
                "package",
                "WARN",
                &[("package_type", "all"), ("fix_available", "yes")],
            ),
            "expected true or false",
        ),
        (
            rule(
                "files",
                "attribute_match",
                "STOP",
                &[("filename", "/x"), ("mode", "999")],
            ),
            "\"mode\"",
        ),
        // unknown parameter
        (
            rule("always", "always", "STOP", &[("nope", "1")]),
            "unknown parameter \"nope\"",
        ),
        // cross-parameter checks
        (
            rule(
                "metadata",
                "attribute",
                "STOP",
                &[("attribute", "size"), ("check", ">"), ("value", "big")],
            ),
            "\"value\" value \"big\" is invalid",
        ),
        (
            rule(
                "metadata",
                "attribute",
                "STOP",
                &[("attribute", "distro"), ("check", "=")],
            ),
            "\"value\"",
        ),
        (
            rule(
                "dockerfile",
                "instruction",
                "STOP",
                &[("instruction", "RUN"), ("check", "like"), ("value", "(")],
            ),
            "invalid regex",
        ),
        (
            rule(
                "dockerfile",
                "instruction",
                "STOP",
                &[("instruction", "BOGUS"), ("check", "exists")],
            ),
            "\"instruction\"",
        ),
        (
            rule(
                "vulnerabilities",
                "package",
                "STOP",
                &[("package_type", "all"), ("max_days_since_fix", "3")],
            ),
            "requires fix_available=true",
        ),
        (
            rule(
                "retrieved_files",
                "content_regex",
                "STOP",
                &[("path", "/etc/x"), ("regex", "a"), ("check", "sometimes")],
            ),
            "\"check\"",
        ),
    ];
    for (r, want) in cases {
        let id = r["id"].as_str().unwrap().to_string();
        let e = err_of(vec![r]);
        let s = e.to_string();
        assert!(
            s.contains("policy \"p1\"") && s.contains(&format!("rule {id:?}")),
            "{s}"
        );
        assert!(s.contains(want), "{s} should contain {want}");
    }
}

#[test]
fn eol_gate_names_its_successor_and_param_names_are_case_insensitive() {
    let e = err_of(vec![rule("secretcheck", "contentregexcheck", "STOP", &[])]);
    assert!(
        e.to_string().contains("end-of-life") && e.to_string().contains("secret_scans"),
        "{e}"
    );
    let b = load(&bundle_json(
        vec![rule(
            "Dockerfile",
            "Exposed_Ports",
            "stop",
            &[("PORTS", "22"), ("Type", "BLACKLIST")],
        )],
        vec![],
    ));
    let a = analysis("r.io/app", Some("1"), &["22/tcp"], None);
    let e = run(&b, &a, &empty_report());
    assert_eq!(e.final_action, Action::Stop);
    assert_eq!(
        (e.findings[0].gate.as_str(), e.findings[0].trigger.as_str()),
        ("dockerfile", "exposed_ports")
    );
}

#[test]
fn all_40_triggers_accept_their_defaults() {
    for g in crate::gates::GATES {
        for t in g.triggers {
            let params: Vec<(&str, &str)> = t
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| {
                    let v = match p.kind {
                        crate::gates::ParamKind::Int | crate::gates::ParamKind::CsvInt => "1",
                        crate::gates::ParamKind::Octal => "644",
                        crate::gates::ParamKind::Bool => "true",
                        crate::gates::ParamKind::Float => "1.0",
                        crate::gates::ParamKind::Enum(vals) => vals[0],
                        _ => "x",
                    };
                    (p.name, v)
                })
                .collect();
            let mut params = params;
            if g.name == "dockerfile" && t.name == "instruction" {
                params.push(("value", "x"));
            }
            if g.name == "metadata" {
                params.push(("value", "x"));
            }
            let b = bundle_json(vec![rule(g.name, t.name, "WARN", &params)], vec![]);
            load_bundle(&b.to_string()).unwrap_or_else(|e| panic!("{}.{}: {e}", g.name, t.name));
        }
    }
}

// ---- allowlists: version scope and OpenVEX ---------------------------------------------------

fn vuln_bundle(items: Vec<serde_json::Value>) -> Bundle {
    load(&bundle_json(
        vec![rule(
            "vulnerabilities",
            "package",
            "STOP",
            &[("package_type", "all")],
        )],
        items,
    ))
}

fn versioned(id: &str, pkg: &str, version: &str) -> Finding {
    let mut f = finding(id, pkg, PackageType::Deb, Severity::High, FixState::Fixed);
    f.package.version = version.into();
    f
}

#[test]
fn allowlist_item_scoped_to_package_version() {
    let b = vuln_bundle(vec![json!({"id": "only-1.0", "gate": "vulnerabilities",
        "trigger_id": "CVE-1+openssl", "package_version": "1.0"})]);
    let r = report(vec![versioned("CVE-1", "openssl", "1.0")]);
    let e = run(&b, &img(), &r);
    assert_eq!(e.final_action, Action::Go);
    assert_eq!(e.findings[0].allowlist_id.as_deref(), Some("only-1.0"));
    let r = report(vec![versioned("CVE-1", "openssl", "1.1")]);
    let e = run(&b, &img(), &r);
    assert_eq!(
        e.final_action,
        Action::Stop,
        "another version is not covered"
    );
    assert!(!e.findings[0].allowlisted);
    // Wildcard versions and expired items.
    let b = vuln_bundle(vec![
        json!({"id": "old", "gate": "vulnerabilities", "trigger_id": "CVE-1+*", "expires_on": "2020-01-01T00:00:00Z"}),
        json!({"id": "any-1", "gate": "vulnerabilities", "trigger_id": "CVE-1+*", "package_version": "1.*"}),
    ]);
    let e = run(
        &b,
        &img(),
        &report(vec![versioned("CVE-1", "openssl", "1.1")]),
    );
    assert_eq!(e.findings[0].allowlist_id.as_deref(), Some("any-1"));
}

const VEX: &str = r#"{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "https://example.com/vex/1",
  "author": "sec team",
  "timestamp": "2026-01-01T00:00:00Z",
  "version": 1,
  "statements": [
    {"@id": "st-1", "vulnerability": {"name": "CVE-1", "aliases": ["GHSA-xxxx"]},
     "products": [{"@id": "pkg:oci/app", "subcomponents": [{"@id": "pkg:deb/debian/openssl@1.0?arch=amd64"}]}],
     "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
    {"vulnerability": {"name": "CVE-2"}, "products": [{"@id": "pkg:oci/app"}], "status": "fixed"},
    {"vulnerability": {"name": "CVE-3"}, "products": [{"@id": "pkg:deb/debian/zlib@1.0"}], "status": "affected"},
    {"vulnerability": "CVE-4", "products": ["pkg:pypi/Django@3.2"], "status": "not_affected",
     "impact_statement": "we do not use the ORM"}
  ]
}"#;

#[test]
fn openvex_statements_become_allowlist_items_with_justification() {
    let al = crate::allowlist_from_openvex(VEX).unwrap();
    assert_eq!(al.id, "https://example.com/vex/1");
    let b = vuln_bundle(vec![]);
    let mut django = versioned("CVE-4", "Django", "3.2");
    django.package.kind = PackageType::Python;
    let r = report(vec![
        versioned("CVE-1", "openssl", "1.0"),
        versioned("CVE-1", "openssl", "1.1"),
        versioned("CVE-2", "curl", "8.0"),
        versioned("CVE-3", "zlib", "1.0"),
        django,
    ]);
    let a = img();
    let tag = a.descriptor.image.full_tag();
    let lists = [al];
    let e = evaluate(
        &b,
        &EvalInput {
            extra_allowlists: &lists,
            ..EvalInput::new(&a, &r, &tag)
        },
        NOW,
    );
    let by: std::collections::BTreeMap<(String, String), Option<String>> = e
        .findings
        .iter()
        .map(|f| {
            (
                (f.trigger_id.clone(), f.message.clone()),
                f.allowlist_id.clone(),
            )
        })
        .collect();
    let allow = |id: &str, ver: &str| {
        by.iter()
            .find(|((t, m), _)| t == id && m.contains(&format!("-{ver} ")))
            .map(|(_, a)| a.clone())
            .unwrap()
    };
    assert_eq!(
        allow("CVE-1+openssl", "1.0").as_deref(),
        Some("openvex:st-1: vulnerable_code_not_in_execute_path")
    );
    assert_eq!(
        allow("CVE-1+openssl", "1.1"),
        None,
        "the statement is for 1.0 only"
    );
    assert_eq!(
        allow("CVE-2+curl", "8.0").as_deref(),
        Some("openvex:https://example.com/vex/1#1: fixed"),
        "a statement about the image covers every package"
    );
    assert_eq!(
        allow("CVE-3+zlib", "1.0"),
        None,
        "affected is not an allowlist"
    );
    assert_eq!(
        allow("CVE-4+Django", "3.2").as_deref(),
        Some("openvex:https://example.com/vex/1#3: we do not use the ORM")
    );
    assert_eq!(e.final_action, Action::Stop);

    assert!(matches!(
        crate::allowlist_from_openvex("{}"),
        Err(crate::OpenVexError::Structure(_))
    ));
    assert!(matches!(
        crate::allowlist_from_openvex("nope"),
        Err(crate::OpenVexError::Json(_))
    ));
}

// ---- rendering -------------------------------------------------------------------------------

#[test]
fn table_and_json_show_anchore_columns() {
    let b = load(&bundle_json(
        vec![
            rule(
                "dockerfile",
                "exposed_ports",
                "STOP",
                &[("ports", "22"), ("type", "blacklist")],
            ),
            rule(
                "vulnerabilities",
                "package",
                "WARN",
                &[("package_type", "all")],
            ),
        ],
        vec![json!({"id": "wl-1", "gate": "vulnerabilities", "trigger_id": "CVE-1+*"})],
    ));
    let a = analysis("r.io/app", Some("1"), &["22/tcp"], None);
    let e = run(&b, &a, &report(vec![versioned("CVE-1", "openssl", "1.0")]));
    let t = crate::render_table(&e);
    assert!(t.contains("Status: fail"), "{t}");
    assert!(
        t.contains("Final Action: STOP (reason: policy_evaluation)"),
        "{t}"
    );
    let header = t.lines().find(|l| l.starts_with("Gate")).unwrap();
    for c in crate::render::TABLE_COLUMNS {
        assert!(header.contains(c), "{header}");
    }
    assert!(t.contains("true (wl-1)"), "{t}");
    assert!(t.contains("CVE-1+openssl"), "{t}");
    let stop_line = t.lines().position(|l| l.contains("DENIEDPORTS")).unwrap();
    let warn_line = t.lines().position(|l| l.contains("CVE-1+openssl")).unwrap();
    assert!(stop_line < warn_line, "STOP rows first");
    let j = crate::render_json(&e);
    assert_eq!(j["status"], "fail");
    assert_eq!(j["findings"].as_array().unwrap().len(), 2);
    let wl = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["whitelisted"] == true)
        .unwrap();
    assert_eq!(wl["whitelist_id"], "wl-1");
    assert_eq!(wl["policy_id"], "p1");
    assert_eq!(wl["gate_action"], "WARN");
}

// ---- bundle storage and history -----------------------------------------------------------

mod storage {
    use super::*;
    use crate::policy;
    use vigil_store::Store;

    #[tokio::test]
    async fn add_list_get_activate_delete_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(&dir.path().join("s.redb")).unwrap();
        // Invalid bundles are not stored.
        let bad = bundle_json(vec![rule("nosuch", "x", "STOP", &[])], vec![]).to_string();
        assert!(matches!(
            policy::add_bundle(&store, &bad, 1).await,
            Err(policy::PolicyStoreError::Invalid(_))
        ));
        let good = bundle_json(vec![rule("always", "always", "WARN", &[])], vec![]).to_string();
        let stored = policy::add_bundle(&store, &good, 1).await.unwrap();
        assert_eq!((stored.id.as_str(), stored.active), ("b1", false));
        let mut other = bundle_json(vec![], vec![]);
        other["id"] = json!("b2");
        policy::add_bundle(&store, &other.to_string(), 2)
            .await
            .unwrap();
        assert_eq!(policy::list_bundles(&store).await.unwrap().len(), 2);

        // The default applies until a bundle is activated.
        assert_eq!(
            policy::active_bundle(&store).await.unwrap().id,
            "vigil_default_bundle"
        );
        let upd = policy::activate_bundle(&store, "b1", 5).await.unwrap();
        assert_eq!((upd.bundle_id.as_str(), upd.updated_at), ("b1", 5));
        assert!(policy::get_bundle(&store, "b1").await.unwrap().active);
        assert_eq!(policy::active_bundle(&store).await.unwrap().id, "b1");
        assert!(matches!(
            policy::delete_bundle(&store, "b1").await,
            Err(policy::PolicyStoreError::Active(_))
        ));
        policy::delete_bundle(&store, "b2").await.unwrap();
        assert!(matches!(
            policy::get_bundle(&store, "b2").await,
            Err(policy::PolicyStoreError::NotFound(_))
        ));
        assert!(policy::activate_bundle(&store, "b2", 6).await.is_err());

        // Interactive evaluation is not stored.
        let a = analysis("r.io/app", Some("1"), &[], None);
        store.put_analysis(&a).await.unwrap();
        store.put_vuln_report(&empty_report()).await.unwrap();
        let bundle = policy::active_bundle(&store).await.unwrap();
        let e = policy::evaluate_stored(&store, &bundle, DIGEST, None, &[], NOW)
            .await
            .unwrap();
        assert_eq!(e.final_action, Action::Warn);
        assert!(policy::history(&store, DIGEST, "r.io/app:1")
            .await
            .unwrap()
            .is_empty());
        store.put_evaluation(&e).await.unwrap();
        let h = policy::history(&store, DIGEST, "r.io/app:1").await.unwrap();
        assert_eq!(h, vec![e]);
        assert!(policy::history(&store, DIGEST, "r.io/app:2")
            .await
            .unwrap()
            .is_empty());
    }
}
