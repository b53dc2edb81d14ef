//! vigil extract stage: stream each new layer once (gzip, zstd or plain tar), record
//! every entry and keep the bytes of the files analysis needs, as a [`LayerIndex`] stored
//! by layer digest. Image files are never written to the host and paths are never joined
//! onto a host path.
//!
//! * [`index_layer`]: the pure streaming core (sync `Read` in, `LayerIndex` out).
//! * [`path`]: path normalisation and the declarative keep list ([`path::KEEP_RULES`]).
//! * [`detect`]: what is found while the layer streams, each a pure function over bytes:
//!   secrets, Go build info, cargo-auditable data, Java archives (nested), zipped
//!   Python eggs, runtime binaries; plus optional sha256, sha1 and md5 of every file and
//!   the configurable retrieved files. Results land in `LayerIndex.{secrets, packages,
//!   kept}` and `FileEntry.{sha256, sha1, md5}`.
//! * [`ExtractStage`]: the stage: blob cache in, layer index to the store, blob deleted.
//! * [`IndexingBlobs`]: a blob cache that indexes each layer while it downloads, for a
//!   process that runs fetch and extract together (`vigil scan`).

pub mod claim;
pub mod detect;
pub mod index;
pub mod inline;
pub mod path;
mod readahead;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::{
    codec, ExtractedImage, FailureKind, FetchedImage, ScanRequest, StageName, Subject,
};
use vigil_runtime::blobs::{BlobError, BlobStore};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;

pub use detect::secrets::SecretRule;
pub use index::{detect, index_layer, Detected, ExtractError, ExtractLimits};
pub use inline::IndexingBlobs;
pub use path::{glob_match, normalize, wanted, KEEP_RULES};

/// Version of the index format; an index written by another version is redone.
pub const EXTRACTOR_VERSION: u32 = 4;

impl From<ExtractError> for StageError {
    fn from(e: ExtractError) -> Self {
        StageError::new(e.kind(), e.to_string())
    }
}

/// How often extract sends a request back to fetch because a staged blob expired.
pub const MAX_REFETCHES: u32 = 2;

/// How long an extract stage waits for another replica's extraction of the same layer.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(30 * 60);

/// What became of one layer.
enum LayerOutcome {
    Indexed,
    /// The staged blob is gone from the cache (expired, or the cache was full).
    BlobMissing,
}

/// The extract stage.
pub struct ExtractStage {
    limits: ExtractLimits,
    store: Store,
    blobs: Arc<dyn BlobStore>,
    /// Who this stage is in extraction claims.
    holder: String,
}

