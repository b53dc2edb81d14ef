//! The watch stage's handlers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use regex::Regex;
use vigil_contracts::codec;
use vigil_contracts::watch::{
    event_kind, Event, EventLevel, IngestProgress, IngestRequest, IngestState, RegistryPush,
    RemovedTag, RepoUpdated, Subscription, SubscriptionKind, TagHistoryEntry, TagSelection,
    TagUpdated, WatchPoll, WatchTarget, WatchedRepo, WatchedTag,
};
use vigil_contracts::{FailureKind, RequestContext, ScanRequest, StageName, Subject, UnixMillis};
use vigil_registry::{HeadResult, RateLimiter, RegistryClient};
use vigil_runtime::{now_millis, Outgoing, Stage, StageError};
use vigil_store::Store;

use crate::{
    event_outgoing, make_event, poll_msg_id, scan_request_id, short_hash, split_repo, split_tag,
    Publisher, WatchConfig,
};

/// Failure events of one watch with the same error are emitted at most once per this
/// bucket (and whenever the error changes).
const EVENT_BUCKET_MS: i64 = 3_600_000;
/// Ingestion progress is published at most this often (and at the end).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The watch stage. See the crate docs.
pub struct WatchStage {
    store: Store,
    client: Arc<RegistryClient>,
    cfg: WatchConfig,
    publisher: Option<Publisher>,
    pacers: Mutex<HashMap<String, Arc<RateLimiter>>>,
}

fn store_err(e: vigil_store::StoreError) -> StageError {
    StageError::from(e)
}

fn publish_err(e: vigil_runtime::jetstream::RunnerError) -> StageError {
    StageError::new(FailureKind::Upstream, format!("publishing: {e}"))
}

