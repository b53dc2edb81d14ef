//! Operations endpoints of a `vigil run` process: Prometheus metrics per stage
//! (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`: connected to NATS and
//! every stage consuming).
//!
//! Metrics, each labelled by `stage`:
//! * `vigil_messages_total`: messages received (every delivery);
//! * `vigil_redeliveries_total`: deliveries after the first;
//! * `vigil_errors_total`: handler errors;
//! * `vigil_retries_total`: NAKs for a retry after a transient error;
//! * `vigil_dead_letters_total`: messages given up on;
//! * `vigil_handler_seconds`: handler latency (histogram);
//! * `vigil_in_flight`: messages being handled now;
//! * `vigil_consumer_pending` / `vigil_consumer_ack_pending` /
//!   `vigil_consumer_redelivered`: the stage's durable consumer as JetStream reports it
//!   (cluster-wide), polled every few seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use vigil_contracts::StageName;

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    messages: IntCounterVec,
    redeliveries: IntCounterVec,
    errors: IntCounterVec,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    handler_seconds: HistogramVec,
    in_flight: IntGaugeVec,
    consumer_pending: IntGaugeVec,
    consumer_ack_pending: IntGaugeVec,
    consumer_redelivered: IntGaugeVec,
    ready: Mutex<BTreeMap<StageName, bool>>,
    client: Mutex<Option<async_nats::Client>>,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &["stage"]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["stage"]).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let handler_seconds = HistogramVec::new(
            HistogramOpts::new("vigil_handler_seconds", "Handler latency per message").buckets(
                vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0,
                ],
            ),
            &["stage"],
        )
        .expect("valid metric");
        r.register(Box::new(handler_seconds.clone()))
            .expect("unique metric");
        Metrics {
            messages: counter(&r, "vigil_messages_total", "Messages received"),
            redeliveries: counter(&r, "vigil_redeliveries_total", "Deliveries after the first"),
            errors: counter(&r, "vigil_errors_total", "Handler errors"),
            retries: counter(&r, "vigil_retries_total", "NAKs for a retry"),
            dead_letters: counter(&r, "vigil_dead_letters_total", "Messages given up on"),
            in_flight: gauge(&r, "vigil_in_flight", "Messages being handled"),
            consumer_pending: gauge(
                &r,
                "vigil_consumer_pending",
                "Messages of the stage's consumer not yet delivered",
            ),
            consumer_ack_pending: gauge(
                &r,
                "vigil_consumer_ack_pending",
                "Messages delivered and not yet acknowledged",
            ),
            consumer_redelivered: gauge(
                &r,
                "vigil_consumer_redelivered",
                "Messages the server has redelivered and not yet had acknowledged",
            ),
            handler_seconds,
            registry: r,
            ready: Mutex::new(BTreeMap::new()),
            client: Mutex::new(None),
        }
    }

    /// Register the stages this process runs (not ready until they consume).
    pub fn expect_stages(&self, stages: &[StageName]) {
        let mut r = self.ready.lock().expect("ready map");
        for s in stages {
            r.entry(*s).or_insert(false);
            let l = [s.as_str()];
            // Make every series visible from the start.
            self.messages.with_label_values(&l);
            self.redeliveries.with_label_values(&l);
            self.errors.with_label_values(&l);
            self.retries.with_label_values(&l);
            self.dead_letters.with_label_values(&l);
            self.in_flight.with_label_values(&l);
        }
    }

    /// The NATS connection whose state `/readyz` reports.
    pub fn watch_client(&self, client: async_nats::Client) {
        *self.client.lock().expect("client slot") = Some(client);
    }

    pub fn set_ready(&self, stage: StageName, ready: bool) {
        self.ready.lock().expect("ready map").insert(stage, ready);
    }

    pub fn received(&self, stage: StageName, delivered: u64) {
        self.messages.with_label_values(&[stage.as_str()]).inc();
        if delivered > 1 {
            self.redeliveries.with_label_values(&[stage.as_str()]).inc();
        }
    }

    pub fn in_flight(&self, stage: StageName) -> InFlight {
        let g = self.in_flight.with_label_values(&[stage.as_str()]);
        g.inc();
        InFlight(g)
    }

    pub fn handled(&self, stage: StageName, took: Duration, ok: bool) {
        self.handler_seconds
            .with_label_values(&[stage.as_str()])
            .observe(took.as_secs_f64());
        if !ok {
            self.errors.with_label_values(&[stage.as_str()]).inc();
        }
    }

    pub fn retried(&self, stage: StageName) {
        self.retries.with_label_values(&[stage.as_str()]).inc();
    }

    pub fn dead_lettered(&self, stage: StageName) {
        self.dead_letters.with_label_values(&[stage.as_str()]).inc();
    }

    /// `(ready, why not)`: connected to NATS and every expected stage consuming.
    pub fn readiness(&self) -> (bool, String) {
        let connected = self
            .client
            .lock()
            .expect("client slot")
            .as_ref()
            .map(|c| c.connection_state() == async_nats::connection::State::Connected)
            .unwrap_or(true);
        if !connected {
            return (false, "not connected to NATS".into());
        }
        let r = self.ready.lock().expect("ready map");
        let waiting: Vec<&str> = r
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(s, _)| s.as_str())
            .collect();
        if waiting.is_empty() {
            (true, "ready".into())
        } else {
            (false, format!("not consuming yet: {}", waiting.join(", ")))
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Poll the stages' consumers for their pending counts every `every`, until the
    /// returned task is aborted.
    pub fn poll_consumers(
        self: &Arc<Self>,
        js: async_nats::jetstream::Context,
        stream: String,
        consumers: Vec<(StageName, String)>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(s) = js.get_stream_no_info(&stream).await {
                    for (stage, durable) in &consumers {
                        if let Ok(info) = s.consumer_info(durable).await {
                            let l = [stage.as_str()];
                            this.consumer_pending
                                .with_label_values(&l)
                                .set(info.num_pending as i64);
                            this.consumer_ack_pending
                                .with_label_values(&l)
                                .set(info.num_ack_pending as i64);
                            this.consumer_redelivered
                                .with_label_values(&l)
                                .set(info.num_redelivered as i64);
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr` until the task is aborted.
/// Returns the bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let m1 = metrics.clone();
    let m2 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let m = m2.clone();
                async move {
                    let (ok, why) = m.readiness();
                    let code = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, format!("{why}\n"))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the operations endpoint stopped");
        }
    });
    Ok((bound, task))
}
