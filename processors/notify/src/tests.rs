use vigil_contracts::*;
use vigil_runtime::{Outgoing, Stage};
use vigil_store::Store;

use crate::NotifyStage;

const DIGEST: &str = "sha256:aaaa";
const TAG: &str = "r.io/app:1";

fn analysis() -> Analysis {
    let pkg = |name: &str| Package {
        name: name.into(),
        version: "1".into(),
        kind: PackageType::Deb,
        arch: None,
        source_name: None,
        source_version: None,
        licenses: vec![],
        locations: vec![],
        purl: None,
        cpes: Vec::new(),
        files: Vec::new(),
        metadata: Default::default(),
        found_by: None,
        file_digests: Default::default(),
    };
    Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Registry,
                name: "r.io/app".into(),
                tag: Some("1".into()),
                digest: DIGEST.into(),
                index_digest: None,
                config_digest: "sha256:cccc".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig::default(),
            layers: vec![],
        },
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        }),
        packages: vec![pkg("a"), pkg("b"), pkg("c")],
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

fn finding(id: &str, sev: Severity) -> Finding {
    Finding {
        vuln_id: id.into(),
        aliases: vec![],
        severity: sev,
        package: PackageRef {
            name: "a".into(),
            version: "1".into(),
            kind: PackageType::Deb,
            location: None,
        },
        fixed_in: None,
        state: FixState::NotFixed,
        feed: "debian".into(),
        matched: MatchDetail {
            namespace: "debian:12".into(),
            searched_name: "a".into(),
            comparator: "dpkg".into(),
            constraint: "*".into(),
        },
        description: None,
        urls: vec![],
        cvss: Vec::new(),
        published: None,
        fix_published: None,
        vendor_only: false,
    }
}

async fn store(dir: &std::path::Path) -> Store {
    let s = Store::open_embedded(&dir.join("s.redb")).unwrap();
    s.put_analysis(&analysis()).await.unwrap();
    s.put_vuln_report(&VulnReport {
        image_digest: DIGEST.into(),
        findings: vec![
            finding("CVE-1", Severity::High),
            finding("CVE-2", Severity::High),
            finding("CVE-3", Severity::Low),
        ],
        namespaces_with_data: vec![],
        matched_at: 0,
    })
    .await
    .unwrap();
    s
}

fn evaluated(
    request: Option<RequestContext>,
    action: Action,
    previous: Option<Action>,
    diff: Option<VulnDiff>,
) -> Vec<u8> {
    codec::encode(&EvaluatedImage {
        request,
        image_digest: DIGEST.into(),
        evaluation: Evaluation {
            image_digest: DIGEST.into(),
            tag: TAG.into(),
            bundle_id: "b1".into(),
            policy_ids: vec!["p1".into()],
            final_action: action,
            final_action_reason: "policy_evaluation".into(),
            findings: vec![],
            evaluated_at: 1_000,
        },
        previous_action: previous,
        diff,
    })
    .unwrap()
}

async fn handle(stage: &NotifyStage, payload: &[u8]) -> Vec<Outgoing> {
    stage
        .handle(&Subject::Stage(StageName::Notify), payload)
        .await
        .unwrap()
}

fn subjects(outs: &[Outgoing]) -> Vec<Subject> {
    outs.iter().map(|o| o.subject.clone()).collect()
}

