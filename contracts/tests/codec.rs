//! Codec contract: every record round-trips; unknown fields are tolerated; a newer
//! schema version is rejected with a clear error; the wrong record kind is refused.

use std::collections::BTreeMap;

use serde::Serialize;
use vigil_contracts::codec::{self, CodecError, Record, SCHEMA_VERSION};
use vigil_contracts::*;

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        source: "127.0.0.1:5000/app:1".into(),
        platform: Some("linux/arm64".into()),
        policy_id: Some("p".into()),
        policy_bundle: None,
        submitted_at: 42,
        dockerfile: None,
        index_digest: None,
        refetches: 1,
    }
}

fn descriptor() -> ImageDescriptor {
    ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::Registry,
            name: "127.0.0.1:5000/app".into(),
            tag: Some("1".into()),
            digest: "sha256:aa".into(),
            index_digest: Some("sha256:bb".into()),
            config_digest: "sha256:cc".into(),
            platform: "linux/amd64".into(),
        },
        config: ImageConfig {
            os: "linux".into(),
            architecture: "amd64".into(),
            user: Some("root".into()),
            exposed_ports: vec!["22/tcp".into()],
            history: vec![HistoryEntry {
                created_by: Some("EXPOSE 22".into()),
                empty_layer: true,
                ..Default::default()
            }],
            labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
            ..Default::default()
        },
        layers: vec![LayerRef {
            digest: "sha256:dd".into(),
            diff_id: Some("sha256:ee".into()),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 10,
            compression: Compression::Gzip,
        }],
    }
}

fn finding() -> Finding {
    Finding {
        vuln_id: "CVE-1".into(),
        aliases: vec!["GHSA-x".into()],
        severity: Severity::High,
        package: PackageRef {
            name: "openssl".into(),
            version: "1".into(),
            kind: PackageType::Deb,
            location: None,
        },
        fixed_in: Some("2".into()),
        state: FixState::Fixed,
        feed: "debian".into(),
        matched: MatchDetail {
            namespace: "debian:12".into(),
            searched_name: "openssl".into(),
            comparator: "dpkg".into(),
            constraint: "< 2".into(),
        },
        description: None,
        urls: vec![],
        cvss: Vec::new(),
        published: None,
        fix_published: None,
        vendor_only: false,
    }
}

fn roundtrip<T: Record + PartialEq + std::fmt::Debug>(r: T) {
    let b = codec::encode(&r).unwrap();
    let h = codec::header(&b).unwrap();
    assert_eq!(h.record, T::KIND);
    assert_eq!(h.schema_version, SCHEMA_VERSION);
    assert_eq!(codec::decode::<T>(&b).unwrap(), r);
}

