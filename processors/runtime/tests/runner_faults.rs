//! The JetStream runner's defects that only show once a handler takes longer than a
//! second, a publish fails or a record is larger than NATS's `max_payload`; each test
//! runs against a real nats-server.

mod common;
use common::request;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use vigil_contracts::streams::{self, ConsumerTuning, StreamTuning};
use vigil_contracts::*;
use vigil_runtime::jetstream::{
    connect, ensure_streams, resolve_payload, BucketSettings, JetStreamRunner, PayloadSpill,
};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_testkit::Nats;

/// A fetch stage that works for `work` on every call, then answers with a result whose
/// report holds `packages` packages (so that it can be made larger than a message).
struct Slow {
    calls: AtomicU32,
    work: Duration,
    packages: usize,
}

impl Slow {
    fn new(work: Duration, packages: usize) -> Arc<Self> {
        Arc::new(Slow {
            calls: AtomicU32::new(0),
            work,
            packages,
        })
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn package(i: usize) -> Package {
    let mut p = Package::new(
        format!("package-number-{i:06}-with-a-long-name"),
        format!("1.{i}.0-r{i}"),
        PackageType::Npm,
    );
    p.purl = Some(format!("pkg:npm/package-number-{i:06}@1.{i}.0"));
    p
}

#[async_trait]
impl Stage for Slow {
    fn name(&self) -> StageName {
        StageName::Fetch
    }
    async fn handle(&self, _s: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let req: ScanRequest = codec::decode(payload)?;
        tokio::time::sleep(self.work).await;
        let id = req.request.request_id.clone();
        let report = (self.packages > 0).then(|| ScanReport {
            packages: (0..self.packages).map(package).collect(),
            ..Default::default()
        });
        Ok(vec![Outgoing::record(
            Subject::Result(id.clone()),
            format!("result-{id}"),
            &ScanResult {
                request_id: id,
                status: ScanStatus::Succeeded,
                source: req.request.source,
                image_digest: None,
                tag: None,
                summary: None,
                failure: None,
                completed_at: 0,
                report,
                platform_requests: Vec::new(),
            },
        )?])
    }
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), vigil_runtime::jetstream::RunnerError>>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("graceful shutdown")
            .unwrap()
            .unwrap();
    }
}

fn run(runner: &JetStreamRunner, stage: Arc<dyn Stage>) -> Running {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let runner = runner.clone();
    Running {
        stop: tx,
        task: tokio::spawn(async move { runner.run_stage(stage, rx).await }),
    }
}

/// Every result published for `id` on the results stream, decoded (following payload
/// references).
async fn results_for(
    js: &async_nats::jetstream::Context,
    s: &Subjects,
    id: &str,
    want: usize,
    timeout: Duration,
) -> Vec<ScanResult> {
    let stream = js
        .get_stream(streams::results_stream_name(s))
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: s.render(&Subject::Result(id.into())),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < want {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(Ok(m))) => {
                let bytes = resolve_payload(js, s, &m.payload).await.unwrap();
                out.push(codec::decode::<ScanResult>(&bytes).unwrap());
            }
            Ok(other) => panic!("results stream ended: {other:?}"),
            Err(_) => break,
        }
    }
    out
}

/// Results for `id` that appear within `quiet` (to check that no second one comes).
async fn more_results(
    js: &async_nats::jetstream::Context,
    s: &Subjects,
    id: &str,
    quiet: Duration,
) -> usize {
    results_for(js, s, id, usize::MAX, quiet).await.len()
}

/// Defect: the consumers set a server-side backoff list beside `ack_wait` 120 s, and
/// nats-server then uses `backoff[0]` (1 s) as the ack wait, so a handler of 10 s ran
/// several times at once. The consumer must report the configured ack wait, and a slow
/// handler must be delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_handler_is_delivered_exactly_once() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("slow");
    let tuning = ConsumerTuning::default();
    assert_eq!(tuning.ack_wait, Duration::from_secs(120));
    let runner = JetStreamRunner::new(client.clone(), s.clone(), tuning.clone());
    ensure_streams(runner.context(), &s, &StreamTuning::default())
        .await
        .unwrap();
    let stage = Slow::new(Duration::from_secs(10), 0);
    let running = run(&runner, stage.clone());
    request(runner.context(), &s, "slow-1").await;
    let got = results_for(runner.context(), &s, "slow-1", 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "one result");
    // Longer than the 1 s the server would have used: no second delivery comes.
    assert_eq!(
        more_results(runner.context(), &s, "slow-1", Duration::from_secs(3)).await,
        1
    );
    assert_eq!(stage.calls(), 1, "the handler ran once");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = runner
        .context()
        .get_stream(streams::work_stream_name(&s))
        .await
        .unwrap()
        .get_consumer("SLOW_fetch")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(120));
    assert!(info.config.backoff.is_empty(), "{:?}", info.config.backoff);
    running.stop().await;
}

