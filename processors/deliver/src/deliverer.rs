//! The delivery stage: one durable consumer per configured webhook, per-tag ordering,
//! in-process retries with backoff while the message is held with progress acks, dead
//! letters after the retry window, the events forwarder, replays and test sends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind, Message};
use futures::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, Span};
use vigil_contracts::streams::{self, ConsumerDef, StreamTuning};
use vigil_contracts::subjects::sanitize_token;
use vigil_contracts::watch::{
    event_kind, DeadDelivery, DeliveryAttempt, DeliveryBody, DeliveryLog, DeliveryState,
    DeliveryTask, Event, EventLevel,
};
use vigil_contracts::{
    codec, Action, Notification, NotificationKind, NotificationPayload, Subject, Subjects,
    UnixMillis,
};
use vigil_runtime::Outgoing;
use vigil_store::Store;

use crate::body::{backoff, random_jitter};
use crate::config::DeliverConfig;
use crate::error::DeliverError;
use crate::sender::{delivered, redact_url, Sender};

/// Attempts kept in a delivery log (all are counted).
pub const KEPT_ATTEMPTS: usize = 50;

/// The webhook the events forwarder feeds.
pub const EVENT_ENDPOINT: &str = "event";

fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Durable name of an endpoint's consumer: `<P>_deliver_<endpoint>`.
pub fn consumer_name(subjects: &Subjects, endpoint: &str) -> String {
    format!(
        "{}_deliver_{}",
        subjects.stream_prefix(),
        sanitize_token(endpoint)
    )
}

/// Durable name of the events forwarder's consumer.
pub fn forwarder_consumer_name(subjects: &Subjects) -> String {
    format!("{}_deliver_event_forwarder", subjects.stream_prefix())
}

/// Resolves when shutdown is asked (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Runs every configured webhook's delivery queue (and the events forwarder).
pub struct Deliverer {
    cfg: Arc<DeliverConfig>,
    store: Store,
    js: jetstream::Context,
    subjects: Subjects,
    streams: StreamTuning,
}

struct Endpoint {
    name: String,
    sender: Sender,
    cfg: Arc<DeliverConfig>,
    store: Store,
    js: jetstream::Context,
    subjects: Subjects,
}

impl Deliverer {
    pub fn new(
        cfg: DeliverConfig,
        store: Store,
        js: jetstream::Context,
        subjects: Subjects,
    ) -> Self {
        Deliverer {
            cfg: Arc::new(cfg),
            store,
            js,
            subjects,
            streams: StreamTuning::default(),
        }
    }

    /// The stream settings `run` applies (default: [`StreamTuning::default`]).
    pub fn with_stream_tuning(mut self, t: StreamTuning) -> Self {
        self.streams = t;
        self
    }

    fn consumer_def(&self, stream: String, name: String, filter: String) -> ConsumerDef {
        ConsumerDef {
            stream,
            durable_name: name,
            filter_subjects: vec![filter],
            ack_wait: Duration::from_secs(self.cfg.ack_wait_secs.max(1)),
            max_deliver: -1,
            max_ack_pending: self.cfg.max_ack_pending.max(1),
            num_replicas: self.streams.replicas,
        }
    }

