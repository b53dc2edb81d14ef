//! apk: `/lib/apk/db/installed` (`P` name, `V` version, `A` arch, `o` origin, `L` license,
//! `F` directory and `R` file lines for the per-package file list, `Z` the checksum of the
//! `R` file before it: `Q1` + base64 of its sha1, recorded as `sha1:<hex>`).

use base64::Engine as _;

use vigil_contracts::{Distro, Package, PackageType};

use crate::catalog::{distro_qualifier, purl, CatalogCtx};

#[derive(Default)]
struct Stanza {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
    license: Option<String>,
    dir: String,
    files: Vec<String>,
    digests: std::collections::BTreeMap<String, String>,
}

/// `Q1<base64 sha1>` → `sha1:<hex>`; other forms (a plain md5 hex of old databases) are
/// not recorded.
fn apk_checksum(v: &str) -> Option<String> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Q1")?)
        .ok()?;
    (b.len() == 20).then(|| format!("sha1:{}", hex::encode(b)))
}

/// The apk database. Pure.
pub fn parse_apk(path: &str, content: &[u8], distro: Option<&Distro>) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    let mut stanzas = vec![];
    let mut cur = Stanza::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            stanzas.push(std::mem::take(&mut cur));
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "P" => cur.name = Some(v.to_string()),
            "V" => cur.version = Some(v.to_string()),
            "A" => cur.arch = Some(v.to_string()),
            "o" => cur.origin = Some(v.to_string()),
            "L" => cur.license = Some(v.to_string()),
            "F" => cur.dir = v.to_string(),
            "R" => cur
                .files
                .push(vigil_extract::normalize(&format!("/{}/{v}", cur.dir)).0),
            // The checksum of the file named by the `R` line just before.
            "Z" => {
                if let (Some(f), Some(d)) = (cur.files.last(), apk_checksum(v)) {
                    cur.digests.insert(f.clone(), d);
                }
            }
            _ => {}
        }
    }
    stanzas.push(cur);
    stanzas
        .into_iter()
        .filter_map(|s| {
            let name = s.name?;
            let version = s.version?;
            let upstream = s.origin.clone().filter(|o| *o != name);
            Some(Package {
                purl: purl(
                    "apk",
                    distro.map(|d| d.id.as_str()).unwrap_or("alpine"),
                    &name,
                    &version,
                    &[
                        ("arch", s.arch.clone()),
                        ("upstream", upstream),
                        ("distro", distro_qualifier(distro)),
                    ],
                ),
                name,
                version,
                kind: PackageType::Apk,
                arch: s.arch,
                source_name: s.origin,
                source_version: None,
                // An SPDX expression or a list as written: kept whole.
                licenses: s.license.into_iter().collect(),
                locations: vec![path.to_string()],
                cpes: Vec::new(),
                files: s.files,
                metadata: Default::default(),
                found_by: None,
                file_digests: s.digests,
            })
        })
        .collect()
}

/// The `apk-db` cataloger.
pub fn catalog(ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    parse_apk(path, content, ctx.distro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lists_from_f_and_r_lines() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\nZ:Q1x=\nR:libc.musl-x86_64.so.1\n\nP:busybox\nV:1.36.1-r5\nF:bin\nR:busybox\nF:etc/securetty.d\nR:a\n";
        let p = parse_apk("/lib/apk/db/installed", db.as_bytes(), None);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].files,
            ["/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1"]
        );
        assert_eq!(p[0].licenses, ["MIT"]);
        assert_eq!(p[1].files, ["/bin/busybox", "/etc/securetty.d/a"]);
    }
}
