//! Command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use vigil_contracts::{
    codec, Action, RequestContext, ScanRequest, ScanResult, ScanStatus, StageName, Subject,
};
use vigil_runtime::blobs::{BlobStore, LocalBlobStore};
use vigil_runtime::inprocess::InProcess;
use vigil_runtime::jetstream::{
    self, BucketSettings, JetStreamRunner, ObjectStoreBlobs, PayloadSpill,
};
use vigil_runtime::Outgoing;
use vigil_store::embedded::WriteMode;

use crate::report::{self, Format};
use crate::wiring::{self, Config};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Container image analysis, vulnerability matching and policy evaluation"
)]
pub struct Cli {
    /// Configuration file (TOML); also `VIGIL_CONFIG`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store (default: the user's data dir + /vigil).
    #[arg(long, global = true, env = "VIGIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// More logging on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Scan an image in this process, with no services (embedded store).
    Scan(ScanArgs),
    /// Catalog an image and print its SBOM (CycloneDX 1.6 JSON unless -o says otherwise).
    Sbom {
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// Policy bundles: add, list, get, activate, delete, validate, eval, history.
    Policy {
        #[command(subcommand)]
        cmd: crate::policy_cmd::PolicyCmd,
    },
    /// Watched tags: resolved on an interval, new digests scanned and announced.
    Watch {
        #[command(subcommand)]
        cmd: crate::watch_cmd::WatchCmd,
    },
    /// Watched repositories: new tags added, removed tags recorded.
    Repo {
        #[command(subcommand)]
        cmd: crate::watch_cmd::RepoCmd,
    },
    /// Subscriptions: which notifications leave NATS for the webhooks.
    Subscription {
        #[command(subcommand)]
        cmd: crate::watch_cmd::SubscriptionCmd,
    },
    /// The event log (failed analyses and lookups, feed syncs, webhooks given up).
    Event {
        #[command(subcommand)]
        cmd: crate::watch_cmd::EventCmd,
    },
    /// Webhooks: test sends, delivery logs, dead letters and their replay.
    Notify {
        #[command(subcommand)]
        cmd: crate::deliver_cmd::NotifyCmd,
    },
    /// Scan a whole registry (or the repositories under a prefix) on the running cluster:
    /// resumable, rate-limited, skipping what was analysed before.
    Ingest(crate::deliver_cmd::IngestArgs),
    /// Vulnerability feeds.
    Feeds {
        #[command(subcommand)]
        cmd: FeedsCmd,
    },
    /// Run stages as JetStream consumers: any of fetch extract analyze match evaluate notify feeds watch deliver, or `all`.
    Run {
        #[arg(required = true)]
        stages: Vec<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Publish a scan request on NATS and, with --wait, print the result.
    Submit {
        source: String,
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Format,
        #[arg(long)]
        platform: Option<String>,
        /// Policy bundle file (JSON) evaluated with this request.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// A stored policy bundle to evaluate with, instead of the active one.
        #[arg(long, conflicts_with = "policy")]
        policy_id: Option<String>,
        /// Re-analyse even if the digest was analysed before.
        #[arg(long)]
        force: bool,
        /// Request id (default: a new UUID).
        #[arg(long)]
        request_id: Option<String>,
        /// Seconds to wait for the result.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(long)]
        fail_on_policy: bool,
        /// The image's Dockerfile (sent with the request).
        #[arg(long)]
        dockerfile: Option<PathBuf>,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(clap::Args)]
pub struct NatsArgs {
    /// NATS server URL (also `VIGIL_NATS__URL`).
    #[arg(long)]
    pub nats: Option<String>,
    /// Subject prefix (also `VIGIL_NATS__PREFIX`).
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// `HOST/REPO:TAG`, `HOST/REPO@sha256:…`, `oci-dir:PATH`, `docker-archive:PATH`,
    /// `dir:PATH`, or `sbom:PATH` (a CycloneDX, SPDX or Syft JSON SBOM, matched as it is).
    pub source: String,
    /// table, json, cyclonedx-json or spdx-json (default: table; `vigil sbom`: cyclonedx-json).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// The image's Dockerfile, for the policy's dockerfile gate ("actual" instead of the
    /// one guessed from the image history).
    #[arg(long)]
    pub dockerfile: Option<PathBuf>,
    /// Policy bundle file (Anchore format, JSON); default: the active stored bundle or the built-in one.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// A stored policy bundle to evaluate with (`vigil policy list`), instead of the active one.
    #[arg(long, conflicts_with = "policy")]
    pub policy_id: Option<String>,
    /// Platform of a multi-platform image, `os/arch[/variant]` (default linux/amd64), or
    /// `all` for every platform of an index.
    #[arg(long)]
    pub platform: Option<String>,
    /// Exit with 1 when the policy's final action is STOP.
    #[arg(long)]
    pub fail_on_policy: bool,
    /// Re-analyse even if the digest was analysed before.
    #[arg(long)]
    pub force: bool,
    /// Plain-HTTP registries besides loopback (repeatable).
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// Extra CA certificate (PEM) for registry TLS (repeatable).
    #[arg(long = "ca-cert")]
    pub ca_certs: Vec<PathBuf>,
    /// Registry credentials `REGISTRY=USER:PASSWORD` (repeatable; also `VIGIL_REGISTRY_AUTH`).
    #[arg(long = "registry-auth")]
    pub auth: Vec<String>,
}

#[derive(Subcommand)]
pub enum FeedsCmd {
    /// Download and ingest the configured feeds (or those given with --feed).
    Sync {
        /// `KIND=URL` with KIND debian, alpine, osv or nvd; URL http(s)://, file:// or a path (repeatable).
        #[arg(long = "feed")]
        feeds: Vec<String>,
    },
    /// Show the sync state of every feed: records, namespaces, age.
    List,
    /// Write every synced feed (advisories and sync state) to one file, for air-gapped
    /// machines.
    Export { file: PathBuf },
    /// Load a file written by `feeds export` into this store.
    Import { file: PathBuf },
    /// Ask the cluster's feeds stage to sync now (publishes on `<prefix>.feeds.sync`);
    /// the changed packages' images are re-matched and notified.
    Request {
        /// Feed names (default: every configured feed).
        #[arg(long = "feed")]
        feeds: Vec<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

fn config(cli_config: Option<&PathBuf>, data_dir: Option<PathBuf>) -> Result<Config> {
    let mut cfg = wiring::load_config(cli_config.map(|p| p.as_path()))?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    Ok(cfg)
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    vigil_runtime::install_crypto_provider();
    let cfg = config(cli.config.as_ref(), cli.data_dir.clone())?;
    match cli.cmd {
        Cmd::Scan(a) => scan(cfg, a, Format::Table).await,
        Cmd::Sbom { scan: a } => scan(cfg, a, Format::CyclonedxJson).await,
        Cmd::Feeds { cmd } => feeds(cfg, cmd).await,
        Cmd::Policy { cmd } => crate::policy_cmd::run(cfg, cmd).await,
        Cmd::Watch { cmd } => crate::watch_cmd::watch(cfg, cmd).await,
        Cmd::Repo { cmd } => crate::watch_cmd::repo(cfg, cmd).await,
        Cmd::Subscription { cmd } => crate::watch_cmd::subscription(cfg, cmd).await,
        Cmd::Event { cmd } => crate::watch_cmd::event(cfg, cmd).await,
        Cmd::Notify { cmd } => crate::deliver_cmd::notify(cfg, cmd).await,
        Cmd::Ingest(a) => crate::deliver_cmd::ingest(cfg, a).await,
        Cmd::Run { stages, nats } => run(apply_nats(cfg, &nats), stages).await,
        Cmd::Submit {
            source,
            wait,
            output,
            platform,
            policy,
            policy_id,
            force,
            request_id,
            timeout,
            fail_on_policy,
            dockerfile,
            nats,
        } => {
            let cfg = apply_nats(cfg, &nats);
            let sbom = read_sbom_source(&source)?;
            let request = RequestContext {
                request_id: request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                source,
                platform,
                policy_id,
                policy_bundle: read_policy(policy.as_ref())?,
                submitted_at: vigil_runtime::now_millis(),
                dockerfile: read_dockerfile(dockerfile.as_ref())?,
                index_digest: None,
                ..Default::default()
            };
            let opts = SubmitOptions {
                force,
                wait,
                output,
                timeout,
                fail_on_policy,
                sbom,
            };
            submit(cfg, request, opts).await
        }
    }
}

pub fn apply_nats(mut cfg: Config, a: &NatsArgs) -> Config {
    if let Some(u) = &a.nats {
        cfg.nats.connect.url = u.clone();
    }
    if let Some(p) = &a.prefix {
        cfg.nats.prefix = p.clone();
    }
    cfg
}

fn read_policy(p: Option<&PathBuf>) -> Result<Option<String>> {
    match p {
        None => Ok(None),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading policy bundle {}", p.display()))?;
            // Validate before anything runs, so a bad bundle is a clear error up front.
            vigil_evaluate::load_bundle(&text)
                .map_err(|e| anyhow::anyhow!("policy bundle {}: {e}", p.display()))?;
            Ok(Some(text))
        }
    }
}

fn exit_code(result: &ScanResult, fail_on_policy: bool) -> ExitCode {
    if result.status == ScanStatus::Failed {
        return ExitCode::from(2);
    }
    let stop = result
        .report
        .as_ref()
        .and_then(|r| r.evaluation.as_ref())
        .is_some_and(|e| e.final_action == Action::Stop);
    if fail_on_policy && stop {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `sbom:PATH` → the document's text.
fn read_sbom_source(source: &str) -> Result<Option<String>> {
    match source.strip_prefix("sbom:") {
        None => Ok(None),
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading SBOM {path}"))
            .map(Some),
    }
}

fn read_dockerfile(p: Option<&PathBuf>) -> Result<Option<String>> {
    p.map(|p| {
        std::fs::read_to_string(p).with_context(|| format!("reading Dockerfile {}", p.display()))
    })
    .transpose()
}

async fn scan(mut cfg: Config, a: ScanArgs, default_format: Format) -> Result<ExitCode> {
    let output = a.output.unwrap_or(default_format);
    let sbom = read_sbom_source(&a.source)?;
    cfg.fetch
        .insecure_registries
        .extend(a.insecure.iter().cloned());
    cfg.fetch.ca_certs.extend(a.ca_certs.iter().cloned());
    let mut auths = a.auth.clone();
    if let Ok(v) = std::env::var("VIGIL_REGISTRY_AUTH") {
        auths.extend(v.split(',').map(str::to_string));
    }
    for s in auths {
        let (reg, cred) = s
            .split_once('=')
            .context("--registry-auth must be REGISTRY=USER:PASSWORD")?;
        let (user, pass) = cred
            .split_once(':')
            .context("--registry-auth must be REGISTRY=USER:PASSWORD")?;
        cfg.fetch.credentials.push(vigil_fetch::RegistryCredential {
            registry: reg.to_string(),
            username: user.to_string(),
            password: pass.to_string(),
        });
    }
    // The registry's client is built (TLS roots read) while the store opens.
    let fetcher = Arc::new(vigil_fetch::Fetcher::new(wiring::fetch_config(&cfg)));
    tokio::spawn({
        let (fetcher, source) = (fetcher.clone(), a.source.clone());
        async move { fetcher.prepare(&source).await }
    });
    let store = wiring::open_store(&cfg, WriteMode::Deferred).await?;
    // Fetch and extract run in this process: each layer is indexed while it downloads.
    let blobs: Arc<dyn BlobStore> = Arc::new(vigil_extract::IndexingBlobs::new(
        Arc::new(LocalBlobStore::new(cfg.data_dir.join("blobs"))),
        store.clone(),
        cfg.extract.clone(),
    ));
    let mut runner = InProcess::new(cfg.nats.subjects()).with_stage(Arc::new(
        vigil_fetch::FetchStage::with_fetcher(fetcher, store.clone(), blobs.clone()),
    ));
    for s in [
        StageName::Extract,
        StageName::Analyze,
        StageName::Match,
        StageName::Evaluate,
        StageName::Notify,
    ] {
        runner = runner.with_stage(wiring::stage(s, &cfg, &store, &blobs)?);
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = std::time::Instant::now();
    runner = runner.with_progress(Arc::new(move |stage, _| {
        if interactive {
            eprint!(
                "\r\x1b[2K[{:>5.1}s] {stage}…",
                started.elapsed().as_secs_f32()
            );
        } else {
            eprintln!("[{:>5.1}s] {stage}", started.elapsed().as_secs_f32());
        }
    }));
    let request = RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        source: a.source.clone(),
        platform: a.platform.clone(),
        policy_id: a.policy_id.clone(),
        policy_bundle: read_policy(a.policy.as_ref())?,
        submitted_at: vigil_runtime::now_millis(),
        dockerfile: read_dockerfile(a.dockerfile.as_ref())?,
        index_digest: None,
        ..Default::default()
    };
    let first = Outgoing::record(
        Subject::ScanRequest,
        format!("req-{}", request.request_id),
        &ScanRequest {
            request,
            force: a.force,
            sbom,
        },
    )?;
    let collected = runner.run(vec![first]).await;
    if interactive {
        eprint!("\r\x1b[2K");
    }
    // `--platform all` ends in one result per platform after the parent's announcement.
    let results: Vec<ScanResult> = collected
        .results
        .into_iter()
        .filter(|r| r.platform_requests.is_empty())
        .collect();
    if results.is_empty() {
        bail!("the scan ended without a result (this is a bug)");
    }
    let code = print_results(&results, output, a.fail_on_policy)?;
    // The writes (layer indexes, analysis, result) were deferred; they are committed
    // while the report is printed, and must be on disk before the exit.
    store.flush().await.context(
        "the report is complete, but the scan's records could not be stored in the data directory",
    )?;
    // The records are large (every file of the image); the process ends now and
    // frees them faster than their destructors would.
    std::mem::forget(results);
    store.forget_kept_records();
    Ok(code)
}

/// Print one report, or for several platforms a JSON array (JSON formats) or one table
/// after the other; the exit code is the worst of them.
fn print_results(results: &[ScanResult], output: Format, fail_on_policy: bool) -> Result<ExitCode> {
    if let [one] = results {
        print!("{}", report::render(one, output)?);
    } else if output == Format::Table {
        for r in results {
            print!("{}", report::render(r, output)?);
            println!();
        }
    } else {
        let docs: Vec<serde_json::Value> = results
            .iter()
            .map(|r| Ok(serde_json::from_str(&report::render(r, output)?)?))
            .collect::<Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&docs)?);
    }
    let mut code = ExitCode::SUCCESS;
    for r in results {
        if let Some(f) = &r.failure {
            eprintln!("vigil: {} failed in {}: {}", r.source, f.stage, f.message);
        }
        let c = exit_code(r, fail_on_policy);
        if c != ExitCode::SUCCESS && code != ExitCode::from(2) {
            code = c;
        }
    }
    Ok(code)
}

async fn feeds(mut cfg: Config, cmd: FeedsCmd) -> Result<ExitCode> {
    if let FeedsCmd::Request { feeds, nats } = cmd {
        let cfg = apply_nats(cfg, &nats);
        let client = cfg.nats.connect_client().await?;
        let subjects = cfg.nats.subjects();
        let js = async_nats::jetstream::new(client);
        jetstream::ensure_streams(&js, &subjects, &cfg.nats.stream_tuning()).await?;
        let id = format!("feeds-sync-{}", uuid::Uuid::new_v4());
        let out = Outgoing::record(
            Subject::FeedsSync,
            id.clone(),
            &vigil_contracts::FeedSyncRequest { feeds },
        )?;
        jetstream::publish(&js, &subjects, &out).await?;
        eprintln!("vigil: feed sync requested ({id})");
        return Ok(ExitCode::SUCCESS);
    }
    let store = wiring::open_store(&cfg, WriteMode::Durable).await?;
    match cmd {
        FeedsCmd::Sync { feeds } => {
            if !feeds.is_empty() {
                cfg.feeds = feed_specs(&feeds)?;
            }
            let progress = |msg: &str| eprintln!("feeds: {msg}");
            let deltas = vigil_feeds::sync(&cfg.feeds, &store, &progress)
                .await
                .context("feed sync")?;
            for d in &deltas {
                eprintln!("feeds: {} changed {} package keys", d.feed, d.changed.len());
            }
            for s in store.list_feed_states().await? {
                println!("{:<16} {:>8} records  {}", s.feed, s.record_count, s.url);
            }
        }
        FeedsCmd::List => {
            let now = vigil_runtime::now_millis();
            let states = store.list_feed_states().await?;
            let stale: std::collections::BTreeSet<String> =
                vigil_feeds::stale_feeds(&states, now, Duration::from_secs(2 * 24 * 3600))
                    .into_iter()
                    .map(|s| s.feed)
                    .collect();
            for s in &states {
                let age_h = (now - s.last_sync) as f64 / 3_600_000.0;
                println!(
                    "{:<16} {:>8} records  synced {age_h:.1} h ago{}  {}",
                    s.feed,
                    s.record_count,
                    if stale.contains(&s.feed) {
                        " (STALE)"
                    } else {
                        ""
                    },
                    s.url
                );
                for (ns, n) in &s.namespaces {
                    println!("    {ns:<28} {n:>8}");
                }
            }
            for f in vigil_feeds::never_synced(&cfg.feeds, &states) {
                println!("{f:<16} never synced");
            }
        }
        FeedsCmd::Export { file } => {
            let out = std::fs::File::create(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            let r = vigil_feeds::export(&store, std::io::BufWriter::new(out))
                .await
                .context("feed export")?;
            eprintln!(
                "feeds: exported {} feeds, {} package keys, {} advisories to {}",
                r.feeds,
                r.keys,
                r.advisories,
                file.display()
            );
        }
        FeedsCmd::Request { .. } => unreachable!("handled above"),
        FeedsCmd::Import { file } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let r = vigil_feeds::import(&store, std::io::BufReader::new(input))
                .await
                .context("feed import")?;
            eprintln!(
                "feeds: imported {} feeds, {} package keys, {} advisories from {}",
                r.feeds,
                r.keys,
                r.advisories,
                file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `KIND=URL` flags into a feed list; repeated kinds are named `kind-2`, `kind-3`, ….
fn feed_specs(specs: &[String]) -> Result<vigil_feeds::FeedsConfig> {
    use vigil_feeds::{FeedKind, FeedSource};
    let mut feeds: Vec<FeedSource> = Vec::new();
    for spec in specs {
        let (kind, url) = spec
            .split_once('=')
            .with_context(|| format!("--feed {spec}: expected KIND=URL"))?;
        let kind = match kind {
            "debian" => FeedKind::Debian,
            "alpine" => FeedKind::Alpine,
            "osv" => FeedKind::Osv,
            "nvd" => FeedKind::Nvd,
            other => bail!("--feed {spec}: unknown feed kind {other} (debian, alpine, osv or nvd)"),
        };
        let n = feeds.iter().filter(|f| f.kind == kind).count();
        let name = if n == 0 {
            kind.as_str().to_string()
        } else {
            format!("{}-{}", kind.as_str(), n + 1)
        };
        feeds.push(FeedSource::new(kind, name, url));
    }
    Ok(vigil_feeds::FeedsConfig { feeds })
}

async fn run(cfg: Config, names: Vec<String>) -> Result<ExitCode> {
    let mut stages = Vec::new();
    // The webhook deliverer is not a stage (its queues are per endpoint), but runs the same way.
    let mut deliver = false;
    for n in &names {
        if n == "all" {
            stages.extend(StageName::ALL);
            deliver = true;
        } else if n == "deliver" {
            deliver = true;
        } else {
            stages.push(StageName::parse(n).with_context(|| {
                format!("unknown stage {n}: use fetch, extract, analyze, match, evaluate, notify, feeds, watch, deliver or all")
            })?);
        }
    }
    stages.sort();
    stages.dedup();
    let store_kind = cfg.store.kind()?;
    if !store_kind.is_shared() && (stages.len() < StageName::ALL.len() || !deliver) {
        bail!(
            "`vigil run {}` on the embedded store: the embedded store is one file that one \
             process opens, so stages in other processes would keep their state apart and \
             requests would fail or be lost. Use a shared store (`[store] backend = \"jetstream\"` \
             or `VIGIL_STORE__BACKEND=jetstream`, or ScyllaDB with `VIGIL_STORE__SCYLLA_NODES`), \
             or run every stage in this process with `vigil run all`",
            names.join(" ")
        );
    }
    let client = cfg.nats.connect().await?;
    let subjects = cfg.nats.subjects();
    let stream_tuning = cfg.nats.stream_tuning();
    let mut runner = JetStreamRunner::new(client.clone(), subjects.clone(), cfg.nats.tuning())
        .with_streams(stream_tuning.clone());
    runner.concurrency = cfg.nats.concurrency;
    if cfg.nats.hold_ms > 0 {
        if let Some(s) = StageName::parse(&cfg.nats.hold_stage) {
            runner.hold = Some((s, Duration::from_millis(cfg.nats.hold_ms)));
        }
    }
    runner.crash_before_publish = {
        let spec = cfg.nats.crash_before_publish.as_str();
        let (stage, suffix) = spec.split_once(':').unwrap_or((spec, ""));
        StageName::parse(stage).map(|s| (s, (!suffix.is_empty()).then(|| suffix.to_string())))
    };
    let metrics = Arc::new(vigil_runtime::metrics::Metrics::new());
    metrics.expect_stages(&stages);
    metrics.watch_client(client.clone());
    runner.metrics = Some(metrics.clone());
    let ops = if cfg.ops.listen.is_empty() {
        None
    } else {
        let addr: std::net::SocketAddr =
            cfg.ops.listen.parse().with_context(|| {
                format!("[ops] listen = {:?} is not an address", cfg.ops.listen)
            })?;
        let (bound, task) = vigil_runtime::metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("serving /metrics on {addr}"))?;
        eprintln!("vigil: /metrics, /healthz and /readyz on http://{bound}");
        Some(task)
    };
    let poll = metrics.poll_consumers(
        runner.context().clone(),
        vigil_contracts::streams::work_stream_name(&subjects),
        stages
            .iter()
            .map(|s| (*s, format!("{}_{}", subjects.stream_prefix(), s.as_str())))
            .collect(),
        Duration::from_secs(5),
    );
    // A cluster that is still electing leaders, or busy creating the same streams for
    // other processes, times out now and then: setup is retried for a while.
    retry_setup("creating the streams", || async {
        Ok(jetstream::ensure_streams(runner.context(), &subjects, &stream_tuning).await?)
    })
    .await?;
    let replicas = cfg.nats.replicas.max(1);
    let spill = retry_setup("opening the payload bucket", || async {
        Ok(PayloadSpill::open(
            &client,
            runner.context(),
            &subjects,
            &BucketSettings {
                // As long as a work message may wait.
                max_age: Duration::from_secs(7 * 24 * 3600),
                max_bytes: -1,
                replicas,
            },
            cfg.nats.payload_inline_bytes,
        )
        .await?)
    })
    .await?;
    runner.spill = Some(spill);
    let store = retry_setup("opening the store", || {
        wiring::open_store(&cfg, WriteMode::Durable)
    })
    .await?;
    let blobs: Arc<dyn BlobStore> = Arc::new(
        retry_setup("opening the blob bucket", || async {
            Ok(ObjectStoreBlobs::open(
                runner.context(),
                &subjects,
                &BucketSettings {
                    max_age: Duration::from_secs(cfg.nats.blob_ttl_secs),
                    max_bytes: cfg.nats.blob_max_bytes,
                    replicas,
                },
            )
            .await?)
        })
        .await?,
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut side_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if deliver {
        let d = vigil_deliver::Deliverer::new(
            cfg.deliver.clone(),
            store.clone(),
            runner.context().clone(),
            subjects.clone(),
        )
        .with_stream_tuning(stream_tuning.clone());
        let drx = rx.clone();
        side_tasks.push(tokio::spawn(async move {
            if let Err(e) = d.run(drx).await {
                tracing::error!(error = %e, "the webhook deliverer stopped");
                eprintln!("vigil: the webhook deliverer stopped: {e}");
            }
        }));
    }
    for s in stages {
        let stage = if s == StageName::Feeds {
            // One syncer at a time in the cluster: a lease in a JetStream KV bucket.
            let lease = vigil_feeds::FeedLease::with_replicas(
                runner.context(),
                &format!("{}_feeds_lease", subjects.stream_prefix()),
                "sync",
                &holder_id(),
                Duration::from_secs(300),
                replicas,
            )
            .await
            .context("opening the feed-sync lease bucket")?;
            Arc::new(
                vigil_feeds::FeedsStage::new(cfg.feeds.clone(), store.clone())
                    .with_lease(lease)
                    .with_events(
                        vigil_runtime::events::EventLog::new(store.clone())
                            .with_publisher(runner.context().clone(), subjects.clone()),
                    ),
            )
        } else if s == StageName::Watch {
            let publisher = vigil_watch::Publisher::new(runner.context().clone(), subjects.clone());
            let watch_cfg = wiring::watch_config(&cfg);
            let client = Arc::new(
                watch_cfg
                    .registry_client()
                    .context("[watch]: building the registry client")?,
            );
            // One scheduler at a time in the cluster, like the feed syncer; the polls it
            // publishes are work-queue messages that any watch replica takes.
            let lease = vigil_feeds::FeedLease::with_replicas(
                runner.context(),
                &format!("{}_watch_lease", subjects.stream_prefix()),
                "scheduler",
                &holder_id(),
                Duration::from_secs(15),
                replicas,
            )
            .await
            .context("opening the watch-scheduler lease bucket")?;
            let scheduler =
                vigil_watch::Scheduler::new(store.clone(), publisher.clone(), watch_cfg.clone());
            let srx = rx.clone();
            side_tasks.push(tokio::spawn(async move {
                scheduler.run(Some(lease), srx).await;
            }));
            if !cfg.watch.push_listen.is_empty() {
                let (addr, task) = vigil_watch::serve_push_endpoint(
                    &cfg.watch.push_listen,
                    &cfg.watch.push_secret,
                    cfg.watch.push_registry_host.clone(),
                    publisher.clone(),
                    store.clone(),
                )
                .await
                .with_context(|| format!("[watch] push_listen = {:?}", cfg.watch.push_listen))?;
                eprintln!("vigil: registry push events on http://{addr}/v1/registry/events");
                side_tasks.push(task);
            }
            Arc::new(vigil_watch::WatchStage::new(
                store.clone(),
                client,
                watch_cfg,
                Some(publisher),
            ))
        } else {
            wiring::stage(s, &cfg, &store, &blobs)?
        };
        let runner = runner.clone();
        let rx = rx.clone();
        tasks.push(tokio::spawn(
            async move { runner.run_stage(stage, rx).await },
        ));
    }
    eprintln!(
        "vigil: running {} on {} (prefix {})",
        names.join(" "),
        cfg.nats.connect.url,
        cfg.nats.prefix
    );
    shutdown_signal().await;
    eprintln!("vigil: shutting down");
    let _ = tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    for t in side_tasks {
        t.abort();
    }
    poll.abort();
    if let Some(t) = ops {
        t.abort();
    }
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

/// Who holds a lease: host and process.
fn holder_id() -> String {
    format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "vigil".into()),
        std::process::id()
    )
}

/// Retry a setup step whose error says the cluster did not answer in time (timeouts,
/// no responders, no leader yet), for up to three minutes; other errors at once.
async fn retry_setup<T, F, Fut>(what: &str, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut delay = Duration::from_millis(500);
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let text = format!("{e:#}").to_ascii_lowercase();
                let transient = [
                    "timed out",
                    "timeout",
                    "no responders",
                    "leader",
                    "unavailable",
                ]
                .iter()
                .any(|w| text.contains(w));
                if !transient || tokio::time::Instant::now() >= deadline {
                    return Err(e.context(what.to_string()));
                }
                tracing::warn!(error = %format!("{e:#}"), ?delay, "{what}: the cluster did not answer; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

struct SubmitOptions {
    force: bool,
    wait: bool,
    output: Format,
    timeout: u64,
    fail_on_policy: bool,
    sbom: Option<String>,
}

async fn submit(cfg: Config, request: RequestContext, o: SubmitOptions) -> Result<ExitCode> {
    let SubmitOptions {
        force,
        wait,
        output,
        timeout,
        fail_on_policy,
        sbom,
    } = o;
    let client = cfg.nats.connect_client().await?;
    let subjects = cfg.nats.subjects();
    let js = async_nats::jetstream::new(client);
    jetstream::ensure_streams(&js, &subjects, &cfg.nats.stream_tuning()).await?;
    let id = request.request_id.clone();
    // Read the result from the results stream (not a plain subscription), so a result
    // published before we listen is not missed.
    let consumer = if wait {
        let stream = js
            .get_stream(vigil_contracts::streams::results_stream_name(&subjects))
            .await?;
        Some(
            stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: subjects.render(&Subject::Result(id.clone())),
                    ..Default::default()
                })
                .await?,
        )
    } else {
        None
    };
    let out = Outgoing::record(
        Subject::ScanRequest,
        format!("req-{id}"),
        &ScanRequest {
            request,
            force,
            sbom,
        },
    )?;
    jetstream::publish(&js, &subjects, &out).await?;
    eprintln!("vigil: submitted request {id}");
    let Some(consumer) = consumer else {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let result = next_result(&js, &subjects, consumer, &id, deadline).await?;
    if result.platform_requests.is_empty() {
        return print_results(&[result], output, fail_on_policy);
    }
    // `--platform all`: wait for every platform's own result.
    let stream = js
        .get_stream(vigil_contracts::streams::results_stream_name(&subjects))
        .await?;
    let mut results = Vec::new();
    for child in &result.platform_requests {
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: subjects.render(&Subject::Result(child.clone())),
                ..Default::default()
            })
            .await?;
        results.push(next_result(&js, &subjects, consumer, child, deadline).await?);
    }
    print_results(&results, output, fail_on_policy)
}

/// The next result on `consumer`; a result too large for one message arrives as a
/// reference to the payload bucket and is fetched from there.
async fn next_result(
    js: &async_nats::jetstream::Context,
    subjects: &vigil_contracts::Subjects,
    consumer: async_nats::jetstream::consumer::Consumer<
        async_nats::jetstream::consumer::pull::OrderedConfig,
    >,
    id: &str,
    deadline: tokio::time::Instant,
) -> Result<ScanResult> {
    let mut messages = consumer.messages().await?;
    let msg = tokio::time::timeout_at(deadline, messages.next())
        .await
        .with_context(|| format!("no result for request {id} in time"))?
        .context("result stream closed")??;
    let bytes = jetstream::resolve_payload(js, subjects, &msg.payload)
        .await
        .with_context(|| format!("reading the result of request {id}"))?;
    Ok(codec::decode(&bytes)?)
}