    /// Deliver until `shutdown` turns true. Fails at start when a webhook's
    /// configuration cannot be used or JetStream cannot be set up.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), DeliverError> {
        if EventLevel::parse(&self.cfg.event_level).is_none() {
            return Err(DeliverError::Setting(format!(
                "event_level {:?} (info, warn or error)",
                self.cfg.event_level
            )));
        }
        let default_timeout = self.cfg.attempt_timeout();
        let mut senders = Vec::new();
        for (name, wh) in &self.cfg.webhooks {
            senders.push((name.clone(), Sender::new(name, wh, default_timeout)?));
        }
        vigil_runtime::setup::ensure_streams(&self.js, &self.subjects, &self.streams).await?;
        let mut tasks: JoinSet<Result<(), DeliverError>> = JoinSet::new();
        for (name, sender) in senders {
            let def = self.consumer_def(
                streams::deliver_stream_name(&self.subjects),
                consumer_name(&self.subjects, &name),
                self.subjects.render(&Subject::Deliver(name.clone())),
            );
            let consumer = vigil_runtime::setup::ensure_consumer(&self.js, &def).await?;
            let ep = Arc::new(Endpoint {
                name: name.clone(),
                sender,
                cfg: self.cfg.clone(),
                store: self.store.clone(),
                js: self.js.clone(),
                subjects: self.subjects.clone(),
            });
            tracing::info!(endpoint = %name, consumer = %def.durable_name, "delivering webhooks");
            tasks.spawn(endpoint_loop(ep, consumer, shutdown.clone()));
        }
        if self.cfg.webhooks.contains_key(EVENT_ENDPOINT) {
            let def = self.consumer_def(
                streams::results_stream_name(&self.subjects),
                forwarder_consumer_name(&self.subjects),
                format!("{}.event.>", self.subjects.prefix()),
            );
            let consumer = vigil_runtime::setup::ensure_consumer(&self.js, &def).await?;
            let min = EventLevel::parse(&self.cfg.event_level).unwrap_or(EventLevel::Info);
            tasks.spawn(forward_events(
                self.js.clone(),
                self.subjects.clone(),
                consumer,
                min,
                shutdown.clone(),
            ));
        }
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                r = tasks.join_next(), if !tasks.is_empty() => match r {
                    Some(Ok(Ok(()))) | None => {}
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => return Err(DeliverError::JetStream(format!("a delivery task ended: {e}"))),
                },
            }
        }
        // The tasks saw the shutdown too: they NAK what they hold and end.
        let grace = self.cfg.attempt_timeout() + Duration::from_secs(5);
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        Ok(())
    }
}

async fn open_messages(
    consumer: &PullConsumer,
    batch: usize,
) -> Result<jetstream::consumer::pull::Stream, DeliverError> {
    consumer
        .stream()
        .max_messages_per_batch(batch.max(1))
        .expires(Duration::from_secs(5))
        .heartbeat(Duration::from_secs(2))
        .messages()
        .await
        .map_err(|e| DeliverError::JetStream(format!("pulling deliveries: {e}")))
}

/// One endpoint: pull its messages in stream order, queue them per order key, run up to
/// `concurrency` keys at once, one message of a key at a time.
async fn endpoint_loop(
    ep: Arc<Endpoint>,
    consumer: PullConsumer,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DeliverError> {
    let concurrency = ep.cfg.concurrency.max(1);
    let hold_limit = ep.cfg.max_ack_pending.max(1) as usize;
    let batch = (concurrency * 4).min(hold_limit).max(1);
    let mut messages = open_messages(&consumer, batch).await?;
    let mut queues: HashMap<String, VecDeque<(DeliveryTask, Message)>> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut ready: VecDeque<String> = VecDeque::new();
    let mut held = 0usize;
    let mut workers: JoinSet<String> = JoinSet::new();
    let mut keepalive = tokio::time::interval(Duration::from_millis(
        ep.cfg.ack_wait_secs.max(1) * 1000 / 3,
    ));
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while workers.len() < concurrency {
            let Some(key) = ready.pop_front() else { break };
            let Some(q) = queues.get_mut(&key) else {
                continue;
            };
            let Some((task, msg)) = q.pop_front() else {
                queues.remove(&key);
                continue;
            };
            if q.is_empty() {
                queues.remove(&key);
            }
            held -= 1;
            busy.insert(key.clone());
            let ep = ep.clone();
            let sd = shutdown.clone();
            workers.spawn(async move {
                let r = AssertUnwindSafe(handle(&ep, task, msg, sd))
                    .catch_unwind()
                    .await;
                if r.is_err() {
                    tracing::error!(endpoint = %ep.name, "a delivery handler panicked");
                }
                key
            });
        }
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            r = workers.join_next(), if !workers.is_empty() => {
                if let Some(Ok(key)) = r {
                    busy.remove(&key);
                    if queues.get(&key).is_some_and(|q| !q.is_empty()) {
                        ready.push_back(key);
                    }
                }
            }
            _ = keepalive.tick() => {
                for q in queues.values() {
                    for (_, m) in q {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                }
            }
            m = messages.next(), if held + workers.len() < hold_limit => match m {
                Some(Ok(msg)) => {
                    let task = match codec::decode::<DeliveryTask>(&msg.payload) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(endpoint = %ep.name, subject = %msg.subject, error = %e,
                                "not a delivery task: dropped");
                            let _ = msg.ack_with(AckKind::Term).await;
                            continue;
                        }
                    };
                    let key = task.body.order_key().to_string();
                    let q = queues.entry(key.clone()).or_default();
                    if q.is_empty() && !busy.contains(&key) {
                        ready.push_back(key);
                    }
                    q.push_back((task, msg));
                    held += 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(endpoint = %ep.name, error = %e, "pulling deliveries");
                }
                None => {
                    tracing::warn!(endpoint = %ep.name, "delivery pull ended, pulling again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match open_messages(&consumer, batch).await {
                        Ok(m) => messages = m,
                        Err(e) => tracing::warn!(endpoint = %ep.name, error = %e, "pulling deliveries"),
                    }
                }
            },
        }
    }
    // Shutdown: hand back what waits, in order, and let the workers end theirs.
    for q in queues.values() {
        for (_, m) in q {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
    }
    while workers.join_next().await.is_some() {}
    Ok(())
}

