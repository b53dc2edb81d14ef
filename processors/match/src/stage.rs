//! The match stage: match analysed images, and re-match images when feeds change.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use vigil_contracts::codec;
use vigil_contracts::{
    Advisory, AnalyzedImage, FailureKind, FeedDelta, MatchedImage, PackageKey, StageName, Subject,
    VulnDiff, VulnReport,
};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::{Store, Table};

use crate::matcher::{diff, lookup_keys, match_packages};

/// Advisory reads in flight at once while an image's keys are prefetched.
const PREFETCH_CONCURRENCY: usize = 16;

/// Matches analyses against stored advisories and keeps the reverse index current.
pub struct MatchStage {
    store: Store,
}

/// The change the last match of an image announced, and the message that caused it:
/// stored before the new report, so that a redelivery of that message (the process died
/// after the report was written and before its outputs were published) announces the
/// same change instead of an empty diff against the report it wrote itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastMatch {
    /// Hex SHA-256 of the input message.
    pub input: String,
    pub diff: VulnDiff,
    pub had_previous: bool,
    pub matched_at: vigil_contracts::UnixMillis,
}

impl vigil_contracts::Record for LastMatch {
    const KIND: &'static str = "last_match";
}

/// Meta partition of an image's [`LastMatch`].
fn last_match_partition(image_digest: &str) -> String {
    format!("last-match|{image_digest}")
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
        self.match_image_for(image_digest, None).await
    }

    /// As [`MatchStage::match_image`], for the input message whose hash is `input`: when
    /// the last match of the image was made for the same message, the change it
    /// announced is announced again (and the report rewritten, in case the first attempt
    /// stopped before writing it).
    pub async fn match_image_for(
        &self,
        image_digest: &str,
        input: Option<&str>,
    ) -> Result<ImageMatch, StageError> {
        let last_key = last_match_partition(image_digest);
        let last: Option<LastMatch> =
            match self.store.backend().get(Table::Meta, &last_key, "").await? {
                Some(b) => codec::decode(&b).ok(),
                None => None,
            };
        let replay = match (input, last) {
            (Some(i), Some(l)) if l.input == i => Some(l),
            _ => None,
        };
        let analysis = self
            .store
            .get_analysis_shared(image_digest)
            .await?
            .ok_or_else(|| {
                StageError::new(
                    FailureKind::Internal,
                    format!("no analysis stored for {image_digest}"),
                )
            })?;
        // Prefetch the image's own keys; keys the matcher asks for beyond them (like-distro
        // fallback namespaces) are fetched and the match redone, a bounded number of times.
        // A few reads in flight at once: an image has a key per package.
        let store = &self.store;
        let mut advisories: BTreeMap<PackageKey, Vec<Advisory>> =
            futures::stream::iter(lookup_keys(&analysis))
                .map(|k| async move {
                    let a = store.get_advisories(&k).await?;
                    Ok::<_, StageError>((k, a))
                })
                .buffered(PREFETCH_CONCURRENCY)
                .try_collect()
                .await?;
        let mut rounds = 0;
        let outcome = loop {
            let mut missing = BTreeSet::new();
            let outcome = match_packages(&analysis, |k| match advisories.get(k) {
                Some(a) => a.clone(),
                None => {
                    missing.insert(k.clone());
                    Vec::new()
                }
            });
            rounds += 1;
            if missing.is_empty() || rounds >= 4 {
                break outcome;
            }
            for k in missing {
                let a = self.store.get_advisories(&k).await?;
                advisories.insert(k, a);
            }
        };
        let (d, had_previous, matched_at) = match replay {
            Some(l) => (l.diff, l.had_previous, l.matched_at),
            None => {
                let previous = self.store.get_vuln_report(image_digest).await?;
                let d = diff(
                    previous
                        .as_ref()
                        .map(|r| r.findings.as_slice())
                        .unwrap_or(&[]),
                    &outcome.findings,
                );
                let matched_at = now_millis();
                if let Some(i) = input {
                    let last = LastMatch {
                        input: i.to_string(),
                        diff: d.clone(),
                        had_previous: previous.is_some(),
                        matched_at,
                    };
                    self.store
                        .backend()
                        .put(Table::Meta, &last_key, "", codec::encode(&last)?)
                        .await?;
                }
                (d, previous.is_some(), matched_at)
            }
        };
        let report = VulnReport {
            image_digest: image_digest.to_string(),
            findings: outcome.findings,
            namespaces_with_data: outcome.namespaces_with_data,
            matched_at,
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
            had_previous,
        })
    }

    async fn on_analyzed(
        &self,
        msg: AnalyzedImage,
        input: &str,
    ) -> Result<Vec<Outgoing>, StageError> {
        let m = self.match_image_for(&msg.image_digest, Some(input)).await?;
        let matched_at = m.report.matched_at;
        let (id, diff) = match &msg.request {
            Some(r) => (
                format!("match:{}:{}", r.request_id, msg.image_digest),
                m.had_previous.then_some(m.diff),
            ),
            // A re-match after a feed update: evaluate and notify only when the findings
            // changed. The id names the change, so that a redelivery publishes nothing new
            // while a later, different change of the same image still goes out.
            None => {
                if m.diff.is_empty() {
                    return Ok(Vec::new());
                }
                (
                    format!("rematched:{}:{}", msg.image_digest, diff_id(&m.diff)),
                    Some(m.diff),
                )
            }
        };
        let out = MatchedImage {
            request: msg.request,
            image_digest: msg.image_digest,
            diff,
            matched_at,
        };
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Evaluate),
            id,
            &out,
        )?])
    }

    /// A feed changed: look the changed keys up in the reverse index and fan out one
    /// re-match message per affected image, so that the images are matched, evaluated
    /// and notified concurrently, by as many match consumers as run.
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
        images
            .into_iter()
            .map(|digest| {
                Outgoing::record(
                    Subject::Stage(StageName::Match),
                    format!("rematch:{}:{}:{}", delta.feed, delta.sync_id, digest),
                    &AnalyzedImage {
                        request: None,
                        image_digest: digest,
                        cause: Some(format!("{}:{}", delta.feed, delta.sync_id)),
                    },
                )
            })
            .collect()
    }
}

/// A short content id of a diff (vulnerability, package and state of each change).
fn diff_id(d: &VulnDiff) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (tag, list) in [("+", &d.added), ("~", &d.updated), ("-", &d.removed)] {
        for f in list.iter() {
            h.update(format!(
                "{tag}{}|{}|{}|{:?}|{:?}\n",
                f.vuln_id, f.package.name, f.package.version, f.state, f.fixed_in
            ));
        }
    }
    hex::encode(&h.finalize()[..8])
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
                let input = {
                    use sha2::{Digest, Sha256};
                    hex::encode(Sha256::digest(payload))
                };
                self.on_analyzed(msg, &input).instrument(span).await
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
