//! npm range semantics (the `semver` package's `satisfies`), written out because
//! node-semver 2.2 accepts every version for an empty set such as `>=5.0.0 <3.0.0`.
//!
//! A range is `||`-separated comparator sets; each set is desugared into primitive
//! comparators (`>=`, `>`, `<`, `<=`, `=`) from hyphen ranges (`1.2 - 2`), X-ranges
//! (`1.x`, `*`, partial versions), tilde (`~1.2.3`) and caret (`^0.2.3`) ranges. A
//! version satisfies a set when it passes every comparator and, if it is a
//! pre-release, some comparator names a pre-release of the same `major.minor.patch`.

use std::cmp::Ordering;

use node_semver::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

#[derive(Debug, Clone)]
struct Cmp {
    op: Op,
    v: Version,
}

/// A partial version: `1`, `1.2`, `1.2.x`, `*`, `1.2.3-pre`.
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    /// `-pre` (with the dash) when the version is full.
    pre: String,
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn partial(s: &str) -> Option<Partial> {
    let s = s.trim();
    let s = s
        .strip_prefix(['v', 'V'])
        .unwrap_or(s)
        .trim_start_matches('=');
    let s = s.split_once('+').map_or(s, |x| x.0);
    if s.is_empty() {
        return Some(Partial {
            major: None,
            minor: None,
            patch: None,
            pre: String::new(),
        });
    }
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, format!("-{p}")),
        None => (s, String::new()),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    let mut nums = [None, None, None];
    let mut seen_x = false;
    for (i, p) in parts.iter().enumerate() {
        if is_x(p) {
            seen_x = true;
        } else if !seen_x && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            nums[i] = Some(p.parse().ok()?);
        } else {
            return None;
        }
    }
    if !pre.is_empty() && nums[2].is_none() {
        return None;
    }
    Some(Partial {
        major: nums[0],
        minor: nums[1],
        patch: nums[2],
        pre,
    })
}

fn v(major: u64, minor: u64, patch: u64, pre: &str) -> Option<Version> {
    Version::parse(format!("{major}.{minor}.{patch}{pre}")).ok()
}

fn push(out: &mut Vec<Cmp>, op: Op, ver: Option<Version>) -> Option<()> {
    out.push(Cmp { op, v: ver? });
    Some(())
}

/// `<0.0.0-0`: nothing satisfies it.
fn nothing(out: &mut Vec<Cmp>) -> Option<()> {
    push(out, Op::Lt, v(0, 0, 0, "-0"))
}

fn x_range(op: &str, p: &Partial, out: &mut Vec<Cmp>) -> Option<()> {
    let Some(m) = p.major else {
        return if op == "<" || op == ">" {
            nothing(out)
        } else {
            Some(())
        };
    };
    match (p.minor, p.patch) {
        (Some(n), Some(pa)) => {
            let op = match op {
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => Op::Eq,
            };
            push(out, op, v(m, n, pa, &p.pre))
        }
        (minor, _) => match op {
            ">" => match minor {
                None => push(out, Op::Ge, v(m + 1, 0, 0, "")),
                Some(n) => push(out, Op::Ge, v(m, n + 1, 0, "")),
            },
            ">=" => push(out, Op::Ge, v(m, minor.unwrap_or(0), 0, "")),
            "<" => push(out, Op::Lt, v(m, minor.unwrap_or(0), 0, "-0")),
            "<=" => match minor {
                None => push(out, Op::Lt, v(m + 1, 0, 0, "-0")),
                Some(n) => push(out, Op::Lt, v(m, n + 1, 0, "-0")),
            },
            _ => {
                push(out, Op::Ge, v(m, minor.unwrap_or(0), 0, ""))?;
                match minor {
                    None => push(out, Op::Lt, v(m + 1, 0, 0, "-0")),
                    Some(n) => push(out, Op::Lt, v(m, n + 1, 0, "-0")),
                }
            }
        },
    }
}

