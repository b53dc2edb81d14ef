//! The always-on half: watched tags and repositories, registry ingestion, subscriptions,
//! webhook deliveries and the event log. Records only; no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{Notification, UnixMillis};

macro_rules! record {
    ($t:ty, $kind:literal) => {
        impl crate::codec::Record for $t {
            const KIND: &'static str = $kind;
        }
    };
}

/// The account every record belongs to until accounts exist (the API issue adds them).
pub const DEFAULT_ACCOUNT: &str = "admin";

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_string()
}

/// Anchore's five subscription types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionKind {
    TagUpdate,
    AnalysisUpdate,
    VulnUpdate,
    PolicyEval,
    RepoUpdate,
}

impl SubscriptionKind {
    pub const ALL: [SubscriptionKind; 5] = [
        SubscriptionKind::TagUpdate,
        SubscriptionKind::AnalysisUpdate,
        SubscriptionKind::VulnUpdate,
        SubscriptionKind::PolicyEval,
        SubscriptionKind::RepoUpdate,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SubscriptionKind::TagUpdate => "tag_update",
            SubscriptionKind::AnalysisUpdate => "analysis_update",
            SubscriptionKind::VulnUpdate => "vuln_update",
            SubscriptionKind::PolicyEval => "policy_eval",
            SubscriptionKind::RepoUpdate => "repo_update",
        }
    }

    pub fn parse(s: &str) -> Option<SubscriptionKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The subscription types `vigil watch add --autosubscribe` (Anchore's
    /// `image add`) turns on for a tag. `repo_update` is keyed by repository instead.
    pub const FOR_TAGS: [SubscriptionKind; 4] = [
        SubscriptionKind::TagUpdate,
        SubscriptionKind::AnalysisUpdate,
        SubscriptionKind::VulnUpdate,
        SubscriptionKind::PolicyEval,
    ];
}

/// One subscription: an account hears about `kind` for `key` while it is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    #[serde(default = "default_account")]
    pub account: String,
    pub kind: SubscriptionKind,
    /// The full tag (`registry/repo:tag`), or `registry/repo` for `repo_update`.
    pub key: String,
    pub active: bool,
    /// Anchore's `{"digests": [...]}` value: when not empty, only notifications about one
    /// of these image digests match.
    #[serde(default)]
    pub digests: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}
record!(Subscription, "subscription");

impl Subscription {
    /// Whether a notification about `image_digest` matches this subscription.
    pub fn matches_digest(&self, image_digest: Option<&str>) -> bool {
        self.active
            && (self.digests.is_empty()
                || image_digest.is_some_and(|d| self.digests.iter().any(|x| x == d)))
    }
}

/// A tag the watch stage resolves on an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedTag {
    #[serde(default = "default_account")]
    pub account: String,
    /// `registry/repo:tag`, normalised.
    pub tag: String,
    /// Poll interval; `None`: the registry's, else the default (5 minutes).
    #[serde(default)]
    pub interval_secs: Option<u64>,
    pub active: bool,
    /// Added by a repository watch (removed again when the tag disappears from it).
    #[serde(default)]
    pub from_repo: Option<String>,
    /// The digest the tag pointed at when last resolved.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub last_checked_at: Option<UnixMillis>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Polls in a row that failed.
    #[serde(default)]
    pub failures: u32,
    pub created_at: UnixMillis,
}
record!(WatchedTag, "watched_tag");

/// A repository whose tag list the watch stage follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedRepo {
    #[serde(default = "default_account")]
    pub account: String,
    /// `registry/repo`.
    pub repo: String,
    #[serde(default)]
    pub interval_secs: Option<u64>,
    pub active: bool,
    /// Subscribe new tags (the tag types) when they are added.
    #[serde(default)]
    pub autosubscribe: bool,
    /// Only tags matching this regex are added (all when `None`).
    #[serde(default)]
    pub tag_filter: Option<String>,
    /// The tags seen at the last listing (bounded by the watch stage's tag limit).
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub last_checked_at: Option<UnixMillis>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub failures: u32,
    pub created_at: UnixMillis,
}
record!(WatchedRepo, "watched_repo");

