//! A generic ordering for language ecosystems (PyPI, npm, Go, Maven, …): dotted numeric
//! parts compared numerically with missing parts as zero (`3.2` = `3.2.0`), and
//! pre-release qualifiers (`a`, `b`, `rc`, `alpha`, `beta`, `dev`, `SNAPSHOT`, …) before
//! the release. Not a full PEP 440 / Maven implementation.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Num(u128),
    Word(String),
}

fn qualifier_rank(w: &str) -> i32 {
    match w {
        "dev" | "snapshot" => -6,
        "a" | "alpha" => -5,
        "b" | "beta" => -4,
        "m" | "milestone" => -3,
        "pre" | "preview" => -2,
        "c" | "rc" | "cr" => -1,
        "final" | "ga" | "release" => 0,
        "post" | "sp" | "p" | "patch" => 1,
        _ => -7,
    }
}

fn parts(v: &str) -> Vec<Part> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    // Build metadata does not take part in ordering (SemVer); PEP 440 local versions likewise.
    let v = v.split('+').next().unwrap_or(v);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_num = false;
    let flush = |cur: &mut String, num: bool, out: &mut Vec<Part>| {
        if cur.is_empty() {
            return;
        }
        if num {
            out.push(Part::Num(cur.parse().unwrap_or(u128::MAX)));
        } else {
            out.push(Part::Word(cur.to_ascii_lowercase()));
        }
        cur.clear();
    };
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !cur_num {
                flush(&mut cur, false, &mut out);
            }
            cur_num = true;
            cur.push(c);
        } else if c.is_alphanumeric() {
            if cur_num {
                flush(&mut cur, true, &mut out);
            }
            cur_num = false;
            cur.push(c);
        } else {
            flush(&mut cur, cur_num, &mut out);
        }
    }
    flush(&mut cur, cur_num, &mut out);
    out
}

/// Where a part (or a missing part) sorts: unknown words (among themselves by text),
/// then the pre-release qualifiers by rank, then numbers, with a missing part, `0` and
/// `final`/`ga`/`release` all equal, and the post-release words just after `0`. Every
/// part maps to one key, so that the ordering is total and transitive on any input
/// (comparing a missing part once as a number and once as a qualifier was not: the
/// `version_order` fuzz target found `1.p < 1.0 = 1 < 1.p`).
fn key(p: Option<&Part>) -> (u8, u128, u8, &str) {
    match p {
        None => (2, 0, 0, ""),
        Some(Part::Num(n)) => (2, *n, 0, ""),
        Some(Part::Word(w)) => match qualifier_rank(w) {
            -7 => (0, 0, 0, w.as_str()),
            0 => (2, 0, 0, ""),
            1 => (2, 0, 1, ""),
            r => (1, (r + 7) as u128, 0, ""),
        },
    }
}

fn cmp_part(a: Option<&Part>, b: Option<&Part>) -> Ordering {
    key(a).cmp(&key(b))
}

/// Compare two versions with the generic rules.
pub fn compare(a: &str, b: &str) -> Ordering {
    let pa = parts(a);
    let pb = parts(b);
    for k in 0..pa.len().max(pb.len()) {
        match cmp_part(pa.get(k), pb.get(k)) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        for (a, b, want) in [
            ("3.2", "3.2.0", Equal),
            ("2.19.1", "2.20.0", Less),
            ("1.0.0-beta.2", "1.0.0", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0.post1", "1.0", Greater),
            ("2.13.4.2", "2.13.4", Greater),
            ("v1.2.3", "1.2.3", Equal),
            ("2.15.0-rc1", "2.15.0", Less),
            ("1.20.5", "1.21.0-0", Less),
            ("1.0.post1", "1.0.1", Less),
            ("1.final", "1.0", Equal),
            ("1.0-foo", "1.0", Less),
            ("1.0-foo", "1.0-bar", Greater),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn transitive_on_qualifiers_against_missing_parts() {
        // Found by the version_order fuzz target: `p17` < `0` = `` < `p17` before.
        let vs = [
            "v\u{fffd}.P17-x",
            ".0 ",
            "",
            "1",
            "1.0",
            "1.p",
            "1.post",
            "1.rc",
            "1.x",
            "1.final",
        ];
        super::super::assert_transitive(&vs, compare);
    }
}
