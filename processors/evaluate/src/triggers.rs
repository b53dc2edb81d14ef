//! The trigger functions of [`crate::gates::GATES`]. Each reads already-validated
//! [`Params`] and the [`TriggerContext`], and returns its matches; no I/O.

use std::borrow::Cow;
use std::collections::BTreeSet;

use regex::Regex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_contracts::{
    Cvss, DockerfileMode, EntryKind, FileEntry, Finding, FixState, Package, PackageType, Severity,
    UnixMillis, User,
};
use vigil_match::{distro_namespace, Comparator};

use crate::gates::{Params, TriggerContext, TriggerMatch};

const DAY_MS: i64 = 86_400_000;

// ---- shared helpers ----------------------------------------------------------------------

/// RFC 3339 (or a bare `YYYY-MM-DD`) to Unix milliseconds.
pub(crate) fn parse_time(s: &str) -> Option<UnixMillis> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as UnixMillis);
    }
    let day = s.get(..10)?;
    OffsetDateTime::parse(&format!("{day}T00:00:00Z"), &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as UnixMillis)
}

fn cmp_f64(op: &str, a: f64, b: f64) -> bool {
    match op {
        "=" => a == b,
        "!=" => a != b,
        "<" => a < b,
        ">" => a > b,
        "<=" => a <= b,
        ">=" => a >= b,
        _ => false,
    }
}

fn cmp_ord<T: Ord>(op: &str, a: T, b: T) -> bool {
    match op {
        "=" => a == b,
        "!=" => a != b,
        "<" => a < b,
        ">" => a > b,
        "<=" => a <= b,
        ">=" => a >= b,
        _ => false,
    }
}

fn severity_of(name: &str) -> Severity {
    match name {
        "negligible" => Severity::Negligible,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Unknown,
    }
}

/// A regex anchored at the start, as Python's `re.match` applies one.
fn anchored(re: &Regex) -> Option<Regex> {
    Regex::new(&format!("^(?:{})", re.as_str())).ok()
}

fn csv(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect()
}

// ---- always ------------------------------------------------------------------------------

pub(crate) fn always(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    vec![TriggerMatch::msg("always".into())]
}

// ---- dockerfile --------------------------------------------------------------------------