/// Progress acks keep a message ours for a handler many times longer than the ack wait:
/// with an ack wait of 2 s, a handler of `VIGIL_TEST_LONG_HANDLER_SECS` (default 300)
/// runs once and its result is published once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_acks_keep_a_long_handler_alive() {
    let secs: u64 = std::env::var("VIGIL_TEST_LONG_HANDLER_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("long");
    let tuning = ConsumerTuning {
        ack_wait: Duration::from_secs(2),
        max_deliver: 3,
        max_ack_pending: 16,
    };
    let runner = JetStreamRunner::new(client.clone(), s.clone(), tuning);
    ensure_streams(runner.context(), &s, &StreamTuning::default())
        .await
        .unwrap();
    let stage = Slow::new(Duration::from_secs(secs), 0);
    let running = run(&runner, stage.clone());
    request(runner.context(), &s, "long-1").await;
    let got = results_for(
        runner.context(),
        &s,
        "long-1",
        1,
        Duration::from_secs(secs + 60),
    )
    .await;
    assert_eq!(got.len(), 1, "a result after {secs} s");
    assert_eq!(
        more_results(runner.context(), &s, "long-1", Duration::from_secs(5)).await,
        1
    );
    assert_eq!(stage.calls(), 1, "never redelivered while it worked");
    running.stop().await;
}

/// Messages are pulled only for free handler slots: with two slots, eight messages and a
/// handler of 3 s against an ack wait of 2 s, none waits in a client buffer long enough
/// to be redelivered, so the handler runs exactly eight times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_messages_do_not_age_in_a_busy_process() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("busy");
    let tuning = ConsumerTuning {
        ack_wait: Duration::from_secs(2),
        max_deliver: 5,
        max_ack_pending: 16,
    };
    let mut runner = JetStreamRunner::new(client.clone(), s.clone(), tuning);
    runner.concurrency = 2;
    ensure_streams(runner.context(), &s, &StreamTuning::default())
        .await
        .unwrap();
    for i in 0..8 {
        request(runner.context(), &s, &format!("busy-{i}")).await;
    }
    let stage = Slow::new(Duration::from_secs(3), 0);
    let running = run(&runner, stage.clone());
    for i in 0..8 {
        let got = results_for(
            runner.context(),
            &s,
            &format!("busy-{i}"),
            1,
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(got.len(), 1, "busy-{i}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stage.calls(), 8, "each message handled once");
    running.stop().await;
}

/// Defect: when publishing the outputs failed, the runner NAKed without looking at the
/// delivery count, and after `max_deliver` the server stopped delivering: no result, no
/// dead letter. Here the results stream is missing while the request is handled (as when
/// a stream is unavailable); once it is back, the request still ends in one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_outputs_cannot_be_published_still_ends_in_a_result() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("unpub");
    let tuning = ConsumerTuning {
        ack_wait: Duration::from_secs(3),
        max_deliver: 2,
        max_ack_pending: 16,
    };
    let runner = JetStreamRunner::new(client.clone(), s.clone(), tuning);
    let st = StreamTuning::default();
    ensure_streams(runner.context(), &s, &st).await.unwrap();
    runner
        .context()
        .delete_stream(streams::results_stream_name(&s))
        .await
        .unwrap();
    let stage = Slow::new(Duration::ZERO, 0);
    let running = run(&runner, stage.clone());
    request(runner.context(), &s, "unpub-1").await;
    // Wait past max_deliver deliveries (retried after 1 s, then 5 s).
    let start = Instant::now();
    while stage.calls() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the message stopped being delivered after {} calls",
            stage.calls()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure_streams(runner.context(), &s, &st).await.unwrap();
    let got = results_for(runner.context(), &s, "unpub-1", 1, Duration::from_secs(90)).await;
    assert_eq!(got.len(), 1, "the request ended in a result");
    assert_eq!(got[0].status, ScanStatus::Succeeded);
    // And the work stream is empty: nothing stranded.
    let mut work = runner
        .context()
        .get_stream(streams::work_stream_name(&s))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let n = work.info().await.unwrap().state.messages;
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{n} messages left in the work stream"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
}

/// Defect: a result larger than the server's `max_payload` (1 MiB) could not be
/// published, so the request was lost. It travels by reference to the payload bucket
/// and reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_larger_than_max_payload_travels_by_reference() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("big");
    let tuning = ConsumerTuning {
        ack_wait: Duration::from_secs(5),
        max_deliver: 3,
        max_ack_pending: 16,
    };
    let mut runner = JetStreamRunner::new(client.clone(), s.clone(), tuning);
    ensure_streams(runner.context(), &s, &StreamTuning::default())
        .await
        .unwrap();
    assert_eq!(client.server_info().max_payload, 1024 * 1024);
    let settings = BucketSettings {
        max_age: Duration::from_secs(3600),
        max_bytes: -1,
        replicas: 1,
    };
    let spill = PayloadSpill::open(&client, runner.context(), &s, &settings, 4 << 20)
        .await
        .unwrap();
    assert!(
        spill.inline_limit < 1024 * 1024,
        "the inline limit stays below max_payload: {}",
        spill.inline_limit
    );
    runner.spill = Some(spill);
    // 20,000 packages: several MB encoded.
    let stage = Slow::new(Duration::ZERO, 20_000);
    let running = run(&runner, stage.clone());
    request(runner.context(), &s, "big-1").await;
    let got = results_for(runner.context(), &s, "big-1", 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "the large result arrived");
    let report = got[0].report.as_ref().expect("report");
    assert_eq!(report.packages.len(), 20_000);
    assert_eq!(report.packages[12_345], package(12_345));
    assert_eq!(stage.calls(), 1);
    running.stop().await;
}