#[tokio::test]
async fn result_is_stored_once_and_redelivery_publishes_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let stage = NotifyStage::new(s.clone());
    let payload = evaluated(
        Some(RequestContext::new("req-1", TAG)),
        Action::Warn,
        None,
        None,
    );
    let first = handle(&stage, &payload).await;
    assert_eq!(
        subjects(&first),
        vec![
            Subject::Result("req-1".into()),
            Subject::Notify(NotificationKind::AnalysisUpdate)
        ]
    );
    assert_eq!(first[0].msg_id, "result-req-1");
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let second = handle(&stage, &payload).await;
    assert_eq!(first, second);

    let result: ScanResult = codec::decode(&first[0].payload).unwrap();
    assert_eq!(s.get_scan_result("req-1").await.unwrap().unwrap(), result);
    assert_eq!(result.status, ScanStatus::Succeeded);
    assert_eq!(result.image_digest.as_deref(), Some(DIGEST));
    assert_eq!(result.tag.as_deref(), Some(TAG));
    let summary = result.summary.unwrap();
    assert_eq!(summary.packages, 3);
    assert_eq!(summary.vulnerabilities, 3);
    assert_eq!(summary.by_severity.get("High"), Some(&2));
    assert_eq!(summary.by_severity.get("Low"), Some(&1));
    assert_eq!(summary.final_action, Some(Action::Warn));
    assert_eq!(summary.distro.as_deref(), Some("debian:12"));

    let notes = s.list_notifications(TAG).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert!(
        matches!(&notes[0].payload, NotificationPayload::AnalysisUpdate { status, .. } if status == "analyzed")
    );
    assert_eq!(notes[0].id, first[1].msg_id);
}

#[tokio::test]
async fn stage_failed_gives_failed_result_and_analysis_failed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let stage = NotifyStage::new(s.clone());
    let failure = Failure {
        stage: StageName::Fetch,
        kind: FailureKind::NotFound,
        message: "manifest unknown".into(),
    };
    let payload = codec::encode(&StageFailed {
        request: RequestContext::new("req-f", "r.io/missing:1"),
        failure: failure.clone(),
        image_digest: None,
    })
    .unwrap();
    let first = handle(&stage, &payload).await;
    assert_eq!(
        subjects(&first),
        vec![
            Subject::Result("req-f".into()),
            Subject::Event("analysis_failed".into()),
            Subject::Notify(NotificationKind::AnalysisUpdate)
        ]
    );
    let event: watch::Event = codec::decode(&first[1].payload).unwrap();
    assert_eq!(event.level, watch::EventLevel::Error);
    assert_eq!(event.resource, "r.io/missing:1");
    assert!(
        event.message.contains("manifest unknown"),
        "{}",
        event.message
    );
    let stored = s
        .list_events(
            &vigil_store::EventFilter::default(),
            vigil_runtime::now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(stored, vec![event]);
    let result: ScanResult = codec::decode(&first[0].payload).unwrap();
    assert_eq!(result.status, ScanStatus::Failed);
    assert_eq!(result.failure.as_ref(), Some(&failure));
    assert_eq!(s.get_scan_result("req-f").await.unwrap().unwrap(), result);
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    assert_eq!(handle(&stage, &payload).await, first);

    let notes = s.list_notifications("r.io/missing:1").await.unwrap();
    assert_eq!(notes.len(), 1);
    match &notes[0].payload {
        NotificationPayload::AnalysisUpdate { status, failure: f } => {
            assert_eq!(status, "analysis_failed");
            assert_eq!(f.as_ref(), Some(&failure));
        }
        other => panic!("unexpected payload {other:?}"),
    }
}

#[tokio::test]
async fn vuln_update_only_on_non_empty_diff() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let stage = NotifyStage::new(s.clone());
    // Feed-driven, no request, empty diff, same action: nothing at all.
    let outs = handle(
        &stage,
        &evaluated(
            None,
            Action::Go,
            Some(Action::Go),
            Some(VulnDiff::default()),
        ),
    )
    .await;
    assert!(outs.is_empty());
    let outs = handle(&stage, &evaluated(None, Action::Go, None, None)).await;
    assert!(outs.is_empty());

    let diff = VulnDiff {
        added: vec![finding("CVE-9", Severity::Critical)],
        ..Default::default()
    };
    let outs = handle(
        &stage,
        &evaluated(None, Action::Go, Some(Action::Go), Some(diff.clone())),
    )
    .await;
    assert_eq!(
        subjects(&outs),
        vec![Subject::Notify(NotificationKind::VulnUpdate)]
    );
    let n: Notification = codec::decode(&outs[0].payload).unwrap();
    assert_eq!(n.payload, NotificationPayload::VulnUpdate { diff });
    assert_eq!(n.subscription_key, TAG);
    assert_eq!(n.id, outs[0].msg_id);
    assert_eq!(s.list_notifications(TAG).await.unwrap(), vec![n]);
}

