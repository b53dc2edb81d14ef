//! vigil notify stage: turns evaluated images and stage failures into scan results (on
//! `<prefix>.result.<request_id>`) and notifications (on `<prefix>.notify.<kind>`).
//!
//! Everything it writes is derived from its input and the store, so a redelivered message
//! stores nothing new and publishes the same bytes under the same message ids:
//! * a scan result is stored once per request (`put_scan_result` is insert-if-absent) and
//!   the stored one is what gets published;
//! * notification ids and timestamps are derived from the content (kind, image digest, a
//!   hash of the payload and the evaluation time), never from the clock.
//!
//! Every notification is published on NATS. It leaves NATS only for an active
//! subscription (per account, type and tag; Anchore's model) and only when a webhook is
//! configured for its type (or a `general` one): then one [`DeliveryTask`] per
//! subscribed account goes to `<prefix>.deliver.<endpoint>`, a durable per-endpoint
//! queue that `vigil-deliver` works off. The watch stage's `TagUpdated` and
//! `RepoUpdated` become `tag_update` and `repo_update` notifications here, and a failed
//! request becomes an `analysis_failed` event as well as its result.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use vigil_contracts::codec;
use vigil_contracts::watch::{
    event_kind, DeliveryBody, DeliveryTask, Event, EventLevel, RepoUpdated, TagUpdated,
};
use vigil_contracts::{Analysis, Record, VulnReport};
use vigil_contracts::{
    EvaluatedImage, Failure, Notification, NotificationKind, NotificationPayload, ScanResult,
    ScanStatus, ScanSummary, StageFailed, StageName, Subject, UnixMillis,
};
use vigil_deliver::DeliverConfig;
use vigil_runtime::events::event_id;
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::Store;

/// Errors specific to notify (others are [`StageError`]s from the store and codec).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify does not handle {0} records")]
    UnexpectedRecord(String),
    #[error("cannot hash notification payload: {0}")]
    Payload(#[from] serde_json::Error),
}

impl From<NotifyError> for StageError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::UnexpectedRecord(_) => {
                StageError::new(vigil_contracts::FailureKind::InvalidRequest, e.to_string())
            }
            NotifyError::Payload(_) => StageError::internal(e),
        }
    }
}

/// Build the summary of a successful scan.
pub fn summarize(
    analysis: &Analysis,
    report: &VulnReport,
    final_action: Option<vigil_contracts::Action>,
) -> ScanSummary {
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    for f in &report.findings {
        *by_severity.entry(format!("{:?}", f.severity)).or_default() += 1;
    }
    ScanSummary {
        packages: analysis.packages.len() as u64,
        vulnerabilities: report.findings.len() as u64,
        by_severity,
        final_action,
        distro: analysis.distro.as_ref().map(|d| match &d.version_id {
            Some(v) => format!("{}:{}", d.id, v),
            None => d.id.clone(),
        }),
    }
}

/// A content-derived notification id: kind, subject (image digest or request id), a hash
/// of the payload and the time it is about.
pub fn notification_id(
    kind: NotificationKind,
    subject: &str,
    payload: &NotificationPayload,
    at: UnixMillis,
) -> Result<String, NotifyError> {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(subject.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(payload)?);
    h.update([0]);
    h.update(at.to_le_bytes());
    Ok(format!(
        "{}-{}",
        kind.as_str(),
        hex::encode(&h.finalize()[..16])
    ))
}

/// Builds results and notifications.
pub struct NotifyStage {
    store: Store,
    deliver: DeliverConfig,
}

impl NotifyStage {
    pub fn new(store: Store) -> Self {
        NotifyStage {
            store,
            deliver: DeliverConfig::default(),
        }
    }

    /// Route notifications of subscribed tags to the configured webhooks.
    pub fn with_deliver(mut self, deliver: DeliverConfig) -> Self {
        self.deliver = deliver;
        self
    }

    /// The delivery tasks for a notification: one per account with an active matching
    /// subscription, when a webhook takes its type.
    async fn deliveries(&self, n: &Notification) -> Result<Vec<Outgoing>, StageError> {
        let Some(endpoint) = self.deliver.endpoint_for(n.kind.as_str()) else {
            return Ok(Vec::new());
        };
        let subs = self
            .store
            .subscriptions_for(n.kind.subscription(), &n.subscription_key)
            .await?;
        let mut outs = Vec::new();
        for s in subs
            .iter()
            .filter(|s| s.matches_digest(n.image_digest.as_deref()))
        {
            let task = DeliveryTask {
                endpoint: endpoint.to_string(),
                account: s.account.clone(),
                body: DeliveryBody::Notification(n.clone()),
                // From the notification, not the clock: a redelivery publishes the same bytes.
                queued_at: n.created_at,
            };
            outs.push(Outgoing::record(
                Subject::Deliver(endpoint.to_string()),
                task.delivery_id(),
                &task,
            )?);
        }
        Ok(outs)
    }