/// A changed ack wait or delivery limit is applied to an existing consumer at start, and
/// a changed results TTL to the existing stream; a stream whose retention cannot be
/// changed in place is refused with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_settings_are_applied_at_start() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("drift");
    let js = async_nats::jetstream::new(client.clone());
    let first = StreamTuning {
        results_max_age: Duration::from_secs(3600),
        ..Default::default()
    };
    ensure_streams(&js, &s, &first).await.unwrap();
    let def = streams::stage_consumer(
        &s,
        StageName::Fetch,
        &ConsumerTuning {
            ack_wait: Duration::from_secs(3),
            max_deliver: 2,
            max_ack_pending: 8,
        },
        &first,
    );
    vigil_runtime::jetstream::ensure_consumer(&js, &def)
        .await
        .unwrap();
    // Restarted with other settings.
    let second = StreamTuning {
        results_max_age: Duration::from_secs(7200),
        ..Default::default()
    };
    ensure_streams(&js, &s, &second).await.unwrap();
    let mut results = js
        .get_stream(streams::results_stream_name(&s))
        .await
        .unwrap();
    assert_eq!(
        results.info().await.unwrap().config.max_age,
        Duration::from_secs(7200)
    );
    let def = streams::stage_consumer(
        &s,
        StageName::Fetch,
        &ConsumerTuning {
            ack_wait: Duration::from_secs(9),
            max_deliver: 4,
            max_ack_pending: 5,
        },
        &second,
    );
    let mut c = vigil_runtime::jetstream::ensure_consumer(&js, &def)
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(9));
    assert_eq!(info.config.max_ack_pending, 5);

    // A work stream made with the wrong retention is refused, not silently used.
    let other = Subjects::new("wrongret");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: streams::work_stream_name(&other),
        subjects: vec!["wrongret.scan.request".into()],
        retention: async_nats::jetstream::stream::RetentionPolicy::Limits,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = ensure_streams(&js, &other, &second).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("WRONGRET_WORK") && msg.contains("retention"),
        "{msg}"
    );
}
