//! vigil watch stage: watched tags and repositories, registry ingestion and registry push
//! events.
//!
//! * [`WatchStage`] (a [`vigil_runtime::Stage`], `StageName::Watch`) handles
//!   `<p>.watch.poll` (resolve one watched tag / list one watched repository),
//!   `<p>.watch.push` (a push announced by a registry) and `<p>.ingest.request`
//!   (a resumable walk of a registry catalog);
//! * [`Scheduler`] publishes a `WatchPoll` for every due watch (one scheduler per
//!   cluster, under a lease); the polls are work-queue messages, so any watch replica
//!   takes them;
//! * [`serve_push_endpoint`] accepts docker-registry notifications and turns manifest
//!   pushes into `RegistryPush` messages.
//!
//! Every important output (scan requests, tag updates, progress) is published with a
//! content-derived `Nats-Msg-Id`: a redelivered message or a second scheduler publishes
//! nothing twice.

pub mod config;
pub mod push;
pub mod scheduler;
pub mod stage;

use sha2::{Digest, Sha256};
use vigil_contracts::watch::{Event, EventLevel, WatchTarget, DEFAULT_ACCOUNT};
use vigil_contracts::{Subject, Subjects, UnixMillis};
use vigil_runtime::jetstream::{self, RunnerError};
use vigil_runtime::Outgoing;

pub use config::WatchConfig;
pub use push::{serve_push_endpoint, PushError};
pub use scheduler::Scheduler;
pub use stage::WatchStage;

/// Publishes while a handler runs (scan requests and progress of a long ingestion, the
/// outputs of a poll before the store records them), each with its `Nats-Msg-Id`.
#[derive(Clone)]
pub struct Publisher {
    js: async_nats::jetstream::Context,
    subjects: Subjects,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.subjects.prefix())
            .finish()
    }
}

impl Publisher {
    pub fn new(js: async_nats::jetstream::Context, subjects: Subjects) -> Self {
        Publisher { js, subjects }
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub fn context(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// Publish one message and wait for the stream's ack.
    pub async fn publish(&self, out: &Outgoing) -> Result<(), RunnerError> {
        jetstream::publish(&self.js, &self.subjects, out).await
    }

    /// Publish several messages (acks awaited together).
    pub async fn publish_many(&self, outs: &[Outgoing]) -> Result<(), RunnerError> {
        if outs.is_empty() {
            return Ok(());
        }
        jetstream::publish_many(&self.js, &self.subjects, outs, None).await
    }
}

/// Hex of the first 16 bytes of the SHA-256 of `parts` (separated by NUL).
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// `host/repo:tag` → (`host`, `repo`, `tag`); the tag defaults to `latest`.
pub fn split_tag(key: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = key.split_once('/')?;
    let (repo, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], &rest[i + 1..]),
        _ => (rest, "latest"),
    };
    let repo = repo.split('@').next().unwrap_or(repo);
    (!host.is_empty() && !repo.is_empty() && !tag.is_empty()).then_some((host, repo, tag))
}

/// `host/repo` → (`host`, `repo`).
pub fn split_repo(key: &str) -> Option<(&str, &str)> {
    let (host, repo) = key.split_once('/')?;
    (!host.is_empty() && !repo.is_empty()).then_some((host, repo))
}

/// The scan request id of `digest` seen under `key` (a full tag, or `host/repo`):
/// the same for a poll, a push and a redelivery of either.
pub fn scan_request_id(key: &str, digest: &str) -> String {
    format!("watch-{}", short_hash(&[key, digest]))
}

/// The message id of the poll of a watch due at `due_at` (`attempt` > 0: asked again
/// after the first poll was not answered in time).
pub fn poll_msg_id(target: WatchTarget, key: &str, due_at: UnixMillis, attempt: u32) -> String {
    let t = match target {
        WatchTarget::Tag => "tag",
        WatchTarget::Repo => "repo",
    };
    let h = short_hash(&[key]);
    if attempt == 0 {
        format!("poll-{t}-{h}-{due_at}")
    } else {
        format!("poll-{t}-{h}-{due_at}-r{attempt}")
    }
}

/// An event with a content-derived id (`id_parts` and the kind).
pub fn make_event(
    kind: &str,
    level: EventLevel,
    resource: &str,
    message: String,
    details: Vec<(&str, String)>,
    at: UnixMillis,
    id_parts: &[&str],
) -> Event {
    let mut parts = vec![kind, resource];
    parts.extend_from_slice(id_parts);
    Event {
        id: format!("{kind}-{}", short_hash(&parts)),
        account: DEFAULT_ACCOUNT.to_string(),
        level,
        kind: kind.to_string(),
        resource: resource.to_string(),
        message,
        details: details
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        at,
    }
}

/// The message carrying an event (on `<p>.event.<kind>`, msg id = the event id).
pub fn event_outgoing(e: &Event) -> Result<Outgoing, vigil_runtime::StageError> {
    Outgoing::record(Subject::Event(e.kind.clone()), e.id.clone(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys() {
        assert_eq!(
            split_tag("127.0.0.1:5000/r/app:1"),
            Some(("127.0.0.1:5000", "r/app", "1"))
        );
        assert_eq!(split_tag("ghcr.io/a/b"), Some(("ghcr.io", "a/b", "latest")));
        assert_eq!(split_tag("nohost"), None);
        assert_eq!(
            split_repo("127.0.0.1:5000/r/app"),
            Some(("127.0.0.1:5000", "r/app"))
        );
        assert_ne!(scan_request_id("a", "b"), scan_request_id("a", "c"));
        assert_eq!(
            poll_msg_id(WatchTarget::Tag, "k", 5, 0),
            poll_msg_id(WatchTarget::Tag, "k", 5, 0)
        );
    }
}
