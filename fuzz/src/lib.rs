//! The bodies of vigil's fuzz targets, one function per parser. Each target in
//! `fuzz_targets/` is one line calling one of these, so that the list of what is fuzzed
//! reads in one place. Besides "no panic, no hang, bounded memory" (what libFuzzer
//! checks), a body asserts the properties its parser promises:
//!
//! * catalogers: every package they return survives the MessagePack record codec;
//! * version comparators: a total order (reflexive, antisymmetric, transitive on the
//!   triples the fuzzer finds).
//!
//! Inputs that pick among several formats or paths use their first byte as the
//! selector, so one target covers a family of sibling parsers.

use std::cmp::Ordering;

use vigil_analyze::catalog::{CatalogCtx, CATALOGERS};
use vigil_analyze::squash::{squash, SquashedFs};
use vigil_contracts::{codec, Analysis, Package};
use vigil_extract::detect::{elf, golang, java, python_egg, runtime, rust_audit, secrets};
use vigil_extract::ExtractLimits;
use vigil_match::Comparator;

/// Split off the selector byte.
fn select(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A package list must survive the record codec unchanged.
fn check_codec(packages: Vec<Package>) {
    if packages.is_empty() {
        return;
    }
    let analysis = Analysis::of_packages(Analysis::test_descriptor(), None, packages);
    let bytes = codec::encode(&analysis).expect("an analysis encodes");
    let back: Analysis = codec::decode(&bytes).expect("an encoded analysis decodes");
    assert_eq!(back.packages, analysis.packages);
}

thread_local! {
    static EMPTY_FS: SquashedFs = squash(&[]);
}

/// Run the cataloger called `name` on `data` as the file at `path`.
pub fn cataloger(name: &str, path: &str, data: &[u8]) {
    let c = CATALOGERS
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cataloger {name}"));
    assert!(c.matches(path), "{path} is not a path of {name}");
    let packages = EMPTY_FS.with(|fs| {
        let ctx = CatalogCtx { fs, distro: None };
        (c.parse)(&ctx, path, data)
    });
    check_codec(packages);
}

/// A cataloger reading several file formats: the selector byte picks the path.
pub fn cataloger_paths(name: &str, paths: &[&str], data: &[u8]) {
    if let Some((s, rest)) = select(data) {
        cataloger(name, paths[s as usize % paths.len()], rest);
    }
}

pub fn dpkg_status(data: &[u8]) {
    cataloger_paths(
        "dpkg-db",
        &["/var/lib/dpkg/status", "/var/lib/dpkg/status.d/base"],
        data,
    );
}

pub fn dpkg_copyright(data: &[u8]) {
    let t = text(data);
    let _ = vigil_analyze::dpkg::parse_copyright_licenses(&t);
    let _ = vigil_analyze::dpkg::parse_md5sums(&t);
}

pub fn apk_installed(data: &[u8]) {
    cataloger("apk-db", "/lib/apk/db/installed", data);
}

pub fn rpm_db(data: &[u8]) {
    cataloger_paths(
        "rpm-db",
        &[
            "/var/lib/rpm/Packages",
            "/var/lib/rpm/rpmdb.sqlite",
            "/usr/lib/sysimage/rpm/Packages.db",
        ],
        data,
    );
}

pub fn rpm_header(data: &[u8]) {
    if let Ok(h) = vigil_analyze::rpm::RpmHeader::parse(data) {
        let _ = vigil_analyze::rpm::evr(&h);
        let p = vigil_analyze::rpm::package(&h, "/var/lib/rpm/Packages", None);
        check_codec(p.into_iter().collect());
    }
}

pub fn python_metadata(data: &[u8]) {
    cataloger_paths(
        "python-installed",
        &[
            "/usr/lib/python3/site-packages/x-1.0.dist-info/METADATA",
            "/usr/lib/python3/site-packages/x-1.0.egg-info/PKG-INFO",
            "/usr/lib/python3/site-packages/x-1.0.egg-info",
        ],
        data,
    );
}

pub fn python_lock(data: &[u8]) {
    cataloger_paths(
        "python-lock",
        &["/src/poetry.lock", "/src/Pipfile.lock", "/src/uv.lock"],
        data,
    );
}

pub fn python_requirements(data: &[u8]) {
    cataloger("python-requirements", "/src/requirements.txt", data);
}

pub fn npm_package_json(data: &[u8]) {
    cataloger(
        "javascript-installed",
        "/app/node_modules/x/package.json",
        data,
    );
}

pub fn npm_lock(data: &[u8]) {
    cataloger_paths(
        "javascript-lock",
        &[
            "/app/package-lock.json",
            "/app/yarn.lock",
            "/app/pnpm-lock.yaml",
        ],
        data,
    );
}

pub fn ruby_gemspec(data: &[u8]) {
    cataloger(
        "ruby-installed-gemspec",
        "/usr/lib/ruby/gems/3.1.0/specifications/x-1.0.gemspec",
        data,
    );
}

pub fn ruby_gemfile_lock(data: &[u8]) {
    cataloger("ruby-gemfile-lock", "/app/Gemfile.lock", data);
}

pub fn dotnet_deps(data: &[u8]) {
    cataloger("dotnet-deps", "/app/x.deps.json", data);
}

pub fn php_composer(data: &[u8]) {
    if let Some((s, rest)) = select(data) {
        if s % 2 == 0 {
            cataloger(
                "php-composer-installed",
                "/app/vendor/composer/installed.json",
                rest,
            );
        } else {
            cataloger("php-composer-lock", "/app/composer.lock", rest);
        }
    }
}

pub fn go_mod(data: &[u8]) {
    let t = text(data);
    let _ = vigil_analyze::golang::parse_go_sum(&t);
    cataloger("go-mod-file", "/src/go.mod", data);
}

pub fn cargo_lock(data: &[u8]) {
    cataloger("rust-cargo-lock", "/src/Cargo.lock", data);
}

pub fn passwd_group(data: &[u8]) {
    let t = text(data);
    for u in vigil_analyze::content::parse_passwd(&t) {
        assert!(!u.name.contains(':') && !u.name.contains('\n'));
    }
    for g in vigil_analyze::content::parse_group(&t) {
        assert!(!g.name.contains(':') && !g.name.contains('\n'));
    }
}

pub fn os_release(data: &[u8]) {
    let _ = vigil_analyze::parse_os_release(&text(data));
}

pub fn dockerfile(data: &[u8]) {
    let t = text(data);
    let _ = vigil_analyze::dockerfile::actual(&t);
    for line in t.lines().take(64) {
        let _ = vigil_analyze::dockerfile::history_line(line);
    }
}

pub fn elf_parse(data: &[u8]) {
    if let Some(e) = elf::Elf::parse(data) {
        for name in [".go.buildinfo", ".dep-v0", ".rodata"] {
            let _ = e.section_data(name);
        }
        let _ = e.read_vaddr(0x1000, 64);
    }
}

pub fn go_buildinfo(data: &[u8]) {
    if let Ok(Some(info)) = golang::from_elf(data) {
        check_codec(golang::packages(&info, "/usr/local/bin/app"));
    }
    if let Ok(info) = golang::from_window(data) {
        check_codec(golang::packages(&info, "/usr/local/bin/app"));
    }
}

pub fn rust_audit(data: &[u8]) {
    let _ = rust_audit::decode(data);
    if let Ok(p) = rust_audit::from_elf(data, "/usr/local/bin/app") {
        check_codec(p);
    }
}

pub fn java_archive(data: &[u8]) {
    let limits = java::JavaLimits {
        max_depth: 3,
        max_decompressed: 8 << 20,
        max_nested_bytes: 4 << 20,
    };
    let scan = java::scan(data, "/app/app.jar", &limits);
    check_codec(scan.packages);
}

pub fn python_egg(data: &[u8]) {
    let scan = python_egg::scan(data, "/usr/lib/python3/site-packages/x-1.0-py3.11.egg");
    check_codec(scan.packages);
}

pub fn java_manifest(data: &[u8]) {
    let _ = java::parse_manifest(&text(data));
}

thread_local! {
    static SECRETS: (secrets::SecretScanner, secrets::SecretScanner) = (
        secrets::SecretScanner::default_rules(),
        secrets::SecretScanner::default_rules().without_prefilter(),
    );
}

/// The secret rules: lines in range, and the literal prefilter never changes an answer.
pub fn secret_rules(data: &[u8]) {
    SECRETS.with(|(fast, plain)| {
        let lines = data.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let hits = fast.scan(data);
        for (_, line) in &hits {
            assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
        }
        assert_eq!(hits, plain.scan(data), "the prefilter changed the answer");
    });
}

pub fn runtime_version(data: &[u8]) {
    const PATHS: [&str; 5] = [
        "/usr/bin/python3.11",
        "/usr/local/bin/node",
        "/usr/lib/jvm/java-17/bin/java",
        "/usr/lib/jvm/java-17/release",
        "/bin/busybox",
    ];
    if let Some((s, rest)) = select(data) {
        let path = PATHS[s as usize % PATHS.len()];
        check_codec(runtime::detect(path, rest).into_iter().collect());
    }
}

/// A whole layer blob (tar, gzip or zstd) through the extract stage's indexer, with
/// small limits so that bombs are cut early.
pub fn layer_tar(data: &[u8]) {
    let limits = ExtractLimits {
        max_entry_bytes: 4 << 20,
        max_total_bytes: 16 << 20,
        max_entries: 10_000,
        max_kept_file_bytes: 1 << 20,
        hash_files: true,
        ..ExtractLimits::default()
    };
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    if let Ok(index) = vigil_extract::index_layer(data, digest, &limits) {
        let bytes = codec::encode(&index).expect("a layer index encodes");
        let _: vigil_contracts::LayerIndex = codec::decode(&bytes).expect("and decodes");
    }
}

/// Version ordering of one ecosystem (selector byte) on versions separated by NUL:
/// reflexive, antisymmetric and, for the third version, transitive (but Maven).
pub fn version_order(data: &[u8]) {
    let Some((s, rest)) = select(data) else {
        return;
    };
    let cmp = Comparator::ALL[s as usize % Comparator::ALL.len()];
    let t = text(rest);
    let mut parts = t.split('\0');
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return;
    };
    let c = parts.next();
    let ab = cmp.compare(a, b);
    assert_eq!(
        cmp.compare(a, a),
        Ordering::Equal,
        "{cmp:?}: {a:?} != itself"
    );
    assert_eq!(
        cmp.compare(b, a),
        ab.reverse(),
        "{cmp:?}: {a:?} vs {b:?} is not antisymmetric"
    );
    // Maven's `ComparableVersion` (3.8, the reference vigil follows and is tested
    // against) is itself not transitive when a version starts with a qualifier: `$.0`
    // < `.a8` (a qualifier is below a number) < `` (`alpha` is below a release) < `$.0`
    // (an unknown qualifier is above a release). vigil keeps Maven's answers.
    // Where an ordering falls back to the generic one for versions outside its grammar,
    // transitivity holds among versions inside it and among versions outside it
    // (`Comparator::in_grammar`), which is what is checked.
    let same_side = |c: &str| {
        let inside = cmp.in_grammar(a);
        cmp.in_grammar(b) == inside && cmp.in_grammar(c) == inside
    };
    // rpm: a version without a release matches every release of its version (as rpm
    // and Grype compare a constraint that names no release), an equality that is not
    // transitive by design; checked only when all three carry a release.
    let has_release = |v: &str| {
        let v = v.trim();
        let v = v.split_once(':').map_or(v, |(_, rest)| rest);
        v.rsplit_once('-').is_some_and(|(_, r)| !r.is_empty())
    };
    let rpm_ok = |c: &str| cmp != Comparator::Rpm || [a, b, c].into_iter().all(has_release);
    if let Some(c) = c.filter(|c| cmp != Comparator::Maven && same_side(c) && rpm_ok(c)) {
        let bc = cmp.compare(b, c);
        if ab != Ordering::Greater && bc != Ordering::Greater {
            assert_ne!(
                cmp.compare(a, c),
                Ordering::Greater,
                "{cmp:?}: {a:?} <= {b:?} <= {c:?} but {a:?} > {c:?}"
            );
        }
    }
}

/// Native range expressions (npm ranges, Cargo requirements): never panic.
pub fn version_range(data: &[u8]) {
    let Some((s, rest)) = select(data) else {
        return;
    };
    let cmp = if s % 2 == 0 {
        Comparator::Npm
    } else {
        Comparator::Cargo
    };
    let t = text(rest);
    if let Some((version, range)) = t.split_once('\0') {
        let _ = cmp.satisfies(version, range);
    }
}

pub fn feed_osv(data: &[u8]) {
    let _ = vigil_feeds::drivers::osv::parse_document("osv", "fuzz.json", data);
}

pub fn feed_debian(data: &[u8]) {
    let _ = vigil_feeds::drivers::debian::parse("debian", data);
}

pub fn feed_alpine(data: &[u8]) {
    let _ = vigil_feeds::drivers::alpine::parse("alpine", data);
}

pub fn feed_nvd(data: &[u8]) {
    let _ = vigil_feeds::drivers::nvd::parse_document("nvd", "fuzz.json", data);
}

pub fn sbom_import(data: &[u8]) {
    if let Ok(imported) = vigil_sbom::import_sbom(&text(data)) {
        let _ = imported;
    }
}
