//! The trigger table: gate → trigger → parameter specs → evaluation function.
//!
//! Adding a trigger means adding one [`TriggerSpec`] to [`GATES`]: validation of the
//! bundle (unknown parameters, missing required ones, bad enum values, numbers, regexes)
//! and defaults are driven by the specs, so the evaluation function only reads
//! already-typed [`Params`].

use std::collections::BTreeMap;

use regex::Regex;
use vigil_contracts::{Analysis, FeedState, UnixMillis, VulnReport};

use crate::triggers::*;

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
    /// An octal file mode (`0644`, `4755`).
    Octal,
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
        ParamKind::Octal => i64::from_str_radix(t, 8)
            .ok()
            .filter(|m| (0..=0o7777).contains(m))
            .map(ParamValue::Int)
            .ok_or_else(|| "expected an octal file mode such as 0644".into()),
    }
}

/// What a trigger function sees.
pub struct TriggerContext<'a> {
    pub analysis: &'a Analysis,
    pub report: &'a VulnReport,
    /// Feed sync states, for `stale_feed_data`.
    pub feeds: &'a [FeedState],
    pub tag: &'a str,
    /// Evaluation time, Unix milliseconds.
    pub now: UnixMillis,
    /// The rule being evaluated (some Anchore trigger ids embed it).
    pub rule_id: &'a str,
}

/// One firing of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerMatch {
    /// A fixed trigger id (vulnerability key); `None` means the md5 of gate+trigger+message.
    pub trigger_id: Option<String>,
    pub message: String,
    /// The package version the match is about, for version-scoped allowlist items.
    pub package_version: Option<String>,
}

impl TriggerMatch {
    pub fn msg(message: String) -> Self {
        TriggerMatch {
            trigger_id: None,
            message,
            package_version: None,
        }
    }
    pub fn with_id(trigger_id: String, message: String) -> Self {
        TriggerMatch {
            trigger_id: Some(trigger_id),
            message,
            package_version: None,
        }
    }
}