/// The Dockerfile instructions of the image: the supplied (actual) Dockerfile, else the
/// one guessed from the config history (plus HEALTHCHECK from the config).
pub(crate) fn instructions(ctx: &TriggerContext<'_>) -> (Vec<(String, String)>, bool) {
    let config = &ctx.analysis.descriptor.config;
    if let Some(df) = &ctx.analysis.dockerfile {
        let mut list: Vec<(String, String)> = df
            .instructions
            .iter()
            .map(|i| (i.instruction.to_ascii_uppercase(), i.args.clone()))
            .collect();
        let actual = df.mode == DockerfileMode::Actual;
        if !actual {
            add_config_healthcheck(&mut list, config);
        }
        return (list, actual);
    }
    let mut out = Vec::new();
    for h in &config.history {
        let Some(cb) = h.created_by.as_deref() else {
            continue;
        };
        let cb = cb.trim();
        let body = if let Some(rest) = cb.strip_prefix("/bin/sh -c #(nop)") {
            rest.trim()
        } else if let Some(rest) = cb.strip_prefix("/bin/sh -c ") {
            out.push(("RUN".to_string(), rest.trim().to_string()));
            continue;
        } else {
            cb
        };
        let (word, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let upper = word.to_ascii_uppercase();
        if crate::gates::INSTRUCTION_NAMES.contains(&upper.as_str()) {
            out.push((upper, args.trim().to_string()));
        } else if !body.is_empty() {
            out.push(("RUN".to_string(), body.to_string()));
        }
    }
    add_config_healthcheck(&mut out, config);
    (out, false)
}

/// A guessed Dockerfile may miss the HEALTHCHECK that the config has.
fn add_config_healthcheck(out: &mut Vec<(String, String)>, config: &vigil_contracts::ImageConfig) {
    if let Some(hc) = &config.healthcheck {
        if !out.iter().any(|(i, _)| i == "HEALTHCHECK") {
            out.push(("HEALTHCHECK".into(), hc.join(" ")));
        }
    }
}

pub(crate) fn dockerfile_instruction(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let (list, actual) = instructions(ctx);
    if params.bool("actual_dockerfile_only") == Some(true) && !actual {
        return Vec::new();
    }
    let directive = params.str("instruction").unwrap_or("");
    let check = params.str("check").unwrap_or("exists");
    let value = params.str("value").unwrap_or("");
    let matching: Vec<&str> = list
        .iter()
        .filter(|(i, _)| i == directive)
        .map(|(_, a)| a.as_str())
        .collect();
    match check {
        "exists" => matching
            .first()
            .map(|_| {
                vec![TriggerMatch::msg(format!(
                    "Dockerfile directive '{directive}' found, matching condition 'exists' check"
                ))]
            })
            .unwrap_or_default(),
        "not_exists" => {
            if matching.is_empty() {
                vec![TriggerMatch::msg(format!(
                    "Dockerfile directive '{directive}' not found, matching condition 'not_exists' check"
                ))]
            } else {
                Vec::new()
            }
        }
        _ => {
            let re = match check {
                "like" | "not_like" => match Regex::new(value) {
                    Ok(r) => Some(r),
                    Err(_) => return Vec::new(),
                },
                _ => None,
            };
            let listed = csv(value);
            matching
                .iter()
                .filter(|args| {
                    let a = args.trim();
                    match check {
                        "=" => a == value,
                        "!=" => a != value,
                        "like" => re.as_ref().is_some_and(|r| r.is_match(a)),
                        "not_like" => re.as_ref().is_some_and(|r| !r.is_match(a)),
                        "in" => listed.contains(&a),
                        "not_in" => !listed.contains(&a),
                        _ => false,
                    }
                })
                .map(|args| {
                    TriggerMatch::msg(format!(
                        "Dockerfile directive '{directive}' check '{check}' matched against '{value}' for line '{}'",
                        args.trim()
                    ))
                })
                .collect()
        }
    }
}

pub(crate) fn exposed_ports(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let listed = params.int_list("ports");
    let blacklist = params.str("type") == Some("blacklist");
    let raw: Vec<String> = if params.bool("actual_dockerfile_only") == Some(true) {
        let (list, actual) = instructions(ctx);
        if !actual {
            return Vec::new();
        }
        list.into_iter()
            .filter(|(i, _)| i == "EXPOSE")
            .flat_map(|(_, a)| a.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect()
    } else {
        ctx.analysis.descriptor.config.exposed_ports.clone()
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for raw in &raw {
        let port_str = raw.split('/').next().unwrap_or("").trim();
        let Ok(port) = port_str.parse::<i64>() else {
            continue;
        };
        if !seen.insert(port) {
            continue;
        }
        let in_list = listed.contains(&port);
        if blacklist && in_list {
            out.push(TriggerMatch::msg(format!(
                "Dockerfile exposes port ({port}) which is in policy file DENIEDPORTS list"
            )));
        } else if !blacklist && !in_list {
            out.push(TriggerMatch::msg(format!(
                "Dockerfile exposes port ({port}) which is not in policy file ALLOWEDPORTS list"
            )));
        }
    }
    out
}

/// `root` for uid 0; the user part of `user:group`.
fn normalize_user(u: &str) -> String {
    let u = u.trim();
    let user = u.split(':').next().unwrap_or(u).trim();
    if user.is_empty() || user == "0" {
        "root".into()
    } else {
        user.to_string()
    }
}

pub(crate) fn effective_user(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let user = normalize_user(ctx.analysis.descriptor.config.user.as_deref().unwrap_or(""));
    let in_list = params
        .list("users")
        .iter()
        .any(|u| normalize_user(u) == user);
    match params.str("type") {
        Some("blacklist") if in_list => vec![TriggerMatch::msg(format!(
            "User {user} found as effective user, which is explicitly not allowed list"
        ))],
        Some("whitelist") if !in_list => vec![TriggerMatch::msg(format!(
            "User {user} found as effective user, which is not on the allowed list"
        ))],
        _ => Vec::new(),
    }
}

pub(crate) fn no_dockerfile_provided(ctx: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    match &ctx.analysis.dockerfile {
        Some(df) if df.mode == DockerfileMode::Actual => Vec::new(),
        _ => vec![TriggerMatch::msg(
            "Image was not analyzed with an actual Dockerfile".into(),
        )],
    }
}

// ---- files -------------------------------------------------------------------------------

fn real_files<'a>(ctx: &TriggerContext<'a>) -> impl Iterator<Item = &'a FileEntry> {
    ctx.analysis
        .files
        .iter()
        .filter(|f| !matches!(f.kind, EntryKind::Whiteout | EntryKind::Opaque))
}

pub(crate) fn files_content_regex_match(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    // As Anchore: the content-search analyzer ran the configured regexes
    // (`[extract] content_search`) over the image's text files; `regex_name`, when set,
    // is one of those regex strings and limits the check to it. One match per file and
    // regex.
    let named = params.regex("regex_name");
    let only = named.map(|r| r.as_str());
    let mut seen = std::collections::BTreeSet::new();
    let mut out: Vec<TriggerMatch> = ctx
        .analysis
        .content_matches
        .iter()
        .filter(|m| only.is_none_or(|r| r == m.rule))
        .filter(|m| seen.insert((m.path.as_str(), m.rule.as_str())))
        .map(|m| {
            TriggerMatch::msg(format!(
                "File content analyzer found regexp match in container: file={} regexp={}",
                m.path, m.rule
            ))
        })
        .collect();
    // Retrieved files are searched too (their content is stored with the analysis).
    if let Some(re) = named {
        for f in &ctx.analysis.retrieved_files {
            let hit = String::from_utf8_lossy(&f.content)
                .lines()
                .any(|l| re.is_match(l));
            if hit && seen.insert((f.path.as_str(), re.as_str())) {
                out.push(TriggerMatch::msg(format!(
                    "File content analyzer found regexp match in container: file={} regexp={}",
                    f.path,
                    re.as_str()
                )));
            }
        }
    }
    out
}

pub(crate) fn files_name_match(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let Some(re) = params.regex("regex") else {
        return Vec::new();
    };
    real_files(ctx)
        .filter(|f| re.is_match(&f.path))
        .map(|f| {
            TriggerMatch::msg(format!(
                "Application of regex matched file found in container: file={} regexp={}",
                f.path,
                re.as_str()
            ))
        })
        .collect()
}

pub(crate) fn files_attribute_match(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let filename = params.str("filename").unwrap_or("");
    let skip_missing = params.bool("skip_missing").unwrap_or(true);
    let Some(file) = real_files(ctx).find(|f| f.path == filename) else {
        if skip_missing {
            return Vec::new();
        }
        return vec![TriggerMatch::msg(format!(
            "Specified filename was not found in the container: file={filename}"
        ))];
    };
    let mut details = Vec::new();
    if let Some(want) = params.str("checksum") {
        let Some(have) = file.sha256.as_deref() else {
            return Vec::new();
        };
        let equal = have.eq_ignore_ascii_case(want.trim());
        let ok = match params.str("checksum_match").unwrap_or("equals") {
            "not_equals" => !equal,
            _ => equal,
        };
        if !ok {
            return Vec::new();
        }
        details.push(format!("checksum={have}"));
    }
    if let Some(want) = params.int("mode") {
        let have = (file.mode & 0o7777) as i64;
        let ok = match params.str("mode_op").unwrap_or("equals") {
            "not_equals" => have != want,
            _ => have == want,
        };
        if !ok {
            return Vec::new();
        }
        details.push(format!("mode={have:04o}"));
    }
    if details.is_empty() {
        return Vec::new();
    }
    vec![TriggerMatch::msg(format!(
        "File attributes found matching: file={filename} {}",
        details.join(" ")
    ))]
}

pub(crate) fn files_suid_or_guid_set(ctx: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    real_files(ctx)
        .filter(|f| f.kind != EntryKind::Symlink && (f.is_setuid() || f.is_setgid()))
        .map(|f| {
            TriggerMatch::msg(format!(
                "SUID or SGID found set on file {}. Mode: {:o}",
                f.path,
                f.mode & 0o7777
            ))
        })
        .collect()
}

// ---- passwd_file -------------------------------------------------------------------------

/// Parse `/etc/passwd` content.
pub fn parse_passwd(content: &str) -> Vec<User> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                gecos: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
                entry: l.to_string(),
            })
        })
        .collect()
}

