//! JavaScript: installed `package.json` files (every one, `node_modules` at any depth)
//! and declared lock files: `package-lock.json` v1–v3, `yarn.lock` v1 and berry,
//! `pnpm-lock.yaml` v5–v9.

use serde_json::Value;
use vigil_contracts::{Package, PackageType};

use crate::catalog::{pkg, purl, CatalogCtx};

/// `pkg:npm/%40scope/name@1.0.0`: the scope is the namespace.
pub fn npm_purl(name: &str, version: &str) -> Option<String> {
    match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
        Some((scope, n)) => purl("npm", &format!("@{scope}"), n, version, &[]),
        None => purl("npm", "", name, version, &[]),
    }
}

fn npm_pkg(name: &str, version: &str, path: &str) -> Package {
    pkg(
        name,
        version,
        PackageType::Npm,
        path,
        npm_purl(name, version),
    )
}

fn licenses(v: &Value) -> Vec<String> {
    let one = |l: &Value| match l {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("type").and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    let mut out: Vec<String> = v.get("license").and_then(one).into_iter().collect();
    if let Some(Value::Array(a)) = v.get("licenses") {
        out.extend(a.iter().filter_map(one));
    }
    out
}

/// The `javascript-installed` cataloger: one package per `package.json` with a name and
/// a version.
pub fn catalog_package_json(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let Ok(v) = serde_json::from_slice::<Value>(content) else {
        return vec![];
    };
    let (Some(name), Some(version)) = (
        v.get("name").and_then(|n| n.as_str()),
        v.get("version").and_then(|n| n.as_str()),
    ) else {
        return vec![];
    };
    if name.is_empty() || version.is_empty() {
        return vec![];
    }
    let mut p = npm_pkg(name, version, path);
    p.licenses = licenses(&v);
    if let Some(h) = v.get("homepage").and_then(|h| h.as_str()) {
        p.metadata.insert("homepage".into(), h.into());
    }
    if v.get("private").and_then(|x| x.as_bool()) == Some(true) {
        p.metadata.insert("private".into(), "true".into());
    }
    vec![p]
}

/// `package-lock.json`: v2/v3 `packages` (keys `node_modules/…`), v1 `dependencies`
/// (nested).
pub fn parse_package_lock(path: &str, content: &[u8]) -> Vec<Package> {
    let Ok(v) = serde_json::from_slice::<Value>(content) else {
        return vec![];
    };
    let mut out = vec![];
    if let Some(pkgs) = v.get("packages").and_then(|p| p.as_object()) {
        for (key, p) in pkgs {
            if key.is_empty() || p.get("link").and_then(|l| l.as_bool()) == Some(true) {
                continue;
            }
            let name = p
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .or_else(|| key.rsplit_once("node_modules/").map(|x| x.1.to_string()));
            let (Some(name), Some(version)) = (name, p.get("version").and_then(|v| v.as_str()))
            else {
                continue;
            };
            let mut pk = npm_pkg(&name, version, path);
            if let Some(l) = p.get("license").and_then(|l| l.as_str()) {
                pk.licenses.push(l.into());
            }
            out.push(pk);
        }
        return out;
    }
    fn walk(deps: &serde_json::Map<String, Value>, path: &str, out: &mut Vec<Package>) {
        for (name, d) in deps {
            if let Some(version) = d.get("version").and_then(|v| v.as_str()) {
                if !version.starts_with("file:") {
                    out.push(npm_pkg(name, version, path));
                }
            }
            if let Some(sub) = d.get("dependencies").and_then(|s| s.as_object()) {
                walk(sub, path, out);
            }
        }
    }
    if let Some(deps) = v.get("dependencies").and_then(|d| d.as_object()) {
        walk(deps, path, &mut out);
    }
    out
}

/// Name from a yarn descriptor: `"@scope/name@^1.0.0"`, `name@npm:^1`, `name@patch:…`.
fn descriptor_name(d: &str) -> Option<&str> {
    let d = d.trim().trim_matches('"');
    // The name's first character may be `@` (a scope), so search after it.
    let first = d.chars().next()?.len_utf8();
    let at = d[first..].find('@')? + first;
    Some(&d[..at])
}

fn valid_name(n: &str) -> bool {
    if n.starts_with('@') {
        n.matches('/').count() == 1
    } else {
        !n.contains('/')
    }
}

/// `yarn.lock` v1 (`version "1.2.3"`) and berry (`version: 1.2.3`, `__metadata`,
/// workspace entries skipped).
pub fn parse_yarn_lock(path: &str, content: &[u8]) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    let mut out = vec![];
    let mut name: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            name = None;
            let header = line.trim_end_matches(':');
            if header.starts_with("__metadata")
                || header.contains("@workspace:")
                || header.contains("@link:")
            {
                continue;
            }
            let first = header.split(", ").next().unwrap_or("");
            name = descriptor_name(first).map(str::to_string);
            continue;
        }
        let t = line.trim();
        if let (Some(n), Some(v)) = (
            name.as_ref(),
            t.strip_prefix("version ")
                .or_else(|| t.strip_prefix("version:")),
        ) {
            if line.starts_with("  ") && !line.starts_with("    ") {
                let v = v.trim().trim_matches('"');
                out.push(npm_pkg(n, v, path));
                name = None;
            }
        }
    }
    out
}

