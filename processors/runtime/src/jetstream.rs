//! The JetStream runner: one durable pull consumer per stage, explicit acks, bounded
//! redeliveries with backoff, dead letters, `Nats-Msg-Id` on every publish, idempotent
//! stream/consumer creation, and graceful shutdown that finishes or NAKs in-flight
//! messages. Also the JetStream object-store blob cache used between fetch and extract.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;
use vigil_contracts::streams::{self, ConsumerTuning, Retention, StreamDef};
use vigil_contracts::{StageName, Subjects};

use crate::blobs::{sha256_hex, BlobError, BlobReader, BlobStore, DigestCheck};
use crate::failure::failure_outputs;
use crate::stage::{request_of, Outgoing, Stage};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("JetStream setup failed for {what}: {message}")]
    Setup { what: String, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
}

/// Connect to NATS with unlimited reconnects (a NATS restart must not end a stage).
pub async fn connect(url: &str) -> Result<async_nats::Client, RunnerError> {
    crate::install_crypto_provider();
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| RunnerError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}

fn stream_config(def: &StreamDef) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: def.name.clone(),
        subjects: def.subjects.clone(),
        retention: match def.retention {
            Retention::WorkQueue => jetstream::stream::RetentionPolicy::WorkQueue,
            Retention::Limits => jetstream::stream::RetentionPolicy::Limits,
        },
        max_age: def.max_age,
        duplicate_window: def.duplicate_window,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