/// Retry a store or publish step until it works (a delivery is never re-ordered by an
/// internal failure); `None` when shutdown comes first.
async fn persist<T, E, F, Fut>(
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
    mut f: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed, trying again in {delay:?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(shutdown) => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Keep a held message ours while it is worked on.
async fn keep_alive(msg: &Message, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = msg.ack_with(AckKind::Progress).await {
            tracing::debug!(error = %e, "progress ack");
        }
    }
}

async fn handle(ep: &Endpoint, task: DeliveryTask, msg: Message, shutdown: watch::Receiver<bool>) {
    let delivery_id = task.delivery_id();
    let span = tracing::info_span!(
        "delivery",
        endpoint = %ep.name,
        delivery_id = %delivery_id,
        attempt = tracing::field::Empty
    );
    let every = Duration::from_millis((ep.cfg.ack_wait_secs.max(1) * 1000 / 3).max(100));
    let work = deliver(ep, &task, &delivery_id, &msg, shutdown, span.clone());
    tokio::select! {
        _ = work.instrument(span) => {}
        _ = keep_alive(&msg, every) => {}
    }
}

async fn ack(msg: &Message) {
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(error = %e, "ack failed (the delivery may be handed out again)");
    }
}

async fn deliver(
    ep: &Endpoint,
    task: &DeliveryTask,
    delivery_id: &str,
    msg: &Message,
    mut shutdown: watch::Receiver<bool>,
    span: Span,
) {
    let body_id = task.body.id().to_string();
    let Some(existing) = persist("reading the delivery log", &mut shutdown, || {
        ep.store.get_delivery_log(&body_id, delivery_id)
    })
    .await
    else {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
        return;
    };
    let mut log = match existing {
        Some(l)
            if l.state == DeliveryState::Delivered || l.state == DeliveryState::DeadLettered =>
        {
            tracing::info!(state = ?l.state, "already handled: not sent again");
            ack(msg).await;
            return;
        }
        Some(l) => l,
        None => DeliveryLog {
            delivery_id: delivery_id.to_string(),
            endpoint: ep.name.clone(),
            account: task.account.clone(),
            body_id: body_id.clone(),
            body_type: task.body.type_name().to_string(),
            url: redact_url(&ep.sender.url_for(task)),
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            attempt_count: 0,
            last_error: None,
            first_attempt_at: now_millis(),
            updated_at: now_millis(),
        },
    };
    let window_ms = ep.cfg.retry_window_secs.saturating_mul(1000) as i64;
    let deadline = task.queued_at.saturating_add(window_ms);
    loop {
        let n = log.attempt_count + 1;
        span.record("attempt", n);
        let attempt = ep.sender.attempt(task, n).await;
        let ok = delivered(&attempt);
        record_attempt(&mut log, attempt.clone(), ok);
        if ok {
            tracing::info!(status = ?attempt.status, took_ms = attempt.took_ms, "delivered");
        } else {
            tracing::warn!(status = ?attempt.status, error = ?attempt.error, "attempt failed");
        }
        if persist("writing the delivery log", &mut shutdown, || {
            ep.store.put_delivery_log(&log)
        })
        .await
        .is_none()
        {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
        if ok {
            ack(msg).await;
            return;
        }
        let now = now_millis();
        if now >= deadline {
            dead_letter(ep, task, &mut log, msg, &mut shutdown).await;
            return;
        }
        let delay = backoff(n, &ep.cfg, random_jitter())
            .min(Duration::from_millis((deadline - now).max(0) as u64));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut shutdown) => {
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                return;
            }
        }
    }
}

