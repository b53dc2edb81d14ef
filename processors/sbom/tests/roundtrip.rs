//! Export → import gives back the same packages.

mod common;

use vigil_contracts::PackageType;
use vigil_sbom::{analysis_from_sbom, import_sbom, SbomFormat};

#[test]
fn cyclonedx_round_trip_keeps_every_package() {
    let a = common::analysis();
    let text = vigil_sbom::cyclonedx_json(&a, Some(&common::findings()), &common::opts()).unwrap();
    let back = import_sbom(&text).unwrap();
    assert_eq!(back.format, SbomFormat::CycloneDx);
    assert_eq!(
        common::identity(&back.packages),
        common::identity(&a.packages)
    );
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    // Everything vigil writes comes back, not just the identity.
    let mut orig = a.packages.clone();
    let mut got = back.packages.clone();
    let key = |p: &vigil_contracts::Package| {
        (
            p.kind,
            p.name.clone(),
            p.version.clone(),
            p.locations.clone(),
        )
    };
    orig.sort_by_key(key);
    got.sort_by_key(key);
    for (o, g) in orig.iter().zip(&got) {
        assert_eq!(o.licenses, g.licenses, "{}", o.name);
        assert_eq!(o.cpes, g.cpes, "{}", o.name);
        assert_eq!(o.locations, g.locations, "{}", o.name);
        assert_eq!(o.found_by, g.found_by, "{}", o.name);
        assert_eq!(o.metadata, g.metadata, "{}", o.name);
        assert_eq!(o.arch, g.arch, "{}", o.name);
        assert_eq!(o.source_name, g.source_name, "{}", o.name);
    }
    let d = back.distro.unwrap();
    assert_eq!(
        (d.id.as_str(), d.version_id.as_deref()),
        ("debian", Some("12"))
    );
    assert_eq!(d.codename.as_deref(), Some("bookworm"));
    assert_eq!(
        back.image_name.as_deref(),
        Some("127.0.0.1:5000/testbed/app")
    );
    assert_eq!(
        back.image_digest.as_deref(),
        Some(a.descriptor.image.digest.as_str())
    );
    assert_eq!(back.image_tag.as_deref(), Some("1.0"));
}

#[test]
fn spdx_round_trip_keeps_every_package() {
    let a = common::analysis();
    let text = vigil_sbom::spdx_json(&a, &common::opts()).unwrap();
    let back = import_sbom(&text).unwrap();
    assert_eq!(back.format, SbomFormat::Spdx);
    assert_eq!(
        common::identity(&back.packages),
        common::identity(&a.packages)
    );
    let libc = back.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(
        libc.licenses,
        vec![
            "GPL-2.0-only",
            "LGPL-2.1-or-later",
            "GPL 2+ with weird text"
        ]
    );
    assert_eq!(libc.cpes.len(), 2);
    assert_eq!(libc.locations, vec!["/var/lib/dpkg/status"]);
    assert_eq!(libc.found_by.as_deref(), Some("dpkg-db"));
    let log4j = back
        .packages
        .iter()
        .find(|p| p.name == "log4j-core")
        .unwrap();
    assert_eq!(log4j.kind, PackageType::JavaArchive);
    assert_eq!(
        log4j.metadata.get("group_id").map(String::as_str),
        Some("org.apache.logging.log4j")
    );
    assert_eq!(log4j.licenses, vec!["Apache-2.0 OR MIT"]);
    let d = back.distro.unwrap();
    assert_eq!(
        (d.id.as_str(), d.version_id.as_deref()),
        ("debian", Some("12"))
    );
    assert_eq!(
        back.image_digest.as_deref(),
        Some(a.descriptor.image.digest.as_str())
    );
    assert_eq!(back.image_tag.as_deref(), Some("1.0"));
}

#[test]
fn analysis_from_exported_sbom() {
    let a = common::analysis();
    let text = vigil_sbom::cyclonedx_json(&a, None, &common::opts()).unwrap();
    let got = analysis_from_sbom(&text, 42).unwrap();
    assert!(got.from_sbom);
    assert_eq!(got.analyzed_at, 42);
    assert_eq!(got.descriptor.image.digest, a.descriptor.image.digest);
    assert_eq!(got.descriptor.image.name, a.descriptor.image.name);
    assert_eq!(got.descriptor.image.platform, "linux/amd64");
    assert_eq!(got.descriptor.config.architecture, "amd64");
    assert_eq!(
        common::identity(&got.packages),
        common::identity(&a.packages)
    );
    assert_eq!(got.distro.as_ref().map(|d| d.id.as_str()), Some("debian"));
}

#[test]
fn the_digest_is_the_documents_sha256_when_the_sbom_names_no_image() {
    let text = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[
        {"type":"library","name":"requests","version":"2.31.0","purl":"pkg:pypi/requests@2.31.0"}]}"#;
    let got = analysis_from_sbom(text, 7).unwrap();
    // sha256 of exactly these bytes, computed independently with `sha256sum`.
    let expected = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        )
    };
    assert_eq!(got.descriptor.image.digest, expected);
    assert!(got.descriptor.image.name.starts_with("sbom:sha256:"));
    assert_eq!(got.packages.len(), 1);
    assert_eq!(got.packages[0].kind, PackageType::Python);
    assert!(got.distro.is_none());
}

#[test]
fn purl_types_map_to_package_types() {
    let comps = [
        (
            "pkg:deb/debian/zlib1g@1.2.13?distro=debian-12",
            PackageType::Deb,
        ),
        (
            "pkg:apk/alpine/musl@1.2.4-r2?distro=alpine-3.19.1",
            PackageType::Apk,
        ),
        ("pkg:rpm/redhat/bash@5.1.8-6.el9", PackageType::Rpm),
        ("pkg:pypi/requests@2.31.0", PackageType::Python),
        ("pkg:npm/lodash@4.17.21", PackageType::Npm),
        ("pkg:maven/org.example/lib@1.0", PackageType::JavaArchive),
        (
            "pkg:golang/github.com/pkg/errors@v0.9.1",
            PackageType::GoModule,
        ),
        ("pkg:cargo/serde@1.0.0", PackageType::RustCrate),
        ("pkg:gem/rack@2.2.8", PackageType::Gem),
        ("pkg:nuget/Newtonsoft.Json@13.0.3", PackageType::Dotnet),
        ("pkg:composer/monolog/monolog@3.5.0", PackageType::Php),
        ("pkg:generic/node@20.10.0", PackageType::Binary),
    ];
    let components: Vec<String> = comps
        .iter()
        .enumerate()
        .map(|(i, (purl, _))| {
            format!(r#"{{"type":"library","name":"p{i}","version":"1","purl":"{purl}"}}"#)
        })
        .collect();
    let text = format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{}]}}"#,
        components.join(",")
    );
    let got = import_sbom(&text).unwrap();
    for (i, (_, kind)) in comps.iter().enumerate() {
        assert_eq!(got.packages[i].kind, *kind, "{}", comps[i].0);
    }
    let maven = &got.packages[5];
    assert_eq!(
        maven.metadata.get("group_id").map(String::as_str),
        Some("org.example")
    );
    assert_eq!(
        maven.metadata.get("artifact_id").map(String::as_str),
        Some("lib")
    );
    // No OS component: the distro comes from the OS packages' purls (deb and apk tie
    // 1:1 here, the first in order wins).
    assert!(got.distro.is_some());
}
