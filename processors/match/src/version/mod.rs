//! Version orderings per ecosystem and the [`Comparator`] that picks one per namespace.
//! Every ordering is a pure function; a version that an ecosystem's grammar rejects
//! falls back to a documented, total ordering rather than failing.

use std::cmp::Ordering;

pub mod apk;
pub mod composer;
pub mod dpkg;
pub mod gem;
pub mod generic;
pub mod golang;
pub mod maven;
pub mod npm_range;
pub mod nuget;
pub mod pep440;
pub mod rpm;
pub mod semver;

/// A version ordering, chosen per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparator {
    /// Debian and Ubuntu.
    Dpkg,
    /// Alpine, Wolfi, Chainguard.
    Apk,
    /// RPM distributions (AlmaLinux, Rocky, RHEL, SUSE, …).
    Rpm,
    /// PyPI (PEP 440).
    Pep440,
    /// npm (node-semver).
    Npm,
    /// Go modules.
    Go,
    /// Maven (`ComparableVersion`).
    Maven,
    /// RubyGems (`Gem::Version`).
    RubyGems,
    /// NuGet.
    NuGet,
    /// Packagist (Composer).
    Composer,
    /// crates.io (SemVer precedence).
    Cargo,
    /// Hex (Elixir `Version`, SemVer 2).
    Hex,
    /// Pub (Dart, SemVer-like).
    Pub,
    /// Anything else.
    Generic,
}

impl Comparator {
    /// Every comparator, for tests and listings.
    pub const ALL: [Comparator; 14] = [
        Comparator::Dpkg,
        Comparator::Apk,
        Comparator::Rpm,
        Comparator::Pep440,
        Comparator::Npm,
        Comparator::Go,
        Comparator::Maven,
        Comparator::RubyGems,
        Comparator::NuGet,
        Comparator::Composer,
        Comparator::Cargo,
        Comparator::Hex,
        Comparator::Pub,
        Comparator::Generic,
    ];

    /// The ordering for a namespace such as `debian:12`, `alpine:3.19`, `pypi`,
    /// `crates.io` (or the `osv:PyPI` spelling).
    pub fn for_namespace(namespace: &str) -> Comparator {
        let ns = namespace.trim();
        let ns = ns
            .strip_prefix("osv:")
            .or_else(|| ns.strip_prefix("OSV:"))
            .unwrap_or(ns);
        let base = ns.split(':').next().unwrap_or(ns);
        Self::for_ecosystem(base)
    }

