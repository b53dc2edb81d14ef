//! The real testbed layers, and the stage over a real blob cache and embedded store.

use std::sync::Arc;

use vigil_contracts::{
    codec, Compression, ExtractedImage, FailureKind, FetchedImage, ImageConfig, ImageDescriptor,
    ImageRef, LayerRef, RequestContext, ScanRequest, SourceKind, StageName, Subject,
};
use vigil_extract::{index_layer, ExtractLimits, ExtractStage, EXTRACTOR_VERSION};
use vigil_runtime::blobs::{BlobStore, LocalBlobStore};
use vigil_runtime::Stage;
use vigil_store::Store;
use vigil_testkit::testbed;

#[test]
fn debian_base_layer_is_indexed() {
    let layout = testbed::oci_layout("debian-base");
    let layers = vigil_testkit::testbed::layers(&layout, None);
    assert_eq!(layers.len(), 1);
    let f = std::fs::File::open(vigil_testkit::testbed::blob_path(&layout, &layers[0])).unwrap();
    let idx = index_layer(f, &layers[0], &ExtractLimits::default()).unwrap();
    assert!(idx.entries.len() > 1000, "{} entries", idx.entries.len());
    let status = idx
        .kept
        .iter()
        .find(|k| k.path == "/var/lib/dpkg/status")
        .expect("dpkg status kept");
    assert!(!status.truncated);
    assert!(String::from_utf8_lossy(&status.content).contains("Package: libc6\n"));
    assert!(idx.kept.iter().any(|k| k.path == "/etc/passwd"));
    let info = testbed::image_info("debian-base");
    assert_eq!(
        idx.uncompressed_size,
        info["uncompressed_bytes"].as_u64().unwrap()
    );
    assert!(idx.warnings.is_empty(), "{:?}", idx.warnings);
}

fn descriptor(digest: &str, layers: &[String]) -> ImageDescriptor {
    ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::OciDir,
            name: "debian-base".into(),
            tag: Some("latest".into()),
            digest: digest.into(),
            index_digest: None,
            config_digest: "sha256:c".into(),
            platform: "linux/amd64".into(),
        },
        config: ImageConfig::default(),
        layers: layers
            .iter()
            .map(|d| LayerRef {
                digest: d.clone(),
                diff_id: None,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 0,
                compression: Compression::Gzip,
            })
            .collect(),
    }
}

#[tokio::test]
async fn stage_indexes_stores_and_deletes_the_blob() {
    let layout = testbed::oci_layout("debian-base");
    let layers = vigil_testkit::testbed::layers(&layout, None);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&tmp.path().join("store.redb")).unwrap();
    let blobs = Arc::new(LocalBlobStore::new(tmp.path().join("blobs")));
    let stage = ExtractStage::new(ExtractLimits::default(), store.clone(), blobs.clone());
    assert_eq!(stage.name(), StageName::Extract);

    let msg = FetchedImage {
        request: RequestContext::new("req-1", "oci-dir:debian-base"),
        descriptor: descriptor("sha256:img", &layers),
        to_extract: layers.clone(),
        force: false,
    };
    let payload = codec::encode(&msg).unwrap();
    let subject = Subject::Stage(StageName::Extract);

    // Not staged (the blob expired from the cache): the request goes back to fetch,
    // which stages the layer again, at most MAX_REFETCHES times.
    let back = stage.handle(&subject, &payload).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].subject, Subject::ScanRequest);
    assert_eq!(back[0].msg_id, "refetch-req-1-1");
    let again: ScanRequest = codec::decode(&back[0].payload).unwrap();
    assert_eq!(again.request.refetches, 1);
    assert_eq!(again.request.request_id, "req-1");
    let mut tired = msg.clone();
    tired.request.refetches = vigil_extract::MAX_REFETCHES;
    let err = stage
        .handle(&subject, &codec::encode(&tired).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Internal);
    assert!(err.message.contains("not in the blob cache"), "{err}");

    let f = tokio::fs::File::open(vigil_testkit::testbed::blob_path(&layout, &layers[0]))
        .await
        .unwrap();
    blobs.put(&layers[0], Box::pin(f), u64::MAX).await.unwrap();
    let out = stage.handle(&subject, &payload).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject, Subject::Stage(StageName::Analyze));
    assert_eq!(out[0].msg_id, "req-1:extract:sha256:img");
    let ex: ExtractedImage = codec::decode(&out[0].payload).unwrap();
    assert_eq!(ex.descriptor, msg.descriptor);
    assert!(store
        .has_layer_index(&layers[0], EXTRACTOR_VERSION)
        .await
        .unwrap());
    assert!(!blobs.has(&layers[0]).await.unwrap(), "blob deleted");

    // Redelivery: the index exists, nothing to read, same output.
    let again = stage.handle(&subject, &payload).await.unwrap();
    assert_eq!(again, out);
}