fn record_attempt(log: &mut DeliveryLog, a: DeliveryAttempt, ok: bool) {
    log.attempt_count += 1;
    log.updated_at = a.at + a.took_ms as i64;
    if log.attempt_count == 1 {
        log.first_attempt_at = a.at;
    }
    if ok {
        log.state = DeliveryState::Delivered;
    } else {
        log.last_error = a
            .error
            .clone()
            .or_else(|| a.status.map(|s| format!("HTTP {s}")));
    }
    log.attempts.push(a);
    if log.attempts.len() > KEPT_ATTEMPTS {
        let extra = log.attempts.len() - KEPT_ATTEMPTS;
        log.attempts.drain(..extra);
    }
}

/// The content-derived id of the give-up event of one delivery (one per queued copy).
fn given_up_event_id(delivery_id: &str, queued_at: UnixMillis) -> String {
    let h = Sha256::digest(format!("{delivery_id}|{queued_at}").as_bytes());
    format!("webhook_given_up-{}", &hex::encode(h)[..24])
}

async fn dead_letter(
    ep: &Endpoint,
    task: &DeliveryTask,
    log: &mut DeliveryLog,
    msg: &Message,
    shutdown: &mut watch::Receiver<bool>,
) {
    let now = now_millis();
    let delivery_id = task.delivery_id();
    tracing::error!(
        attempts = log.attempt_count,
        last_error = ?log.last_error,
        "retry window over: delivery given up (dead letter)"
    );
    let dead = DeadDelivery {
        task: task.clone(),
        attempts: log.attempt_count,
        last_error: log.last_error.clone(),
        given_up_at: now,
    };
    let mut details = std::collections::BTreeMap::new();
    details.insert("delivery_id".to_string(), delivery_id.clone());
    details.insert("attempts".to_string(), log.attempt_count.to_string());
    details.insert("body_id".to_string(), task.body.id().to_string());
    details.insert("body_type".to_string(), task.body.type_name().to_string());
    if let Some(e) = &log.last_error {
        details.insert("last_error".to_string(), e.clone());
    }
    let event = Event {
        id: given_up_event_id(&delivery_id, task.queued_at),
        account: task.account.clone(),
        level: EventLevel::Error,
        kind: event_kind::WEBHOOK_GIVEN_UP.to_string(),
        resource: ep.name.clone(),
        message: format!(
            "webhook {} gave up on {} {} after {} attempts: {}",
            ep.name,
            task.body.type_name(),
            task.body.id(),
            log.attempt_count,
            log.last_error.as_deref().unwrap_or("no answer")
        ),
        details,
        at: now,
    };
    let out = match codec::encode(&event) {
        Ok(payload) => Outgoing {
            subject: Subject::Event(event_kind::WEBHOOK_GIVEN_UP.to_string()),
            msg_id: event.id.clone(),
            payload,
        },
        Err(e) => {
            tracing::error!(error = %e, "encoding the give-up event");
            return;
        }
    };
    log.state = DeliveryState::DeadLettered;
    log.updated_at = now;
    let steps_done = persist("storing the dead letter", shutdown, || {
        ep.store.put_dead_delivery(&dead)
    })
    .await
    .is_some()
        && persist("storing the give-up event", shutdown, || {
            ep.store.put_event(&event)
        })
        .await
        .is_some()
        && persist("publishing the give-up event", shutdown, || {
            vigil_runtime::jetstream::publish(&ep.js, &ep.subjects, &out)
        })
        .await
        .is_some()
        && persist("writing the delivery log", shutdown, || {
            ep.store.put_delivery_log(log)
        })
        .await
        .is_some();
    if steps_done {
        ack(msg).await;
    } else {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
}

/// The events forwarder: events at or above `min` become deliveries to the `event`
/// webhook.
async fn forward_events(
    js: jetstream::Context,
    subjects: Subjects,
    consumer: PullConsumer,
    min: EventLevel,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DeliverError> {
    let mut messages = open_messages(&consumer, 64).await?;
    loop {
        let m = tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            m = messages.next() => m,
        };
        let msg = match m {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "pulling events");
                continue;
            }
            None => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match open_messages(&consumer, 64).await {
                    Ok(m) => messages = m,
                    Err(e) => tracing::warn!(error = %e, "pulling events"),
                }
                continue;
            }
        };
        let event = match codec::decode::<Event>(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "not an event: skipped");
                let _ = msg.ack().await;
                continue;
            }
        };
        // The event webhook's own give-ups are not sent to it again (no loop).
        let own_give_up =
            event.kind == event_kind::WEBHOOK_GIVEN_UP && event.resource == EVENT_ENDPOINT;
        if event.level < min || own_give_up {
            let _ = msg.ack().await;
            continue;
        }
        let task = DeliveryTask {
            endpoint: EVENT_ENDPOINT.to_string(),
            account: event.account.clone(),
            body: DeliveryBody::Event(event),
            queued_at: now_millis(),
        };
        let out = Outgoing {
            subject: Subject::Deliver(EVENT_ENDPOINT.to_string()),
            msg_id: task.delivery_id(),
            payload: codec::encode(&task)?,
        };
        match vigil_runtime::jetstream::publish(&js, &subjects, &out).await {
            Ok(()) => {
                let _ = msg.ack().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "queueing an event delivery; trying again");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
}