#[test]
fn every_record_roundtrips() {
    let evaluation = Evaluation {
        image_digest: "sha256:aa".into(),
        tag: "t".into(),
        bundle_id: "b".into(),
        policy_ids: vec!["p".into()],
        final_action: Action::Warn,
        final_action_reason: "policy_evaluation".into(),
        findings: vec![PolicyFinding {
            gate: "dockerfile".into(),
            trigger: "exposed_ports".into(),
            trigger_id: "x".into(),
            message: "m".into(),
            action: Action::Warn,
            policy_id: "p".into(),
            rule_id: "r".into(),
            allowlisted: false,
            allowlist_id: None,
        }],
        evaluated_at: 1,
    };
    let failure = Failure {
        stage: StageName::Fetch,
        kind: FailureKind::NotFound,
        message: "no such image".into(),
    };
    roundtrip(ScanRequest {
        request: ctx(),
        force: true,
        sbom: None,
    });
    roundtrip(FetchedImage {
        request: ctx(),
        descriptor: descriptor(),
        to_extract: vec!["sha256:dd".into()],
        force: false,
    });
    roundtrip(ExtractedImage {
        request: ctx(),
        descriptor: descriptor(),
    });
    roundtrip(LayerIndex {
        layer_digest: "sha256:dd".into(),
        entries: vec![FileEntry {
            path: "/etc/passwd".into(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            link: None,
            sha256: None,
            md5: None,
            sha1: None,
        }],
        kept: vec![KeptFile {
            path: "/etc/passwd".into(),
            content: b"r:x".to_vec(),
            truncated: false,
        }],
        uncompressed_size: 1024,
        extractor_version: 1,
        warnings: vec![],
        secrets: Vec::new(),
        packages: Vec::new(),
        content_matches: Vec::new(),
    });
    roundtrip(Analysis {
        descriptor: descriptor(),
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        }),
        packages: vec![Package {
            name: "bash".into(),
            version: "5.2".into(),
            kind: PackageType::Deb,
            arch: Some("amd64".into()),
            source_name: None,
            source_version: None,
            licenses: vec![],
            locations: vec!["/var/lib/dpkg/status".into()],
            purl: None,
            cpes: Vec::new(),
            files: Vec::new(),
            metadata: Default::default(),
            found_by: None,
            file_digests: Default::default(),
        }],
        file_count: 1,
        image_size: 2,
        analyzed_at: 3,
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
    });
    roundtrip(AnalyzedImage {
        request: Some(ctx()),
        image_digest: "sha256:aa".into(),
        cause: None,
    });
    roundtrip(RematchImages {
        cause: "debian:sync-1".into(),
        images: vec!["sha256:aa".into(), "sha256:bb".into()],
    });
    roundtrip(VulnReport {
        image_digest: "sha256:aa".into(),
        findings: vec![finding()],
        namespaces_with_data: vec!["debian:12".into()],
        matched_at: 5,
    });
    roundtrip(MatchedImage {
        request: None,
        image_digest: "sha256:aa".into(),
        matched_at: 7,
        diff: Some(VulnDiff {
            added: vec![finding()],
            ..Default::default()
        }),
    });
    roundtrip(evaluation.clone());
    roundtrip(EvaluatedImage {
        request: Some(ctx()),
        image_digest: "sha256:aa".into(),
        evaluation,
        previous_action: Some(Action::Go),
        diff: None,
    });
    roundtrip(StageFailed {
        request: ctx(),
        failure: failure.clone(),
        image_digest: None,
    });
    roundtrip(ScanResult {
        request_id: "req-1".into(),
        status: ScanStatus::Failed,
        source: "x".into(),
        image_digest: None,
        tag: None,
        summary: Some(ScanSummary::default()),
        failure: Some(failure.clone()),
        completed_at: 9,
        report: None,
        platform_requests: Vec::new(),
    });
    roundtrip(Notification {
        id: "n".into(),
        kind: NotificationKind::AnalysisUpdate,
        subscription_key: "k".into(),
        image_digest: None,
        request_id: Some("req-1".into()),
        payload: NotificationPayload::AnalysisUpdate {
            status: "analysis_failed".into(),
            failure: Some(failure),
        },
        created_at: 1,
    });
    roundtrip(FeedDelta {
        feed: "alpine".into(),
        sync_id: "s".into(),
        changed: vec![PackageKey {
            namespace: "alpine:3.19".into(),
            package: "musl".into(),
        }],
        synced_at: 1,
    });
    roundtrip(FeedSyncRequest::default());
    roundtrip(FeedState::default());
    roundtrip(DeadLetter {
        stage: StageName::Extract,
        subject: "vigil.stage.extract".into(),
        deliveries: 5,
        error: "boom".into(),
        payload: vec![1, 2, 3],
        failed_at: 1,
    });
    roundtrip(Advisory {
        id: "CVE-1".into(),
        aliases: vec![],
        namespace: "debian:12".into(),
        package: "openssl".into(),
        feed: "debian".into(),
        severity: Severity::Low,
        state: FixState::WontFix,
        ranges: vec![AffectedRange {
            kind: Default::default(),
            introduced: None,
            fixed: Some("2".into()),
            last_affected: None,
        }],
        versions: vec![],
        description: None,
        urls: vec![],
        published: None,
        modified: None,
        cvss: Vec::new(),
        cwes: Vec::new(),
        withdrawn: false,
        vendor_only: false,
        fix_published: None,
        module: None,
    });
    roundtrip(StoredBundle {
        id: "b".into(),
        name: "n".into(),
        json: "{}".into(),
        active: true,
        created_at: 1,
    });
    roundtrip(PolicyUpdated {
        bundle_id: "b".into(),
        updated_at: 1,
        bundle_json: None,
    });
}

