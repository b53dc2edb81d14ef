//! vigil load tests; each prints its figures.
//!
//! `cargo run --release -p vigil-loadtest -- rematch [--images 10000] [--affected 1000]
//! [--packages 50] [--concurrency 16] [--nats URL] [--store embedded|jetstream]`
//!
//! With `--webhook`, every affected image is subscribed (`vuln_update`) and a webhook
//! receiver on this machine takes the deliveries: also prints the p50/p99 latency from
//! the delta to the webhook's receipt.
//!
//! `cargo run --release -p vigil-loadtest -- ingest [--repos 300]`: N tiny images
//! in N repositories of a local registry, `vigil run all` on a nats-server, then `vigil
//! ingest` of the registry twice: cold (every image scanned) and again with a new id
//! (every image analysed before): prints images per second for both.
//!
//! `cargo run --release -p vigil-loadtest -- throughput [--images 1000] [--bases 10]`:
//! a whole deployment on this machine (3-node nats-server cluster, every stage in its own
//! `vigil run` process, two replicas of extract and match, JetStream store, R3), N
//! generated images on B base layers pushed to a local registry and submitted at once.
//! Prints images per second, p50/p99 request latency, layer extractions (each distinct
//! layer should be extracted once) and each process's peak RSS. Needs the `vigil`
//! binary (`VIGIL_BIN`, else `target/debug/vigil`, built on demand).
//!
//! `cargo run --release -p vigil-loadtest -- chaos [--requests 200]`: the same deployment
//! with the testbed images; stage processes killed and restarted, the work stream's
//! leader node killed, a node cut off for 30 s; prints requests, lost, duplicated,
//! failed, restarts.
//!
//! Re-match on new data: store N image analyses (Debian 12 images of P packages each; M
//! of them hold `openssl` at an affected version), match each once so the reverse index
//! is built, then run the match, evaluate and notify stages on JetStream, store one new
//! advisory for `debian:12/openssl` and publish the feed delta. Measured: the time from
//! publishing the delta until all M `vuln_update` notifications are published.
//! Without `--nats`, a nats-server is started on a free port (`VIGIL_NATS_SERVER` or
//! `nats-server` on PATH).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use vigil_contracts::{
    Advisory, AffectedRange, Analysis, Distro, FeedDelta, FixState, ImageConfig, ImageDescriptor,
    ImageRef, Package, PackageKey, PackageType, Severity, SourceKind, Subject,
};
use vigil_runtime::jetstream::{self, JetStreamRunner};
use vigil_runtime::{Outgoing, Stage};
use vigil_store::Store;

mod images;

struct Args {
    images: usize,
    affected: usize,
    packages: usize,
    concurrency: usize,
    nats: Option<String>,
    jetstream_store: bool,
    /// Also subscribe every affected image and deliver its `vuln_update` to a webhook
    /// receiver on this machine: prints the advisory-to-webhook latency.
    webhook: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        images: 10_000,
        affected: 1_000,
        packages: 50,
        concurrency: 16,
        nats: None,
        jetstream_store: false,
        webhook: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--images" => a.images = val()?.parse()?,
            "--affected" => a.affected = val()?.parse()?,
            "--packages" => a.packages = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--nats" => a.nats = Some(val()?),
            "--webhook" => a.webhook = true,
            "--store" => {
                a.jetstream_store = match val()?.as_str() {
                    "embedded" => false,
                    "jetstream" => true,
                    other => bail!("--store {other}: use embedded or jetstream"),
                }
            }
            other => bail!("unknown option {other}"),
        }
    }
    if a.affected > a.images {
        bail!("--affected must not exceed --images");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("rematch") => {
            let args = parse_args(argv)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(rematch(args))
        }
        Some("throughput") => {
            let (mut images, mut bases) = (1000usize, 10usize);
            while let Some(flag) = argv.next() {
                let v: usize = argv
                    .next()
                    .with_context(|| format!("{flag} needs a value"))?
                    .parse()?;
                match flag.as_str() {
                    "--images" => images = v,
                    "--bases" => bases = v,
                    other => bail!("unknown option {other}"),
                }
            }
            throughput(images, bases.max(1))
        }
        Some("ingest") => {
            let mut repos = 300usize;
            while let Some(flag) = argv.next() {
                match flag.as_str() {
                    "--repos" => repos = argv.next().context("--repos needs a value")?.parse()?,
                    other => bail!("unknown option {other}"),
                }
            }
            ingest(repos)
        }
        Some("chaos") => {
            let mut requests = 200usize;
            while let Some(flag) = argv.next() {
                match flag.as_str() {
                    "--requests" => {
                        requests = argv.next().context("--requests needs a value")?.parse()?
                    }
                    other => bail!("unknown option {other}"),
                }
            }
            chaos(requests)
        }
        _ => bail!("usage: vigil-loadtest rematch [--images N] [--affected M] [--packages P] [--concurrency C] [--nats URL] [--store embedded|jetstream]\n       vigil-loadtest throughput [--images N] [--bases B]\n       vigil-loadtest chaos [--requests N]"),
    }
}