impl WatchStage {
    pub fn new(
        store: Store,
        client: Arc<RegistryClient>,
        cfg: WatchConfig,
        publisher: Option<Publisher>,
    ) -> Self {
        WatchStage {
            store,
            client,
            cfg,
            publisher,
            pacers: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &WatchConfig {
        &self.cfg
    }

    pub fn client(&self) -> &Arc<RegistryClient> {
        &self.client
    }

    /// Publish `outs` now when there is a publisher (so that they are out before the
    /// store records what they announce); else hand them back as the handler's outputs.
    async fn emit(&self, outs: Vec<Outgoing>, ret: &mut Vec<Outgoing>) -> Result<(), StageError> {
        match &self.publisher {
            Some(p) => p.publish_many(&outs).await.map_err(publish_err),
            None => {
                ret.extend(outs);
                Ok(())
            }
        }
    }

    async fn event(&self, e: &Event, ret: &mut Vec<Outgoing>) -> Result<(), StageError> {
        self.store.put_event(e).await.map_err(store_err)?;
        let out = event_outgoing(e)?;
        match &self.publisher {
            // Events are not worth failing a message for.
            Some(p) => {
                if let Err(err) = p.publish(&out).await {
                    tracing::warn!(error = %err, event = %e.id, "publishing an event failed");
                }
            }
            None => ret.push(out),
        }
        Ok(())
    }

    fn pacer(&self, registry: &str) -> Arc<RateLimiter> {
        let mut m = self.pacers.lock().expect("pacer lock");
        m.entry(registry.to_string())
            .or_insert_with(|| {
                let rate = self.cfg.scan_rate_per_sec;
                Arc::new(RateLimiter::new(rate, rate.ceil().max(1.0) as u32))
            })
            .clone()
    }

    // ---- tags ------------------------------------------------------------------------

    async fn poll_tag(&self, poll: &WatchPoll) -> Result<Vec<Outgoing>, StageError> {
        let Some(mut w) = self.store.get_watched_tag(&poll.key).await? else {
            return Ok(Vec::new());
        };
        if !w.active {
            return Ok(Vec::new());
        }
        let mut ret = Vec::new();
        let now = now_millis();
        let Some((host, repo, tag)) = split_tag(&w.tag) else {
            let msg = format!("not a tag: {}", w.tag);
            self.tag_failed(&mut w, msg, poll.due_at, now, &mut ret)
                .await?;
            return Ok(ret);
        };
        let (host, repo, tag) = (host.to_string(), repo.to_string(), tag.to_string());
        let got = self
            .client
            .head_manifest(&host, &repo, &tag, w.digest.as_deref())
            .await;
        match got {
            Ok(HeadResult::Unchanged) => self.tag_ok(&mut w, now).await?,
            Ok(HeadResult::Digest(d)) if w.digest.as_deref() == Some(d.as_str()) => {
                self.tag_ok(&mut w, now).await?
            }
            Ok(HeadResult::Digest(d)) => {
                self.tag_moved(&mut w, &host, &repo, &tag, &d, now, &mut ret)
                    .await?;
                w.last_checked_at = Some(now);
                w.failures = 0;
                w.last_error = None;
                self.store.put_watched_tag(&w).await?;
            }
            Ok(HeadResult::NotFound) => {
                let msg = format!("{host}/{repo}:{tag}: tag not found");
                self.tag_failed(&mut w, msg, poll.due_at, now, &mut ret)
                    .await?
            }
            Err(e) => {
                self.tag_failed(&mut w, e.to_string(), poll.due_at, now, &mut ret)
                    .await?
            }
        }
        Ok(ret)
    }

    async fn tag_ok(&self, w: &mut WatchedTag, now: UnixMillis) -> Result<(), StageError> {
        w.last_checked_at = Some(now);
        w.failures = 0;
        w.last_error = None;
        self.store.put_watched_tag(w).await?;
        Ok(())
    }

    async fn tag_failed(
        &self,
        w: &mut WatchedTag,
        error: String,
        due_at: UnixMillis,
        now: UnixMillis,
        ret: &mut Vec<Outgoing>,
    ) -> Result<(), StageError> {
        let f = Failing {
            kind: event_kind::REGISTRY_LOOKUP_FAILED,
            resource: &w.tag,
            doing: "resolving",
            failures: w.failures,
            last_error: w.last_error.as_deref(),
            last_checked_at: w.last_checked_at,
        };
        if let Some(e) = f.event(&error, due_at) {
            self.event(&e, ret).await?;
        }
        w.failures = w.failures.saturating_add(1);
        w.last_error = Some(error);
        w.last_checked_at = Some(now);
        self.store.put_watched_tag(w).await?;
        Ok(())
    }

    /// The tag points at a new digest: history, scan request and `TagUpdated` (published
    /// before the watched tag is updated, so a crash in between repeats them under the
    /// same message ids).
    #[allow(clippy::too_many_arguments)]
    async fn tag_moved(
        &self,
        w: &mut WatchedTag,
        host: &str,
        repo: &str,
        tag: &str,
        digest: &str,
        now: UnixMillis,
        ret: &mut Vec<Outgoing>,
    ) -> Result<(), StageError> {
        let history = self.store.tag_history(&w.tag).await?;
        let mut previous: Vec<String> = Vec::new();
        let mut seen_at = now;
        let latest_is_this = history.last().is_some_and(|h| h.digest == digest);
        if latest_is_this {
            // A repeat of this change (redelivery): same time as recorded.
            seen_at = history.last().map(|h| h.seen_at).unwrap_or(now);
        }
        for h in history.iter().rev() {
            if h.digest != digest && !previous.contains(&h.digest) {
                previous.push(h.digest.clone());
            }
        }
        if let Some(d) = &w.digest {
            if d != digest && !previous.contains(d) {
                previous.insert(0, d.clone());
            }
        }
        if !latest_is_this {
            self.store
                .add_tag_history(&TagHistoryEntry {
                    tag: w.tag.clone(),
                    digest: digest.to_string(),
                    seen_at,
                })
                .await?;
        }
        // The time the move was first seen is part of both ids: a tag that moves back to a
        // digest it had (A → B → A) is a new move, not a duplicate of the first one.
        let seen = seen_at.to_string();
        let request_id = format!("watch-{}", short_hash(&[&w.tag, digest, &seen]));
        let mut rc =
            RequestContext::new(request_id.clone(), format!("{host}/{repo}:{tag}@{digest}"));
        rc.submitted_at = seen_at;
        let scan = ScanRequest {
            request: rc,
            force: false,
            sbom: None,
        };
        let updated = TagUpdated {
            account: w.account.clone(),
            tag: w.tag.clone(),
            previous_digests: previous,
            digest: digest.to_string(),
            at: seen_at,
        };
        let outs = vec![
            Outgoing::record(Subject::ScanRequest, request_id.clone(), &scan)?,
            Outgoing::record(
                Subject::Stage(StageName::Notify),
                format!("tag-updated-{}", short_hash(&[&w.tag, digest, &seen])),
                &updated,
            )?,
        ];
        self.emit(outs, ret).await?;
        w.digest = Some(digest.to_string());
        Ok(())
    }

    // ---- repositories ----------------------------------------------------------------

    async fn poll_repo(&self, poll: &WatchPoll) -> Result<Vec<Outgoing>, StageError> {
        let Some(mut r) = self.store.get_watched_repo(&poll.key).await? else {
            return Ok(Vec::new());
        };
        if !r.active {
            return Ok(Vec::new());
        }
        let mut ret = Vec::new();
        let now = now_millis();
        let Some((host, repo)) = split_repo(&r.repo) else {
            let msg = format!("not a repository: {}", r.repo);
            self.repo_failed(&mut r, msg, poll.due_at, now, &mut ret)
                .await?;
            return Ok(ret);
        };
        let (host, repo) = (host.to_string(), repo.to_string());
        let filter = match r.tag_filter.as_deref().map(Regex::new).transpose() {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("tag filter of {}: {e}", r.repo);
                self.repo_failed(&mut r, msg, poll.due_at, now, &mut ret)
                    .await?;
                return Ok(ret);
            }
        };
        let tags = match self.client.list_tags(&host, &repo).await {
            Ok(t) if t.len() > self.cfg.max_tags_per_repo => Err(format!(
                "{host}/{repo}: more than {} tags",
                self.cfg.max_tags_per_repo
            )),
            Ok(t) => Ok(t),
            Err(e) => Err(e.to_string()),
        };
        let tags = match tags {
            Ok(t) => t,
            Err(msg) => {
                self.repo_failed(&mut r, msg, poll.due_at, now, &mut ret)
                    .await?;
                return Ok(ret);
            }
        };
        let current: BTreeSet<String> = tags
            .into_iter()
            .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(t)))
            .collect();
        let old: BTreeSet<String> = r.tags.iter().cloned().collect();
        let added: Vec<String> = current.difference(&old).cloned().collect();
        let removed: Vec<String> = old.difference(&current).cloned().collect();
        let mut outs = Vec::new();
        for t in &added {
            let key = format!("{host}/{repo}:{t}");
            let w = match self.store.get_watched_tag(&key).await? {
                Some(w) => w,
                None => {
                    let w = WatchedTag {
                        account: r.account.clone(),
                        tag: key.clone(),
                        interval_secs: r.interval_secs,
                        active: true,
                        from_repo: Some(r.repo.clone()),
                        digest: None,
                        last_checked_at: None,
                        last_error: None,
                        failures: 0,
                        created_at: now,
                    };
                    self.store.put_watched_tag(&w).await?;
                    w
                }
            };
            if w.active && w.last_checked_at.is_none() {
                // Due now; the scheduler's poll of it has the same message id.
                let poll = WatchPoll {
                    target: WatchTarget::Tag,
                    key: key.clone(),
                    due_at: w.created_at,
                };
                outs.push(Outgoing::record(
                    Subject::WatchPoll,
                    poll_msg_id(WatchTarget::Tag, &key, w.created_at, 0),
                    &poll,
                )?);
            }
            if r.autosubscribe {
                for kind in SubscriptionKind::FOR_TAGS {
                    if self
                        .store
                        .get_subscription(&r.account, kind, &key)
                        .await?
                        .is_none()
                    {
                        self.store
                            .put_subscription(&Subscription {
                                account: r.account.clone(),
                                kind,
                                key: key.clone(),
                                active: true,
                                digests: Vec::new(),
                                created_at: now,
                                updated_at: now,
                            })
                            .await?;
                    }
                }
            }
        }
        for t in &removed {
            let key = format!("{host}/{repo}:{t}");
            let w = self.store.get_watched_tag(&key).await?;
            self.store
                .add_removed_tag(&RemovedTag {
                    repo: r.repo.clone(),
                    tag: t.clone(),
                    last_digest: w.as_ref().and_then(|w| w.digest.clone()),
                    removed_at: now,
                })
                .await?;
            if w.is_some_and(|w| w.from_repo.as_deref() == Some(r.repo.as_str())) {
                self.store.delete_watched_tag(&key).await?;
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            let update = RepoUpdated {
                account: r.account.clone(),
                repo: r.repo.clone(),
                added: added.clone(),
                removed: removed.clone(),
                at: now,
            };
            let mut parts: Vec<&str> = vec![&r.repo, "+"];
            parts.extend(added.iter().map(String::as_str));
            parts.push("-");
            parts.extend(removed.iter().map(String::as_str));
            outs.push(Outgoing::record(
                Subject::Stage(StageName::Notify),
                format!("repo-updated-{}", short_hash(&parts)),
                &update,
            )?);
        }
        self.emit(outs, &mut ret).await?;
        r.tags = current.into_iter().collect();
        r.last_checked_at = Some(now);
        r.failures = 0;
        r.last_error = None;
        self.store.put_watched_repo(&r).await?;
        Ok(ret)
    }

