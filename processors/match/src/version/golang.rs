//! Go module versions (golang.org/x/mod/semver rules): a `v` prefix, shorthand `v1` and
//! `v1.2`, pre-releases (pseudo-versions such as `v0.0.0-20191109021931-daa7c04131f5`
//! or `v1.2.4-0.20191109021931-daa7c04131f5` are pre-releases and order by time),
//! `+incompatible` and other build metadata ignored. Toolchain versions `go1.20.5` and
//! Go's own pre-release spelling `1.21rc2` are accepted too. Invalid versions sort
//! before valid ones.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
struct GoVersion<'a> {
    nums: [&'a str; 3],
    pre: Vec<&'a str>,
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_ids(s: &str, numeric_leading_zero_ok: bool) -> bool {
    s.split('.').all(|i| {
        !i.is_empty()
            && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && (numeric_leading_zero_ok || !is_num(i) || i == "0" || !i.starts_with('0'))
    })
}

fn parse(v: &str) -> Option<GoVersion<'_>> {
    let v = v.trim();
    let v = v
        .strip_prefix("go")
        .or_else(|| v.strip_prefix('v'))
        .unwrap_or(v);
    let (v, build) = match v.split_once('+') {
        Some((x, b)) => (x, Some(b)),
        None => (v, None),
    };
    if build.is_some_and(|b| !valid_ids(b, true)) {
        return None;
    }
    let (core, pre, toolchain) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p), false),
        None => {
            // Go toolchain pre-releases: `1.21rc2`, `1.21beta1`.
            match v.find(|c: char| c.is_ascii_alphabetic()) {
                Some(i) => (&v[..i], Some(&v[i..]), true),
                None => (v, None, false),
            }
        }
    };
    let mut nums = ["0"; 3];
    let mut count = 0;
    for (n, part) in core.split('.').enumerate() {
        if n == 3 || !is_num(part) || (part.len() > 1 && part.starts_with('0')) {
            return None;
        }
        nums[n] = part;
        count = n + 1;
    }
    // `v1` and `v1.2` are shorthands only without pre-release or build suffixes.
    if count < 3 && !toolchain && (pre.is_some() || build.is_some()) {
        return None;
    }
    let pre = match pre {
        Some(p) => {
            if !valid_ids(p, false) {
                return None;
            }
            p.split('.').collect()
        }
        None => Vec::new(),
    };
    Some(GoVersion { nums, pre })
}

fn cmp_num(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_ident(a: &str, b: &str) -> Ordering {
    match (is_num(a), is_num(b)) {
        (true, true) => cmp_num(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

/// Compare two Go module versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (x, y) = match (parse(a), parse(b)) {
        (Some(x), Some(y)) => (x, y),
        (Some(_), None) => return Ordering::Greater,
        (None, Some(_)) => return Ordering::Less,
        (None, None) => return Ordering::Equal,
    };
    for k in 0..3 {
        match cmp_num(x.nums[k], y.nums[k]) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match (x.pre.is_empty(), y.pre.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (p, q) in x.pre.iter().zip(&y.pre) {
        match cmp_ident(p, q) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    x.pre.len().cmp(&y.pre.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        for (a, b, want) in [
            ("v1.2.3", "1.2.3", Equal),
            ("v1", "v1.0.0", Equal),
            ("v1.2", "v1.2.0", Equal),
            ("v2.0.0+incompatible", "v2.0.0", Equal),
            ("v2.0.0+incompatible", "v2.1.0+incompatible", Less),
            (
                "v0.0.0-20191109021931-daa7c04131f5",
                "v0.0.0-20200101000000-aaaaaaaaaaaa",
                Less,
            ),
            ("v0.0.0-20191109021931-daa7c04131f5", "v0.0.1", Less),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.3", Greater),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4", Less),
            (
                "v1.2.4-pre.0.20191109021931-daa7c04131f5",
                "v1.2.4-pre",
                Greater,
            ),
            ("1.20.5", "1.21.0-0", Less),
            ("go1.20.5", "1.20.5", Equal),
            ("1.21rc2", "1.21.0", Less),
            ("2.9.15", "2.10.0", Less),
            ("v1.0.0-alpha.10", "v1.0.0-alpha.9", Greater),
            ("bogus", "v0.0.1", Less),
            ("v01.2.3", "v1.2.3", Less),
            ("v1.2.3-01", "v0.0.1", Less),
            ("v1.2-pre", "v0.0.1", Less),
            ("v1.2.3+", "v0.0.1", Less),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
