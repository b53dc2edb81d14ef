//! The JetStream runner: one durable pull consumer per stage, explicit acks, retries
//! with per-NAK delays, dead letters, `Nats-Msg-Id` on every publish, streams and
//! consumers kept in line with the configuration, graceful shutdown that finishes or
//! NAKs in-flight messages, and payloads too large for a message carried by reference.
//!
//! How a message ends, whatever fails:
//! * handled and its outputs published: acked;
//! * the handler failed transiently and deliveries are left: NAKed with a delay
//!   ([`streams::retry_delay`]);
//! * the handler failed permanently, or `max_deliver` deliveries failed: the failure
//!   outputs (dead letter, failed result) are published, then the message is terminated;
//! * the outputs (or the failure outputs) could not be published, because a stream is
//!   unavailable or the disk is full: NAKed with a delay and tried again, however often,
//!   since the consumer's server-side delivery limit is unlimited; an output too large for
//!   the server even by reference ends the request with a failure after `max_deliver`;
//! * delivered more than [`CRASH_LIMIT_FACTOR`] × `max_deliver` times without ever being
//!   answered (each delivery's process died): given up as above, so a message that kills
//!   its handler cannot loop forever.
//!
//! Messages are pulled only when a handler slot is free (one pull request for as many
//! messages as there are free slots), so nothing waits in a client buffer, ageing
//! towards its ack wait, while this process is busy; another process can take it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, AckKind};
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;
use vigil_contracts::streams::{self, ConsumerTuning, StreamTuning};
use vigil_contracts::{FailureKind, StageName, Subjects};

use crate::failure::failure_outputs;
use crate::metrics::Metrics;
use crate::stage::{request_of, Outgoing, Stage, StageError};

pub use crate::objects::{
    is_payload_ref, resolve_payload, BucketSettings, ObjectBucket, ObjectStoreBlobs, PayloadSpill,
};
pub use crate::setup::{
    connect, connect_once, connect_with, ensure_consumer, ensure_streams, NatsConnect, RunnerError,
};

/// A message delivered this many times `max_deliver` without an answer is given up on.
pub const CRASH_LIMIT_FACTOR: u64 = 3;

/// How long one pull request waits for messages before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Publish with `Nats-Msg-Id` and wait for the stream's ack (no spilling: for small
/// records such as a scan request).
pub async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    out: &Outgoing,
) -> Result<(), RunnerError> {
    publish_many(js, subjects, std::slice::from_ref(out), None).await
}

fn publish_error(subject: &str, e: &jetstream::context::PublishError) -> RunnerError {
    if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded {
        RunnerError::TooLarge {
            subject: subject.to_string(),
            message: e.to_string(),
        }
    } else {
        RunnerError::Publish {
            subject: subject.to_string(),
            message: e.to_string(),
        }
    }
}

