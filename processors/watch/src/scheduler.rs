//! The watch scheduler: one per cluster (the lease holder) publishes a `WatchPoll` for
//! every active watch that is due. Polls are work-queue messages that any watch replica
//! takes; a watch has at most one poll in flight.

use std::collections::HashMap;
use std::time::Duration;

use vigil_contracts::watch::{WatchPoll, WatchTarget};
use vigil_contracts::{Subject, UnixMillis};
use vigil_runtime::{now_millis, Outgoing};
use vigil_store::Store;

use crate::{poll_msg_id, split_repo, split_tag, Publisher, WatchConfig};

#[derive(Debug, Clone)]
struct InFlight {
    /// `last_checked_at` of the watch when the poll was sent: the poll is answered once
    /// it changes.
    last_checked: Option<UnixMillis>,
    due_at: UnixMillis,
    sent_at: UnixMillis,
    attempt: u32,
}

/// Publishes polls for due watches. See the module docs.
pub struct Scheduler {
    store: Store,
    publisher: Publisher,
    cfg: WatchConfig,
    in_flight: HashMap<(bool, String), InFlight>,
}

/// Why a tick failed (the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("store: {0}")]
    Store(#[from] vigil_store::StoreError),
    #[error("publishing polls: {0}")]
    Publish(#[from] vigil_runtime::jetstream::RunnerError),
    #[error("{0}")]
    Encode(#[from] vigil_runtime::StageError),
}

impl Scheduler {
    pub fn new(store: Store, publisher: Publisher, cfg: WatchConfig) -> Self {
        Scheduler {
            store,
            publisher,
            cfg,
            in_flight: HashMap::new(),
        }
    }

    /// Schedule until `shutdown` becomes true. With a lease, only while holding it
    /// (taken or renewed every tick; its TTL must be several ticks long); without one,
    /// always (a single-process deployment).
    pub async fn run(
        mut self,
        lease: Option<vigil_feeds::FeedLease>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.cfg.scheduler_tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut holding = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Some(l) = &lease {
                let held = match l.try_acquire().await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(error = %e, "watch scheduler lease");
                        false
                    }
                };
                if held != holding {
                    tracing::info!(held, "watch scheduler lease");
                    holding = held;
                }
                if !held {
                    // Another scheduler works; forget what we sent.
                    self.in_flight.clear();
                    continue;
                }
            }
            if let Err(e) = self.tick(now_millis()).await {
                tracing::warn!(error = %e, "watch scheduler tick failed");
            }
        }
        if let Some(l) = &lease {
            let _ = l.release().await;
        }
    }

    /// One pass: publish polls for the watches due at `now`; how many were published.
    pub async fn tick(&mut self, now: UnixMillis) -> Result<usize, ScheduleError> {
        let tags = self.store.list_watched_tags().await?;
        let repos = self.store.list_watched_repos().await?;
        let mut watches: Vec<(
            WatchTarget,
            String,
            Option<UnixMillis>,
            UnixMillis,
            Duration,
        )> = Vec::with_capacity(tags.len() + repos.len());
        for t in tags.into_iter().filter(|t| t.active) {
            let host = split_tag(&t.tag).map(|(h, _, _)| h).unwrap_or("");
            let interval = self.cfg.interval_for(host, t.interval_secs);
            watches.push((
                WatchTarget::Tag,
                t.tag,
                t.last_checked_at,
                t.created_at,
                interval,
            ));
        }
        for r in repos.into_iter().filter(|r| r.active) {
            let host = split_repo(&r.repo).map(|(h, _)| h).unwrap_or("");
            let interval = self.cfg.interval_for(host, r.interval_secs);
            watches.push((
                WatchTarget::Repo,
                r.repo,
                r.last_checked_at,
                r.created_at,
                interval,
            ));
        }
        let mut live = std::collections::HashSet::with_capacity(watches.len());
        let mut outs = Vec::new();
        let mut sent = Vec::new();
        for (target, key, last_checked, created_at, interval) in watches {
            let id = (target == WatchTarget::Repo, key);
            live.insert(id.clone());
            let interval_ms = interval.as_millis() as i64;
            let mut attempt = 0;
            let mut due_at = match last_checked {
                Some(t) => t + interval_ms,
                None => created_at,
            };
            if let Some(f) = self.in_flight.get(&id) {
                if f.last_checked != last_checked {
                    self.in_flight.remove(&id);
                } else if now - f.sent_at < 2 * interval_ms {
                    continue;
                } else {
                    // Not answered within two intervals: ask again.
                    attempt = f.attempt + 1;
                    due_at = f.due_at;
                }
            }
            if due_at > now {
                continue;
            }
            let poll = WatchPoll {
                target,
                key: id.1.clone(),
                due_at,
            };
            outs.push(Outgoing::record(
                Subject::WatchPoll,
                poll_msg_id(target, &id.1, due_at, attempt),
                &poll,
            )?);
            sent.push((
                id,
                InFlight {
                    last_checked,
                    due_at,
                    sent_at: now,
                    attempt,
                },
            ));
        }
        self.in_flight.retain(|k, _| live.contains(k));
        self.publisher.publish_many(&outs).await?;
        let n = sent.len();
        self.in_flight.extend(sent);
        Ok(n)
    }
}
