//! Configuration and the construction of stages, shared by every command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vigil_contracts::streams::{ConsumerTuning, StreamTuning};
use vigil_contracts::{StageName, Subjects};
use vigil_runtime::blobs::BlobStore;
use vigil_runtime::jetstream::NatsConnect;
use vigil_runtime::Stage;
use vigil_store::embedded::WriteMode;
use vigil_store::Store;

/// Everything configurable, with defaults; file → environment (`VIGIL_…`) → flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    /// Data directory of the embedded store and the local blob cache.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub fetch: vigil_fetch::FetchConfig,
    pub extract: vigil_extract::ExtractLimits,
    pub feeds: vigil_feeds::FeedsConfig,
    pub ops: OpsConfig,
    pub watch: vigil_watch::WatchConfig,
    pub deliver: vigil_deliver::DeliverConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsConfig::default(),
            data_dir: default_data_dir(),
            store: StoreConfig::default(),
            fetch: Default::default(),
            extract: Default::default(),
            feeds: Default::default(),
            ops: Default::default(),
            watch: Default::default(),
            deliver: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    /// Servers (one URL or a comma-separated list, as the `nats` CLI takes it),
    /// credentials and TLS: `url`, `user`, `password`, `token`, `nkey_seed`, `creds_file`,
    /// `tls_ca`, `tls_cert`, `tls_key`, `tls_required`.
    #[serde(flatten)]
    pub connect: NatsConnect,
    pub prefix: String,
    /// Replicas of every stream, consumer, KV bucket and object store vigil creates: 1 on
    /// one server, 3 on a 3-node cluster. Applied at start to what exists.
    pub replicas: usize,
    /// Messages larger than this travel through the payload bucket by reference (capped
    /// below the server's `max_payload`).
    pub payload_inline_bytes: usize,
    /// Upper bound of the layer-blob bucket in bytes (-1: none).
    pub blob_max_bytes: i64,
    /// `Nats-Msg-Id` de-duplication window of the streams.
    pub duplicate_window_secs: u64,
    /// How long results and notifications stay on the results stream.
    pub results_ttl_secs: u64,
    /// Failure testing: abort the process after this stage handled a message and before
    /// its outputs are published; `STAGE` or `STAGE:SUBJECT_SUFFIX` (`match:stage.match`).
    pub crash_before_publish: String,
    pub ack_wait_secs: u64,
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    /// Messages handled at once per stage in this process.
    pub concurrency: usize,
    /// Time-to-live of staged blobs in the object store.
    pub blob_ttl_secs: u64,
    /// Failure testing: hold every message of this stage for `hold_ms` before handling it.
    pub hold_stage: String,
    pub hold_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        let t = ConsumerTuning::default();
        NatsConfig {
            connect: NatsConnect::url("nats://127.0.0.1:4222"),
            prefix: "vigil".into(),
            ack_wait_secs: t.ack_wait.as_secs(),
            max_deliver: t.max_deliver,
            max_ack_pending: t.max_ack_pending,
            concurrency: 4,
            blob_ttl_secs: 24 * 3600,
            hold_stage: String::new(),
            hold_ms: 0,
            replicas: 1,
            payload_inline_bytes: 512 * 1024,
            blob_max_bytes: 16 << 30,
            duplicate_window_secs: 20 * 60,
            results_ttl_secs: 24 * 3600,
            crash_before_publish: String::new(),
        }
    }
}

impl NatsConfig {
    pub fn tuning(&self) -> ConsumerTuning {
        ConsumerTuning {
            ack_wait: std::time::Duration::from_secs(self.ack_wait_secs.max(1)),
            max_deliver: self.max_deliver.max(1),
            max_ack_pending: self.max_ack_pending.max(1),
        }
    }

    pub fn subjects(&self) -> Subjects {
        Subjects::new(self.prefix.clone())
    }

    pub fn stream_tuning(&self) -> StreamTuning {
        StreamTuning {
            replicas: self.replicas.max(1),
            duplicate_window: std::time::Duration::from_secs(self.duplicate_window_secs.max(1)),
            results_max_age: std::time::Duration::from_secs(self.results_ttl_secs.max(60)),
        }
    }

    /// Connect with the configured servers, credentials and TLS, waiting for a server
    /// that is not up yet (services).
    pub async fn connect(&self) -> Result<async_nats::Client> {
        Ok(vigil_runtime::jetstream::connect_with(&self.connect).await?)
    }

    /// Connect once: an unreachable server or refused credentials fail the command.
    pub async fn connect_client(&self) -> Result<async_nats::Client> {
        Ok(vigil_runtime::jetstream::connect_once(&self.connect).await?)
    }
}

/// Operations endpoints of `vigil run` (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OpsConfig {
    /// Listen address; empty to serve nothing. Port 0 picks a free port (printed at start).
    pub listen: String,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// `embedded` (one redb file in the data dir, one process), `jetstream` (KV buckets
    /// and an object store on the NATS cluster of `[nats]`), `scylla`; empty: `scylla`
    /// when `scylla_nodes` is set, else `embedded`.
    pub backend: String,
    /// ScyllaDB contact points (`host:9042`).
    pub scylla_nodes: Vec<String>,
    pub keyspace: String,
    pub replication_factor: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: String::new(),
            scylla_nodes: Vec::new(),
            keyspace: "vigil".into(),
            replication_factor: 1,
        }
    }
}

