//! The evaluate stage: choose the bundle, evaluate, store history, hand on to notify.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vigil_contracts::codec;
use vigil_contracts::{
    Action, EvaluatedImage, Evaluation, FailureKind, FeedState, MatchedImage, PolicyUpdated,
    RequestContext, StageName, Subject,
};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::{Store, Table};

use crate::bundle::{default_bundle, load_bundle, Bundle};
use crate::engine::{bundle_error_evaluation, evaluate, EvalInput};

/// The bundle chosen for one evaluation, or why the active one could not be loaded.
enum Chosen {
    Bundle(Box<Bundle>),
    /// The stored active bundle is invalid: evaluate to STOP with the error.
    Broken {
        id: String,
        error: String,
    },
}

/// How long the feed states read for one evaluation serve the next ones. They feed the
/// gates on feed age (days) and the evaluation's record of feed syncs; a thousand images
/// re-evaluated after one feed update need not read them a thousand times.
const FEED_STATES_TTL: Duration = Duration::from_secs(2);

/// Evaluates matched images against the chosen policy bundle.
pub struct EvaluateStage {
    store: Store,
    feed_states: Mutex<Option<(Instant, Arc<Vec<FeedState>>)>>,
}

impl EvaluateStage {
    pub fn new(store: Store) -> Self {
        EvaluateStage {
            store,
            feed_states: Mutex::new(None),
        }
    }