fn tilde(p: &Partial, out: &mut Vec<Cmp>) -> Option<()> {
    let Some(m) = p.major else { return Some(()) };
    match p.minor {
        None => {
            push(out, Op::Ge, v(m, 0, 0, ""))?;
            push(out, Op::Lt, v(m + 1, 0, 0, "-0"))
        }
        Some(n) => {
            push(out, Op::Ge, v(m, n, p.patch.unwrap_or(0), &p.pre))?;
            push(out, Op::Lt, v(m, n + 1, 0, "-0"))
        }
    }
}

fn caret(p: &Partial, out: &mut Vec<Cmp>) -> Option<()> {
    let Some(m) = p.major else { return Some(()) };
    let (n, pa) = (p.minor.unwrap_or(0), p.patch.unwrap_or(0));
    push(out, Op::Ge, v(m, n, pa, &p.pre))?;
    let upper = if m > 0 || p.minor.is_none() {
        v(m + 1, 0, 0, "-0")
    } else if n > 0 || p.patch.is_none() {
        v(0, n + 1, 0, "-0")
    } else {
        v(0, 0, pa + 1, "-0")
    };
    push(out, Op::Lt, upper)
}

fn comparator(tok: &str, out: &mut Vec<Cmp>) -> Option<()> {
    if let Some(rest) = tok.strip_prefix("~>").or_else(|| tok.strip_prefix('~')) {
        return tilde(&partial(rest)?, out);
    }
    if let Some(rest) = tok.strip_prefix('^') {
        return caret(&partial(rest)?, out);
    }
    let op_len = tok
        .find(|c: char| !matches!(c, '<' | '>' | '='))
        .unwrap_or(tok.len());
    let (op, rest) = tok.split_at(op_len);
    let op = match op {
        "" | "=" => "=",
        "<" | "<=" | ">" | ">=" => op,
        _ => return None,
    };
    x_range(op, &partial(rest)?, out)
}

fn comparator_set(set: &str) -> Option<Vec<Cmp>> {
    let mut out = Vec::new();
    let words: Vec<&str> = set.split_whitespace().collect();
    // Hyphen range: `A - B`.
    if words.len() == 3 && words[1] == "-" {
        let (a, b) = (partial(words[0])?, partial(words[2])?);
        match a.major {
            None => {}
            Some(m) if a.patch.is_some() => {
                push(&mut out, Op::Ge, v(m, a.minor?, a.patch?, &a.pre))?
            }
            Some(m) => push(&mut out, Op::Ge, v(m, a.minor.unwrap_or(0), 0, ""))?,
        }
        match (b.major, b.minor, b.patch) {
            (None, _, _) => {}
            (Some(m), None, _) => push(&mut out, Op::Lt, v(m + 1, 0, 0, "-0"))?,
            (Some(m), Some(n), None) => push(&mut out, Op::Lt, v(m, n + 1, 0, "-0"))?,
            (Some(m), Some(n), Some(pa)) => push(&mut out, Op::Le, v(m, n, pa, &b.pre))?,
        }
        return Some(out);
    }
    // Operators separated from their version by spaces (`>= 1.2`).
    let mut toks: Vec<String> = Vec::new();
    let mut pending = String::new();
    for w in words {
        if w.chars().all(|c| matches!(c, '<' | '>' | '=' | '~' | '^')) {
            pending.push_str(w);
        } else {
            toks.push(format!("{pending}{w}"));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        return None;
    }
    for t in toks {
        comparator(&t, &mut out)?;
    }
    Some(out)
}

fn test(c: &Cmp, ver: &Version) -> bool {
    let o = ver.cmp(&c.v);
    match c.op {
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Eq => o == Ordering::Equal,
    }
}

/// Whether `ver` satisfies the npm range `range`; `None` when the range does not parse.
pub fn satisfies(ver: &Version, range: &str) -> Option<bool> {
    let mut any = false;
    for set in range.split("||") {
        let cmps = comparator_set(set.trim())?;
        if !cmps.iter().all(|c| test(c, ver)) {
            continue;
        }
        if ver.is_prerelease()
            && !cmps.iter().any(|c| {
                c.v.is_prerelease()
                    && (c.v.major, c.v.minor, c.v.patch) == (ver.major, ver.minor, ver.patch)
            })
        {
            continue;
        }
        any = true;
    }
    Some(any)
}
