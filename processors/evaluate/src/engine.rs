//! The pure evaluation of one image against one bundle.

use md5::{Digest, Md5};
use vigil_contracts::{
    Action, Analysis, Evaluation, FeedState, PolicyFinding, UnixMillis, VulnReport,
};

use std::collections::HashMap;

use crate::bundle::{Allowlist, AllowlistItem, Bundle, ImageIdentity, Mapping};
use crate::gates::TriggerContext;

/// What an evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    pub analysis: &'a Analysis,
    pub report: &'a VulnReport,
    /// The full tag the image is evaluated as (`registry/repo:tag` or `name@digest`).
    pub tag: &'a str,
    /// Feed sync states, for `vulnerabilities.stale_feed_data` (empty: no feed synced).
    pub feeds: &'a [FeedState],
    /// Allowlists applied in addition to the mapping's (e.g. from OpenVEX documents).
    pub extra_allowlists: &'a [Allowlist],
}

impl<'a> EvalInput<'a> {
    /// An input with no feed states and no extra allowlists.
    pub fn new(analysis: &'a Analysis, report: &'a VulnReport, tag: &'a str) -> Self {
        EvalInput {
            analysis,
            report,
            tag,
            feeds: &[],
            extra_allowlists: &[],
        }
    }
}

/// Anchore's trigger id for non-vulnerability triggers: md5 hex of gate+trigger+message.
pub fn md5_trigger_id(gate: &str, trigger: &str, message: &str) -> String {
    let mut h = Md5::new();
    h.update(gate.as_bytes());
    h.update(trigger.as_bytes());
    h.update(message.as_bytes());
    hex::encode(h.finalize())
}

/// The first mapping that matches the image (mappings are tried in order).
pub fn select_mapping<'b>(bundle: &'b Bundle, image: &ImageIdentity) -> Option<&'b Mapping> {
    bundle.mappings.iter().find(|m| m.matcher.matches(image))
}

/// The allowlist items of a mapping, indexed: items without a wildcard by (gate, trigger
/// id), the others scanned in order. The first item (in list order) that covers a finding wins.
struct AllowIndex<'b> {
    exact: HashMap<(String, &'b str), Vec<(usize, &'b AllowlistItem)>>,
    wildcard: Vec<(usize, &'b AllowlistItem)>,
}

impl<'b> AllowIndex<'b> {
    fn new(lists: &[&'b Allowlist], now: UnixMillis) -> Self {
        let mut exact: HashMap<(String, &'b str), Vec<(usize, &'b AllowlistItem)>> = HashMap::new();
        let mut wildcard = Vec::new();
        let live = lists
            .iter()
            .flat_map(|l| l.items.iter())
            .filter(|it| it.expires_on.is_none_or(|e| e > now))
            .enumerate();
        for (i, it) in live {
            match it.trigger_id.exact() {
                Some(id) => exact
                    .entry((it.gate.trim().to_ascii_lowercase(), id))
                    .or_default()
                    .push((i, it)),
                None => wildcard.push((i, it)),
            }
        }
        AllowIndex { exact, wildcard }
    }

    /// The allowlist item (id) that covers a finding, if any.
    fn lookup(
        &self,
        gate: &str,
        trigger_id: &str,
        package_version: Option<&str>,
    ) -> Option<String> {
        let version_ok = |it: &AllowlistItem| match &it.package_version {
            None => true,
            Some(v) => package_version.is_some_and(|pv| v.matches(pv)),
        };
        let from_exact = self
            .exact
            .get(&(gate.to_string(), trigger_id))
            .and_then(|v| v.iter().find(|(_, it)| version_ok(it)));
        let from_wild = self.wildcard.iter().find(|(_, it)| {
            it.gate.trim().eq_ignore_ascii_case(gate)
                && it.trigger_id.matches(trigger_id)
                && version_ok(it)
        });
        match (from_exact, from_wild) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a.1 } else { b.1 }),
            (a, b) => a.or(b).map(|x| x.1),
        }
        .map(|it| it.id.clone())
    }
}

