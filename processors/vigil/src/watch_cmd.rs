//! `vigil watch …`, `vigil repo …`, `vigil subscription …`, `vigil event …`: the watch
//! list, subscriptions and the event log, in the configured store (shared with the
//! running pipeline: the JetStream store or ScyllaDB; the embedded store only while no
//! `vigil run` holds it).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use vigil_contracts::watch::{
    EventLevel, Subscription, SubscriptionKind, WatchedRepo, WatchedTag, DEFAULT_ACCOUNT,
};
use vigil_store::{EventFilter, Store};

use crate::wiring::{self, Config};

#[derive(Subcommand)]
pub enum WatchCmd {
    /// Watch a tag: it is resolved every interval, and a new digest is scanned and
    /// announced (`tag_update`). `--autosubscribe` turns on the tag's subscriptions
    /// (tag_update, analysis_update, vuln_update, policy_eval), as `anchore-cli image add` does.
    Add {
        /// `[HOST/]REPO[:TAG]` (default tag `latest`).
        tag: String,
        /// Seconds between polls (default: the registry's, else `[watch] default_interval_secs`).
        #[arg(long)]
        interval: Option<u64>,
        #[arg(long)]
        autosubscribe: bool,
    },
    /// Stop watching a tag (its history is kept).
    Del {
        tag: String,
    },
    /// Pause or resume a watch.
    Deactivate {
        tag: String,
    },
    Activate {
        tag: String,
    },
    /// Watched tags with their current digest and last check.
    List {
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// The digests a tag pointed at, oldest first.
    History {
        tag: String,
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
}

#[derive(Subcommand)]
pub enum RepoCmd {
    /// Watch a repository: new tags are added as watched tags (and scanned), removed tags
    /// are recorded and their watches dropped.
    Add {
        /// `[HOST/]REPO`.
        repo: String,
        #[arg(long)]
        interval: Option<u64>,
        /// Subscribe each new tag (tag types) and the repository (`repo_update`).
        #[arg(long)]
        autosubscribe: bool,
        /// Only tags matching this regex.
        #[arg(long)]
        tags: Option<String>,
    },
    Del {
        repo: String,
    },
    List {
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Tags removed from a watched repository, oldest first.
    Removed {
        repo: String,
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
}

#[derive(Subcommand)]
pub enum SubscriptionCmd {
    /// Subscriptions of the account.
    List {
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Turn on (creating it when needed) a subscription: TYPE is tag_update,
    /// analysis_update, vuln_update, policy_eval or repo_update; KEY the full tag (or
    /// `HOST/REPO` for repo_update).
    Activate {
        kind: String,
        key: String,
        /// Only notifications about these image digests (Anchore's `{"digests": [...]}`).
        #[arg(long)]
        digest: Vec<String>,
    },
    Deactivate {
        kind: String,
        key: String,
    },
    Del {
        kind: String,
        key: String,
    },
}

#[derive(Subcommand)]
pub enum EventCmd {
    /// The event log, newest first.
    List {
        /// `info`, `warn` or `error`: this level or worse.
        #[arg(long)]
        level: Option<String>,
        /// Event type (`analysis_failed`, `registry_lookup_failed`, `list_tags_failed`,
        /// `feed_sync_started`, `feed_sync_completed`, `feed_sync_failed`, `webhook_given_up`, …).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events whose resource (tag, digest, feed, endpoint) contains this.
        #[arg(long)]
        resource: Option<String>,
        /// How far back: `30m`, `12h`, `7d` (default 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
}

/// `[HOST/]REPO[:TAG]` → `host/repo:tag` (default `latest`); digests are refused.
pub fn normalize_tag(s: &str) -> Result<String> {
    let r = vigil_fetch::source::parse_registry_ref(s).map_err(|e| anyhow::anyhow!("{s}: {e}"))?;
    if r.digest.is_some() {
        bail!("{s}: watch a tag, not a digest");
    }
    Ok(format!(
        "{}:{}",
        r.name(),
        r.tag.as_deref().unwrap_or("latest")
    ))
}

/// `[HOST/]REPO` → `host/repo`.
pub fn normalize_repo(s: &str) -> Result<String> {
    let last = &s[s.rfind('/').map(|i| i + 1).unwrap_or(0)..];
    if last.contains(':') || s.contains('@') {
        bail!("{s}: name a repository, without tag or digest");
    }
    let r = vigil_fetch::source::parse_registry_ref(s).map_err(|e| anyhow::anyhow!("{s}: {e}"))?;
    Ok(r.name())
}

fn parse_kind(s: &str) -> Result<SubscriptionKind> {
    SubscriptionKind::parse(s).with_context(|| {
        format!("unknown subscription type {s:?}: use tag_update, analysis_update, vuln_update, policy_eval or repo_update")
    })
}

fn normalize_key(kind: SubscriptionKind, key: &str) -> Result<String> {
    // Images scanned from a path are keyed by the path (and digest): kept as written.
    if key.starts_with('/') || key.contains(":/") {
        return Ok(key.to_string());
    }
    match kind {
        SubscriptionKind::RepoUpdate => normalize_repo(key),
        _ => normalize_tag(key),
    }
}

/// `30m`, `12h`, `7d`, `90s` → milliseconds.
pub fn parse_age(s: &str) -> Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .with_context(|| format!("{s:?}: expected e.g. 30m, 12h, 7d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" | "" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{s:?}: unit must be s, m, h or d"),
    };
    Ok(n.saturating_mul(ms))
}

fn when(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| ms.to_string()),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn subscribe(
    store: &Store,
    kind: SubscriptionKind,
    key: &str,
    digests: Vec<String>,
) -> Result<()> {
    let now = vigil_runtime::now_millis();
    let sub = match store.get_subscription(DEFAULT_ACCOUNT, kind, key).await? {
        Some(mut s) => {
            s.active = true;
            if !digests.is_empty() {
                s.digests = digests;
            }
            s.updated_at = now;
            s
        }
        None => Subscription {
            account: DEFAULT_ACCOUNT.into(),
            kind,
            key: key.to_string(),
            active: true,
            digests,
            created_at: now,
            updated_at: now,
        },
    };
    store.put_subscription(&sub).await?;
    Ok(())
}

pub async fn watch(cfg: Config, cmd: WatchCmd) -> Result<ExitCode> {
    let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
    let now = vigil_runtime::now_millis();
    match cmd {
        WatchCmd::Add {
            tag,
            interval,
            autosubscribe,
        } => {
            let tag = normalize_tag(&tag)?;
            let w = match store.get_watched_tag(&tag).await? {
                Some(mut w) => {
                    w.active = true;
                    w.interval_secs = interval.or(w.interval_secs);
                    w
                }
                None => WatchedTag {
                    account: DEFAULT_ACCOUNT.into(),
                    tag: tag.clone(),
                    interval_secs: interval,
                    active: true,
                    from_repo: None,
                    digest: None,
                    last_checked_at: None,
                    last_error: None,
                    failures: 0,
                    created_at: now,
                },
            };
            store.put_watched_tag(&w).await?;
            if autosubscribe {
                for k in SubscriptionKind::FOR_TAGS {
                    subscribe(&store, k, &tag, Vec::new()).await?;
                }
            }
            println!("watching {tag}");
        }
        WatchCmd::Del { tag } => {
            let tag = normalize_tag(&tag)?;
            if store.get_watched_tag(&tag).await?.is_none() {
                bail!("{tag} is not watched");
            }
            store.delete_watched_tag(&tag).await?;
            println!("no longer watching {tag}");
        }
        WatchCmd::Activate { tag } => set_active(&store, &tag, true).await?,
        WatchCmd::Deactivate { tag } => set_active(&store, &tag, false).await?,
        WatchCmd::List { output } => {
            let all = store.list_watched_tags().await?;
            if output == "json" {
                return print_json(&all).map(|_| ExitCode::SUCCESS);
            }
            println!(
                "{:<50} {:<8} {:<73} {:<26} LAST ERROR",
                "TAG", "ACTIVE", "DIGEST", "LAST CHECK"
            );
            for w in all {
                println!(
                    "{:<50} {:<8} {:<73} {:<26} {}",
                    w.tag,
                    w.active,
                    w.digest.as_deref().unwrap_or("-"),
                    when(w.last_checked_at),
                    w.last_error.as_deref().unwrap_or("")
                );
            }
        }
        WatchCmd::History { tag, output } => {
            let tag = normalize_tag(&tag)?;
            let h = store.tag_history(&tag).await?;
            if output == "json" {
                return print_json(&h).map(|_| ExitCode::SUCCESS);
            }
            println!("{:<26} DIGEST", "SEEN");
            for e in h {
                println!("{:<26} {}", when(Some(e.seen_at)), e.digest);
            }
        }
    }
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

async fn set_active(store: &Store, tag: &str, active: bool) -> Result<()> {
    let tag = normalize_tag(tag)?;
    let mut w = store
        .get_watched_tag(&tag)
        .await?
        .with_context(|| format!("{tag} is not watched"))?;
    w.active = active;
    store.put_watched_tag(&w).await?;
    println!("{tag}: {}", if active { "active" } else { "inactive" });
    Ok(())
}

pub async fn repo(cfg: Config, cmd: RepoCmd) -> Result<ExitCode> {
    let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
    let now = vigil_runtime::now_millis();
    match cmd {
        RepoCmd::Add {
            repo,
            interval,
            autosubscribe,
            tags,
        } => {
            let repo = normalize_repo(&repo)?;
            if let Some(t) = &tags {
                regex::Regex::new(t).with_context(|| format!("--tags {t:?}"))?;
            }
            let w = match store.get_watched_repo(&repo).await? {
                Some(mut w) => {
                    w.active = true;
                    w.interval_secs = interval.or(w.interval_secs);
                    w.autosubscribe = autosubscribe || w.autosubscribe;
                    w.tag_filter = tags.or(w.tag_filter);
                    w
                }
                None => WatchedRepo {
                    account: DEFAULT_ACCOUNT.into(),
                    repo: repo.clone(),
                    interval_secs: interval,
                    active: true,
                    autosubscribe,
                    tag_filter: tags,
                    tags: Vec::new(),
                    last_checked_at: None,
                    last_error: None,
                    failures: 0,
                    created_at: now,
                },
            };
            store.put_watched_repo(&w).await?;
            if autosubscribe {
                subscribe(&store, SubscriptionKind::RepoUpdate, &repo, Vec::new()).await?;
            }
            println!("watching repository {repo}");
        }
        RepoCmd::Del { repo } => {
            let repo = normalize_repo(&repo)?;
            if store.get_watched_repo(&repo).await?.is_none() {
                bail!("{repo} is not watched");
            }
            store.delete_watched_repo(&repo).await?;
            println!("no longer watching repository {repo}");
        }
        RepoCmd::List { output } => {
            let all = store.list_watched_repos().await?;
            if output == "json" {
                return print_json(&all).map(|_| ExitCode::SUCCESS);
            }
            println!(
                "{:<50} {:<8} {:<6} {:<26} LAST ERROR",
                "REPOSITORY", "ACTIVE", "TAGS", "LAST CHECK"
            );
            for w in all {
                println!(
                    "{:<50} {:<8} {:<6} {:<26} {}",
                    w.repo,
                    w.active,
                    w.tags.len(),
                    when(w.last_checked_at),
                    w.last_error.as_deref().unwrap_or("")
                );
            }
        }
        RepoCmd::Removed { repo, output } => {
            let repo = normalize_repo(&repo)?;
            let all = store.removed_tags(&repo).await?;
            if output == "json" {
                return print_json(&all).map(|_| ExitCode::SUCCESS);
            }
            println!("{:<26} {:<30} LAST DIGEST", "REMOVED", "TAG");
            for r in all {
                println!(
                    "{:<26} {:<30} {}",
                    when(Some(r.removed_at)),
                    r.tag,
                    r.last_digest.as_deref().unwrap_or("-")
                );
            }
        }
    }
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn subscription(cfg: Config, cmd: SubscriptionCmd) -> Result<ExitCode> {
    let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
    match cmd {
        SubscriptionCmd::List { output } => {
            let all = store.list_subscriptions(DEFAULT_ACCOUNT).await?;
            if output == "json" {
                return print_json(&all).map(|_| ExitCode::SUCCESS);
            }
            println!("{:<60} {:<16} ACTIVE", "KEY", "TYPE");
            for s in all {
                println!("{:<60} {:<16} {}", s.key, s.kind.as_str(), s.active);
            }
        }
        SubscriptionCmd::Activate { kind, key, digest } => {
            let kind = parse_kind(&kind)?;
            let key = normalize_key(kind, &key)?;
            subscribe(&store, kind, &key, digest).await?;
            println!("{} {key}: active", kind.as_str());
        }
        SubscriptionCmd::Deactivate { kind, key } => {
            let kind = parse_kind(&kind)?;
            let key = normalize_key(kind, &key)?;
            let mut s = store
                .get_subscription(DEFAULT_ACCOUNT, kind, &key)
                .await?
                .with_context(|| format!("no {} subscription for {key}", kind.as_str()))?;
            s.active = false;
            s.updated_at = vigil_runtime::now_millis();
            store.put_subscription(&s).await?;
            println!("{} {key}: inactive", kind.as_str());
        }
        SubscriptionCmd::Del { kind, key } => {
            let kind = parse_kind(&kind)?;
            let key = normalize_key(kind, &key)?;
            if !store
                .delete_subscription(DEFAULT_ACCOUNT, kind, &key)
                .await?
            {
                bail!("no {} subscription for {key}", kind.as_str());
            }
            println!("{} {key}: deleted", kind.as_str());
        }
    }
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn event(cfg: Config, cmd: EventCmd) -> Result<ExitCode> {
    let store = wiring::open_store(&cfg, vigil_store::embedded::WriteMode::Durable).await?;
    let now = vigil_runtime::now_millis();
    let EventCmd::List {
        level,
        kind,
        resource,
        since,
        limit,
        output,
    } = cmd;
    let level = match level {
        None => None,
        Some(l) => Some(
            EventLevel::parse(&l)
                .with_context(|| format!("--level {l:?}: use info, warn or error"))?,
        ),
    };
    let since = match since {
        None => None,
        Some(s) => Some(now - parse_age(&s)?),
    };
    let events = store
        .list_events(
            &EventFilter {
                since,
                until: None,
                level,
                kind,
                resource,
                account: None,
                limit: Some(limit),
            },
            now,
        )
        .await?;
    if output == "json" {
        return print_json(&events).map(|_| ExitCode::SUCCESS);
    }
    println!(
        "{:<26} {:<6} {:<24} {:<40} MESSAGE",
        "TIME", "LEVEL", "TYPE", "RESOURCE"
    );
    for e in events {
        println!(
            "{:<26} {:<6} {:<24} {:<40} {}",
            when(Some(e.at)),
            e.level.as_str(),
            e.kind,
            e.resource,
            e.message
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(
            normalize_tag("127.0.0.1:5000/app").unwrap(),
            "127.0.0.1:5000/app:latest"
        );
        assert_eq!(
            normalize_tag("alpine:3.19").unwrap(),
            "docker.io/library/alpine:3.19"
        );
        assert!(normalize_tag(&format!("a/b@sha256:{}", "0".repeat(64))).is_err());
        assert_eq!(
            normalize_repo("reg.io/team/app").unwrap(),
            "reg.io/team/app"
        );
        assert!(normalize_repo("reg.io/team/app:1").is_err());
        assert_eq!(parse_age("30m").unwrap(), 1_800_000);
        assert_eq!(parse_age("7d").unwrap(), 604_800_000);
        assert!(parse_age("7w").is_err());
        assert!(parse_kind("tag_update").is_ok());
        assert!(parse_kind("nope").is_err());
    }
}