    /// The ordering for an OSV ecosystem name (`PyPI`, `npm`, `Maven`, `Go`,
    /// `crates.io`, `RubyGems`, `NuGet`, `Packagist`, `Hex`, `Pub`, `Debian`, `Alpine`,
    /// `Rocky Linux`, …) or a distro id; case does not matter, a `:release` suffix is
    /// ignored.
    pub fn for_ecosystem(ecosystem: &str) -> Comparator {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base.trim().to_ascii_lowercase().as_str() {
            "debian" | "ubuntu" => Comparator::Dpkg,
            "alpine" | "wolfi" | "chainguard" | "alpaquita" | "bellsoft hardened containers" => {
                Comparator::Apk
            }
            "almalinux"
            | "rocky"
            | "rocky linux"
            | "rhel"
            | "redhat"
            | "red hat"
            | "centos"
            | "fedora"
            | "amzn"
            | "amazon linux"
            | "oraclelinux"
            | "ol"
            | "oracle linux"
            | "opensuse"
            | "opensuse-leap"
            | "opensuse-tumbleweed"
            | "sles"
            | "sled"
            | "sle-micro"
            | "opensuse-leap-micro"
            | "suse"
            | "mageia"
            | "openeuler"
            | "azure linux"
            | "mariner" => Comparator::Rpm,
            "pypi" | "python" => Comparator::Pep440,
            "npm" => Comparator::Npm,
            "go" | "golang" => Comparator::Go,
            "maven" => Comparator::Maven,
            "rubygems" | "gem" => Comparator::RubyGems,
            "nuget" => Comparator::NuGet,
            "packagist" | "composer" => Comparator::Composer,
            "crates.io" | "cargo" => Comparator::Cargo,
            "hex" => Comparator::Hex,
            "pub" => Comparator::Pub,
            _ => Comparator::Generic,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Comparator::Dpkg => "dpkg",
            Comparator::Apk => "apk",
            Comparator::Rpm => "rpm",
            Comparator::Pep440 => "pep440",
            Comparator::Npm => "npm-semver",
            Comparator::Go => "go-semver",
            Comparator::Maven => "maven",
            Comparator::RubyGems => "rubygems",
            Comparator::NuGet => "nuget",
            Comparator::Composer => "composer",
            Comparator::Cargo => "cargo-semver",
            Comparator::Hex => "hex-semver",
            Comparator::Pub => "pub-semver",
            Comparator::Generic => "generic",
        }
    }

    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        if let Some(o) = self.fast_numeric(a, b) {
            return o;
        }
        match self {
            Comparator::Dpkg => dpkg::compare(a, b),
            Comparator::Apk => apk::compare(a, b),
            Comparator::Rpm => rpm::compare(a, b),
            Comparator::Pep440 => pep440::compare(a, b),
            Comparator::Npm => semver::compare_npm(a, b),
            Comparator::Go => golang::compare(a, b),
            Comparator::Maven => maven::compare(a, b),
            Comparator::RubyGems => gem::compare(a, b),
            Comparator::NuGet => nuget::compare(a, b),
            Comparator::Composer => composer::compare(a, b),
            Comparator::Cargo | Comparator::Hex | Comparator::Pub => semver::compare_cargo(a, b),
            Comparator::Generic => generic::compare(a, b),
        }
    }

    /// A fast path for the common case of two plain dotted-numeric versions (`2.19.1`),
    /// where every language ordering agrees with numeric comparison with missing parts
    /// as zero — within each ecosystem's grammar (part counts, leading zeros). `None`
    /// when the full ordering is needed.
    fn fast_numeric(&self, a: &str, b: &str) -> Option<Ordering> {
        let (min_parts, max_parts, leading_zeros) = match self {
            Comparator::Pep440 | Comparator::Maven | Comparator::RubyGems => (1, usize::MAX, true),
            Comparator::NuGet | Comparator::Composer => (1, 4, true),
            Comparator::Npm | Comparator::Cargo | Comparator::Hex | Comparator::Pub => {
                (3, 3, false)
            }
            _ => return None,
        };
        let ok = |v: &str| {
            let n = v.split('.').count();
            (min_parts..=max_parts).contains(&n)
                && v.split('.').all(|p| {
                    !p.is_empty()
                        && p.len() < 19
                        && p.bytes().all(|c| c.is_ascii_digit())
                        && (leading_zeros || p == "0" || !p.starts_with('0'))
                })
        };
        if !ok(a) || !ok(b) {
            return None;
        }
        let mut x = a.split('.');
        let mut y = b.split('.');
        loop {
            match (x.next(), y.next()) {
                (None, None) => return Some(Ordering::Equal),
                (p, q) => {
                    let p: u64 = p.map_or(0, |p| p.parse().unwrap_or(0));
                    let q: u64 = q.map_or(0, |q| q.parse().unwrap_or(0));
                    if p != q {
                        return Some(p.cmp(&q));
                    }
                }
            }
        }
    }

    /// Whether `v` is in this ecosystem's own version grammar. The orderings are total
    /// within their grammar and, for versions outside it, fall back to the generic
    /// ordering (itself total); a comparison between a version inside and one outside
    /// uses the generic ordering for that pair, so transitivity holds within each of the
    /// two sets, not across them (npm, Cargo/Hex/Pub, NuGet, RubyGems). The other
    /// comparators are total on every string and answer `true`.
    pub fn in_grammar(&self, v: &str) -> bool {
        match self {
            Comparator::Npm => semver::npm_parse(v).is_some(),
            Comparator::Cargo | Comparator::Hex | Comparator::Pub => {
                semver::cargo_parse(v).is_some()
            }
            Comparator::NuGet => nuget::parse(v).is_some(),
            Comparator::RubyGems => gem::valid(v.trim()),
            _ => true,
        }
    }

    /// Whether `version` satisfies a native range expression of this ecosystem
    /// (npm ranges, Cargo requirements). `None` when the ecosystem has no range syntax
    /// here or either side does not parse.
    pub fn satisfies(&self, version: &str, range: &str) -> Option<bool> {
        match self {
            Comparator::Npm => semver::npm_satisfies(version, range),
            Comparator::Cargo => semver::cargo_satisfies(version, range),
            _ => None,
        }
    }
}