/// One digest a tag pointed at, for the tag history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagHistoryEntry {
    pub tag: String,
    pub digest: String,
    /// When the watch first saw the tag at this digest.
    pub seen_at: UnixMillis,
}
record!(TagHistoryEntry, "tag_history_entry");

/// A tag removed from a watched repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedTag {
    pub repo: String,
    pub tag: String,
    #[serde(default)]
    pub last_digest: Option<String>,
    pub removed_at: UnixMillis,
}
record!(RemovedTag, "removed_tag");

/// What a [`WatchPoll`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchTarget {
    Tag,
    Repo,
}

/// `<prefix>.watch.poll`: resolve one watched tag or list one watched repository now.
/// Published by the watch scheduler (one per cluster, under a lease) when a watch is
/// due; a work-queue message, so one watch replica handles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchPoll {
    pub target: WatchTarget,
    /// The tag or the repository.
    pub key: String,
    /// When it was due (also part of the message id: one poll per due time).
    pub due_at: UnixMillis,
}
record!(WatchPoll, "watch_poll");

/// `<prefix>.watch.push`: a push the registry announced (its notification endpoint),
/// accepted by the watch stage's HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryPush {
    /// `host:port` as vigil reaches the registry.
    pub registry: String,
    pub repository: String,
    #[serde(default)]
    pub tag: Option<String>,
    pub digest: String,
    /// The registry's event id.
    pub event_id: String,
    pub received_at: UnixMillis,
}
record!(RegistryPush, "registry_push");

/// Which tags of each repository an ingestion scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum TagSelection {
    /// `latest` only.
    Latest,
    All,
    /// Tags matching a regex.
    Regex(String),
}

/// `<prefix>.ingest.request`: walk a registry (or a prefix of it) and scan what is new.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRequest {
    /// Stable id: the same id continues the same ingestion (resumable).
    pub id: String,
    #[serde(default = "default_account")]
    pub account: String,
    /// `host[:port]`.
    pub registry: String,
    /// Repository prefix (`team/`), empty for the whole catalog.
    #[serde(default)]
    pub prefix: String,
    pub tags: TagSelection,
    #[serde(default)]
    pub max_images: Option<u64>,
    /// Registry requests per second (token bucket); `None`: the configured default.
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    pub requested_at: UnixMillis,
}
record!(IngestRequest, "ingest_request");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestState {
    Running,
    Done,
    Failed,
}

/// `<prefix>.ingest.progress.<id>` and the store: how far an ingestion is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestProgress {
    pub id: String,
    pub registry: String,
    #[serde(default)]
    pub prefix: String,
    pub state: IngestState,
    /// Repositories listed so far (the catalog walk).
    pub repositories: u64,
    /// Repositories whose tags are all handled.
    pub repositories_done: u64,
    /// The last repository whose tags are all handled: a restart resumes after it.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Whether the catalog walk has reached its end.
    #[serde(default)]
    pub catalog_complete: bool,
    /// Images (digests) sent to scan.
    pub queued: u64,
    /// Images skipped because they were analysed before (or queued by this ingestion).
    pub skipped: u64,
    /// Tags that could not be resolved, repositories whose tags could not be listed.
    pub errors: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    pub started_at: UnixMillis,
    pub updated_at: UnixMillis,
}
record!(IngestProgress, "ingest_progress");

/// `<prefix>.stage.notify`: the watch saw a tag move to a new digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagUpdated {
    #[serde(default = "default_account")]
    pub account: String,
    pub tag: String,
    /// The digests the tag pointed at before (newest first; empty for a new tag).
    pub previous_digests: Vec<String>,
    pub digest: String,
    pub at: UnixMillis,
}
record!(TagUpdated, "tag_updated");

/// `<prefix>.stage.notify`: a watched repository gained or lost tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoUpdated {
    #[serde(default = "default_account")]
    pub account: String,
    pub repo: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub at: UnixMillis,
}
record!(RepoUpdated, "repo_updated");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventLevel {
    Info,
    Warn,
    Error,
}