impl ExtractStage {
    pub fn new(limits: ExtractLimits, store: Store, blobs: Arc<dyn BlobStore>) -> Self {
        ExtractStage {
            limits,
            store,
            blobs,
            holder: format!(
                "{}-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "extract".into()),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
        }
    }

    /// Index one staged layer unless an index of this extractor version exists; on
    /// success the blob leaves the cache. Only one extract stage in the cluster streams a
    /// given layer at a time ([`claim`]); the others wait for its index.
    async fn extract_one(&self, digest: &str) -> Result<LayerOutcome, StageError> {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        // One holder per extraction, not per process: two messages of this process that
        // need the same layer must not both take it.
        let holder = format!("{}-{}", self.holder, uuid::Uuid::new_v4().simple());
        loop {
            if self
                .store
                .has_layer_index(digest, EXTRACTOR_VERSION)
                .await?
            {
                tracing::debug!(layer = digest, "layer already indexed");
                let _ = self.blobs.delete(digest).await;
                return Ok(LayerOutcome::Indexed);
            }
            match claim::try_claim(&self.store, digest, &holder).await? {
                claim::Claimed::Mine => break,
                claim::Claimed::Busy { holder } => {
                    if started.elapsed() > WAIT_FOR_OTHER {
                        return Err(StageError::new(
                            FailureKind::Internal,
                            format!("layer {digest} has been extracted by {holder} for too long"),
                        ));
                    }
                    tracing::debug!(layer = digest, %holder, "another extract stage has the layer; waiting");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        // Ours: keep the claim fresh while the layer streams.
        let refresher = {
            let store = self.store.clone();
            let d = digest.to_string();
            let h = holder.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(claim::REFRESH_EVERY).await;
                    let _ = claim::refresh(&store, &d, &h).await;
                }
            })
        };
        let result = self.extract_claimed(digest).await;
        refresher.abort();
        if let Err(e) = claim::release(&self.store, digest, &holder).await {
            tracing::warn!(layer = digest, error = %e, "could not release the extraction claim");
        }
        result
    }

    async fn extract_claimed(&self, digest: &str) -> Result<LayerOutcome, StageError> {
        // Indexed by the previous holder just before we claimed it.
        if self
            .store
            .has_layer_index(digest, EXTRACTOR_VERSION)
            .await?
        {
            let _ = self.blobs.delete(digest).await;
            return Ok(LayerOutcome::Indexed);
        }
        let reader = match self.blobs.open_blocking(digest).await {
            Ok(r) => r,
            Err(BlobError::NotFound(_)) => return Ok(LayerOutcome::BlobMissing),
            Err(other) => {
                return Err(StageError::new(
                    FailureKind::Internal,
                    format!("opening layer {digest}: {other}"),
                ))
            }
        };
        let limits = self.limits.clone();
        let d = digest.to_string();
        let started = std::time::Instant::now();
        let idx = tokio::task::spawn_blocking(move || index_layer(reader, &d, &limits))
            .await
            .map_err(|e| StageError::internal(format!("extract task for {digest}: {e}")))??;
        tracing::info!(
            layer = digest,
            entries = idx.entries.len(),
            kept = idx.kept.len(),
            bytes = idx.uncompressed_size,
            ms = started.elapsed().as_millis() as u64,
            "layer indexed"
        );
        self.store.put_layer_index_shared(Arc::new(idx)).await?;
        if let Err(e) = self.blobs.delete(digest).await {
            tracing::warn!(layer = digest, error = %e, "could not delete the staged blob");
        }
        Ok(LayerOutcome::Indexed)
    }
}

impl ExtractStage {
    /// A staged layer blob is gone (expired from the cache): send the request back to
    /// fetch, which stages the missing layers again, a bounded number of times.
    fn refetch(&self, msg: FetchedImage, digest: &str) -> Result<Vec<Outgoing>, StageError> {
        let mut request = msg.request;
        if request.refetches >= MAX_REFETCHES {
            return Err(StageError::new(
                FailureKind::Internal,
                format!(
                    "layer {digest} is not in the blob cache, after fetching it again {} times \
                     (is the blob cache too small or its TTL too short?)",
                    request.refetches
                ),
            ));
        }
        request.refetches += 1;
        tracing::warn!(
            layer = digest,
            attempt = request.refetches,
            "the staged layer blob expired; sending the request back to fetch"
        );
        let id = format!("refetch-{}-{}", request.request_id, request.refetches);
        Ok(vec![Outgoing::record(
            Subject::ScanRequest,
            id,
            &ScanRequest {
                request,
                force: msg.force,
                sbom: None,
            },
        )?])
    }
}

#[async_trait]
impl Stage for ExtractStage {
    fn name(&self) -> StageName {
        StageName::Extract
    }

    async fn handle(
        &self,
        _subject: &Subject,
        payload: &[u8],
    ) -> Result<Vec<Outgoing>, StageError> {
        let msg: FetchedImage = codec::decode(payload)?;
        let span = tracing::info_span!(
            "extract",
            request_id = %msg.request.request_id,
            image = %msg.descriptor.image.digest,
            layers = msg.to_extract.len()
        );
        async {
            for d in msg.to_extract.clone() {
                if let LayerOutcome::BlobMissing = self.extract_one(&d).await? {
                    return self.refetch(msg, &d);
                }
            }
            let msg_id = format!(
                "{}:extract:{}",
                msg.request.request_id, msg.descriptor.image.digest
            );
            let out = ExtractedImage {
                request: msg.request,
                descriptor: msg.descriptor,
            };
            Ok(vec![Outgoing::record(
                Subject::Stage(StageName::Analyze),
                msg_id,
                &out,
            )?])
        }
        .instrument(span)
        .await
    }
}
