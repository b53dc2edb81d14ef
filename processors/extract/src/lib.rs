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

pub mod detect;
pub mod index;
pub mod inline;
pub mod path;
mod readahead;

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::{codec, ExtractedImage, FailureKind, FetchedImage, StageName, Subject};
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

/// The extract stage.
pub struct ExtractStage {
    limits: ExtractLimits,
    store: Store,
    blobs: Arc<dyn BlobStore>,
}

impl ExtractStage {
    pub fn new(limits: ExtractLimits, store: Store, blobs: Arc<dyn BlobStore>) -> Self {
        ExtractStage {
            limits,
            store,
            blobs,
        }
    }

    /// Index one staged layer unless an index of this extractor version exists; on
    /// success the blob leaves the cache.
    async fn extract_one(&self, digest: &str) -> Result<(), StageError> {
        if self
            .store
            .has_layer_index(digest, EXTRACTOR_VERSION)
            .await?
        {
            tracing::debug!(layer = digest, "layer already indexed");
            let _ = self.blobs.delete(digest).await;
            return Ok(());
        }
        let reader = self
            .blobs
            .open_blocking(digest)
            .await
            .map_err(|e| match e {
                // Not staged (yet, or the cache expired): a retry after fetch re-stages may work.
                BlobError::NotFound(_) => StageError::new(
                    FailureKind::Internal,
                    format!("layer {digest} is not in the blob cache"),
                ),
                other => StageError::new(
                    FailureKind::Internal,
                    format!("opening layer {digest}: {other}"),
                ),
            })?;
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
        Ok(())
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
            for d in &msg.to_extract {
                self.extract_one(d).await?;
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
