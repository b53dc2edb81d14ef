//! Namespaces: where advisories for a package live (`debian:12`, `alpine:3.19`, `pypi`, …).

use vigil_contracts::{Distro, PackageType};

/// Debian codename → major version.
pub fn debian_codename_version(codename: &str) -> Option<&'static str> {
    Some(match codename.to_ascii_lowercase().as_str() {
        "forky" => "14",
        "trixie" => "13",
        "bookworm" => "12",
        "bullseye" => "11",
        "buster" => "10",
        "stretch" => "9",
        "jessie" => "8",
        "wheezy" => "7",
        _ => return None,
    })
}

fn major(v: &str) -> &str {
    v.split('.').next().unwrap_or(v)
}

/// `3.19.1` → `3.19`; `3.20_alpha20240329` → `3.20`.
fn major_minor(v: &str) -> String {
    let mut it = v.split('.');
    let major = it.next().unwrap_or(v);
    match it.next() {
        Some(minor) => {
            let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
            if minor.is_empty() {
                major.to_string()
            } else {
                format!("{major}.{minor}")
            }
        }
        None => major.to_string(),
    }
}

/// The namespace of an image's distribution; `None` when it cannot be determined.
///
/// Debian (also distroless, whose os-release says `ID=debian`) → `debian:12`; Ubuntu →
/// `ubuntu:22.04`; Alpine → `alpine:3.19`; Wolfi, Chainguard → `wolfi`, `chainguard`
/// (rolling); RHEL and CentOS → `rhel:9` (Red Hat's data); AlmaLinux, Rocky →
/// `almalinux:9`, `rocky:9`; SLES → `sles:15`; openSUSE → `opensuse-leap:15`,
/// `opensuse-tumbleweed`; anything else → `id:major`.
pub fn distro_namespace(d: &Distro) -> Option<String> {
    let mut id = d.id.trim().to_ascii_lowercase();
    if id.is_empty()
        && d.pretty_name
            .as_deref()
            .is_some_and(|p| p.to_ascii_lowercase().contains("distroless"))
    {
        id = "debian".into();
    }
    if id.is_empty() {
        return None;
    }
    let version = d
        .version_id
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match id.as_str() {
        "debian" => {
            let v = match version {
                Some(v) => major(v).to_string(),
                None => debian_codename_version(d.codename.as_deref()?)?.to_string(),
            };
            Some(format!("debian:{v}"))
        }
        "alpine" => Some(format!("alpine:{}", major_minor(version?))),
        "ubuntu" => Some(format!("ubuntu:{}", version?)),
        "wolfi" | "chainguard" | "opensuse-tumbleweed" => Some(id),
        "rhel" | "redhat" | "centos" => Some(format!("rhel:{}", major(version?))),
        "sles" | "sles_sap" => Some(format!("sles:{}", major(version?))),
        "sled" | "sle-micro" | "opensuse-leap-micro" => Some(format!("{id}:{}", major(version?))),
        "opensuse-leap" | "opensuse" => Some(format!("opensuse-leap:{}", major(version?))),
        "rocky" | "almalinux" | "ol" | "amzn" | "fedora" => {
            Some(format!("{id}:{}", major(version?)))
        }
        _ => Some(format!("{id}:{}", major(version?))),
    }
}

/// Every namespace to try for an image's OS packages, best first: the distro's own,
/// then its like-distros (`ID_LIKE`) with the same release, so that a Rocky or
/// AlmaLinux image without data of its own falls back to Red Hat's, and a Debian
/// derivative to Debian's. Ubuntu never falls back to Debian (different releases).
pub fn distro_namespaces(d: &Distro) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |ns: Option<String>| {
        if let Some(ns) = ns {
            if !out.contains(&ns) {
                out.push(ns);
            }
        }
    };
    push(distro_namespace(d));
    let id = d.id.trim().to_ascii_lowercase();
    let mut likes: Vec<String> = d
        .id_like
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(str::to_ascii_lowercase)
        .collect();
    if matches!(id.as_str(), "rocky" | "almalinux" | "centos" | "ol")
        && !likes.iter().any(|l| l == "rhel")
    {
        likes.push("rhel".into());
    }
    for like in likes {
        if like == id || (id == "ubuntu" && like == "debian") || like == "fedora" {
            continue;
        }
        let mut alt = d.clone();
        alt.id = like;
        push(distro_namespace(&alt));
    }
    out
}

/// The namespace of a language ecosystem, as OSV names it, lowercased.
pub fn language_namespace(kind: PackageType) -> Option<&'static str> {
    Some(match kind {
        PackageType::Python => "pypi",
        PackageType::Npm => "npm",
        PackageType::JavaArchive => "maven",
        PackageType::GoModule => "go",
        PackageType::RustCrate => "crates.io",
        PackageType::Gem => "rubygems",
        PackageType::Dotnet => "nuget",
        PackageType::Php => "packagist",
        PackageType::Deb | PackageType::Apk | PackageType::Rpm | PackageType::Binary => {
            return None
        }
    })
}

