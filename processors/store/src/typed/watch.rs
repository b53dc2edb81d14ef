//! Rows of the always-on half, all in the Meta table (no new table for three backends):
//! subscriptions, watched tags and repositories, tag history, removed tags, ingestion
//! progress, the event log, webhook delivery logs and dead deliveries.
//!
//! | partition | sort | value |
//! |---|---|---|
//! | `subscription\|<kind>\|<key>` | account | `Subscription` |
//! | `account-subscriptions\|<account>` | `<kind>\|<key>` | empty (index) |
//! | `watch-tags#NN` (16 shards by tag) | tag | `WatchedTag` |
//! | `watch-repos` | repository | `WatchedRepo` |
//! | `tag-history\|<tag>` | `<seen_at, 13 digits>\|<digest>` | `TagHistoryEntry` (last 100) |
//! | `removed-tags\|<repo>` | `<removed_at>\|<tag>` | `RemovedTag` (last 1,000) |
//! | `ingest` | ingestion id | `IngestProgress` |
//! | `ingest-seen\|<id>#NN` | image digest | empty: queued or skipped by that ingestion |
//! | `events\|<YYYY-MM-DD>` (UTC day) | `<at, 13 digits>\|<id>` | `Event` |
//! | `event-days` | `YYYY-MM-DD` | empty (index of day partitions) |
//! | `delivery\|<notification or event id>` | delivery id | `DeliveryLog` |
//! | `dead-deliveries\|<endpoint>` | delivery id | `DeadDelivery` |
//! | `dead-endpoints` | endpoint | empty (index) |
//!
//! Partitions that grow with time are split by day (events) or bounded (history,
//! removed tags), so no ScyllaDB partition grows without end.

use vigil_contracts::watch::{
    DeadDelivery, DeliveryLog, Event, EventLevel, IngestProgress, RemovedTag, Subscription,
    SubscriptionKind, TagHistoryEntry, WatchedRepo, WatchedTag,
};
use vigil_contracts::UnixMillis;

use super::{enc, image_shard, shard_partition, Store, SHARDS};
use crate::backend::{Table, Write};
use crate::StoreError;

/// Tag history entries kept per tag.
pub const TAG_HISTORY_LIMIT: usize = 100;
/// Removed tags kept per repository.
pub const REMOVED_TAGS_LIMIT: usize = 1_000;

const WATCH_TAGS: &str = "watch-tags";
const WATCH_REPOS: &str = "watch-repos";
const INGEST: &str = "ingest";
const EVENT_DAYS: &str = "event-days";
const DEAD_ENDPOINTS: &str = "dead-endpoints";

fn padded(at: UnixMillis) -> String {
    format!("{:013}", at.max(0))
}

/// The UTC day (`YYYY-MM-DD`) of a time in milliseconds.
pub fn utc_day(at: UnixMillis) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), no time crate needed.
    let days = at.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Which events [`Store::list_events`] returns.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events at or after this time (default: 7 days ago).
    pub since: Option<UnixMillis>,
    /// Only events before this time (default: now).
    pub until: Option<UnixMillis>,
    /// Only events of this level or worse.
    pub level: Option<EventLevel>,
    pub kind: Option<String>,
    /// Only events whose resource contains this text.
    pub resource: Option<String>,
    pub account: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

impl Store {
    // ---- subscriptions -----------------------------------------------------------------

