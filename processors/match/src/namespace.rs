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

/// The namespace of an image's distribution; `None` when it cannot be determined.
pub fn distro_namespace(d: &Distro) -> Option<String> {
    let id = d.id.trim().to_ascii_lowercase();
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
                Some(v) => v.split('.').next().unwrap_or(v).to_string(),
                None => debian_codename_version(d.codename.as_deref()?)?.to_string(),
            };
            Some(format!("debian:{v}"))
        }
        "alpine" => {
            let v = version?;
            let mut it = v.split('.');
            let major = it.next()?;
            Some(match it.next() {
                Some(minor) => format!("alpine:{major}.{minor}"),
                None => format!("alpine:{major}"),
            })
        }
        "ubuntu" => Some(format!("ubuntu:{}", version?)),
        _ => {
            let v = version?;
            Some(format!("{id}:{}", v.split('.').next().unwrap_or(v)))
        }
    }
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
/// `Alpine:v3.19` → `alpine:3.19`, `Ubuntu:22.04:LTS` → `ubuntu:22.04`, `PyPI` → `pypi`.
pub fn ecosystem_namespace(ecosystem: &str) -> Option<String> {
    let mut parts = ecosystem.trim().split(':');
    let base = parts.next()?.trim().to_ascii_lowercase();
    if base.is_empty() {
        return None;
    }
    let base = match base.as_str() {
        "red hat" => "redhat".to_string(),
        "rocky linux" => "rocky".to_string(),
        _ => base,
    };
    // The release is the first part that starts with a digit (after an optional `v`).
    let release = parts
        .map(str::trim)
        .map(|p| p.strip_prefix('v').unwrap_or(p))
        .find(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()));
    Some(match release {
        Some(r) => match base.as_str() {
            "debian" => format!("debian:{}", r.split('.').next().unwrap_or(r)),
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
    }
}
