//! `vigil notify …` (webhook test sends, delivery logs, dead letters and their replay)
//! and `vigil ingest` (walk a registry on the running cluster, with progress).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use futures::StreamExt;
use vigil_contracts::watch::{
    IngestProgress, IngestRequest, IngestState, TagSelection, DEFAULT_ACCOUNT,
};
use vigil_contracts::{codec, Subject};
use vigil_runtime::jetstream;
use vigil_runtime::Outgoing;

use crate::cli::NatsArgs;
use crate::wiring::{self, Config};

#[derive(Subcommand)]
pub enum NotifyCmd {
    /// Send a sample notification of TYPE (tag_update, analysis_update, vuln_update,
    /// policy_eval, repo_update, or `event`) to the webhook configured for it, once, and
    /// print the answer (Anchore's `POST /system/webhooks/{type}/test`).
    Test {
        #[arg(name = "TYPE")]
        kind: String,
    },
    /// The delivery log of a notification (or event): one entry per webhook, with every
    /// attempt's status code or error.
    Log {
        id: String,
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Deliveries given up on (after the retry window), per webhook.
    Dead {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Queue dead deliveries again: one by id, or `--all` (of `--endpoint`, or every one).
    Replay {
        delivery_id: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, conflicts_with = "delivery_id")]
        all: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(clap::Args)]
pub struct IngestArgs {
    /// `HOST[:PORT][/PREFIX]`: the whole catalog, or the repositories under PREFIX.
    pub target: String,
    /// `latest`, `all`, or a regex the tags must match.
    #[arg(long, default_value = "latest")]
    pub tags: String,
    /// Stop after queueing this many images.
    #[arg(long)]
    pub max_images: Option<u64>,
    /// Registry requests per second (default: `[watch] ingest_rate_per_sec`).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Ingestion id: the same id continues an earlier ingestion where it stopped
    /// (default: derived from the target and tag selection).
    #[arg(long)]
    pub id: Option<String>,
    /// Publish the request and exit without following its progress.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to follow the progress before giving up (the ingestion goes on).
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
    #[command(flatten)]
    pub nats: NatsArgs,
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn notify(cfg: Config, cmd: NotifyCmd) -> Result<ExitCode> {
    match cmd {
        NotifyCmd::Test { kind } => {
            let (endpoint, attempt) =
                vigil_deliver::send_test(&cfg.deliver, &kind, DEFAULT_ACCOUNT)
                    .await
                    .with_context(|| format!("test notification {kind}"))?;
            let ok = attempt.status.is_some_and(|s| (200..300).contains(&s));
            match (&attempt.status, &attempt.error) {
                (Some(s), _) => println!(
                    "{kind} → webhook {endpoint}: HTTP {s} in {} ms",
                    attempt.took_ms
                ),
                (None, Some(e)) => println!("{kind} → webhook {endpoint}: failed: {e}"),
                (None, None) => println!("{kind} → webhook {endpoint}: no answer"),
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        NotifyCmd::Log { id, output } => {
            let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
            let logs = store.delivery_logs(&id).await?;
            if output == "json" {
                print_json(&logs)?;
                return Ok(ExitCode::SUCCESS);
            }
            if logs.is_empty() {
                println!(
                    "no delivery of {id} (no active subscription, or no webhook for its type)"
                );
            }
            for l in logs {
                println!(
                    "{} → {} ({}): {:?} after {} attempts{}",
                    l.body_id,
                    l.endpoint,
                    l.url,
                    l.state,
                    l.attempt_count,
                    l.last_error
                        .as_deref()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                );
                for a in &l.attempts {
                    println!(
                        "  {}  {}  {} ms",
                        a.at,
                        a.status
                            .map(|s| format!("HTTP {s}"))
                            .or_else(|| a.error.clone())
                            .unwrap_or_default(),
                        a.took_ms
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NotifyCmd::Dead { endpoint, output } => {
            let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
            let dead = store.list_dead_deliveries(endpoint.as_deref()).await?;
            if output == "json" {
                print_json(&dead)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<16} {:<70} {:<8} LAST ERROR",
                "WEBHOOK", "DELIVERY", "ATTEMPTS"
            );
            for d in dead {
                println!(
                    "{:<16} {:<70} {:<8} {}",
                    d.task.endpoint,
                    d.task.delivery_id(),
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NotifyCmd::Replay {
            delivery_id,
            endpoint,
            all,
            nats,
        } => {
            let cfg = crate::cli::apply_nats(cfg, &nats);
            let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
            let js = async_nats::jetstream::new(cfg.nats.connect_client().await?);
            let subjects = cfg.nats.subjects();
            jetstream::ensure_streams(&js, &subjects, &cfg.nats.stream_tuning()).await?;
            let n = match (delivery_id, all) {
                (Some(id), _) => {
                    let endpoint = match endpoint {
                        Some(e) => e,
                        None => store
                            .list_dead_deliveries(None)
                            .await?
                            .into_iter()
                            .find(|d| d.task.delivery_id() == id)
                            .map(|d| d.task.endpoint)
                            .with_context(|| format!("no dead delivery {id}"))?,
                    };
                    if !vigil_deliver::replay(&store, &js, &subjects, &endpoint, &id).await? {
                        bail!("no dead delivery {id} for webhook {endpoint}");
                    }
                    1
                }
                (None, true) => {
                    vigil_deliver::replay_all(&store, &js, &subjects, endpoint.as_deref()).await?
                }
                (None, false) => bail!("name a delivery id, or --all"),
            };
            println!("{n} deliveries queued again");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `HOST[:PORT][/PREFIX]` → (host, prefix).
pub fn split_target(target: &str) -> Result<(String, String)> {
    let t = target
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, prefix) = match t.split_once('/') {
        Some((h, p)) => (h, p.to_string()),
        None => (t, String::new()),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("{target:?}: expected HOST[:PORT][/PREFIX]");
    }
    Ok((host.to_string(), prefix))
}

pub fn tag_selection(s: &str) -> Result<TagSelection> {
    Ok(match s {
        "latest" => TagSelection::Latest,
        "all" => TagSelection::All,
        re => {
            regex::Regex::new(re).with_context(|| format!("--tags {re:?} is not a regex"))?;
            TagSelection::Regex(re.to_string())
        }
    })
}

pub async fn ingest(cfg: Config, a: IngestArgs) -> Result<ExitCode> {
    let cfg = crate::cli::apply_nats(cfg, &a.nats);
    let (registry, prefix) = split_target(&a.target)?;
    let tags = tag_selection(&a.tags)?;
    let id = a.id.clone().unwrap_or_else(|| {
        let mut id = format!("{registry}-{prefix}-{}", a.tags);
        id = vigil_contracts::subjects::sanitize_token(&id);
        id.truncate(120);
        id
    });
    let client = cfg.nats.connect_client().await?;
    let subjects = cfg.nats.subjects();
    let js = async_nats::jetstream::new(client);
    jetstream::ensure_streams(&js, &subjects, &cfg.nats.stream_tuning()).await?;
    let request = IngestRequest {
        id: id.clone(),
        account: DEFAULT_ACCOUNT.into(),
        registry: registry.clone(),
        prefix: prefix.clone(),
        tags,
        max_images: a.max_images,
        rate_per_sec: a.rate,
        requested_at: vigil_runtime::now_millis(),
    };
    // Follow progress from the results stream (so nothing published before we listen is
    // missed), starting with the last progress record of this id.
    let consumer = if a.no_wait {
        None
    } else {
        let stream = js
            .get_stream(vigil_contracts::streams::results_stream_name(&subjects))
            .await?;
        Some(
            stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: subjects.render(&Subject::IngestProgress(id.clone())),
                    deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                })
                .await?,
        )
    };
    // The message id carries the request time: asking again continues the same
    // ingestion (same id) rather than being dropped as a duplicate.
    let out = Outgoing::record(
        Subject::IngestRequest,
        format!("ingest-{id}-{}", request.requested_at),
        &request,
    )?;
    jetstream::publish(&js, &subjects, &out).await?;
    eprintln!(
        "vigil: ingestion {id} of {registry}{} requested",
        if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        }
    );
    let Some(consumer) = consumer else {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && a.output != "json" {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} repositories {pos}/{len} [{bar:30}] {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut messages = consumer.messages().await?;
    let mut printed = tokio::time::Instant::now();
    let p = loop {
        let msg = match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(m)) => m?,
            Ok(None) => bail!("the progress stream closed"),
            Err(_) => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                bail!(
                    "ingestion {id} still running after {} s (it goes on; run the same command again to follow it)",
                    a.timeout
                );
            }
        };
        let p: IngestProgress = codec::decode(&msg.payload)?;
        if let Some(b) = &bar {
            b.set_length(p.repositories.max(p.repositories_done));
            b.set_position(p.repositories_done);
            b.set_message(format!(
                "queued {} skipped {} errors {}{}",
                p.queued,
                p.skipped,
                p.errors,
                if p.catalog_complete {
                    ""
                } else {
                    " (catalog still walking)"
                }
            ));
        } else if a.output != "json"
            && (printed.elapsed() >= Duration::from_secs(5) || p.state != IngestState::Running)
        {
            eprintln!(
                "vigil: {id}: repositories {}/{}{} queued {} skipped {} errors {}",
                p.repositories_done,
                p.repositories,
                if p.catalog_complete { "" } else { "+" },
                p.queued,
                p.skipped,
                p.errors
            );
            printed = tokio::time::Instant::now();
        }
        if p.state != IngestState::Running {
            break p;
        }
    };
    if let Some(b) = &bar {
        b.finish();
    }
    if a.output == "json" {
        print_json(&p)?;
    } else {
        println!(
            "{}: {:?}: {} repositories, {} images queued, {} skipped (analysed before), {} errors{}",
            p.id,
            p.state,
            p.repositories_done,
            p.queued,
            p.skipped,
            p.errors,
            p.last_error
                .as_deref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(if p.state == IngestState::Done {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_tag_selections() {
        assert_eq!(
            split_target("127.0.0.1:5000").unwrap(),
            ("127.0.0.1:5000".into(), String::new())
        );
        assert_eq!(
            split_target("https://reg.io/team/").unwrap(),
            ("reg.io".into(), "team".into())
        );
        assert!(split_target("").is_err());
        assert_eq!(tag_selection("all").unwrap(), TagSelection::All);
        assert_eq!(
            tag_selection("^v[0-9]+$").unwrap(),
            TagSelection::Regex("^v[0-9]+$".into())
        );
        assert!(tag_selection("(").is_err());
    }
}
