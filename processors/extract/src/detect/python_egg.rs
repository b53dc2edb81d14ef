//! Python core metadata (`METADATA`, `PKG-INFO`) and zipped eggs over bytes.
//!
//! [`parse_metadata`] is the one reading of the metadata headers: the analyze stage's
//! `python-installed` cataloger uses it for dist-info and egg-info files, and [`scan`]
//! uses it for the `EGG-INFO/PKG-INFO` inside an egg installed as a zip file
//! (`site-packages/NAME-VER-pyX.Y.egg`), read while the layer streams. Only that one
//! entry is decompressed, and at most [`MAX_PKG_INFO`] bytes of it (zip-bomb safe).

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use vigil_contracts::{Package, PackageType};

/// The `found_by` of packages read from zipped eggs.
pub const CATALOGER: &str = "python-egg";

/// Largest `EGG-INFO/PKG-INFO` read (decompressed).
pub const MAX_PKG_INFO: u64 = 1 << 20;

/// Whether a file name is an egg by its extension.
pub fn is_egg_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 4 && b[b.len() - 4..].eq_ignore_ascii_case(b".egg")
}

/// PEP 503 normalised name: lower case, runs of `-_.` as one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `pkg:pypi/NAME@VERSION` with the normalised name; `None` when not representable.
pub fn pypi_purl(name: &str, version: &str) -> Option<String> {
    let mut p = packageurl::PackageUrl::new("pypi", normalize_name(name)).ok()?;
    if !version.is_empty() {
        p.with_version(version.to_string()).ok()?;
    }
    Some(p.to_string())
}

/// The header section (up to the first blank line) as fields; continuation lines
/// (leading space or tab) are joined with `\n`; a repeated key keeps its last value.
fn headers(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if out.is_empty() {
                last = None;
                continue;
            }
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(v) = last.as_ref().and_then(|k| out.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_string();
            out.insert(k.clone(), v.trim().to_string());
            last = Some(k);
        }
    }
    out
}

/// A package from METADATA/PKG-INFO text (RFC 822 style headers, body ignored), found
/// at `path`: name, version, purl, licenses (`License-Expression`, `License`, else the
/// license classifiers) and `author`/`homepage`/`summary` metadata. `None` without a
/// name. Pure.
pub fn parse_metadata(path: &str, text: &str) -> Option<Package> {
    let head = text.split("\n\n").next().unwrap_or("");
    let m = headers(head);
    let name = m.get("Name")?.trim().to_string();
    let version = m
        .get("Version")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() {
        return None;
    }
    let mut p = Package::new(&name, &version, PackageType::Python);
    p.locations = vec![path.to_string()];
    p.purl = pypi_purl(&name, &version);
    if let Some(l) = m.get("License-Expression").or(m.get("License")) {
        let l = l.lines().next().unwrap_or("").trim();
        if !l.is_empty() && l != "UNKNOWN" {
            p.licenses.push(l.to_string());
        }
    }
    if p.licenses.is_empty() {
        // Classifier lines are repeated keys: only the last survives in `headers`, so scan.
        for l in head.lines() {
            if let Some(c) = l.strip_prefix("Classifier: License :: ") {
                if let Some(last) = c.rsplit(" :: ").next() {
                    p.licenses.push(last.trim().to_string());
                }
            }
        }
    }
    for (k, key) in [
        ("Author", "author"),
        ("Home-page", "homepage"),
        ("Summary", "summary"),
    ] {
        if let Some(v) = m.get(k).filter(|v| !v.is_empty()) {
            p.metadata.insert(key.into(), v.clone());
        }
    }
    Some(p)
}

/// Packages found and warnings for what could not be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EggScan {
    pub packages: Vec<Package>,
    pub warnings: Vec<String>,
}

/// Read the zipped egg whose bytes are `bytes`, found at `location` (an image path):
/// its `EGG-INFO/PKG-INFO` becomes one `python` package located at the egg. Anything
/// unreadable is a warning, never a panic. Pure.
pub fn scan(bytes: &[u8], location: &str) -> EggScan {
    let mut out = EggScan::default();
    let mut zip = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(z) => z,
        Err(e) => {
            out.warnings.push(format!(
                "{location}: egg is not a readable zip archive: {e}"
            ));
            return out;
        }
    };
    let mut f = match zip.by_name("EGG-INFO/PKG-INFO") {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            out.warnings
                .push(format!("{location}: egg has no EGG-INFO/PKG-INFO"));
            return out;
        }
        Err(e) => {
            out.warnings
                .push(format!("{location}: EGG-INFO/PKG-INFO unreadable: {e}"));
            return out;
        }
    };
    let mut data = Vec::new();
    if let Err(e) = (&mut f).take(MAX_PKG_INFO + 1).read_to_end(&mut data) {
        out.warnings
            .push(format!("{location}: EGG-INFO/PKG-INFO unreadable: {e}"));
        return out;
    }
    if data.len() as u64 > MAX_PKG_INFO {
        out.warnings.push(format!(
            "{location}: EGG-INFO/PKG-INFO is over {MAX_PKG_INFO} bytes decompressed; not read"
        ));
        return out;
    }
    match parse_metadata(location, &String::from_utf8_lossy(&data)) {
        Some(mut p) => {
            p.found_by = Some(CATALOGER.into());
            p.metadata
                .insert("metadata_path".into(), "EGG-INFO/PKG-INFO".into());
            out.packages.push(p);
        }
        None => out.warnings.push(format!(
            "{location}: EGG-INFO/PKG-INFO has no Name; no package"
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_stop_at_the_body_and_join_continuations() {
        let p = parse_metadata(
            "/x",
            "Metadata-Version: 2.1\r\nName: Zope.Interface\r\nVersion: 5.0\r\nLicense: ZPL 2.1\r\n  more\r\n\r\nName: body\n",
        )
        .unwrap();
        assert_eq!(p.name, "Zope.Interface");
        assert_eq!(p.purl.as_deref(), Some("pkg:pypi/zope-interface@5.0"));
        assert_eq!(p.licenses, ["ZPL 2.1"]);
        assert_eq!(parse_metadata("/x", "Version: 1\n"), None);
        assert!(is_egg_name("Six-1.0-py3.11.EGG") && is_egg_name("a.egg"));
        assert!(!is_egg_name(".egg") && !is_egg_name("x.egg-info") && !is_egg_name("éegg"));
    }
}
