//! The fetch stage: `ScanRequest` in, `FetchedImage` (or `AnalyzedImage`) out.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::{codec, AnalyzedImage, FetchedImage, ScanRequest, StageName, Subject};
use vigil_runtime::blobs::BlobStore;
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;

use crate::config::FetchConfig;
use crate::error::FetchError;
use crate::fetcher::{unique_layers, Fetcher};

/// Resolves images, stages the layer blobs that have no layer index, and hands on.
pub struct FetchStage {
    fetcher: Arc<Fetcher>,
    store: Store,
    blobs: Arc<dyn BlobStore>,
}

/// `Nats-Msg-Id` of an output: request id, this stage, the target and the image digest.
pub fn output_msg_id(request_id: &str, target: StageName, digest: &str) -> String {
    format!("{request_id}:fetch:{target}:{digest}")
}

/// The request id as it names this fetch's outputs: a request sent back by extract
/// (its staged blob expired) is fetched again, and its outputs must not be dropped as
/// repeats of the first fetch's.
fn attempt_id(ctx: &vigil_contracts::RequestContext) -> String {
    match ctx.refetches {
        0 => ctx.request_id.clone(),
        n => format!("{}~refetch{n}", ctx.request_id),
    }
}

impl FetchStage {
    pub fn new(config: FetchConfig, store: Store, blobs: Arc<dyn BlobStore>) -> Self {
        Self::with_fetcher(Arc::new(Fetcher::new(config)), store, blobs)
    }

    /// A stage sharing `fetcher` (and its registry clients) with its creator, who may
    /// have [`Fetcher::prepare`]d it.
    pub fn with_fetcher(fetcher: Arc<Fetcher>, store: Store, blobs: Arc<dyn BlobStore>) -> Self {
        FetchStage {
            fetcher,
            store,
            blobs,
        }
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// Handle one decoded request.
    pub async fn process(&self, req: ScanRequest) -> Result<Vec<Outgoing>, StageError> {
        let ctx = req.request.clone();
        if let Some(text) = &req.sbom {
            return self.import_sbom(&ctx, text).await;
        }
        if ctx.platform.as_deref() == Some("all") {
            return self.fan_out_platforms(&req).await;
        }
        let resolved = self
            .fetcher
            .resolve(&ctx.source, ctx.platform.as_deref())
            .await?;
        let digest = resolved.descriptor.image.digest.clone();
        tracing::info!(digest = %digest, platform = %resolved.descriptor.image.platform, "resolved");
        if !req.force && self.store.has_analysis(&digest).await? {
            tracing::info!(digest = %digest, "analysis exists; straight to match");
            let out = AnalyzedImage {
                request: Some(ctx.clone()),
                image_digest: digest.clone(),
                cause: None,
            };
            return Ok(vec![Outgoing::record(
                Subject::Stage(StageName::Match),
                output_msg_id(&attempt_id(&ctx), StageName::Match, &digest),
                &out,
            )?]);
        }
        let version = self.fetcher.config().extractor_version;
        let mut to_extract = Vec::new();
        for layer in unique_layers(&resolved.descriptor.layers) {
            if self.store.has_layer_index(&layer.digest, version).await? {
                // Analyze will read it once the new layers are indexed: read it now.
                self.store.prefetch_layer_index(&layer.digest);
                continue;
            }
            let cached = self.blobs.has(&layer.digest).await.map_err(|e| {
                StageError::from(FetchError::from_blob(&resolved.display, "blob cache", e))
            })?;
            if !cached {
                let n = self
                    .fetcher
                    .stage_layer(&resolved, layer, self.blobs.as_ref())
                    .await?;
                tracing::debug!(layer = %layer.digest, bytes = n, "layer staged");
            }
            to_extract.push(layer.digest.clone());
        }
        let out = FetchedImage {
            request: ctx.clone(),
            descriptor: resolved.descriptor,
            to_extract,
            force: req.force,
        };
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Extract),
            output_msg_id(&attempt_id(&ctx), StageName::Extract, &digest),
            &out,
        )?])
    }
}

