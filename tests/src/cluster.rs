//! A distributed deployment on this machine, for the cluster tests and the chaos
//! command of the load generator: a 3-node nats-server cluster, a registry with the
//! testbed images, and every stage in its own `vigil run` process (any number of
//! replicas each) on the JetStream store backend, all R3.
//!
//! As root ([`vigil_testkit::isolation_available`]) every nats node runs in its own
//! network namespace behind a bridge, like a host of its own
//! ([`NatsCluster::start_isolated`]), so that the chaos run can cut one off the network;
//! otherwise all run on loopback ([`NatsCluster::start`]). The registry and the stage
//! processes run in the host namespace and reach the nodes through the cluster's URLs
//! (the bridge addresses in isolated mode).
//!
//! [`Deployment::submit`] publishes scan requests straight onto the work subject;
//! [`Deployment::results`] reads every result on the results stream, so that lost and
//! duplicated results can be counted; [`Deployment::work_left`] is what is still in the
//! work stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_contracts::streams;
use vigil_contracts::{codec, RequestContext, ScanRequest, ScanResult, Subject, Subjects};
use vigil_testkit::{NatsCluster, Registry, RegistryOpts};

use crate::Vigil;

/// One stage process.
pub struct StageProcess {
    pub stage: String,
    pub replica: usize,
    pub vigil: Vigil,
    child: Option<Child>,
    starts: usize,
}

impl StageProcess {
    fn log_name(&self) -> String {
        format!("{}-{}.log", self.stage, self.replica)
    }