/// Evaluate an image. `now` is the evaluation time (Unix milliseconds), used for
/// allowlist expiry and recorded as `evaluated_at`.
pub fn evaluate(bundle: &Bundle, input: &EvalInput<'_>, now: UnixMillis) -> Evaluation {
    let image = &input.analysis.descriptor.image;
    let ident = ImageIdentity::from_tag(input.tag, &image.digest, &image.config_digest);
    let mapping = select_mapping(bundle, &ident);

    let mut findings = Vec::new();
    let mut policy_ids = Vec::new();
    if let Some(m) = mapping {
        policy_ids = m.policy_ids.clone();
        let lists: Vec<&Allowlist> = m
            .whitelist_ids
            .iter()
            .filter_map(|id| bundle.whitelist(id))
            .chain(input.extra_allowlists.iter())
            .collect();
        let allow_index = AllowIndex::new(&lists, now);
        for pid in &m.policy_ids {
            let Some(policy) = bundle.policy(pid) else {
                continue;
            };
            for rule in &policy.rules {
                let ctx = TriggerContext {
                    analysis: input.analysis,
                    report: input.report,
                    feeds: input.feeds,
                    tag: input.tag,
                    now,
                    rule_id: &rule.id,
                };
                for fired in (rule.spec.eval)(&ctx, &rule.params) {
                    let trigger_id = fired
                        .trigger_id
                        .unwrap_or_else(|| md5_trigger_id(rule.gate, rule.trigger, &fired.message));
                    let allow = allow_index.lookup(
                        rule.gate,
                        &trigger_id,
                        fired.package_version.as_deref(),
                    );
                    findings.push(PolicyFinding {
                        gate: rule.gate.to_string(),
                        trigger: rule.trigger.to_string(),
                        trigger_id,
                        message: fired.message,
                        action: rule.action,
                        policy_id: policy.id.clone(),
                        rule_id: rule.id.clone(),
                        allowlisted: allow.is_some(),
                        allowlist_id: allow,
                    });
                }
            }
        }
    }

    let policy_action = findings
        .iter()
        .filter(|f| !f.allowlisted)
        .map(|f| f.action)
        .min()
        .unwrap_or(Action::Go);

    let (final_action, reason) = if bundle.blacklisted_images.iter().any(|s| s.matches(&ident)) {
        (Action::Stop, "blacklisted")
    } else if bundle.whitelisted_images.iter().any(|s| s.matches(&ident)) {
        (Action::Go, "whitelisted")
    } else if bundle.mappings.is_empty() {
        (Action::Stop, "no_mappings")
    } else if mapping.is_none() {
        (Action::Go, "no_match")
    } else {
        (policy_action, "policy_evaluation")
    };

    Evaluation {
        image_digest: image.digest.clone(),
        tag: input.tag.to_string(),
        bundle_id: bundle.id.clone(),
        policy_ids,
        final_action,
        final_action_reason: reason.to_string(),
        findings,
        evaluated_at: now,
    }
}

/// An evaluation that could not run because the bundle is invalid: STOP, with the error.
pub fn bundle_error_evaluation(
    bundle_id: &str,
    image_digest: &str,
    tag: &str,
    error: &str,
    now: UnixMillis,
) -> Evaluation {
    let message = format!("policy bundle is invalid: {error}");
    Evaluation {
        image_digest: image_digest.to_string(),
        tag: tag.to_string(),
        bundle_id: bundle_id.to_string(),
        policy_ids: Vec::new(),
        final_action: Action::Stop,
        final_action_reason: "bundle_error".into(),
        findings: vec![PolicyFinding {
            gate: "bundle".into(),
            trigger: "invalid".into(),
            trigger_id: md5_trigger_id("bundle", "invalid", &message),
            message,
            action: Action::Stop,
            policy_id: String::new(),
            rule_id: String::new(),
            allowlisted: false,
            allowlist_id: None,
        }],
        evaluated_at: now,
    }
}
