//! The event log (Anchore's events): stored, and published on `<prefix>.event.<kind>`.
//!
//! A stage that runs long (a feed sync) emits its events as they happen through a
//! publisher; without one (the in-process runner) they travel as the handler's outputs.

use sha2::{Digest, Sha256};
use vigil_contracts::watch::{Event, EventLevel, DEFAULT_ACCOUNT};
use vigil_contracts::{Subject, Subjects, UnixMillis};
use vigil_store::Store;

use crate::jetstream;
use crate::stage::{Outgoing, StageError};

/// A content-derived event id: kind, resource, a discriminator and the time.
pub fn event_id(kind: &str, resource: &str, discriminator: &str, at: UnixMillis) -> String {
    let mut h = Sha256::new();
    for part in [kind, resource, discriminator] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(at.to_le_bytes());
    format!("{kind}-{}", hex::encode(&h.finalize()[..12]))
}

/// Build an event of the default account.
pub fn event(
    level: EventLevel,
    kind: &str,
    resource: &str,
    message: impl Into<String>,
    discriminator: &str,
    at: UnixMillis,
) -> Event {
    Event {
        id: event_id(kind, resource, discriminator, at),
        account: DEFAULT_ACCOUNT.into(),
        level,
        kind: kind.into(),
        resource: resource.into(),
        message: message.into(),
        details: Default::default(),
        at,
    }
}

/// Where a stage's events go.
#[derive(Clone)]
pub struct EventLog {
    store: Store,
    publisher: Option<(async_nats::jetstream::Context, Subjects)>,
}

impl EventLog {
    pub fn new(store: Store) -> Self {
        EventLog {
            store,
            publisher: None,
        }
    }

    /// Publish events at once on JetStream instead of returning them as outputs.
    pub fn with_publisher(
        mut self,
        js: async_nats::jetstream::Context,
        subjects: Subjects,
    ) -> Self {
        self.publisher = Some((js, subjects));
        self
    }

    /// Store the event and publish it; without a publisher, the message to publish is
    /// returned for the handler's outputs. A failed publish is logged, not an error: the
    /// stored event is what `vigil event list` shows.
    pub async fn emit(&self, e: &Event) -> Result<Option<Outgoing>, StageError> {
        self.store.put_event(e).await?;
        let out = Outgoing::record(Subject::Event(e.kind.clone()), e.id.clone(), e)?;
        match &self.publisher {
            None => Ok(Some(out)),
            Some((js, subjects)) => {
                if let Err(err) = jetstream::publish(js, subjects, &out).await {
                    tracing::warn!(error = %err, event = e.kind, "publishing an event failed");
                }
                Ok(None)
            }
        }
    }
}