/// Queue a dead delivery again (fresh `queued_at`, so a full retry window) and remove the
/// dead letter. `false` when there is no such dead letter.
pub async fn replay(
    store: &Store,
    js: &jetstream::Context,
    subjects: &Subjects,
    endpoint: &str,
    delivery_id: &str,
) -> Result<bool, DeliverError> {
    let Some(dead) = store
        .list_dead_deliveries(Some(endpoint))
        .await?
        .into_iter()
        .find(|d| d.task.delivery_id() == delivery_id)
    else {
        return Ok(false);
    };
    replay_one(store, js, subjects, dead).await?;
    Ok(true)
}

/// Replay every dead delivery of `endpoint` (of all endpoints when `None`); how many.
pub async fn replay_all(
    store: &Store,
    js: &jetstream::Context,
    subjects: &Subjects,
    endpoint: Option<&str>,
) -> Result<usize, DeliverError> {
    let dead = store.list_dead_deliveries(endpoint).await?;
    let n = dead.len();
    for d in dead {
        replay_one(store, js, subjects, d).await?;
    }
    Ok(n)
}

async fn replay_one(
    store: &Store,
    js: &jetstream::Context,
    subjects: &Subjects,
    dead: DeadDelivery,
) -> Result<(), DeliverError> {
    let now = now_millis();
    let mut task = dead.task;
    task.queued_at = now;
    let delivery_id = task.delivery_id();
    // The log goes back to pending (it keeps counting attempts), so the deliverer sends.
    if let Some(mut log) = store.get_delivery_log(task.body.id(), &delivery_id).await? {
        log.state = DeliveryState::Pending;
        log.updated_at = now;
        store.put_delivery_log(&log).await?;
    }
    let out = Outgoing {
        subject: Subject::Deliver(task.endpoint.clone()),
        msg_id: format!("{delivery_id}-replay-{now}"),
        payload: codec::encode(&task)?,
    };
    vigil_runtime::jetstream::publish(js, subjects, &out).await?;
    store
        .delete_dead_delivery(&task.endpoint, &delivery_id)
        .await?;
    tracing::info!(endpoint = %task.endpoint, delivery_id = %delivery_id, "dead delivery replayed");
    Ok(())
}

fn sample_payload(kind: NotificationKind) -> NotificationPayload {
    let digest = format!("sha256:{}", "0".repeat(64));
    match kind {
        NotificationKind::TagUpdate => NotificationPayload::TagUpdate {
            previous_digests: vec![],
            current_digest: digest,
        },
        NotificationKind::AnalysisUpdate => NotificationPayload::AnalysisUpdate {
            status: "analyzed".into(),
            failure: None,
        },
        NotificationKind::VulnUpdate => NotificationPayload::VulnUpdate {
            diff: Default::default(),
        },
        NotificationKind::PolicyEval => NotificationPayload::PolicyEval {
            previous_action: Some(Action::Go),
            current_action: Action::Stop,
            policy_id: "test".into(),
        },
        NotificationKind::RepoUpdate => NotificationPayload::RepoUpdate {
            added_tags: vec!["docker.io/library/alpine:test".into()],
            removed_tags: vec![],
        },
    }
}