    /// Store an event and publish it on `<prefix>.event.<kind>`.
    async fn event(&self, e: Event) -> Result<Outgoing, StageError> {
        self.store.put_event(&e).await?;
        Outgoing::record(Subject::Event(e.kind.clone()), e.id.clone(), &e)
    }

    /// Store the result once; on a redelivery the stored one is returned so that the
    /// published bytes are identical. Also returns the result's message, encoded once
    /// for both the store and the publication.
    async fn store_result(&self, fresh: ScanResult) -> Result<(ScanResult, Outgoing), StageError> {
        let message = |r: &ScanResult, payload: Vec<u8>| Outgoing {
            subject: Subject::Result(r.request_id.clone()),
            msg_id: format!("result-{}", r.request_id),
            payload,
        };
        let bytes = codec::encode(&fresh)?;
        if self
            .store
            .put_encoded_scan_result(&fresh.request_id, bytes.clone())
            .await?
        {
            let out = message(&fresh, bytes);
            return Ok((fresh, out));
        }
        let stored = self
            .store
            .get_scan_result(&fresh.request_id)
            .await?
            .unwrap_or(fresh);
        let out = message(&stored, codec::encode(&stored)?);
        Ok((stored, out))
    }

    async fn notification(
        &self,
        kind: NotificationKind,
        subscription_key: &str,
        image_digest: Option<&str>,
        request_id: Option<&str>,
        payload: NotificationPayload,
        at: UnixMillis,
    ) -> Result<Vec<Outgoing>, StageError> {
        let subject_key = image_digest.or(request_id).unwrap_or(subscription_key);
        let id = notification_id(kind, subject_key, &payload, at)?;
        let n = Notification {
            id: id.clone(),
            kind,
            subscription_key: subscription_key.to_string(),
            image_digest: image_digest.map(String::from),
            request_id: request_id.map(String::from),
            payload,
            created_at: at,
        };
        self.store.put_notification(&n).await?;
        let mut outs = vec![Outgoing::record(Subject::Notify(kind), id, &n)?];
        outs.extend(self.deliveries(&n).await?);
        Ok(outs)
    }

    async fn handle_evaluated(&self, msg: EvaluatedImage) -> Result<Vec<Outgoing>, StageError> {
        let mut outs = Vec::new();
        let ev = &msg.evaluation;
        let digest = msg.image_digest.as_str();
        let key = ev.tag.as_str();
        let at = ev.evaluated_at;

        if let Some(req) = &msg.request {
            let analysis = self
                .store
                .get_analysis_shared(digest)
                .await?
                .ok_or_else(|| {
                    StageError::internal(format!("no stored analysis for image {digest}"))
                })?;
            let report = self.store.get_vuln_report(digest).await?.ok_or_else(|| {
                StageError::internal(format!("no stored vulnerability report for image {digest}"))
            })?;
            let (stored, result) = self
                .store_result(ScanResult {
                    request_id: req.request_id.clone(),
                    status: ScanStatus::Succeeded,
                    source: req.source.clone(),
                    image_digest: Some(digest.to_string()),
                    tag: Some(ev.tag.clone()),
                    summary: Some(summarize(&analysis, &report, Some(ev.final_action))),
                    failure: None,
                    completed_at: now_millis(),
                    report: Some(vigil_contracts::ScanReport {
                        distro: analysis.distro.clone(),
                        packages: analysis.packages.clone(),
                        findings: report.findings.clone(),
                        evaluation: Some(ev.clone()),
                        descriptor: Some(analysis.descriptor.clone()),
                        secrets: analysis.secrets.clone(),
                        users: analysis.users.clone(),
                        groups: analysis.groups.clone(),
                        setuid_files: analysis
                            .files
                            .iter()
                            .filter(|f| f.is_setuid() || f.is_setgid())
                            .cloned()
                            .collect(),
                        dockerfile: analysis.dockerfile.clone(),
                        from_sbom: analysis.from_sbom,
                    }),
                    platform_requests: Vec::new(),
                })
                .await?;
            vigil_runtime::drop_off_thread(stored);
            outs.push(result);
            outs.extend(
                self.notification(
                    NotificationKind::AnalysisUpdate,
                    key,
                    Some(digest),
                    Some(&req.request_id),
                    NotificationPayload::AnalysisUpdate {
                        status: "analyzed".into(),
                        failure: None,
                    },
                    at,
                )
                .await?,
            );
        }
        let request_id = msg.request.as_ref().map(|r| r.request_id.as_str());

        if let Some(diff) = msg.diff.as_ref().filter(|d| !d.is_empty()) {
            outs.extend(
                self.notification(
                    NotificationKind::VulnUpdate,
                    key,
                    Some(digest),
                    request_id,
                    NotificationPayload::VulnUpdate { diff: diff.clone() },
                    at,
                )
                .await?,
            );
        }

        if let Some(prev) = msg.previous_action.filter(|p| *p != ev.final_action) {
            outs.extend(
                self.notification(
                    NotificationKind::PolicyEval,
                    key,
                    Some(digest),
                    request_id,
                    NotificationPayload::PolicyEval {
                        previous_action: Some(prev),
                        current_action: ev.final_action,
                        policy_id: ev.bundle_id.clone(),
                    },
                    at,
                )
                .await?,
            );
        }
        Ok(outs)
    }

