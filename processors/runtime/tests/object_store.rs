//! The JetStream object-store blob cache against a real nats-server: an object becomes
//! visible only with the right digest and size, and no failed or losing put leaves its
//! chunks behind; the bucket's bounds follow the configuration.

use std::time::Duration;

use sha2::{Digest, Sha256};
use vigil_contracts::Subjects;
use vigil_runtime::blobs::{BlobError, BlobStore, DigestCheck};
use vigil_runtime::jetstream::{connect, BucketSettings, ObjectStoreBlobs};
use vigil_testkit::Nats;

fn settings(max_bytes: i64) -> BucketSettings {
    BucketSettings {
        max_age: Duration::from_secs(3600),
        max_bytes,
        replicas: 1,
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

async fn messages_in(blobs: &ObjectStoreBlobs) -> u64 {
    let mut s = blobs.bucket().stream().clone();
    s.info().await.unwrap().state.messages
}

/// A reader that fails after `ok` bytes (a registry connection that breaks).
struct Breaks {
    data: Vec<u8>,
    pos: usize,
    ok: usize,
}

impl tokio::io::AsyncRead for Breaks {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos >= self.ok {
            return std::task::Poll::Ready(Err(std::io::Error::other("connection reset")));
        }
        let end = (self.pos + buf.remaining())
            .min(self.ok)
            .min(self.data.len());
        let start = self.pos;
        buf.put_slice(&self.data[start..end]);
        self.pos = end;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_puts_leave_nothing_and_racing_puts_leave_one_object() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let s = Subjects::new("objs");
    let blobs = ObjectStoreBlobs::open(&js, &s, &settings(-1))
        .await
        .unwrap();
    let blob = data(700 * 1024, 3);
    let good = digest_of(&blob);

    // Wrong digest: refused, invisible, no chunks left.
    let wrong = digest_of(b"something else");
    let e = blobs
        .put_checked(
            &wrong,
            Box::pin(std::io::Cursor::new(blob.clone())),
            1 << 30,
            DigestCheck::Hash,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BlobError::DigestMismatch { .. }), "{e}");
    assert!(!blobs.has(&wrong).await.unwrap());
    assert_eq!(
        messages_in(&blobs).await,
        0,
        "chunks of the mismatched put remain"
    );

    // Over the size cap.
    let e = blobs
        .put_checked(
            &good,
            Box::pin(std::io::Cursor::new(blob.clone())),
            100_000,
            DigestCheck::Hash,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { .. }), "{e}");
    assert!(!blobs.has(&good).await.unwrap());
    assert_eq!(messages_in(&blobs).await, 0);

    // A stream that breaks half way.
    let e = blobs
        .put_checked(
            &good,
            Box::pin(Breaks {
                data: blob.clone(),
                pos: 0,
                ok: 300 * 1024,
            }),
            1 << 30,
            DigestCheck::Hash,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BlobError::Io { .. }), "{e}");
    assert!(!blobs.has(&good).await.unwrap());
    assert_eq!(messages_in(&blobs).await, 0);

    // Two fetch stages stage the same layer at the same moment: one object, no orphans.
    let (a, b) = tokio::join!(
        blobs.put_checked(
            &good,
            Box::pin(std::io::Cursor::new(blob.clone())),
            1 << 30,
            DigestCheck::Hash
        ),
        blobs.put_checked(
            &good,
            Box::pin(std::io::Cursor::new(blob.clone())),
            1 << 30,
            DigestCheck::Hash
        ),
    );
    assert_eq!(a.unwrap(), blob.len() as u64);
    assert_eq!(b.unwrap(), blob.len() as u64);
    let chunks = blob.len().div_ceil(128 * 1024) as u64;
    // Purges are asynchronous to nothing: they were awaited by the loser.
    assert_eq!(
        messages_in(&blobs).await,
        chunks + 1,
        "one object's chunks and its meta"
    );
    let mut r = blobs.open(&good).await.unwrap();
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut back)
        .await
        .unwrap();
    assert_eq!(back, blob);

    // Deleted: gone with its chunks (the meta message stays as a tombstone).
    blobs.delete(&good).await.unwrap();
    assert!(!blobs.has(&good).await.unwrap());
    assert!(messages_in(&blobs).await <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_bounded_and_its_bound_follows_the_configuration() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let s = Subjects::new("bound");
    let blobs = ObjectStoreBlobs::open(&js, &s, &settings(1 << 20))
        .await
        .unwrap();
    let mut st = blobs.bucket().stream().clone();
    assert_eq!(st.info().await.unwrap().config.max_bytes, 1 << 20);
    // A blob larger than the whole bucket is refused and leaves nothing.
    let big = data(3 << 20, 9);
    let e = blobs
        .put_checked(
            &digest_of(&big),
            Box::pin(std::io::Cursor::new(big.clone())),
            1 << 30,
            DigestCheck::Hash,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BlobError::Io { .. }), "{e}");
    assert_eq!(messages_in(&blobs).await, 0);
    // Opened again with another bound: applied.
    let blobs = ObjectStoreBlobs::open(&js, &s, &settings(8 << 20))
        .await
        .unwrap();
    let mut st = blobs.bucket().stream().clone();
    assert_eq!(st.info().await.unwrap().config.max_bytes, 8 << 20);
    blobs
        .put_checked(
            &digest_of(&big),
            Box::pin(std::io::Cursor::new(big.clone())),
            1 << 30,
            DigestCheck::Hash,
        )
        .await
        .unwrap();
    assert!(blobs.has(&digest_of(&big)).await.unwrap());
}