/// The passwd entries: the analysis' users, else parsed from a retrieved `/etc/passwd`.
fn users<'a>(ctx: &TriggerContext<'a>) -> Option<Cow<'a, [User]>> {
    if !ctx.analysis.users.is_empty() {
        return Some(Cow::Borrowed(&ctx.analysis.users));
    }
    if let Some(f) = ctx
        .analysis
        .retrieved_files
        .iter()
        .find(|f| f.path == "/etc/passwd")
    {
        return Some(Cow::Owned(parse_passwd(&String::from_utf8_lossy(
            &f.content,
        ))));
    }
    ctx.analysis.passwd_present.then(|| Cow::Owned(Vec::new()))
}

pub(crate) fn passwd_content_not_available(
    ctx: &TriggerContext<'_>,
    _: &Params,
) -> Vec<TriggerMatch> {
    if users(ctx).is_some() {
        Vec::new()
    } else {
        vec![TriggerMatch::msg(
            "Cannot locate /etc/passwd in image analysis".into(),
        )]
    }
}

fn passwd_matches(
    ctx: &TriggerContext<'_>,
    what: &str,
    hit: impl Fn(&User) -> Option<String>,
) -> Vec<TriggerMatch> {
    let Some(users) = users(ctx) else {
        return Vec::new();
    };
    users
        .iter()
        .filter_map(|u| {
            hit(u).map(|v| {
                TriggerMatch::msg(format!(
                    "Blacklisted {what} '{v}' found in image's /etc/passwd: pentry={}",
                    u.entry
                ))
            })
        })
        .collect()
}

pub(crate) fn passwd_blacklist_usernames(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let names = params.list("user_names");
    passwd_matches(ctx, "user", |u| {
        names.iter().any(|n| n == &u.name).then(|| u.name.clone())
    })
}

pub(crate) fn passwd_blacklist_userids(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let ids = params.int_list("user_ids");
    passwd_matches(ctx, "uid", |u| {
        ids.contains(&(u.uid as i64)).then(|| u.uid.to_string())
    })
}

pub(crate) fn passwd_blacklist_groupids(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let ids = params.int_list("group_ids");
    passwd_matches(ctx, "gid", |u| {
        ids.contains(&(u.gid as i64)).then(|| u.gid.to_string())
    })
}

pub(crate) fn passwd_blacklist_shells(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let shells = params.list("shells");
    passwd_matches(ctx, "shell", |u| {
        shells
            .iter()
            .any(|s| s == &u.shell)
            .then(|| u.shell.clone())
    })
}