#[tokio::test]
async fn stage_reports_a_corrupt_layer_as_malformed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&tmp.path().join("store.redb")).unwrap();
    let blobs = Arc::new(LocalBlobStore::new(tmp.path().join("blobs")));
    let (data, digest) = corrupt_layer(4000);
    blobs
        .put(&digest, Box::pin(std::io::Cursor::new(data)), u64::MAX)
        .await
        .unwrap();
    let stage = ExtractStage::new(ExtractLimits::default(), store, blobs);
    let err = extract_error(&stage, "req-2", &digest).await;
    assert_eq!(err.kind, FailureKind::MalformedImage, "{err}");
    assert!(err.message.contains(&digest));
}

/// A gzip header followed by `n` bytes of garbage, and its digest.
fn corrupt_layer(n: u32) -> (Vec<u8>, String) {
    use sha2::Digest;
    let data: Vec<u8> = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
        .into_iter()
        .chain((0..n).map(|i| (i * 7 % 251) as u8))
        .collect();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
    (data, digest)
}

/// The extract stage's answer to a request to extract `layers`.
async fn run_extract(
    stage: &ExtractStage,
    request_id: &str,
    layers: &[String],
) -> Result<Vec<vigil_runtime::Outgoing>, vigil_runtime::StageError> {
    let msg = FetchedImage {
        request: RequestContext::new(request_id, "x"),
        descriptor: descriptor("sha256:img", layers),
        to_extract: layers.to_vec(),
        force: false,
    };
    stage
        .handle(
            &Subject::Stage(StageName::Extract),
            &codec::encode(&msg).unwrap(),
        )
        .await
}

/// The extract stage's error for a request to extract the one layer `digest`.
async fn extract_error(
    stage: &ExtractStage,
    request_id: &str,
    digest: &str,
) -> vigil_runtime::StageError {
    run_extract(stage, request_id, &[digest.to_string()])
        .await
        .unwrap_err()
}

/// A reader that hands out at most `step` bytes per read, so that a blob arrives in many
/// chunks as from a network.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self
            .step
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

fn trickle(data: Vec<u8>) -> vigil_runtime::blobs::BlobReader {
    Box::pin(Trickle {
        data,
        at: 0,
        step: 100_000,
    })
}

/// The layer is staged in `local` and its index stored.
async fn assert_staged_and_indexed(store: &Store, local: &Arc<dyn BlobStore>, digest: &str) {
    assert!(local.has(digest).await.unwrap(), "{digest} staged");
    assert!(
        store
            .has_layer_index(digest, EXTRACTOR_VERSION)
            .await
            .unwrap(),
        "{digest} indexed"
    );
}

/// An embedded store and a blob cache under `dir`, and the indexing cache in front of it.
fn indexing_blobs(
    dir: &std::path::Path,
) -> (Store, Arc<dyn BlobStore>, vigil_extract::IndexingBlobs) {
    let store = Store::open_embedded(&dir.join("store.redb")).unwrap();
    let local: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(dir.join("blobs")));
    let blobs =
        vigil_extract::IndexingBlobs::new(local.clone(), store.clone(), ExtractLimits::default());
    (store, local, blobs)
}

