//! The match stage: match analysed images, and re-match images when feeds change.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::codec;
use vigil_contracts::{
    AnalyzedImage, FailureKind, FeedDelta, MatchedImage, StageName, Subject, VulnDiff, VulnReport,
};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::Store;

use crate::matcher::{diff, lookup_keys, match_packages};

/// Matches analyses against stored advisories and keeps the reverse index current.
pub struct MatchStage {
    store: Store,
}

/// What matching one image produced.
#[derive(Debug, Clone)]
pub struct ImageMatch {
    pub report: VulnReport,
    pub diff: VulnDiff,
    /// Whether a report was stored for the image before.
    pub had_previous: bool,
}

impl MatchStage {
    pub fn new(store: Store) -> Self {
        MatchStage { store }
    }

    /// Match one image, store its report and reverse index, and return the change.
    pub async fn match_image(&self, image_digest: &str) -> Result<ImageMatch, StageError> {
        let analysis = self
            .store
            .get_analysis(image_digest)
            .await?
            .ok_or_else(|| {
                StageError::new(
                    FailureKind::Internal,
                    format!("no analysis stored for {image_digest}"),
                )
            })?;
        let keys = lookup_keys(&analysis);
        let mut advisories = BTreeMap::new();
        for k in &keys {
            advisories.insert(k.clone(), self.store.get_advisories(k).await?);
        }
        let outcome = match_packages(&analysis, |k| {
            advisories.get(k).cloned().unwrap_or_default()
        });
        let previous = self.store.get_vuln_report(image_digest).await?;
        let d = diff(
            previous
                .as_ref()
                .map(|r| r.findings.as_slice())
                .unwrap_or(&[]),
            &outcome.findings,
        );
        let report = VulnReport {
            image_digest: image_digest.to_string(),
            findings: outcome.findings,
            namespaces_with_data: outcome.namespaces_with_data,
            matched_at: now_millis(),
        };
        self.store.put_vuln_report(&report).await?;
        self.store
            .index_image_keys(image_digest, &outcome.keys)
            .await?;
        tracing::debug!(
            image = image_digest,
            findings = report.findings.len(),
            keys = outcome.keys.len(),
            added = d.added.len(),
            removed = d.removed.len(),
            "matched"
        );
        Ok(ImageMatch {
            report,
            diff: d,
            had_previous: previous.is_some(),
        })
    }

    async fn on_analyzed(&self, msg: AnalyzedImage) -> Result<Vec<Outgoing>, StageError> {
        let m = self.match_image(&msg.image_digest).await?;
        let id = match &msg.request {
            Some(r) => format!("match:{}:{}", r.request_id, msg.image_digest),
            None => format!("match:-:{}", msg.image_digest),
        };
        let out = MatchedImage {
            request: msg.request,
            image_digest: msg.image_digest,
            diff: m.had_previous.then_some(m.diff),
        };
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Evaluate),
            id,
            &out,
        )?])
    }

    async fn on_feed_delta(&self, delta: FeedDelta) -> Result<Vec<Outgoing>, StageError> {
        let mut images = BTreeSet::new();
        for k in &delta.changed {
            images.extend(self.store.images_for_key(k).await?);
        }
        tracing::info!(
            feed = delta.feed,
            keys = delta.changed.len(),
            images = images.len(),
            "re-matching after feed update"
        );
        let mut out = Vec::new();
        for digest in images {
            if self.store.get_analysis(&digest).await?.is_none() {
                tracing::warn!(
                    image = digest,
                    "reverse index names an image without analysis"
                );
                continue;
            }
            let m = self.match_image(&digest).await?;
            if m.diff.is_empty() {
                continue;
            }
            out.push(Outgoing::record(
                Subject::Stage(StageName::Evaluate),
                format!("rematch:{}:{}:{}", delta.feed, delta.sync_id, digest),
                &MatchedImage {
                    request: None,
                    image_digest: digest,
                    diff: Some(m.diff),
                },
            )?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Stage for MatchStage {
    fn name(&self) -> StageName {
        StageName::Match
    }

    async fn handle(&self, subject: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        match subject {
            Subject::Stage(StageName::Match) => {
                let msg: AnalyzedImage = codec::decode(payload)?;
                let span = tracing::info_span!(
                    "match",
                    image = %msg.image_digest,
                    request = msg.request.as_ref().map(|r| r.request_id.as_str()).unwrap_or("")
                );
                self.on_analyzed(msg).instrument(span).await
            }
            Subject::FeedsUpdated => {
                let delta: FeedDelta = codec::decode(payload)?;
                let span =
                    tracing::info_span!("rematch", feed = %delta.feed, sync = %delta.sync_id);
                self.on_feed_delta(delta).instrument(span).await
            }
            other => Err(StageError::new(
                FailureKind::InvalidRequest,
                format!("match stage does not consume {other:?}"),
            )),
        }
    }
}
