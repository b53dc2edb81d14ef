//! Package URL helpers: package type and distro from a purl.

use std::str::FromStr;

use packageurl::PackageUrl;
use vigil_contracts::{Distro, PackageType};

/// The package type a purl type stands for; `None` for types vigil has no ecosystem for
/// (`oci`, `github`, `swift`, …).
pub fn package_type_from_purl(purl_type: &str) -> Option<PackageType> {
    Some(match purl_type.to_ascii_lowercase().as_str() {
        "deb" => PackageType::Deb,
        "apk" | "alpine" => PackageType::Apk,
        "rpm" => PackageType::Rpm,
        "pypi" => PackageType::Python,
        "npm" => PackageType::Npm,
        "maven" => PackageType::JavaArchive,
        "golang" => PackageType::GoModule,
        "cargo" => PackageType::RustCrate,
        "gem" => PackageType::Gem,
        "nuget" => PackageType::Dotnet,
        "composer" => PackageType::Php,
        "generic" => PackageType::Binary,
        _ => return None,
    })
}

/// The package type Syft's `type` field (or its `syft:package:type` property) stands for.
pub(crate) fn package_type_from_syft(ty: &str) -> Option<PackageType> {
    Some(match ty {
        "deb" => PackageType::Deb,
        "apk" => PackageType::Apk,
        "rpm" => PackageType::Rpm,
        "python" => PackageType::Python,
        "npm" => PackageType::Npm,
        "java-archive" | "jenkins-plugin" | "graalvm-native-image" => PackageType::JavaArchive,
        "go-module" => PackageType::GoModule,
        "gem" => PackageType::Gem,
        "rust-crate" => PackageType::RustCrate,
        "dotnet" => PackageType::Dotnet,
        "php-composer" | "php-pecl" | "php-pear" => PackageType::Php,
        "binary" => PackageType::Binary,
        other => return package_type_from_name(other),
    })
}

pub(crate) const ALL_TYPES: [PackageType; 12] = [
    PackageType::Deb,
    PackageType::Apk,
    PackageType::Rpm,
    PackageType::Python,
    PackageType::Npm,
    PackageType::JavaArchive,
    PackageType::GoModule,
    PackageType::Gem,
    PackageType::RustCrate,
    PackageType::Dotnet,
    PackageType::Php,
    PackageType::Binary,
];

/// A vigil package type by its own name (`deb`, `java-archive`, …).
pub(crate) fn package_type_from_name(s: &str) -> Option<PackageType> {
    ALL_TYPES.iter().copied().find(|t| t.as_str() == s)
}

/// What one purl says about a package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PurlFacts {
    pub purl_type: String,
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub arch: Option<String>,
    pub distro: Option<Distro>,
    /// `upstream=` (deb source package, possibly `name@version`) or `upstream=`/`origin` for apk.
    pub upstream: Option<String>,
}

/// Parse a purl; `None` when it is not a valid purl.
pub(crate) fn parse_purl(purl: &str) -> Option<PurlFacts> {
    let p = PackageUrl::from_str(purl).ok()?;
    let q = p.qualifiers();
    let get = |k: &str| q.get(k).map(|v| v.to_string()).filter(|v| !v.is_empty());
    Some(PurlFacts {
        purl_type: p.ty().to_ascii_lowercase(),
        namespace: p.namespace().map(str::to_string),
        name: p.name().to_string(),
        version: p.version().map(str::to_string),
        arch: get("arch"),
        distro: get("distro").map(|d| distro_from_qualifier(&d)),
        upstream: get("upstream"),
    })
}

/// The distro a purl's `distro=` qualifier names (`debian-12`, `alpine-3.19.1`,
/// `opensuse-leap-15.5`), `None` when the purl has none or is invalid.
pub fn distro_from_purl(purl: &str) -> Option<Distro> {
    parse_purl(purl)?.distro
}

/// `debian-12` → id `debian`, version `12`; a value without a version part is all id.
pub(crate) fn distro_from_qualifier(q: &str) -> Distro {
    let (id, version) = match q.rsplit_once('-') {
        Some((id, v)) if !id.is_empty() && v.starts_with(|c: char| c.is_ascii_digit()) => {
            (id.to_string(), Some(v.to_string()))
        }
        _ => (q.to_string(), None),
    };
    Distro {
        id: id.to_ascii_lowercase(),
        version_id: version,
        ..Default::default()
    }
}

/// A purl for the image itself (`pkg:oci/NAME@DIGEST?repository_url=…&tag=…`), as the
/// purl spec defines the `oci` type; `None` when the parts are not representable.
pub(crate) fn oci_purl(name: &str, digest: &str, tag: Option<&str>) -> Option<String> {
    let trimmed = name.trim_end_matches('/');
    let last = trimmed.rsplit('/').next()?.to_ascii_lowercase();
    if last.is_empty() || !digest.starts_with("sha256:") {
        return None;
    }
    let mut p = PackageUrl::new("oci".to_string(), last).ok()?;
    p.with_version(digest.to_string()).ok()?;
    if !trimmed.starts_with('/') && trimmed.contains('/') {
        p.add_qualifier("repository_url".to_string(), trimmed.to_string())
            .ok()?;
    }
    if let Some(t) = tag {
        p.add_qualifier("tag".to_string(), t.to_string()).ok()?;
    }
    Some(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distro_qualifiers() {
        let d = distro_from_qualifier("debian-12");
        assert_eq!(
            (d.id.as_str(), d.version_id.as_deref()),
            ("debian", Some("12"))
        );
        let d = distro_from_qualifier("opensuse-leap-15.5");
        assert_eq!(
            (d.id.as_str(), d.version_id.as_deref()),
            ("opensuse-leap", Some("15.5"))
        );
        let d = distro_from_qualifier("wolfi");
        assert_eq!((d.id.as_str(), d.version_id), ("wolfi", None));
    }

    #[test]
    fn purl_facts() {
        let f = parse_purl(
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc&distro=debian-12",
        )
        .unwrap();
        assert_eq!(f.purl_type, "deb");
        assert_eq!(f.name, "libc6");
        assert_eq!(f.version.as_deref(), Some("2.36-9+deb12u4"));
        assert_eq!(f.arch.as_deref(), Some("amd64"));
        assert_eq!(f.upstream.as_deref(), Some("glibc"));
        assert_eq!(f.distro.unwrap().version_id.as_deref(), Some("12"));
        assert!(parse_purl("not a purl").is_none());
    }

    #[test]
    fn purl_types() {
        assert_eq!(package_type_from_purl("pypi"), Some(PackageType::Python));
        assert_eq!(
            package_type_from_purl("maven"),
            Some(PackageType::JavaArchive)
        );
        assert_eq!(package_type_from_purl("composer"), Some(PackageType::Php));
        assert_eq!(package_type_from_purl("generic"), Some(PackageType::Binary));
        assert_eq!(package_type_from_purl("swift"), None);
        assert_eq!(
            package_type_from_syft("php-composer"),
            Some(PackageType::Php)
        );
        assert_eq!(
            package_type_from_syft("go-module"),
            Some(PackageType::GoModule)
        );
    }
}