#[tokio::test]
async fn policy_eval_only_on_action_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let stage = NotifyStage::new(s.clone());
    assert!(handle(
        &stage,
        &evaluated(None, Action::Stop, Some(Action::Stop), None)
    )
    .await
    .is_empty());
    let outs = handle(
        &stage,
        &evaluated(None, Action::Stop, Some(Action::Go), None),
    )
    .await;
    assert_eq!(
        subjects(&outs),
        vec![Subject::Notify(NotificationKind::PolicyEval)]
    );
    let n: Notification = codec::decode(&outs[0].payload).unwrap();
    assert_eq!(
        n.payload,
        NotificationPayload::PolicyEval {
            previous_action: Some(Action::Go),
            current_action: Action::Stop,
            policy_id: "b1".into(),
        }
    );
    // Redelivery: same id, still one stored notification.
    let again = handle(
        &stage,
        &evaluated(None, Action::Stop, Some(Action::Go), None),
    )
    .await;
    assert_eq!(again, outs);
    assert_eq!(s.list_notifications(TAG).await.unwrap().len(), 1);
}

#[tokio::test]
async fn rejects_other_records_and_missing_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_embedded(&dir.path().join("s.redb")).unwrap();
    let stage = NotifyStage::new(s);
    let other = codec::encode(&FeedSyncRequest::default()).unwrap();
    let err = stage
        .handle(&Subject::Stage(StageName::Notify), &other)
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::InvalidRequest);
    let err = stage
        .handle(
            &Subject::Stage(StageName::Notify),
            &evaluated(Some(RequestContext::new("r", TAG)), Action::Go, None, None),
        )
        .await
        .unwrap_err();
    assert!(err.is_transient());
}

fn subscription(kind: watch::SubscriptionKind, key: &str, active: bool) -> watch::Subscription {
    watch::Subscription {
        account: "admin".into(),
        kind,
        key: key.into(),
        active,
        digests: Vec::new(),
        created_at: 1,
        updated_at: 1,
    }
}

fn webhooks(names: &[&str]) -> vigil_deliver::DeliverConfig {
    let mut c = vigil_deliver::DeliverConfig::default();
    for n in names {
        c.webhooks.insert(
            n.to_string(),
            vigil_deliver::WebhookConfig {
                url: format!("http://127.0.0.1:9/{n}"),
                ..Default::default()
            },
        );
    }
    c
}

fn vuln_diff_payload() -> Vec<u8> {
    evaluated(
        None,
        Action::Go,
        Some(Action::Go),
        Some(VulnDiff {
            added: vec![finding("CVE-9", Severity::Critical)],
            ..Default::default()
        }),
    )
}