fn chaos(requests: usize) -> Result<()> {
    use vigil_e2e::cluster::{chaos_run, Deployment, Layout};
    let layout = Layout::default();
    let images = layout.images.clone();
    let mut d = Deployment::start(layout);
    d.wait_consuming(Duration::from_secs(120));
    let ids: Vec<String> = (0..requests).map(|i| format!("chaos-{i:05}")).collect();
    let t = Instant::now();
    let tally = chaos_run(&mut d, &ids, &images, Duration::from_secs(900));
    println!(
        "chaos: {tally} ({:.0} s; 3 nats nodes: one killed and restarted, one cut off (or, without root, frozen) 30 s, one restarted)",
        t.elapsed().as_secs_f64()
    );
    if tally.lost + tally.duplicated + tally.failed > 0 || tally.work_left > 0 {
        bail!("the chaos run lost, duplicated or failed requests");
    }
    Ok(())
}

/// Registry ingestion throughput: cold (every image scanned) and warm (all analysed).
fn ingest(repos: usize) -> Result<()> {
    let nats = vigil_testkit::Nats::start();
    let registry = vigil_testkit::Registry::start(Default::default());
    let host = registry.host();
    let t = Instant::now();
    let images: Vec<(String, String, String)> = (0..repos)
        .map(|i| {
            (
                format!("load/app-{i:05}"),
                "latest".to_string(),
                format!("salt-{i}"),
            )
        })
        .collect();
    vigil_testkit::tiny_images::push_tiny_many(&host, &images);
    println!(
        "pushed {repos} tiny images in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let v = vigil_e2e::Vigil::new()
        .env("VIGIL_NATS__URL", &nats.url())
        .env("VIGIL_NATS__CONCURRENCY", "8")
        .env("VIGIL_WATCH__INGEST_RATE_PER_SEC", "1000")
        .env("VIGIL_WATCH__INGEST_BURST", "100")
        .env("VIGIL_WATCH__SCAN_RATE_PER_SEC", "1000");
    let mut runner = v.spawn(&["run", "all"], "run.log");
    let measured = (|| -> Result<()> {
        let rt = tokio::runtime::Runtime::new()?;
        let mut notes = vigil_e2e::subscribe(&rt, &nats.url(), "vigil.notify.analysis_update");
        std::thread::sleep(Duration::from_secs(3));
        let timed_ingest = |id: &str| -> Result<(Duration, serde_json::Value)> {
            let t = Instant::now();
            let out = v.run(&[
                "ingest",
                &host,
                "--tags",
                "all",
                "--id",
                id,
                "-o",
                "json",
                "--timeout",
                "1800",
            ]);
            if !out.status.success() {
                bail!(
                    "vigil ingest: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    v.log("run.log")
                );
            }
            Ok((t.elapsed(), serde_json::from_slice(&out.stdout)?))
        };
        let t = Instant::now();
        let (walk, progress) = timed_ingest("cold")?;
        let mut scanned = 0usize;
        while scanned < repos {
            let left = Duration::from_secs(1800).saturating_sub(t.elapsed());
            match rt.block_on(async { tokio::time::timeout(left, notes.next()).await }) {
                Ok(Some(_)) => scanned += 1,
                _ => bail!("{scanned} of {repos} images scanned\n{}", v.log("run.log")),
            }
        }
        let cold = t.elapsed();
        println!(
            "ingest cold: {repos} images queued {} in {:.1} s (walk), all scanned after {:.1} s = {:.1} images/s",
            progress["queued"],
            walk.as_secs_f64(),
            cold.as_secs_f64(),
            repos as f64 / cold.as_secs_f64()
        );
        let (warm, progress) = timed_ingest("warm")?;
        println!(
            "ingest warm (everything analysed): {repos} images, {} skipped, in {:.1} s = {:.1} images/s",
            progress["skipped"],
            warm.as_secs_f64(),
            repos as f64 / warm.as_secs_f64()
        );
        if progress["skipped"] != repos as u64 {
            bail!("the warm ingestion did not skip every image: {progress}");
        }
        Ok(())
    })();
    vigil_e2e::terminate(&mut runner);
    measured
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn throughput(n: usize, bases: usize) -> Result<()> {
    use vigil_e2e::cluster::{wait_for_all, Deployment, Layout};
    vigil_runtime::install_crypto_provider();
    let mut d = Deployment::start(Layout {
        images: Vec::new(),
        ..Default::default()
    });
    let host = d.registry.host();
    let t = Instant::now();
    let generated = d.rt.block_on(images::push_generated(&host, n, bases))?;
    println!(
        "pushed {n} generated images on {bases} base layers in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    d.wait_consuming(Duration::from_secs(120));
    let ids: Vec<String> = (0..n).map(|i| format!("load-{i:05}")).collect();
    let sources: Vec<String> = generated
        .iter()
        .map(|g| format!("{host}/{}:latest", g.repo))
        .collect();
    let t = Instant::now();
    d.submit_sources(&ids, &sources);
    let tally = wait_for_all(&d, &ids, Duration::from_secs(1800));
    let wall = t.elapsed();
    let results = d.results();
    let mut latencies: Vec<i64> = ids
        .iter()
        .filter_map(|id| results.get(id)?.first())
        .filter(|r| r.completed_at > 0)
        .map(|r| r.completed_at)
        .collect();
    let started = vigil_runtime::now_millis() - wall.as_millis() as i64;
    for l in latencies.iter_mut() {
        *l -= started;
    }
    latencies.sort();
    let extractions = d.extractions();
    let distinct: std::collections::BTreeSet<&String> =
        generated.iter().flat_map(|g| g.layers.iter()).collect();
    let extracted_once = distinct
        .iter()
        .filter(|l| extractions.get(**l) == Some(&1))
        .count();
    let total_extractions: usize = extractions.values().sum();
    println!(
        "throughput: {n} images in {:.1} s = {:.1} images/s; latency (all submitted at once, from the first submit to each result) p50 {} ms, p99 {} ms; {tally}",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    println!(
        "layers: {} distinct, {extracted_once} extracted exactly once, {total_extractions} extractions in all",
        distinct.len()
    );
    for p in &d.processes {
        println!(
            "  peak RSS {}-{}: {} MiB",
            p.stage,
            p.replica,
            p.peak_rss_kb().unwrap_or(0) / 1024
        );
    }
    if tally.lost + tally.failed > 0 {
        bail!("requests lost or failed: {tally}");
    }
    Ok(())
}

fn openssl_key() -> PackageKey {
    PackageKey {
        namespace: "debian:12".into(),
        package: "openssl".into(),
    }
}

/// A synthetic Debian 12 image: `packages` packages from a pool of 2,000 names, plus
/// openssl at an affected version when `affected`.
fn analysis(i: usize, packages: usize, affected: bool) -> Analysis {
    let digest = format!("sha256:{i:064x}");
    let mut pkgs: Vec<Package> = (0..packages)
        .map(|j| {
            let mut p = Package::new(
                format!("pkg-{}", (i * 7 + j * 13) % 2000),
                "1.0-1",
                PackageType::Deb,
            );
            p.locations.push("/var/lib/dpkg/status".into());
            p
        })
        .collect();
    if affected {
        let mut p = Package::new("openssl", "3.0.11-1~deb12u2", PackageType::Deb);
        p.locations.push("/var/lib/dpkg/status".into());
        pkgs.push(p);
    }
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    pkgs.dedup_by(|a, b| a.name == b.name);
    Analysis::of_packages(
        ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Registry,
                name: format!("registry.example/team/app-{i}"),
                tag: Some("latest".into()),
                digest,
                index_digest: None,
                config_digest: format!("sha256:{:064x}", i + 1_000_000),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            },
            layers: Vec::new(),
        },
        Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        }),
        pkgs,
    )
}

