//! End-to-end delivery tests: a real nats-server, real HTTP(S) receivers, an embedded
//! store. Every wait is bounded.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_contracts::streams::{results_stream_name, StreamTuning};
use vigil_contracts::watch::{DeliveryBody, DeliveryState, DeliveryTask, Event, EventLevel};
use vigil_contracts::{codec, Notification, NotificationKind, NotificationPayload, Subjects};
use vigil_deliver::{
    replay, send_test, verify, DeliverConfig, DeliverError, Deliverer, WebhookConfig,
};
use vigil_store::{EventFilter, Store};
use vigil_testkit::Nats;

const PREFIX: &str = "vt";

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------- environment

struct Env {
    nats: Nats,
    js: jetstream::Context,
    subjects: Subjects,
    store: Store,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let nats = Nats::start();
    let client = vigil_runtime::setup::connect(&nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let subjects = Subjects::new(PREFIX);
    vigil_runtime::setup::ensure_streams(&js, &subjects, &StreamTuning::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("store.redb")).unwrap();
    Env {
        nats,
        js,
        subjects,
        store,
        dir,
    }
}

fn config(webhooks: Vec<(&str, WebhookConfig)>) -> DeliverConfig {
    DeliverConfig {
        webhooks: webhooks
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        retry_window_secs: 30,
        initial_backoff_ms: 50,
        max_backoff_secs: 1,
        attempt_timeout_secs: 1,
        attempt_timeout_ms: Some(300),
        concurrency: 4,
        event_level: "info".into(),
        ack_wait_secs: 2,
        max_ack_pending: 1000,
    }
}

fn hook(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        ..Default::default()
    }
}

struct Running {
    handle: JoinHandle<Result<(), DeliverError>>,
    stop: watch::Sender<bool>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let r = tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("deliverer stops in time")
            .expect("deliverer task");
        r.expect("deliverer ends cleanly");
    }
}

/// Start a deliverer on its own NATS connection (so dropping it drops the connection).
async fn start(env: &Env, cfg: DeliverConfig) -> Running {
    let client = vigil_runtime::setup::connect(&env.nats.url())
        .await
        .unwrap();
    let d = Deliverer::new(
        cfg,
        env.store.clone(),
        jetstream::new(client),
        env.subjects.clone(),
    );
    let (stop, rx) = watch::channel(false);
    Running {
        handle: tokio::spawn(d.run(rx)),
        stop,
    }
}

fn notification(kind: NotificationKind, tag: &str, seq: usize) -> Notification {
    Notification {
        id: format!("n-{}-{tag}-{seq}", kind.as_str()),
        kind,
        subscription_key: tag.to_string(),
        image_digest: Some(format!("sha256:{seq:064}")),
        request_id: None,
        payload: NotificationPayload::TagUpdate {
            previous_digests: vec![],
            current_digest: format!("sha256:{seq:064}"),
        },
        created_at: now_millis(),
    }
}

fn task(endpoint: &str, n: Notification) -> DeliveryTask {
    DeliveryTask {
        endpoint: endpoint.to_string(),
        account: "admin".into(),
        body: DeliveryBody::Notification(n),
        queued_at: now_millis(),
    }
}

