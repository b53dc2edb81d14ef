//! Content-addressed blob cache between fetch and extract. Blobs are written from a
//! stream and their sha256 is checked while they are written: a blob whose content does
//! not match its digest is never visible.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("digest mismatch for {expected}: content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("unsupported digest {0}: only sha256 is supported")]
    UnsupportedDigest(String),
    #[error("blob {0} not in cache")]
    NotFound(String),
    #[error("blob {digest} is larger than the limit of {limit} bytes")]
    TooLarge { digest: String, limit: u64 },
    #[error("blob cache I/O for {digest}: {message}")]
    Io { digest: String, message: String },
}

/// Check a digest is a well-formed `sha256:<64 hex>` and return the hex part.
pub fn sha256_hex(digest: &str) -> Result<&str, BlobError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(h),
        _ => Err(BlobError::UnsupportedDigest(digest.to_string())),
    }
}

/// Where staged layer blobs live.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn has(&self, digest: &str) -> Result<bool, BlobError>;
    /// Stream `reader` into the cache under `digest`, checking the digest as `check` says
    /// and taking at most `max_size` bytes. Returns the byte count. Nothing is stored when
    /// the check fails.
    async fn put_checked(
        &self,
        digest: &str,
        reader: BlobReader,
        max_size: u64,
        check: DigestCheck,
    ) -> Result<u64, BlobError>;
    /// [`BlobStore::put_checked`], hashing the bytes.
    async fn put(&self, digest: &str, reader: BlobReader, max_size: u64) -> Result<u64, BlobError> {
        self.put_checked(digest, reader, max_size, DigestCheck::Hash)
            .await
    }
    /// [`BlobStore::put_checked`] of a stream that checks its own digest.
    async fn put_self_verifying(
        &self,
        digest: &str,
        reader: BlobReader,
        max_size: u64,
    ) -> Result<u64, BlobError> {
        self.put_checked(digest, reader, max_size, DigestCheck::ByStream)
            .await
    }
    async fn open(&self, digest: &str) -> Result<BlobReader, BlobError>;
    /// The blob as a blocking reader, for a consumer on a blocking thread. The default
    /// bridges [`BlobStore::open`]'s stream; a local file is read directly instead,
    /// without a hop to the async runtime on every read.
    async fn open_blocking(
        &self,
        digest: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, BlobError> {
        Ok(Box::new(tokio_util::io::SyncIoBridge::new(
            self.open(digest).await?,
        )))
    }
    async fn delete(&self, digest: &str) -> Result<(), BlobError>;
}

/// How a put checks that the bytes match their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// Hash the bytes as they are written.
    Hash,
    /// The stream checks its own digest: it ends in an error when its bytes do not
    /// match (oci-client's registry blob streams do). A store may skip hashing them a
    /// second time; the size limit still holds.
    ByStream,
}

/// A local directory cache (embedded mode): `DIR/sha256/<hex>`.
pub struct LocalBlobStore {
    dir: PathBuf,
}

impl LocalBlobStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalBlobStore { dir: dir.into() }
    }

    fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        Ok(self.dir.join("sha256").join(sha256_hex(digest)?))
    }
}

fn io(digest: &str, e: impl std::fmt::Display) -> BlobError {
    BlobError::Io {
        digest: digest.to_string(),
        message: e.to_string(),
    }
}

