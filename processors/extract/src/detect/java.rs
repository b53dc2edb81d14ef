//! Java archives (jar, war, ear, jpi, hpi) over bytes: `META-INF/MANIFEST.MF`, every
//! `META-INF/maven/**/pom.properties` (a shaded jar has several), `pom.xml` when there
//! are no properties, and nested archives at any depth up to a limit, with a budget of
//! decompressed bytes per outer archive (zip-bomb safe). Locations of nested archives
//! read `outer.war:WEB-INF/lib/inner.jar`.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use vigil_contracts::{Package, PackageType};

/// File name endings of Java archives.
pub const EXTENSIONS: &[&str] = &[".jar", ".war", ".ear", ".jpi", ".hpi"];

/// Whether a file name is a Java archive by its extension.
pub fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// Bounds for one outer archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JavaLimits {
    /// Deepest nesting read (the outer archive is depth 1).
    pub max_depth: u32,
    /// Most decompressed bytes read from all the entries of one outer archive.
    pub max_decompressed: u64,
    /// Largest nested archive buffered.
    pub max_nested_bytes: u64,
}

impl Default for JavaLimits {
    fn default() -> Self {
        JavaLimits {
            max_depth: 5,
            max_decompressed: 256 << 20,
            max_nested_bytes: 64 << 20,
        }
    }
}

/// Packages found and warnings for skipped parts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JavaScan {
    pub packages: Vec<Package>,
    pub warnings: Vec<String>,
}

/// Largest metadata file read (manifest, pom.properties, pom.xml).
const MAX_META: u64 = 1 << 20;

/// Scan one archive whose bytes are `bytes`, found at `location` (an image path).
pub fn scan(bytes: &[u8], location: &str, limits: &JavaLimits) -> JavaScan {
    let mut out = JavaScan::default();
    let mut budget = limits.max_decompressed;
    scan_inner(bytes, location, 1, limits, &mut budget, &mut out);
    out
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Pom {
    group_id: String,
    artifact_id: String,
    version: String,
    name: String,
    path: String,
}

enum ReadErr {
    Budget,
    TooLarge,
    Io(String),
}

fn read_capped(r: &mut impl Read, cap: u64, budget: &mut u64) -> Result<Vec<u8>, ReadErr> {
    let lim = cap.min(*budget);
    let mut v = Vec::new();
    r.take(lim + 1)
        .read_to_end(&mut v)
        .map_err(|e| ReadErr::Io(e.to_string()))?;
    let n = v.len() as u64;
    if n > lim {
        // Over the cap or over what is left of the budget: whichever was smaller.
        return Err(if *budget <= cap {
            *budget = 0;
            ReadErr::Budget
        } else {
            *budget -= lim;
            ReadErr::TooLarge
        });
    }
    *budget -= n;
    Ok(v)
}

fn scan_inner(
    bytes: &[u8],
    location: &str,
    depth: u32,
    limits: &JavaLimits,
    budget: &mut u64,
    out: &mut JavaScan,
) {
    let mut zip = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(z) => z,
        Err(e) => {
            out.warnings
                .push(format!("{location}: not a readable zip archive: {e}"));
            return;
        }
    };
    let mut manifest: Option<BTreeMap<String, String>> = None;
    let mut props: Vec<Pom> = Vec::new();
    let mut xmls: Vec<Pom> = Vec::new();
    let mut nested: Vec<usize> = Vec::new();
    for i in 0..zip.len() {
        let mut f = match zip.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                out.warnings
                    .push(format!("{location}: entry {i} unreadable: {e}"));
                continue;
            }
        };
        if f.is_dir() {
            continue;
        }
        let name = f.name().to_string();
        let upper = name.to_ascii_uppercase();
        let is_manifest = upper == "META-INF/MANIFEST.MF";
        let in_maven = name.starts_with("META-INF/maven/");
        let is_props = in_maven && name.ends_with("/pom.properties");
        let is_xml = in_maven && name.ends_with("/pom.xml");
        if is_archive_name(&name) {
            nested.push(i);
            continue;
        }
        if !(is_manifest || is_props || is_xml) {
            continue;
        }
        let data = match read_capped(&mut f, MAX_META, budget) {
            Ok(d) => d,
            Err(ReadErr::Budget) => {
                out.warnings.push(format!(
                    "{location}: decompressed-size budget of {} bytes exhausted (zip bomb?); stopped reading it",
                    limits.max_decompressed
                ));
                return;
            }
            Err(ReadErr::TooLarge) => {
                out.warnings.push(format!(
                    "{location}:{name} is over {MAX_META} bytes; skipped"
                ));
                continue;
            }
            Err(ReadErr::Io(e)) => {
                out.warnings.push(format!("{location}:{name}: {e}"));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&data);
        if is_manifest {
            manifest = Some(parse_manifest(&text));
        } else if is_props {
            let mut p = parse_properties(&text);
            p.path = name;
            if !p.artifact_id.is_empty() {
                props.push(p);
            }
        } else {
            let mut p = parse_pom_xml(&text);
            p.path = name;
            if !p.artifact_id.is_empty() {
                xmls.push(p);
            }
        }
    }
    let poms = if props.is_empty() { xmls } else { props };
    out.packages
        .extend(archive_packages(location, manifest.as_ref(), &poms));

    for i in nested {
        let mut f = match zip.by_index(i) {
            Ok(f) => f,
            Err(_) => continue,
        };
        let name = f.name().to_string();
        let inner = format!("{location}:{name}");
        if depth >= limits.max_depth {
            out.warnings.push(format!(
                "{inner}: nested deeper than {} archives; not read",
                limits.max_depth
            ));
            continue;
        }
        let data = match read_capped(&mut f, limits.max_nested_bytes, budget) {
            Ok(d) => d,
            Err(ReadErr::Budget) => {
                out.warnings.push(format!(
                    "{location}: decompressed-size budget of {} bytes exhausted (zip bomb?); stopped reading it",
                    limits.max_decompressed
                ));
                return;
            }
            Err(ReadErr::TooLarge) => {
                out.warnings.push(format!(
                    "{inner} is over {} bytes decompressed; not read",
                    limits.max_nested_bytes
                ));
                continue;
            }
            Err(ReadErr::Io(e)) => {
                out.warnings.push(format!("{inner}: {e}"));
                continue;
            }
        };
        scan_inner(&data, &inner, depth + 1, limits, budget, out);
    }
}