#[tokio::test]
async fn indexing_blobs_index_a_layer_while_it_is_put() {
    let layout = testbed::oci_layout("debian-base");
    let layers = vigil_testkit::testbed::layers(&layout, None);
    let path = vigil_testkit::testbed::blob_path(&layout, &layers[0]);
    let data = std::fs::read(&path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (store, local, blobs) = indexing_blobs(tmp.path());

    let n = blobs
        .put(&layers[0], trickle(data.clone()), u64::MAX)
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    // The blob is staged as by the plain cache, and its index is stored: the same index
    // as the extract stage makes from the staged file.
    assert_staged_and_indexed(&store, &local, &layers[0]).await;
    let stored = store.get_layer_index(&layers[0]).await.unwrap().unwrap();
    let direct = index_layer(
        std::fs::File::open(&path).unwrap(),
        &layers[0],
        &ExtractLimits::default(),
    )
    .unwrap();
    assert_eq!(stored, direct);

    // The extract stage then only drops the staged blob.
    let stage = ExtractStage::new(ExtractLimits::default(), store.clone(), local.clone());
    run_extract(&stage, "req-3", &layers).await.unwrap();
    assert!(!local.has(&layers[0]).await.unwrap(), "blob deleted");
}

#[tokio::test]
async fn indexing_blobs_store_no_index_for_a_blob_that_fails_its_digest() {
    let layout = testbed::oci_layout("debian-base");
    let layers = vigil_testkit::testbed::layers(&layout, None);
    let data = std::fs::read(vigil_testkit::testbed::blob_path(&layout, &layers[0])).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (store, local, blobs) = indexing_blobs(tmp.path());

    // The layer's bytes under another digest: it indexes fine, the digest fails.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = blobs
        .put(&wrong, trickle(data.clone()), u64::MAX)
        .await
        .unwrap_err();
    assert!(
        matches!(err, vigil_runtime::blobs::BlobError::DigestMismatch { .. }),
        "{err}"
    );
    assert!(!local.has(&wrong).await.unwrap());
    assert!(!store
        .has_layer_index(&wrong, EXTRACTOR_VERSION)
        .await
        .unwrap());
    assert!(store.get_layer_index(&wrong).await.unwrap().is_none());

    // Over the size limit: refused, nothing stored.
    let err = blobs
        .put(&layers[0], trickle(data.clone()), data.len() as u64 / 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, vigil_runtime::blobs::BlobError::TooLarge { .. }),
        "{err}"
    );
    assert!(store.get_layer_index(&layers[0]).await.unwrap().is_none());
}

/// A registry stream checks its own digest (`put_self_verifying`): when it ends in an
/// error after every byte, as oci-client's does on a mismatch, nothing is staged or
/// indexed; when it ends cleanly, the layer is staged and indexed without a second hash.
/// (The size cap of such a put is tested with the local cache.)
#[tokio::test]
async fn indexing_blobs_trust_a_self_verifying_stream_only_to_its_end() {
    let layout = testbed::oci_layout("debian-base");
    let layers = vigil_testkit::testbed::layers(&layout, None);
    let data = std::fs::read(vigil_testkit::testbed::blob_path(&layout, &layers[0])).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (store, local, blobs) = indexing_blobs(tmp.path());
    let failing_at_end = {
        let chunks: Vec<std::io::Result<bytes::Bytes>> = data
            .chunks(100_000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .chain([Err(std::io::Error::other("digest mismatch"))])
            .collect();
        Box::pin(tokio_util::io::StreamReader::new(futures::stream::iter(
            chunks,
        )))
    };
    let err = blobs
        .put_self_verifying(&layers[0], failing_at_end, u64::MAX)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(!local.has(&layers[0]).await.unwrap());
    assert!(store.get_layer_index(&layers[0]).await.unwrap().is_none());

    let n = blobs
        .put_self_verifying(&layers[0], trickle(data.clone()), u64::MAX)
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_staged_and_indexed(&store, &local, &layers[0]).await;
}

#[tokio::test]
async fn indexing_blobs_leave_a_corrupt_layer_to_the_extract_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, local, blobs) = indexing_blobs(tmp.path());
    let (data, digest) = corrupt_layer(400_000);
    // The download itself is fine: staged, but no index.
    blobs.put(&digest, trickle(data), u64::MAX).await.unwrap();
    assert!(local.has(&digest).await.unwrap());
    assert!(store.get_layer_index(&digest).await.unwrap().is_none());
    // The extract stage indexes the staged copy and reports the layer as malformed.
    let stage = ExtractStage::new(ExtractLimits::default(), store, local);
    let err = extract_error(&stage, "req-4", &digest).await;
    assert_eq!(err.kind, FailureKind::MalformedImage, "{err}");
}