pub(crate) fn passwd_blacklist_full_entry(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let entry = params.str("entry").unwrap_or("").trim();
    passwd_matches(ctx, "full entry", |u| {
        (u.entry.trim() == entry).then(|| u.entry.clone())
    })
}

// ---- packages ----------------------------------------------------------------------------

fn comparator(ctx: &TriggerContext<'_>, kind: PackageType) -> Comparator {
    if kind.is_os() {
        if let Some(ns) = ctx.analysis.distro.as_ref().and_then(distro_namespace) {
            return Comparator::for_namespace(&ns);
        }
        return match kind {
            PackageType::Deb => Comparator::Dpkg,
            PackageType::Apk => Comparator::Apk,
            _ => Comparator::Rpm,
        };
    }
    Comparator::Generic
}

fn os_packages<'a>(ctx: &TriggerContext<'a>) -> impl Iterator<Item = &'a Package> {
    ctx.analysis.packages.iter().filter(|p| p.kind.is_os())
}

pub(crate) fn packages_required(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let name = params.str("name").unwrap_or("").trim();
    let version = params
        .str("version")
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let minimum = params.str("version_match_type") == Some("minimum");
    let named: Vec<&Package> = os_packages(ctx).filter(|p| p.name == name).collect();
    if named.is_empty() {
        return vec![TriggerMatch::msg(format!(
            "Required package '{name}' not present in image"
        ))];
    }
    let Some(want) = version else {
        return Vec::new();
    };
    let satisfied = named.iter().any(|p| {
        if minimum {
            comparator(ctx, p.kind).compare(&p.version, want) != std::cmp::Ordering::Less
        } else {
            p.version == want
        }
    });
    if satisfied {
        return Vec::new();
    }
    let found: Vec<&str> = named.iter().map(|p| p.version.as_str()).collect();
    vec![TriggerMatch::msg(if minimum {
        format!(
            "Required min version of package '{name}' ({want}) not present in image, found: {}",
            found.join(", ")
        )
    } else {
        format!(
            "Required exact version of package '{name}' ({want}) not present in image, found: {}",
            found.join(", ")
        )
    })]
}

