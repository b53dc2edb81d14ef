//! The scan report a user sees, in the same shape for `vigil scan` and `vigil submit
//! --wait`: JSON (`-o json`) or a table (`-o table`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use vigil_contracts::{Action, Distro, Evaluation, Finding, Package, ScanReport, ScanResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// CycloneDX 1.6 JSON: the SBOM, with the vulnerabilities.
    #[value(name = "cyclonedx-json")]
    CyclonedxJson,
    /// SPDX 2.3 JSON: the SBOM.
    #[value(name = "spdx-json")]
    SpdxJson,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    request_id: &'a str,
    source: &'a str,
    status: &'a vigil_contracts::ScanStatus,
    image: JsonImage<'a>,
    packages: &'a [Package],
    vulnerabilities: Vec<JsonVuln<'a>>,
    evaluation: Option<JsonEvaluation<'a>>,
    failure: Option<&'a vigil_contracts::Failure>,
    secrets: &'a [vigil_contracts::SecretHit],
    users: &'a [vigil_contracts::User],
    groups: &'a [vigil_contracts::Group],
    setuid_files: &'a [vigil_contracts::FileEntry],
    dockerfile: Option<&'a vigil_contracts::Dockerfile>,
    config: Option<&'a vigil_contracts::ImageConfig>,
}

#[derive(Serialize)]
struct JsonImage<'a> {
    digest: Option<&'a str>,
    /// The image index this platform's manifest was selected from (`--platform all`
    /// and multi-platform images).
    index_digest: Option<&'a str>,
    tag: Option<&'a str>,
    distro: Option<&'a Distro>,
}

#[derive(Serialize)]
struct JsonVuln<'a> {
    id: &'a str,
    severity: &'a vigil_contracts::Severity,
    package: &'a vigil_contracts::PackageRef,
    fixed_in: Option<&'a str>,
    state: &'a vigil_contracts::FixState,
    aliases: &'a [String],
    feed: &'a str,
    matched: &'a vigil_contracts::MatchDetail,
}

#[derive(Serialize)]
struct JsonEvaluation<'a> {
    final_action: &'a Action,
    status: &'static str,
    reason: &'a str,
    bundle_id: &'a str,
    policy_ids: &'a [String],
    findings: &'a [vigil_contracts::PolicyFinding],
}

fn vuln(f: &Finding) -> JsonVuln<'_> {
    JsonVuln {
        id: &f.vuln_id,
        severity: &f.severity,
        package: &f.package,
        fixed_in: f.fixed_in.as_deref(),
        state: &f.state,
        aliases: &f.aliases,
        feed: &f.feed,
        matched: &f.matched,
    }
}

fn evaluation(e: &Evaluation) -> JsonEvaluation<'_> {
    JsonEvaluation {
        final_action: &e.final_action,
        status: if e.final_action == Action::Stop {
            "fail"
        } else {
            "pass"
        },
        reason: &e.final_action_reason,
        bundle_id: &e.bundle_id,
        policy_ids: &e.policy_ids,
        findings: &e.findings,
    }
}

static EMPTY: ScanReport = ScanReport {
    distro: None,
    packages: Vec::new(),
    findings: Vec::new(),
    evaluation: None,
    descriptor: None,
    secrets: Vec::new(),
    users: Vec::new(),
    groups: Vec::new(),
    setuid_files: Vec::new(),
    dockerfile: None,
    from_sbom: false,
};

