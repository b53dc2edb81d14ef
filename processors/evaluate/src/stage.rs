//! The evaluate stage: choose the bundle, evaluate, store history, hand on to notify.

use async_trait::async_trait;
use vigil_contracts::codec;
use vigil_contracts::{
    Action, EvaluatedImage, Evaluation, FailureKind, MatchedImage, RequestContext, StageName,
    Subject,
};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::Store;

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

/// Evaluates matched images against the chosen policy bundle.
pub struct EvaluateStage {
    store: Store,
}

impl EvaluateStage {
    pub fn new(store: Store) -> Self {
        EvaluateStage { store }
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
        let digest = &msg.image_digest;
        let analysis = self.store.get_analysis(digest).await?.ok_or_else(|| {
            StageError::internal(format!("no stored analysis for image {digest}"))
        })?;
        let report = self.store.get_vuln_report(digest).await?.ok_or_else(|| {
            StageError::internal(format!("no stored vulnerability report for image {digest}"))
        })?;
        let tag = analysis.descriptor.image.full_tag();
        let previous = self.store.latest_evaluation(digest, &tag).await?;
        let evaluation = match chosen {
            Chosen::Bundle(bundle) => evaluate(
                &bundle,
                &EvalInput {
                    analysis: &analysis,
                    report: &report,
                    tag: &tag,
                },
                now,
            ),
            Chosen::Broken { id, error } => bundle_error_evaluation(&id, digest, &tag, &error, now),
        };
        self.store.put_evaluation(&evaluation).await?;
        Ok((evaluation, previous.map(|p| p.final_action)))
    }
}

#[async_trait]
impl Stage for EvaluateStage {
    fn name(&self) -> StageName {
        StageName::Evaluate
    }

    async fn handle(
        &self,
        _subject: &Subject,
        payload: &[u8],
    ) -> Result<Vec<Outgoing>, StageError> {
        let msg: MatchedImage = codec::decode(payload)?;
        let (evaluation, previous_action) = self.evaluate_image(&msg, now_millis()).await?;
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
