//! Anchore's default bundle (reconstructed in `default_bundle.json`) on every testbed image:
//! the expected verdict of each image is written below with its reason.
//!
//! Vulnerability data: `vigil_match::match_packages` over the real analysis with the
//! hand-written advisories of `common::advisories` (real CVEs of python-app's and node-app's pins);
//! the Debian namespace is declared synced with no open advisory, and the feed synced an
//! hour ago, unless a test says otherwise.

mod common;

use std::collections::BTreeSet;

use vigil_contracts::*;
use vigil_evaluate::{default_bundle, evaluate, EvalInput};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

fn feeds(age: i64) -> Vec<FeedState> {
    vec![FeedState {
        feed: "debian".into(),
        last_sync: NOW - age,
        namespaces: [("debian:12".to_string(), 1u64)].into_iter().collect(),
        ..Default::default()
    }]
}

fn verdict(a: &Analysis, r: &VulnReport, f: &[FeedState]) -> (Action, BTreeSet<(String, Action)>) {
    let tag = a.descriptor.image.full_tag();
    let e = evaluate(
        &default_bundle(),
        &EvalInput {
            feeds: f,
            ..EvalInput::new(a, r, &tag)
        },
        NOW,
    );
    assert_eq!(e.final_action_reason, "policy_evaluation");
    let reasons = e
        .findings
        .iter()
        .map(|f| (f.trigger.clone(), f.action))
        .collect();
    (e.final_action, reasons)
}

fn set(items: &[(&str, Action)]) -> BTreeSet<(String, Action)> {
    items.iter().map(|(t, a)| (t.to_string(), *a)).collect()
}

type Expected = (
    &'static str,
    Action,
    &'static [(&'static str, Action)],
    &'static str,
);

const NO_HEALTHCHECK: (&str, Action) = ("instruction", Action::Warn);

#[test]
fn default_bundle_verdicts_on_every_testbed_image() {
    use Action::*;
    // (image, expected final action, expected (trigger, action) findings, why)
    let expected: &[Expected] = &[
        (
            "debian-base",
            Warn,
            &[NO_HEALTHCHECK],
            "no HEALTHCHECK; no advisory affects its Debian packages",
        ),
        (
            "python-app",
            Stop,
            &[NO_HEALTHCHECK, ("package", Stop)],
            "urllib3 1.24.1 and requests 2.19.1 (high) and PyYAML 5.3 (critical) are above medium",
        ),
        (
            "node-app",
            Stop,
            &[NO_HEALTHCHECK, ("package", Warn), ("package", Stop)],
            "lodash 4.17.15 (high) is above medium; minimist 1.2.0 (medium) warns",
        ),
        (
            "misconfig-secrets",
            Stop,
            &[NO_HEALTHCHECK, ("exposed_ports", Stop)],
            "EXPOSE 22",
        ),
        (
            "java-app",
            Warn,
            &[NO_HEALTHCHECK],
            "no HEALTHCHECK; no advisory given for its jars",
        ),
        (
            "go-bin",
            Warn,
            &[NO_HEALTHCHECK, ("vulnerability_data_unavailable", Warn)],
            "no HEALTHCHECK; FROM scratch: no distro, so no distro vulnerability data",
        ),
        (
            "layered-whiteout",
            Warn,
            &[NO_HEALTHCHECK],
            "no HEALTHCHECK",
        ),
        (
            "multiarch",
            Warn,
            &[NO_HEALTHCHECK],
            "no HEALTHCHECK (amd64 image)",
        ),
    ];
    for (name, action, reasons, why) in expected {
        let a = common::image(name);
        let r = common::matched_report(a);
        let (got, got_reasons) = verdict(a, &r, &feeds(HOUR));
        assert_eq!(
            (got, &got_reasons),
            (*action, &set(reasons)),
            "{name}: expected because {why}"
        );
    }
}

#[test]
fn default_bundle_warns_on_stale_feed_and_missing_vulnerability_data() {
    let a = common::image("debian-base");
    let r = common::matched_report(a);
    // Feed synced 3 days ago (> 2): WARN with stale_feed_data.
    let (got, reasons) = verdict(a, &r, &feeds(72 * HOUR));
    assert_eq!(got, Action::Warn);
    assert!(reasons.contains(&("stale_feed_data".to_string(), Action::Warn)));
    // No vulnerability data for debian:12 and no feed: both warnings.
    let empty = VulnReport {
        image_digest: a.descriptor.image.digest.clone(),
        findings: vec![],
        namespaces_with_data: vec![],
        matched_at: 0,
    };
    let (got, reasons) = verdict(a, &empty, &[]);
    assert_eq!(got, Action::Warn);
    assert_eq!(
        reasons,
        set(&[
            NO_HEALTHCHECK,
            ("stale_feed_data", Action::Warn),
            ("vulnerability_data_unavailable", Action::Warn)
        ])
    );
    // misconfig-secrets still STOPs on port 22 without any vulnerability data.
    let ms = common::image("misconfig-secrets");
    assert_eq!(verdict(ms, &empty, &[]).0, Action::Stop);
}
