//! The registry push endpoint: authentication, malformed bodies, and a real
//! docker-registry notifying it (then the watch stage queues the scan without a poll).

mod common;
use common::*;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_runtime::Stage;

use vigil_contracts::watch::{Event, RegistryPush, WatchedTag};
use vigil_contracts::{ScanRequest, Subject};
use vigil_watch::{serve_push_endpoint, WatchConfig};

const SECRET: &str = "s3cret-token";

async fn post(url: &str, auth: Option<&str>, ctype: &str, body: &str) -> u16 {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("content-type", ctype)
        .body(body.to_string());
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_and_garbage_are_rejected_with_events() {
    let env = env("pushrej").await;
    let (addr, task) = serve_push_endpoint(
        "127.0.0.1:0",
        SECRET,
        None,
        env.publisher(),
        env.store.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{addr}/v1/registry/events");
    let ct = "application/vnd.docker.distribution.events.v1+json";
    let mut events = env
        .reader(Subject::Event("push_event_rejected".into()))
        .await;
    assert_eq!(post(&url, Some("Bearer wrong"), ct, "{}").await, 401);
    assert_eq!(post(&url, None, ct, "{}").await, 401);
    let got: Vec<Event> = events
        .until(Duration::from_secs(5), |e: &[Event]| !e.is_empty())
        .await;
    assert_eq!(got.len(), 1, "one event per reason at a time: {got:?}");
    assert_eq!(got[0].kind, "push_event_rejected");
    assert_eq!(
        post(&url, Some(&format!("Bearer {SECRET}")), ct, "not json").await,
        400
    );
    let got: Vec<Event> = events
        .until(Duration::from_secs(5), |e: &[Event]| e.len() >= 2)
        .await;
    assert_eq!(got.len(), 2);
    assert!(
        got[1].details["error"].contains("not a notification envelope"),
        "{got:?}"
    );
    // The bare secret is accepted too; an envelope without pushes is fine.
    assert_eq!(post(&url, Some(SECRET), ct, r#"{"events":[]}"#).await, 200);
    assert_eq!(
        post(&url, Some(SECRET), "application/json", r#"{"events":[]}"#).await,
        200
    );
    // Too large.
    let big = format!(r#"{{"events":[],"pad":"{}"}}"#, "x".repeat(2 << 20));
    assert_eq!(post(&url, Some(SECRET), ct, &big).await, 413);
    let stored = env
        .store
        .list_events(&Default::default(), now())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    task.abort();
}

struct NotifyingRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NotifyingRegistry {
    fn start(endpoint: &str) -> NotifyingRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = vigil_testkit::free_port();
        let config = format!(
            "version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
notifications:
  endpoints:
    - name: vigil
      url: {endpoint}
      headers:
        Authorization: [Bearer {SECRET}]
      timeout: 2s
      threshold: 5
      backoff: 1s
health:
  storagedriver:
    enabled: false
",
            root = dir.path().join("storage").display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut r = NotifyingRegistry {
            child,
            port,
            _dir: dir,
        };
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = vigil_testkit::http_get(port, "/v2/") {
                return r;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                let mut err = String::new();
                let _ = r.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("docker-registry exited {status}: {err}");
            }
            assert!(
                std::time::Instant::now() < until,
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NotifyingRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_registry_push_is_scanned_without_a_poll() {
    let env = env("pushreal").await;
    let (addr, task) = serve_push_endpoint(
        "127.0.0.1:0",
        SECRET,
        None,
        env.publisher(),
        env.store.clone(),
    )
    .await
    .unwrap();
    let registry = NotifyingRegistry::start(&format!("http://{addr}/v1/registry/events"));
    let host = registry.host();
    // The pushed tag is watched (never polled: no scheduler runs).
    let key = format!("{host}/r/pushed:1");
    env.store
        .put_watched_tag(&WatchedTag {
            account: "admin".into(),
            tag: key.clone(),
            interval_secs: Some(3600),
            active: true,
            from_repo: None,
            digest: None,
            last_checked_at: Some(now()),
            last_error: None,
            failures: 0,
            created_at: now(),
        })
        .await
        .unwrap();
    let mut scans = env.reader(Subject::ScanRequest).await;
    let stage = Arc::new(Recording {
        inner: env.stage(&WatchConfig::default(), true),
        seen: Mutex::new(Vec::new()),
    });
    let runner = env.runner(Duration::from_secs(10));
    let running = run(&runner, stage.clone());
    let digest = tokio::task::spawn_blocking({
        let host = host.clone();
        move || vigil_testkit::tiny_images::push_tiny(&host, "r/pushed", "1", "p1")
    })
    .await
    .unwrap();
    let got: Vec<ScanRequest> = scans
        .until(Duration::from_secs(30), |s: &[ScanRequest]| !s.is_empty())
        .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].request.source, format!("{key}@{digest}"));
    let seen = stage.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (subject, payload) in &seen {
        assert_eq!(*subject, Subject::WatchPush, "no poll");
        let p: RegistryPush = vigil_contracts::codec::decode(payload).unwrap();
        assert_eq!(p.digest, digest, "blob pushes are ignored: {p:?}");
        assert_eq!(p.registry, host);
        assert_eq!(p.repository, "r/pushed");
        assert_eq!(p.tag.as_deref(), Some("1"));
    }
    // (The scan is published before the watched tag records the digest.)
    let store = env.store.clone();
    eventually(
        Duration::from_secs(5),
        "the watched tag to record the digest",
        || {
            let (store, key, digest) = (store.clone(), key.clone(), digest.clone());
            async move {
                let w = store.get_watched_tag(&key).await.unwrap().unwrap();
                (w.digest.as_deref() == Some(digest.as_str())).then_some(())
            }
        },
    )
    .await;
    assert_eq!(env.store.tag_history(&key).await.unwrap().len(), 1);
    // Nothing more comes (the registry got its 200 and does not retry).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scans
            .drain::<ScanRequest>(Duration::from_millis(500))
            .await
            .len(),
        1
    );
    running.stop().await;
    task.abort();
}

/// The watch stage, recording what it was given.
struct Recording {
    inner: Arc<vigil_watch::WatchStage>,
    seen: Mutex<Vec<(Subject, Vec<u8>)>>,
}

#[async_trait::async_trait]
impl Stage for Recording {
    fn name(&self) -> vigil_contracts::StageName {
        self.inner.name()
    }
    async fn handle(
        &self,
        subject: &Subject,
        payload: &[u8],
    ) -> Result<Vec<vigil_runtime::Outgoing>, vigil_runtime::StageError> {
        self.seen
            .lock()
            .unwrap()
            .push((subject.clone(), payload.to_vec()));
        self.inner.handle(subject, payload).await
    }
}
