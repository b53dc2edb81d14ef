#![allow(dead_code)]
//! Shared setup of the watch tests: a real nats-server with the vigil streams, an
//! embedded store, runners, and readers of what the stage published.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use vigil_contracts::streams::{self, ConsumerTuning, StreamTuning};
use vigil_contracts::{codec, Record, Subject, Subjects};
use vigil_runtime::jetstream::{connect, ensure_streams, JetStreamRunner, RunnerError};
use vigil_runtime::Stage;
use vigil_store::Store;
use vigil_testkit::Nats;
use vigil_watch::{Publisher, WatchConfig, WatchStage};

pub struct Env {
    pub nats: Nats,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub subjects: Subjects,
    pub store: Store,
    pub dir: tempfile::TempDir,
}

pub async fn env(prefix: &str) -> Env {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(prefix);
    ensure_streams(&js, &subjects, &StreamTuning::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("store")).unwrap();
    Env {
        nats,
        client,
        js,
        subjects,
        store,
        dir,
    }
}

impl Env {
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.js.clone(), self.subjects.clone())
    }

    pub fn runner(&self, ack_wait: Duration) -> JetStreamRunner {
        runner_on(self.client.clone(), &self.subjects, ack_wait)
    }

    pub fn stage(&self, cfg: &WatchConfig, publisher: bool) -> Arc<WatchStage> {
        let client = Arc::new(cfg.registry_client().unwrap());
        Arc::new(WatchStage::new(
            self.store.clone(),
            client,
            cfg.clone(),
            publisher.then(|| self.publisher()),
        ))
    }

    pub async fn reader(&self, subject: Subject) -> Reader {
        Reader::new(&self.js, &self.subjects, subject).await
    }
}

pub fn runner_on(client: async_nats::Client, s: &Subjects, ack_wait: Duration) -> JetStreamRunner {
    JetStreamRunner::new(
        client,
        s.clone(),
        ConsumerTuning {
            ack_wait,
            max_deliver: 5,
            max_ack_pending: 64,
        },
    )
}

pub struct Running {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<(), RunnerError>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(60), self.task).await;
    }
}

pub fn run(runner: &JetStreamRunner, stage: Arc<dyn Stage>) -> Running {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let runner = runner.clone();
    Running {
        stop: tx,
        task: tokio::spawn(async move { runner.run_stage(stage, rx).await }),
    }
}

/// Reads one subject: a durable explicit-ack consumer on the work stream (acking what
/// it reads), an ordered consumer on the results stream.
pub struct Reader {
    messages: ReaderKind,
    pub got: Vec<Vec<u8>>,
}

enum ReaderKind {
    Work(Box<pull::Stream>),
    Results(Box<pull::Ordered>),
}

impl Reader {
    pub async fn new(js: &jetstream::Context, s: &Subjects, subject: Subject) -> Reader {
        let filter = s.render(&subject);
        let messages = if streams::is_work_subject(&subject) {
            let stream = js.get_stream(streams::work_stream_name(s)).await.unwrap();
            let name = format!("test_{}", vigil_watch::short_hash(&[&filter]));
            let c = stream
                .get_or_create_consumer(
                    &name,
                    pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: filter,
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(600),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            ReaderKind::Work(Box::new(c.messages().await.unwrap()))
        } else {
            let stream = js
                .get_stream(streams::results_stream_name(s))
                .await
                .unwrap();
            let c = stream
                .create_consumer(pull::OrderedConfig {
                    filter_subject: filter,
                    ..Default::default()
                })
                .await
                .unwrap();
            ReaderKind::Results(Box::new(c.messages().await.unwrap()))
        };
        Reader {
            messages,
            got: Vec::new(),
        }
    }

    async fn next_one(&mut self, until: tokio::time::Instant) -> bool {
        let m: Option<Result<jetstream::Message, String>> = match &mut self.messages {
            ReaderKind::Work(m) => match tokio::time::timeout_at(until, m.next()).await {
                Ok(Some(r)) => Some(r.map_err(|e| e.to_string())),
                _ => None,
            },
            ReaderKind::Results(m) => match tokio::time::timeout_at(until, m.next()).await {
                Ok(Some(r)) => Some(r.map_err(|e| e.to_string())),
                _ => None,
            },
        };
        match m {
            Some(Ok(m)) => {
                if matches!(self.messages, ReaderKind::Work(_)) {
                    let _ = m.ack_with(AckKind::Ack).await;
                }
                self.got.push(m.payload.to_vec());
                true
            }
            Some(Err(e)) => panic!("reading: {e}"),
            None => false,
        }
    }

    /// Read until `done(all decoded so far)` or `timeout`; everything read.
    pub async fn until<T: Record>(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[T]) -> bool,
    ) -> Vec<T> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let all = self.decoded::<T>();
            if done(&all) {
                return all;
            }
            if !self.next_one(until).await && tokio::time::Instant::now() >= until {
                return self.decoded();
            }
        }
    }

    /// Whatever arrives within `quiet`.
    pub async fn drain<T: Record>(&mut self, quiet: Duration) -> Vec<T> {
        loop {
            let until = tokio::time::Instant::now() + quiet;
            if !self.next_one(until).await {
                return self.decoded();
            }
        }
    }

    pub fn decoded<T: Record>(&self) -> Vec<T> {
        self.got
            .iter()
            .filter_map(|b| codec::decode::<T>(b).ok())
            .collect()
    }
}

/// Poll `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= until {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn now() -> i64 {
    vigil_runtime::now_millis()
}

pub fn digest_of_source(source: &str) -> String {
    source
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_default()
}
