//! RubyGems ordering (`Gem::Version#<=>`): segments of digits and letters; a segment that
//! contains letters makes a pre-release (`1.0.a` < `1.0`); `-` reads as `.pre.`; trailing
//! zeros of the release and pre-release parts are ignored (`1.0` = `1`).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Num(String),
    Str(String),
}

pub(crate) fn valid(v: &str) -> bool {
    let mut chars = v.chars();
    chars.next().is_some_and(|c| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn segments(v: &str) -> Vec<Seg> {
    let v = v.replace('-', ".pre.");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut digit = false;
    let flush = |cur: &mut String, digit: bool, out: &mut Vec<Seg>| {
        if !cur.is_empty() {
            if digit {
                let t = cur.trim_start_matches('0');
                out.push(Seg::Num(if t.is_empty() { "0".into() } else { t.into() }));
            } else {
                out.push(Seg::Str(cur.clone()));
            }
            cur.clear();
        }
    };
    for c in v.chars() {
        if c.is_ascii_alphanumeric() {
            if !cur.is_empty() && c.is_ascii_digit() != digit {
                flush(&mut cur, digit, &mut out);
            }
            digit = c.is_ascii_digit();
            cur.push(c);
        } else {
            flush(&mut cur, digit, &mut out);
        }
    }
    flush(&mut cur, digit, &mut out);
    out
}

fn is_zero(s: &Seg) -> bool {
    matches!(s, Seg::Num(n) if n == "0")
}

fn canonical(v: &str) -> Vec<Seg> {
    let segs = segments(v);
    let split = segs
        .iter()
        .position(|s| matches!(s, Seg::Str(_)))
        .unwrap_or(segs.len());
    let (nums, rest) = segs.split_at(split);
    let mut out: Vec<Seg> = nums.to_vec();
    while out.last().is_some_and(is_zero) {
        out.pop();
    }
    let mut tail = rest.to_vec();
    while tail.last().is_some_and(is_zero) {
        tail.pop();
    }
    out.extend(tail);
    out
}

/// Compare two RubyGems versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim(), b.trim());
    if !valid(a) || !valid(b) {
        return super::generic::compare(a, b);
    }
    let x = canonical(a);
    let y = canonical(b);
    let zero = Seg::Num("0".into());
    for k in 0..x.len().max(y.len()) {
        let l = x.get(k).unwrap_or(&zero);
        let r = y.get(k).unwrap_or(&zero);
        let o = match (l, r) {
            (Seg::Num(p), Seg::Num(q)) => p.len().cmp(&q.len()).then_with(|| p.cmp(q)),
            (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
            (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
            (Seg::Str(p), Seg::Str(q)) => p.cmp(q),
        };
        if o != Ordering::Equal {
            return o;
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
            ("1.0", "1", Equal),
            ("1.0.a", "1.0", Less),
            ("1.0.a", "1.0.b", Less),
            ("1.0.a10", "1.0.a9", Greater),
            ("1.0.rc1", "1.0.0", Less),
            ("1.0-1", "1.0", Less),
            ("1.0-1", "1.0.pre.1", Equal),
            ("2.7.4", "2.7.10", Less),
            ("5.2.4.3", "5.2.4", Greater),
            ("1.0.0.1", "1.0.0.a", Greater),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