/// `pnpm-lock.yaml`: the keys of the top-level `packages:` map: `/name/1.0.0` (v5),
/// `/name@1.0.0` (v6), `name@1.0.0` (v9), peer suffixes `(…)`/`_…` dropped.
pub fn parse_pnpm_lock(path: &str, content: &[u8]) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    let mut out = vec![];
    let mut in_packages = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_packages = line.trim_end() == "packages:";
            continue;
        }
        if !in_packages || !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        let key = line
            .trim()
            .trim_end_matches(':')
            .trim_matches(|c| c == '\'' || c == '"');
        let key = key.strip_prefix('/').unwrap_or(key);
        let key = key.split('(').next().unwrap_or(key);
        let (name, version) = match descriptor_name(key) {
            Some(n) if key.len() > n.len() && valid_name(n) => {
                (n.to_string(), key[n.len() + 1..].to_string())
            }
            _ => match key.rsplit_once('/') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => continue,
            },
        };
        let version = version.split('_').next().unwrap_or("").to_string();
        if name.is_empty() || version.is_empty() {
            continue;
        }
        out.push(npm_pkg(&name, &version, path));
    }
    out
}

/// The `javascript-lock` cataloger.
pub fn catalog_lock(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    if path.ends_with("/yarn.lock") {
        parse_yarn_lock(path, content)
    } else if path.ends_with("/pnpm-lock.yaml") {
        parse_pnpm_lock(path, content)
    } else {
        parse_package_lock(path, content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(p: &[Package]) -> Vec<(String, String)> {
        let mut v: Vec<_> = p
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn yarn_descriptor_starting_with_a_multibyte_character() {
        // Found by the npm_lock fuzz target: slicing after the first byte panicked.
        assert_eq!(descriptor_name("éx@^1"), Some("éx"));
        assert_eq!(descriptor_name("@s/n@^1"), Some("@s/n"));
        assert_eq!(descriptor_name(""), None);
        let lock = "\"left-pad@^1.3.0\":\n  version \"1.3.0\"\n\u{85}\u{85}  res\u{b4}\n";
        assert_eq!(
            nv(&parse_yarn_lock("/app/yarn.lock", lock.as_bytes()))[0].0,
            "left-pad"
        );
    }

    #[test]
    fn package_lock_v1_and_v3() {
        let v1 = r#"{"name":"app","version":"1.0.0","lockfileVersion":1,"dependencies":{
            "lodash":{"version":"4.17.15","resolved":"x","integrity":"sha512-x"},
            "raw-body":{"version":"2.3.2","dependencies":{"depd":{"version":"1.1.1"}}},
            "local":{"version":"file:../local"}}}"#;
        assert_eq!(
            nv(&parse_package_lock("/a/package-lock.json", v1.as_bytes())),
            [
                ("depd".into(), "1.1.1".into()),
                ("lodash".into(), "4.17.15".into()),
                ("raw-body".into(), "2.3.2".into())
            ]
        );
        let v3 = r#"{"name":"app","lockfileVersion":3,"packages":{
            "":{"name":"app","version":"1.0.0"},
            "node_modules/@types/node":{"version":"20.1.0","license":"MIT"},
            "node_modules/raw-body/node_modules/depd":{"version":"1.1.1"},
            "node_modules/ws":{"link":true,"resolved":"packages/ws"}}}"#;
        let p = parse_package_lock("/a/package-lock.json", v3.as_bytes());
        assert_eq!(
            nv(&p),
            [
                ("@types/node".into(), "20.1.0".into()),
                ("depd".into(), "1.1.1".into())
            ]
        );
        let t = p.iter().find(|p| p.name == "@types/node").unwrap();
        assert_eq!(t.purl.as_deref(), Some("pkg:npm/%40types/node@20.1.0"));
    }

    #[test]
    fn yarn_v1_and_berry() {
        let v1 = "# yarn lockfile v1\n\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\":\n  version \"7.12.13\"\n  resolved \"https://x\"\n  dependencies:\n    \"@babel/highlight\" \"^7.12.13\"\n\nlodash@^4.17.15:\n  version \"4.17.21\"\n";
        assert_eq!(
            nv(&parse_yarn_lock("/y/yarn.lock", v1.as_bytes())),
            [
                ("@babel/code-frame".into(), "7.12.13".into()),
                ("lodash".into(), "4.17.21".into())
            ]
        );
        let berry = "__metadata:\n  version: 6\n  cacheKey: 8\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n\n\"lodash@npm:^4.17.15\":\n  version: 4.17.21\n  resolution: \"lodash@npm:4.17.21\"\n  dependencies:\n    version: 9.9.9\n";
        assert_eq!(
            nv(&parse_yarn_lock("/y/yarn.lock", berry.as_bytes())),
            [("lodash".into(), "4.17.21".into())]
        );
    }

    #[test]
    fn pnpm_v5_v6_v9() {
        let v5 = "lockfileVersion: 5.4\n\npackages:\n\n  /lodash/4.17.21:\n    resolution: {integrity: x}\n  /@types/node/18.0.0:\n    dev: true\n  /react-dom/18.2.0_react@18.2.0:\n    dev: false\n";
        assert_eq!(
            nv(&parse_pnpm_lock("/p", v5.as_bytes())),
            [
                ("@types/node".into(), "18.0.0".into()),
                ("lodash".into(), "4.17.21".into()),
                ("react-dom".into(), "18.2.0".into())
            ]
        );
        let v9 = "lockfileVersion: '9.0'\n\nimporters:\n  .:\n    dependencies: {}\n\npackages:\n\n  '@types/node@18.0.0':\n    resolution: {integrity: x}\n\n  react-dom@18.2.0:\n    resolution: {}\n\nsnapshots:\n\n  react-dom@18.2.0(react@18.2.0):\n    dependencies: {}\n";
        assert_eq!(
            nv(&parse_pnpm_lock("/p", v9.as_bytes())),
            [
                ("@types/node".into(), "18.0.0".into()),
                ("react-dom".into(), "18.2.0".into())
            ]
        );
        let v6 = "lockfileVersion: '6.0'\npackages:\n  /lodash@4.17.21:\n    resolution: {}\n  /react-dom@18.2.0(react@18.2.0):\n    dev: false\n";
        assert_eq!(
            nv(&parse_pnpm_lock("/p", v6.as_bytes())),
            [
                ("lodash".into(), "4.17.21".into()),
                ("react-dom".into(), "18.2.0".into())
            ]
        );
    }
}
