//! JetStream object stores as vigil uses them: content-addressed objects whose digest is
//! checked before they become visible, and whose chunks never outlive a failed or
//! losing put.
//!
//! * [`ObjectBucket`]: open or create a bucket (updating its TTL, size bound and replica
//!   count when they changed) and [`ObjectBucket::put_verified`] an object into it.
//! * [`ObjectStoreBlobs`]: the layer-blob cache between fetch and extract.
//! * [`PayloadSpill`]: messages larger than NATS's `max_payload` travel as a
//!   [`PayloadRef`] to an object.
//!
//! An object store keeps an object as chunk messages on `$O.<bucket>.C.<nuid>` and one
//! meta message on `$O.<bucket>.M.<name>`; readers see an object only once its meta
//! message exists. `put_verified` writes the chunks under a fresh nuid, hashes them as
//! they pass, and publishes the meta message only when the size and digest are right,
//! conditionally on the meta subject being unchanged since it looked
//! (`Nats-Expected-Last-Subject-Sequence`). Whatever goes wrong (a read error, a digest
//! mismatch, a size over the cap, another process's put of the same name winning the
//! race) ends in a purge of this put's chunk subject, so nothing is left behind.

use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use async_nats::HeaderMap;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use vigil_contracts::{codec, PayloadRef, Subjects};

use crate::blobs::{sha256_hex, BlobError, BlobReader, BlobStore, DigestCheck};
use crate::setup::RunnerError;

/// Chunk size of vigil's object puts (the object store's default).
const CHUNK: usize = 128 * 1024;

/// Why a verified put failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("object {name}: larger than {limit} bytes")]
    TooLarge { name: String, limit: u64 },
    #[error("object {name}: digest mismatch, expected sha256:{expected}, got sha256:{actual}")]
    DigestMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("object {name}: reading its content failed: {message}")]
    Read { name: String, message: String },
    #[error("object {name}: {message}")]
    Nats { name: String, message: String },
}

/// Settings of a bucket, applied when it is created and when they differ at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSettings {
    pub max_age: Duration,
    /// Upper bound of the bucket's size in bytes; -1 for none. A put that would pass it
    /// fails (the stream discards new messages), it never evicts live objects.
    pub max_bytes: i64,
    pub replicas: usize,
}

/// An object-store bucket.
#[derive(Clone)]
pub struct ObjectBucket {
    js: jetstream::Context,
    name: String,
    store: object_store::ObjectStore,
    stream: jetstream::stream::Stream,
}

