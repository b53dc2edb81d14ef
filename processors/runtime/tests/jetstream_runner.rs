//! The JetStream runner against a real nats-server: outputs published with
//! de-duplication ids, transient failures redelivered then dead-lettered with a failed
//! result routed to notify, and a NATS restart survived.

mod common;
use common::request;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use vigil_contracts::streams::ConsumerTuning;
use vigil_contracts::*;
use vigil_runtime::jetstream::{connect, ensure_streams, publish, JetStreamRunner};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_testkit::Nats;

/// A fetch stage that fails `fail_times` times (transiently) and then forwards.
struct Flaky {
    calls: AtomicU32,
    fail_times: u32,
    permanent: bool,
}

#[async_trait]
impl Stage for Flaky {
    fn name(&self) -> StageName {
        StageName::Fetch
    }
    async fn handle(&self, _s: &Subject, payload: &[u8]) -> Result<Vec<Outgoing>, StageError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let req: ScanRequest = codec::decode(payload)?;
        if self.permanent {
            return Err(StageError::new(FailureKind::NotFound, "no such image"));
        }
        if n <= self.fail_times {
            return Err(StageError::new(
                FailureKind::Upstream,
                format!("attempt {n} failed"),
            ));
        }
        Ok(vec![Outgoing::record(
            Subject::Result(req.request.request_id.clone()),
            format!("result-{}", req.request.request_id),
            &ScanResult {
                request_id: req.request.request_id.clone(),
                status: ScanStatus::Succeeded,
                source: req.request.source,
                image_digest: None,
                tag: None,
                summary: None,
                failure: None,
                completed_at: 0,
                report: None,
                platform_requests: Vec::new(),
            },
        )?])
    }
}

fn tuning() -> ConsumerTuning {
    ConsumerTuning {
        ack_wait: Duration::from_secs(3),
        max_deliver: 3,
        max_ack_pending: 16,
    }
}

async fn next_on(client: &async_nats::Client, subject: String) -> async_nats::Subscriber {
    client.subscribe(subject).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_succeed() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("t1");
    let runner = JetStreamRunner::new(client.clone(), s.clone(), tuning());
    ensure_streams(runner.context(), &s, &Default::default())
        .await
        .unwrap();
    ensure_streams(runner.context(), &s, &Default::default())
        .await
        .unwrap(); // idempotent
    let mut results = next_on(&client, s.render(&Subject::Result("r1".into()))).await;
    let stage = Arc::new(Flaky {
        calls: AtomicU32::new(0),
        fail_times: 1,
        permanent: false,
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn({
        let runner = runner.clone();
        let stage = stage.clone();
        async move { runner.run_stage(stage, rx).await }
    });
    request(runner.context(), &s, "r1").await;
    // A duplicate publish with the same Nats-Msg-Id is dropped by the stream.
    request(runner.context(), &s, "r1").await;
    let msg = tokio::time::timeout(Duration::from_secs(20), results.next())
        .await
        .expect("result within 20 s")
        .unwrap();
    let r: ScanResult = codec::decode(&msg.payload).unwrap();
    assert_eq!(r.status, ScanStatus::Succeeded);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stage.calls.load(Ordering::SeqCst),
        2,
        "one failure, one success, duplicate dropped"
    );
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_dead_letter_and_route_failure_to_notify() {
    let nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("t2");
    let runner = JetStreamRunner::new(client.clone(), s.clone(), tuning());
    ensure_streams(runner.context(), &s, &Default::default())
        .await
        .unwrap();
    let mut dlq = next_on(&client, s.render(&Subject::DeadLetter(StageName::Fetch))).await;
    let mut notify_in = next_on(&client, s.render(&Subject::Stage(StageName::Notify))).await;
    let stage = Arc::new(Flaky {
        calls: AtomicU32::new(0),
        fail_times: 100,
        permanent: false,
    });
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        let stage = stage.clone();
        async move { runner.run_stage(stage, rx).await }
    });
    request(runner.context(), &s, "r2").await;
    let m = tokio::time::timeout(Duration::from_secs(40), dlq.next())
        .await
        .expect("dead letter")
        .unwrap();
    let dl: DeadLetter = codec::decode(&m.payload).unwrap();
    assert_eq!(dl.stage, StageName::Fetch);
    assert_eq!(dl.deliveries, 3);
    assert!(dl.error.contains("attempt 3 failed"), "{}", dl.error);
    let req: ScanRequest = codec::decode(&dl.payload).unwrap();
    assert_eq!(req.request.request_id, "r2");
    let m = tokio::time::timeout(Duration::from_secs(5), notify_in.next())
        .await
        .expect("failure routed to notify")
        .unwrap();
    let f: StageFailed = codec::decode(&m.payload).unwrap();
    assert_eq!(f.failure.kind, FailureKind::Upstream);
    assert_eq!(f.failure.stage, StageName::Fetch);
    assert_eq!(stage.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_at_once_and_runner_survives_nats_restart() {
    let mut nats = Nats::start();
    let client = connect(&nats.url()).await.unwrap();
    let s = Subjects::new("t3");
    let runner = JetStreamRunner::new(client.clone(), s.clone(), tuning());
    ensure_streams(runner.context(), &s, &Default::default())
        .await
        .unwrap();
    let stage = Arc::new(Flaky {
        calls: AtomicU32::new(0),
        fail_times: 0,
        permanent: true,
    });
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let runner = runner.clone();
        let stage = stage.clone();
        async move { runner.run_stage(stage, rx).await }
    });
    nats.restart();
    // The client reconnects on its own; subscriptions come back with it.
    let mut notify_in = next_on(&client, s.render(&Subject::Stage(StageName::Notify))).await;
    let mut sent = false;
    for _ in 0..50 {
        let out = Outgoing::record(
            Subject::ScanRequest,
            "req-r3",
            &ScanRequest {
                request: RequestContext::new("r3", "x"),
                force: false,
                sbom: None,
            },
        )
        .unwrap();
        if publish(runner.context(), &s, &out).await.is_ok() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sent, "publish after NATS restart");
    let m = tokio::time::timeout(Duration::from_secs(30), notify_in.next())
        .await
        .expect("failure after restart")
        .unwrap();
    let f: StageFailed = codec::decode(&m.payload).unwrap();
    assert_eq!(f.failure.kind, FailureKind::NotFound);
    assert_eq!(
        stage.calls.load(Ordering::SeqCst),
        1,
        "permanent errors are not retried"
    );
}