/// Main-section attributes of a manifest (continuation lines start with one space).
pub fn parse_manifest(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break; // end of the main section
        }
        if let Some(cont) = line.strip_prefix(' ') {
            if let Some(k) = &last {
                if let Some(v) = out.get_mut(k) {
                    let v: &mut String = v;
                    v.push_str(cont);
                }
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

fn parse_properties(text: &str) -> Pom {
    let mut p = Pom::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "groupId" => p.group_id = v,
            "artifactId" => p.artifact_id = v,
            "version" => p.version = v,
            "name" => p.name = v,
            _ => {}
        }
    }
    p
}

/// The project's own `groupId`/`artifactId`/`version` (direct children of `<project>`;
/// the parent's `groupId`/`version` when the project inherits them).
fn parse_pom_xml(text: &str) -> Pom {
    let mut p = Pom::default();
    let (mut pg, mut pv) = (String::new(), String::new());
    let mut depth = 0i32;
    let mut in_parent = false;
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            let end = if rest.starts_with("!--") { "-->" } else { ">" };
            match rest.find(end) {
                Some(e) => rest = &rest[e + end.len()..],
                None => break,
            }
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if let Some(close) = tag.strip_prefix('/') {
            depth -= 1;
            if close.trim() == "parent" {
                in_parent = false;
            }
            continue;
        }
        if tag.ends_with('/') {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or("");
        depth += 1;
        if name == "parent" && depth == 2 {
            in_parent = true;
            continue;
        }
        let value = || {
            rest[..rest.find('<').unwrap_or(rest.len())]
                .trim()
                .to_string()
        };
        match (depth, in_parent, name) {
            (2, false, "groupId") => p.group_id = value(),
            (2, false, "artifactId") => p.artifact_id = value(),
            (2, false, "version") => p.version = value(),
            (2, false, "name") => p.name = value(),
            (3, true, "groupId") => pg = value(),
            (3, true, "version") => pv = value(),
            _ => {}
        }
    }
    if p.group_id.is_empty() {
        p.group_id = pg;
    }
    if p.version.is_empty() {
        p.version = pv;
    }
    // Unresolved properties (`${project.version}`) are no version.
    if p.version.contains("${") {
        p.version.clear();
    }
    p
}

