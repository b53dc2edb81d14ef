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

fn cmp_part(a: Option<&Part>, b: Option<&Part>) -> Ordering {
    match (a, b) {
        (Some(Part::Num(x)), Some(Part::Num(y))) => x.cmp(y),
        (Some(Part::Num(x)), None) => x.cmp(&0),
        (None, Some(Part::Num(y))) => 0.cmp(y),
        (Some(Part::Word(x)), Some(Part::Word(y))) => {
            let (rx, ry) = (qualifier_rank(x), qualifier_rank(y));
            if rx == -7 && ry == -7 {
                x.cmp(y)
            } else {
                rx.cmp(&ry)
            }
        }
        (Some(Part::Word(x)), None) => qualifier_rank(x).cmp(&0),
        (None, Some(Part::Word(y))) => 0.cmp(&qualifier_rank(y)),
        // A number is a later release than a qualifier at the same position.
        (Some(Part::Num(_)), Some(Part::Word(_))) => Ordering::Greater,
        (Some(Part::Word(_)), Some(Part::Num(_))) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
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
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
