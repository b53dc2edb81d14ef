//! Helpers for the end-to-end tests: run the real `vigil` binary with its own data
//! directory, against services started by `vigil_testkit`.

pub mod cluster;
pub mod receiver;
pub mod sope;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Path of the `vigil` binary built by this workspace (built on demand).
pub fn vigil_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VIGIL_BIN") {
        return PathBuf::from(p);
    }
    let root = vigil_testkit::testbed::workspace_root();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug/vigil");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "vigil"])
            .current_dir(&root)
            .status()
            .expect("cargo build -p vigil");
        assert!(st.success(), "building the vigil binary failed");
    });
    bin
}

/// A vigil installation: a data directory and extra environment.
pub struct Vigil {
    pub data_dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// Processes started with [`Vigil::spawn`]: killed when this is dropped, so that a
    /// failing test leaves no `vigil run` behind.
    spawned: std::sync::Mutex<Vec<u32>>,
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let pids = std::mem::take(&mut *self.spawned.lock().unwrap_or_else(|e| e.into_inner()));
        for pid in pids {
            // Only a process that is still this data directory's vigil.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let dir = self.data_dir.path().as_os_str().as_encoded_bytes();
            if cmdline.windows(dir.len()).any(|w| w == dir) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

impl Default for Vigil {
    fn default() -> Self {
        Self::new()
    }
}

impl Vigil {
    pub fn new() -> Vigil {
        Vigil {
            data_dir: tempfile::tempdir().expect("data dir"),
            // Tests run several `vigil run` processes at once: each serves its
            // operations endpoints on a free port.
            env: vec![("VIGIL_OPS__LISTEN".into(), "127.0.0.1:0".into())],
            spawned: Default::default(),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Vigil {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(vigil_bin());
        c.arg("--data-dir").arg(self.data_dir.path()).args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run vigil")
    }

    /// `vigil scan SOURCE -o json` → (exit code, parsed report).
    pub fn scan_json(&self, source: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
        let mut args = vec!["scan", source, "-o", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vigil scan {source}: stdout is not JSON ({e}); stderr:\n{stderr}\nstdout:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap_or(-1), json, stderr)
    }

    /// Start a long-running command (e.g. `run all`), logging to a file in the data dir.
    pub fn spawn(&self, args: &[&str], log_name: &str) -> Child {
        let log = std::fs::File::create(self.data_dir.path().join(log_name)).expect("log file");
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vigil");
        self.track(&child);
        child
    }

    /// Kill `child` when this is dropped (if it still runs then).
    pub fn track(&self, child: &Child) {
        self.spawned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
    }

    pub fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.data_dir.path().join(log_name)).unwrap_or_default()
    }
}

/// Names of packages of one type in a JSON report.
pub fn package_names(report: &serde_json::Value, kind: &str) -> Vec<String> {
    let mut v: Vec<String> = report["packages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["type"] == kind)
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Vulnerability ids reported for one package name.
pub fn vuln_ids(report: &serde_json::Value, package: &str) -> Vec<String> {
    let mut v: Vec<String> = report["vulnerabilities"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|f| f["package"]["name"] == package)
                .filter_map(|f| f["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

/// Write a file (creating parents) under `root`.
pub fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// SIGTERM a `vigil run` and wait for it to exit.
pub fn terminate(runner: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status();
    let _ = runner.wait();
}

/// A core-NATS subscription to `subject`, ready when this returns.
pub fn subscribe(rt: &tokio::runtime::Runtime, url: &str, subject: &str) -> async_nats::Subscriber {
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let s = client
            .subscribe(subject.to_string())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        s
    })
}

/// Drop whatever arrives on `sub` until it is quiet for two seconds.
pub fn drain(rt: &tokio::runtime::Runtime, sub: &mut async_nats::Subscriber) {
    use futures::StreamExt;
    rt.block_on(async {
        while let Ok(Some(_)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), sub.next()).await
        {}
    });
}
