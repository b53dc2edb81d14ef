//! JetStream stream and consumer definitions, as plain data; the runtime turns them
//! into server calls. Work subjects live in a work-queue stream (each message is
//! removed once its one consumer acks it); results and notifications in a limits
//! stream that late subscribers can still read; dead letters in their own stream.

use std::time::Duration;

use crate::subjects::{StageName, Subject, Subjects};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    WorkQueue,
    Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDef {
    pub name: String,
    pub subjects: Vec<String>,
    pub retention: Retention,
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
    /// Copies of every message in a cluster (1 on one server, 3 on a 3-node cluster).
    pub num_replicas: usize,
}

/// Tunables of the streams, buckets and object stores a deployment creates. Applied at
/// every start: a stream whose settings differ is updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTuning {
    /// Replicas of every stream, KV bucket and object store.
    pub replicas: usize,
    /// Window of `Nats-Msg-Id` de-duplication. Longer than the longest redelivery delay,
    /// so that a message handled again much later publishes nothing twice.
    pub duplicate_window: Duration,
    /// How long results and notifications stay readable.
    pub results_max_age: Duration,
}

impl Default for StreamTuning {
    fn default() -> Self {
        StreamTuning {
            replicas: 1,
            duplicate_window: Duration::from_secs(20 * 60),
            results_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// A stage's durable consumer. There is deliberately no server-side `backoff` list:
/// nats-server uses `backoff[0]` as the ack wait when one is set (a consumer created with
/// `ack_wait` 120 s and backoff `[1, 5, …]` reports 1 s and redelivers a held message
/// after one second), so retry delays are given per NAK by the runner instead. And the
/// server's `max_deliver` is unlimited: the runner counts deliveries and ends a message
/// itself (dead letter, failed result), so that no message is ever left in the work
/// stream because the server stopped delivering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerDef {
    pub stream: String,
    pub durable_name: String,
    pub filter_subjects: Vec<String>,
    pub ack_wait: Duration,
    /// Server-side delivery limit: -1 (unlimited), see above.
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    pub num_replicas: usize,
}

/// Tunables of consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerTuning {
    /// How long a delivered message stays ours without an ack; the runner sends progress
    /// acks every third of it while a handler works.
    pub ack_wait: Duration,
    /// Deliveries of a message that failed in its handler before the runner gives up on
    /// it (dead letter and failed result). Enforced by the runner, not the server.
    pub max_deliver: i64,
    /// Messages delivered and not yet acknowledged, per consumer across the cluster.
    pub max_ack_pending: i64,
}

impl Default for ConsumerTuning {
    fn default() -> Self {
        ConsumerTuning {
            ack_wait: Duration::from_secs(120),
            max_deliver: 5,
            max_ack_pending: 64,
        }
    }
}

/// Name of the work stream.
pub fn work_stream_name(s: &Subjects) -> String {
    format!("{}_WORK", s.stream_prefix())
}

/// Name of the results stream (results and notifications).
pub fn results_stream_name(s: &Subjects) -> String {
    format!("{}_RESULTS", s.stream_prefix())
}

/// Name of the dead-letter stream.
pub fn dlq_stream_name(s: &Subjects) -> String {
    format!("{}_DLQ", s.stream_prefix())
}

/// Name of the object store that carries payloads too large for a message.
pub fn payload_bucket_name(s: &Subjects) -> String {
    format!("{}_payloads", s.stream_prefix())
}

/// Name of the object store of layer blobs in flight between fetch and extract.
pub fn blob_bucket_name(s: &Subjects) -> String {
    format!("{}_blobs", s.stream_prefix())
}

pub fn work_stream(s: &Subjects, t: &StreamTuning) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: work_stream_name(s),
        subjects: vec![
            format!("{p}.scan.request"),
            format!("{p}.stage.>"),
            format!("{p}.feeds.updated"),
            format!("{p}.feeds.sync"),
            format!("{p}.policy.updated"),
            format!("{p}.watch.>"),
            format!("{p}.ingest.request"),
        ],
        retention: Retention::WorkQueue,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: t.duplicate_window,
        num_replicas: t.replicas,
    }
}

pub fn results_stream(s: &Subjects, t: &StreamTuning) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: results_stream_name(s),
        subjects: vec![
            format!("{p}.result.>"),
            format!("{p}.notify.>"),
            format!("{p}.event.>"),
            format!("{p}.ingest.progress.>"),
        ],
        retention: Retention::Limits,
        max_age: t.results_max_age,
        duplicate_window: t.duplicate_window,
        num_replicas: t.replicas,
    }
}

pub fn dlq_stream(s: &Subjects, t: &StreamTuning) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: dlq_stream_name(s),
        subjects: vec![format!("{p}.dlq.>")],
        retention: Retention::Limits,
        max_age: Duration::from_secs(30 * 24 * 3600),
        duplicate_window: t.duplicate_window,
        num_replicas: t.replicas,
    }
}

/// Name of the stream of webhook deliveries (one subject per endpoint).
pub fn deliver_stream_name(s: &Subjects) -> String {
    format!("{}_DELIVER", s.stream_prefix())
}

/// Webhook deliveries: a work queue per endpoint subject, kept for a week (longer than
/// any retry window; a delivery given up on is moved to the store's dead letters).
pub fn deliver_stream(s: &Subjects, t: &StreamTuning) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: deliver_stream_name(s),
        subjects: vec![format!("{p}.deliver.>")],
        retention: Retention::WorkQueue,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: t.duplicate_window,
        num_replicas: t.replicas,
    }
}

pub fn all_streams(s: &Subjects, t: &StreamTuning) -> Vec<StreamDef> {
    vec![
        work_stream(s, t),
        results_stream(s, t),
        dlq_stream(s, t),
        deliver_stream(s, t),
    ]
}

/// The durable pull consumer of a stage.
pub fn stage_consumer(
    s: &Subjects,
    stage: StageName,
    t: &ConsumerTuning,
    st: &StreamTuning,
) -> ConsumerDef {
    ConsumerDef {
        stream: work_stream_name(s),
        durable_name: format!("{}_{}", s.stream_prefix(), stage.as_str()),
        filter_subjects: s.inputs(stage).iter().map(|x| s.render(x)).collect(),
        ack_wait: t.ack_wait,
        max_deliver: -1,
        max_ack_pending: t.max_ack_pending,
        num_replicas: st.replicas,
    }
}

/// The delay before the `delivered`-th delivery is retried: 1, 5, 15, 30, then 60 s.
pub fn retry_delay(delivered: u64) -> Duration {
    const STEPS: [u64; 5] = [1, 5, 15, 30, 60];
    Duration::from_secs(STEPS[(delivered.max(1) as usize - 1).min(STEPS.len() - 1)])
}

/// Whether a subject is one that a stage consumer reads (work stream).
pub fn is_work_subject(subject: &Subject) -> bool {
    matches!(
        subject,
        Subject::ScanRequest
            | Subject::Stage(_)
            | Subject::FeedsUpdated
            | Subject::FeedsSync
            | Subject::PolicyUpdated
            | Subject::WatchPoll
            | Subject::WatchPush
            | Subject::IngestRequest
    )
}
