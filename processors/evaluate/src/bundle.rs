//! The Anchore policy bundle model (version `1_0`), parsed and validated at load.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_contracts::{Action, UnixMillis};

use crate::gates::{self, Params, TriggerSpec};

/// Why a bundle was rejected. Every message names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy bundle is not valid JSON: {0}")]
    Json(String),
    #[error("{context}: {message}")]
    Structure { context: String, message: String },
    #[error("{context}: unsupported version {found:?}, expected \"1_0\"")]
    Version { context: String, found: String },
    #[error("policy {policy:?} rule {rule:?}: unknown gate {gate:?}")]
    UnknownGate {
        policy: String,
        rule: String,
        gate: String,
    },
    #[error(
        "policy {policy:?} rule {rule:?}: gate {gate:?} is end-of-life and no longer supported (use {successor:?})"
    )]
    EolGate {
        policy: String,
        rule: String,
        gate: String,
        successor: String,
    },
    #[error("policy bundle is too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("policy {policy:?} rule {rule:?}: unknown trigger {trigger:?} for gate {gate:?}")]
    UnknownTrigger {
        policy: String,
        rule: String,
        gate: String,
        trigger: String,
    },
    #[error(
        "policy {policy:?} rule {rule:?}: unknown parameter {param:?} for trigger {gate}.{trigger}"
    )]
    UnknownParam {
        policy: String,
        rule: String,
        gate: String,
        trigger: String,
        param: String,
    },
    #[error("policy {policy:?} rule {rule:?}: missing required parameter {param:?}")]
    MissingParam {
        policy: String,
        rule: String,
        param: String,
    },
    #[error(
        "policy {policy:?} rule {rule:?}: parameter {param:?} value {value:?} is invalid: {reason}"
    )]
    InvalidParam {
        policy: String,
        rule: String,
        param: String,
        value: String,
        reason: String,
    },
    #[error(
        "policy {policy:?} rule {rule:?}: invalid action {action:?}, expected GO, WARN or STOP"
    )]
    InvalidAction {
        policy: String,
        rule: String,
        action: String,
    },
    #[error("{context}: invalid selector {value:?}: {reason}")]
    InvalidSelector {
        context: String,
        value: String,
        reason: String,
    },
    #[error("mapping {mapping:?}: unknown {what} id {id:?}")]
    UnknownReference {
        mapping: String,
        what: &'static str,
        id: String,
    },
}

/// One string selector: `*`-wildcard glob or `regexp:` regular expression, matched whole.
#[derive(Debug, Clone)]
pub struct Selector {
    pub raw: String,
    kind: SelectorKind,
}

#[derive(Debug, Clone)]
enum SelectorKind {
    /// `*`
    Any,
    /// No wildcard: compared as a string (no regex to compile or run).
    Exact,
    /// `prefix*`
    Prefix(String),
    Regex(Regex),
}