/// `commons-text-1.10.0` → (`commons-text`, `1.10.0`): the version starts at the first
/// `-` followed by a digit.
fn split_file_name(location: &str) -> (String, String) {
    let file = location
        .rsplit([':', '/'])
        .next()
        .unwrap_or(location)
        .to_string();
    let stem = match file.rfind('.') {
        Some(d) => &file[..d],
        None => file.as_str(),
    };
    let b = stem.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            return (stem[..i].to_string(), stem[i + 1..].to_string());
        }
    }
    (stem.to_string(), String::new())
}

fn maven_purl(group: &str, artifact: &str, version: &str) -> Option<String> {
    let mut p = packageurl::PackageUrl::new("maven", artifact).ok()?;
    if !group.is_empty() {
        p.with_namespace(group).ok()?;
    }
    if !version.is_empty() {
        p.with_version(version).ok()?;
    }
    Some(p.to_string())
}

fn package(
    location: &str,
    name: &str,
    version: &str,
    group: &str,
    artifact: &str,
    manifest: Option<&BTreeMap<String, String>>,
) -> Package {
    let mut p = Package::new(name, version, PackageType::JavaArchive);
    // As Syft: with no group id known, the artifact id doubles as the namespace.
    let ns = if group.is_empty() { artifact } else { group };
    p.purl = maven_purl(ns, artifact, version);
    p.locations = vec![location.to_string()];
    p.found_by = Some("java-archive".into());
    if !group.is_empty() {
        p.metadata.insert("group_id".into(), group.to_string());
    }
    p.metadata
        .insert("artifact_id".into(), artifact.to_string());
    if let Some(m) = manifest {
        for (k, key) in [
            ("Implementation-Version", "implementation_version"),
            ("Specification-Version", "specification_version"),
            ("Implementation-Vendor", "implementation_vendor"),
        ] {
            if let Some(v) = m.get(k).filter(|v| !v.is_empty()) {
                p.metadata.insert(key.into(), v.clone());
            }
        }
    }
    p
}

fn archive_packages(
    location: &str,
    manifest: Option<&BTreeMap<String, String>>,
    poms: &[Pom],
) -> Vec<Package> {
    let (file_name, file_version) = split_file_name(location);
    // The archive's own pom: the only one, or the one whose artifact id the file is named
    // after; the others (shaded jars) are packages of their own at the same location.
    let own = if poms.len() == 1 {
        Some(0)
    } else {
        poms.iter()
            .position(|p| p.artifact_id == file_name)
            .or_else(|| {
                poms.iter()
                    .position(|p| file_name.starts_with(p.artifact_id.as_str()))
            })
    };
    let mut out = Vec::new();
    match own {
        Some(i) => {
            let p = &poms[i];
            let mut pkg = package(
                location,
                &p.artifact_id,
                &p.version,
                &p.group_id,
                &p.artifact_id,
                manifest,
            );
            pkg.metadata.insert("pom_properties".into(), p.path.clone());
            out.push(pkg);
        }
        None => {
            let m = manifest.cloned().unwrap_or_default();
            let get = |keys: &[&str]| {
                keys.iter()
                    .find_map(|k| m.get(*k).filter(|v| !v.is_empty()).cloned())
            };
            let name = if !file_name.is_empty() {
                file_name.clone()
            } else {
                get(&["Implementation-Title", "Bundle-Name", "Specification-Title"])
                    .unwrap_or_default()
            };
            let version = get(&["Implementation-Version", "Specification-Version"])
                .or_else(|| (!file_version.is_empty()).then(|| file_version.clone()))
                .or_else(|| get(&["Bundle-Version"]))
                .unwrap_or_default();
            let group = get(&["Implementation-Vendor-Id"]).unwrap_or_default();
            if !name.is_empty() {
                out.push(package(location, &name, &version, &group, &name, manifest));
            }
        }
    }
    for (j, p) in poms.iter().enumerate() {
        if Some(j) == own {
            continue;
        }
        let mut pkg = package(
            location,
            &p.artifact_id,
            &p.version,
            &p.group_id,
            &p.artifact_id,
            None,
        );
        pkg.metadata.insert("pom_properties".into(), p.path.clone());
        out.push(pkg);
    }
    out
}