#[tokio::test]
async fn notifications_leave_nats_only_for_active_subscriptions_with_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let payload = vuln_diff_payload();

    // A webhook but no subscription: only the NATS notification.
    let stage = NotifyStage::new(s.clone()).with_deliver(webhooks(&["general"]));
    assert_eq!(
        subjects(&handle(&stage, &payload).await),
        vec![Subject::Notify(NotificationKind::VulnUpdate)]
    );

    // Subscribed but inactive: still nothing leaves.
    let mut sub = subscription(watch::SubscriptionKind::VulnUpdate, TAG, false);
    s.put_subscription(&sub).await.unwrap();
    assert_eq!(handle(&stage, &payload).await.len(), 1);

    // Active: one delivery to the general webhook, carrying the notification.
    sub.active = true;
    s.put_subscription(&sub).await.unwrap();
    let outs = handle(&stage, &payload).await;
    assert_eq!(
        subjects(&outs),
        vec![
            Subject::Notify(NotificationKind::VulnUpdate),
            Subject::Deliver("general".into())
        ]
    );
    let task: watch::DeliveryTask = codec::decode(&outs[1].payload).unwrap();
    let n: Notification = codec::decode(&outs[0].payload).unwrap();
    assert_eq!(task.body, watch::DeliveryBody::Notification(n.clone()));
    assert_eq!(task.account, "admin");
    assert_eq!(outs[1].msg_id, task.delivery_id());
    // A redelivery queues the same delivery (same id, same bytes).
    assert_eq!(handle(&stage, &payload).await, outs);

    // A type-specific webhook takes precedence over the general one.
    let stage = NotifyStage::new(s.clone()).with_deliver(webhooks(&["general", "vuln_update"]));
    let outs = handle(&stage, &payload).await;
    assert_eq!(outs[1].subject, Subject::Deliver("vuln_update".into()));

    // No webhook at all: nothing leaves although subscribed.
    let stage = NotifyStage::new(s.clone());
    assert_eq!(handle(&stage, &payload).await.len(), 1);

    // A subscription for other digests does not match this image.
    sub.digests = vec!["sha256:other".into()];
    s.put_subscription(&sub).await.unwrap();
    let stage = NotifyStage::new(s.clone()).with_deliver(webhooks(&["general"]));
    assert_eq!(handle(&stage, &payload).await.len(), 1);
    sub.digests = vec![DIGEST.into()];
    s.put_subscription(&sub).await.unwrap();
    assert_eq!(handle(&stage, &payload).await.len(), 2);

    // A subscription of another type for the same tag does not let vuln_update out.
    s.delete_subscription("admin", watch::SubscriptionKind::VulnUpdate, TAG)
        .await
        .unwrap();
    s.put_subscription(&subscription(
        watch::SubscriptionKind::PolicyEval,
        TAG,
        true,
    ))
    .await
    .unwrap();
    assert_eq!(handle(&stage, &payload).await.len(), 1);
}

#[tokio::test]
async fn tag_and_repo_updates_become_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    s.put_subscription(&subscription(watch::SubscriptionKind::TagUpdate, TAG, true))
        .await
        .unwrap();
    s.put_subscription(&subscription(
        watch::SubscriptionKind::RepoUpdate,
        "r.io/app",
        true,
    ))
    .await
    .unwrap();
    let stage = NotifyStage::new(s.clone()).with_deliver(webhooks(&["tag_update", "general"]));
    let tag = codec::encode(&watch::TagUpdated {
        account: "admin".into(),
        tag: TAG.into(),
        previous_digests: vec!["sha256:old".into()],
        digest: DIGEST.into(),
        at: 5,
    })
    .unwrap();
    let outs = handle(&stage, &tag).await;
    assert_eq!(
        subjects(&outs),
        vec![
            Subject::Notify(NotificationKind::TagUpdate),
            Subject::Deliver("tag_update".into())
        ]
    );
    let n: Notification = codec::decode(&outs[0].payload).unwrap();
    assert_eq!(
        n.payload,
        NotificationPayload::TagUpdate {
            previous_digests: vec!["sha256:old".into()],
            current_digest: DIGEST.into()
        }
    );
    assert_eq!(handle(&stage, &tag).await, outs);

    let repo = codec::encode(&watch::RepoUpdated {
        account: "admin".into(),
        repo: "r.io/app".into(),
        added: vec!["2".into()],
        removed: vec!["0".into()],
        at: 6,
    })
    .unwrap();
    let outs = handle(&stage, &repo).await;
    assert_eq!(
        subjects(&outs),
        vec![
            Subject::Notify(NotificationKind::RepoUpdate),
            Subject::Deliver("general".into())
        ]
    );
    assert_eq!(s.list_notifications("r.io/app").await.unwrap().len(), 1);
}
