//! The match stage: match analysed images, and re-match images when feeds change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use vigil_contracts::codec;
use vigil_contracts::Record;
use vigil_contracts::{
    Advisory, Analysis, AnalyzedImage, FailureKind, FeedDelta, MatchedImage, PackageKey,
    RematchImages, StageName, Subject, VulnDiff, VulnReport,
};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::{Store, Table};

use crate::matcher::{diff, lookup_keys, match_packages};

/// Advisory reads in flight at once while an image's keys are prefetched.
const PREFETCH_CONCURRENCY: usize = 16;

/// Images named by one re-match message, at most (see [`RematchImages`]).
pub const REMATCH_BATCH: usize = 32;

/// Images of one re-match message matched at once.
const BATCH_CONCURRENCY: usize = 8;

/// Matches analyses against stored advisories and keeps the reverse index current.
pub struct MatchStage {
    store: Store,
    rematch_batch: usize,
}

/// The advisories read for the images of one message, each key read once.
#[derive(Default)]
struct AdvisorySet {
    map: Mutex<HashMap<PackageKey, Arc<Vec<Advisory>>>>,
}

impl AdvisorySet {
    /// Read the keys not read yet, a few at a time.
    async fn load(
        &self,
        store: &Store,
        keys: impl IntoIterator<Item = PackageKey>,
    ) -> Result<(), StageError> {
        let missing: BTreeSet<PackageKey> = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            keys.into_iter().filter(|k| !map.contains_key(k)).collect()
        };
        let fetched: Vec<(PackageKey, Vec<Advisory>)> = futures::stream::iter(missing)
            .map(|k| async move {
                let a = store.get_advisories(&k).await?;
                Ok::<_, StageError>((k, a))
            })
            .buffered(PREFETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (k, a) in fetched {
            map.entry(k).or_insert_with(|| Arc::new(a));
        }
        Ok(())
    }

