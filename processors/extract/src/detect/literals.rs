//! Necessary literals of a regex: a set of byte strings such that every match of the
//! regex contains at least one of them (compared ASCII case-insensitively). The secret
//! and content-search scanners look for these with one Aho-Corasick pass and run only
//! the rules whose literals occur, so that a text file without, say, `aws_`, `BEGIN`,
//! `ghp_`, `token`, `key`… costs one fast pass instead of a regex set's automaton.
//!
//! Pure: a function of the pattern's syntax tree (`regex-syntax`, the `regex` crate's own
//! parser). `None` means "no useful requirement": the rule always runs.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Largest set built from a cross product of exact pieces.
const MAX_SET: usize = 64;
/// Largest class expanded into its strings (`[pousr]` in `gh[pousr]_` is five): larger
/// ones (`[A-Z0-9]`) tell nothing useful.
const MAX_CLASS: usize = 10;
/// A single byte is no useful requirement: sets whose shortest member is shorter than
/// this are not used.
const MIN_USEFUL_LEN: usize = 2;

/// What a sub-expression tells about its matches.
#[derive(Debug, Clone)]
enum Info {
    /// Every match is one of these strings (lowercased ASCII).
    Exact(Vec<Vec<u8>>),
    /// Every match contains one of these strings.
    Contains(Vec<Vec<u8>>),
    /// Nothing known.
    Unknown,
}