/// The namespace a package is matched in: the distro's for OS packages, the ecosystem's
/// for language packages.
pub fn package_namespace(kind: PackageType, distro: Option<&Distro>) -> Option<String> {
    if kind.is_os() {
        distro.and_then(distro_namespace)
    } else {
        language_namespace(kind).map(str::to_string)
    }
}

/// Map an OSV `package.ecosystem` string to a namespace: `Debian:12` → `debian:12`,
/// `Alpine:v3.19` → `alpine:3.19`, `Ubuntu:22.04:LTS` → `ubuntu:22.04`, `PyPI` → `pypi`,
/// `Red Hat:enterprise_linux:9::appstream` → `rhel:9`, `Rocky Linux:9` → `rocky:9`,
/// `SUSE:Linux Enterprise Server 15 SP5` → `sles:15`, `openSUSE:Leap 15.5` →
/// `opensuse-leap:15`, `openSUSE:Tumbleweed` → `opensuse-tumbleweed`.
pub fn ecosystem_namespace(ecosystem: &str) -> Option<String> {
    let mut parts = ecosystem.trim().split(':');
    let base = parts.next()?.trim().to_ascii_lowercase();
    if base.is_empty() {
        return None;
    }
    let rest: Vec<&str> = parts.map(str::trim).collect();
    match base.as_str() {
        "suse" => {
            let product = rest.first().copied().unwrap_or("").to_ascii_lowercase();
            let num = product
                .split_whitespace()
                .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()));
            let name = if product.contains("enterprise server") {
                "sles"
            } else if product.contains("enterprise desktop") {
                "sled"
            } else if product.contains("micro") {
                "sle-micro"
            } else {
                return Some(format!("suse:{}", product.replace(' ', "-")));
            };
            return Some(match num {
                Some(n) => format!("{name}:{}", major(n)),
                None => name.to_string(),
            });
        }
        "opensuse" => {
            let product = rest.first().copied().unwrap_or("").to_ascii_lowercase();
            if product.starts_with("tumbleweed") {
                return Some("opensuse-tumbleweed".into());
            }
            let name = if product.starts_with("leap micro") {
                "opensuse-leap-micro"
            } else {
                "opensuse-leap"
            };
            let v = product
                .split_whitespace()
                .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()));
            return Some(match v {
                Some(v) => format!("{name}:{}", major(v)),
                None => name.into(),
            });
        }
        _ => {}
    }
    let base = match base.as_str() {
        "red hat" => "rhel".to_string(),
        "rocky linux" => "rocky".to_string(),
        _ => base,
    };
    // The release is the first part that starts with a digit (after an optional `v`).
    let release = rest
        .iter()
        .map(|p| p.strip_prefix('v').unwrap_or(p))
        .find(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()));
    Some(match release {
        Some(r) => match base.as_str() {
            "debian" | "rhel" | "almalinux" | "rocky" => format!("{base}:{}", major(r)),
            _ => format!("{base}:{r}"),
        },
        None => base,
    })
}