    async fn repo_failed(
        &self,
        r: &mut WatchedRepo,
        error: String,
        due_at: UnixMillis,
        now: UnixMillis,
        ret: &mut Vec<Outgoing>,
    ) -> Result<(), StageError> {
        let f = Failing {
            kind: event_kind::LIST_TAGS_FAILED,
            resource: &r.repo,
            doing: "listing the tags of",
            failures: r.failures,
            last_error: r.last_error.as_deref(),
            last_checked_at: r.last_checked_at,
        };
        if let Some(e) = f.event(&error, due_at) {
            self.event(&e, ret).await?;
        }
        r.failures = r.failures.saturating_add(1);
        r.last_error = Some(error);
        r.last_checked_at = Some(now);
        self.store.put_watched_repo(r).await?;
        Ok(())
    }

    // ---- pushes ----------------------------------------------------------------------

    async fn push(&self, p: &RegistryPush) -> Result<Vec<Outgoing>, StageError> {
        let mut ret = Vec::new();
        let base = format!("{}/{}", p.registry, p.repository);
        let Some(tag) = p.tag.as_deref().filter(|t| !t.is_empty()) else {
            let request_id = scan_request_id(&base, &p.digest);
            let mut rc = RequestContext::new(request_id.clone(), format!("{base}@{}", p.digest));
            rc.submitted_at = p.received_at;
            let scan = ScanRequest {
                request: rc,
                force: false,
                sbom: None,
            };
            ret.push(Outgoing::record(Subject::ScanRequest, request_id, &scan)?);
            return Ok(ret);
        };
        let key = format!("{base}:{tag}");
        match self.store.get_watched_tag(&key).await? {
            Some(mut w) if w.active && w.digest.as_deref() != Some(p.digest.as_str()) => {
                // As a poll that found the new digest.
                self.tag_moved(
                    &mut w,
                    &p.registry,
                    &p.repository,
                    tag,
                    &p.digest,
                    now_millis(),
                    &mut ret,
                )
                .await?;
                w.failures = 0;
                w.last_error = None;
                self.store.put_watched_tag(&w).await?;
            }
            _ => {
                let request_id = scan_request_id(&key, &p.digest);
                let mut rc = RequestContext::new(request_id.clone(), format!("{key}@{}", p.digest));
                rc.submitted_at = p.received_at;
                let scan = ScanRequest {
                    request: rc,
                    force: false,
                    sbom: None,
                };
                ret.push(Outgoing::record(Subject::ScanRequest, request_id, &scan)?);
            }
        }
        Ok(ret)
    }

