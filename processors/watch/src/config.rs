//! `[watch]` in vigil's TOML.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_registry::{ClientConfig, CredentialEntry, Credentials};

/// The watch stage's configuration (`[watch]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchConfig {
    /// Poll interval of a watch without its own interval and without a registry interval.
    pub default_interval_secs: u64,
    /// Poll interval per registry host (`host[:port]`).
    pub registry_intervals: BTreeMap<String, u64>,
    /// How often the scheduler looks for due watches.
    pub scheduler_tick_ms: u64,
    /// Most tags a watched repository (or an ingested repository) may have.
    pub max_tags_per_repo: usize,
    /// Registry requests per second (token bucket per registry) unless an ingestion
    /// asks for another rate.
    pub ingest_rate_per_sec: f64,
    /// Burst of the registry request bucket.
    pub ingest_burst: u32,
    /// Scan requests an ingestion feeds into the pipeline per registry per second.
    pub scan_rate_per_sec: f64,
    /// Address of the registry push-event endpoint (`127.0.0.1:9095`); empty: off.
    pub push_listen: String,
    /// Shared secret the registry sends (`Authorization: Bearer <secret>` or the bare
    /// secret). Required when `push_listen` is set.
    pub push_secret: String,
    /// The registry host scans use for pushed images, instead of the `request.host`
    /// of the registry's event (when vigil reaches the registry under another name).
    pub push_registry_host: Option<String>,
    /// Configured registry credentials.
    pub credentials: Vec<CredentialEntry>,
    /// A docker config file (`~/.docker/config.json` when unset).
    pub docker_config: Option<PathBuf>,
    pub use_docker_config: bool,
    /// Hosts reached over plain http (loopback hosts always are).
    pub insecure_registries: Vec<String>,
    /// Extra PEM root certificates.
    pub ca_certs: Vec<PathBuf>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            default_interval_secs: 300,
            registry_intervals: BTreeMap::new(),
            scheduler_tick_ms: 1000,
            max_tags_per_repo: 10_000,
            ingest_rate_per_sec: 10.0,
            ingest_burst: 10,
            scan_rate_per_sec: 20.0,
            push_listen: String::new(),
            push_secret: String::new(),
            push_registry_host: None,
            credentials: Vec::new(),
            docker_config: None,
            use_docker_config: true,
            insecure_registries: Vec::new(),
            ca_certs: Vec::new(),
        }
    }
}

impl WatchConfig {
    /// The registry client's configuration and credentials.
    pub fn client_parts(&self) -> (ClientConfig, Credentials) {
        let cfg = ClientConfig {
            insecure_registries: self.insecure_registries.clone(),
            ca_certs: self.ca_certs.clone(),
            max_tags: self.max_tags_per_repo.max(1),
            rate_per_sec: self.ingest_rate_per_sec,
            burst: self.ingest_burst.max(1),
            ..ClientConfig::default()
        };
        let creds = Credentials {
            entries: self.credentials.clone(),
            docker_config: self.docker_config.clone(),
            use_docker_config: self.use_docker_config,
        };
        (cfg, creds)
    }

    /// The registry client this configuration describes.
    pub fn registry_client(
        &self,
    ) -> Result<vigil_registry::RegistryClient, vigil_registry::RegistryError> {
        let (cfg, creds) = self.client_parts();
        vigil_registry::RegistryClient::new(cfg, creds)
    }

    /// The poll interval of a watch on `host` with its own `interval_secs`, if any.
    pub fn interval_for(&self, host: &str, own: Option<u64>) -> Duration {
        let secs = own
            .or_else(|| self.registry_intervals.get(host).copied())
            .unwrap_or(self.default_interval_secs);
        Duration::from_secs(secs.max(1))
    }

    pub fn scheduler_tick(&self) -> Duration {
        Duration::from_millis(self.scheduler_tick_ms.max(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let c: WatchConfig = toml_like("");
        assert_eq!(c, WatchConfig::default());
        assert_eq!(c.default_interval_secs, 300);
        let c: WatchConfig = serde_json::from_str(
            r#"{"default_interval_secs": 60, "registry_intervals": {"ghcr.io": 30}}"#,
        )
        .unwrap();
        assert_eq!(c.interval_for("ghcr.io", None), Duration::from_secs(30));
        assert_eq!(c.interval_for("ghcr.io", Some(5)), Duration::from_secs(5));
        assert_eq!(c.interval_for("quay.io", None), Duration::from_secs(60));
        assert_eq!(c.scheduler_tick_ms, 1000);
        let (cc, creds) = c.client_parts();
        assert_eq!(cc.max_tags, 10_000);
        assert!(creds.use_docker_config);
    }

    fn toml_like(s: &str) -> WatchConfig {
        if s.is_empty() {
            serde_json::from_str("{}").unwrap()
        } else {
            serde_json::from_str(s).unwrap()
        }
    }
}