    /// Insert or replace a subscription (and its row in the account's index).
    pub async fn put_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let v = enc(Table::Meta, s)?;
        self.backend
            .write_batch(vec![
                Write::Put {
                    table: Table::Meta,
                    partition: format!("account-subscriptions|{}", s.account),
                    sort: format!("{}|{}", s.kind.as_str(), s.key),
                    value: Vec::new(),
                },
                Write::Put {
                    table: Table::Meta,
                    partition: format!("subscription|{}|{}", s.kind.as_str(), s.key),
                    sort: s.account.clone(),
                    value: v,
                },
            ])
            .await
    }

    pub async fn get_subscription(
        &self,
        account: &str,
        kind: SubscriptionKind,
        key: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        self.get_one(
            Table::Meta,
            &format!("subscription|{}|{key}", kind.as_str()),
            account,
        )
        .await
    }

    /// Remove a subscription; whether there was one.
    pub async fn delete_subscription(
        &self,
        account: &str,
        kind: SubscriptionKind,
        key: &str,
    ) -> Result<bool, StoreError> {
        let existed = self.get_subscription(account, kind, key).await?.is_some();
        self.backend
            .write_batch(vec![
                Write::Delete {
                    table: Table::Meta,
                    partition: format!("subscription|{}|{key}", kind.as_str()),
                    sort: account.to_string(),
                },
                Write::Delete {
                    table: Table::Meta,
                    partition: format!("account-subscriptions|{account}"),
                    sort: format!("{}|{key}", kind.as_str()),
                },
            ])
            .await?;
        Ok(existed)
    }

    /// Every subscription of an account, by type then key.
    pub async fn list_subscriptions(&self, account: &str) -> Result<Vec<Subscription>, StoreError> {
        let keys = self
            .sort_keys_of(Table::Meta, &[format!("account-subscriptions|{account}")])
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let Some((kind, key)) = k.split_once('|') else {
                continue;
            };
            let Some(kind) = SubscriptionKind::parse(kind) else {
                continue;
            };
            if let Some(s) = self.get_subscription(account, kind, key).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The subscriptions of every account to `kind` for `key` (active or not).
    pub async fn subscriptions_for(
        &self,
        kind: SubscriptionKind,
        key: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.list_all(
            Table::Meta,
            &format!("subscription|{}|{key}", kind.as_str()),
        )
        .await
    }

    // ---- watched tags and repositories ---------------------------------------------------

    fn watch_tag_partition(tag: &str) -> String {
        shard_partition(WATCH_TAGS, image_shard(tag))
    }

    pub async fn put_watched_tag(&self, w: &WatchedTag) -> Result<(), StoreError> {
        let v = enc(Table::Meta, w)?;
        self.backend
            .put(Table::Meta, &Self::watch_tag_partition(&w.tag), &w.tag, v)
            .await
    }

    pub async fn get_watched_tag(&self, tag: &str) -> Result<Option<WatchedTag>, StoreError> {
        self.get_one(Table::Meta, &Self::watch_tag_partition(tag), tag)
            .await
    }

    pub async fn delete_watched_tag(&self, tag: &str) -> Result<(), StoreError> {
        self.backend
            .delete(Table::Meta, &Self::watch_tag_partition(tag), tag)
            .await
    }

    /// Every watched tag, by tag.
    pub async fn list_watched_tags(&self) -> Result<Vec<WatchedTag>, StoreError> {
        let lists = futures::future::try_join_all((0..SHARDS).map(|i| {
            let p = shard_partition(WATCH_TAGS, i);
            async move { self.list_all::<WatchedTag>(Table::Meta, &p).await }
        }))
        .await?;
        let mut all: Vec<WatchedTag> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(all)
    }

    pub async fn put_watched_repo(&self, w: &WatchedRepo) -> Result<(), StoreError> {
        let v = enc(Table::Meta, w)?;
        self.backend.put(Table::Meta, WATCH_REPOS, &w.repo, v).await
    }

    pub async fn get_watched_repo(&self, repo: &str) -> Result<Option<WatchedRepo>, StoreError> {
        self.get_one(Table::Meta, WATCH_REPOS, repo).await
    }

    pub async fn delete_watched_repo(&self, repo: &str) -> Result<(), StoreError> {
        self.backend.delete(Table::Meta, WATCH_REPOS, repo).await
    }

    pub async fn list_watched_repos(&self) -> Result<Vec<WatchedRepo>, StoreError> {
        self.list_all(Table::Meta, WATCH_REPOS).await
    }

    // ---- tag history and removed tags ----------------------------------------------------

    /// Record that `tag` pointed at `digest` from `seen_at`; keeps the newest
    /// [`TAG_HISTORY_LIMIT`] entries. The same (time, digest) rewrites the same row.
    pub async fn add_tag_history(&self, e: &TagHistoryEntry) -> Result<(), StoreError> {
        let partition = format!("tag-history|{}", e.tag);
        self.backend
            .put(
                Table::Meta,
                &partition,
                &format!("{}|{}", padded(e.seen_at), e.digest),
                enc(Table::Meta, e)?,
            )
            .await?;
        self.trim(&partition, TAG_HISTORY_LIMIT).await
    }

    /// The digests a tag pointed at, oldest first.
    pub async fn tag_history(&self, tag: &str) -> Result<Vec<TagHistoryEntry>, StoreError> {
        self.list_all(Table::Meta, &format!("tag-history|{tag}"))
            .await
    }

    pub async fn add_removed_tag(&self, r: &RemovedTag) -> Result<(), StoreError> {
        let partition = format!("removed-tags|{}", r.repo);
        self.backend
            .put(
                Table::Meta,
                &partition,
                &format!("{}|{}", padded(r.removed_at), r.tag),
                enc(Table::Meta, r)?,
            )
            .await?;
        self.trim(&partition, REMOVED_TAGS_LIMIT).await
    }

    /// Tags removed from a watched repository, oldest first.
    pub async fn removed_tags(&self, repo: &str) -> Result<Vec<RemovedTag>, StoreError> {
        self.list_all(Table::Meta, &format!("removed-tags|{repo}"))
            .await
    }

    /// Delete the oldest rows of a time-ordered partition beyond `keep`.
    async fn trim(&self, partition: &str, keep: usize) -> Result<(), StoreError> {
        let keys = self
            .sort_keys_of(Table::Meta, &[partition.to_string()])
            .await?;
        if keys.len() <= keep {
            return Ok(());
        }
        let excess = keys.len() - keep;
        let writes = keys
            .into_iter()
            .take(excess)
            .map(|sort| Write::Delete {
                table: Table::Meta,
                partition: partition.to_string(),
                sort,
            })
            .collect();
        self.backend.write_batch(writes).await
    }

    // ---- ingestion -------------------------------------------------------------------

    pub async fn put_ingest_progress(&self, p: &IngestProgress) -> Result<(), StoreError> {
        let v = enc(Table::Meta, p)?;
        self.backend.put(Table::Meta, INGEST, &p.id, v).await
    }

    pub async fn get_ingest_progress(
        &self,
        id: &str,
    ) -> Result<Option<IngestProgress>, StoreError> {
        self.get_one(Table::Meta, INGEST, id).await
    }

    pub async fn list_ingest_progress(&self) -> Result<Vec<IngestProgress>, StoreError> {
        self.list_all(Table::Meta, INGEST).await
    }

    /// Mark `digest` as handled by ingestion `id`; true only for the first call.
    pub async fn mark_ingested(&self, id: &str, digest: &str) -> Result<bool, StoreError> {
        self.backend
            .put_if_absent(
                Table::Meta,
                &shard_partition(&format!("ingest-seen|{id}"), image_shard(digest)),
                digest,
                Vec::new(),
            )
            .await
    }

    /// Whether ingestion `id` handled `digest` already.
    pub async fn was_ingested(&self, id: &str, digest: &str) -> Result<bool, StoreError> {
        Ok(self
            .backend
            .get(
                Table::Meta,
                &shard_partition(&format!("ingest-seen|{id}"), image_shard(digest)),
                digest,
            )
            .await?
            .is_some())
    }

    // ---- events ------------------------------------------------------------------------

    /// Store an event (the same id and time rewrite the same row).
    pub async fn put_event(&self, e: &Event) -> Result<(), StoreError> {
        let day = utc_day(e.at);
        self.backend
            .put(Table::Meta, EVENT_DAYS, &day, Vec::new())
            .await?;
        self.backend
            .put(
                Table::Meta,
                &format!("events|{day}"),
                &format!("{}|{}", padded(e.at), e.id),
                enc(Table::Meta, e)?,
            )
            .await
    }

    /// Events matching `f`, newest first.
    pub async fn list_events(
        &self,
        f: &EventFilter,
        now: UnixMillis,
    ) -> Result<Vec<Event>, StoreError> {
        let until = f.until.unwrap_or(now + 1);
        let since = f.since.unwrap_or(now - 7 * 86_400_000);
        let limit = f.limit.unwrap_or(100);
        let (first, last) = (utc_day(since), utc_day(until));
        let mut days = self
            .sort_keys_of(Table::Meta, &[EVENT_DAYS.to_string()])
            .await?;
        days.retain(|d| *d >= first && *d <= last);
        days.reverse();
        let mut out = Vec::new();
        for day in days {
            let mut events: Vec<Event> =
                self.list_all(Table::Meta, &format!("events|{day}")).await?;
            events.reverse();
            for e in events {
                if e.at < since || e.at >= until {
                    continue;
                }
                if f.level.is_some_and(|l| e.level < l)
                    || f.kind.as_ref().is_some_and(|k| *k != e.kind)
                    || f.account.as_ref().is_some_and(|a| *a != e.account)
                    || f.resource
                        .as_ref()
                        .is_some_and(|r| !e.resource.contains(r.as_str()))
                {
                    continue;
                }
                out.push(e);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Delete the events of days before `before` (whole days); how many days went.
    pub async fn prune_events(&self, before: UnixMillis) -> Result<usize, StoreError> {
        let cutoff = utc_day(before);
        let days = self
            .sort_keys_of(Table::Meta, &[EVENT_DAYS.to_string()])
            .await?;
        let mut pruned = 0;
        for day in days.into_iter().filter(|d| *d < cutoff) {
            let partition = format!("events|{day}");
            let keys = self
                .sort_keys_of(Table::Meta, std::slice::from_ref(&partition))
                .await?;
            for chunk in keys.chunks(500) {
                self.backend
                    .write_batch(
                        chunk
                            .iter()
                            .map(|sort| Write::Delete {
                                table: Table::Meta,
                                partition: partition.clone(),
                                sort: sort.clone(),
                            })
                            .collect(),
                    )
                    .await?;
            }
            self.backend.delete(Table::Meta, EVENT_DAYS, &day).await?;
            pruned += 1;
        }
        Ok(pruned)
    }

    // ---- deliveries --------------------------------------------------------------------

    pub async fn put_delivery_log(&self, l: &DeliveryLog) -> Result<(), StoreError> {
        let v = enc(Table::Meta, l)?;
        self.backend
            .put(
                Table::Meta,
                &format!("delivery|{}", l.body_id),
                &l.delivery_id,
                v,
            )
            .await
    }

    /// The delivery logs of one notification (or event), one per endpoint.
    pub async fn delivery_logs(&self, body_id: &str) -> Result<Vec<DeliveryLog>, StoreError> {
        self.list_all(Table::Meta, &format!("delivery|{body_id}"))
            .await
    }

    pub async fn get_delivery_log(
        &self,
        body_id: &str,
        delivery_id: &str,
    ) -> Result<Option<DeliveryLog>, StoreError> {
        self.get_one(Table::Meta, &format!("delivery|{body_id}"), delivery_id)
            .await
    }

    pub async fn put_dead_delivery(&self, d: &DeadDelivery) -> Result<(), StoreError> {
        self.backend
            .put(Table::Meta, DEAD_ENDPOINTS, &d.task.endpoint, Vec::new())
            .await?;
        self.backend
            .put(
                Table::Meta,
                &format!("dead-deliveries|{}", d.task.endpoint),
                &d.task.delivery_id(),
                enc(Table::Meta, d)?,
            )
            .await
    }

    /// Dead deliveries of one endpoint, or of all when `None`.
    pub async fn list_dead_deliveries(
        &self,
        endpoint: Option<&str>,
    ) -> Result<Vec<DeadDelivery>, StoreError> {
        let endpoints = match endpoint {
            Some(e) => vec![e.to_string()],
            None => {
                self.sort_keys_of(Table::Meta, &[DEAD_ENDPOINTS.to_string()])
                    .await?
            }
        };
        let mut out = Vec::new();
        for e in endpoints {
            out.extend(
                self.list_all::<DeadDelivery>(Table::Meta, &format!("dead-deliveries|{e}"))
                    .await?,
            );
        }
        out.sort_by_key(|d| d.given_up_at);
        Ok(out)
    }

    pub async fn delete_dead_delivery(
        &self,
        endpoint: &str,
        delivery_id: &str,
    ) -> Result<(), StoreError> {
        self.backend
            .delete(
                Table::Meta,
                &format!("dead-deliveries|{endpoint}"),
                delivery_id,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::utc_day;

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_796_688_000_000 - 1), "2026-12-07");
        assert_eq!(utc_day(1_796_688_000_000), "2026-12-08");
    }
}
