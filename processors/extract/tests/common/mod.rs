//! Read the testbed's OCI layouts directly: index.json → (index →) manifest → layers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).expect("read blob"))
        .expect("parse blob")
}

/// The manifest digest of a layout's `latest` for `arch` (`None`: amd64).
pub fn manifest_digest(layout: &Path, arch: Option<&str>) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let top = &index["manifests"][0];
    let digest = top["digest"].as_str().unwrap().to_string();
    if top["mediaType"].as_str().unwrap_or("").contains("index") {
        let inner = json(layout, &digest);
        let want = arch.unwrap_or("amd64");
        inner["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == want)
            .and_then(|m| m["digest"].as_str())
            .unwrap_or_else(|| panic!("no {want} manifest"))
            .to_string()
    } else {
        digest
    }
}

/// Layer blob digests, bottom first.
pub fn layers(layout: &Path, arch: Option<&str>) -> Vec<String> {
    let m = json(layout, &manifest_digest(layout, arch));
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}