/// An advisory as stored before ranges had a kind and advisories a module: decodes with
/// `RangeKind::Ecosystem` and no module; a SEMVER range and a module round-trip.
#[test]
fn advisory_without_range_kind_or_module_decodes() {
    let old = serde_json::json!({
        "id": "CVE-1", "aliases": [], "namespace": "go", "package": "example.com/m",
        "feed": "osv", "severity": "High", "state": "fixed",
        "ranges": [{"introduced": "0", "fixed": "1.2.0", "last_affected": null}],
        "versions": [],
    });
    let raw = RawEnvelope {
        schema_version: SCHEMA_VERSION,
        record: Advisory::KIND.into(),
        body: old,
        trace_parent: String::new(),
    };
    let a: Advisory = codec::decode(&rmp_serde::to_vec_named(&raw).unwrap()).unwrap();
    assert_eq!(a.ranges[0].kind, RangeKind::Ecosystem);
    assert_eq!(a.ranges[0].fixed.as_deref(), Some("1.2.0"));
    assert_eq!(a.module, None);
    assert_eq!(a.record_key(), "CVE-1");

    let mut b = a.clone();
    b.ranges[0].kind = RangeKind::Semver;
    b.module = Some("nodejs:18".into());
    let back: Advisory = codec::decode(&codec::encode(&b).unwrap()).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.ranges[0].kind, RangeKind::Semver);
    assert_eq!(back.record_key(), "CVE-1|nodejs:18");

    // A feed state written before `parser_version` existed reads as version 0.
    let raw = RawEnvelope {
        schema_version: SCHEMA_VERSION,
        record: FeedState::KIND.into(),
        body: serde_json::json!({"feed": "osv", "url": "/x", "last_sync": 1, "record_count": 2}),
        trace_parent: String::new(),
    };
    let st: FeedState = codec::decode(&rmp_serde::to_vec_named(&raw).unwrap()).unwrap();
    assert_eq!((st.parser_version, st.record_count), (0, 2));
}

/// A future writer's ScanRequest with a field this reader does not know.
#[derive(Serialize)]
struct FutureScanRequest {
    request: RequestContext,
    force: bool,
    priority: u32,
    labels: Vec<String>,
}

#[derive(Serialize)]
struct RawEnvelope<T> {
    schema_version: u32,
    record: String,
    body: T,
    trace_parent: String,
}

#[test]
fn unknown_fields_are_tolerated() {
    let raw = RawEnvelope {
        schema_version: SCHEMA_VERSION,
        record: ScanRequest::KIND.into(),
        body: FutureScanRequest {
            request: ctx(),
            force: true,
            priority: 9,
            labels: vec!["x".into()],
        },
        trace_parent: "00-abc".into(),
    };
    let bytes = rmp_serde::to_vec_named(&raw).unwrap();
    let r: ScanRequest = codec::decode(&bytes).unwrap();
    assert_eq!(r.request, ctx());
    assert!(r.force);
}

