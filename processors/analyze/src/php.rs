//! PHP: Composer's `vendor/composer/installed.json` (installed; v1 array or v2
//! `{"packages": […]}`) and `composer.lock` (declared: `packages`, `packages-dev`).

use serde_json::Value;
use vigil_contracts::{Package, PackageType};

use crate::catalog::{pkg, purl, CatalogCtx};

fn composer_pkg(v: &Value, path: &str) -> Option<Package> {
    let full = v.get("name")?.as_str()?;
    let version = v.get("version")?.as_str()?;
    let (ns, name) = full.split_once('/').unwrap_or(("", full));
    let mut p = pkg(
        full,
        version,
        PackageType::Php,
        path,
        purl("composer", ns, name, version, &[]),
    );
    if let Some(Value::Array(l)) = v.get("license") {
        p.licenses = l
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
    }
    Some(p)
}

fn from(v: &Value, keys: &[&str], path: &str) -> Vec<Package> {
    keys.iter()
        .filter_map(|k| v.get(*k).and_then(|p| p.as_array()))
        .flatten()
        .filter_map(|p| composer_pkg(p, path))
        .collect()
}

/// The `php-composer-installed` cataloger.
pub fn catalog_installed(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    match serde_json::from_slice::<Value>(content) {
        Ok(Value::Array(a)) => a.iter().filter_map(|p| composer_pkg(p, path)).collect(),
        Ok(v) => from(&v, &["packages"], path),
        Err(_) => vec![],
    }
}

/// The `php-composer-lock` cataloger.
pub fn catalog_lock(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    match serde_json::from_slice::<Value>(content) {
        Ok(v) => from(&v, &["packages", "packages-dev"], path),
        Err(_) => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_v1_v2_and_lock() {
        let ctx = crate::catalog::tests_ctx();
        let v2 = r#"{"packages":[{"name":"monolog/monolog","version":"2.8.0","license":["MIT"]}],"dev":true}"#;
        let p = catalog_installed(&ctx, "/app/vendor/composer/installed.json", v2.as_bytes());
        assert_eq!(
            p[0].purl.as_deref(),
            Some("pkg:composer/monolog/monolog@2.8.0")
        );
        assert_eq!(p[0].licenses, ["MIT"]);
        let v1 = r#"[{"name":"psr/log","version":"1.1.4"}]"#;
        assert_eq!(
            catalog_installed(&ctx, "/x", v1.as_bytes())[0].name,
            "psr/log"
        );
        let lock = r#"{"packages":[{"name":"a/b","version":"1.0.0"}],"packages-dev":[{"name":"c/d","version":"v2.0"}]}"#;
        assert_eq!(
            catalog_lock(&ctx, "/composer.lock", lock.as_bytes()).len(),
            2
        );
    }
}
