//! Rust `Cargo.lock` (declared; directory scans). Binaries built with cargo-auditable
//! are found by extract while the layer streams.

use vigil_contracts::{Package, PackageType};

use crate::catalog::{pkg, purl, CatalogCtx};

/// The `rust-cargo-lock` cataloger: every `[[package]]`, with its `source` and
/// `checksum` as metadata.
pub fn catalog(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let Ok(t) = String::from_utf8_lossy(content).parse::<toml::Table>() else {
        return vec![];
    };
    let Some(arr) = t.get("package").and_then(|p| p.as_array()) else {
        return vec![];
    };
    arr.iter()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let version = p.get("version")?.as_str()?;
            let mut k = pkg(
                name,
                version,
                PackageType::RustCrate,
                path,
                purl("cargo", "", name, version, &[]),
            );
            for key in ["source", "checksum"] {
                if let Some(v) = p.get(key).and_then(|v| v.as_str()) {
                    k.metadata.insert(key.into(), v.into());
                }
            }
            Some(k)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_v3() {
        let l = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"serde\"]\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.190\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"abc\"\n";
        let p = catalog(
            &crate::catalog::tests_ctx(),
            "/src/Cargo.lock",
            l.as_bytes(),
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].purl.as_deref(), Some("pkg:cargo/serde@1.0.190"));
        assert_eq!(p[1].metadata["checksum"], "abc");
    }
}
