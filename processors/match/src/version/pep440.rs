//! PEP 440 ordering (PyPI), through `pep440_rs`. Versions that are not PEP 440 (legacy
//! strings) fall back to the generic ordering.

use std::cmp::Ordering;
use std::str::FromStr;

use pep440_rs::Version;

/// Parse a PEP 440 version (leading `v`, case and surrounding spaces are accepted).
pub fn parse(v: &str) -> Option<Version> {
    Version::from_str(v.trim()).ok()
}

/// Compare two PyPI versions (`3.2` = `3.2.0`, `1.0rc1` < `1.0` < `1.0.post1`,
/// `1.0.dev1` before all pre-releases, local versions after the public one).
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        // Legacy (non PEP 440) versions sort before every valid one, as pip does.
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => super::generic::compare(a, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        for (a, b, want) in [
            ("3.2", "3.2.0", Equal),
            ("1.0.dev1", "1.0a1", Less),
            ("1.0a1", "1.0b1", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0", "1.0.post1", Less),
            ("1.0+local", "1.0", Greater),
            ("1!0.1", "2.0", Greater),
            ("2.19.1", "2.20.0", Less),
            ("v1.0", "1.0", Equal),
            ("1.0.0c1", "1.0.0rc1", Equal),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