/// Publish several messages, each with its `Nats-Msg-Id`: all are sent first, then the
/// stream's acks are awaited together, so a fan-out of many messages costs about one
/// round trip instead of one per message. With `spill`, a payload larger than its
/// inline limit is put into the payload bucket and a reference published instead. Fails
/// if any publish fails (the caller NAKs and a redelivery re-publishes; the message ids
/// make the repeats no-ops).
pub async fn publish_many(
    js: &jetstream::Context,
    subjects: &Subjects,
    outs: &[Outgoing],
    spill: Option<&PayloadSpill>,
) -> Result<(), RunnerError> {
    const WINDOW: usize = 256;
    for chunk in outs.chunks(WINDOW) {
        let mut acks = Vec::with_capacity(chunk.len());
        for out in chunk {
            let subject = subjects.render(&out.subject);
            let payload = match spill {
                Some(s) => s
                    .outgoing(&out.payload)
                    .await
                    .map_err(|e| RunnerError::Publish {
                        subject: subject.clone(),
                        message: format!("spilling a {} byte payload: {e}", out.payload.len()),
                    })?,
                None => out.payload.clone(),
            };
            let ack = js
                .send_publish(
                    subject.clone(),
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(out.msg_id.clone()),
                )
                .await
                .map_err(|e| publish_error(&subject, &e))?;
            acks.push((subject, ack));
        }
        for (subject, ack) in acks {
            ack.await.map_err(|e| publish_error(&subject, &e))?;
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
    streams: StreamTuning,
    /// Messages handled at once per stage.
    pub concurrency: usize,
    /// How long in-flight messages may take to finish after shutdown is asked.
    pub shutdown_grace: Duration,
    /// Failure testing: hold each message of this stage for a while before handling it.
    pub hold: Option<(StageName, Duration)>,
    /// Failure testing: end the process (abort) after this stage's handler returned and
    /// before its outputs are published (the window between a store write and a
    /// publish); with a subject suffix, only for messages on subjects ending in it.
    pub crash_before_publish: Option<(StageName, Option<String>)>,
    /// Large payloads travel through this bucket; without it they must fit a message.
    pub spill: Option<PayloadSpill>,
    pub metrics: Option<Arc<Metrics>>,
}

impl JetStreamRunner {
    pub fn new(client: async_nats::Client, subjects: Subjects, tuning: ConsumerTuning) -> Self {
        JetStreamRunner {
            js: jetstream::new(client),
            subjects,
            tuning,
            streams: StreamTuning::default(),
            concurrency: 4,
            shutdown_grace: Duration::from_secs(30),
            hold: None,
            crash_before_publish: None,
            spill: None,
            metrics: None,
        }
    }

    /// Stream settings (replicas of the consumers follow them).
    pub fn with_streams(mut self, t: StreamTuning) -> Self {
        self.streams = t;
        self
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Run one stage until `shutdown` becomes true. Re-creates its consumer and pulls
    /// again after errors (for example a NATS restart or a lost stream leader).
    pub async fn run_stage(
        &self,
        stage: Arc<dyn Stage>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let name = stage.name();
        let slots = self.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(slots));
        // Fires when in-flight messages must give up (after the grace period).
        let (abort_tx, abort_rx) = watch::channel(false);
        let def = streams::stage_consumer(&self.subjects, name, &self.tuning, &self.streams);
        'outer: loop {
            if *shutdown.borrow() {
                break;
            }
            let consumer = match ensure_consumer(&self.js, &def).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(stage = %name, error = %e, "consumer not ready, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            tracing::info!(stage = %name, "consuming");
            if let Some(m) = &self.metrics {
                m.set_ready(name, true);
            }
            loop {
                let first = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore open"),
                    _ = shutdown.changed() => break 'outer,
                };
                let mut held = vec![first];
                while let Ok(p) = permits.clone().try_acquire_owned() {
                    held.push(p);
                }
                let batch = consumer
                    .batch()
                    .max_messages(held.len())
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await;
                let mut batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(stage = %name, error = %e, "pull failed; re-creating the consumer");
                        drop(held);
                        if let Some(m) = &self.metrics {
                            m.set_ready(name, false);
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'outer,
                            _ = shutdown.changed() => break 'outer,
                        }
                    }
                };
                while !held.is_empty() {
                    let next = tokio::select! {
                        m = batch.next() => m,
                        _ = shutdown.changed() => break 'outer,
                    };
                    let msg = match next {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            tracing::debug!(stage = %name, error = %e, "pull ended");
                            break;
                        }
                        None => break,
                    };
                    let permit = held.pop().expect("a slot per pulled message");
                    let this = self.clone();
                    let stage = stage.clone();
                    let abort = abort_rx.clone();
                    tokio::spawn(async move {
                        this.process(stage.as_ref(), msg, abort).await;
                        drop(permit);
                    });
                }
            }
        }
        if let Some(m) = &self.metrics {
            m.set_ready(name, false);
        }
        // Graceful shutdown: let in-flight messages finish, then NAK the rest.
        tracing::info!(stage = %name, "shutting down; waiting for in-flight messages");
        let all = slots as u32;
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
        let metrics = self.metrics.clone();
        if let Some(m) = &metrics {
            m.received(name, delivered);
        }
        let _in_flight = metrics.as_ref().map(|m| m.in_flight(name));
        let started = std::time::Instant::now();
        let span = tracing::info_span!("message", stage = %name, subject = %subject_str, delivered, request_id = tracing::field::Empty);
        async {
            let Some(subject) = self.subjects.parse(&subject_str) else {
                tracing::error!("message on unknown subject; terminating it");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            };
            // A reference to a payload too large for a message: fetch it first.
            let resolved;
            let payload: &[u8] = if is_payload_ref(&msg.payload) {
                let got = match &self.spill {
                    Some(s) => s.resolve(&msg.payload).await.map_err(|e| e.to_string()),
                    None => resolve_payload(&self.js, &self.subjects, &msg.payload)
                        .await
                        .map_err(|e| e.to_string()),
                };
                match got {
                    Ok(b) => {
                        resolved = b;
                        &resolved
                    }
                    Err(e) => {
                        let err = StageError::new(FailureKind::InvalidRequest, e);
                        self.give_up(name, &subject_str, &msg, &msg.payload, &err, delivered)
                            .await;
                        return;
                    }
                }
            } else {
                &msg.payload
            };
            if let Some(r) = request_of(payload) {
                tracing::Span::current().record("request_id", r.request_id.as_str());
            }
            let max = self.tuning.max_deliver.max(1) as u64;
            if delivered > max * CRASH_LIMIT_FACTOR {
                let err = StageError::new(
                    FailureKind::Internal,
                    format!(
                        "delivered {delivered} times without an answer: the process handling \
                         it stopped each time, or its outputs could not be published"
                    ),
                );
                self.give_up(name, &subject_str, &msg, payload, &err, delivered)
                    .await;
                return;
            }
            // Keep the message ours while the stage works on it.
            let progress = async {
                let every = (self.tuning.ack_wait / 3).max(Duration::from_millis(500));
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
                stage.handle(&subject, payload).await
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
            if let Some(m) = &metrics {
                m.handled(name, started.elapsed(), result.is_ok());
            }
            match result {
                Ok(outs) => {
                    let crash = match &self.crash_before_publish {
                        Some((s, None)) => *s == name,
                        Some((s, Some(suffix))) => *s == name && subject_str.ends_with(suffix.as_str()),
                        None => false,
                    };
                    if crash {
                        tracing::error!(
                            "handled; ending the process before publishing (failure testing)"
                        );
                        std::process::abort();
                    }
                    match self.publish_all(&outs).await {
                        Ok(()) => {
                            if let Err(e) = msg.double_ack().await {
                                tracing::warn!(error = %e, "ack failed; the message will be redelivered");
                            }
                        }
                        Err(e @ RunnerError::TooLarge { .. }) if delivered >= max => {
                            let err = StageError::new(
                                FailureKind::Internal,
                                format!("the stage's output cannot be published: {e}"),
                            );
                            self.give_up(name, &subject_str, &msg, payload, &err, delivered)
                                .await;
                        }
                        Err(e) => {
                            let delay = streams::retry_delay(delivered);
                            tracing::warn!(error = %e, ?delay, "publishing outputs failed; NAK");
                            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                        }
                    }
                }
                Err(e) if e.is_transient() && delivered < max => {
                    let delay = streams::retry_delay(delivered);
                    tracing::warn!(error = %e, ?delay, "transient failure; NAK with delay");
                    if let Some(m) = &metrics {
                        m.retried(name);
                    }
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                }
                Err(e) => {
                    self.give_up(name, &subject_str, &msg, payload, &e, delivered)
                        .await;
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Publish the failure outputs (dead letter, failed result) and terminate the
    /// message; if they cannot be published, NAK it so that it is tried again later.
    async fn give_up(
        &self,
        name: StageName,
        subject: &str,
        msg: &jetstream::Message,
        payload: &[u8],
        err: &StageError,
        delivered: u64,
    ) {
        tracing::warn!(error = %err, "giving up on message");
        let outs = failure_outputs(name, subject, payload, err, delivered);
        if let Err(pe) = self.publish_all(&outs).await {
            let delay = streams::retry_delay(delivered);
            tracing::warn!(error = %pe, ?delay, "publishing the failure failed; NAK");
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            return;
        }
        if let Some(m) = &self.metrics {
            m.dead_lettered(name);
        }
        let _ = msg.ack_with(AckKind::Term).await;
    }

    async fn publish_all(&self, outs: &[Outgoing]) -> Result<(), RunnerError> {
        publish_many(&self.js, &self.subjects, outs, self.spill.as_ref()).await
    }
}
