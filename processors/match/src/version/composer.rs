//! Composer (Packagist) ordering: versions are normalised as Composer's `VersionParser`
//! does (`v1.2` → `1.2.0.0`, `1.0-b2` → `1.0.0.0-beta2`, `-p1`/`-pl1` → `-patch1`,
//! `-dev` suffix) and then compared with PHP's `version_compare` rules:
//! `dev` < `alpha` = `a` < `beta` = `b` < `RC` = `rc` < numbers < `patch` = `pl` = `p`.

use std::cmp::Ordering;

fn special_rank(s: &str) -> i32 {
    // PHP matches these by prefix, in this order.
    for (name, rank) in [
        ("dev", 0),
        ("alpha", 1),
        ("a", 1),
        ("beta", 2),
        ("b", 2),
        ("RC", 3),
        ("rc", 3),
        ("#", 4),
        ("pl", 5),
        ("p", 5),
    ] {
        if s.starts_with(name) {
            return rank;
        }
    }
    -6
}

fn canonicalize(v: &str) -> String {
    let mut out = String::new();
    let mut last: Option<char> = None;
    for c in v.chars() {
        let lq = out.chars().last();
        match last {
            None => out.push(c),
            Some(lp) => {
                let isndig = |x: char| !x.is_ascii_digit() && x != '.';
                if c == '-' || c == '_' || c == '+' {
                    if lq != Some('.') {
                        out.push('.');
                    }
                } else if (isndig(lp) && c.is_ascii_digit()) || (lp.is_ascii_digit() && isndig(c)) {
                    if lq != Some('.') {
                        out.push('.');
                    }
                    out.push(c);
                } else if !c.is_ascii_alphanumeric() {
                    if lq != Some('.') {
                        out.push('.');
                    }
                } else {
                    out.push(c);
                }
            }
        }
        last = Some(c);
    }
    out
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn cmp_part(p: &str, q: &str) -> Ordering {
    match (is_num(p), is_num(q)) {
        (true, true) => {
            let (a, b) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (false, false) => special_rank(p).cmp(&special_rank(q)),
        (true, false) => special_rank("#").cmp(&special_rank(q)),
        (false, true) => special_rank(p).cmp(&special_rank("#")),
    }
}

/// PHP `version_compare` without an operator.
pub fn php_version_compare(a: &str, b: &str) -> Ordering {
    let ca = canonicalize(a);
    let cb = canonicalize(b);
    let pa: Vec<&str> = ca.split('.').filter(|s| !s.is_empty()).collect();
    let pb: Vec<&str> = cb.split('.').filter(|s| !s.is_empty()).collect();
    for (p, q) in pa.iter().zip(&pb) {
        let o = cmp_part(p, q);
        if o != Ordering::Equal {
            return o;
        }
    }
    if pa.len() > pb.len() {
        let p = pa[pb.len()];
        return if is_num(p) {
            Ordering::Greater
        } else {
            cmp_part(p, "#")
        };
    }
    if pb.len() > pa.len() {
        let q = pb[pa.len()];
        return if is_num(q) {
            Ordering::Less
        } else {
            cmp_part("#", q)
        };
    }
    Ordering::Equal
}

/// Composer's normalised form of a version, when it has one.
pub fn normalize(v: &str) -> Option<String> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(x, _)| x);
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (core, rest) = v.split_at(end);
    let core = core.trim_end_matches('.');
    let nums: Vec<&str> = core.split('.').collect();
    if nums.is_empty() || nums.len() > 4 || !nums.iter().all(|n| is_num(n)) {
        return None;
    }
    let mut out: Vec<String> = nums
        .iter()
        .map(|n| {
            let t = n.trim_start_matches('0');
            if t.is_empty() { "0" } else { t }.to_string()
        })
        .collect();
    while out.len() < 4 {
        out.push("0".into());
    }
    let mut s = out.join(".");
    let mut rest = rest
        .trim_start_matches(['.', '-', '_'])
        .to_ascii_lowercase();
    let mut dev = false;
    if let Some(r) = rest.strip_suffix("dev") {
        dev = true;
        rest = r.trim_end_matches(['.', '-', '_']).to_string();
    }
    // A `stable` modifier ends the version: Composer drops a `-dev` after it
    // (`2-stable-dev` normalises to `2.0.0.0`, checked against Composer\Semver).
    let mut stable = false;
    if !rest.is_empty() {
        let word_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let (word, num) = rest.split_at(word_end);
        let word = match word {
            "stable" => "",
            "a" | "alpha" => "alpha",
            "b" | "beta" => "beta",
            "rc" => "RC",
            "p" | "pl" | "patch" => "patch",
            _ => return None,
        };
        let num: String = num
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        stable = word.is_empty();
        if !stable {
            s.push('-');
            s.push_str(word);
            s.push_str(num.trim_start_matches('.'));
        }
    }
    if dev && !stable {
        s.push_str("-dev");
    }
    Some(s)
}

/// Compare two Composer versions. Each side is normalised on its own (a version
/// Composer cannot normalise is compared as written), so that the ordering stays
/// transitive when valid and invalid versions meet: `php_version_compare` is a total
/// preorder on strings, and mapping each version to one key keeps it one.
///
/// PHP keeps some separators in a part (a version's first character, a character after
/// a digit) and ranks a part starting with `#` as a number equal to every number; a raw
/// key therefore has every character but ASCII letters and digits turned into `.`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let key = |v: &str| {
        normalize(v).unwrap_or_else(|| {
            v.trim()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
                .collect()
        })
    };
    php_version_compare(&key(a), &key(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        assert_eq!(normalize("v1.2").as_deref(), Some("1.2.0.0"));
        assert_eq!(normalize("1.0-b2").as_deref(), Some("1.0.0.0-beta2"));
        assert_eq!(normalize("2.0.0-RC1").as_deref(), Some("2.0.0.0-RC1"));
        assert_eq!(normalize("2-stable-dev").as_deref(), Some("2.0.0.0"));
        assert_eq!(normalize("2-dev").as_deref(), Some("2.0.0.0-dev"));
        for (a, b, want) in [
            ("1.0", "1.0.0", Equal),
            ("v1.0.0", "1.0.0", Equal),
            ("1.0.0-dev", "1.0.0-alpha1", Less),
            ("1.0.0-alpha1", "1.0.0-beta1", Less),
            ("1.0.0-beta2", "1.0.0-RC1", Less),
            ("1.0.0-RC1", "1.0.0", Less),
            ("1.0.0", "1.0.0-p1", Less),
            ("5.4.10", "5.4.9", Greater),
            ("1.0.0.1", "1.0.0", Greater),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
        assert_eq!(php_version_compare("1.0", "1.0.0"), Less);
        assert_eq!(php_version_compare("1.0rc1", "1.0"), Less);
        assert_eq!(php_version_compare("1.0pl1", "1.0"), Greater);
    }

    #[test]
    fn transitive_when_valid_and_invalid_versions_meet() {
        // Found by the version_order fuzz target: "v1" normalises, the middle one does
        // not, and mixing normalised and raw comparisons broke transitivity.
        let b = format!("{}1.0.0-patch0", "\u{fffd}".repeat(16));
        let vs = [
            "v1",
            b.as_str(),
            "1A\u{10}\u{10}\u{10}\u{10}.0.0.V",
            // A leading `#` ranked as a number equal to every number.
            "#v\u{8}1.0.011l-qha..0-R19#",
            "",
            "1[0",
            "2",
            "v1.0-p#tpoRC1",
            "1.0#p1",
            "1.\u{fffd}.0.",
        ];
        super::super::assert_transitive(&vs, compare);
    }
}