async fn publish_task(env: &Env, t: &DeliveryTask) {
    let subject = format!("{PREFIX}.deliver.{}", t.endpoint);
    env.js
        .send_publish(
            subject,
            Publish::build()
                .payload(codec::encode(t).unwrap().into())
                .message_id(t.delivery_id()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn wait_for<F: FnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------- HTTP receiver

#[derive(Clone)]
enum Reply {
    Accept,
    Status(u16),
    Sleep(Duration),
}

#[derive(Clone, Debug)]
struct Req {
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Behaviour = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Rx {
    requests: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Req>>>,
    behaviour: Behaviour,
}

impl Rx {
    fn accepted(&self) -> Vec<Req> {
        self.accepted.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn handler(State(rx): State<Rx>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = rx.requests.fetch_add(1, Ordering::SeqCst);
    match (rx.behaviour)(n) {
        Reply::Accept => {
            rx.accepted.lock().unwrap().push(Req { headers, body });
            StatusCode::NO_CONTENT
        }
        Reply::Status(s) => StatusCode::from_u16(s).unwrap(),
        Reply::Sleep(d) => {
            tokio::time::sleep(d).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

async fn receiver_on(addr: SocketAddr, behaviour: Behaviour) -> (Rx, String) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = Rx {
        requests: Arc::default(),
        accepted: Arc::default(),
        behaviour,
    };
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(handler))
        .with_state(rx.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (rx, format!("http://{addr}"))
}

async fn receiver(behaviour: Behaviour) -> (Rx, String) {
    receiver_on("127.0.0.1:0".parse().unwrap(), behaviour).await
}

fn accept_all() -> Behaviour {
    Arc::new(|_| Reply::Accept)
}

// ---------------------------------------------------------------- tests

/// 500 five times, then two attempts that time out, then accepted: every notification
/// arrives exactly once, in order per tag, and the logs record what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_deliver_once_in_order_per_tag() {
    let env = env().await;
    let (rx, url) = receiver(Arc::new(|n| match n {
        0..5 => Reply::Status(500),
        5..7 => Reply::Sleep(Duration::from_millis(900)),
        _ => Reply::Accept,
    }))
    .await;
    let cfg = config(vec![("general", hook(format!("{url}/hook/<account>")))]);
    let tags = ["r.io/a:1", "r.io/b:1", "r.io/c:1"];
    let mut published = Vec::new();
    for seq in 0..4 {
        for tag in tags {
            let t = task(
                "general",
                notification(NotificationKind::TagUpdate, tag, seq),
            );
            publish_task(&env, &t).await;
            published.push(t);
        }
    }
    let d = start(&env, cfg).await;
    wait_for("12 deliveries", Duration::from_secs(40), || {
        rx.count() >= 12
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.accepted();
    assert_eq!(got.len(), 12, "each notification accepted once");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *seen.entry(r.header("x-vigil-notification-id")).or_default() += 1;
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.values().all(|&c| c == 1));
    for tag in tags {
        let order: Vec<String> = got
            .iter()
            .map(|r| r.json())
            .filter(|v| v["data"]["notification_payload"]["subscription_key"] == tag)
            .map(|v| v["data"]["notification_id"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..4).map(|s| format!("n-tag_update-{tag}-{s}")).collect();
        assert_eq!(order, want, "publication order for {tag}");
    }
    // The logs: every attempt counted, the 500s and the timeouts recorded.
    let mut attempts = 0;
    let mut statuses_500 = 0;
    let mut timeouts = 0;
    for t in &published {
        let log = env
            .store
            .get_delivery_log(t.body.id(), &t.delivery_id())
            .await
            .unwrap()
            .expect("a delivery log");
        assert_eq!(log.state, DeliveryState::Delivered);
        assert_eq!(log.attempts.len() as u32, log.attempt_count);
        assert_eq!(log.url, format!("{url}/hook/admin"));
        attempts += log.attempt_count;
        for a in &log.attempts {
            if a.status == Some(500) {
                statuses_500 += 1;
            }
            if a.error.as_deref().is_some_and(|e| e.contains("timed out")) {
                timeouts += 1;
            }
        }
        assert_eq!(log.attempts.last().unwrap().status, Some(204));
    }
    assert_eq!(statuses_500, 5);
    assert_eq!(timeouts, 2);
    assert_eq!(attempts as usize, rx.requests());
    // The accepted attempt numbers match the logs.
    for r in &got {
        let id = r.header("x-vigil-notification-id");
        let t = published.iter().find(|t| t.body.id() == id).unwrap();
        let log = env
            .store
            .get_delivery_log(&id, &t.delivery_id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.header("x-vigil-attempt"), log.attempt_count.to_string());
        assert_eq!(r.header("x-vigil-delivery-id"), t.delivery_id());
    }
    d.stop().await;
}

/// Signature, basic auth, bearer token and the other headers arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_and_credentials() {
    let env = env().await;
    let (rx, url) = receiver(accept_all()).await;
    let general = WebhookConfig {
        url: format!("{url}/general/<notification_type>"),
        username: Some("alice".into()),
        password: Some("s3cret".into()),
        secret: Some("hmac-key".into()),
        ..Default::default()
    };
    let policy = WebhookConfig {
        url: format!("{url}/policy"),
        token: Some("tok-123".into()),
        secret: Some("other-key".into()),
        ..Default::default()
    };
    let cfg = config(vec![("general", general), ("policy_eval", policy)]);
    let t1 = task(
        "general",
        notification(NotificationKind::TagUpdate, "r.io/a:1", 0),
    );
    let t2 = task(
        "policy_eval",
        notification(NotificationKind::PolicyEval, "r.io/a:1", 0),
    );
    publish_task(&env, &t1).await;
    publish_task(&env, &t2).await;
    let d = start(&env, cfg).await;
    wait_for("2 deliveries", Duration::from_secs(15), || rx.count() >= 2).await;
    let got = rx.accepted();
    let basic = got
        .iter()
        .find(|r| r.header("x-vigil-notification-id") == t1.body.id())
        .unwrap();
    let bearer = got
        .iter()
        .find(|r| r.header("x-vigil-notification-id") == t2.body.id())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    assert_eq!(basic.header("authorization"), format!("Basic {b64}"));
    assert_eq!(bearer.header("authorization"), "Bearer tok-123");
    assert!(verify(
        "hmac-key",
        &basic.body,
        &basic.header("x-vigil-signature-256")
    ));
    assert!(!verify(
        "other-key",
        &basic.body,
        &basic.header("x-vigil-signature-256")
    ));
    assert!(verify(
        "other-key",
        &bearer.body,
        &bearer.header("x-vigil-signature-256")
    ));
    assert_eq!(basic.header("content-type"), "application/json");
    assert_eq!(basic.header("x-vigil-notification-type"), "tag_update");
    assert_eq!(bearer.header("x-vigil-notification-type"), "policy_eval");
    assert_eq!(basic.header("x-vigil-attempt"), "1");
    assert_eq!(basic.header("x-vigil-delivery-id"), t1.delivery_id());
    let v = basic.json();
    assert_eq!(v["data"]["notification_user"], "admin");
    assert_eq!(v["data"]["notification_type"], "tag_update");
    d.stop().await;
}

/// An endpoint that stays down past the retry window: a dead letter, a stored and
/// published `webhook_given_up` event; a replay once it is back delivers once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_then_replay() {
    let env = env().await;
    let port = vigil_testkit::free_port();
    let mut cfg = config(vec![(
        "general",
        hook(format!("http://127.0.0.1:{port}/hook")),
    )]);
    cfg.retry_window_secs = 2;
    let t = task(
        "general",
        notification(NotificationKind::TagUpdate, "r.io/a:1", 0),
    );
    publish_task(&env, &t).await;
    let d = start(&env, cfg).await;
    let started = Instant::now();
    loop {
        let dead = env
            .store
            .list_dead_deliveries(Some("general"))
            .await
            .unwrap();
        if !dead.is_empty() {
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].task.delivery_id(), t.delivery_id());
            assert!(dead[0].attempts >= 2);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no dead letter"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = env
        .store
        .get_delivery_log(t.body.id(), &t.delivery_id())
        .await
        .unwrap()
        .unwrap();
    // The log is written last; wait for it.
    let mut log = log;
    let started = Instant::now();
    while log.state != DeliveryState::DeadLettered {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = env
            .store
            .get_delivery_log(t.body.id(), &t.delivery_id())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(log.attempt_count >= 2);
    assert!(log.attempts.iter().all(|a| a.status.is_none()));
    assert!(log.last_error.as_deref().unwrap().contains("connect"));
    let events = env
        .store
        .list_events(
            &EventFilter {
                kind: Some("webhook_given_up".into()),
                ..Default::default()
            },
            now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(ev.level, EventLevel::Error);
    assert_eq!(ev.resource, "general");
    assert_eq!(ev.details["delivery_id"], t.delivery_id());
    assert_eq!(ev.details["attempts"], log.attempt_count.to_string());
    assert!(ev.details.contains_key("last_error"));
    let stream = env
        .js
        .get_stream(results_stream_name(&env.subjects))
        .await
        .unwrap();
    let raw = stream
        .get_last_raw_message_by_subject(&format!("{PREFIX}.event.webhook_given_up"))
        .await
        .unwrap();
    let published: Event = codec::decode(&raw.payload).unwrap();
    assert_eq!(&published, ev);

    // Back up: replay.
    let before = log.attempt_count;
    let (rx, _) = receiver_on(format!("127.0.0.1:{port}").parse().unwrap(), accept_all()).await;
    assert!(replay(
        &env.store,
        &env.js,
        &env.subjects,
        "general",
        &t.delivery_id()
    )
    .await
    .unwrap());
    assert!(
        !replay(
            &env.store,
            &env.js,
            &env.subjects,
            "general",
            &t.delivery_id()
        )
        .await
        .unwrap(),
        "the dead letter is gone"
    );
    wait_for("the replayed delivery", Duration::from_secs(15), || {
        rx.count() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 1);
    assert!(env
        .store
        .list_dead_deliveries(Some("general"))
        .await
        .unwrap()
        .is_empty());
    let started = Instant::now();
    loop {
        let log = env
            .store
            .get_delivery_log(t.body.id(), &t.delivery_id())
            .await
            .unwrap()
            .unwrap();
        if log.state == DeliveryState::Delivered {
            assert_eq!(log.attempt_count, before + 1, "the log keeps counting");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
}

/// An endpoint that accepts connections and never answers does not hold up another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_block_others() {
    let env = env().await;
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in hang.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
    }
    let (rx, url) = receiver(accept_all()).await;
    let cfg = config(vec![
        ("general", hook(format!("http://{hang_addr}/never"))),
        ("vuln_update", hook(format!("{url}/vuln"))),
    ]);
    let mut slow = Vec::new();
    for seq in 0..3 {
        let t = task(
            "general",
            notification(NotificationKind::TagUpdate, &format!("r.io/t{seq}:1"), seq),
        );
        publish_task(&env, &t).await;
        slow.push(t);
    }
    let d = start(&env, cfg).await;
    // Give the hanging endpoint a head start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for seq in 0..3 {
        let t = task(
            "vuln_update",
            notification(NotificationKind::VulnUpdate, &format!("r.io/t{seq}:1"), seq),
        );
        publish_task(&env, &t).await;
    }
    wait_for(
        "the healthy endpoint's deliveries",
        Duration::from_secs(5),
        || rx.count() >= 3,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // The hanging one is still retrying.
    for t in &slow {
        let log = env
            .store
            .get_delivery_log(t.body.id(), &t.delivery_id())
            .await
            .unwrap();
        if let Some(log) = log {
            assert_eq!(log.state, DeliveryState::Pending);
            assert!(log.last_error.as_deref().unwrap().contains("timed out"));
        }
    }
    assert!(!held.lock().unwrap().is_empty());
    d.stop().await;
}

/// The deliverer dies mid-retry; the next one resumes the delivery, which arrives once,
/// and the log goes on counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_retry_resumes() {
    let env = env().await;
    let up = Arc::new(AtomicBool::new(false));
    let up2 = up.clone();
    let (rx, url) = receiver(Arc::new(move |_| {
        if up2.load(Ordering::SeqCst) {
            Reply::Accept
        } else {
            Reply::Status(503)
        }
    }))
    .await;
    let cfg = config(vec![("general", hook(format!("{url}/hook")))]);
    let t = task(
        "general",
        notification(NotificationKind::TagUpdate, "r.io/a:1", 0),
    );
    publish_task(&env, &t).await;
    let first = start(&env, cfg.clone()).await;
    let started = Instant::now();
    let before = loop {
        if let Some(l) = env
            .store
            .get_delivery_log(t.body.id(), &t.delivery_id())
            .await
            .unwrap()
        {
            if l.attempt_count >= 3 {
                break l;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no retries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Crash: the task is aborted (no ack, no NAK).
    first.handle.abort();
    let _ = first.handle.await;
    drop(first.stop);
    let before = env
        .store
        .get_delivery_log(t.body.id(), &t.delivery_id())
        .await
        .unwrap()
        .map(|l| l.attempt_count)
        .unwrap_or(before.attempt_count);
    assert_eq!(rx.accepted().len(), 0);
    up.store(true, Ordering::SeqCst);
    let second = start(&env, cfg).await;
    wait_for("the resumed delivery", Duration::from_secs(25), || {
        rx.count() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.count(), 1, "delivered once");
    let log = env
        .store
        .get_delivery_log(t.body.id(), &t.delivery_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.state, DeliveryState::Delivered);
    assert_eq!(log.attempt_count, before + 1, "the log continued counting");
    assert_eq!(
        rx.accepted()[0].header("x-vigil-attempt"),
        log.attempt_count.to_string()
    );
    second.stop().await;
}

/// Events at or above `event_level` reach the `event` webhook; lower ones do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_forwarder_filters_by_level() {
    let env = env().await;
    let (rx, url) = receiver(accept_all()).await;
    let mut cfg = config(vec![("event", hook(format!("{url}/events")))]);
    cfg.event_level = "warn".into();
    let d = start(&env, cfg).await;
    let ev = |id: &str, level: EventLevel| Event {
        id: id.to_string(),
        account: "admin".into(),
        level,
        kind: "analysis_failed".into(),
        resource: format!("r.io/{id}:1"),
        message: "something".into(),
        details: Default::default(),
        at: now_millis(),
    };
    for (subject, e) in [
        ("x", ev("ev-info", EventLevel::Info)),
        ("y", ev("ev-error", EventLevel::Error)),
    ] {
        env.js
            .send_publish(
                format!("{PREFIX}.event.{subject}"),
                Publish::build()
                    .payload(codec::encode(&e).unwrap().into())
                    .message_id(e.id.clone()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_for("the error event", Duration::from_secs(15), || {
        rx.count() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = rx.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-vigil-notification-id"), "ev-error");
    assert_eq!(got[0].header("x-vigil-notification-type"), "event");
    let v = got[0].json();
    assert_eq!(v["data"]["notification_type"], "event");
    assert_eq!(v["data"]["notification_payload"]["level"], "error");
    d.stop().await;
}

// ---------------------------------------------------------------- TLS

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throw-away CA and a server certificate for 127.0.0.1: (ca.pem, srv.pem, srv.key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=vigil test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// A minimal HTTPS receiver (rustls over std threads): answers 200 to every complete
/// request and counts them.
fn tls_receiver(cert: &Path, key: &Path) -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = config.clone();
            let c = c.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let header_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while buf.len() < header_end + len {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, count)
}

/// HTTPS: delivered when the endpoint's `ca_cert` is the receiver's CA, refused with a
/// TLS error without it; `insecure_skip_tls_verify` opts out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let env = env().await;
    let (ca, cert, key) = make_certs(env.dir.path());
    let (port, count) = tls_receiver(&cert, &key);
    let url = format!("https://127.0.0.1:{port}/hook");

    // Without the CA: refused.
    let cfg = config(vec![("general", hook(url.clone()))]);
    let (endpoint, a) = send_test(&cfg, "tag_update", "admin").await.unwrap();
    assert_eq!(endpoint, "general");
    assert_eq!(a.status, None);
    let err = a.error.unwrap();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "a TLS error: {err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);

    // Opt-out.
    let insecure = WebhookConfig {
        insecure_skip_tls_verify: true,
        ..hook(url.clone())
    };
    let (_, a) = send_test(&config(vec![("general", insecure)]), "tag_update", "admin")
        .await
        .unwrap();
    assert_eq!(a.status, Some(200), "{a:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // With the CA, through the deliverer.
    let trusted = WebhookConfig {
        ca_cert: Some(ca),
        ..hook(url)
    };
    let cfg = config(vec![("general", trusted)]);
    let t = task(
        "general",
        notification(NotificationKind::TagUpdate, "r.io/a:1", 0),
    );
    publish_task(&env, &t).await;
    let d = start(&env, cfg).await;
    wait_for("the https delivery", Duration::from_secs(15), || {
        count.load(Ordering::SeqCst) >= 2
    })
    .await;
    let started = Instant::now();
    loop {
        let log = env
            .store
            .get_delivery_log(t.body.id(), &t.delivery_id())
            .await
            .unwrap();
        if log
            .as_ref()
            .is_some_and(|l| l.state == DeliveryState::Delivered)
        {
            assert_eq!(log.unwrap().attempt_count, 1);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
}

/// `send_test` posts a sample to the webhook that gets the type; clear errors otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_reaches_the_endpoint() {
    let (rx, url) = receiver(accept_all()).await;
    let cfg = config(vec![
        (
            "general",
            hook(format!("{url}/general/<notification_type>")),
        ),
        ("event", hook(format!("{url}/events"))),
    ]);
    let (endpoint, a) = send_test(&cfg, "policy_eval", "acme").await.unwrap();
    assert_eq!(endpoint, "general");
    assert_eq!(a.status, Some(204));
    assert!(a.error.is_none());
    let (endpoint, a) = send_test(&cfg, "event", "acme").await.unwrap();
    assert_eq!(endpoint, "event");
    assert_eq!(a.status, Some(204));
    let got = rx.accepted();
    assert_eq!(got.len(), 2);
    let v = got[0].json();
    assert_eq!(v["data"]["notification_type"], "policy_eval");
    assert_eq!(v["data"]["notification_user"], "acme");
    assert_eq!(got[1].json()["data"]["notification_type"], "event");

    let empty = config(vec![]);
    let e = send_test(&empty, "vuln_update", "acme").await.unwrap_err();
    assert!(matches!(e, DeliverError::NoEndpoint(_)));
    assert!(e.to_string().contains("no webhook"));
    assert!(matches!(
        send_test(&cfg, "bogus", "acme").await.unwrap_err(),
        DeliverError::UnknownType(_)
    ));
}