impl ObjectBucket {
    /// Open `name`, creating it when missing; an existing bucket whose TTL, size bound or
    /// replica count differ from `settings` is updated.
    pub async fn open(
        js: &jetstream::Context,
        name: &str,
        description: &str,
        settings: &BucketSettings,
    ) -> Result<Self, RunnerError> {
        let setup = |e: &dyn std::fmt::Display| RunnerError::Setup {
            what: format!("object store {name}"),
            message: e.to_string(),
        };
        let store = match js.get_object_store(name).await {
            Ok(s) => s,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: name.to_string(),
                    description: Some(description.to_string()),
                    max_age: settings.max_age,
                    max_bytes: settings.max_bytes,
                    num_replicas: settings.replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| setup(&e))?,
        };
        let stream_name = format!("OBJ_{name}");
        let mut stream = js.get_stream(&stream_name).await.map_err(|e| setup(&e))?;
        let cfg = stream.cached_info().config.clone();
        let want_replicas = settings.replicas.max(1);
        if cfg.max_age != settings.max_age
            || cfg.max_bytes != settings.max_bytes
            || cfg.num_replicas != want_replicas
        {
            tracing::info!(
                bucket = name,
                max_age = ?settings.max_age,
                max_bytes = settings.max_bytes,
                replicas = want_replicas,
                "updating the object store's settings"
            );
            let mut new = cfg;
            new.max_age = settings.max_age;
            new.max_bytes = settings.max_bytes;
            new.num_replicas = want_replicas;
            js.update_stream(&new).await.map_err(|e| setup(&e))?;
            stream = js.get_stream(&stream_name).await.map_err(|e| setup(&e))?;
        }
        Ok(ObjectBucket {
            js: js.clone(),
            name: name.to_string(),
            store,
            stream,
        })
    }

    pub fn store(&self) -> &object_store::ObjectStore {
        &self.store
    }

    /// The stream behind the bucket (chunk and meta messages), for inspection.
    pub fn stream(&self) -> &jetstream::stream::Stream {
        &self.stream
    }

    fn meta_subject(&self, object: &str) -> String {
        use base64::Engine;
        format!(
            "$O.{}.M.{}",
            self.name,
            base64::engine::general_purpose::URL_SAFE.encode(object)
        )
    }

    /// Whether an object is present (its meta message exists and is not a deletion).
    pub async fn has(&self, object: &str) -> bool {
        matches!(self.store.info(object).await, Ok(i) if !i.deleted)
    }

    /// Put `object` from `reader`: at most `max_size` bytes, and, when `expected` is
    /// given, with that hex SHA-256. Visible only when complete and correct. Returns the
    /// size. A concurrent put of the same name by another process that wins is success
    /// too when the object is content-addressed (the caller's name says so).
    pub async fn put_verified(
        &self,
        object: &str,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        max_size: u64,
        expected: Option<&str>,
    ) -> Result<u64, PutError> {
        let nuid = uuid::Uuid::new_v4().simple().to_string();
        let chunk_subject = format!("$O.{}.C.{}", self.name, nuid);
        let result = self
            .write_chunks_and_meta(object, &chunk_subject, &nuid, reader, max_size, expected)
            .await;
        match result {
            Ok(Some(size)) => Ok(size),
            // Lost the race to an identical put: ours goes.
            Ok(None) => {
                self.purge_quietly(&chunk_subject).await;
                Ok(self
                    .store
                    .info(object)
                    .await
                    .map(|i| i.size as u64)
                    .unwrap_or(0))
            }
            Err(e) => {
                self.purge_quietly(&chunk_subject).await;
                Err(e)
            }
        }
    }

    async fn purge_quietly(&self, chunk_subject: &str) {
        if let Err(e) = self.stream.purge().filter(chunk_subject).await {
            tracing::warn!(subject = chunk_subject, error = %e, "could not purge the chunks of a failed put");
        }
    }

    /// `Ok(None)`: the object was put by someone else meanwhile.
    async fn write_chunks_and_meta(
        &self,
        object: &str,
        chunk_subject: &str,
        nuid: &str,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        max_size: u64,
        expected: Option<&str>,
    ) -> Result<Option<u64>, PutError> {
        let nats = |e: &dyn std::fmt::Display| PutError::Nats {
            name: object.to_string(),
            message: e.to_string(),
        };
        let meta_subject = self.meta_subject(object);
        // The meta message now (if any): the put is conditional on it being unchanged.
        let previous = match self
            .stream
            .get_last_raw_message_by_subject(&meta_subject)
            .await
        {
            Ok(m) => Some(m),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                None
            }
            Err(e) => return Err(nats(&e)),
        };
        let previous_info: Option<object_store::ObjectInfo> = previous
            .as_ref()
            .and_then(|m| serde_json::from_slice(&m.payload).ok());
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut chunks = 0usize;
        let mut buf = vec![0u8; CHUNK];
        let mut acks = Vec::new();
        let streamed: Result<(), PutError> = async {
            loop {
                let mut filled = 0;
                while filled < CHUNK {
                    let n = reader
                        .read(&mut buf[filled..])
                        .await
                        .map_err(|e| PutError::Read {
                            name: object.to_string(),
                            message: e.to_string(),
                        })?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                size += filled as u64;
                if size > max_size {
                    return Err(PutError::TooLarge {
                        name: object.to_string(),
                        limit: max_size,
                    });
                }
                hasher.update(&buf[..filled]);
                chunks += 1;
                let ack = self
                    .js
                    .publish(
                        chunk_subject.to_string(),
                        bytes::Bytes::copy_from_slice(&buf[..filled]),
                    )
                    .await
                    .map_err(|e| nats(&e))?;
                acks.push(ack);
                // A few chunks in flight at a time.
                if acks.len() >= 8 {
                    for a in acks.drain(..) {
                        a.await.map_err(|e| nats(&e))?;
                    }
                }
                if filled < CHUNK {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // Whatever happened, wait for the chunks already published: one still in flight
        // when a failed put purges its chunk subject would be stored after the purge and
        // left behind.
        let mut ack_error = None;
        for a in acks.drain(..) {
            if let Err(e) = a.await {
                ack_error.get_or_insert_with(|| nats(&e));
            }
        }
        streamed?;
        if let Some(e) = ack_error {
            return Err(e);
        }
        let digest = hasher.finalize();
        let actual = hex::encode(digest);
        if let Some(want) = expected {
            if !actual.eq_ignore_ascii_case(want) {
                return Err(PutError::DigestMismatch {
                    name: object.to_string(),
                    expected: want.to_ascii_lowercase(),
                    actual,
                });
            }
        }
        use base64::Engine;
        let info = object_store::ObjectInfo {
            name: object.to_string(),
            description: None,
            metadata: Default::default(),
            headers: None,
            options: Some(object_store::ObjectOptions {
                link: None,
                max_chunk_size: Some(CHUNK),
            }),
            bucket: self.name.clone(),
            nuid: nuid.to_string(),
            size: size as usize,
            chunks,
            modified: None,
            digest: Some(format!(
                "SHA-256={}",
                base64::engine::general_purpose::URL_SAFE.encode(digest)
            )),
            deleted: false,
        };
        let body = serde_json::to_vec(&info).map_err(|e| nats(&e))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Rollup", "sub");
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            previous
                .as_ref()
                .map(|m| m.sequence)
                .unwrap_or(0)
                .to_string()
                .as_str(),
        );
        let published = match self
            .js
            .publish_with_headers(meta_subject.clone(), headers, body.into())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => return Err(nats(&e)),
        };
        match published {
            Ok(_) => {
                // The object we replaced (if any) loses its chunks.
                if let Some(old) = previous_info {
                    if !old.nuid.is_empty() && old.nuid != nuid {
                        self.purge_quietly(&format!("$O.{}.C.{}", self.name, old.nuid))
                            .await;
                    }
                }
                Ok(Some(size))
            }
            Err(e) => {
                // Someone else's meta message came first.
                if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence {
                    Ok(None)
                } else {
                    Err(nats(&e))
                }
            }
        }
    }

    /// Read a whole object (for payloads, which are bounded by the caller's cap).
    pub async fn read_all(&self, object: &str, max: u64) -> Result<Option<Vec<u8>>, PutError> {
        let nats = |e: &dyn std::fmt::Display| PutError::Nats {
            name: object.to_string(),
            message: e.to_string(),
        };
        let mut obj = match self.store.get(object).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(nats(&e)),
        };
        let mut out = Vec::new();
        (&mut obj)
            .take(max + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| PutError::Read {
                name: object.to_string(),
                message: e.to_string(),
            })?;
        if out.len() as u64 > max {
            return Err(PutError::TooLarge {
                name: object.to_string(),
                limit: max,
            });
        }
        Ok(Some(out))
    }

    /// Delete an object and its chunks; absent is fine.
    pub async fn delete(&self, object: &str) -> Result<(), PutError> {
        match self.store.delete(object).await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().to_lowercase().contains("not found") => Ok(()),
            Err(e) => Err(PutError::Nats {
                name: object.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Blob cache in a JetStream object-store bucket (distributed mode), with a TTL and a
/// size bound.
pub struct ObjectStoreBlobs {
    bucket: ObjectBucket,
}

impl ObjectStoreBlobs {
    /// Open or create the bucket `<PREFIX>_blobs`.
    pub async fn open(
        js: &jetstream::Context,
        subjects: &Subjects,
        settings: &BucketSettings,
    ) -> Result<Self, RunnerError> {
        let bucket = ObjectBucket::open(
            js,
            &vigil_contracts::streams::blob_bucket_name(subjects),
            "vigil layer blobs in flight between fetch and extract",
            settings,
        )
        .await?;
        Ok(ObjectStoreBlobs { bucket })
    }

    pub fn bucket(&self) -> &ObjectBucket {
        &self.bucket
    }
}

fn blob_io(digest: &str, e: impl std::fmt::Display) -> BlobError {
    BlobError::Io {
        digest: digest.to_string(),
        message: e.to_string(),
    }
}

#[async_trait]
impl BlobStore for ObjectStoreBlobs {
    async fn has(&self, digest: &str) -> Result<bool, BlobError> {
        sha256_hex(digest)?;
        Ok(self.bucket.has(digest).await)
    }

    /// Always hashes (the object store is filled by other processes' fetch stages too),
    /// and the object is visible only once its digest checked out.
    async fn put_checked(
        &self,
        digest: &str,
        mut reader: BlobReader,
        max_size: u64,
        _check: DigestCheck,
    ) -> Result<u64, BlobError> {
        let expected = sha256_hex(digest)?.to_ascii_lowercase();
        match self
            .bucket
            .put_verified(digest, &mut reader, max_size, Some(&expected))
            .await
        {
            Ok(n) => Ok(n),
            Err(PutError::TooLarge { limit, .. }) => Err(BlobError::TooLarge {
                digest: digest.to_string(),
                limit,
            }),
            Err(PutError::DigestMismatch { actual, .. }) => Err(BlobError::DigestMismatch {
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            }),
            Err(e) => Err(blob_io(digest, e)),
        }
    }

    async fn open(&self, digest: &str) -> Result<BlobReader, BlobError> {
        sha256_hex(digest)?;
        match self.bucket.store().get(digest).await {
            Ok(obj) => Ok(Box::pin(obj)),
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                Err(BlobError::NotFound(digest.to_string()))
            }
            Err(e) => Err(blob_io(digest, e)),
        }
    }

    async fn delete(&self, digest: &str) -> Result<(), BlobError> {
        self.bucket
            .delete(digest)
            .await
            .map_err(|e| blob_io(digest, e))
    }
}

/// The largest payload vigil reads back from a reference (a report of a huge image is
/// tens of MB; this bounds what a forged reference can make a reader allocate).
pub const MAX_SPILLED_PAYLOAD: u64 = 1 << 30;

/// Payloads too large for one message travel through an object store.
#[derive(Clone)]
pub struct PayloadSpill {
    bucket: ObjectBucket,
    /// Payloads larger than this are spilled.
    pub inline_limit: usize,
}

impl PayloadSpill {
    /// Open or create `<PREFIX>_payloads`; `inline_limit` is capped below the server's
    /// `max_payload` (with room for headers).
    pub async fn open(
        client: &async_nats::Client,
        js: &jetstream::Context,
        subjects: &Subjects,
        settings: &BucketSettings,
        inline_limit: usize,
    ) -> Result<Self, RunnerError> {
        let bucket = ObjectBucket::open(
            js,
            &vigil_contracts::streams::payload_bucket_name(subjects),
            "vigil messages too large for one NATS message",
            settings,
        )
        .await?;
        // Not yet known before the first connection: assume the server default (1 MiB).
        let server_max = match client.server_info().max_payload {
            0 => 1024 * 1024,
            n => n,
        };
        let cap = server_max.saturating_sub(16 * 1024).max(1024);
        Ok(PayloadSpill {
            bucket,
            inline_limit: inline_limit.min(cap),
        })
    }

    pub fn bucket(&self) -> &ObjectBucket {
        &self.bucket
    }

    /// The bytes to publish for `payload`: itself when small, else a [`PayloadRef`] to an
    /// object holding it (content-addressed, so a repeated publish reuses the object).
    pub async fn outgoing(&self, payload: &[u8]) -> Result<Vec<u8>, PutError> {
        if payload.len() <= self.inline_limit {
            return Ok(payload.to_vec());
        }
        let sha = hex::encode(Sha256::digest(payload));
        let object = format!("sha256-{sha}");
        if !self.bucket.has(&object).await {
            let mut r: &[u8] = payload;
            self.bucket
                .put_verified(&object, &mut r, payload.len() as u64, Some(&sha))
                .await?;
        }
        let record = codec::header(payload).map(|h| h.record).unwrap_or_default();
        codec::encode(&PayloadRef {
            record,
            object,
            size: payload.len() as u64,
            sha256: sha,
        })
        .map_err(|e| PutError::Nats {
            name: "payload reference".into(),
            message: e.to_string(),
        })
    }

    /// The record bytes a message carries: the payload itself, or the object a
    /// [`PayloadRef`] points at (checked against its digest).
    pub async fn resolve(&self, payload: &[u8]) -> Result<Vec<u8>, ResolveError> {
        resolve_with(&self.bucket, payload).await
    }
}

/// Why a payload reference could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the referenced payload {0} is gone (expired from the payload bucket)")]
    Gone(String),
    #[error("the referenced payload {object} does not match its digest")]
    Corrupt { object: String },
    #[error("reading the referenced payload: {0}")]
    Read(#[from] PutError),
}

/// Whether `payload` is a [`PayloadRef`].
pub fn is_payload_ref(payload: &[u8]) -> bool {
    codec::header(payload)
        .map(|h| h.record == <PayloadRef as vigil_contracts::Record>::KIND)
        .unwrap_or(false)
}

async fn resolve_with(bucket: &ObjectBucket, payload: &[u8]) -> Result<Vec<u8>, ResolveError> {
    if !is_payload_ref(payload) {
        return Ok(payload.to_vec());
    }
    let r: PayloadRef = codec::decode(payload).map_err(|e| {
        ResolveError::Read(PutError::Read {
            name: "payload reference".into(),
            message: e.to_string(),
        })
    })?;
    let bytes = bucket
        .read_all(&r.object, r.size.min(MAX_SPILLED_PAYLOAD))
        .await?
        .ok_or_else(|| ResolveError::Gone(r.object.clone()))?;
    if !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(&r.sha256) {
        return Err(ResolveError::Corrupt { object: r.object });
    }
    Ok(bytes)
}

/// Follow a payload reference with only a JetStream context (for clients such as
/// `vigil submit` that read results): the payload bucket is opened, not created.
pub async fn resolve_payload(
    js: &jetstream::Context,
    subjects: &Subjects,
    payload: &[u8],
) -> Result<Vec<u8>, ResolveError> {
    if !is_payload_ref(payload) {
        return Ok(payload.to_vec());
    }
    let name = vigil_contracts::streams::payload_bucket_name(subjects);
    let store = js.get_object_store(&name).await.map_err(|e| {
        ResolveError::Read(PutError::Nats {
            name: name.clone(),
            message: e.to_string(),
        })
    })?;
    let stream = js.get_stream(format!("OBJ_{name}")).await.map_err(|e| {
        ResolveError::Read(PutError::Nats {
            name: name.clone(),
            message: e.to_string(),
        })
    })?;
    let bucket = ObjectBucket {
        js: js.clone(),
        name,
        store,
        stream,
    };
    resolve_with(&bucket, payload).await
}