impl Selector {
    pub fn parse(raw: &str, context: &str) -> Result<Selector, PolicyError> {
        let kind = match raw.strip_prefix("regexp:") {
            None if raw == "*" => SelectorKind::Any,
            None if !raw.contains('*') => SelectorKind::Exact,
            None if raw.ends_with('*') && raw.matches('*').count() == 1 => {
                SelectorKind::Prefix(raw[..raw.len() - 1].to_string())
            }
            other => {
                let pattern = match other {
                    Some(r) => format!("^(?:{r})$"),
                    None => {
                        let parts: Vec<String> = raw.split('*').map(regex::escape).collect();
                        format!("^{}$", parts.join(".*"))
                    }
                };
                SelectorKind::Regex(Regex::new(&pattern).map_err(|e| {
                    PolicyError::InvalidSelector {
                        context: context.to_string(),
                        value: raw.to_string(),
                        reason: e.to_string(),
                    }
                })?)
            }
        };
        Ok(Selector {
            raw: raw.to_string(),
            kind,
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        match &self.kind {
            SelectorKind::Any => true,
            SelectorKind::Exact => self.raw == s,
            SelectorKind::Prefix(p) => s.starts_with(p.as_str()),
            SelectorKind::Regex(re) => re.is_match(s),
        }
    }

    /// The string this selector matches exactly, when it has no wildcard.
    pub fn exact(&self) -> Option<&str> {
        matches!(self.kind, SelectorKind::Exact).then_some(self.raw.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSelectorType {
    Tag,
    Digest,
    Id,
}

/// A mapping-style image selector.
#[derive(Debug, Clone)]
pub struct ImageMatcher {
    pub registry: Selector,
    pub repository: Selector,
    pub image_type: ImageSelectorType,
    pub image: Selector,
}

/// The image being evaluated, split for mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIdentity {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    /// Config digest without the `sha256:` prefix.
    pub image_id: String,
}

impl ImageIdentity {
    /// Split a full tag (`registry/repo:tag` or `registry/repo@digest`).
    pub fn from_tag(full_tag: &str, digest: &str, config_digest: &str) -> ImageIdentity {
        let (name, tag) = match full_tag.split_once('@') {
            Some((n, _)) => (n, None),
            None => {
                let slash = full_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
                match full_tag[slash..].rfind(':') {
                    Some(c) => (
                        &full_tag[..slash + c],
                        Some(full_tag[slash + c + 1..].to_string()),
                    ),
                    None => (full_tag, None),
                }
            }
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => {
                let repo = if name.contains('/') {
                    name.to_string()
                } else {
                    format!("library/{name}")
                };
                ("docker.io".to_string(), repo)
            }
        };
        let registry = if registry == "dockerhub" || registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        ImageIdentity {
            registry,
            repository,
            tag,
            digest: digest.to_string(),
            image_id: config_digest
                .strip_prefix("sha256:")
                .unwrap_or(config_digest)
                .to_string(),
        }
    }
}

impl ImageMatcher {
    pub fn matches(&self, img: &ImageIdentity) -> bool {
        if !self.registry.matches(&img.registry) || !self.repository.matches(&img.repository) {
            return false;
        }
        match self.image_type {
            ImageSelectorType::Tag => match &img.tag {
                Some(t) => self.image.matches(t),
                None => self.image.raw == "*",
            },
            ImageSelectorType::Digest => self.image.matches(&img.digest),
            ImageSelectorType::Id => {
                self.image.matches(&img.image_id)
                    || self.image.matches(&format!("sha256:{}", img.image_id))
            }
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    /// Canonical (lower-case) gate and trigger names.
    pub gate: &'static str,
    pub trigger: &'static str,
    pub action: Action,
    pub params: Params,
    pub spec: &'static TriggerSpec,
}

impl std::fmt::Debug for TriggerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct AllowlistItem {
    pub id: String,
    pub gate: String,
    pub trigger_id: Selector,
    pub expires_on: Option<UnixMillis>,
    /// vigil extension: only findings about this package version (glob) are covered.
    pub package_version: Option<Selector>,
}

#[derive(Debug, Clone)]
pub struct Allowlist {
    pub id: String,
    pub name: String,
    pub items: Vec<AllowlistItem>,
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub id: String,
    pub name: String,
    pub matcher: ImageMatcher,
    pub policy_ids: Vec<String>,
    pub whitelist_ids: Vec<String>,
}

/// A validated policy bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub id: String,
    pub name: String,
    pub comment: Option<String>,
    pub policies: Vec<Policy>,
    pub whitelists: Vec<Allowlist>,
    pub mappings: Vec<Mapping>,
    pub whitelisted_images: Vec<ImageMatcher>,
    pub blacklisted_images: Vec<ImageMatcher>,
}

impl Bundle {
    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.id == id)
    }
    pub fn whitelist(&self, id: &str) -> Option<&Allowlist> {
        self.whitelists.iter().find(|w| w.id == id)
    }
}

// ---- raw JSON shapes -------------------------------------------------------------------

#[derive(Deserialize)]
struct RawBundle {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    comment: Option<String>,
    version: String,
    #[serde(default)]
    policies: Vec<Value>,
    #[serde(default)]
    whitelists: Vec<Value>,
    #[serde(default)]
    mappings: Vec<Value>,
    #[serde(default)]
    whitelisted_images: Vec<Value>,
    #[serde(default)]
    blacklisted_images: Vec<Value>,
}

#[derive(Deserialize)]
struct RawPolicy {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    rules: Vec<Value>,
}

#[derive(Deserialize)]
struct RawRule {
    #[serde(default)]
    id: String,
    gate: String,
    trigger: String,
    action: String,
    #[serde(default)]
    params: Vec<RawParam>,
}

#[derive(Deserialize)]
struct RawParam {
    name: String,
    value: Value,
}

#[derive(Deserialize)]
struct RawWhitelist {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    items: Vec<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    id: String,
    gate: String,
    trigger_id: String,
    #[serde(default)]
    expires_on: Option<String>,
    #[serde(default)]
    package_version: Option<String>,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Deserialize)]
struct RawMapping {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    registry: String,
    repository: String,
    image: RawImage,
    #[serde(default)]
    policy_ids: Vec<String>,
    #[serde(default)]
    policy_id: Option<String>,
    #[serde(default)]
    whitelist_ids: Vec<String>,
}

fn structure(context: impl Into<String>, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Structure {
        context: context.into(),
        message: e.to_string(),
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value, context: &str) -> Result<T, PolicyError> {
    serde_json::from_value(v).map_err(|e| structure(context, e))
}

/// A label for an element of a list: its `id` when it has one, else its position.
fn label(v: &Value, i: usize) -> String {
    match v.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("#{i}"),
    }
}

fn check_version(v: Option<&str>, context: &str) -> Result<(), PolicyError> {
    match v {
        None | Some("1_0") => Ok(()),
        Some(other) => Err(PolicyError::Version {
            context: context.to_string(),
            found: other.to_string(),
        }),
    }
}

fn param_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn load_rule(policy: &str, index: usize, v: Value) -> Result<Rule, PolicyError> {
    let rule_label = label(&v, index);
    let raw: RawRule = from_value(v, &format!("policy {policy:?} rule {rule_label:?}"))?;
    let rule = rule_label;
    let gate_name = raw.gate.trim();
    let Some(gate) = gates::gate(gate_name) else {
        if let Some(successor) = gates::eol_gate(gate_name) {
            return Err(PolicyError::EolGate {
                policy: policy.into(),
                rule,
                gate: raw.gate,
                successor: successor.into(),
            });
        }
        return Err(PolicyError::UnknownGate {
            policy: policy.into(),
            rule,
            gate: raw.gate,
        });
    };
    let Some(spec) = gate.trigger(raw.trigger.trim()) else {
        return Err(PolicyError::UnknownTrigger {
            policy: policy.into(),
            rule,
            gate: gate.name.into(),
            trigger: raw.trigger,
        });
    };
    let action = match raw.action.trim().to_ascii_uppercase().as_str() {
        "GO" => Action::Go,
        "WARN" => Action::Warn,
        "STOP" => Action::Stop,
        _ => {
            return Err(PolicyError::InvalidAction {
                policy: policy.into(),
                rule,
                action: raw.action,
            })
        }
    };
    let mut params = Params::default();
    for rp in &raw.params {
        let Some(ps) = spec
            .params
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(rp.name.trim()))
        else {
            return Err(PolicyError::UnknownParam {
                policy: policy.into(),
                rule,
                gate: gate.name.into(),
                trigger: spec.name.into(),
                param: rp.name.clone(),
            });
        };
        let invalid = |value: String, reason: String| PolicyError::InvalidParam {
            policy: policy.into(),
            rule: rule.clone(),
            param: ps.name.into(),
            value,
            reason,
        };
        let Some(s) = param_string(&rp.value) else {
            return Err(invalid(
                rp.value.to_string(),
                "expected a string, number or boolean".into(),
            ));
        };
        if params.0.contains_key(ps.name) {
            return Err(invalid(s, "parameter given more than once".into()));
        }
        let parsed = gates::parse_param(ps.kind, &s).map_err(|reason| invalid(s, reason))?;
        params.0.insert(ps.name, parsed);
    }
    for ps in spec.params {
        if params.0.contains_key(ps.name) {
            continue;
        }
        if ps.required {
            return Err(PolicyError::MissingParam {
                policy: policy.into(),
                rule,
                param: ps.name.into(),
            });
        }
        if let Some(d) = ps.default {
            let parsed =
                gates::parse_param(ps.kind, d).map_err(|reason| PolicyError::InvalidParam {
                    policy: policy.into(),
                    rule: rule.clone(),
                    param: ps.name.into(),
                    value: d.into(),
                    reason,
                })?;
            params.0.insert(ps.name, parsed);
        }
    }
    if let Some(check) = spec.check {
        check(&params).map_err(|(param, reason)| PolicyError::InvalidParam {
            policy: policy.into(),
            rule: rule.clone(),
            param: param.into(),
            value: params_display(&raw.params, param),
            reason,
        })?;
    }
    Ok(Rule {
        id: raw.id,
        gate: gate.name,
        trigger: spec.name,
        action,
        params,
        spec,
    })
}

/// The raw value given for a parameter (case-insensitive name), for error messages.
fn params_display(raw: &[RawParam], name: &str) -> String {
    raw.iter()
        .find(|p| p.name.trim().eq_ignore_ascii_case(name))
        .and_then(|p| param_string(&p.value))
        .unwrap_or_default()
}

fn load_matcher(
    registry: &str,
    repository: &str,
    image: &RawImage,
    context: &str,
) -> Result<ImageMatcher, PolicyError> {
    let image_type = match image.kind.trim().to_ascii_lowercase().as_str() {
        "tag" => ImageSelectorType::Tag,
        "digest" => ImageSelectorType::Digest,
        "id" => ImageSelectorType::Id,
        other => {
            return Err(structure(
                context,
                format!("image type {other:?} is not one of tag, digest, id"),
            ))
        }
    };
    let registry = if registry == "dockerhub" {
        "docker.io"
    } else {
        registry
    };
    Ok(ImageMatcher {
        registry: Selector::parse(registry, context)?,
        repository: Selector::parse(repository, context)?,
        image_type,
        image: Selector::parse(&image.value, context)?,
    })
}

fn load_image_selector(v: Value, context: &str) -> Result<ImageMatcher, PolicyError> {
    #[derive(Deserialize)]
    struct RawSel {
        registry: String,
        repository: String,
        image: RawImage,
    }
    let raw: RawSel = from_value(v, context)?;
    load_matcher(&raw.registry, &raw.repository, &raw.image, context)
}

/// The largest bundle accepted (bytes of JSON).
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

/// Parse and validate a bundle.
pub fn load_bundle(json: &str) -> Result<Bundle, PolicyError> {
    if json.len() > MAX_BUNDLE_BYTES {
        return Err(PolicyError::TooLarge {
            size: json.len(),
            limit: MAX_BUNDLE_BYTES,
        });
    }
    let root: Value = serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
    let raw: RawBundle = from_value(root, "bundle")?;
    check_version(Some(raw.version.as_str()), "bundle")?;

    let mut policies = Vec::new();
    for (i, pv) in raw.policies.into_iter().enumerate() {
        let ctx = format!("policy {:?}", label(&pv, i));
        let rp: RawPolicy = from_value(pv, &ctx)?;
        check_version(rp.version.as_deref(), &ctx)?;
        let rules = rp
            .rules
            .into_iter()
            .enumerate()
            .map(|(j, rv)| load_rule(&rp.id, j, rv))
            .collect::<Result<Vec<_>, _>>()?;
        policies.push(Policy {
            id: rp.id,
            name: rp.name,
            rules,
        });
    }

    let mut whitelists = Vec::new();
    for (i, wv) in raw.whitelists.into_iter().enumerate() {
        let ctx = format!("whitelist {:?}", label(&wv, i));
        let rw: RawWhitelist = from_value(wv, &ctx)?;
        check_version(rw.version.as_deref(), &ctx)?;
        let mut items = Vec::new();
        for it in rw.items {
            let ictx = format!("{ctx} item {:?}", it.id);
            let expires_on = match it.expires_on.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(s) => {
                    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
                        structure(&ictx, format!("expires_on {s:?} is not RFC 3339: {e}"))
                    })?;
                    Some((t.unix_timestamp_nanos() / 1_000_000) as UnixMillis)
                }
            };
            let package_version = match it.package_version.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => Some(Selector::parse(v, &ictx)?),
            };
            items.push(AllowlistItem {
                package_version,
                trigger_id: Selector::parse(&it.trigger_id, &ictx)?,
                id: it.id,
                gate: it.gate,
                expires_on,
            });
        }
        whitelists.push(Allowlist {
            id: rw.id,
            name: rw.name,
            items,
        });
    }

    let mut mappings = Vec::new();
    for (i, mv) in raw.mappings.into_iter().enumerate() {
        let mlabel = label(&mv, i);
        let ctx = format!("mapping {mlabel:?}");
        let rm: RawMapping = from_value(mv, &ctx)?;
        let matcher = load_matcher(&rm.registry, &rm.repository, &rm.image, &ctx)?;
        let mut policy_ids = rm.policy_ids;
        if let Some(p) = rm.policy_id {
            if !policy_ids.contains(&p) {
                policy_ids.push(p);
            }
        }
        for p in &policy_ids {
            if !policies.iter().any(|x| &x.id == p) {
                return Err(PolicyError::UnknownReference {
                    mapping: mlabel,
                    what: "policy",
                    id: p.clone(),
                });
            }
        }
        for w in &rm.whitelist_ids {
            if !whitelists.iter().any(|x| &x.id == w) {
                return Err(PolicyError::UnknownReference {
                    mapping: mlabel,
                    what: "whitelist",
                    id: w.clone(),
                });
            }
        }
        mappings.push(Mapping {
            id: rm.id,
            name: rm.name,
            matcher,
            policy_ids,
            whitelist_ids: rm.whitelist_ids,
        });
    }

    let whitelisted_images = raw
        .whitelisted_images
        .into_iter()
        .enumerate()
        .map(|(i, v)| load_image_selector(v, &format!("whitelisted_images #{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let blacklisted_images = raw
        .blacklisted_images
        .into_iter()
        .enumerate()
        .map(|(i, v)| load_image_selector(v, &format!("blacklisted_images #{i}")))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Bundle {
        id: raw.id,
        name: raw.name,
        comment: raw.comment,
        policies,
        whitelists,
        mappings,
        whitelisted_images,
        blacklisted_images,
    })
}

/// The built-in default bundle, reconstructed from Anchore's.
pub const DEFAULT_BUNDLE_JSON: &str = include_str!("default_bundle.json");

/// The built-in default bundle.
pub fn default_bundle() -> Bundle {
    load_bundle(DEFAULT_BUNDLE_JSON).expect("the built-in default bundle is valid")
}