/// Which store a configuration selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    JetStream,
    Scylla,
}

impl StoreKind {
    /// Whether several processes can share it.
    pub fn is_shared(self) -> bool {
        !matches!(self, StoreKind::Embedded)
    }
}

impl StoreConfig {
    pub fn kind(&self) -> Result<StoreKind> {
        match self.backend.as_str() {
            "" if self.scylla_nodes.is_empty() => Ok(StoreKind::Embedded),
            "" | "scylla" => Ok(StoreKind::Scylla),
            "embedded" => Ok(StoreKind::Embedded),
            "jetstream" => Ok(StoreKind::JetStream),
            other => {
                anyhow::bail!("unknown store backend {other:?}: use embedded, jetstream or scylla")
            }
        }
    }
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("vigil")
}

pub fn load_config(file: Option<&Path>) -> Result<Config> {
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("VIGIL_CONFIG").map(PathBuf::from));
    vigil_runtime::config::load(file.as_deref(), "VIGIL", std::env::vars())
        .context("loading configuration")
}

/// Open the configured store. `mode` applies to the embedded store: `vigil scan`
/// defers its writes and flushes them before it exits; services write durably.
pub async fn open_store(cfg: &Config, mode: WriteMode) -> Result<Store> {
    match cfg.store.kind()? {
        StoreKind::Embedded => {
            let path = cfg.data_dir.join("vigil.redb");
            match mode {
                WriteMode::Durable => Store::open_embedded(&path),
                WriteMode::Deferred => Store::open_embedded_deferred(&path),
            }
            .with_context(|| format!("opening the embedded store {}", path.display()))
        }
        StoreKind::JetStream => {
            let client = cfg.nats.connect().await?;
            let b = vigil_store::jetstream_backend::JetStreamBackend::open(
                async_nats::jetstream::new(client),
                &cfg.nats.subjects().stream_prefix(),
                cfg.nats.replicas.max(1),
            )
            .await
            .context("opening the JetStream store")?;
            Ok(Store::new(Arc::new(b)))
        }
        StoreKind::Scylla => {
            let b = vigil_store::scylla_backend::ScyllaBackend::connect(
                &cfg.store.scylla_nodes,
                &cfg.store.keyspace,
                cfg.store.replication_factor,
            )
            .await
            .context("connecting to ScyllaDB")?;
            Ok(Store::new(Arc::new(b)))
        }
    }
}

/// The fetch stage's configuration: the file's, with this build's extractor version and
/// the data directory's blob folder for temporary files.
/// `[watch]` with what `[fetch]` already says about registries: its credentials (after
/// the watch's own, so those win), insecure registries and extra CAs. One login serves
/// both the pulls and the watches.
pub fn watch_config(cfg: &Config) -> vigil_watch::WatchConfig {
    let mut w = cfg.watch.clone();
    for c in &cfg.fetch.credentials {
        w.credentials.push(vigil_registry::CredentialEntry {
            registry: c.registry.clone(),
            prefix: None,
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            token: None,
        });
    }
    for r in &cfg.fetch.insecure_registries {
        if !w.insecure_registries.contains(r) {
            w.insecure_registries.push(r.clone());
        }
    }
    for ca in &cfg.fetch.ca_certs {
        if !w.ca_certs.contains(ca) {
            w.ca_certs.push(ca.clone());
        }
    }
    w
}

pub fn fetch_config(cfg: &Config) -> vigil_fetch::FetchConfig {
    let mut fc = cfg.fetch.clone();
    fc.extractor_version = vigil_extract::EXTRACTOR_VERSION;
    if fc.temp_dir.is_none() {
        fc.temp_dir = Some(cfg.data_dir.join("blobs"));
    }
    fc
}

/// Build one stage.
pub fn stage(
    name: StageName,
    cfg: &Config,
    store: &Store,
    blobs: &Arc<dyn BlobStore>,
) -> Result<Arc<dyn Stage>> {
    Ok(match name {
        StageName::Fetch => Arc::new(vigil_fetch::FetchStage::new(
            fetch_config(cfg),
            store.clone(),
            blobs.clone(),
        )),
        StageName::Extract => Arc::new(vigil_extract::ExtractStage::new(
            cfg.extract.clone(),
            store.clone(),
            blobs.clone(),
        )),
        StageName::Analyze => Arc::new(vigil_analyze::AnalyzeStage::new(store.clone())),
        StageName::Match => Arc::new(vigil_match::MatchStage::new(store.clone())),
        StageName::Evaluate => Arc::new(vigil_evaluate::EvaluateStage::new(store.clone())),
        StageName::Notify => Arc::new(
            vigil_notify::NotifyStage::new(store.clone()).with_deliver(cfg.deliver.clone()),
        ),
        StageName::Feeds => Arc::new(vigil_feeds::FeedsStage::new(
            cfg.feeds.clone(),
            store.clone(),
        )),
        StageName::Watch => {
            let w = watch_config(cfg);
            Arc::new(vigil_watch::WatchStage::new(
                store.clone(),
                Arc::new(
                    w.registry_client()
                        .context("[watch]: building the registry client")?,
                ),
                w,
                None,
            ))
        }
    })
}