pub type TriggerFn = fn(&TriggerContext<'_>, &Params) -> Vec<TriggerMatch>;

/// A cross-parameter check run at load; the error names the parameter and the reason.
pub type ParamCheck = fn(&Params) -> Result<(), (&'static str, String)>;

/// One trigger of a gate.
pub struct TriggerSpec {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
    pub eval: TriggerFn,
    pub check: Option<ParamCheck>,
}

const fn t(name: &'static str, params: &'static [ParamSpec], eval: TriggerFn) -> TriggerSpec {
    TriggerSpec {
        name,
        params,
        eval,
        check: None,
    }
}

const fn tc(
    name: &'static str,
    params: &'static [ParamSpec],
    eval: TriggerFn,
    check: ParamCheck,
) -> TriggerSpec {
    TriggerSpec {
        name,
        params,
        eval,
        check: Some(check),
    }
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

pub(crate) const SEVERITIES: &[&str] =
    &["unknown", "negligible", "low", "medium", "high", "critical"];
pub(crate) const COMPARISONS: &[&str] = &["=", "!=", "<", ">", "<=", ">="];
const LIST_TYPES: &[&str] = &["whitelist", "blacklist"];
pub(crate) const INSTRUCTION_NAMES: &[&str] = &[
    "ADD",
    "ARG",
    "COPY",
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "USER",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "VOLUME",
    "WORKDIR",
];
const INSTRUCTION_CHECKS: &[&str] = &[
    "=",
    "!=",
    "exists",
    "not_exists",
    "like",
    "not_like",
    "in",
    "not_in",
];
const METADATA_ATTRIBUTES: &[&str] = &[
    "size",
    "architecture",
    "os_type",
    "distro",
    "distro_version",
    "like_distro",
    "layer_count",
];
const METADATA_CHECKS: &[&str] = &[
    "=",
    "!=",
    ">",
    "<",
    ">=",
    "<=",
    "exists",
    "not_exists",
    "like",
    "not_like",
    "in",
    "not_in",
];
const EQ_NE: &[&str] = &["equals", "not_equals"];

/// Every gate vigil implements: Anchore's 13 active gates.
pub static GATES: &[GateSpec] = &[
    GateSpec {
        name: "always",
        triggers: &[t("always", &[], always)],
    },
    GateSpec {
        name: "dockerfile",
        triggers: &[
            tc(
                "instruction",
                &[
                    req("instruction", ParamKind::Enum(INSTRUCTION_NAMES)),
                    req("check", ParamKind::Enum(INSTRUCTION_CHECKS)),
                    p("value", ParamKind::Str),
                    p("actual_dockerfile_only", ParamKind::Bool),
                ],
                dockerfile_instruction,
                check_instruction_params,
            ),
            t(
                "effective_user",
                &[
                    req("users", ParamKind::Csv),
                    req("type", ParamKind::Enum(LIST_TYPES)),
                ],
                effective_user,
            ),
            t(
                "exposed_ports",
                &[
                    req("ports", ParamKind::CsvInt),
                    req("type", ParamKind::Enum(LIST_TYPES)),
                    p("actual_dockerfile_only", ParamKind::Bool),
                ],
                exposed_ports,
            ),
            t("no_dockerfile_provided", &[], no_dockerfile_provided),
        ],
    },
    GateSpec {
        name: "files",
        triggers: &[
            t(
                "content_regex_match",
                &[p("regex_name", ParamKind::Regex)],
                files_content_regex_match,
            ),
            t(
                "name_match",
                &[req("regex", ParamKind::Regex)],
                files_name_match,
            ),
            tc(
                "attribute_match",
                &[
                    req("filename", ParamKind::Str),
                    dflt("checksum_algorithm", ParamKind::Enum(&["sha256"]), "sha256"),
                    p("checksum", ParamKind::Str),
                    p("checksum_match", ParamKind::Enum(EQ_NE)),
                    p("mode", ParamKind::Octal),
                    p("mode_op", ParamKind::Enum(EQ_NE)),
                    dflt("skip_missing", ParamKind::Bool, "true"),
                ],
                files_attribute_match,
                check_attribute_params,
            ),
            t("suid_or_guid_set", &[], files_suid_or_guid_set),
        ],
    },
    GateSpec {
        name: "passwd_file",
        triggers: &[
            t("content_not_available", &[], passwd_content_not_available),
            t(
                "blacklist_usernames",
                &[req("user_names", ParamKind::Csv)],
                passwd_blacklist_usernames,
            ),
            t(
                "blacklist_userids",
                &[req("user_ids", ParamKind::CsvInt)],
                passwd_blacklist_userids,
            ),
            t(
                "blacklist_groupids",
                &[req("group_ids", ParamKind::CsvInt)],
                passwd_blacklist_groupids,
            ),
            t(
                "blacklist_shells",
                &[req("shells", ParamKind::Csv)],
                passwd_blacklist_shells,
            ),
            t(
                "blacklist_full_entry",
                &[req("entry", ParamKind::Str)],
                passwd_blacklist_full_entry,
            ),
        ],
    },
    GateSpec {
        name: "packages",
        triggers: &[
            t(
                "required_package",
                &[
                    req("name", ParamKind::Str),
                    p("version", ParamKind::Str),
                    dflt(
                        "version_match_type",
                        ParamKind::Enum(&["exact", "minimum"]),
                        "exact",
                    ),
                ],
                packages_required,
            ),
            t(
                "verify",
                &[
                    p("only_packages", ParamKind::Csv),
                    p("only_directories", ParamKind::Csv),
                    p("check", ParamKind::Enum(&["changed", "missing"])),
                ],
                packages_verify,
            ),
            t(
                "blacklist",
                &[req("name", ParamKind::Str), p("version", ParamKind::Str)],
                packages_blacklist,
            ),
        ],
    },
    GateSpec {
        name: "npms",
        triggers: &[
            t("newer_version_in_feed", &[], no_package_feed),
            t("unknown_in_feeds", &[], no_package_feed),
            t("version_not_in_feeds", &[], no_package_feed),
            t("feed_data_unavailable", &[], npm_feed_data_unavailable),
            t(
                "blacklisted_name_version",
                &[req("name", ParamKind::Str), p("version", ParamKind::Str)],
                npm_blacklist,
            ),
        ],
    },
    GateSpec {
        name: "ruby_gems",
        triggers: &[
            t("newer_version_found_in_feed", &[], no_package_feed),
            t("not_found_in_feed", &[], no_package_feed),
            t("version_not_found_in_feed", &[], no_package_feed),
            t("feed_data_unavailable", &[], gem_feed_data_unavailable),
            t(
                "blacklist",
                &[req("name", ParamKind::Str), p("version", ParamKind::Str)],
                gem_blacklist,
            ),
        ],
    },
    GateSpec {
        name: "licenses",
        triggers: &[
            t(
                "blacklist_exact_match",
                &[req("licenses", ParamKind::Csv)],
                licenses_exact,
            ),
            t(
                "blacklist_partial_match",
                &[req("licenses", ParamKind::Csv)],
                licenses_partial,
            ),
        ],
    },
    GateSpec {
        name: "metadata",
        triggers: &[tc(
            "attribute",
            &[
                req("attribute", ParamKind::Enum(METADATA_ATTRIBUTES)),
                req("check", ParamKind::Enum(METADATA_CHECKS)),
                p("value", ParamKind::Str),
            ],
            metadata_attribute,
            check_metadata_params,
        )],
    },
    GateSpec {
        name: "malware",
        triggers: &[
            t("scans", &[], malware_scans),
            t("scan_not_run", &[], malware_scan_not_run),
        ],
    },
    GateSpec {
        name: "retrieved_files",
        triggers: &[
            t(
                "content_not_available",
                &[req("path", ParamKind::Str)],
                retrieved_content_not_available,
            ),
            t(
                "content_regex",
                &[
                    req("path", ParamKind::Str),
                    req("regex", ParamKind::Regex),
                    req("check", ParamKind::Enum(&["match", "no_match"])),
                ],
                retrieved_content_regex,
            ),
        ],
    },
    GateSpec {
        name: "secret_scans",
        triggers: &[t(
            "content_regex_checks",
            &[
                p("content_regex_name", ParamKind::Str),
                p("filename_regex", ParamKind::Regex),
                dflt(
                    "match_type",
                    ParamKind::Enum(&["found", "notfound"]),
                    "found",
                ),
            ],
            secret_content_regex_checks,
        )],
    },
    GateSpec {
        name: "vulnerabilities",
        triggers: &[
            tc(
                "package",
                &[
                    req("package_type", ParamKind::Enum(&["all", "os", "non-os"])),
                    dflt("severity_comparison", ParamKind::Enum(COMPARISONS), ">"),
                    dflt("severity", ParamKind::Enum(SEVERITIES), "unknown"),
                    dflt(
                        "cvss_v3_base_score_comparison",
                        ParamKind::Enum(COMPARISONS),
                        ">=",
                    ),
                    p("cvss_v3_base_score", ParamKind::Float),
                    dflt(
                        "cvss_v3_exploitability_score_comparison",
                        ParamKind::Enum(COMPARISONS),
                        ">=",
                    ),
                    p("cvss_v3_exploitability_score", ParamKind::Float),
                    dflt(
                        "cvss_v3_impact_score_comparison",
                        ParamKind::Enum(COMPARISONS),
                        ">=",
                    ),
                    p("cvss_v3_impact_score", ParamKind::Float),
                    dflt(
                        "vendor_cvss_v3_base_score_comparison",
                        ParamKind::Enum(COMPARISONS),
                        ">=",
                    ),
                    p("vendor_cvss_v3_base_score", ParamKind::Float),
                    dflt(
                        "vendor_cvss_v3_exploitability_score_comparison",
                        ParamKind::Enum(COMPARISONS),
                        ">=",
                    ),
                    p("vendor_cvss_v3_exploitability_score", ParamKind::Float),
                    dflt(
                        "vendor_cvss_v3_impact_score_comparison",
                        ParamKind::Enum(COMPARISONS),
                        ">=",
                    ),
                    p("vendor_cvss_v3_impact_score", ParamKind::Float),
                    p("fix_available", ParamKind::Bool),
                    dflt("vendor_only", ParamKind::Bool, "true"),
                    p("max_days_since_creation", ParamKind::Int),
                    p("max_days_since_fix", ParamKind::Int),
                    p("package_path_exclude", ParamKind::Regex),
                ],
                vuln_package,
                check_vuln_package_params,
            ),
            t(
                "stale_feed_data",
                &[req("max_days_since_sync", ParamKind::Int)],
                vuln_stale_feed_data,
            ),
            t("vulnerability_data_unavailable", &[], vuln_data_unavailable),
            t(
                "blacklist",
                &[
                    req("vulnerability_ids", ParamKind::Csv),
                    dflt("vendor_only", ParamKind::Bool, "true"),
                ],
                vuln_blacklist,
            ),
        ],
    },
];

/// Gates Anchore declared end-of-life, with the successor each names; bundles naming
/// them are rejected at load.
pub const EOL_GATES: &[(&str, &str)] = &[
    ("anchoresec", "vulnerabilities"),
    ("pkgcheck", "packages"),
    ("pkgblacklist", "packages"),
    ("pkgdiff", "packages"),
    ("suiddiff", "files"),
    ("imagecheck", "(none)"),
    ("dockerfilecheck", "dockerfile"),
    ("filecheck", "files"),
    ("fileparse_passwd", "passwd_file"),
    ("gemcheck", "ruby_gems"),
    ("npmcheck", "npms"),
    ("metadatacheck", "metadata"),
    ("licblacklist", "licenses"),
    ("secretcheck", "secret_scans"),
];

pub fn gate(name: &str) -> Option<&'static GateSpec> {
    GATES.iter().find(|g| g.name.eq_ignore_ascii_case(name))
}

/// The successor of an end-of-life gate, when `name` is one.
pub fn eol_gate(name: &str) -> Option<&'static str> {
    EOL_GATES
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
}
