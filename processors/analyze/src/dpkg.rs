//! dpkg: `/var/lib/dpkg/status`, distroless `status.d/*`, per-package file lists
//! (`/var/lib/dpkg/info/NAME[:ARCH].list`) and licenses from machine-readable (DEP-5)
//! `/usr/share/doc/NAME/copyright` files.

use std::collections::BTreeSet;

use vigil_contracts::{Distro, EntryKind, Package, PackageType};

use crate::catalog::{distro_qualifier, purl, stanzas, CatalogCtx};

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
                file_digests: Default::default(),
            })
        })
        .collect()
}

/// Licenses of a DEP-5 copyright file (`Format: …copyright-format…`): the first line
/// of every `License:` field, de-duplicated, in order. Free-form files give none.
pub fn parse_copyright_licenses(text: &str) -> Vec<String> {
    let machine_readable = text
        .lines()
        .take(5)
        .any(|l| l.starts_with("Format:") && l.contains("copyright-format"));
    if !machine_readable {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("License:") {
            let v = v.trim();
            if !v.is_empty() && !out.iter().any(|x| x == v) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// The paths of a `.list` file that are not directories in the squashed view.
fn list_files(ctx: &CatalogCtx<'_>, text: &str) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for l in text.lines() {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l == "/." || l == "/" {
            continue;
        }
        let p = vigil_extract::normalize(l).0;
        // A directory: listed as one, or not listed but with entries below it.
        let is_dir = match ctx.fs.entries.get(&p) {
            Some(e) => e.kind == EntryKind::Dir,
            None => {
                let prefix = format!("{p}/");
                ctx.fs
                    .entries
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
            }
        };
        if is_dir {
            continue;
        }
        out.insert(p);
    }
    out.into_iter().collect()
}

/// The `dpkg-db` cataloger: the database plus each package's file list and licenses.
pub fn catalog(ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let mut pkgs = parse_dpkg(path, content, ctx.distro);
    let info = if path.starts_with("/var/lib/dpkg/status.d/") {
        None
    } else {
        Some("/var/lib/dpkg/info")
    };
    for p in &mut pkgs {
        if let Some(info) = info {
            let candidates = [
                p.arch
                    .as_ref()
                    .map(|a| format!("{info}/{}:{a}.list", p.name)),
                Some(format!("{info}/{}.list", p.name)),
            ];
            if let Some(text) = candidates
                .iter()
                .flatten()
                .find_map(|c| ctx.fs.files.get(c))
            {
                p.files = list_files(ctx, &String::from_utf8_lossy(text));
            }
            let sums = [
                p.arch
                    .as_ref()
                    .map(|a| format!("{info}/{}:{a}.md5sums", p.name)),
                Some(format!("{info}/{}.md5sums", p.name)),
            ];
            if let Some(text) = sums.iter().flatten().find_map(|c| ctx.fs.files.get(c)) {
                p.file_digests = parse_md5sums(&String::from_utf8_lossy(text));
            }
        } else if let Some(sums) = ctx
            .fs
            .files
            .get(&format!("/var/lib/dpkg/status.d/{}.md5sums", p.name))
        {
            // Distroless: `MD5  path/without/leading/slash` per file.
            let text = String::from_utf8_lossy(sums);
            let mut files: Vec<String> = text
                .lines()
                .filter_map(|l| l.split_once("  ").map(|x| x.1.trim()))
                .filter(|f| !f.is_empty())
                .map(|f| vigil_extract::normalize(f).0)
                .collect();
            files.sort();
            files.dedup();
            p.files = files;
            p.file_digests = parse_md5sums(&text);
        }
        if let Some(c) = ctx.fs.read(&format!("/usr/share/doc/{}/copyright", p.name)) {
            p.licenses = parse_copyright_licenses(&String::from_utf8_lossy(c));
        }
    }
    pkgs
}

/// dpkg `md5sums`: `<md5>  <path without the leading slash>` per line → path → `md5:<hex>`.
pub fn parse_md5sums(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .filter(|(md5, f)| md5.len() == 32 && !f.trim().is_empty())
        .map(|(md5, f)| {
            (
                vigil_extract::normalize(f.trim()).0,
                format!("md5:{}", md5.to_ascii_lowercase()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5sums_lines() {
        let m = parse_md5sums(
            "0123456789abcdef0123456789abcdef  usr/bin/x\nbroken line\nABCDEF0123456789ABCDEF0123456789  usr/share/doc/x/copyright\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m["/usr/bin/x"], "md5:0123456789abcdef0123456789abcdef");
        assert_eq!(
            m["/usr/share/doc/x/copyright"],
            "md5:abcdef0123456789abcdef0123456789"
        );
    }

    #[test]
    fn dep5_licenses_only_from_machine_readable_files() {
        let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: zlib\n\nFiles: *\nCopyright: 1995 Jean-loup Gailly\nLicense: Zlib\n\nFiles: debian/*\nLicense: GPL-2+ or Zlib\n Long text.\n\nLicense: Zlib\n text\n";
        assert_eq!(parse_copyright_licenses(dep5), ["Zlib", "GPL-2+ or Zlib"]);
        assert!(parse_copyright_licenses("This is free software.\nLicense: GPL\n").is_empty());
    }
}
