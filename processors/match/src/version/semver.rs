//! SemVer orderings: npm (node-semver's `Version`; ranges in [`super::npm_range`]),
//! Cargo / Hex / Pub (`semver`), and the lenient SemVer 2.0 of OSV `SEMVER` ranges
//! ([`parse_lenient`]).
//! Build metadata never takes part in the ordering.

use std::cmp::Ordering;

use node_semver::Version as NpmVersion;

pub(crate) fn npm_parse(v: &str) -> Option<NpmVersion> {
    let v = v.trim();
    let v = v.strip_prefix('=').unwrap_or(v).trim();
    NpmVersion::parse(v).ok()
}

/// Compare two npm versions as the `semver` package's `compare` does; a version npm
/// cannot parse falls back to the generic ordering.
pub fn compare_npm(a: &str, b: &str) -> Ordering {
    match (npm_parse(a), npm_parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => super::generic::compare(a, b),
    }
}

/// Whether an npm version satisfies an npm range (`^1.2.0`, `>=1 <2 || 3.x`, …), with
/// npm's pre-release rule: a pre-release only satisfies a range that names a
/// pre-release of the same `major.minor.patch`. `None` when either does not parse.
pub fn npm_satisfies(version: &str, range: &str) -> Option<bool> {
    let v = npm_parse(version)?;
    super::npm_range::satisfies(&v, range)
}

pub(crate) fn cargo_parse(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    semver::Version::parse(v).ok()
}

/// Compare two Cargo (crates.io) versions by SemVer precedence; also used for Hex and Pub.
pub fn compare_cargo(a: &str, b: &str) -> Ordering {
    match (cargo_parse(a), cargo_parse(b)) {
        (Some(x), Some(y)) => x.cmp_precedence(&y),
        _ => super::generic::compare(a, b),
    }
}

/// Whether a Cargo version satisfies a Cargo requirement (`^1.2`, `>=1, <2`).
pub fn cargo_satisfies(version: &str, req: &str) -> Option<bool> {
    let v = cargo_parse(version)?;
    let r = semver::VersionReq::parse(req.trim()).ok()?;
    Some(r.matches(&v))
}

/// Parse a version of an OSV `SEMVER` range the lenient way osv.dev does: a leading
/// `v`/`V` is dropped, a missing minor or patch is `0` (`1.2` → `1.2.0`, `2-rc.1` →
/// `2.0.0-rc.1`) and leading zeros of the numeric core are dropped (`1.02.0` →
/// `1.2.0`). `None` when it is still not SemVer 2.0 (`1.0.0rc1`, `1.2.3.4`, `2:1.0`).
pub fn parse_lenient(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (core, rest) = v.split_at(end);
    if !(rest.is_empty() || rest.starts_with('-') || rest.starts_with('+')) {
        return None;
    }
    let mut nums = [0u64; 3];
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    for (slot, p) in nums.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 19 {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    semver::Version::parse(&format!("{}.{}.{}{rest}", nums[0], nums[1], nums[2])).ok()
}

/// SemVer 2.0 precedence of two versions parsed by [`parse_lenient`] (build metadata
/// ignored); `None` when either is not SemVer.
pub fn compare_semver(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_lenient(a)?.cmp_precedence(&parse_lenient(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn npm() {
        for (a, b, want) in [
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0+build.1", "1.0.0+build.2", Equal),
            ("v4.17.15", "4.17.21", Less),
            ("=1.2.3", "1.2.3", Equal),
        ] {
            assert_eq!(compare_npm(a, b), want, "{a} vs {b}");
            assert_eq!(compare_npm(b, a), want.reverse(), "{b} vs {a}");
        }
        assert_eq!(npm_satisfies("4.17.15", "<4.17.21"), Some(true));
        assert_eq!(npm_satisfies("1.2.3", "^1.0.0 || >=3"), Some(true));
        assert_eq!(npm_satisfies("2.0.0", "^1.0.0 || >=3"), Some(false));
        // npm: a pre-release satisfies only ranges naming a pre-release of its tuple.
        assert_eq!(npm_satisfies("1.3.0-beta.1", ">=1.0.0 <2.0.0"), Some(false));
        assert_eq!(
            npm_satisfies("1.3.0-beta.2", ">=1.3.0-beta.1 <2.0.0"),
            Some(true)
        );
        assert_eq!(npm_satisfies("x", "1"), None);
        // Empty sets and descending hyphen ranges hold nothing.
        assert_eq!(npm_satisfies("4.0.0", ">=5.0.0 <3.0.0"), Some(false));
        assert_eq!(npm_satisfies("1.0.0", "2 - 0.10.6"), Some(false));
        assert_eq!(npm_satisfies("1.2.9", "1.2 - 1.3"), Some(true));
        assert_eq!(npm_satisfies("1.4.0", "1.2 - 1.3"), Some(false));
        assert_eq!(npm_satisfies("0.0.4", "^0.0.3"), Some(false));
        assert_eq!(npm_satisfies("0.2.9", "^0.2.3"), Some(true));
        assert_eq!(npm_satisfies("1.2.0", ">= 1.2"), Some(true));
    }

    #[test]
    fn lenient_semver() {
        for (a, b, want) in [
            ("v1.2.3", "1.2.3", Equal),
            ("1.2", "1.2.0", Equal),
            ("1", "1.0.0", Equal),
            ("V2-rc.1", "2.0.0-rc.1", Equal),
            ("1.02.0", "1.2.0", Equal),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-alpha", "1.0.0-dev", Less),
            ("1.0.0-post1", "1.0.0", Less),
            ("1.0.0+build.9", "1.0.0+build.1", Equal),
            ("0.10", "0.9.9", Greater),
        ] {
            assert_eq!(compare_semver(a, b), Some(want), "{a} vs {b}");
            assert_eq!(compare_semver(b, a), Some(want.reverse()), "{b} vs {a}");
        }
        for bad in [
            "1.0.0rc1", "1.2.3.4", "2:1.0", "", "v", "1..2", "1.0.0-01", "x1",
        ] {
            assert_eq!(parse_lenient(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cargo() {
        assert_eq!(compare_cargo("1.0.0-alpha", "1.0.0"), Less);
        assert_eq!(compare_cargo("1.0.0+a", "1.0.0+b"), Equal);
        assert_eq!(compare_cargo("0.10.0", "0.9.9"), Greater);
        assert_eq!(cargo_satisfies("1.4.0", "^1.2"), Some(true));
        assert_eq!(cargo_satisfies("2.0.0", "^1.2"), Some(false));
    }
}
