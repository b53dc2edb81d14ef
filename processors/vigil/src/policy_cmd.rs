//! `vigil policy …`: stored policy bundles (add, list, get, activate, delete), validation,
//! interactive evaluation of an analysed image, and evaluation history.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use vigil_contracts::{Action, Subject};
use vigil_evaluate::policy;
use vigil_runtime::jetstream;
use vigil_runtime::Outgoing;

use crate::cli::NatsArgs;
use crate::wiring::{self, Config};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate and store a bundle (Anchore format, JSON); `--activate` makes it active.
    Add {
        file: PathBuf,
        #[arg(long)]
        activate: bool,
    },
    /// List stored bundles; the active one is marked.
    List,
    /// Print a stored bundle's JSON.
    Get { id: String },
    /// Make a stored bundle the active one. With `--nats` (or `VIGIL_NATS__URL`) the
    /// change is published, and the cluster re-evaluates every evaluated image.
    Activate {
        id: String,
        #[arg(long)]
        publish: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Send a bundle file to a running cluster (`vigil run`): its evaluate stage stores it,
    /// makes it active and re-evaluates every evaluated image; a `policy_eval`
    /// notification goes out for each image whose final action changed.
    Publish {
        file: PathBuf,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Delete a stored bundle (not the active one).
    Delete { id: String },
    /// Check a bundle file; every problem is named by policy, rule and parameter.
    Validate { file: PathBuf },
    /// Evaluate an analysed image now, without storing the result.
    Eval {
        /// Image digest (`sha256:…`) as `vigil scan` printed it.
        digest: String,
        /// Bundle file (default: the active stored bundle, else the built-in one).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Tag to evaluate as (mapping selection); default: the analysed tag.
        #[arg(long)]
        tag: Option<String>,
        /// OpenVEX documents whose `not_affected` / `fixed` statements allowlist findings.
        #[arg(long)]
        vex: Vec<PathBuf>,
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
        /// Exit with 1 when the final action is STOP.
        #[arg(long)]
        fail_on_policy: bool,
    },
    /// Evaluation history of an image for a tag, oldest first.
    History {
        digest: String,
        #[arg(long)]
        tag: String,
    },
}

fn read(p: &PathBuf) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

pub async fn run(cfg: Config, cmd: PolicyCmd) -> Result<ExitCode> {
    if let PolicyCmd::Validate { file } = &cmd {
        let text = read(file)?;
        return Ok(match vigil_evaluate::load_bundle(&text) {
            Ok(b) => {
                println!(
                    "{}: valid bundle {:?} ({} policies, {} mappings)",
                    file.display(),
                    b.id,
                    b.policies.len(),
                    b.mappings.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(1)
            }
        });
    }
    if let PolicyCmd::Publish { file, nats } = &cmd {
        let json = read(file)?;
        let bundle = vigil_evaluate::load_bundle(&json)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let now = vigil_runtime::now_millis();
        let update = vigil_contracts::PolicyUpdated {
            bundle_id: policy::bundle_store_id(&bundle, &json),
            updated_at: now,
            bundle_json: Some(json),
        };
        publish_update(cfg, nats, &update).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
    let now = vigil_runtime::now_millis();
    match cmd {
        PolicyCmd::Publish { .. } => unreachable!("handled above"),
        PolicyCmd::Validate { .. } => unreachable!("handled above"),
        PolicyCmd::Add { file, activate } => {
            let stored = policy::add_bundle(&store, &read(&file)?, now).await?;
            println!("{}", stored.id);
            if activate {
                policy::activate_bundle(&store, &stored.id, now).await?;
                eprintln!("vigil: {} is now the active bundle", stored.id);
            }
        }
        PolicyCmd::List => {
            for b in policy::list_bundles(&store).await? {
                println!(
                    "{} {:<32} {}",
                    if b.active { "*" } else { " " },
                    b.id,
                    b.name
                );
            }
        }
        PolicyCmd::Get { id } => println!("{}", policy::get_bundle(&store, &id).await?.json),
        PolicyCmd::Activate { id, publish, nats } => {
            let update = policy::activate_bundle(&store, &id, now).await?;
            eprintln!("vigil: {id} is now the active bundle");
            if publish || nats.nats.is_some() {
                publish_update(cfg, &nats, &update).await?;
            }
        }
        PolicyCmd::Delete { id } => {
            policy::delete_bundle(&store, &id).await?;
            eprintln!("vigil: deleted {id}");
        }
        PolicyCmd::Eval {
            digest,
            policy: file,
            tag,
            vex,
            output,
            fail_on_policy,
        } => {
            let bundle = match &file {
                Some(f) => vigil_evaluate::load_bundle(&read(f)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
                None => policy::active_bundle(&store).await?,
            };
            let mut allow = Vec::new();
            for v in &vex {
                allow.push(
                    vigil_evaluate::allowlist_from_openvex(&read(v)?)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", v.display()))?,
                );
            }
            let e = policy::evaluate_stored(&store, &bundle, &digest, tag.as_deref(), &allow, now)
                .await?;
            if output == "json" {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&vigil_evaluate::render_json(&e))?
                );
            } else {
                print!("{}", vigil_evaluate::render_table(&e));
            }
            if fail_on_policy && e.final_action == Action::Stop {
                return Ok(ExitCode::from(1));
            }
        }
        PolicyCmd::History { digest, tag } => {
            for e in policy::history(&store, &digest, &tag).await? {
                println!(
                    "{}  {:<4}  {}  {}",
                    e.evaluated_at,
                    e.final_action.as_str(),
                    e.bundle_id,
                    e.final_action_reason
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Publish a `PolicyUpdated` on `<prefix>.policy.updated`.
async fn publish_update(
    cfg: Config,
    nats: &NatsArgs,
    update: &vigil_contracts::PolicyUpdated,
) -> Result<()> {
    let cfg = crate::cli::apply_nats(cfg, nats);
    let client = cfg.nats.connect_client().await?;
    let subjects = cfg.nats.subjects();
    let js = async_nats::jetstream::new(client);
    jetstream::ensure_streams(&js, &subjects, &cfg.nats.stream_tuning()).await?;
    let out = Outgoing::record(
        Subject::PolicyUpdated,
        format!("policy-updated-{}-{}", update.bundle_id, update.updated_at),
        update,
    )?;
    jetstream::publish(&js, &subjects, &out).await?;
    eprintln!(
        "vigil: published policy bundle {} on {}",
        update.bundle_id, cfg.nats.connect.url
    );
    Ok(())
}