    fn get(&self, key: &PackageKey) -> Option<Arc<Vec<Advisory>>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }
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
        MatchStage {
            store,
            rematch_batch: REMATCH_BATCH,
        }
    }

    /// Name at most `images` images per re-match message (at least one).
    pub fn with_rematch_batch(mut self, images: usize) -> Self {
        self.rematch_batch = images.max(1);
        self
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
        let analysis = self.load_analysis(image_digest).await?;
        let advisories = AdvisorySet::default();
        // Prefetch the image's own keys; keys the matcher asks for beyond them (like-distro
        // fallback namespaces) are fetched and the match redone, a bounded number of times.
        advisories.load(&self.store, lookup_keys(&analysis)).await?;
        self.match_with(image_digest, &analysis, input, &advisories, true)
            .await
    }

    async fn load_analysis(&self, image_digest: &str) -> Result<Arc<Analysis>, StageError> {
        self.store
            .get_analysis_shared(image_digest)
            .await?
            .ok_or_else(|| {
                StageError::new(
                    FailureKind::Internal,
                    format!("no analysis stored for {image_digest}"),
                )
            })
    }

    /// Match an analysis with advisories read into `advisories` (more are read when the
    /// matcher asks for keys not there yet). `repair_index`: put every reverse-index row
    /// again (a scan), or only the rows of keys that changed (a re-match).
    async fn match_with(
        &self,
        image_digest: &str,
        analysis: &Analysis,
        input: Option<&str>,
        advisories: &AdvisorySet,
        repair_index: bool,
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
        let mut rounds = 0;
        let outcome = loop {
            let mut missing = BTreeSet::new();
            let outcome = match_packages(analysis, |k| match advisories.get(k) {
                Some(a) => a.as_ref().clone(),
                None => {
                    missing.insert(k.clone());
                    Vec::new()
                }
            });
            rounds += 1;
            if missing.is_empty() || rounds >= 4 {
                break outcome;
            }
            advisories.load(&self.store, missing).await?;
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
        if repair_index {
            self.store
                .index_image_keys(image_digest, &outcome.keys)
                .await?;
        } else {
            self.store
                .update_image_keys(image_digest, &outcome.keys)
                .await?;
        }
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
        let Some(request) = msg.request else {
            // A single re-match (as published before re-matches were batched, or split
            // off a batch when it failed there).
            let analysis = self.load_analysis(&msg.image_digest).await?;
            let advisories = AdvisorySet::default();
            advisories.load(&self.store, lookup_keys(&analysis)).await?;
            let m = self
                .match_with(
                    &msg.image_digest,
                    &analysis,
                    Some(input),
                    &advisories,
                    false,
                )
                .await?;
            let cause = msg.cause.clone().unwrap_or_default();
            return Ok(rematched(&cause, msg.image_digest, m)?
                .into_iter()
                .collect());
        };
        let m = self.match_image_for(&msg.image_digest, Some(input)).await?;
        let id = format!("match:{}:{}", request.request_id, msg.image_digest);
        let out = MatchedImage {
            request: Some(request),
            image_digest: msg.image_digest,
            diff: m.had_previous.then_some(m.diff),
            matched_at: m.report.matched_at,
        };
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Evaluate),
            id,
            &out,
        )?])
    }

    /// Re-match the images of one message: their analyses first, then every key they
    /// look up read once for all of them, then the images a few at a time. An image that
    /// fails is split off into a message of its own (retried, and dead-lettered, alone)
    /// unless every image failed, when the whole message is retried.
    async fn on_rematch_images(
        &self,
        msg: RematchImages,
        input: &str,
    ) -> Result<Vec<Outgoing>, StageError> {
        let analyses: Vec<(String, Result<Arc<Analysis>, StageError>)> =
            futures::stream::iter(msg.images)
                .map(|d| async move {
                    let a = self.load_analysis(&d).await;
                    (d, a)
                })
                .buffered(PREFETCH_CONCURRENCY)
                .collect()
                .await;
        let advisories = AdvisorySet::default();
        advisories
            .load(
                &self.store,
                analyses
                    .iter()
                    .filter_map(|(_, a)| a.as_ref().ok())
                    .flat_map(|a| lookup_keys(a)),
            )
            .await?;
        let total = analyses.len();
        let advisories = &advisories;
        let results: Vec<(String, Result<ImageMatch, StageError>)> =
            futures::stream::iter(analyses)
                .map(|(d, a)| async move {
                    let r = match a {
                        Ok(a) => {
                            self.match_with(&d, &a, Some(input), advisories, false)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    (d, r)
                })
                .buffered(BATCH_CONCURRENCY)
                .collect()
                .await;
        let mut outs = Vec::new();
        let mut failed = Vec::new();
        for (digest, r) in results {
            match r {
                Ok(m) => outs.extend(rematched(&msg.cause, digest, m)?),
                Err(e) => {
                    tracing::warn!(image = %digest, error = %e.message, "re-match failed; retried on its own");
                    failed.push((digest, e));
                }
            }
        }
        if failed.len() == total {
            if let Some((_, e)) = failed.pop() {
                return Err(e);
            }
        }
        for (digest, _) in failed {
            outs.push(Outgoing::record(
                Subject::Stage(StageName::Match),
                format!("rematch:{}:{}", msg.cause, digest),
                &AnalyzedImage {
                    request: None,
                    image_digest: digest,
                    cause: Some(msg.cause.clone()),
                },
            )?);
        }
        Ok(outs)
    }

    /// A feed changed: look the changed keys up in the reverse index and fan out the
    /// affected images, a batch of them per re-match message, so that they are matched,
    /// evaluated and notified concurrently, by as many match consumers as run.
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
        let cause = format!("{}:{}", delta.feed, delta.sync_id);
        let images: Vec<String> = images.into_iter().collect();
        images
            .chunks(self.rematch_batch)
            .map(|chunk| {
                let msg = RematchImages {
                    cause: cause.clone(),
                    images: chunk.to_vec(),
                };
                Outgoing::record(
                    Subject::Stage(StageName::Match),
                    format!("rematch:{cause}:{}", images_id(chunk)),
                    &msg,
                )
            })
            .collect()
    }
}

/// What a re-match hands on: nothing when the findings did not change. The id names the
/// feed change that caused it and the change of findings, so that a redelivery publishes
/// nothing new while a later change of the same image still goes out, even one with the
/// same findings as an earlier one (an advisory dropped, restored and dropped again).
fn rematched(
    cause: &str,
    image_digest: String,
    m: ImageMatch,
) -> Result<Option<Outgoing>, StageError> {
    if m.diff.is_empty() {
        return Ok(None);
    }
    let id = format!(
        "rematched:{image_digest}:{}:{}",
        images_id(&[cause.to_string()]),
        diff_id(&m.diff)
    );
    let out = MatchedImage {
        request: None,
        image_digest,
        matched_at: m.report.matched_at,
        diff: Some(m.diff),
    };
    Ok(Some(Outgoing::record(
        Subject::Stage(StageName::Evaluate),
        id,
        &out,
    )?))
}

/// A short content id of a list of image digests.
fn images_id(images: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for d in images {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
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
            Subject::Stage(StageName::Match)
                if codec::header(payload).is_ok_and(|h| h.record == RematchImages::KIND) =>
            {
                let msg: RematchImages = codec::decode(payload)?;
                let span = tracing::info_span!(
                    "rematch_images",
                    cause = %msg.cause,
                    images = msg.images.len()
                );
                let input = {
                    use sha2::{Digest, Sha256};
                    hex::encode(Sha256::digest(payload))
                };
                self.on_rematch_images(msg, &input).instrument(span).await
            }
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
