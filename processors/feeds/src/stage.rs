//! The feeds stage: sync on request, publish what changed.

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::codec;
use vigil_contracts::watch::{event_kind, EventLevel};
use vigil_contracts::{FailureKind, FeedDelta, FeedSyncRequest, StageName, Subject};
use vigil_runtime::events::{event, EventLog};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::Store;

use crate::config::FeedsConfig;
use crate::lease::FeedLease;
use crate::sync::sync_selected;
use crate::FeedError;

/// Keys per published delta, to keep messages well under the NATS payload limit.
pub const KEYS_PER_MESSAGE: usize = 2000;

pub struct FeedsStage {
    config: FeedsConfig,
    store: Store,
    lease: Option<FeedLease>,
    events: EventLog,
}

impl FeedsStage {
    pub fn new(config: FeedsConfig, store: Store) -> Self {
        FeedsStage {
            events: EventLog::new(store.clone()),
            config,
            store,
            lease: None,
        }
    }

    /// Where `feed_sync_started` / `_completed` / `_failed` events go (stored always;
    /// published at once with a publisher, else with the handler's outputs).
    pub fn with_events(mut self, events: EventLog) -> Self {
        self.events = events;
        self
    }

    /// Sync only while holding the cluster-wide lease: a request arriving while another
    /// instance syncs is acknowledged without syncing (that instance's deltas cover it).
    /// The lease is renewed every third of its TTL during a sync and released after.
    pub fn with_lease(mut self, lease: FeedLease) -> Self {
        self.lease = Some(lease);
        self
    }
}

/// Split a delta into messages of at most [`KEYS_PER_MESSAGE`] keys.
pub fn delta_messages(d: &FeedDelta) -> Result<Vec<Outgoing>, StageError> {
    d.changed
        .chunks(KEYS_PER_MESSAGE)
        .enumerate()
        .map(|(i, chunk)| {
            Outgoing::record(
                Subject::FeedsUpdated,
                format!("feeds:{}:{}:{i}", d.feed, d.sync_id),
                &FeedDelta {
                    feed: d.feed.clone(),
                    sync_id: d.sync_id.clone(),
                    changed: chunk.to_vec(),
                    synced_at: d.synced_at,
                },
            )
        })
        .collect()
}

#[async_trait]
impl Stage for FeedsStage {
    fn name(&self) -> StageName {
        StageName::Feeds
    }

    async fn handle(&self, subject: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        if *subject != Subject::FeedsSync {
            return Err(StageError::new(
                FailureKind::InvalidRequest,
                format!("feeds stage does not consume {subject:?}"),
            ));
        }
        let req: FeedSyncRequest = codec::decode(payload)?;
        let span = tracing::info_span!("feeds_sync", feeds = ?req.feeds);
        let renewer = match &self.lease {
            None => None,
            Some(lease) => {
                let won = lease.try_acquire().await.map_err(|e| {
                    StageError::new(FailureKind::Upstream, format!("feed lease: {e}"))
                })?;
                if !won {
                    tracing::info!("another instance holds the feed-sync lease; not syncing");
                    return Ok(Vec::new());
                }
                let l = lease.clone();
                Some(tokio::spawn(async move {
                    let every = (l.ttl() / 3).max(std::time::Duration::from_millis(100));
                    loop {
                        tokio::time::sleep(every).await;
                        if let Err(e) = l.try_acquire().await {
                            tracing::warn!(error = %e, "feed lease renewal failed");
                        }
                    }
                }))
            }
        };
        let result = self.sync_and_publish(req, span).await;
        if let Some(r) = renewer {
            r.abort();
        }
        if let Some(lease) = &self.lease {
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "feed lease release failed");
            }
        }
        result
    }
}

impl FeedsStage {
    async fn sync_and_publish(
        &self,
        req: FeedSyncRequest,
        span: tracing::Span,
    ) -> Result<Vec<Outgoing>, StageError> {
        async {
            let progress = |m: &str| tracing::info!("{m}");
            let started_at = now_millis();
            let names: Vec<String> = if req.feeds.is_empty() {
                self.config.feeds.iter().map(|f| f.name.clone()).collect()
            } else {
                req.feeds.clone()
            };
            let resource = names.join(",");
            let mut out = Vec::new();
            out.extend(
                self.events
                    .emit(&event(
                        EventLevel::Info,
                        event_kind::FEED_SYNC_STARTED,
                        &resource,
                        format!("feed sync of {resource} started"),
                        "",
                        started_at,
                    ))
                    .await?,
            );
            let report = sync_selected(&self.config, &req.feeds, &self.store, &progress)
                .await
                .map_err(|e| match e {
                    FeedError::UnknownFeed(_) => {
                        StageError::new(FailureKind::InvalidRequest, e.to_string())
                    }
                    e => StageError::new(FailureKind::Upstream, e.to_string()),
                })?;
            let finished_at = now_millis().max(started_at + 1);
            for e in &report.errors {
                out.extend(
                    self.events
                        .emit(&event(
                            EventLevel::Error,
                            event_kind::FEED_SYNC_FAILED,
                            &resource,
                            format!("feed sync failed: {e}"),
                            &e.to_string(),
                            finished_at,
                        ))
                        .await?,
                );
            }
            if report.deltas.is_empty() && !report.errors.is_empty() {
                let msg = report
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let kind = if report
                    .errors
                    .iter()
                    .all(|e| matches!(e, FeedError::Store { .. }))
                {
                    FailureKind::Store
                } else {
                    FailureKind::Upstream
                };
                return Err(StageError::new(kind, msg));
            }
            let changed: usize = report.deltas.iter().map(|d| d.changed.len()).sum();
            out.extend(
                self.events
                    .emit(&event(
                        EventLevel::Info,
                        event_kind::FEED_SYNC_COMPLETED,
                        &resource,
                        format!(
                            "feed sync of {resource} completed: {} feeds changed, {changed} package keys",
                            report.deltas.len()
                        ),
                        "",
                        finished_at,
                    ))
                    .await?,
            );
            for d in &report.deltas {
                out.extend(delta_messages(d)?);
            }
            Ok(out)
        }
        .instrument(span)
        .await
    }
}