fn min_len(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

impl Info {
    /// As a requirement: the set, when it is worth searching for.
    fn requirement(&self) -> Option<&Vec<Vec<u8>>> {
        match self {
            Info::Exact(s) | Info::Contains(s)
                if !s.is_empty() && min_len(s) >= MIN_USEFUL_LEN && s.len() <= MAX_SET =>
            {
                Some(s)
            }
            _ => None,
        }
    }
}

/// The two non-ASCII characters whose case folding is an ASCII letter: `(?i)k` also
/// matches the Kelvin sign and `(?i)s` the long s. Literals leave them out (they would
/// multiply every set); a text containing either runs every rule instead, which keeps
/// the prefilter sound.
pub const FOLDS_TO_ASCII: [char; 2] = ['\u{212A}', '\u{17F}'];

/// The strings a small class matches (at most [`MAX_CLASS`] characters or bytes, as `(?i)a`
/// parses to `[Aa]`), ASCII lowercased, without [`FOLDS_TO_ASCII`].
fn class_strings(c: &Class) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut push = |s: Vec<u8>| {
        out.push(s);
        out.len() <= MAX_CLASS
    };
    match c {
        Class::Unicode(u) => {
            for r in u.ranges() {
                for ch in r.start()..=r.end() {
                    if FOLDS_TO_ASCII.contains(&ch) {
                        continue;
                    }
                    let mut b = [0u8; 4];
                    let s = ch.encode_utf8(&mut b).as_bytes().to_ascii_lowercase();
                    if !push(s) {
                        return None;
                    }
                }
            }
        }
        Class::Bytes(b) => {
            for r in b.ranges() {
                for x in r.start()..=r.end() {
                    if !push(vec![x.to_ascii_lowercase()]) {
                        return None;
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(out)
}

fn better(a: Option<Vec<Vec<u8>>>, b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    match a {
        Some(a)
            if (min_len(&a), std::cmp::Reverse(a.len()))
                >= (min_len(b), std::cmp::Reverse(b.len())) =>
        {
            Some(a)
        }
        _ => Some(b.to_vec()),
    }
}

fn info(h: &Hir) -> Info {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::Exact(vec![Vec::new()]),
        HirKind::Literal(l) => Info::Exact(vec![l.0.iter().map(u8::to_ascii_lowercase).collect()]),
        HirKind::Class(c) => match class_strings(c) {
            Some(s) => Info::Exact(s),
            None => Info::Unknown,
        },
        HirKind::Capture(c) => info(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                // `x?` of an exact piece is exact: the piece or nothing.
                return match info(&r.sub) {
                    Info::Exact(mut s) if r.max == Some(1) && s.len() < MAX_SET => {
                        s.push(Vec::new());
                        s.sort();
                        s.dedup();
                        Info::Exact(s)
                    }
                    _ => Info::Unknown,
                };
            }
            match info(&r.sub) {
                Info::Exact(s) if r.min == 1 && r.max == Some(1) => Info::Exact(s),
                Info::Exact(s) | Info::Contains(s) => Info::Contains(s),
                Info::Unknown => Info::Unknown,
            }
        }
        HirKind::Alternation(alts) => {
            let mut all_exact = true;
            let mut out: Vec<Vec<u8>> = Vec::new();
            for a in alts {
                match info(a) {
                    Info::Exact(s) => out.extend(s),
                    Info::Contains(s) => {
                        all_exact = false;
                        out.extend(s)
                    }
                    Info::Unknown => return Info::Unknown,
                }
                if out.len() > MAX_SET {
                    return Info::Unknown;
                }
            }
            out.sort();
            out.dedup();
            if all_exact {
                Info::Exact(out)
            } else {
                Info::Contains(out)
            }
        }
        HirKind::Concat(parts) => {
            // Runs of exact pieces concatenate into longer exact strings; the best
            // requirement among the runs and the other pieces is the concat's.
            let mut best: Option<Vec<Vec<u8>>> = None;
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            let close = |run: &mut Option<Vec<Vec<u8>>>, best: &mut Option<Vec<Vec<u8>>>| {
                if let Some(r) = run.take() {
                    if min_len(&r) >= MIN_USEFUL_LEN {
                        *best = better(best.take(), &r);
                    }
                }
            };
            for p in parts {
                match info(p) {
                    Info::Exact(s) => {
                        run = match run.take() {
                            Some(r) => match cross(&r, &s) {
                                Some(x) => Some(x),
                                None => {
                                    // Too many combinations: keep what was built, start over.
                                    all_exact = false;
                                    let mut old = Some(r);
                                    close(&mut old, &mut best);
                                    Some(s)
                                }
                            },
                            None => Some(s),
                        };
                    }
                    other => {
                        all_exact = false;
                        close(&mut run, &mut best);
                        run = Some(vec![Vec::new()]);
                        if let Some(s) = other.requirement() {
                            best = better(best.take(), s);
                        }
                    }
                }
            }
            if all_exact {
                if let Some(r) = run {
                    return Info::Exact(r);
                }
            }
            close(&mut run, &mut best);
            match best {
                Some(b) => Info::Contains(b),
                None => Info::Unknown,
            }
        }
    }
}

/// The necessary literals of `pattern` (lowercase ASCII; search case-insensitively), or
/// `None` when no useful set is known or the pattern does not parse.
pub fn necessary(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    info(&hir).requirement().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: Option<Vec<Vec<u8>>>) -> Option<Vec<String>> {
        v.map(|v| {
            let mut s: Vec<String> = v
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect();
            s.sort();
            s
        })
    }

    fn has(re: &str, lit: &str) -> bool {
        strs(necessary(re)).is_some_and(|s| s.iter().any(|x| x == lit))
    }

    #[test]
    fn required_literals() {
        assert_eq!(strs(necessary("abc")), Some(vec!["abc".into()]));
        assert!(has("(?i)-+BEGIN[^\\n]*PRIVATE KEY-+", "private key"));
        // (?i)k also matches the Kelvin sign: left to the scanner's fold check.
        assert!(!has(
            "(?i)-+BEGIN[^\\n]*PRIVATE KEY-+",
            "private \u{212A}ey"
        ));
        assert_eq!(
            strs(necessary("(?:^|[^A-Z])(?:AKIA|ASIA)[A-Z0-9]{16}")),
            Some(vec!["akia".into(), "asia".into()])
        );
        assert!(has("(?i)api(?:-|_)key *=", "api-key"));
        assert!(has("(?i)api(?:-|_)key *=", "api_key"));
        // An optional exact piece joins the run: `auth_token`, `authtoken`, `auth-token`…
        assert!(has(
            "(?i)(?:access|auth)[_-]?(?:token|secret)[:=]",
            "authtoken="
        ));
        assert!(has(
            "(?i)(?:access|auth)[_-]?(?:token|secret)[:=]",
            "access_secret:"
        ));
        assert!(!has("(?i)(?:access|auth)[_-]?(?:token|secret)[:=]", "auth"));
        // A class of a few characters joins the run (`gh` alone is in most English text).
        assert_eq!(
            strs(necessary("gh[pousr]_[A-Za-z0-9]{36}")),
            Some(vec![
                "gho_".into(),
                "ghp_".into(),
                "ghr_".into(),
                "ghs_".into(),
                "ghu_".into()
            ])
        );
        assert_eq!(necessary("x*yz?"), None);
        assert_eq!(necessary("[A-Z0-9]{20}"), None);
        assert_eq!(necessary("a|[0-9]+"), None);
        assert_eq!(necessary("x?yz?"), None);
        assert_eq!(necessary("(unclosed"), None);
    }

    #[test]
    fn every_match_contains_a_necessary_literal() {
        // Soundness on the default rules: each example match contains one of its rule's
        // literals (case-insensitively).
        let examples = [
            (
                r"(?i)-+BEGIN[^\n]*PRIVATE KEY-+",
                "-----BEGIN RSA PRIVATE KEY-----",
            ),
            (r#"(?i)"auth": *"[^\n]+""#, r#""Auth": "dXNlcjpwYXNz""#),
            (
                r"(?:^|[^A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})",
                " ghs_0123456789abcdefghijklmnopqrstuvwxyz",
            ),
        ];
        for (re, text) in examples {
            assert!(regex::Regex::new(re).unwrap().is_match(text));
            let lits = necessary(re).expect(re);
            let lower = text.to_ascii_lowercase();
            assert!(
                lits.iter()
                    .any(|l| lower.contains(std::str::from_utf8(l).unwrap())),
                "{re}: {lits:?}"
            );
        }
    }
}
