//! What happens to a message a stage gave up on, shared by both runners: a dead letter
//! on `<prefix>.dlq.<stage>` carrying the error, and — when the message belongs to a
//! request — a `StageFailed` routed to notify so that the requester gets a failed
//! `ScanResult`. When notify itself is the failing stage, the failed result is produced
//! here directly so that nothing is lost.

use vigil_contracts::{
    DeadLetter, Failure, ScanResult, ScanStatus, StageFailed, StageName, Subject,
};

use crate::now_millis;
use crate::stage::{request_of, Outgoing, StageError};

/// The stage that consumes a work subject.
pub fn route_of(subject: &Subject) -> Option<StageName> {
    match subject {
        Subject::ScanRequest => Some(StageName::Fetch),
        Subject::Stage(s) => Some(*s),
        Subject::FeedsUpdated => Some(StageName::Match),
        Subject::FeedsSync => Some(StageName::Feeds),
        _ => None,
    }
}

/// Outputs that report a message given up on.
pub fn failure_outputs(
    stage: StageName,
    subject: &str,
    payload: &[u8],
    err: &StageError,
    deliveries: u64,
) -> Vec<Outgoing> {
    let mut outs = Vec::new();
    let dl = DeadLetter {
        stage,
        subject: subject.to_string(),
        deliveries,
        error: format!("{:?}: {}", err.kind, err.message),
        payload: payload.to_vec(),
        failed_at: now_millis(),
    };
    let key = request_of(payload)
        .map(|r| r.request_id)
        .unwrap_or_else(|| short_hash(payload));
    if let Ok(o) = Outgoing::record(
        Subject::DeadLetter(stage),
        format!("dlq-{stage}-{key}"),
        &dl,
    ) {
        outs.push(o);
    }
    if let Some(request) = request_of(payload) {
        let failure = Failure {
            stage,
            kind: err.kind,
            message: err.message.clone(),
        };
        let id = request.request_id.clone();
        let out = if stage == StageName::Notify {
            Outgoing::record(
                Subject::Result(id.clone()),
                format!("result-{id}"),
                &ScanResult {
                    request_id: id.clone(),
                    status: ScanStatus::Failed,
                    source: request.source.clone(),
                    image_digest: None,
                    tag: None,
                    summary: None,
                    failure: Some(failure),
                    completed_at: now_millis(),
                    report: None,
                    platform_requests: Vec::new(),
                },
            )
        } else {
            Outgoing::record(
                Subject::Stage(StageName::Notify),
                format!("failed-{stage}-{id}"),
                &StageFailed {
                    request,
                    failure,
                    image_digest: None,
                },
            )
        };
        if let Ok(o) = out {
            outs.push(o);
        }
    }
    outs
}

fn short_hash(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(b)[..12])
}