/// An SBOM document of the report (CycloneDX carries the findings too).
fn sbom(result: &ScanResult, rep: &ScanReport, format: Format) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let analysis = rep
        .to_analysis()
        .with_context(|| format!("{}: no analysed image to describe", result.source))?;
    // The request's completion time and id make the document reproducible for one result.
    let hash = <sha2::Sha256 as sha2::Digest>::digest(result.request_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    let serial = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let opts = vigil_sbom::ExportOptions::new(result.completed_at, serial);
    let mut text = match format {
        Format::CyclonedxJson => vigil_sbom::cyclonedx_json(&analysis, Some(&rep.findings), &opts)?,
        _ => vigil_sbom::spdx_json(&analysis, &opts)?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

pub fn render(result: &ScanResult, format: Format) -> anyhow::Result<String> {
    let rep = result.report.as_ref().unwrap_or(&EMPTY);
    Ok(match format {
        Format::CyclonedxJson | Format::SpdxJson if result.failure.is_none() => {
            sbom(result, rep, format)?
        }
        // A failed scan has no SBOM: its JSON report says why.
        Format::CyclonedxJson | Format::SpdxJson => render(result, Format::Json)?,
        Format::Json => {
            let j = JsonReport {
                request_id: &result.request_id,
                source: &result.source,
                status: &result.status,
                image: JsonImage {
                    digest: result.image_digest.as_deref(),
                    index_digest: rep
                        .descriptor
                        .as_ref()
                        .and_then(|d| d.image.index_digest.as_deref()),
                    tag: result.tag.as_deref(),
                    distro: rep.distro.as_ref(),
                },
                packages: &rep.packages,
                vulnerabilities: rep.findings.iter().map(vuln).collect(),
                evaluation: rep.evaluation.as_ref().map(evaluation),
                failure: result.failure.as_ref(),
                secrets: &rep.secrets,
                users: &rep.users,
                groups: &rep.groups,
                setuid_files: &rep.setuid_files,
                dockerfile: rep.dockerfile.as_ref(),
                config: rep.descriptor.as_ref().map(|d| &d.config),
            };
            let mut s = serde_json::to_string_pretty(&j).expect("report serialises");
            s.push('\n');
            s
        }
        Format::Table => table(result, rep),
    })
}

fn table(result: &ScanResult, rep: &ScanReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Source:   {}", result.source);
    if let Some(f) = &result.failure {
        let _ = writeln!(
            s,
            "Status:   FAILED in stage {} ({:?}): {}",
            f.stage, f.kind, f.message
        );
        return s;
    }
    if let Some(d) = &result.image_digest {
        let _ = writeln!(s, "Digest:   {d}");
    }
    let distro = rep
        .distro
        .as_ref()
        .map(|d| format!("{} {}", d.id, d.version_id.clone().unwrap_or_default()))
        .unwrap_or_else(|| "none detected".into());
    let _ = writeln!(s, "Distro:   {distro}");
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &rep.packages {
        *by_type.entry(p.kind.as_str()).or_default() += 1;
    }
    let types: Vec<String> = by_type.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        s,
        "Packages: {} ({})",
        rep.packages.len(),
        if types.is_empty() {
            "none".to_string()
        } else {
            types.join(", ")
        }
    );
    if !rep.secrets.is_empty() {
        let _ = writeln!(s);
        let rows: Vec<[String; 3]> = rep
            .secrets
            .iter()
            .map(|h| [h.rule.clone(), h.path.clone(), h.line.to_string()])
            .collect();
        write_table(&mut s, ["SECRET RULE", "PATH", "LINE"], &rows);
    }
    if !rep.setuid_files.is_empty() {
        let _ = writeln!(s);
        let rows: Vec<[String; 3]> = rep
            .setuid_files
            .iter()
            .map(|f| {
                [
                    f.path.clone(),
                    format!("{:o}", f.mode & 0o7777),
                    format!("{}:{}", f.uid, f.gid),
                ]
            })
            .collect();
        write_table(&mut s, ["SETUID/SETGID FILE", "MODE", "OWNER"], &rows);
    }
    let _ = writeln!(s);
    if rep.findings.is_empty() {
        let _ = writeln!(s, "No vulnerabilities found.");
    } else {
        let rows: Vec<[String; 6]> = rep
            .findings
            .iter()
            .map(|f| {
                [
                    f.vuln_id.clone(),
                    format!("{:?}", f.severity),
                    f.package.name.clone(),
                    f.package.version.clone(),
                    f.fixed_in.clone().unwrap_or_else(|| match f.state {
                        vigil_contracts::FixState::WontFix => "(won't fix)".into(),
                        _ => "(not fixed)".into(),
                    }),
                    f.package.kind.as_str().to_string(),
                ]
            })
            .collect();
        write_table(
            &mut s,
            [
                "VULNERABILITY",
                "SEVERITY",
                "PACKAGE",
                "VERSION",
                "FIXED IN",
                "TYPE",
            ],
            &rows,
        );
    }
    if let Some(e) = &rep.evaluation {
        let _ = writeln!(s);
        let rows: Vec<[String; 7]> = e
            .findings
            .iter()
            .map(|f| {
                [
                    f.gate.clone(),
                    f.trigger.clone(),
                    f.trigger_id.clone(),
                    f.message.clone(),
                    f.action.as_str().to_string(),
                    if f.allowlisted {
                        format!("yes ({})", f.allowlist_id.clone().unwrap_or_default())
                    } else {
                        "no".into()
                    },
                    f.policy_id.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            write_table(
                &mut s,
                [
                    "GATE",
                    "TRIGGER",
                    "TRIGGER_ID",
                    "CHECK_OUTPUT",
                    "GATE_ACTION",
                    "ALLOWLISTED",
                    "POLICY_ID",
                ],
                &rows,
            );
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "Policy:   {} ({}) — final action {} [{}]",
            e.bundle_id,
            e.policy_ids.join(","),
            e.final_action.as_str(),
            if e.final_action == Action::Stop {
                "fail"
            } else {
                "pass"
            }
        );
    }
    s
}

fn write_table<const N: usize>(s: &mut String, head: [&str; N], rows: &[[String; N]]) {
    let mut w: [usize; N] = head.map(|h| h.len());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count()).min(60);
        }
    }
    let line = |s: &mut String, cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<width$}", width = w[i])
            })
            .collect();
        let _ = writeln!(s, "{}", parts.join("  ").trim_end());
    };
    line(s, head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(s, r.to_vec());
    }
}