    // ---- ingestion -------------------------------------------------------------------

    async fn ingest(&self, req: &IngestRequest) -> Result<Vec<Outgoing>, StageError> {
        let mut ret = Vec::new();
        let now = now_millis();
        let mut p = match self.store.get_ingest_progress(&req.id).await? {
            Some(p) => p,
            None => IngestProgress {
                id: req.id.clone(),
                registry: req.registry.clone(),
                prefix: req.prefix.clone(),
                state: IngestState::Running,
                repositories: 0,
                repositories_done: 0,
                cursor: None,
                catalog_complete: false,
                queued: 0,
                skipped: 0,
                errors: 0,
                last_error: None,
                started_at: now,
                updated_at: now,
            },
        };
        if p.state != IngestState::Running {
            return Ok(ret);
        }
        let selection = match &req.tags {
            TagSelection::Latest => Selection::Latest,
            TagSelection::All => Selection::All,
            TagSelection::Regex(r) => match Regex::new(r) {
                Ok(re) => Selection::Regex(re),
                Err(e) => {
                    p.state = IngestState::Failed;
                    p.last_error = Some(format!("tag regex: {e}"));
                    p.updated_at = now;
                    self.store.put_ingest_progress(&p).await?;
                    self.progress_out(&p, &mut ret).await?;
                    return Ok(ret);
                }
            },
        };
        self.client.set_rate(
            &req.registry,
            req.rate_per_sec.unwrap_or(self.cfg.ingest_rate_per_sec),
        );
        let pacer = self.pacer(&req.registry);
        let mut last_progress: Option<Instant> = None;
        // Names after `team/` in the catalog's order start with it; `team/` itself is no
        // repository name, so a walk of a prefix ending in `/` can start there.
        if p.cursor.is_none() && req.prefix.ends_with('/') {
            p.cursor = Some(req.prefix.clone());
        }
        let max = req.max_images.unwrap_or(u64::MAX);
        let mut reached_max = p.queued >= max;
        'walk: while !p.catalog_complete && !reached_max {
            let page = match self
                .client
                .catalog_page(&req.registry, p.cursor.as_deref())
                .await
            {
                Ok(page) => page,
                Err(e) if e.is_transient() => {
                    p.last_error = Some(e.to_string());
                    p.updated_at = now_millis();
                    self.store.put_ingest_progress(&p).await?;
                    return Err(StageError::new(FailureKind::Upstream, e.to_string()));
                }
                Err(e) => {
                    p.state = IngestState::Failed;
                    p.last_error = Some(e.to_string());
                    p.updated_at = now_millis();
                    self.store.put_ingest_progress(&p).await?;
                    let ev = make_event(
                        event_kind::LIST_TAGS_FAILED,
                        EventLevel::Error,
                        &req.registry,
                        format!("ingestion {}: the catalog of {}: {e}", req.id, req.registry),
                        vec![("ingestion", req.id.clone()), ("error", e.to_string())],
                        p.updated_at,
                        &[&req.id, "catalog", &e.to_string()],
                    );
                    self.event(&ev, &mut ret).await?;
                    self.progress_out(&p, &mut ret).await?;
                    return Ok(ret);
                }
            };
            let cursor_before = p.cursor.clone();
            let last_item = page.items.last().cloned();
            for repo in page.items {
                if p.cursor.as_deref() == Some(repo.as_str()) {
                    continue; // a registry that repeats `last`
                }
                if repo.starts_with(&req.prefix) {
                    p.repositories += 1;
                    if self
                        .ingest_repo(req, &repo, &selection, &pacer, &mut p, max, &mut ret)
                        .await?
                    {
                        reached_max = true;
                    }
                    p.repositories_done += 1;
                }
                p.cursor = Some(repo);
                p.updated_at = now_millis();
                if reached_max {
                    break;
                }
                if last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
                    self.store.put_ingest_progress(&p).await?;
                    if self.publisher.is_some() {
                        self.progress_out(&p, &mut ret).await?;
                    }
                    last_progress = Some(Instant::now());
                } else {
                    self.store.put_ingest_progress(&p).await?;
                }
            }
            if reached_max {
                break 'walk;
            }
            // The end, or a registry that answers the same page again.
            if page.next.is_none() || last_item.is_none() || p.cursor == cursor_before {
                p.catalog_complete = true;
            }
        }
        p.state = IngestState::Done;
        p.updated_at = now_millis();
        self.store.put_ingest_progress(&p).await?;
        let ev = make_event(
            event_kind::INGEST_COMPLETED,
            EventLevel::Info,
            &req.registry,
            format!(
                "ingestion {} of {}{}: {} repositories, {} images queued, {} skipped, {} errors",
                req.id,
                req.registry,
                if req.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", req.prefix)
                },
                p.repositories_done,
                p.queued,
                p.skipped,
                p.errors
            ),
            vec![
                ("ingestion", req.id.clone()),
                ("queued", p.queued.to_string()),
                ("skipped", p.skipped.to_string()),
                ("errors", p.errors.to_string()),
            ],
            p.updated_at,
            &[&req.id],
        );
        self.event(&ev, &mut ret).await?;
        self.progress_out(&p, &mut ret).await?;
        Ok(ret)
    }

    async fn progress_out(
        &self,
        p: &IngestProgress,
        ret: &mut Vec<Outgoing>,
    ) -> Result<(), StageError> {
        let state = match p.state {
            IngestState::Running => "running",
            IngestState::Done => "done",
            IngestState::Failed => "failed",
        };
        let out = Outgoing::record(
            Subject::IngestProgress(p.id.clone()),
            format!(
                "ingest-progress-{}-{}-{}-{}-{state}",
                p.id, p.repositories_done, p.queued, p.skipped
            ),
            p,
        )?;
        match &self.publisher {
            Some(pb) => {
                if let Err(e) = pb.publish(&out).await {
                    tracing::warn!(error = %e, ingestion = %p.id, "publishing progress failed");
                }
            }
            None => ret.push(out),
        }
        Ok(())
    }

    /// One repository of an ingestion; true when `max_images` is reached.
    #[allow(clippy::too_many_arguments)]
    async fn ingest_repo(
        &self,
        req: &IngestRequest,
        repo: &str,
        selection: &Selection,
        pacer: &RateLimiter,
        p: &mut IngestProgress,
        max: u64,
        ret: &mut Vec<Outgoing>,
    ) -> Result<bool, StageError> {
        let tags = match self.client.list_tags(&req.registry, repo).await {
            Ok(t) if t.len() > self.cfg.max_tags_per_repo => Err(format!(
                "{}/{repo}: more than {} tags",
                req.registry, self.cfg.max_tags_per_repo
            )),
            Ok(t) => Ok(t),
            Err(e) => Err(e.to_string()),
        };
        let tags = match tags {
            Ok(t) => t,
            Err(msg) => {
                p.errors += 1;
                p.last_error = Some(msg.clone());
                let resource = format!("{}/{repo}", req.registry);
                let ev = make_event(
                    event_kind::LIST_TAGS_FAILED,
                    EventLevel::Error,
                    &resource,
                    format!(
                        "ingestion {}: listing the tags of {resource}: {msg}",
                        req.id
                    ),
                    vec![("ingestion", req.id.clone()), ("error", msg.clone())],
                    now_millis(),
                    &[&req.id, &msg],
                );
                self.event(&ev, ret).await?;
                return Ok(false);
            }
        };
        let selected: Vec<String> = match selection {
            Selection::Latest => tags.into_iter().filter(|t| t == "latest").collect(),
            Selection::All => tags,
            Selection::Regex(re) => tags.into_iter().filter(|t| re.is_match(t)).collect(),
        };
        let mut seen: HashSet<String> = HashSet::new();
        for tag in selected {
            let digest = match self
                .client
                .head_manifest(&req.registry, repo, &tag, None)
                .await
            {
                Ok(HeadResult::Digest(d)) => d,
                Ok(HeadResult::Unchanged) => continue,
                Ok(HeadResult::NotFound) => {
                    // Deleted since it was listed.
                    continue;
                }
                Err(e) => {
                    p.errors += 1;
                    p.last_error = Some(e.to_string());
                    tracing::debug!(error = %e, repo, tag, "ingestion: resolving a tag failed");
                    continue;
                }
            };
            if !seen.insert(digest.clone())
                || self.store.has_analysis(&digest).await?
                || self.store.was_ingested(&req.id, &digest).await?
            {
                p.skipped += 1;
                continue;
            }
            if p.queued >= max {
                return Ok(true);
            }
            pacer.acquire().await;
            let request_id = format!(
                "ingest-{}-{}",
                vigil_contracts::subjects::sanitize_token(&req.id),
                short_hash(&[&digest])
            );
            let mut rc = RequestContext::new(
                request_id,
                format!("{}/{repo}:{tag}@{digest}", req.registry),
            );
            rc.submitted_at = req.requested_at;
            let scan = ScanRequest {
                request: rc,
                force: false,
                sbom: None,
            };
            let out = Outgoing::record(
                Subject::ScanRequest,
                format!("ingest-{}-{digest}", req.id),
                &scan,
            )?;
            match &self.publisher {
                Some(pb) => pb.publish(&out).await.map_err(publish_err)?,
                None => ret.push(out),
            }
            self.store.mark_ingested(&req.id, &digest).await?;
            p.queued += 1;
            if p.queued >= max {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

enum Selection {
    Latest,
    All,
    Regex(Regex),
}

/// A watch (tag or repository) whose poll failed, as it stood before this failure.
struct Failing<'a> {
    kind: &'static str,
    resource: &'a str,
    doing: &'static str,
    failures: u32,
    last_error: Option<&'a str>,
    last_checked_at: Option<UnixMillis>,
}

impl Failing<'_> {
    /// The event of this failure, or none when the same error was already announced in
    /// this time bucket (one event per watch per error per bucket; failures still count).
    fn event(&self, error: &str, due_at: UnixMillis) -> Option<Event> {
        let bucket = due_at.div_euclid(EVENT_BUCKET_MS);
        let last_bucket = self
            .last_checked_at
            .map(|t| t.div_euclid(EVENT_BUCKET_MS))
            .unwrap_or(-1);
        let new_error = self.last_error != Some(error) || self.failures == 0;
        (new_error || last_bucket != bucket).then(|| {
            make_event(
                self.kind,
                EventLevel::Error,
                self.resource,
                format!("{} {}: {error}", self.doing, self.resource),
                vec![
                    ("error", error.to_string()),
                    ("failures", (self.failures + 1).to_string()),
                ],
                due_at,
                &[error, &bucket.to_string()],
            )
        })
    }
}

#[async_trait]
impl Stage for WatchStage {
    fn name(&self) -> StageName {
        StageName::Watch
    }

    async fn handle(&self, subject: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        match subject {
            Subject::WatchPoll => {
                let poll: WatchPoll = codec::decode(payload)?;
                match poll.target {
                    WatchTarget::Tag => self.poll_tag(&poll).await,
                    WatchTarget::Repo => self.poll_repo(&poll).await,
                }
            }
            Subject::WatchPush => {
                let push: RegistryPush = codec::decode(payload)?;
                self.push(&push).await
            }
            Subject::IngestRequest => {
                let req: IngestRequest = codec::decode(payload)?;
                self.ingest(&req).await
            }
            other => Err(StageError::new(
                FailureKind::InvalidRequest,
                format!("the watch stage does not handle {other:?}"),
            )),
        }
    }
}
