//! The trigger table: gate → trigger → parameter specs → evaluation function.
//!
//! Adding a trigger means adding one [`TriggerSpec`] to [`GATES`]: validation of the
//! bundle (unknown parameters, missing required ones, bad enum values, numbers, regexes)
//! and defaults are driven by the specs, so the evaluation function only reads
//! already-typed [`Params`].

use std::collections::BTreeMap;

use regex::Regex;
use vigil_contracts::{Analysis, FixState, Severity, VulnReport};

/// The type of a rule parameter, as Anchore declares them.
#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    Str,
    /// `"true"` or `"false"` (case-insensitive).
    Bool,
    Int,
    Float,
    /// Comma-separated strings; blanks are dropped.
    Csv,
    /// Comma-separated integers.
    CsvInt,
    /// One of the listed values (compared case-insensitively, stored as listed).
    Enum(&'static [&'static str]),
    /// A regular expression, compiled at load.
    Regex,
}

/// One parameter a trigger accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub required: bool,
    /// Applied when the parameter is absent (parsed like a given value).
    pub default: Option<&'static str>,
}

const fn p(name: &'static str, kind: ParamKind) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        default: None,
    }
}

const fn req(name: &'static str, kind: ParamKind) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: true,
        default: None,
    }
}

const fn dflt(name: &'static str, kind: ParamKind, default: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        default: Some(default),
    }
}

/// A typed parameter value.
#[derive(Debug, Clone)]
pub enum ParamValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    List(Vec<String>),
    IntList(Vec<i64>),
    Regex(Regex),
}

/// The validated parameters of one rule, keyed by the spec's (lower-case) name.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<&'static str, ParamValue>);

impl Params {
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(ParamValue::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(ParamValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name) {
            Some(ParamValue::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.0.get(name) {
            Some(ParamValue::Float(f)) => Some(*f),
            _ => None,
        }
    }
    pub fn list(&self, name: &str) -> &[String] {
        match self.0.get(name) {
            Some(ParamValue::List(l)) => l,
            _ => &[],
        }
    }
    pub fn int_list(&self, name: &str) -> &[i64] {
        match self.0.get(name) {
            Some(ParamValue::IntList(l)) => l,
            _ => &[],
        }
    }
    pub fn regex(&self, name: &str) -> Option<&Regex> {
        match self.0.get(name) {
            Some(ParamValue::Regex(r)) => Some(r),
            _ => None,
        }
    }
}

/// Parse one raw parameter value according to its kind; the error is a reason.
pub fn parse_param(kind: ParamKind, raw: &str) -> Result<ParamValue, String> {
    let t = raw.trim();
    match kind {
        ParamKind::Str => Ok(ParamValue::Str(raw.to_string())),
        ParamKind::Bool => match t.to_ascii_lowercase().as_str() {
            "true" => Ok(ParamValue::Bool(true)),
            "false" => Ok(ParamValue::Bool(false)),
            _ => Err("expected true or false".into()),
        },
        ParamKind::Int => t
            .parse::<i64>()
            .map(ParamValue::Int)
            .map_err(|_| "expected an integer".into()),
        ParamKind::Float => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(ParamValue::Float)
            .ok_or_else(|| "expected a number".into()),
        ParamKind::Csv => Ok(ParamValue::List(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )),
        ParamKind::CsvInt => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| format!("{s:?} is not an integer"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ParamValue::IntList),
        ParamKind::Enum(allowed) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(t))
            .map(|a| ParamValue::Str((*a).to_string()))
            .ok_or_else(|| format!("expected one of {}", allowed.join(", "))),
        ParamKind::Regex => Regex::new(raw)
            .map(ParamValue::Regex)
            .map_err(|e| format!("invalid regex: {e}")),
    }
}

/// What a trigger function sees.
pub struct TriggerContext<'a> {
    pub analysis: &'a Analysis,
    pub report: &'a VulnReport,
    pub tag: &'a str,
}

/// One firing of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerMatch {
    /// A fixed trigger id (vulnerability key); `None` means the md5 of gate+trigger+message.
    pub trigger_id: Option<String>,
    pub message: String,
}

impl TriggerMatch {
    fn msg(message: String) -> Self {
        TriggerMatch {
            trigger_id: None,
            message,
        }
    }
}

