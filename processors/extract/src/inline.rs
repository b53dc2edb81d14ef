//! Indexing a layer while it downloads, for a process that runs fetch and extract
//! together (`vigil scan`).
//!
//! [`IndexingBlobs`] is a [`BlobStore`] in front of another: every blob put into it is
//! also fed, chunk by chunk, to [`index_layer`] on a blocking thread. When the download
//! ends with the digest verified and the index built, the index is stored, so that the
//! extract stage finds it and only drops the staged blob. The blob itself is still
//! staged as usual: if indexing fails, the extract stage indexes the staged copy and
//! reports the error as it always does. An index is never stored for a blob whose
//! download failed or whose digest did not match.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader};
use vigil_runtime::blobs::{BlobError, BlobReader, BlobStore, DigestCheck};
use vigil_store::Store;

use crate::{index_layer, ExtractLimits};

/// Chunks of a download in flight to the indexer: with [`CHUNK`], at most 2 MiB.
const QUEUE: usize = 8;
const CHUNK: usize = 256 * 1024;

/// A blob store that indexes each layer as it is put (see the module docs).
pub struct IndexingBlobs {
    inner: Arc<dyn BlobStore>,
    store: Store,
    limits: ExtractLimits,
}

impl IndexingBlobs {
    pub fn new(inner: Arc<dyn BlobStore>, store: Store, limits: ExtractLimits) -> Self {
        IndexingBlobs {
            inner,
            store,
            limits,
        }
    }
}

/// The indexer's side of the download: a blocking reader over the chunks sent to it.
struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(c) => self.current = c,
                // The sender is gone: the download ended (or failed, in which case the
                // index is thrown away).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[async_trait]
impl BlobStore for IndexingBlobs {
    async fn has(&self, digest: &str) -> Result<bool, BlobError> {
        self.inner.has(digest).await
    }

    /// Stage the blob in the inner store while `index_layer` reads it; store the index
    /// once the blob is staged (its digest and size verified).
    async fn put_checked(
        &self,
        digest: &str,
        reader: BlobReader,
        max_size: u64,
        check: DigestCheck,
    ) -> Result<u64, BlobError> {
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
        let limits = self.limits.clone();
        let d = digest.to_string();
        let indexer = tokio::task::spawn_blocking(move || {
            let chunks = ChunkReader {
                chunks: rx,
                current: Bytes::new(),
            };
            index_layer(chunks, &d, &limits)
        });
        // Each chunk goes to the indexer, then on to the inner store, which verifies the
        // digest (or the stream does) and the size. An indexer that stopped early (a tar
        // ends before its padding) no longer takes chunks; the download goes on without it.
        let teed = ReaderStream::with_capacity(reader, CHUNK).then(move |chunk| {
            let tx = tx.clone();
            async move {
                if let Ok(c) = &chunk {
                    let _ = tx.send(c.clone()).await;
                }
                chunk
            }
        });
        let teed: BlobReader = Box::pin(StreamReader::new(teed));
        let staged = self.inner.put_checked(digest, teed, max_size, check).await;
        // The stream, and with it the last sender, is dropped: the indexer sees the end.
        let indexed = indexer.await;
        let n = staged?;
        match indexed {
            Ok(Ok(idx)) => {
                let (entries, kept, bytes) =
                    (idx.entries.len(), idx.kept.len(), idx.uncompressed_size);
                match self.store.put_layer_index_shared(Arc::new(idx)).await {
                    Ok(()) => tracing::info!(
                        layer = digest,
                        entries,
                        kept,
                        bytes,
                        "layer indexed while downloading"
                    ),
                    Err(e) => {
                        tracing::warn!(layer = digest, error = %e, "storing the layer index failed; extract will redo it")
                    }
                }
            }
            // The staged copy is indexed again by the extract stage, which reports the
            // error to the user.
            Ok(Err(e)) => {
                tracing::debug!(layer = digest, error = %e, "indexing while downloading failed")
            }
            Err(e) => tracing::warn!(layer = digest, error = %e, "indexing task failed"),
        }
        Ok(n)
    }

    async fn open(&self, digest: &str) -> Result<BlobReader, BlobError> {
        self.inner.open(digest).await
    }

    async fn open_blocking(
        &self,
        digest: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, BlobError> {
        self.inner.open_blocking(digest).await
    }

    async fn delete(&self, digest: &str) -> Result<(), BlobError> {
        self.inner.delete(digest).await
    }
}