#[test]
fn newer_schema_is_rejected_not_misread() {
    let raw = RawEnvelope {
        schema_version: SCHEMA_VERSION + 1,
        record: ScanRequest::KIND.into(),
        body: FutureScanRequest {
            request: ctx(),
            force: true,
            priority: 9,
            labels: vec![],
        },
        trace_parent: String::new(),
    };
    let bytes = rmp_serde::to_vec_named(&raw).unwrap();
    let err = codec::decode::<ScanRequest>(&bytes).unwrap_err();
    match &err {
        CodecError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade vigil"));
}

#[test]
fn wrong_kind_and_garbage_are_errors() {
    let b = codec::encode(&FeedSyncRequest::default()).unwrap();
    assert!(matches!(
        codec::decode::<ScanRequest>(&b),
        Err(CodecError::WrongKind { .. })
    ));
    assert!(matches!(
        codec::decode::<ScanRequest>(b"not msgpack at all"),
        Err(CodecError::Header(_))
    ));
}

#[test]
fn subjects_render_and_parse_with_any_prefix() {
    for prefix in ["vigil", "team-a.vigil"] {
        let s = Subjects::new(prefix);
        for subj in [
            Subject::ScanRequest,
            Subject::Stage(StageName::Extract),
            Subject::Result("req-1".into()),
            Subject::Notify(NotificationKind::VulnUpdate),
            Subject::FeedsUpdated,
            Subject::FeedsSync,
            Subject::PolicyUpdated,
            Subject::DeadLetter(StageName::Match),
        ] {
            let r = s.render(&subj);
            assert!(r.starts_with(prefix));
            assert_eq!(s.parse(&r), Some(subj));
        }
        assert_eq!(s.parse("other.scan.request"), None);
    }
    // Request ids never break the subject into more tokens.
    let s = Subjects::default();
    assert_eq!(
        s.render(&Subject::Result("a.b c*".into())),
        "vigil.result.a_b_c_"
    );
}

/// An envelope whose body comes before its header fields (another writer's field order).
#[derive(Serialize)]
struct BodyFirst<T> {
    body: T,
    record: String,
    schema_version: u32,
}

#[test]
fn header_is_read_in_any_field_order() {
    let bytes = rmp_serde::to_vec_named(&BodyFirst {
        body: FeedSyncRequest::default(),
        record: FeedSyncRequest::KIND.into(),
        schema_version: SCHEMA_VERSION,
    })
    .unwrap();
    let h = codec::header(&bytes).unwrap();
    assert_eq!(h.record, FeedSyncRequest::KIND);
    assert_eq!(
        codec::decode::<FeedSyncRequest>(&bytes).unwrap(),
        FeedSyncRequest::default()
    );
    // A newer version is refused whichever order the fields come in.
    let bytes = rmp_serde::to_vec_named(&BodyFirst {
        body: FeedSyncRequest::default(),
        record: FeedSyncRequest::KIND.into(),
        schema_version: SCHEMA_VERSION + 1,
    })
    .unwrap();
    assert!(matches!(
        codec::header(&bytes),
        Err(CodecError::NewerSchema { .. })
    ));
}

/// A body with one of every MessagePack type before the field looked for.
#[derive(Serialize)]
struct Mixed {
    neg: i64,
    small_neg: i8,
    big: u64,
    float: f64,
    single: f32,
    flag: bool,
    nothing: Option<u8>,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    long_text: String,
    nested: Vec<BTreeMap<String, Vec<i32>>>,
    many: Vec<u16>,
    extractor_version: u32,
    after: String,
}

#[test]
fn a_body_field_is_read_without_decoding_the_body() {
    let body = Mixed {
        neg: -40_000_000_000,
        small_neg: -3,
        big: u64::MAX,
        float: 1.5,
        single: -0.25,
        flag: true,
        nothing: None,
        bytes: vec![7; 70_000],
        long_text: "x".repeat(300),
        nested: vec![BTreeMap::from([("k".to_string(), vec![-1, 200, 70_000])]); 3],
        many: (0..20_000).collect(),
        extractor_version: 4,
        after: "not read".into(),
    };
    let raw = RawEnvelope {
        schema_version: SCHEMA_VERSION,
        record: LayerIndex::KIND.into(),
        body,
        trace_parent: String::new(),
    };
    let bytes = rmp_serde::to_vec_named(&raw).unwrap();
    assert_eq!(
        codec::peek_body_u64::<LayerIndex>(&bytes, "extractor_version").unwrap(),
        Some(4)
    );
    assert_eq!(
        codec::peek_body_u64::<LayerIndex>(&bytes, "big").unwrap(),
        Some(u64::MAX)
    );
    // Absent, or not an unsigned integer: none.
    assert_eq!(
        codec::peek_body_u64::<LayerIndex>(&bytes, "missing").unwrap(),
        None
    );
    assert_eq!(
        codec::peek_body_u64::<LayerIndex>(&bytes, "neg").unwrap(),
        None
    );
    // Cut short: none, not a panic.
    for cut in [bytes.len() / 2, bytes.len() - 20, 30] {
        let _ = codec::peek_body_u64::<LayerIndex>(&bytes[..cut], "extractor_version");
    }
    assert_eq!(
        codec::peek_body_u64::<LayerIndex>(&bytes[..bytes.len() / 2], "extractor_version").unwrap(),
        None
    );
    // Another record kind is refused.
    assert!(matches!(
        codec::peek_body_u64::<ScanRequest>(&bytes, "extractor_version"),
        Err(CodecError::WrongKind { .. })
    ));
}

#[test]
fn a_layer_index_names_its_extractor_version_before_its_entries() {
    let entry = FileEntry {
        path: "/usr/lib/x".into(),
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 1,
        link: None,
        sha256: None,
        md5: None,
        sha1: None,
    };
    let idx = LayerIndex {
        layer_digest: "sha256:dd".into(),
        entries: vec![entry; 1000],
        kept: Vec::new(),
        uncompressed_size: 1,
        extractor_version: 9,
        warnings: Vec::new(),
        secrets: Vec::new(),
        content_matches: Vec::new(),
        packages: Vec::new(),
    };
    let bytes = codec::encode(&idx).unwrap();
    assert_eq!(
        codec::peek_body_u64::<LayerIndex>(&bytes, "extractor_version").unwrap(),
        Some(9)
    );
    // It is found in the first bytes: the entries are never walked.
    let pos = bytes
        .windows(b"extractor_version".len())
        .position(|w| w == b"extractor_version")
        .unwrap();
    assert!(pos < 100, "extractor_version at byte {pos}");
}