/// The request id of one platform of a `--platform all` request.
pub fn platform_request_id(parent: &str, platform: &str) -> String {
    format!("{parent}-{}", platform.replace('/', "-"))
}

impl FetchStage {
    /// `--platform all`: one request per platform of the index, each linked to the index
    /// digest, plus a result for the parent request that names them. A single-platform
    /// image is scanned as it is.
    async fn fan_out_platforms(&self, req: &ScanRequest) -> Result<Vec<Outgoing>, StageError> {
        let ctx = &req.request;
        let listed = self.fetcher.index_platforms(&ctx.source).await?;
        let (index_digest, platforms) = match listed {
            Some((d, p)) if !p.is_empty() => (d, p),
            _ => {
                // Not an index: the image's own platform, whatever it is.
                let mut single = req.clone();
                single.request.platform = None;
                let resolved = self.fetcher.resolve(&ctx.source, None).await;
                if let Ok(r) = &resolved {
                    single.request.platform = Some(r.descriptor.image.platform.clone());
                }
                return Box::pin(self.process(single)).await;
            }
        };
        let mut outs = Vec::new();
        let mut ids = Vec::new();
        for p in &platforms {
            let mut child = req.clone();
            child.request.request_id = platform_request_id(&ctx.request_id, p);
            child.request.platform = Some(p.clone());
            child.request.index_digest = Some(index_digest.clone());
            ids.push(child.request.request_id.clone());
            outs.push(Outgoing::record(
                Subject::ScanRequest,
                format!("req-{}", child.request.request_id),
                &child,
            )?);
        }
        let parent = vigil_contracts::ScanResult {
            request_id: ctx.request_id.clone(),
            status: vigil_contracts::ScanStatus::Succeeded,
            source: ctx.source.clone(),
            image_digest: Some(index_digest),
            tag: None,
            summary: None,
            failure: None,
            completed_at: vigil_runtime::now_millis(),
            report: None,
            platform_requests: ids,
        };
        self.store.put_scan_result(&parent).await?;
        outs.push(Outgoing::record(
            Subject::Result(ctx.request_id.clone()),
            format!("result-{}", ctx.request_id),
            &parent,
        )?);
        tracing::info!(platforms = platforms.len(), "one request per platform");
        Ok(outs)
    }

    /// An SBOM submitted instead of an image: its packages become the analysis, and the
    /// request goes straight to matching.
    async fn import_sbom(
        &self,
        ctx: &vigil_contracts::RequestContext,
        text: &str,
    ) -> Result<Vec<Outgoing>, StageError> {
        let analysis =
            vigil_sbom::analysis_from_sbom(text, vigil_runtime::now_millis()).map_err(|e| {
                StageError::new(
                    vigil_contracts::FailureKind::InvalidRequest,
                    format!("{}: {e}", ctx.source),
                )
            })?;
        let digest = analysis.descriptor.image.digest.clone();
        tracing::info!(digest = %digest, packages = analysis.packages.len(), "SBOM imported");
        self.store.put_analysis(&analysis).await?;
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Match),
            output_msg_id(&attempt_id(ctx), StageName::Match, &digest),
            &AnalyzedImage {
                request: Some(ctx.clone()),
                image_digest: digest,
                cause: None,
            },
        )?])
    }
}

#[async_trait]
impl Stage for FetchStage {
    fn name(&self) -> StageName {
        StageName::Fetch
    }

    async fn handle(&self, subject: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        if *subject != Subject::ScanRequest {
            return Err(StageError::internal(format!(
                "fetch received a message on {subject:?}, expected ScanRequest"
            )));
        }
        let req: ScanRequest = codec::decode(payload)?;
        let span = tracing::info_span!(
            "fetch",
            request_id = %req.request.request_id,
            source = %req.request.source
        );
        let res = self.process(req).instrument(span.clone()).await;
        if let Err(e) = &res {
            span.in_scope(|| tracing::warn!(kind = ?e.kind, error = %e.message, "fetch failed"));
        }
        res
    }
}