impl EventLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventLevel::Info => "info",
            EventLevel::Warn => "warn",
            EventLevel::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<EventLevel> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(EventLevel::Info),
            "warn" | "warning" => Some(EventLevel::Warn),
            "error" => Some(EventLevel::Error),
            _ => None,
        }
    }
}

/// Event types (Anchore's event log).
pub mod event_kind {
    pub const ANALYSIS_FAILED: &str = "analysis_failed";
    pub const REGISTRY_LOOKUP_FAILED: &str = "registry_lookup_failed";
    pub const LIST_TAGS_FAILED: &str = "list_tags_failed";
    pub const FEED_SYNC_STARTED: &str = "feed_sync_started";
    pub const FEED_SYNC_COMPLETED: &str = "feed_sync_completed";
    pub const FEED_SYNC_FAILED: &str = "feed_sync_failed";
    pub const WEBHOOK_GIVEN_UP: &str = "webhook_given_up";
    pub const PUSH_EVENT_REJECTED: &str = "push_event_rejected";
    pub const INGEST_COMPLETED: &str = "ingest_completed";
}

/// `<prefix>.event.<kind>` and the store: something operators should see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Content-derived where the event is (so a redelivery stores it once).
    pub id: String,
    #[serde(default = "default_account")]
    pub account: String,
    pub level: EventLevel,
    /// One of [`event_kind`].
    pub kind: String,
    /// What it is about: a tag, a digest, a feed, an endpoint.
    pub resource: String,
    pub message: String,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    pub at: UnixMillis,
}
record!(Event, "event");

/// What a webhook delivery carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum DeliveryBody {
    Notification(Notification),
    Event(Event),
}

impl DeliveryBody {
    /// The stable id receivers de-duplicate by.
    pub fn id(&self) -> &str {
        match self {
            DeliveryBody::Notification(n) => &n.id,
            DeliveryBody::Event(e) => &e.id,
        }
    }

    /// `tag_update`, … or `event`.
    pub fn type_name(&self) -> &str {
        match self {
            DeliveryBody::Notification(n) => n.kind.as_str(),
            DeliveryBody::Event(_) => "event",
        }
    }

    /// What ordering is kept per: the tag (subscription key) or the event's resource.
    pub fn order_key(&self) -> &str {
        match self {
            DeliveryBody::Notification(n) => &n.subscription_key,
            DeliveryBody::Event(e) => &e.resource,
        }
    }
}

/// `<prefix>.deliver.<endpoint>`: one webhook delivery to make, queued durably per
/// endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTask {
    /// The configured webhook: `general`, a notification type, or `event`.
    pub endpoint: String,
    #[serde(default = "default_account")]
    pub account: String,
    pub body: DeliveryBody,
    pub queued_at: UnixMillis,
}
record!(DeliveryTask, "delivery_task");

impl DeliveryTask {
    /// The message id (and store key) of this delivery.
    pub fn delivery_id(&self) -> String {
        format!("{}-{}-{}", self.endpoint, self.account, self.body.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    DeadLettered,
}

/// One try of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub at: UnixMillis,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
    pub took_ms: u64,
}

/// The delivery log of one notification (or event) to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryLog {
    pub delivery_id: String,
    pub endpoint: String,
    pub account: String,
    /// The notification or event id.
    pub body_id: String,
    pub body_type: String,
    /// The URL after template expansion (credentials never included).
    pub url: String,
    pub state: DeliveryState,
    /// The most recent attempts (at most 50 kept), oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// Attempts made in all (also those no longer kept).
    pub attempt_count: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    pub first_attempt_at: UnixMillis,
    pub updated_at: UnixMillis,
}
record!(DeliveryLog, "delivery_log");

/// A delivery given up on: kept in the store until replayed or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadDelivery {
    pub task: DeliveryTask,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    pub given_up_at: UnixMillis,
}
record!(DeadDelivery, "dead_delivery");
