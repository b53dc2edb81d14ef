//! rpm: the three database formats rpm has used, each read-only and from bytes:
//! SQLite `rpmdb.sqlite` (rpm ≥ 4.16, Fedora/RHEL 9), BerkeleyDB hash `Packages`
//! (RHEL ≤ 8, CentOS, Amazon Linux 2) and ndb `Packages.db` (SUSE). Every format
//! stores the same header blobs, decoded by [`header`].

pub mod bdb;
pub mod header;
pub mod ndb;
pub mod sqlite;

use vigil_contracts::{Distro, Package, PackageType};

use crate::catalog::{distro_qualifier, purl, CatalogCtx};
pub use header::{HeaderError, RpmHeader};

/// Why a database could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpmDbError {
    #[error("not a {0} database")]
    NotThisFormat(&'static str),
    #[error("corrupt {format} database: {message}")]
    Corrupt {
        format: &'static str,
        message: String,
    },
}

/// The header blobs of a database, whichever format it is in (by magic).
pub fn header_blobs(content: &[u8]) -> Result<Vec<Vec<u8>>, RpmDbError> {
    if content.starts_with(b"SQLite format 3\0") {
        sqlite::blobs(content)
    } else if ndb::is_ndb(content) {
        ndb::blobs(content)
    } else {
        bdb::blobs(content)
    }
}

/// `[epoch:]version-release`, as `rpm -q --qf '%{EVR}'` prints it.
pub fn evr(h: &RpmHeader) -> String {
    let vr = match &h.release {
        Some(r) if !r.is_empty() => format!("{}-{r}", h.version),
        _ => h.version.clone(),
    };
    match h.epoch {
        Some(e) => format!("{e}:{vr}"),
        None => vr,
    }
}

/// Source package name and version from `SOURCERPM` (`bash-5.1.8-6.el9.src.rpm`).
pub fn split_source_rpm(s: &str) -> Option<(String, String)> {
    let base = s.strip_suffix(".rpm")?;
    let base = base.rsplit_once('.').map(|x| x.0).unwrap_or(base); // arch: src, nosrc
    let (nv, release) = base.rsplit_once('-')?;
    let (name, version) = nv.rsplit_once('-')?;
    Some((name.to_string(), format!("{version}-{release}")))
}

/// path → `sha256:<hex>` / `md5:<hex>` from FILEDIGESTS by FILEDIGESTALGO (8 sha256;
/// 1 or absent md5). Another algorithm (sha1 2, sha384 9, sha512 10, …) is named by
/// its id (`pgp-hash-<id>:`), which nothing compares.
pub fn file_digests(h: &RpmHeader) -> std::collections::BTreeMap<String, String> {
    let algo = match h.file_digest_algo {
        None | Some(1) => "md5".to_string(),
        Some(2) => "sha1".to_string(),
        Some(8) => "sha256".to_string(),
        Some(9) => "sha384".to_string(),
        Some(10) => "sha512".to_string(),
        Some(n) => format!("pgp-hash-{n}"),
    };
    h.file_digests
        .iter()
        .map(|(path, d)| (path.clone(), format!("{algo}:{d}")))
        .collect()
}

/// A package from one decoded header. `gpg-pubkey` pseudo-packages are skipped.
pub fn package(h: &RpmHeader, path: &str, distro: Option<&Distro>) -> Option<Package> {
    if h.name == "gpg-pubkey" {
        return None;
    }
    let version = evr(h);
    let mut p = Package::new(&h.name, &version, PackageType::Rpm);
    p.arch = h.arch.clone();
    p.locations = vec![path.to_string()];
    p.licenses = h.license.iter().cloned().collect();
    p.files = h.files.clone();
    p.file_digests = file_digests(h);
    if let Some(s) = &h.source_rpm {
        p.metadata.insert("source_rpm".into(), s.clone());
        if let Some((n, v)) = split_source_rpm(s) {
            p.source_name = Some(n);
            p.source_version = Some(v);
        }
    }
    if let Some(e) = h.epoch {
        p.metadata.insert("epoch".into(), e.to_string());
    }
    if let Some(r) = &h.release {
        p.metadata.insert("release".into(), r.clone());
    }
    if let Some(v) = &h.vendor {
        p.metadata.insert("vendor".into(), v.clone());
    }
    // RPMTAG_MODULARITYLABEL (`nodejs:18:8090020231019152822:a75119d5`): the package was
    // built for that module stream; the matcher applies module advisories by it.
    if let Some(m) = h.modularity_label.as_deref().map(str::trim) {
        if !m.is_empty() {
            p.metadata.insert("modularity_label".into(), m.to_string());
        }
    }
    let namespace = distro.map(|d| d.id.as_str()).unwrap_or("");
    p.purl = purl(
        "rpm",
        namespace,
        &h.name,
        &match &h.release {
            Some(r) if !r.is_empty() => format!("{}-{r}", h.version),
            _ => h.version.clone(),
        },
        &[
            ("arch", h.arch.clone()),
            ("epoch", h.epoch.map(|e| e.to_string())),
            ("upstream", h.source_rpm.clone()),
            ("distro", distro_qualifier(distro)),
        ],
    );
    Some(p)
}

/// Every package of a database (any format). Bad headers are skipped; a database that
/// cannot be read at all is an error.
pub fn parse_rpmdb(
    path: &str,
    content: &[u8],
    distro: Option<&Distro>,
) -> Result<Vec<Package>, RpmDbError> {
    let blobs = header_blobs(content)?;
    Ok(blobs
        .iter()
        .filter_map(|b| RpmHeader::parse(b).ok())
        .filter_map(|h| package(&h, path, distro))
        .collect())
}

/// The `rpm-db` cataloger. An unreadable database gives no packages (the error is
/// not fatal for the image).
pub fn catalog(ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    parse_rpmdb(path, content, ctx.distro).unwrap_or_else(|e| {
        tracing::warn!(path, error = %e, "rpm database not read");
        vec![]
    })
}