/// Resolve symlinked parent directories (`/bin` → `/usr/bin` on merged-/usr systems).
fn resolve_parents<'f>(get: &dyn Fn(&str) -> Option<&'f FileEntry>, path: &str) -> String {
    let mut current = path.to_string();
    for _ in 0..8 {
        let mut changed = false;
        let bytes: Vec<usize> = current
            .match_indices('/')
            .map(|(i, _)| i)
            .filter(|i| *i > 0)
            .collect();
        for i in bytes {
            let prefix = &current[..i];
            if let Some(e) = get(prefix) {
                if e.kind == EntryKind::Symlink {
                    if let Some(target) = &e.link {
                        let base = if target.starts_with('/') {
                            target.trim_end_matches('/').to_string()
                        } else {
                            let parent = prefix.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                            format!("{parent}/{}", target.trim_end_matches('/'))
                        };
                        current = format!("{base}{}", &current[i..]);
                        changed = true;
                        break;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    vigil_normalize(&current)
}

/// Collapse `.` and `..` segments of an absolute path.
fn vigil_normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

pub(crate) fn packages_verify(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    // `missing`: a file the package database lists is not in the image. `changed`: its
    // digest differs from the database's, compared in the algorithm the database
    // recorded (`md5:` dpkg `md5sums` and older rpm headers, `sha256:` rpm FILEDIGESTS,
    // `sha1:` apk `Z:Q1…`); needs file hashing (`[extract] hash_files`), without which
    // nothing is reported as changed. A digest of an algorithm not computed is skipped.
    if ctx.analysis.files.is_empty() {
        return Vec::new();
    }
    let check = params.str("check");
    let want_missing = check != Some("changed");
    let want_changed = check != Some("missing");
    let only_packages = params.list("only_packages");
    let only_dirs = params.list("only_directories");
    let all = &ctx.analysis.files;
    // The analysis keeps files in path order: binary search, else an index.
    let map: Option<std::collections::HashMap<&str, &FileEntry>> =
        if all.windows(2).all(|w| w[0].path <= w[1].path) {
            None
        } else {
            Some(all.iter().map(|f| (f.path.as_str(), f)).collect())
        };
    let get = |p: &str| -> Option<&FileEntry> {
        match &map {
            Some(m) => m.get(p).copied(),
            None => all
                .binary_search_by(|f| f.path.as_str().cmp(p))
                .ok()
                .map(|i| &all[i]),
        }
    };
    let mut out = Vec::new();
    for p in os_packages(ctx) {
        if !only_packages.is_empty() && !only_packages.contains(&p.name) {
            continue;
        }
        for path in &p.files {
            if path == "/." || path.is_empty() {
                continue;
            }
            if !only_dirs.is_empty()
                && !only_dirs.iter().any(|d| {
                    let d = d.trim_end_matches('/');
                    path == d || path.starts_with(&format!("{d}/"))
                })
            {
                continue;
            }
            let found = get(path).or_else(|| get(&resolve_parents(&get, path)));
            if let Some(f) = found {
                let changed = p
                    .file_digests
                    .get(path.as_str())
                    .and_then(|r| r.split_once(':'))
                    .and_then(|(algo, want)| {
                        let actual = match algo {
                            "md5" => f.md5.as_deref(),
                            "sha1" => f.sha1.as_deref(),
                            "sha256" => f.sha256.as_deref(),
                            _ => None,
                        }?;
                        Some(!want.eq_ignore_ascii_case(actual))
                    })
                    .unwrap_or(false);
                if want_changed && changed {
                    out.push(TriggerMatch::msg(format!(
                        "VERIFY check against package db for package '{}' failed on entry '{path}' with status: 'changed'",
                        p.name
                    )));
                }
                continue;
            }
            if !want_missing {
                continue;
            }
            out.push(TriggerMatch::msg(format!(
                "VERIFY check against package db for package '{}' failed on entry '{path}' with status: 'missing'",
                p.name
            )));
        }
    }
    out
}

fn name_version_blacklist<'a>(
    pkgs: impl Iterator<Item = &'a Package>,
    params: &Params,
    label: &str,
) -> Vec<TriggerMatch> {
    let name = params.str("name").unwrap_or("").trim();
    let version = params
        .str("version")
        .map(str::trim)
        .filter(|v| !v.is_empty());
    pkgs.filter(|p| p.name == name && version.is_none_or(|v| p.version == v))
        .map(|p| {
            let mut m = TriggerMatch::msg(match version {
                Some(_) => format!("{label} is blacklisted: {}-{}", p.name, p.version),
                None => format!("{label} is blacklisted: {}", p.name),
            });
            m.package_version = Some(p.version.clone());
            m
        })
        .collect()
}

pub(crate) fn packages_blacklist(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    name_version_blacklist(os_packages(ctx), params, "Package")
}

// ---- npms / ruby_gems --------------------------------------------------------------------

/// Feed-based package checks: vigil has no npm/gem package feed, so these never fire;
/// `feed_data_unavailable` reports it.
pub(crate) fn no_package_feed(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    Vec::new()
}

pub(crate) fn npm_feed_data_unavailable(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    vec![TriggerMatch::msg(
        "Feed data for npm packages is not available, cannot perform npm feed checks".into(),
    )]
}

pub(crate) fn gem_feed_data_unavailable(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    vec![TriggerMatch::msg(
        "Feed data for ruby gems is not available, cannot perform gem feed checks".into(),
    )]
}

pub(crate) fn npm_blacklist(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let pkgs = ctx
        .analysis
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Npm);
    name_version_blacklist(pkgs, params, "NPM Package")
}

pub(crate) fn gem_blacklist(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let pkgs = ctx
        .analysis
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Gem);
    name_version_blacklist(pkgs, params, "Gem")
}

// ---- licenses ----------------------------------------------------------------------------

fn licenses(ctx: &TriggerContext<'_>, params: &Params, partial: bool) -> Vec<TriggerMatch> {
    let wanted: Vec<String> = params
        .list("licenses")
        .iter()
        .map(|l| l.to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    for p in &ctx.analysis.packages {
        for lic in &p.licenses {
            let l = lic.to_ascii_lowercase();
            let hit = wanted.iter().any(|w| {
                if partial {
                    l.contains(w.as_str())
                } else {
                    &l == w
                }
            });
            if hit {
                let kind = if partial { "PARTIAL" } else { "EXACT" };
                let mut m = TriggerMatch::msg(format!(
                    "LICENSE {kind} MATCH: {lic} found for package ({} {}-{})",
                    p.kind.as_str(),
                    p.name,
                    p.version
                ));
                m.package_version = Some(p.version.clone());
                out.push(m);
            }
        }
    }
    out
}

pub(crate) fn licenses_exact(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    licenses(ctx, params, false)
}

pub(crate) fn licenses_partial(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    licenses(ctx, params, true)
}

// ---- metadata ----------------------------------------------------------------------------

/// A size with an optional lower-case unit suffix (`500mb`, `1gb`, `1024`), in bytes.
/// Units are binary (1kb = 1024 bytes).
pub fn parse_size(s: &str) -> Option<f64> {
    let t = s.trim();
    let units: &[(&str, f64)] = &[
        ("tb", 1024f64 * 1024.0 * 1024.0 * 1024.0),
        ("gb", 1024f64 * 1024.0 * 1024.0),
        ("mb", 1024f64 * 1024.0),
        ("kb", 1024.0),
        ("b", 1.0),
    ];
    for (u, mult) in units {
        if let Some(num) = t.strip_suffix(u) {
            return num
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n * mult);
        }
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

fn metadata_value(ctx: &TriggerContext<'_>, attribute: &str) -> Option<String> {
    let a = ctx.analysis;
    let c = &a.descriptor.config;
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
    match attribute {
        "size" => Some(a.image_size.to_string()),
        "architecture" => nonempty(&c.architecture),
        "os_type" => nonempty(&c.os),
        "distro" => a.distro.as_ref().and_then(|d| nonempty(&d.id)),
        "distro_version" => a.distro.as_ref().and_then(|d| d.version_id.clone()),
        "like_distro" => a
            .distro
            .as_ref()
            .and_then(|d| nonempty(&d.id_like.join(" "))),
        "layer_count" => Some(a.descriptor.layers.len().to_string()),
        _ => None,
    }
}

pub(crate) fn metadata_attribute(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let attribute = params.str("attribute").unwrap_or("");
    let check = params.str("check").unwrap_or("");
    let value = params.str("value").unwrap_or("").trim();
    let actual = metadata_value(ctx, attribute);
    let hit = match (check, actual.as_deref()) {
        ("exists", v) => v.is_some(),
        ("not_exists", v) => v.is_none(),
        (_, None) => false,
        ("like", Some(v)) => Regex::new(value).is_ok_and(|r| r.is_match(v)),
        ("not_like", Some(v)) => Regex::new(value).is_ok_and(|r| !r.is_match(v)),
        ("in", Some(v)) => csv(value).contains(&v),
        ("not_in", Some(v)) => !csv(value).contains(&v),
        (op, Some(v)) => {
            let want = if attribute == "size" {
                parse_size(value)
            } else {
                value.parse::<f64>().ok()
            };
            match (v.parse::<f64>().ok(), want) {
                (Some(a), Some(b)) => cmp_f64(op, a, b),
                _ => match op {
                    "=" => v == value,
                    "!=" => v != value,
                    _ => cmp_ord(op, v, value),
                },
            }
        }
    };
    if !hit {
        return Vec::new();
    }
    vec![TriggerMatch::msg(format!(
        "Attribute check for attribute: '{attribute}' check: '{check}' check_value: '{value}' matched image value: '{}'",
        actual.unwrap_or_default()
    ))]
}

// ---- malware -----------------------------------------------------------------------------

/// No malware scanner exists yet: there are never scan findings.
pub(crate) fn malware_scans(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    Vec::new()
}

pub(crate) fn malware_scan_not_run(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    vec![TriggerMatch::msg("No malware scans found for image".into())]
}

// ---- retrieved_files ---------------------------------------------------------------------

pub(crate) fn retrieved_content_not_available(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let path = params.str("path").unwrap_or("");
    if ctx.analysis.retrieved_files.iter().any(|f| f.path == path) {
        Vec::new()
    } else {
        // Anchore's message (the trigger id is its md5, so existing allowlists match).
        vec![TriggerMatch::msg(
            "Cannot locate file in the image analysis".into(),
        )]
    }
}

pub(crate) fn retrieved_content_regex(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let path = params.str("path").unwrap_or("");
    let check = params.str("check").unwrap_or("match");
    let Some(re) = params.regex("regex") else {
        return Vec::new();
    };
    let Some(file) = ctx.analysis.retrieved_files.iter().find(|f| f.path == path) else {
        return Vec::new();
    };
    let Some(re_start) = anchored(re) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&file.content);
    let found = text.split_whitespace().any(|tok| re_start.is_match(tok));
    if found != (check == "match") {
        return Vec::new();
    }
    vec![TriggerMatch::with_id(
        format!("{}+file://{path}", ctx.rule_id),
        format!(
            "Content regex '{}' check '{check}' found in retrieved file '{path}'",
            re.as_str()
        ),
    )]
}

// ---- secret_scans ------------------------------------------------------------------------

/// Anchore's name of a secret rule (`aws-access-key-id` → `AWS_ACCESS_KEY`).
pub fn anchore_secret_name(rule: &str) -> String {
    let r = rule.to_ascii_lowercase().replace('_', "-");
    match r.as_str() {
        "aws-access-key-id" | "aws-access-key" => "AWS_ACCESS_KEY".into(),
        "aws-secret-access-key" | "aws-secret-key" => "AWS_SECRET_KEY".into(),
        "private-key" | "priv-key" | "rsa-private-key" => "PRIV_KEY".into(),
        "docker-auth" | "docker-config-auth" | "dockerconfig" => "DOCKER_AUTH".into(),
        "api-key" | "generic-api-key" => "API_KEY".into(),
        _ => r.replace('-', "_").to_ascii_uppercase(),
    }
}

pub(crate) fn secret_content_regex_checks(
    ctx: &TriggerContext<'_>,
    params: &Params,
) -> Vec<TriggerMatch> {
    let name = params
        .str("content_regex_name")
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let file_re = params.regex("filename_regex");
    let hits: Vec<_> = ctx
        .analysis
        .secrets
        .iter()
        .filter(|h| {
            name.is_none_or(|n| {
                h.rule.eq_ignore_ascii_case(n)
                    || anchore_secret_name(&h.rule).eq_ignore_ascii_case(n)
            })
        })
        .filter(|h| file_re.is_none_or(|r| r.is_match(&h.path)))
        .collect();
    let regexp = name.map(String::from).unwrap_or_else(|| "any".into());
    if params.str("match_type") == Some("notfound") {
        if hits.is_empty() {
            let file = file_re.map(|r| r.as_str()).unwrap_or("any");
            return vec![TriggerMatch::msg(format!(
                "Secret search analyzer did not find regexp match in container: file={file} regexp={regexp}"
            ))];
        }
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    hits.into_iter()
        .filter(|h| seen.insert((h.path.clone(), anchore_secret_name(&h.rule))))
        .map(|h| {
            TriggerMatch::msg(format!(
                "Secret search analyzer found regexp match in container: file={} regexp={}",
                h.path,
                anchore_secret_name(&h.rule)
            ))
        })
        .collect()
}

// ---- vulnerabilities ---------------------------------------------------------------------

fn is_v3(c: &Cvss) -> bool {
    c.version.starts_with('3')
}

/// The highest CVSS v3 score of the selected sources, -1 when there is none.
fn max_score(cvss: &[Cvss], nvd: bool, pick: fn(&Cvss) -> Option<f64>) -> f64 {
    cvss.iter()
        .filter(|c| is_v3(c) && c.source.eq_ignore_ascii_case("nvd") == nvd)
        .filter_map(pick)
        .fold(-1.0, f64::max)
}

/// Which score of a CVSS entry a parameter compares.
type ScorePick = fn(&Cvss) -> Option<f64>;

/// (score parameter, its comparison parameter, NVD (else vendor), score).
const SCORE_PARAMS: &[(&str, &str, bool, ScorePick)] = &[
    (
        "cvss_v3_base_score",
        "cvss_v3_base_score_comparison",
        true,
        |c| Some(c.base_score),
    ),
    (
        "cvss_v3_exploitability_score",
        "cvss_v3_exploitability_score_comparison",
        true,
        |c| c.exploitability_score,
    ),
    (
        "cvss_v3_impact_score",
        "cvss_v3_impact_score_comparison",
        true,
        |c| c.impact_score,
    ),
    (
        "vendor_cvss_v3_base_score",
        "vendor_cvss_v3_base_score_comparison",
        false,
        |c| Some(c.base_score),
    ),
    (
        "vendor_cvss_v3_exploitability_score",
        "vendor_cvss_v3_exploitability_score_comparison",
        false,
        |c| c.exploitability_score,
    ),
    (
        "vendor_cvss_v3_impact_score",
        "vendor_cvss_v3_impact_score_comparison",
        false,
        |c| c.impact_score,
    ),
];

fn has_fix(f: &Finding) -> bool {
    f.state == FixState::Fixed || f.fixed_in.is_some()
}

fn wont_fix(f: &Finding) -> bool {
    f.state == FixState::WontFix || f.vendor_only
}

fn vuln_message(f: &Finding) -> String {
    let os = f.package.kind.is_os();
    let fix = match &f.fixed_in {
        Some(v) => format!("fixed in: {v}"),
        None => "fixed in: none".into(),
    };
    format!(
        "{} Vulnerability found in {} package type ({}) - {}-{} ({} - {})",
        format!("{:?}", f.severity).to_ascii_uppercase(),
        if os { "os" } else { "non-os" },
        f.package.kind.as_str(),
        f.package.name,
        f.package.version,
        fix,
        f.vuln_id,
    )
}

pub(crate) fn vuln_package(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let package_type = params.str("package_type").unwrap_or("all");
    let op = params.str("severity_comparison").unwrap_or(">");
    let threshold = severity_of(params.str("severity").unwrap_or("unknown"));
    let fix_available = params.bool("fix_available");
    let vendor_only = params.bool("vendor_only").unwrap_or(true);
    let max_creation = params.int("max_days_since_creation");
    let max_fix = params.int("max_days_since_fix");
    let path_exclude = params.regex("package_path_exclude");
    let scores: Vec<(f64, &str, bool, ScorePick)> = SCORE_PARAMS
        .iter()
        .filter_map(|(name, cmp, nvd, pick)| {
            params
                .float(name)
                .map(|v| (v, params.str(cmp).unwrap_or(">="), *nvd, *pick))
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for f in &ctx.report.findings {
        let os = f.package.kind.is_os();
        match package_type {
            "os" if !os => continue,
            "non-os" if os => continue,
            _ => {}
        }
        if f.state == FixState::NotAffected {
            continue;
        }
        if vendor_only && wont_fix(f) {
            continue;
        }
        if !cmp_ord(op, f.severity, threshold) {
            continue;
        }
        if let Some(want) = fix_available {
            if want != has_fix(f) {
                continue;
            }
        }
        if !scores
            .iter()
            .all(|(v, cmp, nvd, pick)| cmp_f64(cmp, max_score(&f.cvss, *nvd, *pick), *v))
        {
            continue;
        }
        if let Some(days) = max_creation {
            // Fires only for vulnerabilities published more than N days ago.
            match f.published.as_deref().and_then(parse_time) {
                Some(t) if ctx.now - t > days * DAY_MS => {}
                _ => continue,
            }
        }
        if let Some(days) = max_fix {
            match f.fix_published.as_deref().and_then(parse_time) {
                Some(t) if has_fix(f) && ctx.now - t > days * DAY_MS => {}
                _ => continue,
            }
        }
        if let (Some(re), false) = (path_exclude, os) {
            if f.package
                .location
                .as_deref()
                .is_some_and(|l| re.is_match(l))
            {
                continue;
            }
        }
        let key = f.key();
        if !seen.insert((key.clone(), f.package.version.clone())) {
            continue;
        }
        out.push(TriggerMatch {
            trigger_id: Some(key),
            message: vuln_message(f),
            package_version: Some(f.package.version.clone()),
        });
    }
    out
}

fn image_namespace(ctx: &TriggerContext<'_>) -> Option<String> {
    ctx.analysis.distro.as_ref().and_then(distro_namespace)
}

pub(crate) fn vuln_stale_feed_data(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let days = params.int("max_days_since_sync").unwrap_or(0);
    let Some(ns) = image_namespace(ctx) else {
        return Vec::new();
    };
    let oldest = ctx
        .feeds
        .iter()
        .filter(|f| f.namespaces.contains_key(&ns))
        .map(|f| f.last_sync)
        .min();
    match oldest {
        Some(t) if ctx.now - t <= days * DAY_MS => Vec::new(),
        _ => vec![TriggerMatch::msg(format!(
            "The vulnerability feed for this image distro is older than MAXAGE ({days}) days"
        ))],
    }
}

pub(crate) fn vuln_data_unavailable(ctx: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    match image_namespace(ctx) {
        Some(ns) if ctx.report.namespaces_with_data.contains(&ns) => Vec::new(),
        Some(ns) => vec![TriggerMatch::msg(format!(
            "Feed data unavailable, cannot perform CVE scan for distro: {ns}"
        ))],
        None => vec![TriggerMatch::msg(
            "Feed data unavailable, cannot perform CVE scan for distro: unknown".into(),
        )],
    }
}

pub(crate) fn vuln_blacklist(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let ids: Vec<String> = params
        .list("vulnerability_ids")
        .iter()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    let vendor_only = params.bool("vendor_only").unwrap_or(true);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for f in &ctx.report.findings {
        if f.state == FixState::NotAffected || (vendor_only && wont_fix(f)) {
            continue;
        }
        let hit = std::iter::once(&f.vuln_id)
            .chain(f.aliases.iter())
            .find(|id| ids.contains(&id.to_ascii_uppercase()));
        let Some(id) = hit else {
            continue;
        };
        let key = f.key();
        if !seen.insert(key.clone()) {
            continue;
        }
        out.push(TriggerMatch {
            trigger_id: Some(key),
            message: format!(
                "Blacklisted vulnerability {id} found in package {}-{}",
                f.package.name, f.package.version
            ),
            package_version: Some(f.package.version.clone()),
        });
    }
    out
}

// ---- load-time parameter checks ----------------------------------------------------------

pub(crate) fn check_instruction_params(p: &Params) -> Result<(), (&'static str, String)> {
    let check = p.str("check").unwrap_or("");
    let value = p.str("value");
    match check {
        "exists" | "not_exists" => Ok(()),
        _ => {
            let Some(v) = value else {
                return Err(("value", format!("required when check is {check:?}")));
            };
            if matches!(check, "like" | "not_like") {
                Regex::new(v).map_err(|e| ("value", format!("invalid regex: {e}")))?;
            }
            Ok(())
        }
    }
}

pub(crate) fn check_attribute_params(p: &Params) -> Result<(), (&'static str, String)> {
    if let Some(c) = p.str("checksum") {
        let c = c.trim();
        if c.len() != 64 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(("checksum", "expected a hex sha256 digest".into()));
        }
    }
    Ok(())
}

pub(crate) fn check_metadata_params(p: &Params) -> Result<(), (&'static str, String)> {
    let attribute = p.str("attribute").unwrap_or("");
    let check = p.str("check").unwrap_or("");
    if matches!(check, "exists" | "not_exists") {
        return Ok(());
    }
    let Some(value) = p.str("value") else {
        return Err(("value", format!("required when check is {check:?}")));
    };
    match check {
        "like" | "not_like" => {
            Regex::new(value).map_err(|e| ("value", format!("invalid regex: {e}")))?;
        }
        ">" | "<" | ">=" | "<=" if attribute == "size" => {
            parse_size(value).ok_or((
                "value",
                "expected a size such as 1024, 500mb or 1gb".to_string(),
            ))?;
        }
        ">" | "<" | ">=" | "<=" if attribute == "layer_count" => {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| ("value", "expected an integer".to_string()))?;
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn check_vuln_package_params(p: &Params) -> Result<(), (&'static str, String)> {
    if p.int("max_days_since_fix").is_some() && p.bool("fix_available") != Some(true) {
        return Err(("max_days_since_fix", "requires fix_available=true".into()));
    }
    for name in ["max_days_since_creation", "max_days_since_fix"] {
        if p.int(name).is_some_and(|d| d < 0) {
            return Err((
                if name == "max_days_since_fix" {
                    "max_days_since_fix"
                } else {
                    "max_days_since_creation"
                },
                "must not be negative".into(),
            ));
        }
    }
    Ok(())
}