pub type TriggerFn = fn(&TriggerContext<'_>, &Params) -> Vec<TriggerMatch>;

/// One trigger of a gate.
pub struct TriggerSpec {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
    pub eval: TriggerFn,
}

/// A gate and its triggers.
pub struct GateSpec {
    pub name: &'static str,
    pub triggers: &'static [TriggerSpec],
}

impl GateSpec {
    pub fn trigger(&self, name: &str) -> Option<&'static TriggerSpec> {
        self.triggers
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

const SEVERITIES: &[&str] = &["unknown", "negligible", "low", "medium", "high", "critical"];
const COMPARISONS: &[&str] = &["=", "!=", "<", ">", "<=", ">="];
const LIST_TYPES: &[&str] = &["whitelist", "blacklist"];

/// Every gate vigil implements.
pub static GATES: &[GateSpec] = &[
    GateSpec {
        name: "always",
        triggers: &[TriggerSpec {
            name: "always",
            params: &[],
            eval: always,
        }],
    },
    GateSpec {
        name: "dockerfile",
        triggers: &[
            TriggerSpec {
                name: "exposed_ports",
                params: &[
                    req("ports", ParamKind::CsvInt),
                    req("type", ParamKind::Enum(LIST_TYPES)),
                    p("actual_dockerfile_only", ParamKind::Bool),
                ],
                eval: exposed_ports,
            },
            TriggerSpec {
                name: "effective_user",
                params: &[
                    req("users", ParamKind::Csv),
                    req("type", ParamKind::Enum(LIST_TYPES)),
                ],
                eval: effective_user,
            },
        ],
    },
    GateSpec {
        name: "vulnerabilities",
        triggers: &[TriggerSpec {
            name: "package",
            params: &[
                req("package_type", ParamKind::Enum(&["all", "os", "non-os"])),
                dflt("severity_comparison", ParamKind::Enum(COMPARISONS), ">"),
                dflt("severity", ParamKind::Enum(SEVERITIES), "unknown"),
                p("fix_available", ParamKind::Bool),
                dflt("vendor_only", ParamKind::Bool, "true"),
            ],
            eval: vuln_package,
        }],
    },
];

/// Gates Anchore declared end-of-life; bundles naming them are rejected.
pub const EOL_GATES: &[&str] = &[
    "anchoresec",
    "pkgcheck",
    "pkgblacklist",
    "pkgdiff",
    "suiddiff",
    "imagecheck",
    "dockerfilecheck",
    "filecheck",
    "fileparse_passwd",
    "gemcheck",
    "npmcheck",
    "metadatacheck",
    "licblacklist",
    "secretcheck",
];

pub fn gate(name: &str) -> Option<&'static GateSpec> {
    GATES.iter().find(|g| g.name.eq_ignore_ascii_case(name))
}

fn always(_: &TriggerContext<'_>, _: &Params) -> Vec<TriggerMatch> {
    vec![TriggerMatch::msg("always".into())]
}

fn exposed_ports(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let listed = params.int_list("ports");
    let blacklist = params.str("type") == Some("blacklist");
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for raw in &ctx.analysis.descriptor.config.exposed_ports {
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

fn effective_user(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
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

fn compare(op: &str, a: Severity, b: Severity) -> bool {
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

fn vuln_package(ctx: &TriggerContext<'_>, params: &Params) -> Vec<TriggerMatch> {
    let package_type = params.str("package_type").unwrap_or("all");
    let op = params.str("severity_comparison").unwrap_or(">");
    let threshold = severity_of(params.str("severity").unwrap_or("unknown"));
    let fix_available = params.bool("fix_available");
    let vendor_only = params.bool("vendor_only").unwrap_or(true);
    let mut seen = std::collections::BTreeSet::new();
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
        if vendor_only && f.state == FixState::WontFix {
            continue;
        }
        if !compare(op, f.severity, threshold) {
            continue;
        }
        let has_fix = f.state == FixState::Fixed || f.fixed_in.is_some();
        if let Some(want) = fix_available {
            if want != has_fix {
                continue;
            }
        }
        let key = f.key();
        if !seen.insert(key.clone()) {
            continue;
        }
        let fix = match &f.fixed_in {
            Some(v) => format!("fixed in {v}"),
            None => "no fix available".into(),
        };
        out.push(TriggerMatch {
            trigger_id: Some(key),
            message: format!(
                "{} Vulnerability found in {} package type ({}) - {}-{} ({} - {})",
                format!("{:?}", f.severity).to_ascii_uppercase(),
                if os { "os" } else { "non-os" },
                f.package.kind.as_str(),
                f.package.name,
                f.package.version,
                fix,
                f.vuln_id,
            ),
        });
    }
    out
}
