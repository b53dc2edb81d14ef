//! Catalogers: declarations of which kept files they read and a pure parse function.
//! Add a cataloger by adding an entry to [`CATALOGERS`] (and its paths to
//! `vigil_extract::KEEP_RULES`, which a test checks).

use std::collections::BTreeMap;

use packageurl::PackageUrl;
use vigil_contracts::{Distro, Package, PackageType};
use vigil_extract::glob_match;

/// A parse function: path in the image, the file's bytes, the detected distro.
pub type ParseFn = fn(&str, &[u8], Option<&Distro>) -> Vec<Package>;

/// One cataloger.
pub struct Cataloger {
    pub name: &'static str,
    /// Paths (exact or simple globs, `*` within one segment) of the files it parses.
    pub globs: &'static [&'static str],
    /// Paths matched by `globs` that are not its files.
    pub exclude: &'static [&'static str],
    pub parse: ParseFn,
}

impl Cataloger {
    pub fn matches(&self, path: &str) -> bool {
        self.globs.iter().any(|g| glob_match(g, path))
            && !self.exclude.iter().any(|g| glob_match(g, path))
    }
}

/// Every cataloger, in one list.
pub const CATALOGERS: &[Cataloger] = &[
    Cataloger {
        name: "dpkg-db",
        globs: &["/var/lib/dpkg/status", "/var/lib/dpkg/status.d/*"],
        exclude: &["/var/lib/dpkg/status.d/*.md5sums"],
        parse: parse_dpkg,
    },
    Cataloger {
        name: "apk-db",
        globs: &["/lib/apk/db/installed"],
        exclude: &[],
        parse: parse_apk,
    },
];

/// One stanza of a Debian control-style file: fields in order, continuation lines
/// joined with `\n`.
fn stanzas(text: &str, sep: char) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
            continue;
        }
        if sep == ':' && (line.starts_with(' ') || line.starts_with('\t')) {
            if let Some(v) = last.as_ref().and_then(|k| cur.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(sep) {
            let k = k.trim().to_string();
            cur.insert(k.clone(), v.trim().to_string());
            last = Some(k);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `distro=debian-12` as Syft writes it.
fn distro_qualifier(d: Option<&Distro>) -> Option<String> {
    let d = d?;
    Some(match &d.version_id {
        Some(v) => format!("{}-{v}", d.id),
        None => d.id.clone(),
    })
}

/// Build a purl; `None` when a part is not representable.
fn purl(
    ty: &str,
    namespace: &str,
    name: &str,
    version: &str,
    qualifiers: &[(&str, Option<String>)],
) -> Option<String> {
    let mut p = PackageUrl::new(ty.to_string(), name.to_string()).ok()?;
    p.with_namespace(namespace.to_string()).ok()?;
    p.with_version(version.to_string()).ok()?;
    for (k, v) in qualifiers {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            p.add_qualifier(k.to_string(), v.clone()).ok()?;
        }
    }
    Some(p.to_string())
}

/// `Source: name` or `Source: name (version)`.
fn split_source(s: &str) -> (String, Option<String>) {
    match s.split_once('(') {
        Some((n, v)) => (
            n.trim().to_string(),
            Some(v.trim_end().trim_end_matches(')').trim().to_string()),
        ),
        None => (s.trim().to_string(), None),
    }
}

/// dpkg databases: `/var/lib/dpkg/status` (only packages whose status says the files are
/// installed: `install ok installed`, also `hold ok installed`) and distroless
/// `/var/lib/dpkg/status.d/*` (one or more stanzas per file, all installed).
pub fn parse_dpkg(path: &str, content: &[u8], distro: Option<&Distro>) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    let is_status_d = path != "/var/lib/dpkg/status";
    let namespace = distro.map(|d| d.id.as_str()).unwrap_or("debian");
    stanzas(&text, ':')
        .into_iter()
        .filter_map(|m| {
            let name = m.get("Package")?.clone();
            let version = m.get("Version")?.clone();
            if !is_status_d {
                let status = m.get("Status")?;
                if status.split_whitespace().nth(2) != Some("installed") {
                    return None;
                }
            }
            let (source_name, source_version) = match m.get("Source") {
                Some(s) => {
                    let (n, v) = split_source(s);
                    (Some(n), Some(v.unwrap_or_else(|| version.clone())))
                }
                None => (None, None),
            };
            let arch = m.get("Architecture").cloned();
            let upstream =
                source_name.as_ref().filter(|s| **s != name).map(|s| {
                    match source_version.as_ref().filter(|v| **v != version) {
                        Some(v) => format!("{s}@{v}"),
                        None => s.clone(),
                    }
                });
            Some(Package {
                purl: purl(
                    "deb",
                    namespace,
                    &name,
                    &version,
                    &[
                        ("arch", arch.clone()),
                        ("upstream", upstream),
                        ("distro", distro_qualifier(distro)),
                    ],
                ),
                name,
                version,
                kind: PackageType::Deb,
                arch,
                source_name,
                source_version,
                licenses: vec![],
                locations: vec![path.to_string()],
                cpes: Vec::new(),
                files: Vec::new(),
                metadata: Default::default(),
                found_by: None,
            })
        })
        .collect()
}

/// The apk database `/lib/apk/db/installed`: `P` name, `V` version, `A` arch,
/// `o` origin (source package), `L` license.
pub fn parse_apk(path: &str, content: &[u8], distro: Option<&Distro>) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    stanzas(&text, ':')
        .into_iter()
        .filter_map(|m| {
            let name = m.get("P")?.clone();
            let version = m.get("V")?.clone();
            let arch = m.get("A").cloned();
            let origin = m.get("o").cloned();
            let upstream = origin.clone().filter(|o| *o != name);
            Some(Package {
                purl: purl(
                    "apk",
                    distro.map(|d| d.id.as_str()).unwrap_or("alpine"),
                    &name,
                    &version,
                    &[
                        ("arch", arch.clone()),
                        ("upstream", upstream),
                        ("distro", distro_qualifier(distro)),
                    ],
                ),
                name,
                version,
                kind: PackageType::Apk,
                arch,
                source_name: origin,
                source_version: None,
                // An SPDX expression or a list as written: kept whole.
                licenses: m.get("L").map(|l| vec![l.clone()]).unwrap_or_default(),
                locations: vec![path.to_string()],
                cpes: Vec::new(),
                files: Vec::new(),
                metadata: Default::default(),
                found_by: None,
            })
        })
        .collect()
}
