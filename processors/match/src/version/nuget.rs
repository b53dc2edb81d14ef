//! NuGet ordering: SemVer 2.0 with NuGet's extensions — up to four numeric parts
//! (`1.2.3.4`, legacy), missing parts zero, release labels compared case-insensitively,
//! build metadata ignored.

use std::cmp::Ordering;

pub(crate) struct NuGet<'a> {
    nums: Vec<&'a str>,
    labels: Vec<&'a str>,
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn parse(v: &str) -> Option<NuGet<'_>> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(x, _)| x);
    let (core, label) = match v.split_once('-') {
        Some((c, l)) => (c, Some(l)),
        None => (v, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.is_empty() || nums.len() > 4 || !nums.iter().all(|n| digits(n)) {
        return None;
    }
    let labels: Vec<&str> = match label {
        Some(l) => l.split('.').collect(),
        None => Vec::new(),
    };
    if labels
        .iter()
        .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return None;
    }
    Some(NuGet { nums, labels })
}

fn cmp_num(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compare two NuGet versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (x, y) = match (parse(a), parse(b)) {
        (Some(x), Some(y)) => (x, y),
        _ => return super::generic::compare(a, b),
    };
    for k in 0..4 {
        let o = cmp_num(x.nums.get(k).unwrap_or(&"0"), y.nums.get(k).unwrap_or(&"0"));
        if o != Ordering::Equal {
            return o;
        }
    }
    match (x.labels.is_empty(), y.labels.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (p, q) in x.labels.iter().zip(&y.labels) {
        let o = match (digits(p), digits(q)) {
            (true, true) => cmp_num(p, q),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => p.to_ascii_lowercase().cmp(&q.to_ascii_lowercase()),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    x.labels.len().cmp(&y.labels.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        for (a, b, want) in [
            ("1.0", "1.0.0.0", Equal),
            ("1.0.0.1", "1.0.0", Greater),
            ("1.0.0-beta", "1.0.0", Less),
            ("1.0.0-Beta", "1.0.0-beta", Equal),
            ("1.0.0-alpha.2", "1.0.0-alpha.10", Less),
            ("1.0.0-2", "1.0.0-alpha", Less),
            ("1.0.0+abc", "1.0.0", Equal),
            ("13.0.1", "12.0.3", Greater),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
