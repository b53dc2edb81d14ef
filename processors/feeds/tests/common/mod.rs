#![allow(dead_code)]

pub mod http;

use std::collections::BTreeSet;
use std::path::PathBuf;

use vigil_contracts::{Analysis, Distro, Package, PackageType};
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
    let mut d = Analysis::test_descriptor();
    d.image.digest = digest.into();
    Analysis::of_packages(d, distro, packages)
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
