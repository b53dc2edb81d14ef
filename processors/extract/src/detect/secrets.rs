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
//!
//! Each rule's necessary literals ([`super::literals`]) are searched for together (Teddy,
//! the SIMD multi-literal search of the `aho-corasick` crate); a text runs only the rules
//! whose literals occur in it.

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
    prefilter: Option<Prefilter>,
}

/// The rules' necessary literals ([`super::literals`]), searched for together: a text
/// runs only the rules one of whose literals occurs in it (compared ASCII
/// case-insensitively), and the rules without a known literal.
#[derive(Debug, Clone)]
struct Prefilter {
    finder: Finder,
    /// Pattern → rule index.
    rule_of: Vec<usize>,
    /// Pattern → the other patterns that are its prefixes (they occur wherever it does,
    /// at the same position, where a leftmost search reports only it).
    prefixes: Vec<Vec<usize>>,
    /// Rules without a necessary literal: always run.
    always: Vec<usize>,
}

/// How the literals are searched for.
#[derive(Debug, Clone)]
enum Finder {
    /// Teddy (SIMD) over an ASCII-lowercased copy of the text: several times faster than
    /// an automaton when up to 128 literals are searched for.
    Packed(aho_corasick::packed::Searcher),
    /// An ASCII case-insensitive Aho-Corasick automaton over the text itself, for larger
    /// sets.
    Automaton(aho_corasick::AhoCorasick),
}

impl Finder {
    /// The leftmost-longest match of a literal starting at or after `at`.
    fn find(&self, text: &[u8], at: usize) -> Option<(usize, usize)> {
        match self {
            Finder::Packed(p) => p
                .find_in(text, aho_corasick::Span::from(at..text.len()))
                .map(|m| (m.pattern().as_usize(), m.start())),
            Finder::Automaton(ac) => ac
                .find(aho_corasick::Input::new(text).range(at..))
                .map(|m| (m.pattern().as_usize(), m.start())),
        }
    }
}

impl Prefilter {
    fn new(rules: &[SecretRule]) -> Option<Prefilter> {
        let (mut patterns, mut rule_of, mut always) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rules.iter().enumerate() {
            match super::literals::necessary(&r.regex) {
                Some(lits) => {
                    for l in lits {
                        patterns.push(l);
                        rule_of.push(i);
                    }
                }
                None => always.push(i),
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
            .heuristic_pattern_limits(false)
            .builder()
            .extend(&patterns)
            .build();
        let finder = match packed {
            Some(p) => Finder::Packed(p),
            None => Finder::Automaton(
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .ok()?,
            ),
        };
        let prefixes = patterns
            .iter()
            .map(|p| {
                (0..patterns.len())
                    .filter(|&q| patterns[q].len() < p.len() && p.starts_with(&patterns[q]))
                    .collect()
            })
            .collect();
        Some(Prefilter {
            finder,
            rule_of,
            prefixes,
            always,
        })
    }

    /// The rules worth running on `text`, by index.
    fn candidates(&self, text: &[u8], n_rules: usize) -> Vec<bool> {
        // A character that case-folds to an ASCII letter makes every rule a candidate.
        if !text.is_ascii()
            && super::literals::FOLDS_TO_ASCII.iter().any(|ch| {
                let mut b = [0u8; 4];
                memchr::memmem::find(text, ch.encode_utf8(&mut b).as_bytes()).is_some()
            })
        {
            return vec![true; n_rules];
        }
        let mut want = vec![false; n_rules];
        let mut left = n_rules;
        for &i in &self.always {
            if !want[i] {
                want[i] = true;
                left -= 1;
            }
        }
        let lowered;
        let haystack = match self.finder {
            Finder::Packed(_) => {
                lowered = text.to_ascii_lowercase();
                &lowered[..]
            }
            Finder::Automaton(_) => text,
        };
        // Every start position's longest match, searching again from the position after
        // each match's start: a pattern inside another is found at its own start, and
        // a pattern that is a prefix of the one reported is counted through `prefixes`.
        let mut at = 0;
        while left > 0 && at < haystack.len() {
            let Some((p, start)) = self.finder.find(haystack, at) else {
                break;
            };
            for &q in std::iter::once(&p).chain(&self.prefixes[p]) {
                let i = self.rule_of[q];
                if !want[i] {
                    want[i] = true;
                    left -= 1;
                }
            }
            at = start + 1;
        }
        want
    }
}

impl SecretScanner {
    pub fn new(rules: &[SecretRule], allow: &[String]) -> Result<Self, RuleError> {
        let rules_in = rules;
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
        let prefilter = Prefilter::new(rules_in);
        Ok(SecretScanner {
            set,
            rules,
            allow,
            prefilter,
        })
    }

    /// The same rules without the literal prefilter: every text goes through the regex
    /// set (for checking that the prefilter never changes an answer).
    pub fn without_prefilter(mut self) -> Self {
        self.prefilter = None;
        self
    }

    /// The defaults.
    pub fn default_rules() -> Self {
        Self::new(&default_rules(), &default_allow()).expect("default secret rules compile")
    }

    /// Every (rule name, 1-based line) with a match in `text`, in line order, each once.
    pub fn scan(&self, text: &[u8]) -> Vec<(String, u64)> {
        let hits: Vec<usize> = match &self.prefilter {
            // Only the rules whose literals occur; each regex finds its own matches.
            Some(p) => p
                .candidates(text, self.rules.len())
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.then_some(i))
                .collect(),
            None => self.set.matches(text).iter().collect(),
        };
        let mut out: Vec<(String, u64)> = Vec::new();
        for i in hits {
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
