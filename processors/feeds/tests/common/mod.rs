#![allow(dead_code)]

pub mod http;

use std::collections::BTreeSet;
use std::path::PathBuf;

use vigil_contracts::{
    Analysis, Distro, ImageConfig, ImageDescriptor, ImageRef, Package, PackageType, SourceKind,
};
use vigil_feeds::drivers::Grouped;

pub fn feeds_dir() -> PathBuf {
    vigil_testkit::testbed::feeds_dir()
}

pub fn distro(id: &str, version: &str) -> Distro {
    Distro {
        id: id.into(),
        version_id: Some(version.into()),
        ..Default::default()
    }
}

pub fn pkg(kind: PackageType, name: &str, version: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        kind,
        arch: None,
        source_name: None,
        source_version: None,
        licenses: vec![],
        locations: vec![],
        purl: None,
        cpes: Vec::new(),
        files: Vec::new(),
        metadata: Default::default(),
        found_by: None,
        file_digests: Default::default(),
    }
}

pub fn with_source(mut p: Package, src: &str, src_version: Option<&str>) -> Package {
    p.source_name = Some(src.into());
    p.source_version = src_version.map(Into::into);
    p
}

pub fn analysis(digest: &str, distro: Option<Distro>, packages: Vec<Package>) -> Analysis {
    Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Dir,
                name: "test".into(),
                tag: Some("latest".into()),
                digest: digest.into(),
                index_digest: None,
                config_digest: "sha256:c0".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig::default(),
            layers: vec![],
        },
        distro,
        packages,
        file_count: 0,
        image_size: 0,
        analyzed_at: 0,
        analyzer_version: 1,
        warnings: vec![],
        files: Vec::new(),
        users: Vec::new(),
        groups: Vec::new(),
        secrets: Vec::new(),
        retrieved_files: Vec::new(),
        dockerfile: None,
        passwd_present: false,
        from_sbom: false,
        content_matches: Vec::new(),
    }
}

/// Ids matched for every package of the analysis, against parsed (not stored) advisories.
pub fn matched_ids(a: &Analysis, g: &Grouped) -> BTreeSet<String> {
    vigil_match::match_packages(a, |k| g.get(k).cloned().unwrap_or_default())
        .findings
        .into_iter()
        .map(|f| f.vuln_id)
        .collect()
}

pub fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}