fn new_advisory() -> Advisory {
    Advisory {
        id: "CVE-2099-0001".into(),
        aliases: Vec::new(),
        namespace: "debian:12".into(),
        package: "openssl".into(),
        feed: "loadtest".into(),
        severity: Severity::High,
        state: FixState::Fixed,
        ranges: vec![AffectedRange {
            kind: Default::default(),
            introduced: None,
            fixed: Some("3.0.13-1~deb12u1".into()),
            last_affected: None,
        }],
        versions: Vec::new(),
        description: Some("load test advisory".into()),
        urls: Vec::new(),
        published: None,
        modified: None,
        cvss: Vec::new(),
        cwes: Vec::new(),
        withdrawn: false,
        vendor_only: false,
        fix_published: None,
        module: None,
    }
}

async fn rematch(args: Args) -> Result<()> {
    let _server;
    let url = match &args.nats {
        Some(u) => u.clone(),
        None => {
            let n = vigil_testkit::Nats::start();
            let u = n.url();
            _server = n;
            u
        }
    };
    let dir = tempfile::tempdir()?;
    let store = if args.jetstream_store {
        let client = jetstream::connect(&url).await?;
        Store::new(Arc::new(
            vigil_store::jetstream_backend::JetStreamBackend::open(
                async_nats::jetstream::new(client),
                "LOADTEST",
                1,
            )
            .await?,
        ))
    } else {
        Store::open_embedded(&dir.path().join("vigil.redb"))?
    };
    let matcher = Arc::new(vigil_match::MatchStage::new(store.clone()));

    // Seed: analyses, each matched once (report + reverse index).
    let t = Instant::now();
    futures::stream::iter(0..args.images)
        .map(|i| {
            let store = store.clone();
            let matcher = matcher.clone();
            let a = analysis(i, args.packages, i < args.affected);
            async move {
                let digest = a.descriptor.image.digest.clone();
                store.put_analysis(&a).await?;
                matcher.match_image(&digest).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    let indexed = store.images_for_key(&openssl_key()).await?.len();
    println!(
        "seeded {} analyses ({} packages each, {indexed} holding openssl) in {:.1} s",
        args.images,
        args.packages,
        t.elapsed().as_secs_f64()
    );
    if indexed != args.affected {
        bail!(
            "reverse index holds {indexed} images for openssl, expected {}",
            args.affected
        );
    }

    // The pipeline stages after the feeds: match, evaluate, notify.
    let client = jetstream::connect(&url).await?;
    let subjects = vigil_contracts::Subjects::default();
    let mut runner = JetStreamRunner::new(client.clone(), subjects.clone(), Default::default());
    runner.concurrency = args.concurrency;
    jetstream::ensure_streams(runner.context(), &subjects, &Default::default()).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let receiver = args.webhook.then(vigil_e2e::receiver::Receiver::start);
    let mut deliver = vigil_deliver::DeliverConfig::default();
    if let Some(r) = &receiver {
        deliver.webhooks.insert(
            "general".into(),
            vigil_deliver::WebhookConfig {
                url: r.url("/hook/<notification_type>"),
                secret: Some("loadtest".into()),
                ..Default::default()
            },
        );
        deliver.concurrency = args.concurrency;
        for i in 0..args.affected {
            let tag = analysis(i, 1, true).descriptor.image.full_tag();
            store
                .put_subscription(&vigil_contracts::watch::Subscription {
                    account: vigil_contracts::watch::DEFAULT_ACCOUNT.into(),
                    kind: vigil_contracts::watch::SubscriptionKind::VulnUpdate,
                    key: tag,
                    active: true,
                    digests: Vec::new(),
                    created_at: 0,
                    updated_at: 0,
                })
                .await?;
        }
    }
    let stages: Vec<Arc<dyn Stage>> = vec![
        matcher.clone(),
        Arc::new(vigil_evaluate::EvaluateStage::new(store.clone())),
        Arc::new(vigil_notify::NotifyStage::new(store.clone()).with_deliver(deliver.clone())),
    ];
    let mut tasks = Vec::new();
    if receiver.is_some() {
        let d = vigil_deliver::Deliverer::new(
            deliver,
            store.clone(),
            runner.context().clone(),
            subjects.clone(),
        );
        let rx = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = d.run(rx).await {
                eprintln!("deliverer: {e}");
            }
        }));
    }
    for s in stages {
        let r = runner.clone();
        let rx = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = r.run_stage(s, rx).await {
                eprintln!("stage: {e}");
            }
        }));
    }
    let mut notes = client
        .subscribe(subjects.render(&Subject::Notify(
            vigil_contracts::NotificationKind::VulnUpdate,
        )))
        .await?;
    client.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // consumers bound

    // The new advisory and the feed's state (as a sync writes them), then the delta
    // that names its key.
    store
        .replace_advisories(&openssl_key(), &[new_advisory()])
        .await?;
    store
        .put_feed_state(&vigil_contracts::FeedState {
            feed: "loadtest".into(),
            url: "loadtest:".into(),
            last_sync: vigil_runtime::now_millis(),
            record_count: 1,
            namespaces: [("debian:12".to_string(), 1)].into(),
            ..Default::default()
        })
        .await?;
    let delta = FeedDelta {
        feed: "loadtest".into(),
        sync_id: format!("sync-{}", std::process::id()),
        changed: vec![openssl_key()],
        synced_at: vigil_runtime::now_millis(),
    };
    let t = Instant::now();
    jetstream::publish(
        runner.context(),
        &subjects,
        &Outgoing::record(Subject::FeedsUpdated, delta.sync_id.clone(), &delta)?,
    )
    .await?;
    let mut first = None;
    let mut got = 0usize;
    let deadline = Duration::from_secs(300);
    while got < args.affected {
        match tokio::time::timeout(deadline.saturating_sub(t.elapsed()), notes.next()).await {
            Ok(Some(_)) => {
                got += 1;
                first.get_or_insert(t.elapsed());
            }
            _ => bail!(
                "only {got} of {} notifications after {deadline:?}",
                args.affected
            ),
        }
    }
    let all = t.elapsed();
    println!(
        "re-match ({} store): {} images stored, {} affected: first vuln_update after {:.0} ms, all {} after {:.0} ms ({:.0} notifications/s; {} cores, concurrency {})",
        if args.jetstream_store { "JetStream" } else { "embedded" },
        args.images,
        args.affected,
        first.unwrap_or_default().as_secs_f64() * 1e3,
        got,
        all.as_secs_f64() * 1e3,
        got as f64 / all.as_secs_f64(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.concurrency
    );
    // Nothing beyond the affected images.
    if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), notes.next()).await {
        bail!("more notifications than affected images");
    }
    if let Some(r) = &receiver {
        let deadline = Instant::now() + Duration::from_secs(300);
        let got = loop {
            let got = r.received();
            if got.len() >= args.affected || Instant::now() >= deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if got.len() != args.affected {
            bail!(
                "{} of {} webhook deliveries arrived",
                got.len(),
                args.affected
            );
        }
        let mut ids: Vec<&str> = got
            .iter()
            .filter_map(|g| g.header("x-vigil-notification-id"))
            .collect();
        ids.sort();
        ids.dedup();
        if ids.len() != args.affected {
            bail!(
                "{} distinct notifications among {} deliveries",
                ids.len(),
                got.len()
            );
        }
        let mut lat: Vec<f64> = got
            .iter()
            .map(|g| g.at.duration_since(t).as_secs_f64() * 1e3)
            .collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
        println!(
            "webhook delivery: {} notifications, advisory delta → webhook receipt p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
            lat.len(),
            pct(0.50),
            pct(0.99),
            lat.last().copied().unwrap_or_default()
        );
    }
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