/// Test helper: `cmp` is transitive on every triple of `vs`.
#[cfg(test)]
pub(crate) fn assert_transitive(vs: &[&str], cmp: impl Fn(&str, &str) -> Ordering) {
    for a in vs {
        for b in vs {
            for c in vs {
                let (ab, bc, ac) = (cmp(a, b), cmp(b, c), cmp(a, c));
                if ab != Ordering::Greater && bc != Ordering::Greater {
                    assert_ne!(ac, Ordering::Greater, "{a:?} <= {b:?} <= {c:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        for (ns, want) in [
            ("debian:12", Comparator::Dpkg),
            ("ubuntu:22.04", Comparator::Dpkg),
            ("alpine:3.19", Comparator::Apk),
            ("wolfi", Comparator::Apk),
            ("chainguard", Comparator::Apk),
            ("almalinux:9", Comparator::Rpm),
            ("rocky:9", Comparator::Rpm),
            ("redhat:9", Comparator::Rpm),
            ("sles:15", Comparator::Rpm),
            ("rhel:9", Comparator::Rpm),
            ("sle-micro:5", Comparator::Rpm),
            ("opensuse-leap-micro:5", Comparator::Rpm),
            ("opensuse-leap:15.5", Comparator::Rpm),
            ("pypi", Comparator::Pep440),
            ("osv:PyPI", Comparator::Pep440),
            ("npm", Comparator::Npm),
            ("maven", Comparator::Maven),
            ("go", Comparator::Go),
            ("crates.io", Comparator::Cargo),
            ("rubygems", Comparator::RubyGems),
            ("nuget", Comparator::NuGet),
            ("packagist", Comparator::Composer),
            ("hex", Comparator::Hex),
            ("pub", Comparator::Pub),
            ("osv:Maven", Comparator::Maven),
            ("something", Comparator::Generic),
        ] {
            assert_eq!(Comparator::for_namespace(ns), want, "{ns}");
        }
        for (eco, want) in [
            ("PyPI", Comparator::Pep440),
            ("Rocky Linux:9", Comparator::Rpm),
            ("Red Hat:enterprise_linux:9::appstream", Comparator::Rpm),
            ("SUSE:Linux Enterprise Server 15 SP5", Comparator::Rpm),
            ("Ubuntu:22.04:LTS", Comparator::Dpkg),
            ("Alpine:v3.19", Comparator::Apk),
            ("RubyGems", Comparator::RubyGems),
        ] {
            assert_eq!(Comparator::for_ecosystem(eco), want, "{eco}");
        }
    }

    #[test]
    fn fast_path_agrees_with_full_orderings() {
        let vs = [
            "0",
            "1",
            "1.0",
            "1.0.0",
            "1.0.0.0",
            "1.2.3",
            "01.2.3",
            "1.10.0",
            "1.9.9",
            "2",
            "1.0.0.0.1",
            "10.0.0",
        ];
        for c in Comparator::ALL {
            for a in vs {
                for b in vs {
                    if let Some(fast) = c.fast_numeric(a, b) {
                        let full = match c {
                            Comparator::Pep440 => pep440::compare(a, b),
                            Comparator::Maven => maven::compare(a, b),
                            Comparator::RubyGems => gem::compare(a, b),
                            Comparator::NuGet => nuget::compare(a, b),
                            Comparator::Composer => composer::compare(a, b),
                            Comparator::Npm => semver::compare_npm(a, b),
                            _ => semver::compare_cargo(a, b),
                        };
                        assert_eq!(fast, full, "{c:?} {a} {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn total_on_garbage() {
        // No ordering panics on odd input, and each is antisymmetric on it.
        let odd = [
            "", " ", "-", "..", "v", "1..2", "~", "^", "1:", ":1", "ä1", "1.0-", "+",
        ];
        for c in Comparator::ALL {
            for a in odd {
                for b in odd {
                    assert_eq!(
                        c.compare(a, b),
                        c.compare(b, a).reverse(),
                        "{c:?} {a:?} {b:?}"
                    );
                }
            }
        }
    }
}
