//! .NET: `*.deps.json` (the runtime's dependency manifest): `libraries` of type `package`.

use serde_json::Value;
use vigil_contracts::{Package, PackageType};

use crate::catalog::{pkg, purl, CatalogCtx};

/// The `dotnet-deps` cataloger: `"Name/Version": {"type": "package", …}`.
pub fn catalog(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let Ok(v) = serde_json::from_slice::<Value>(content) else {
        return vec![];
    };
    let Some(libs) = v.get("libraries").and_then(|l| l.as_object()) else {
        return vec![];
    };
    libs.iter()
        .filter(|(_, l)| l.get("type").and_then(|t| t.as_str()) == Some("package"))
        .filter_map(|(k, l)| {
            let (name, version) = k.split_once('/')?;
            let mut p = pkg(
                name,
                version,
                PackageType::Dotnet,
                path,
                purl("nuget", "", name, version, &[]),
            );
            if let Some(s) = l.get("sha512").and_then(|s| s.as_str()) {
                p.metadata.insert("sha512".into(), s.into());
            }
            Some(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_not_projects() {
        let j = r#"{"runtimeTarget":{"name":".NETCoreApp,Version=v6.0"},"libraries":{
            "app/1.0.0":{"type":"project","serviceable":false},
            "Newtonsoft.Json/13.0.1":{"type":"package","serviceable":true,"sha512":"sha512-x"}}}"#;
        let p = catalog(
            &crate::catalog::tests_ctx(),
            "/app/app.deps.json",
            j.as_bytes(),
        );
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].purl.as_deref(),
            Some("pkg:nuget/Newtonsoft.Json@13.0.1")
        );
    }
}