/// Copy `reader` into `w`, hashing as it goes when `check` says so; fails on a digest
/// mismatch, a size overrun, or an error of the reader.
async fn copy_checked<W: tokio::io::AsyncWrite + Unpin>(
    digest: &str,
    mut reader: BlobReader,
    w: &mut W,
    max_size: u64,
    check: DigestCheck,
) -> Result<u64, BlobError> {
    let expected = sha256_hex(digest)?.to_ascii_lowercase();
    let mut hasher = (check == DigestCheck::Hash).then(Sha256::new);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n: u64 = 0;
    loop {
        let r = reader.read(&mut buf).await.map_err(|e| io(digest, e))?;
        if r == 0 {
            break;
        }
        n += r as u64;
        if n > max_size {
            return Err(BlobError::TooLarge {
                digest: digest.to_string(),
                limit: max_size,
            });
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..r]);
        }
        w.write_all(&buf[..r]).await.map_err(|e| io(digest, e))?;
    }
    w.flush().await.map_err(|e| io(digest, e))?;
    let Some(hasher) = hasher else {
        return Ok(n);
    };
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        return Err(BlobError::DigestMismatch {
            expected: digest.to_string(),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(n)
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn has(&self, digest: &str) -> Result<bool, BlobError> {
        Ok(tokio::fs::try_exists(self.path(digest)?)
            .await
            .unwrap_or(false))
    }

    /// Stream into a temp file, then rename it into place: a failed copy leaves nothing.
    async fn put_checked(
        &self,
        digest: &str,
        reader: BlobReader,
        max_size: u64,
        check: DigestCheck,
    ) -> Result<u64, BlobError> {
        let path = self.path(digest)?;
        let parent = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io(digest, e))?;
        let tmp = parent.join(format!(
            ".{}.{}.part",
            sha256_hex(digest)?,
            std::process::id()
        ));
        let f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io(digest, e))?;
        // Large writes: each write to a tokio file is a hop to the blocking pool.
        let mut f = tokio::io::BufWriter::with_capacity(1 << 20, f);
        match copy_checked(digest, reader, &mut f, max_size, check).await {
            Ok(n) => {
                drop(f);
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(|e| io(digest, e))?;
                Ok(n)
            }
            Err(e) => {
                drop(f);
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn open(&self, digest: &str) -> Result<BlobReader, BlobError> {
        let path = self.path(digest)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::pin(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(digest.to_string()))
            }
            Err(e) => Err(io(digest, e)),
        }
    }

    async fn open_blocking(
        &self,
        digest: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, BlobError> {
        let path = self.path(digest)?;
        match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(f)) => Ok(Box::new(f)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(digest.to_string()))
            }
            Ok(Err(e)) => Err(io(digest, e)),
            Err(e) => Err(io(digest, e)),
        }
    }

    async fn delete(&self, digest: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(digest)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(digest, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    #[tokio::test]
    async fn local_put_verifies_digest() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalBlobStore::new(dir.path());
        let data = b"hello layer".to_vec();
        let d = digest_of(&data);
        let n = s
            .put(&d, Box::pin(std::io::Cursor::new(data.clone())), 1 << 20)
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(s.has(&d).await.unwrap());
        let mut out = Vec::new();
        s.open(&d)
            .await
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, data);

        let wrong = digest_of(b"other");
        let err = s
            .put(&wrong, Box::pin(std::io::Cursor::new(data)), 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
        assert!(
            !s.has(&wrong).await.unwrap(),
            "a mismatching blob must not be visible"
        );
    }

    /// The stream is trusted to check its digest (the bytes are not hashed again), not
    /// to stay under the size limit; a stream ending in an error leaves nothing.
    #[tokio::test]
    async fn local_put_of_a_self_verifying_stream() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalBlobStore::new(dir.path());
        let data = b"hello layer".to_vec();
        // Not hashed: the bytes are stored under the digest the stream vouched for.
        let vouched = digest_of(b"what the registry said");
        let n = s
            .put_self_verifying(
                &vouched,
                Box::pin(std::io::Cursor::new(data.clone())),
                1 << 20,
            )
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(s.has(&vouched).await.unwrap());

        let err = s
            .put_self_verifying(
                &digest_of(&data),
                Box::pin(std::io::Cursor::new(data.clone())),
                4,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }), "{err}");

        let failing = tokio_util::io::StreamReader::new(futures::stream::iter([
            Ok(bytes::Bytes::from(data.clone())),
            Err(std::io::Error::other("digest mismatch at the end")),
        ]));
        let d = digest_of(&data);
        let err = s
            .put_self_verifying(&d, Box::pin(failing), 1 << 20)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("digest mismatch at the end"),
            "{err}"
        );
        assert!(!s.has(&d).await.unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256"))
                .unwrap()
                .count(),
            1,
            "no temp file left"
        );
    }

    #[tokio::test]
    async fn local_put_enforces_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalBlobStore::new(dir.path());
        let data = vec![7u8; 4096];
        let err = s
            .put(
                &digest_of(&data),
                Box::pin(std::io::Cursor::new(data.clone())),
                100,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }));
        assert!(matches!(
            s.open(&digest_of(&data)).await,
            Err(BlobError::NotFound(_))
        ));
    }
}
