//! Catalogers: declarations of which kept files they read and a pure parse function.
//! Add a cataloger by adding an entry to [`CATALOGERS`] (and its paths to
//! `vigil_extract::KEEP_RULES`, which a test checks).

use std::collections::BTreeMap;

use packageurl::PackageUrl;
use vigil_contracts::{Distro, Package};
use vigil_extract::glob_match;

use crate::squash::SquashedFs;
use crate::{apk, cargo, dotnet, dpkg, golang, npm, php, python, rpm, ruby};

/// What a parse function may look at besides its own file: the whole squashed view
/// (sibling files such as a dist-info's RECORD) and the detected distro. Never the host.
#[derive(Clone, Copy)]
pub struct CatalogCtx<'a> {
    pub fs: &'a SquashedFs,
    pub distro: Option<&'a Distro>,
}

/// A parse function: the context, the path in the image, the file's bytes.
pub type ParseFn = fn(&CatalogCtx<'_>, &str, &[u8]) -> Vec<Package>;

/// One cataloger.
pub struct Cataloger {
    pub name: &'static str,
    /// Paths (exact or globs: `*` within one segment, `**` any number of segments) of
    /// the files it parses.
    pub globs: &'static [&'static str],
    /// Paths matched by `globs` that are not its files.
    pub exclude: &'static [&'static str],
    /// Reads declared (lock or requirement) files, not installed packages: runs only
    /// when `AnalyzeOptions::declared_sources` is set (directory scans), as in Syft.
    pub declared: bool,
    pub parse: ParseFn,
}

impl Cataloger {
    pub fn matches(&self, path: &str) -> bool {
        self.globs.iter().any(|g| glob_match(g, path))
            && !self.exclude.iter().any(|g| glob_match(g, path))
    }
}

macro_rules! cataloger {
    ($name:literal, [$($g:literal),* $(,)?], [$($x:literal),* $(,)?], $declared:expr, $parse:path) => {
        Cataloger { name: $name, globs: &[$($g),*], exclude: &[$($x),*], declared: $declared, parse: $parse }
    };
}

/// Every cataloger, in one list.
pub const CATALOGERS: &[Cataloger] = &[
    cataloger!(
        "dpkg-db",
        ["/var/lib/dpkg/status", "/var/lib/dpkg/status.d/*"],
        ["/var/lib/dpkg/status.d/*.md5sums"],
        false,
        dpkg::catalog
    ),
    cataloger!("apk-db", ["/lib/apk/db/installed"], [], false, apk::catalog),
    cataloger!(
        "rpm-db",
        [
            "/var/lib/rpm/Packages",
            "/var/lib/rpm/Packages.db",
            "/var/lib/rpm/rpmdb.sqlite",
            "/usr/lib/sysimage/rpm/Packages",
            "/usr/lib/sysimage/rpm/Packages.db",
            "/usr/lib/sysimage/rpm/rpmdb.sqlite",
        ],
        [],
        false,
        rpm::catalog
    ),
    cataloger!(
        "python-installed",
        [
            "/**/*.dist-info/METADATA",
            "/**/*.egg-info/PKG-INFO",
            "/**/*.egg-info",
            "/**/EGG-INFO/PKG-INFO",
        ],
        [],
        false,
        python::catalog_installed
    ),
    cataloger!(
        "python-lock",
        ["/**/poetry.lock", "/**/Pipfile.lock", "/**/uv.lock"],
        [],
        true,
        python::catalog_lock
    ),
    cataloger!(
        "python-requirements",
        ["/**/requirements*.txt"],
        [],
        true,
        python::catalog_requirements
    ),
    cataloger!(
        "javascript-installed",
        ["/**/package.json"],
        [],
        false,
        npm::catalog_package_json
    ),
    cataloger!(
        "javascript-lock",
        [
            "/**/package-lock.json",
            "/**/yarn.lock",
            "/**/pnpm-lock.yaml",
        ],
        ["/**/node_modules/.package-lock.json"],
        true,
        npm::catalog_lock
    ),
    cataloger!(
        "ruby-installed-gemspec",
        ["/**/specifications/*.gemspec"],
        [],
        false,
        ruby::catalog_gemspec
    ),
    cataloger!(
        "ruby-gemfile-lock",
        ["/**/Gemfile.lock"],
        [],
        true,
        ruby::catalog_gemfile_lock
    ),
    cataloger!(
        "dotnet-deps",
        ["/**/*.deps.json"],
        [],
        false,
        dotnet::catalog
    ),
    cataloger!(
        "php-composer-installed",
        ["/**/vendor/composer/installed.json"],
        [],
        false,
        php::catalog_installed
    ),
    cataloger!(
        "php-composer-lock",
        ["/**/composer.lock"],
        [],
        true,
        php::catalog_lock
    ),
    cataloger!(
        "go-mod-file",
        ["/**/go.mod"],
        [],
        true,
        golang::catalog_go_mod
    ),
    cataloger!(
        "rust-cargo-lock",
        ["/**/Cargo.lock"],
        [],
        true,
        cargo::catalog
    ),
];

