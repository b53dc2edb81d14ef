//! Python: installed packages (`*.dist-info/METADATA` + `RECORD`, `*.egg-info`
//! directories and files, `EGG-INFO/PKG-INFO` of unpacked eggs; zipped eggs are read by
//! extract while the layer streams) and declared sources
//! (`poetry.lock`, `Pipfile.lock`, `uv.lock`, `requirements*.txt`).

use std::collections::BTreeSet;

use vigil_contracts::{Package, PackageType};

use crate::catalog::{join, parent, pkg, purl, CatalogCtx};

/// PEP 503 normalised name (shared with extract's zipped-egg reader).
pub use vigil_extract::detect::python_egg::normalize_name;

fn pypi_purl(name: &str, version: &str) -> Option<String> {
    purl("pypi", "", &normalize_name(name), version, &[])
}

/// One RECORD (CSV: path, hash, size) entry's path, quotes handled.
fn record_path(line: &str) -> Option<String> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    // The hash and size never contain commas: split from the right.
    let mut parts = line.rsplitn(3, ',');
    let _size = parts.next();
    let _hash = parts.next();
    parts
        .next()
        .map(str::to_string)
        .or_else(|| Some(line.to_string()))
}

/// Package from METADATA/PKG-INFO text (RFC 822 style headers, body ignored): one
/// reading shared with extract, which reads the `EGG-INFO/PKG-INFO` of zipped eggs.
pub use vigil_extract::detect::python_egg::parse_metadata;

/// The `python-installed` cataloger: a dist-info METADATA (with RECORD), an egg-info
/// directory's PKG-INFO (with installed-files.txt), an egg-info file, an egg's
/// EGG-INFO/PKG-INFO.
pub fn catalog_installed(ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    if path.ends_with(".egg-info")
        && ctx
            .fs
            .entries
            .get(path)
            .is_some_and(|e| e.kind == vigil_contracts::EntryKind::Dir)
    {
        return vec![];
    }
    let Some(mut p) = parse_metadata(path, &String::from_utf8_lossy(content)) else {
        return vec![];
    };
    let meta_dir = parent(path);
    let mut files: BTreeSet<String> = BTreeSet::new();
    if meta_dir.ends_with(".dist-info") {
        let site = parent(meta_dir);
        if let Some(record) = ctx.fs.files.get(&format!("{meta_dir}/RECORD")) {
            for l in String::from_utf8_lossy(record).lines() {
                if let Some(r) = record_path(l) {
                    files.insert(join(site, &r));
                }
            }
            p.locations.push(format!("{meta_dir}/RECORD"));
        }
    } else if meta_dir.ends_with(".egg-info") {
        if let Some(inst) = ctx.fs.files.get(&format!("{meta_dir}/installed-files.txt")) {
            for l in String::from_utf8_lossy(inst).lines() {
                let l = l.trim();
                if !l.is_empty() {
                    files.insert(join(meta_dir, l));
                }
            }
        }
    }
    if let Some(top) = ctx.fs.files.get(&format!("{meta_dir}/top_level.txt")) {
        let t: Vec<&str> = std::str::from_utf8(top)
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !t.is_empty() {
            p.metadata.insert("top_level".into(), t.join(","));
        }
    }
    p.files = files.into_iter().collect();
    vec![p]
}

fn toml_packages(path: &str, text: &str) -> Vec<Package> {
    let Ok(v) = text.parse::<toml::Table>() else {
        return vec![];
    };
    let Some(arr) = v.get("package").and_then(|p| p.as_array()) else {
        return vec![];
    };
    arr.iter()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let version = p.get("version").and_then(|v| v.as_str()).unwrap_or("");
            Some(pkg(
                name,
                version,
                PackageType::Python,
                path,
                pypi_purl(name, version),
            ))
        })
        .collect()
}

/// `poetry.lock` and `uv.lock` (`[[package]]` name/version, TOML) and `Pipfile.lock`
/// (JSON `default`/`develop` maps of `"==VERSION"`).
pub fn catalog_lock(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    if path.ends_with("Pipfile.lock") {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return vec![];
        };
        let mut out = vec![];
        for section in ["default", "develop"] {
            if let Some(m) = v.get(section).and_then(|s| s.as_object()) {
                for (name, spec) in m {
                    let version = spec
                        .get("version")
                        .and_then(|v| v.as_str())
                        .map(|v| v.trim_start_matches("==").to_string())
                        .unwrap_or_default();
                    out.push(pkg(
                        name,
                        &version,
                        PackageType::Python,
                        path,
                        pypi_purl(name, &version),
                    ));
                }
            }
        }
        return out;
    }
    toml_packages(path, &text)
}

/// One requirement line: `name[extras] ==1.0 ; marker  # comment` → (name, pinned version).
pub fn parse_requirement(line: &str) -> Option<(String, String)> {
    let line = line.split(" #").next()?.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('-') || line.contains("://") {
        return None;
    }
    let line = line.split(';').next()?.trim();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() {
        return None;
    }
    let rest = line[end..].trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']').map(|x| x.1).unwrap_or("").trim_start(),
        None => rest,
    };
    let version = rest
        .strip_prefix("===")
        .or_else(|| rest.strip_prefix("=="))
        .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.contains('*'))
        .unwrap_or_default();
    Some((name.to_string(), version))
}

/// `requirements*.txt`: every requirement; only `==`/`===` pins carry a version.
pub fn catalog_requirements(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let text = String::from_utf8_lossy(content).replace("\\\n", " ");
    text.lines()
        .filter_map(parse_requirement)
        .map(|(n, v)| pkg(&n, &v, PackageType::Python, path, pypi_purl(&n, &v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_requirements() {
        assert_eq!(normalize_name("Jinja2"), "jinja2");
        assert_eq!(normalize_name("zope.interface__x"), "zope-interface-x");
        assert_eq!(
            parse_requirement("Django==3.2.0  # web"),
            Some(("Django".into(), "3.2.0".into()))
        );
        assert_eq!(
            parse_requirement("requests[socks] == 2.19.1 ; python_version > '3'"),
            Some(("requests".into(), "2.19.1".into()))
        );
        assert_eq!(
            parse_requirement("flask>=2"),
            Some(("flask".into(), "".into()))
        );
        assert_eq!(parse_requirement("-r base.txt"), None);
        assert_eq!(parse_requirement("# c"), None);
        assert_eq!(record_path("\"a,b.py\",sha256=x,1"), Some("a,b.py".into()));
        assert_eq!(
            record_path("../../bin/x,sha256=y,2"),
            Some("../../bin/x".into())
        );
    }
}
