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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerDef {
    pub stream: String,
    pub durable_name: String,
    pub filter_subjects: Vec<String>,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub backoff: Vec<Duration>,
    pub max_ack_pending: i64,
}

/// Tunables of consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerTuning {
    pub ack_wait: Duration,
    pub max_deliver: i64,
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

pub fn work_stream(s: &Subjects) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: format!("{}_WORK", s.stream_prefix()),
        subjects: vec![
            format!("{p}.scan.request"),
            format!("{p}.stage.>"),
            format!("{p}.feeds.updated"),
            format!("{p}.feeds.sync"),
            format!("{p}.policy.updated"),
        ],
        retention: Retention::WorkQueue,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
    }
}

pub fn results_stream(s: &Subjects) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: format!("{}_RESULTS", s.stream_prefix()),
        subjects: vec![format!("{p}.result.>"), format!("{p}.notify.>")],
        retention: Retention::Limits,
        max_age: Duration::from_secs(24 * 3600),
        duplicate_window: Duration::from_secs(120),
    }
}

pub fn dlq_stream(s: &Subjects) -> StreamDef {
    let p = s.prefix();
    StreamDef {
        name: format!("{}_DLQ", s.stream_prefix()),
        subjects: vec![format!("{p}.dlq.>")],
        retention: Retention::Limits,
        max_age: Duration::from_secs(30 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
    }
}

pub fn all_streams(s: &Subjects) -> Vec<StreamDef> {
    vec![work_stream(s), results_stream(s), dlq_stream(s)]
}

/// The durable pull consumer of a stage.
pub fn stage_consumer(s: &Subjects, stage: StageName, t: &ConsumerTuning) -> ConsumerDef {
    // Backoff must have fewer entries than max_deliver.
    let steps = [1u64, 5, 15, 30, 60];
    let n = (t.max_deliver.max(1) as usize - 1).min(steps.len());
    ConsumerDef {
        stream: work_stream(s).name,
        durable_name: format!("{}_{}", s.stream_prefix(), stage.as_str()),
        filter_subjects: s.inputs(stage).iter().map(|x| s.render(x)).collect(),
        ack_wait: t.ack_wait,
        max_deliver: t.max_deliver,
        backoff: steps[..n].iter().map(|x| Duration::from_secs(*x)).collect(),
        max_ack_pending: t.max_ack_pending,
    }
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
    )
}