/// Normalise a package name for lookups in a namespace (PEP 503 for PyPI; exact elsewhere).
pub fn normalize_name(namespace: &str, name: &str) -> String {
    if namespace == "pypi" {
        let mut out = String::with_capacity(name.len());
        let mut sep = false;
        for c in name.trim().chars() {
            if c == '-' || c == '_' || c == '.' {
                sep = true;
            } else {
                if sep && !out.is_empty() {
                    out.push('-');
                }
                sep = false;
                out.push(c.to_ascii_lowercase());
            }
        }
        out
    } else if namespace == "nuget" || namespace == "packagist" {
        // Case-insensitive package ids.
        name.trim().to_ascii_lowercase()
    } else {
        name.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distro(id: &str, v: Option<&str>, code: Option<&str>) -> Distro {
        Distro {
            id: id.into(),
            version_id: v.map(Into::into),
            codename: code.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn distros() {
        assert_eq!(
            distro_namespace(&distro("debian", Some("12"), None)).unwrap(),
            "debian:12"
        );
        assert_eq!(
            distro_namespace(&distro("debian", None, Some("bookworm"))).unwrap(),
            "debian:12"
        );
        assert_eq!(
            distro_namespace(&distro("debian", None, Some("trixie"))).unwrap(),
            "debian:13"
        );
        assert_eq!(
            distro_namespace(&distro("debian", None, Some("bullseye"))).unwrap(),
            "debian:11"
        );
        assert_eq!(
            distro_namespace(&distro("debian", None, Some("buster"))).unwrap(),
            "debian:10"
        );
        assert_eq!(
            distro_namespace(&distro("alpine", Some("3.19.1"), None)).unwrap(),
            "alpine:3.19"
        );
        assert_eq!(
            distro_namespace(&distro("ubuntu", Some("22.04"), None)).unwrap(),
            "ubuntu:22.04"
        );
        assert_eq!(
            distro_namespace(&distro("almalinux", Some("9.3"), None)).unwrap(),
            "almalinux:9"
        );
        assert!(distro_namespace(&distro("debian", None, None)).is_none());
        for (id, v, want) in [
            ("rhel", "9.3", "rhel:9"),
            ("centos", "8", "rhel:8"),
            ("rocky", "9.3", "rocky:9"),
            ("wolfi", "20230201", "wolfi"),
            ("chainguard", "20230214", "chainguard"),
            ("sles", "15.5", "sles:15"),
            ("opensuse-leap", "15.5", "opensuse-leap:15"),
            ("alpine", "3.20_alpha20240329", "alpine:3.20"),
        ] {
            assert_eq!(
                distro_namespace(&distro(id, Some(v), None)).unwrap(),
                want,
                "{id}"
            );
        }
        // Distroless: os-release says Debian, or only the pretty name says it.
        let mut dl = distro("", Some("12"), None);
        dl.pretty_name = Some("Distroless".into());
        assert_eq!(distro_namespace(&dl).unwrap(), "debian:12");
        // Like-distro fallback.
        let mut rocky = distro("rocky", Some("9.3"), None);
        rocky.id_like = vec!["rhel centos fedora".into()];
        assert_eq!(distro_namespaces(&rocky), ["rocky:9", "rhel:9"]);
        let mut alma = distro("almalinux", Some("9.3"), None);
        alma.id_like = vec![];
        assert_eq!(distro_namespaces(&alma), ["almalinux:9", "rhel:9"]);
        let mut rasp = distro("raspbian", Some("12"), Some("bookworm"));
        rasp.id_like = vec!["debian".into()];
        assert_eq!(distro_namespaces(&rasp), ["raspbian:12", "debian:12"]);
        let mut ubu = distro("ubuntu", Some("22.04"), None);
        ubu.id_like = vec!["debian".into()];
        assert_eq!(distro_namespaces(&ubu), ["ubuntu:22.04"]);
        assert_eq!(
            package_namespace(PackageType::Python, None).unwrap(),
            "pypi"
        );
        assert_eq!(
            package_namespace(PackageType::RustCrate, None).unwrap(),
            "crates.io"
        );
    }

    #[test]
    fn ecosystems() {
        for (e, want) in [
            ("Debian:12", "debian:12"),
            ("Alpine:v3.19", "alpine:3.19"),
            ("Ubuntu:22.04:LTS", "ubuntu:22.04"),
            ("Ubuntu:Pro:22.04:LTS", "ubuntu:22.04"),
            ("AlmaLinux:9", "almalinux:9"),
            ("PyPI", "pypi"),
            ("npm", "npm"),
            ("Maven", "maven"),
            ("Go", "go"),
            ("crates.io", "crates.io"),
            ("RubyGems", "rubygems"),
            ("NuGet", "nuget"),
            ("Packagist", "packagist"),
            ("Red Hat:enterprise_linux:9::appstream", "rhel:9"),
            ("Rocky Linux:9", "rocky:9"),
            ("SUSE:Linux Enterprise Server 15 SP5", "sles:15"),
            ("SUSE:Linux Enterprise Micro 5.5", "sle-micro:5"),
            ("openSUSE:Leap Micro 5.5", "opensuse-leap-micro:5"),
            ("SUSE:Linux Enterprise Server 12", "sles:12"),
            ("openSUSE:Leap 15.5", "opensuse-leap:15"),
            ("openSUSE:Tumbleweed", "opensuse-tumbleweed"),
            ("Wolfi", "wolfi"),
            ("Chainguard", "chainguard"),
            ("Hex", "hex"),
            ("Pub", "pub"),
        ] {
            assert_eq!(ecosystem_namespace(e).unwrap(), want, "{e}");
        }
    }

    #[test]
    fn pep503() {
        assert_eq!(normalize_name("pypi", "Jinja2"), "jinja2");
        assert_eq!(normalize_name("pypi", "zope.interface"), "zope-interface");
        assert_eq!(normalize_name("pypi", "Foo__Bar-.baz"), "foo-bar-baz");
        assert_eq!(normalize_name("npm", "Foo_Bar"), "Foo_Bar");
        assert_eq!(
            normalize_name("nuget", "Newtonsoft.Json"),
            "newtonsoft.json"
        );
    }
}
