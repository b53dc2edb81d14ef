//! Subject names. Every subject starts with a configurable prefix (default `vigil`) so
//! that several deployments can share one NATS account.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::records::NotificationKind;

/// The pipeline stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    Fetch,
    Extract,
    Analyze,
    Match,
    Evaluate,
    Notify,
    Feeds,
    /// Watched tags and repositories, registry ingestion, registry push events.
    Watch,
}

impl StageName {
    pub const ALL: [StageName; 8] = [
        StageName::Fetch,
        StageName::Extract,
        StageName::Analyze,
        StageName::Match,
        StageName::Evaluate,
        StageName::Notify,
        StageName::Feeds,
        StageName::Watch,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            StageName::Fetch => "fetch",
            StageName::Extract => "extract",
            StageName::Analyze => "analyze",
            StageName::Match => "match",
            StageName::Evaluate => "evaluate",
            StageName::Notify => "notify",
            StageName::Feeds => "feeds",
            StageName::Watch => "watch",
        }
    }

    pub fn parse(s: &str) -> Option<StageName> {
        StageName::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A destination, independent of the prefix; [`Subjects::render`] turns it into a subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// `<p>.scan.request`
    ScanRequest,
    /// `<p>.stage.<stage>` (the input of `fetch` is `ScanRequest`, of `feeds` is `FeedsSync`).
    Stage(StageName),
    /// `<p>.result.<request_id>`
    Result(String),
    /// `<p>.notify.<kind>`
    Notify(NotificationKind),
    /// `<p>.feeds.updated`
    FeedsUpdated,
    /// `<p>.feeds.sync`
    FeedsSync,
    /// `<p>.policy.updated`
    PolicyUpdated,
    /// `<p>.dlq.<stage>`
    DeadLetter(StageName),
    /// `<p>.watch.poll`
    WatchPoll,
    /// `<p>.watch.push`
    WatchPush,
    /// `<p>.ingest.request`
    IngestRequest,
    /// `<p>.ingest.progress.<id>`
    IngestProgress(String),
    /// `<p>.event.<kind>`
    Event(String),
    /// `<p>.deliver.<endpoint>`
    Deliver(String),
}

/// Subject names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::new("vigil")
    }
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Subjects {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn render(&self, s: &Subject) -> String {
        let p = &self.prefix;
        match s {
            Subject::ScanRequest => format!("{p}.scan.request"),
            Subject::Stage(st) => format!("{p}.stage.{}", st.as_str()),
            Subject::Result(id) => format!("{p}.result.{}", sanitize_token(id)),
            Subject::Notify(k) => format!("{p}.notify.{}", k.as_str()),
            Subject::FeedsUpdated => format!("{p}.feeds.updated"),
            Subject::FeedsSync => format!("{p}.feeds.sync"),
            Subject::PolicyUpdated => format!("{p}.policy.updated"),
            Subject::DeadLetter(st) => format!("{p}.dlq.{}", st.as_str()),
            Subject::WatchPoll => format!("{p}.watch.poll"),
            Subject::WatchPush => format!("{p}.watch.push"),
            Subject::IngestRequest => format!("{p}.ingest.request"),
            Subject::IngestProgress(id) => format!("{p}.ingest.progress.{}", sanitize_token(id)),
            Subject::Event(kind) => format!("{p}.event.{}", sanitize_token(kind)),
            Subject::Deliver(endpoint) => format!("{p}.deliver.{}", sanitize_token(endpoint)),
        }
    }

    /// Parse a subject back; `None` when it is not one of ours.
    pub fn parse(&self, subject: &str) -> Option<Subject> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
        match (head, tail) {
            ("scan", "request") => Some(Subject::ScanRequest),
            ("stage", st) => StageName::parse(st).map(Subject::Stage),
            ("result", id) if !id.is_empty() => Some(Subject::Result(id.to_string())),
            ("notify", k) => NotificationKind::parse(k).map(Subject::Notify),
            ("feeds", "updated") => Some(Subject::FeedsUpdated),
            ("feeds", "sync") => Some(Subject::FeedsSync),
            ("policy", "updated") => Some(Subject::PolicyUpdated),
            ("dlq", st) => StageName::parse(st).map(Subject::DeadLetter),
            ("watch", "poll") => Some(Subject::WatchPoll),
            ("watch", "push") => Some(Subject::WatchPush),
            ("ingest", "request") => Some(Subject::IngestRequest),
            ("ingest", id) if id.starts_with("progress.") && id.len() > 9 => {
                Some(Subject::IngestProgress(id[9..].to_string()))
            }
            ("event", k) if !k.is_empty() => Some(Subject::Event(k.to_string())),
            ("deliver", e) if !e.is_empty() => Some(Subject::Deliver(e.to_string())),
            _ => None,
        }
    }

    /// The subjects a stage consumes.
    pub fn inputs(&self, stage: StageName) -> Vec<Subject> {
        match stage {
            StageName::Fetch => vec![Subject::ScanRequest],
            StageName::Match => vec![Subject::Stage(StageName::Match), Subject::FeedsUpdated],
            StageName::Feeds => vec![Subject::FeedsSync],
            StageName::Watch => vec![
                Subject::WatchPoll,
                Subject::WatchPush,
                Subject::IngestRequest,
            ],
            // A new active bundle re-evaluates every evaluated image.
            StageName::Evaluate => {
                vec![Subject::Stage(StageName::Evaluate), Subject::PolicyUpdated]
            }
            other => vec![Subject::Stage(other)],
        }
    }

    /// Stream-name prefix derived from the subject prefix (`vigil` → `VIGIL`).
    pub fn stream_prefix(&self) -> String {
        self.prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// Request ids become one subject token: anything but `[A-Za-z0-9_-]` is replaced by `_`.
pub fn sanitize_token(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