/// The capabilities table (Markdown) of [`CATALOGERS`]: what each reads and when it
/// runs. `CATALOGERS.md` beside the crate is this, checked by a test
/// (`VIGIL_UPDATE_GOLDEN=1` rewrites it).
pub fn capabilities_markdown() -> String {
    let mut s = String::from(
        "# Catalogers\n\nGenerated from `CATALOGERS` (`processors/analyze/src/catalog.rs`); a test checks it.\n\n| cataloger | reads | excludes | runs for |\n| --- | --- | --- | --- |\n",
    );
    let code = |v: &[&str]| {
        v.iter()
            .map(|g| format!("`{g}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for c in CATALOGERS {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            c.name,
            code(c.globs),
            code(c.exclude),
            if c.declared {
                "directory scans (declared sources)"
            } else {
                "images and directories"
            }
        );
    }
    s + "\nAlso in every analysis: packages extract finds while streaming (Go and Rust binaries, Java archives, zipped Python eggs as `python-egg`, runtimes), kept where their file survives squashing; CPEs for every package (`cpe.rs`); language packages whose files an OS package owns are dropped (`ownership.rs`).\n"
}

/// One stanza of a Debian control-style file: fields in order, continuation lines
/// joined with `\n`.
pub(crate) fn stanzas(text: &str, sep: char) -> Vec<BTreeMap<String, String>> {
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
pub(crate) fn distro_qualifier(d: Option<&Distro>) -> Option<String> {
    let d = d?;
    Some(match &d.version_id {
        Some(v) => format!("{}-{v}", d.id),
        None => d.id.clone(),
    })
}

/// Build a purl; `None` when a part is not representable. An empty namespace or
/// version is left out.
pub(crate) fn purl(
    ty: &str,
    namespace: &str,
    name: &str,
    version: &str,
    qualifiers: &[(&str, Option<String>)],
) -> Option<String> {
    let mut p = PackageUrl::new(ty.to_string(), name.to_string()).ok()?;
    if !namespace.is_empty() {
        p.with_namespace(namespace.to_string()).ok()?;
    }
    if !version.is_empty() {
        p.with_version(version.to_string()).ok()?;
    }
    for (k, v) in qualifiers {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            p.add_qualifier(k.to_string(), v.clone()).ok()?;
        }
    }
    Some(p.to_string())
}

/// [`purl`] without qualifiers.
pub fn purl_of(ty: &str, namespace: &str, name: &str, version: &str) -> Option<String> {
    purl(ty, namespace, name, version, &[])
}

/// The directory part of an absolute path (`/` for top-level entries).
pub(crate) fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((d, _)) => d,
    }
}

/// Join a relative path (may hold `..`) onto an absolute directory, normalised.
pub(crate) fn join(dir: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        return vigil_extract::normalize(rel).0;
    }
    vigil_extract::normalize(&format!("{dir}/{rel}")).0
}

/// A package with its location and the cataloger-independent fields filled.
pub(crate) fn pkg(
    name: &str,
    version: &str,
    kind: vigil_contracts::PackageType,
    location: &str,
    purl: Option<String>,
) -> Package {
    let mut p = Package::new(name, version, kind);
    p.locations = vec![location.to_string()];
    p.purl = purl;
    p
}

pub use crate::apk::parse_apk;
pub use crate::dpkg::parse_dpkg;

/// An empty context for parser unit tests.
#[cfg(test)]
pub(crate) fn tests_ctx() -> CatalogCtx<'static> {
    static FS: std::sync::OnceLock<SquashedFs> = std::sync::OnceLock::new();
    CatalogCtx {
        fs: FS.get_or_init(SquashedFs::default),
        distro: None,
    }
}