/// Create the streams if missing (idempotent).
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
) -> Result<(), RunnerError> {
    for def in streams::all_streams(subjects) {
        js.get_or_create_stream(stream_config(&def))
            .await
            .map_err(|e| RunnerError::Setup {
                what: format!("stream {}", def.name),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Publish with `Nats-Msg-Id` and wait for the stream's ack.
pub async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    out: &Outgoing,
) -> Result<(), RunnerError> {
    let subject = subjects.render(&out.subject);
    let err = |e: &dyn std::fmt::Display| RunnerError::Publish {
        subject: subject.clone(),
        message: e.to_string(),
    };
    let ack = js
        .send_publish(
            subject.clone(),
            PublishMessage::build()
                .payload(out.payload.clone().into())
                .message_id(out.msg_id.clone()),
        )
        .await
        .map_err(|e| err(&e))?;
    ack.await.map_err(|e| err(&e))?;
    Ok(())
}

/// Publish several messages, each with its `Nats-Msg-Id`: all are sent first, then the
/// stream's acks are awaited together, so a fan-out of many messages costs about one
/// round trip instead of one per message. Fails if any ack fails (the caller NAKs and a
/// redelivery re-publishes; the message ids make the repeats no-ops).
pub async fn publish_many(
    js: &jetstream::Context,
    subjects: &Subjects,
    outs: &[Outgoing],
) -> Result<(), RunnerError> {
    const WINDOW: usize = 256;
    for chunk in outs.chunks(WINDOW) {
        let mut acks = Vec::with_capacity(chunk.len());
        for out in chunk {
            let subject = subjects.render(&out.subject);
            let ack = js
                .send_publish(
                    subject.clone(),
                    PublishMessage::build()
                        .payload(out.payload.clone().into())
                        .message_id(out.msg_id.clone()),
                )
                .await
                .map_err(|e| RunnerError::Publish {
                    subject: subject.clone(),
                    message: e.to_string(),
                })?;
            acks.push((subject, ack));
        }
        for (subject, ack) in acks {
            ack.await.map_err(|e| RunnerError::Publish {
                subject,
                message: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// Runs stages as JetStream consumers.
#[derive(Clone)]
pub struct JetStreamRunner {
    js: jetstream::Context,
    subjects: Subjects,
    tuning: ConsumerTuning,
    /// Messages handled at once per stage.
    pub concurrency: usize,
    /// How long in-flight messages may take to finish after shutdown is asked.
    pub shutdown_grace: Duration,
    /// Failure testing: hold each message of this stage for a while before handling it.
    pub hold: Option<(StageName, Duration)>,
}

impl JetStreamRunner {
    pub fn new(client: async_nats::Client, subjects: Subjects, tuning: ConsumerTuning) -> Self {
        JetStreamRunner {
            js: jetstream::new(client),
            subjects,
            tuning,
            concurrency: 4,
            shutdown_grace: Duration::from_secs(30),
            hold: None,
        }
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    async fn consumer(&self, stage: StageName) -> Result<pull::Stream, RunnerError> {
        let def = streams::stage_consumer(&self.subjects, stage, &self.tuning);
        let setup = |e: &dyn std::fmt::Display| RunnerError::Setup {
            what: format!("consumer {}", def.durable_name),
            message: e.to_string(),
        };
        let stream = self
            .js
            .get_stream(&def.stream)
            .await
            .map_err(|e| setup(&e))?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &def.durable_name,
                pull::Config {
                    durable_name: Some(def.durable_name.clone()),
                    filter_subjects: def.filter_subjects.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: def.ack_wait,
                    max_deliver: def.max_deliver,
                    backoff: def.backoff.clone(),
                    max_ack_pending: def.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| setup(&e))?;
        consumer
            .stream()
            .max_messages_per_batch(self.concurrency.max(1))
            .messages()
            .await
            .map_err(|e| setup(&e))
    }

    /// Run one stage until `shutdown` becomes true. Reconnects and re-subscribes on
    /// errors (for example a NATS restart).
    pub async fn run_stage(
        &self,
        stage: Arc<dyn Stage>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let name = stage.name();
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        // Fires when in-flight messages must give up (after the grace period).
        let (abort_tx, abort_rx) = watch::channel(false);
        'outer: loop {
            if *shutdown.borrow() {
                break;
            }
            let mut messages = match self.consumer(name).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(stage = %name, error = %e, "consumer not ready, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            tracing::info!(stage = %name, "consuming");
            loop {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore open"),
                    _ = shutdown.changed() => break 'outer,
                };
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = shutdown.changed() => break 'outer,
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!(stage = %name, error = %e, "message stream error");
                        drop(permit);
                        continue;
                    }
                    None => {
                        tracing::warn!(stage = %name, "message stream ended; re-subscribing");
                        continue 'outer;
                    }
                };
                let this = self.clone();
                let stage = stage.clone();
                let abort = abort_rx.clone();
                tokio::spawn(async move {
                    this.process(stage.as_ref(), msg, abort).await;
                    drop(permit);
                });
            }
        }
        // Graceful shutdown: let in-flight messages finish, then NAK the rest.
        tracing::info!(stage = %name, "shutting down; waiting for in-flight messages");
        let all = self.concurrency.max(1) as u32;
        if tokio::time::timeout(self.shutdown_grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            let _ = abort_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
        }
        Ok(())
    }

    async fn process(
        &self,
        stage: &dyn Stage,
        msg: jetstream::Message,
        mut abort: watch::Receiver<bool>,
    ) {
        let name = stage.name();
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1) as u64;
        let subject_str = msg.subject.to_string();
        let request_id = request_of(&msg.payload)
            .map(|r| r.request_id)
            .unwrap_or_default();
        let span = tracing::info_span!("message", stage = %name, subject = %subject_str, request_id = %request_id, delivered);
        async {
            let Some(subject) = self.subjects.parse(&subject_str) else {
                tracing::error!("message on unknown subject; terminating it");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            };
            // Keep the message ours while the stage works on it.
            let progress = async {
                let every = (self.tuning.ack_wait / 3).max(Duration::from_secs(1));
                loop {
                    tokio::time::sleep(every).await;
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            };
            let hold = match self.hold {
                Some((s, d)) if s == name => d,
                _ => Duration::ZERO,
            };
            let work = async {
                if !hold.is_zero() {
                    tracing::warn!(
                        ?hold,
                        "holding the message before handling it (failure testing)"
                    );
                    tokio::time::sleep(hold).await;
                }
                stage.handle(&subject, &msg.payload).await
            };
            let result = tokio::select! {
                r = work => Some(r),
                _ = progress => None,
                _ = abort.wait_for(|a| *a) => None,
            };
            let Some(result) = result else {
                tracing::warn!("shutdown before the message was handled; NAK for redelivery");
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                return;
            };
            match result {
                Ok(outs) => {
                    if let Err(e) = self.publish_all(&outs).await {
                        tracing::warn!(error = %e, "publishing outputs failed; NAK");
                        let _ = msg
                            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                            .await;
                        return;
                    }
                    if let Err(e) = msg.double_ack().await {
                        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
                    }
                }
                Err(e) if e.is_transient() && (delivered as i64) < self.tuning.max_deliver => {
                    let delay = backoff(delivered);
                    tracing::warn!(error = %e, ?delay, "transient failure; NAK with delay");
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "giving up on message");
                    let outs = failure_outputs(name, &subject_str, &msg.payload, &e, delivered);
                    if let Err(pe) = self.publish_all(&outs).await {
                        tracing::warn!(error = %pe, "publishing the failure failed; NAK");
                        let _ = msg
                            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                            .await;
                        return;
                    }
                    let _ = msg.ack_with(AckKind::Term).await;
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn publish_all(&self, outs: &[Outgoing]) -> Result<(), RunnerError> {
        publish_many(&self.js, &self.subjects, outs).await
    }
}

fn backoff(delivered: u64) -> Duration {
    let steps = [1u64, 5, 15, 30, 60];
    Duration::from_secs(steps[(delivered as usize - 1).min(steps.len() - 1)])
}

/// Blob cache in a JetStream object-store bucket (distributed mode), with a TTL.
pub struct ObjectStoreBlobs {
    store: jetstream::object_store::ObjectStore,
}

impl ObjectStoreBlobs {
    /// Open or create the bucket `<PREFIX>_blobs`.
    pub async fn open(
        js: &jetstream::Context,
        subjects: &Subjects,
        ttl: Duration,
    ) -> Result<Self, RunnerError> {
        let bucket = format!("{}_blobs", subjects.stream_prefix());
        let store = match js.get_object_store(&bucket).await {
            Ok(s) => s,
            Err(_) => js
                .create_object_store(jetstream::object_store::Config {
                    bucket: bucket.clone(),
                    description: Some(
                        "vigil layer blobs in flight between fetch and extract".into(),
                    ),
                    max_age: ttl,
                    ..Default::default()
                })
                .await
                .map_err(|e| RunnerError::Setup {
                    what: format!("object store {bucket}"),
                    message: e.to_string(),
                })?,
        };
        Ok(ObjectStoreBlobs { store })
    }
}

/// Hashes and counts what passes through, failing once `limit` is exceeded.
struct HashingReader {
    inner: BlobReader,
    hasher: Sha256,
    n: u64,
    limit: u64,
}

impl AsyncRead for HashingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            self.n += new.len() as u64;
            if self.n > self.limit {
                return std::task::Poll::Ready(Err(std::io::Error::other(
                    "blob larger than limit",
                )));
            }
            let chunk = new.to_vec();
            self.hasher.update(&chunk);
        }
        r
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
        Ok(self.store.info(digest).await.is_ok())
    }

    /// Always hashes (the object store is filled by other processes' fetch stages too).
    async fn put_checked(
        &self,
        digest: &str,
        reader: BlobReader,
        max_size: u64,
        _check: DigestCheck,
    ) -> Result<u64, BlobError> {
        let expected = sha256_hex(digest)?.to_ascii_lowercase();
        let mut r = HashingReader {
            inner: reader,
            hasher: Sha256::new(),
            n: 0,
            limit: max_size,
        };
        let put = self.store.put(digest, &mut r).await;
        if r.n > max_size {
            let _ = self.store.delete(digest).await;
            return Err(BlobError::TooLarge {
                digest: digest.to_string(),
                limit: max_size,
            });
        }
        put.map_err(|e| blob_io(digest, e))?;
        let actual = hex::encode(r.hasher.finalize());
        if actual != expected {
            let _ = self.store.delete(digest).await;
            return Err(BlobError::DigestMismatch {
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            });
        }
        Ok(r.n)
    }

    async fn open(&self, digest: &str) -> Result<BlobReader, BlobError> {
        sha256_hex(digest)?;
        match self.store.get(digest).await {
            Ok(obj) => Ok(Box::pin(obj)),
            Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => {
                Err(BlobError::NotFound(digest.to_string()))
            }
            Err(e) => Err(blob_io(digest, e)),
        }
    }

    async fn delete(&self, digest: &str) -> Result<(), BlobError> {
        match self.store.delete(digest).await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().to_lowercase().contains("not found") => Ok(()),
            Err(e) => Err(blob_io(digest, e)),
        }
    }
}
