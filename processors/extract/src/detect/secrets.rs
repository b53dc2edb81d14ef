//! Secret search: named regex rules run over the bytes of a text file, reporting the rule
//! and the 1-based line of each match, never the matched text.
//!
//! The default rules are Anchore Engine's five `secret_search` regexes (`AWS_ACCESS_KEY`,
//! `AWS_SECRET_KEY`, `PRIV_KEY`, `DOCKER_AUTH`, `API_KEY`), rewritten for the `regex`
//! crate (no look-arounds: `(?<![A-Z0-9])X(?![A-Z0-9])` becomes "start or a non-member
//! before, end or a non-member after", and the leading/trailing `.*` are dropped since a
//! match is reported by line), plus `AWS_ACCESS_KEY` for a bare key id, `GITHUB_TOKEN` and
//! `GENERIC_TOKEN`. Several rules may share a name: a hit is reported once per
//! (rule name, line); a `GENERIC*` rule only reports lines no other rule reported.

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

/// Rules whose name starts with this report only lines that no other rule hit.
pub const GENERIC_PREFIX: &str = "GENERIC";

/// One named rule, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRule {
    pub name: String,
    pub regex: String,
}

impl SecretRule {
    fn new(name: &str, regex: &str) -> Self {
        SecretRule {
            name: name.into(),
            regex: regex.into(),
        }
    }
}

/// The default rule list.
pub fn default_rules() -> Vec<SecretRule> {
    vec![
        // Anchore: (?i).*aws_access_key_id( *=+ *).*(?<![A-Z0-9])[A-Z0-9]{20}(?![A-Z0-9]).*
        SecretRule::new(
            "AWS_ACCESS_KEY",
            r"(?im)aws_access_key_id *=+ *(?:[^\n]*[^A-Z0-9\n])?[A-Z0-9]{20}(?:[^A-Z0-9]|$)",
        ),
        // A bare AWS access key id (AKIA…, ASIA…) anywhere, case-sensitive.
        SecretRule::new(
            "AWS_ACCESS_KEY",
            r"(?:^|[^A-Z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}(?:[^A-Z0-9]|$)",
        ),
        // Anchore: (?i).*aws_secret_access_key( *=+ *).*(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=]).*
        SecretRule::new(
            "AWS_SECRET_KEY",
            r"(?im)aws_secret_access_key *=+ *(?:[^\n]*[^A-Za-z0-9/+=\n])?[A-Za-z0-9/+=]{40}(?:[^A-Za-z0-9/+=]|$)",
        ),
        // Anchore: (?i)-+BEGIN(.*)PRIVATE KEY-+
        SecretRule::new("PRIV_KEY", r"(?i)-+BEGIN[^\n]*PRIVATE KEY-+"),
        // Anchore: (?i).*"auth": *".+"
        SecretRule::new("DOCKER_AUTH", r#"(?i)"auth": *"[^\n]+""#),
        // Anchore: (?i).*api(-|_)key( *=+ *).*(?<![A-Z0-9])[A-Z0-9]{20,60}(?![A-Z0-9]).*
        SecretRule::new(
            "API_KEY",
            r"(?im)api(?:-|_)key *=+ *(?:[^\n]*[^A-Z0-9\n])?[A-Z0-9]{20,60}(?:[^A-Z0-9]|$)",
        ),
        // GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens,
        // and fine-grained personal access tokens.
        SecretRule::new(
            "GITHUB_TOKEN",
            r"(?:^|[^A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})(?:[^A-Za-z0-9_]|$)",
        ),
        // A token, secret or password assigned a long opaque literal.
        SecretRule::new(
            "GENERIC_TOKEN",
            r#"(?im)(?:access|auth|api|secret|private|client)[_-]?(?:token|secret|key)["']? *[:=] *["']?[A-Za-z0-9+/_\-]{32,}["']?[ \t\r]*$"#,
        ),
    ]
}

/// Matches (as regexes) that are known examples and never reported: the AWS
/// documentation's key id and secret key.
pub fn default_allow() -> Vec<String> {
    vec![
        "AKIAIOSFODNN7EXAMPLE".into(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    ]
}

/// A rule list that did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret rule {name}: {message}")]
pub struct RuleError {
    pub name: String,
    pub message: String,
}

/// Compiled rules: one set for the "does anything match" pass, and each rule alone for
/// the positions of the rules that did.
#[derive(Debug, Clone)]
pub struct SecretScanner {
    set: RegexSet,
    rules: Vec<(String, Regex)>,
    allow: Vec<Regex>,
}

impl SecretScanner {
    pub fn new(rules: &[SecretRule], allow: &[String]) -> Result<Self, RuleError> {
        let err = |name: &str, e: regex::Error| RuleError {
            name: name.to_string(),
            message: e.to_string(),
        };
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str())).map_err(|e| {
            // Name the first rule that fails alone.
            let bad = rules
                .iter()
                .find(|r| Regex::new(&r.regex).is_err())
                .map(|r| r.name.as_str())
                .unwrap_or("?");
            err(bad, e)
        })?;
        let rules = rules
            .iter()
            .map(|r| {
                Ok((
                    r.name.clone(),
                    Regex::new(&r.regex).map_err(|e| err(&r.name, e))?,
                ))
            })
            .collect::<Result<Vec<_>, RuleError>>()?;
        let allow = allow
            .iter()
            .map(|a| Regex::new(a).map_err(|e| err(&format!("allow {a}"), e)))
            .collect::<Result<Vec<_>, RuleError>>()?;
        Ok(SecretScanner { set, rules, allow })
    }

    /// The defaults.
    pub fn default_rules() -> Self {
        Self::new(&default_rules(), &default_allow()).expect("default secret rules compile")
    }

    /// Every (rule name, 1-based line) with a match in `text`, in line order, each once.
    pub fn scan(&self, text: &[u8]) -> Vec<(String, u64)> {
        let hit = self.set.matches(text);
        if !hit.matched_any() {
            return Vec::new();
        }
        let mut out: Vec<(String, u64)> = Vec::new();
        for i in hit.iter() {
            let (name, re) = &self.rules[i];
            // Lines counted incrementally: matches come in increasing order.
            let (mut line, mut pos) = (1u64, 0usize);
            for m in re.find_iter(text) {
                if self.allow.iter().any(|a| a.is_match(m.as_bytes())) {
                    continue;
                }
                // The match may start with the separator before the secret: count from its
                // first byte that is not a line break.
                let start = m.start()
                    + m.as_bytes()
                        .iter()
                        .take_while(|&&b| b == b'\n' || b == b'\r')
                        .count();
                line += memchr::memchr_iter(b'\n', &text[pos..start.max(pos)]).count() as u64;
                pos = start.max(pos);
                out.push((name.clone(), line));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out.dedup();
        // A `GENERIC_*` rule only reports lines no specific rule explains.
        let specific: std::collections::HashSet<u64> = out
            .iter()
            .filter(|(n, _)| !n.starts_with(GENERIC_PREFIX))
            .map(|(_, l)| *l)
            .collect();
        out.retain(|(n, l)| !n.starts_with(GENERIC_PREFIX) || !specific.contains(l));
        out
    }
}

/// Whether `head` (the first bytes of a file) looks binary: a NUL byte in the first block.
pub fn looks_binary(head: &[u8]) -> bool {
    memchr::memchr(0, &head[..head.len().min(8192)]).is_some()
}