    fn start(&mut self) {
        let log = self.vigil.data_dir.path().join(self.log_name());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("stage log");
        let child = self
            .vigil
            .command(&["run", &self.stage])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn vigil run");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the process (all its runs) logged.
    pub fn log(&self) -> String {
        self.vigil.log(&self.log_name())
    }

    /// Peak resident set size of the running process, from `/proc` (kB).
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl StageProcess {
    fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Every process gets SIGTERM first, so that they shut down side by side.
        for p in &self.processes {
            p.terminate();
        }
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        self.terminate();
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The cluster, the registry and the stage processes.
pub struct Deployment {
    pub nats: NatsCluster,
    pub registry: Registry,
    pub processes: Vec<StageProcess>,
    pub subjects: Subjects,
    pub rt: tokio::runtime::Runtime,
    client: async_nats::Client,
}

/// How a deployment is laid out.
pub struct Layout {
    /// `(stage, replicas)`.
    pub stages: Vec<(&'static str, usize)>,
    /// Testbed images pushed to the registry.
    pub images: Vec<&'static str>,
    /// Ack wait of the stage consumers (seconds): how soon a killed process's messages
    /// are delivered again.
    pub ack_wait_secs: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            stages: vec![
                ("fetch", 1),
                ("extract", 2),
                ("analyze", 1),
                ("match", 2),
                ("evaluate", 1),
                ("notify", 1),
                ("feeds", 1),
            ],
            images: vec![
                "debian-base",
                "layered-whiteout",
                "misconfig-secrets",
                "node-app",
                "go-bin",
            ],
            ack_wait_secs: 10,
        }
    }
}

impl Deployment {
    pub fn start(layout: Layout) -> Deployment {
        let nats = if vigil_testkit::isolation_available() {
            NatsCluster::start_isolated(3)
        } else {
            NatsCluster::start(3)
        };
        eprintln!(
            "nats cluster {} ({})",
            nats.urls(),
            if nats.is_isolated() {
                "a network namespace per node"
            } else {
                "loopback"
            }
        );
        let registry = Registry::start(RegistryOpts::default());
        if !layout.images.is_empty() {
            registry.push_testbed(&layout.images);
        }
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let urls = nats.urls();
        let client = rt.block_on(async {
            async_nats::connect(nats.url_list())
                .await
                .expect("connect to the cluster")
        });
        let mut processes = Vec::new();
        for (stage, n) in &layout.stages {
            for replica in 1..=*n {
                let vigil = Vigil::new()
                    .env("VIGIL_NATS__URL", &urls)
                    .env("VIGIL_NATS__REPLICAS", "3")
                    .env("VIGIL_STORE__BACKEND", "jetstream")
                    .env(
                        "VIGIL_NATS__ACK_WAIT_SECS",
                        &layout.ack_wait_secs.to_string(),
                    )
                    .env("VIGIL_NATS__CONCURRENCY", "4")
                    .env(
                        "VIGIL_LOG",
                        "vigil=info,vigil_runtime=info,vigil_extract=info",
                    );
                let mut p = StageProcess {
                    stage: stage.to_string(),
                    replica,
                    vigil,
                    child: None,
                    starts: 0,
                };
                p.start();
                processes.push(p);
            }
        }
        Deployment {
            nats,
            registry,
            processes,
            subjects: Subjects::default(),
            rt,
            client,
        }
    }

    /// Wait until every stage consumer exists (each process created its own).
    pub fn wait_consuming(&mut self, timeout: Duration) {
        let start = Instant::now();
        for p in &mut self.processes {
            while !p.log().contains("consuming") {
                if let Some(c) = p.child.as_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        panic!(
                            "{}-{} exited ({st}) before consuming:\n{}",
                            p.stage,
                            p.replica,
                            p.log()
                        );
                    }
                }
                assert!(
                    start.elapsed() < timeout,
                    "{}-{} never started consuming:\n{}",
                    p.stage,
                    p.replica,
                    p.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Publish one scan request per id, for the testbed image `images[i % len]`.
    pub fn submit(&self, ids: &[String], images: &[&str]) {
        let host = self.registry.host();
        let sources: Vec<String> = (0..ids.len())
            .map(|i| format!("{host}/{}:latest", images[i % images.len()]))
            .collect();
        self.submit_sources(ids, &sources);
    }

    /// Publish one scan request per id for the source of the same index.
    pub fn submit_sources(&self, ids: &[String], sources: &[String]) {
        let _rt = self.rt.enter();
        let js = async_nats::jetstream::new(self.client.clone());
        self.rt.block_on(async {
            for (id, source) in ids.iter().zip(sources) {
                let mut request = RequestContext::new(id.clone(), source.clone());
                request.submitted_at = vigil_contracts_now();
                let req = ScanRequest {
                    request,
                    force: false,
                    sbom: None,
                };
                let payload = codec::encode(&req).expect("encode");
                let mut tries = 0;
                loop {
                    let sent = async {
                        js.send_publish(
                            self.subjects.render(&Subject::ScanRequest),
                            async_nats::jetstream::message::PublishMessage::build()
                                .payload(payload.clone().into())
                                .message_id(format!("req-{id}")),
                        )
                        .await?
                        .await
                        .map(|_| ())
                        .map_err(async_nats::Error::from)
                    };
                    match sent.await {
                        Ok(()) => break,
                        Err(e) => {
                            tries += 1;
                            assert!(tries < 100, "cannot publish request {id}: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        });
    }

    /// Every result on the results stream, by request id (several when duplicated).
    /// While the cluster recovers from a lost node, a read may time out: retried.
    pub fn results(&self) -> BTreeMap<String, Vec<ScanResult>> {
        for attempt in 1..=30 {
            match self.try_results() {
                Ok(r) => return r,
                Err(e) if attempt < 30 => {
                    eprintln!("reading results: {e}; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => panic!("reading results: {e}"),
            }
        }
        unreachable!()
    }

    fn try_results(&self) -> Result<BTreeMap<String, Vec<ScanResult>>, String> {
        let _rt = self.rt.enter();
        let js = async_nats::jetstream::new(self.client.clone());
        let subjects = self.subjects.clone();
        self.rt.block_on(async move {
            let mut out: BTreeMap<String, Vec<ScanResult>> = BTreeMap::new();
            let stream = js
                .get_stream(streams::results_stream_name(&subjects))
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: format!("{}.result.>", subjects.prefix()),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            while let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(3), messages.next()).await
            {
                // A reference read may time out while a node rejoins: the whole read
                // is retried by `results`.
                let bytes = resolve(&js, &subjects, &m.payload).await?;
                let r: ScanResult = codec::decode(&bytes).expect("a scan result");
                out.entry(r.request_id.clone()).or_default().push(r);
            }
            Ok(out)
        })
    }

    /// Messages still in the work stream.
    pub fn work_left(&self) -> u64 {
        let _rt = self.rt.enter();
        let js = async_nats::jetstream::new(self.client.clone());
        self.rt.block_on(async {
            match js
                .get_stream(streams::work_stream_name(&self.subjects))
                .await
            {
                Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(u64::MAX),
                Err(_) => u64::MAX,
            }
        })
    }

    /// The node index of the work stream's leader.
    pub fn work_leader(&self) -> Option<usize> {
        let _rt = self.rt.enter();
        let js = async_nats::jetstream::new(self.client.clone());
        let leader = self.rt.block_on(async {
            let mut s = js
                .get_stream(streams::work_stream_name(&self.subjects))
                .await
                .ok()?;
            s.info().await.ok()?.cluster.as_ref()?.leader.clone()
        })?;
        (0..self.nats.len()).find(|i| self.nats.server_name(*i) == leader)
    }

    /// Kill process `i` (SIGKILL) and start it again.
    pub fn kill_and_restart(&mut self, i: usize) {
        self.processes[i].kill();
        std::thread::sleep(Duration::from_millis(300));
        self.processes[i].start();
    }

    /// Times the processes were restarted (starts beyond the first).
    pub fn restarts(&self) -> usize {
        self.processes.iter().map(|p| p.starts - 1).sum()
    }

    /// Completed extractions of each layer, counted from the extract processes' logs.
    pub fn extractions(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for p in self.processes.iter().filter(|p| p.stage == "extract") {
            for line in p.log().lines().filter(|l| l.contains("layer indexed")) {
                if let Some(d) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("layer="))
                {
                    *out.entry(d.trim_matches('"').to_string()).or_default() += 1;
                }
            }
        }
        out
    }

    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("===== {}-{}\n{}", p.stage, p.replica, tail(&p.log(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.processes
            .iter()
            .map(|p| p.vigil.data_dir.path().to_path_buf())
            .collect()
    }
}

fn vigil_contracts_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn resolve(
    js: &async_nats::jetstream::Context,
    s: &Subjects,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    vigil_runtime::jetstream::resolve_payload(js, s, payload)
        .await
        .map_err(|e| format!("resolving a payload reference: {e}"))
}

/// The chaos run of the cluster test and of `vigil-loadtest chaos`: half the requests,
/// six stage processes killed (SIGKILL) and restarted, the work stream's leader node
/// killed while the other half is submitted and started again, four more processes
/// killed, another node's host cut off for 30 s, a third restarted; then wait (at most
/// `settle`) until every request has a result and the work stream is empty.
///
/// The cut-off is real when the cluster is isolated ([`NatsCluster::cut_off`]: the
/// node's link goes down, its process runs on unreachable; then
/// [`NatsCluster::reconnect`] and a wait, at most 120 s, until it routes to the other
/// nodes and knows the meta leader again); on loopback the node is frozen instead (SIGSTOP, [`NatsCluster::pause`], then
/// SIGCONT). Which one was used is printed.
pub fn chaos_run(d: &mut Deployment, ids: &[String], images: &[&str], settle: Duration) -> Tally {
    let (first, rest) = ids.split_at(ids.len() / 2);
    d.submit(first, images);
    let mut rng = 0x9e37_79b9_u64;
    let mut next = move |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    for _ in 0..6 {
        let i = next(d.processes.len());
        d.kill_and_restart(i);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let leader = {
        let start = Instant::now();
        loop {
            if let Some(l) = d.work_leader() {
                break l;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the work stream has no leader"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    d.nats.kill(leader);
    d.submit(rest, images);
    std::thread::sleep(Duration::from_secs(5));
    d.nats.start_node(leader);
    for _ in 0..4 {
        let i = next(d.processes.len());
        d.kill_and_restart(i);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let cut = (leader + 1) % d.nats.len();
    let name = d.nats.server_name(cut);
    if d.nats.is_isolated() {
        eprintln!(
            "chaos: cut host {name} off (network namespace, link {} down) for 30 s",
            d.nats.host_link(cut).unwrap_or("?")
        );
        d.nats.cut_off(cut);
        std::thread::sleep(Duration::from_secs(30));
        d.nats.reconnect(cut);
        // Back when it routes to both other nodes again and knows the meta leader.
        let others: Vec<String> = (0..d.nats.len())
            .filter(|j| *j != cut)
            .map(|j| d.nats.server_name(j))
            .collect();
        let t0 = Instant::now();
        let rejoined = loop {
            let routed = d
                .nats
                .routes_to(cut)
                .is_some_and(|r| others.iter().all(|o| r.contains(o)));
            if routed && d.nats.meta_leader(cut).is_some() {
                break true;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        if rejoined {
            eprintln!(
                "chaos: {name} reconnected, routed and knows the meta leader after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
        } else {
            eprintln!("chaos: {name} reconnected, not rejoined after 120 s");
        }
    } else {
        eprintln!("chaos: froze {name} (SIGSTOP, no network namespaces) for 30 s");
        d.nats.pause(cut);
        std::thread::sleep(Duration::from_secs(30));
        d.nats.resume(cut);
    }
    d.nats.restart((leader + 2) % d.nats.len());
    wait_for_all(d, ids, settle)
}

/// Poll until every request has a result and the work stream is empty, or `timeout`.
pub fn wait_for_all(d: &Deployment, ids: &[String], timeout: Duration) -> Tally {
    let start = Instant::now();
    loop {
        let t = Tally::of(d, ids);
        if (t.lost == 0 && t.work_left == 0) || start.elapsed() > timeout {
            return t;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What a chaos run counted.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub failed: usize,
    pub restarts: usize,
    pub work_left: u64,
    pub failures: Vec<String>,
}

impl Tally {
    pub fn of(d: &Deployment, ids: &[String]) -> Tally {
        let results = d.results();
        let mut t = Tally {
            requests: ids.len(),
            restarts: d.restarts(),
            work_left: d.work_left(),
            ..Default::default()
        };
        for id in ids {
            match results.get(id).map(|v| v.as_slice()) {
                None | Some([]) => t.lost += 1,
                Some(rs) => {
                    if rs.len() > 1 {
                        t.duplicated += 1;
                    }
                    if let Some(r) = rs
                        .iter()
                        .find(|r| r.status != vigil_contracts::ScanStatus::Succeeded)
                    {
                        t.failed += 1;
                        if t.failures.len() < 5 {
                            t.failures.push(format!("{id}: {:?}", r.failure));
                        }
                    }
                }
            }
        }
        t
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests {}, lost {}, duplicated {}, failed {}, restarts {}, left in the work stream {}",
            self.requests, self.lost, self.duplicated, self.failed, self.restarts, self.work_left
        )?;
        for x in &self.failures {
            write!(f, "\n  {x}")?;
        }
        Ok(())
    }
}