    async fn handle_failed(&self, msg: StageFailed) -> Result<Vec<Outgoing>, StageError> {
        let req = &msg.request;
        let (result, message) = self
            .store_result(ScanResult {
                request_id: req.request_id.clone(),
                status: ScanStatus::Failed,
                source: req.source.clone(),
                image_digest: msg.image_digest.clone(),
                tag: None,
                summary: None,
                failure: Some(msg.failure.clone()),
                completed_at: now_millis(),
                report: None,
                platform_requests: Vec::new(),
            })
            .await?;
        let failure: Failure = result.failure.clone().unwrap_or(msg.failure.clone());
        let mut outs = vec![message];
        outs.push(
            self.event(Event {
                id: event_id(
                    event_kind::ANALYSIS_FAILED,
                    &req.source,
                    &req.request_id,
                    result.completed_at,
                ),
                account: vigil_contracts::watch::DEFAULT_ACCOUNT.into(),
                level: EventLevel::Error,
                kind: event_kind::ANALYSIS_FAILED.into(),
                resource: req.source.clone(),
                message: format!(
                    "analysis of {} failed in {}: {}",
                    req.source, failure.stage, failure.message
                ),
                details: [
                    ("request_id".to_string(), req.request_id.clone()),
                    ("stage".to_string(), failure.stage.to_string()),
                    (
                        "image_digest".to_string(),
                        msg.image_digest.clone().unwrap_or_default(),
                    ),
                ]
                .into_iter()
                .collect(),
                at: result.completed_at,
            })
            .await?,
        );
        outs.extend(
            self.notification(
                NotificationKind::AnalysisUpdate,
                &req.source,
                msg.image_digest.as_deref(),
                Some(&req.request_id),
                NotificationPayload::AnalysisUpdate {
                    status: "analysis_failed".into(),
                    failure: Some(failure),
                },
                result.completed_at,
            )
            .await?,
        );
        Ok(outs)
    }
}

impl NotifyStage {
    async fn handle_tag_updated(&self, msg: TagUpdated) -> Result<Vec<Outgoing>, StageError> {
        self.notification(
            NotificationKind::TagUpdate,
            &msg.tag,
            Some(&msg.digest),
            None,
            NotificationPayload::TagUpdate {
                previous_digests: msg.previous_digests,
                current_digest: msg.digest.clone(),
            },
            msg.at,
        )
        .await
    }

    async fn handle_repo_updated(&self, msg: RepoUpdated) -> Result<Vec<Outgoing>, StageError> {
        self.notification(
            NotificationKind::RepoUpdate,
            &msg.repo,
            None,
            None,
            NotificationPayload::RepoUpdate {
                added_tags: msg.added,
                removed_tags: msg.removed,
            },
            msg.at,
        )
        .await
    }
}

#[async_trait]
impl Stage for NotifyStage {
    fn name(&self) -> StageName {
        StageName::Notify
    }

    async fn handle(
        &self,
        _subject: &Subject,
        payload: &[u8],
    ) -> Result<Vec<Outgoing>, StageError> {
        let header = codec::header(payload)?;
        match header.record.as_str() {
            EvaluatedImage::KIND => self.handle_evaluated(codec::decode(payload)?).await,
            StageFailed::KIND => self.handle_failed(codec::decode(payload)?).await,
            TagUpdated::KIND => self.handle_tag_updated(codec::decode(payload)?).await,
            RepoUpdated::KIND => self.handle_repo_updated(codec::decode(payload)?).await,
            other => Err(NotifyError::UnexpectedRecord(other.to_string()).into()),
        }
    }
}

#[cfg(test)]
mod tests;