    /// The stored feed states, read at most every [`FEED_STATES_TTL`], and read again
    /// at once when they cover none of a namespace in `with_data` (the namespaces the
    /// image's report found advisories in): a feed synced for the first time since the
    /// last read is never missed.
    async fn feed_states(&self, with_data: &[String]) -> Result<Arc<Vec<FeedState>>, StageError> {
        {
            let cached = self.feed_states.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, states)) = cached.as_ref() {
                let covers = |ns: &String| states.iter().any(|f| f.namespaces.contains_key(ns));
                if at.elapsed() < FEED_STATES_TTL && with_data.iter().all(covers) {
                    return Ok(states.clone());
                }
            }
        }
        let states = Arc::new(self.store.list_feed_states().await?);
        *self.feed_states.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), states.clone()));
        Ok(states)
    }

    async fn choose_bundle(&self, request: Option<&RequestContext>) -> Result<Chosen, StageError> {
        if let Some(req) = request {
            if let Some(json) = req.policy_bundle.as_deref() {
                return load_bundle(json)
                    .map(|b| Chosen::Bundle(Box::new(b)))
                    .map_err(|e| {
                        StageError::new(
                            FailureKind::InvalidRequest,
                            format!("inline policy bundle: {e}"),
                        )
                    });
            }
            if let Some(id) = req.policy_id.as_deref() {
                let stored = self.store.get_bundle(id).await?.ok_or_else(|| {
                    StageError::new(
                        FailureKind::InvalidRequest,
                        format!("policy bundle {id:?} does not exist"),
                    )
                })?;
                return load_bundle(&stored.json)
                    .map(|b| Chosen::Bundle(Box::new(b)))
                    .map_err(|e| {
                        StageError::new(
                            FailureKind::InvalidRequest,
                            format!("policy bundle {id:?}: {e}"),
                        )
                    });
            }
        }
        if let Some(id) = self.store.active_bundle_id().await? {
            if let Some(stored) = self.store.get_bundle(&id).await? {
                return Ok(match load_bundle(&stored.json) {
                    Ok(b) => Chosen::Bundle(Box::new(b)),
                    Err(e) => Chosen::Broken {
                        id,
                        error: e.to_string(),
                    },
                });
            }
        }
        Ok(Chosen::Bundle(Box::new(default_bundle())))
    }

    /// Evaluate one image and store the evaluation; returns it with the previous action.
    pub async fn evaluate_image(
        &self,
        msg: &MatchedImage,
        now: i64,
    ) -> Result<(Evaluation, Option<Action>), StageError> {
        let chosen = self.choose_bundle(msg.request.as_ref()).await?;
        self.evaluate_with(&chosen, &msg.image_digest, None, now)
            .await?
            .ok_or_else(|| {
                StageError::internal(format!(
                    "no stored analysis or vulnerability report for image {}",
                    msg.image_digest
                ))
            })
    }

    /// Evaluate `digest` (as `tag`, default: the analysed tag) with a chosen bundle, store the
    /// evaluation and index it; `None` when the analysis or report is missing.
    async fn evaluate_with(
        &self,
        chosen: &Chosen,
        digest: &str,
        tag: Option<&str>,
        now: i64,
    ) -> Result<Option<(Evaluation, Option<Action>)>, StageError> {
        let Some(analysis) = self.store.get_analysis_shared(digest).await? else {
            return Ok(None);
        };
        let Some(report) = self.store.get_vuln_report(digest).await? else {
            return Ok(None);
        };
        let feeds = self.feed_states(&report.namespaces_with_data).await?;
        let tag = tag
            .map(String::from)
            .unwrap_or_else(|| analysis.descriptor.image.full_tag());
        // The previous action is that of the latest evaluation stored before this one.
        let history = self.store.evaluation_history(digest, &tag).await?;
        let previous = history.iter().rev().find(|e| e.evaluated_at < now).cloned();
        let evaluation = match chosen {
            Chosen::Bundle(bundle) => evaluate(
                bundle,
                &EvalInput {
                    feeds: &feeds,
                    ..EvalInput::new(&analysis, &report, &tag)
                },
                now,
            ),
            Chosen::Broken { id, error } => bundle_error_evaluation(id, digest, &tag, error, now),
        };
        // Indexed before the first evaluation of (image, tag) is stored: a stored history
        // means the index row is there, and re-evaluations write only their evaluation.
        if history.is_empty() {
            self.store.index_evaluated(digest, &tag).await?;
        }
        self.store
            .put_evaluation_after(&evaluation, &history)
            .await?;
        Ok(Some((evaluation, previous.map(|p| p.final_action))))
    }

    /// The (image digest, tag) pairs that have stored evaluations (through this stage).
    pub async fn evaluated_images(&self) -> Result<Vec<(String, String)>, StageError> {
        Ok(self.store.evaluated_images().await?)
    }

    /// `vigil.policy.updated`: re-evaluate every evaluated image with the active bundle.
    /// Returns one `EvaluatedImage` per image whose final action changed (notify turns
    /// those into `policy_eval` notifications).
    pub async fn reevaluate_all(
        &self,
        update: &PolicyUpdated,
        now: i64,
    ) -> Result<Vec<Outgoing>, StageError> {
        let chosen = self.choose_bundle(None).await?;
        let mut out = Vec::new();
        for (digest, tag) in self.evaluated_images().await? {
            let Some((evaluation, previous_action)) = self
                .evaluate_with(&chosen, &digest, Some(&tag), now)
                .await?
            else {
                continue;
            };
            if previous_action == Some(evaluation.final_action) {
                continue;
            }
            let msg_id = format!(
                "policy-updated-{}-{}-{digest}-{tag}",
                update.bundle_id, update.updated_at
            );
            out.push(Outgoing::record(
                Subject::Stage(StageName::Notify),
                msg_id,
                &EvaluatedImage {
                    request: None,
                    image_digest: digest,
                    evaluation,
                    previous_action,
                    diff: None,
                },
            )?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Stage for EvaluateStage {
    fn name(&self) -> StageName {
        StageName::Evaluate
    }

    async fn handle(&self, subject: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        if *subject == Subject::PolicyUpdated {
            let update: PolicyUpdated = codec::decode(payload)?;
            if let Some(json) = &update.bundle_json {
                // Published with its content: store it and make it the active bundle.
                let stored = crate::policy::add_bundle(&self.store, json, update.updated_at)
                    .await
                    .map_err(|e| StageError::new(FailureKind::InvalidRequest, e.to_string()))?;
                self.store.activate_bundle(&stored.id).await?;
                tracing::info!(bundle = %stored.id, "policy bundle published and activated");
            }
            // The evaluation time is chosen once per update and kept: a redelivered update
            // (the process died after storing evaluations and before publishing) evaluates
            // at the same time, compares with the same previous evaluations and announces
            // the same changes.
            let key = format!(
                "reevaluation-time|{}|{}",
                update.bundle_id, update.updated_at
            );
            let b = self.store.backend();
            let at = match b.get(Table::Meta, &key, "").await? {
                Some(v) => String::from_utf8_lossy(&v)
                    .parse()
                    .unwrap_or_else(|_| now_millis()),
                None => {
                    let at = now_millis().max(update.updated_at);
                    b.put(Table::Meta, &key, "", at.to_string().into_bytes())
                        .await?;
                    at
                }
            };
            return self.reevaluate_all(&update, at).await;
        }
        let msg: MatchedImage = codec::decode(payload)?;
        // Likewise the time of the match this evaluation follows.
        let at = if msg.matched_at > 0 {
            msg.matched_at
        } else {
            now_millis()
        };
        let (evaluation, previous_action) = self.evaluate_image(&msg, at).await?;
        let msg_id = match &msg.request {
            Some(r) => format!("evaluated-{}", r.request_id),
            None => format!("evaluated-{}-{}", msg.image_digest, evaluation.evaluated_at),
        };
        let out = EvaluatedImage {
            request: msg.request,
            image_digest: msg.image_digest,
            evaluation,
            previous_action,
            diff: msg.diff,
        };
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Notify),
            msg_id,
            &out,
        )?])
    }
}