/// A sample delivery of `notification_type` (`event` for an event) for `account`.
pub fn sample_task(
    cfg: &DeliverConfig,
    notification_type: &str,
    account: &str,
) -> Result<DeliveryTask, DeliverError> {
    let now = now_millis();
    let (endpoint, body) = if notification_type == EVENT_ENDPOINT {
        if !cfg.webhooks.contains_key(EVENT_ENDPOINT) {
            return Err(DeliverError::NoEndpoint(EVENT_ENDPOINT.into()));
        }
        let body = DeliveryBody::Event(Event {
            id: format!("test-event-{now}"),
            account: account.to_string(),
            level: EventLevel::Info,
            kind: "webhook_test".into(),
            resource: EVENT_ENDPOINT.into(),
            message: "a test event from vigil".into(),
            details: Default::default(),
            at: now,
        });
        (EVENT_ENDPOINT.to_string(), body)
    } else {
        let kind = NotificationKind::parse(notification_type)
            .ok_or_else(|| DeliverError::UnknownType(notification_type.to_string()))?;
        let endpoint = cfg
            .endpoint_for(notification_type)
            .ok_or_else(|| DeliverError::NoEndpoint(notification_type.to_string()))?;
        let key = if kind == NotificationKind::RepoUpdate {
            "docker.io/library/alpine"
        } else {
            "docker.io/library/alpine:test"
        };
        let body = DeliveryBody::Notification(Notification {
            id: format!("test-{notification_type}-{now}"),
            kind,
            subscription_key: key.into(),
            image_digest: (kind != NotificationKind::RepoUpdate)
                .then(|| format!("sha256:{}", "0".repeat(64))),
            request_id: None,
            payload: sample_payload(kind),
            created_at: now,
        });
        (endpoint.to_string(), body)
    };
    Ok(DeliveryTask {
        endpoint,
        account: account.to_string(),
        body,
        queued_at: now,
    })
}

/// POST a sample notification of `notification_type` (or a sample event for `event`)
/// once to the webhook that would get it (Anchore's `POST /system/webhooks/{type}/test`).
pub async fn send_test(
    cfg: &DeliverConfig,
    notification_type: &str,
    account: &str,
) -> Result<(String, DeliveryAttempt), DeliverError> {
    let task = sample_task(cfg, notification_type, account)?;
    let wh = cfg
        .webhooks
        .get(&task.endpoint)
        .ok_or_else(|| DeliverError::NoEndpoint(notification_type.to_string()))?;
    let sender = Sender::new(&task.endpoint, wh, cfg.attempt_timeout())?;
    let attempt = sender.attempt(&task, 1).await;
    Ok((task.endpoint, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookConfig;

    #[test]
    fn attempts_are_bounded_and_counted() {
        let mut log = DeliveryLog {
            delivery_id: "d".into(),
            endpoint: "general".into(),
            account: "a".into(),
            body_id: "b".into(),
            body_type: "tag_update".into(),
            url: "http://x/".into(),
            state: DeliveryState::Pending,
            attempts: vec![],
            attempt_count: 0,
            last_error: None,
            first_attempt_at: 0,
            updated_at: 0,
        };
        for i in 0..60 {
            let a = DeliveryAttempt {
                at: i,
                status: Some(500),
                error: Some("HTTP 500".into()),
                took_ms: 1,
            };
            record_attempt(&mut log, a, false);
        }
        assert_eq!(log.attempt_count, 60);
        assert_eq!(log.attempts.len(), KEPT_ATTEMPTS);
        assert_eq!(log.attempts[0].at, 10);
        assert_eq!(log.state, DeliveryState::Pending);
        assert_eq!(log.first_attempt_at, 0);
        let a = DeliveryAttempt {
            at: 99,
            status: Some(204),
            error: None,
            took_ms: 1,
        };
        record_attempt(&mut log, a, true);
        assert_eq!(log.state, DeliveryState::Delivered);
    }

    #[test]
    fn samples_route_like_deliveries() {
        let mut c = DeliverConfig::default();
        assert!(matches!(
            sample_task(&c, "vuln_update", "admin"),
            Err(DeliverError::NoEndpoint(_))
        ));
        assert!(matches!(
            sample_task(&c, "nonsense", "admin"),
            Err(DeliverError::UnknownType(_))
        ));
        c.webhooks
            .insert("general".into(), WebhookConfig::default());
        let t = sample_task(&c, "vuln_update", "admin").unwrap();
        assert_eq!(t.endpoint, "general");
        assert_eq!(t.body.type_name(), "vuln_update");
        assert!(matches!(
            sample_task(&c, "event", "admin"),
            Err(DeliverError::NoEndpoint(_))
        ));
        c.webhooks.insert("event".into(), WebhookConfig::default());
        assert_eq!(sample_task(&c, "event", "admin").unwrap().endpoint, "event");
        assert_ne!(given_up_event_id("a", 1), given_up_event_id("a", 2));
    }
}
