//! vigil analyze stage: squash the layer indexes in order (whiteouts, opaque dirs),
//! detect the distro, run the catalogers and store the [`Analysis`]. Everything but the
//! stage itself is a pure function of the layer indexes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use vigil_contracts::{
    codec, Analysis, AnalyzedImage, Distro, EntryKind, ExtractedImage, FailureKind, FileEntry,
    ImageDescriptor, LayerIndex, Package, PackageType, StageName, Subject,
};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;

pub const ANALYZER_VERSION: u32 = 1;

/// The squashed file system: what a container would see.
#[derive(Debug, Default)]
pub struct SquashedFs {
    pub entries: BTreeMap<String, FileEntry>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub warnings: Vec<String>,
}

fn remove_tree<V>(m: &mut BTreeMap<String, V>, path: &str, keep_self: bool) {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let keys: Vec<String> = m
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        m.remove(&k);
    }
    if !keep_self {
        m.remove(path);
    }
}

/// Apply layers bottom-up, honouring whiteouts and opaque directories.
pub fn squash(indexes: &[LayerIndex]) -> SquashedFs {
    let mut fs = SquashedFs::default();
    for idx in indexes {
        // Opaque dirs hide lower content only: apply them before this layer's entries.
        for e in idx.entries.iter().filter(|e| e.kind == EntryKind::Opaque) {
            remove_tree(&mut fs.entries, &e.path, true);
            remove_tree(&mut fs.files, &e.path, true);
        }
        for e in &idx.entries {
            match e.kind {
                EntryKind::Opaque => {}
                EntryKind::Whiteout => {
                    remove_tree(&mut fs.entries, &e.path, false);
                    remove_tree(&mut fs.files, &e.path, false);
                }
                _ => {
                    if e.kind != EntryKind::Dir {
                        remove_tree(&mut fs.entries, &e.path, true);
                        fs.files.remove(&e.path);
                    }
                    fs.entries.insert(e.path.clone(), e.clone());
                }
            }
        }
        for k in &idx.kept {
            fs.files.insert(k.path.clone(), k.content.clone());
        }
        fs.warnings.extend(idx.warnings.iter().cloned());
    }
    fs
}

impl SquashedFs {
    /// Read a kept file, following symlinks inside the image (at most 16 hops).
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        let mut p = path.to_string();
        for _ in 0..16 {
            if let Some(b) = self.files.get(&p) {
                return Some(b);
            }
            let e = self.entries.get(&p)?;
            let target = e.link.as_deref().filter(|_| e.kind == EntryKind::Symlink)?;
            let joined = if target.starts_with('/') {
                target.to_string()
            } else {
                let dir = p.rsplit_once('/').map(|x| x.0).unwrap_or("");
                format!("{dir}/{target}")
            };
            p = normalize(&joined);
        }
        None
    }
}

fn normalize(raw: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

/// Distro from os-release, then the usual fallbacks.
pub fn detect_distro(fs: &SquashedFs) -> Option<Distro> {
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(b) = fs.read(p) {
            let text = String::from_utf8_lossy(b);
            let kv: BTreeMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), unquote(v)))
                .collect();
            if let Some(id) = kv.get("ID") {
                return Some(Distro {
                    id: id.to_ascii_lowercase(),
                    version_id: kv.get("VERSION_ID").cloned(),
                    codename: kv.get("VERSION_CODENAME").cloned(),
                    id_like: kv
                        .get("ID_LIKE")
                        .map(|s| s.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default(),
                    pretty_name: kv.get("PRETTY_NAME").cloned(),
                });
            }
        }
    }
    if let Some(b) = fs.read("/etc/alpine-release") {
        return Some(Distro {
            id: "alpine".into(),
            version_id: Some(String::from_utf8_lossy(b).trim().to_string()),
            ..Default::default()
        });
    }
    if let Some(b) = fs.read("/etc/debian_version") {
        let v = String::from_utf8_lossy(b).trim().to_string();
        return Some(Distro {
            id: "debian".into(),
            version_id: v.split('.').next().map(str::to_string),
            ..Default::default()
        });
    }
    None
}

/// A cataloger: the paths it reads and a pure parse function.
pub struct Cataloger {
    pub name: &'static str,
    pub matches: fn(&str) -> bool,
    pub parse: fn(&str, &[u8], Option<&Distro>) -> Vec<Package>,
}

/// Every cataloger, in one list.
pub const CATALOGERS: &[Cataloger] = &[
    Cataloger {
        name: "dpkg-db",
        matches: |p| {
            p == "/var/lib/dpkg/status"
                || p.strip_prefix("/var/lib/dpkg/status.d/")
                    .is_some_and(|r| !r.contains('/') && !r.ends_with(".md5sums"))
        },
        parse: parse_dpkg,
    },
    Cataloger {
        name: "apk-db",
        matches: |p| p == "/lib/apk/db/installed",
        parse: parse_apk,
    },
];

fn stanzas(text: &str) -> impl Iterator<Item = BTreeMap<String, String>> + '_ {
    text.split("\n\n").map(|block| {
        let mut m = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in block.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue; // continuation lines (descriptions, conffiles)
            }
            if let Some((k, v)) = line.split_once(':') {
                m.insert(k.trim().to_string(), v.trim().to_string());
                last = Some(k.to_string());
            }
        }
        let _ = last;
        m
    })
}

fn distro_qualifier(d: Option<&Distro>) -> String {
    d.map(|d| {
        format!(
            "&distro={}-{}",
            d.id,
            d.version_id.clone().unwrap_or_default()
        )
    })
    .unwrap_or_default()
}

/// `/var/lib/dpkg/status` and distroless `status.d/*`.
pub fn parse_dpkg(path: &str, content: &[u8], distro: Option<&Distro>) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    let distroless = path != "/var/lib/dpkg/status";
    let ns = distro
        .map(|d| d.id.clone())
        .unwrap_or_else(|| "debian".into());
    stanzas(&text)
        .filter_map(|m| {
            let name = m.get("Package")?.clone();
            let version = m.get("Version")?.clone();
            if !distroless && !m.get("Status").is_some_and(|s| s.ends_with(" installed")) {
                return None;
            }
            let (source_name, source_version) = match m.get("Source") {
                Some(s) => match s.split_once(' ') {
                    Some((n, v)) => (
                        Some(n.to_string()),
                        Some(v.trim_matches(|c| c == '(' || c == ')').to_string()),
                    ),
                    None => (Some(s.clone()), None),
                },
                None => (None, None),
            };
            let arch = m.get("Architecture").cloned();
            Some(Package {
                purl: Some(format!(
                    "pkg:deb/{ns}/{name}@{version}?arch={}{}",
                    arch.clone().unwrap_or_default(),
                    distro_qualifier(distro)
                )),
                name,
                version,
                kind: PackageType::Deb,
                arch,
                source_name,
                source_version,
                licenses: vec![],
                locations: vec![path.to_string()],
            })
        })
        .collect()
}

/// `/lib/apk/db/installed`.
pub fn parse_apk(path: &str, content: &[u8], distro: Option<&Distro>) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    stanzas(&text)
        .filter_map(|m| {
            let name = m.get("P")?.clone();
            let version = m.get("V")?.clone();
            let arch = m.get("A").cloned();
            Some(Package {
                purl: Some(format!(
                    "pkg:apk/alpine/{name}@{version}?arch={}{}",
                    arch.clone().unwrap_or_default(),
                    distro_qualifier(distro)
                )),
                name,
                version,
                kind: PackageType::Apk,
                arch,
                source_name: m.get("o").cloned(),
                source_version: None,
                licenses: m.get("L").map(|l| vec![l.clone()]).unwrap_or_default(),
                locations: vec![path.to_string()],
            })
        })
        .collect()
}

/// Analyse an image from its layer indexes (bottom first). Pure.
pub fn analyze(descriptor: &ImageDescriptor, indexes: &[LayerIndex], now: i64) -> Analysis {
    let fs = squash(indexes);
    let distro = detect_distro(&fs);
    let mut packages = Vec::new();
    for c in CATALOGERS {
        for (path, content) in &fs.files {
            if (c.matches)(path) {
                packages.extend((c.parse)(path, content, distro.as_ref()));
            }
        }
    }
    packages.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
    Analysis {
        descriptor: descriptor.clone(),
        distro,
        packages,
        file_count: fs.entries.len() as u64,
        image_size: indexes.iter().map(|i| i.uncompressed_size).sum(),
        analyzed_at: now,
        analyzer_version: ANALYZER_VERSION,
        warnings: fs.warnings,
    }
}

/// The analyze stage.
pub struct AnalyzeStage {
    store: Store,
}

impl AnalyzeStage {
    pub fn new(store: Store) -> Self {
        AnalyzeStage { store }
    }
}

#[async_trait]
impl Stage for AnalyzeStage {
    fn name(&self) -> StageName {
        StageName::Analyze
    }

    async fn handle(
        &self,
        _subject: &Subject,
        payload: &[u8],
    ) -> Result<Vec<Outgoing>, StageError> {
        let msg: ExtractedImage = codec::decode(payload)?;
        tracing::debug!(request_id = %msg.request.request_id, "analyze");
        let mut indexes = Vec::new();
        for l in &msg.descriptor.layers {
            let idx = self
                .store
                .get_layer_index(&l.digest)
                .await?
                .ok_or_else(|| {
                    StageError::new(
                        FailureKind::Internal,
                        format!("no layer index for {}", l.digest),
                    )
                })?;
            indexes.push(idx);
        }
        let a = analyze(&msg.descriptor, &indexes, vigil_runtime::now_millis());
        self.store.put_analysis(&a).await?;
        let digest = msg.descriptor.image.digest.clone();
        Ok(vec![Outgoing::record(
            Subject::Stage(StageName::Match),
            format!("{}:analyze:{digest}", msg.request.request_id),
            &AnalyzedImage {
                request: Some(msg.request),
                image_digest: digest,
            },
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_contracts::KeptFile;

    fn e(path: &str, kind: EntryKind, link: Option<&str>) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 1,
            link: link.map(str::to_string),
        }
    }

    fn layer(entries: Vec<FileEntry>, kept: Vec<(&str, &str)>) -> LayerIndex {
        LayerIndex {
            layer_digest: "d".into(),
            entries,
            kept: kept
                .into_iter()
                .map(|(p, c)| KeptFile {
                    path: p.into(),
                    content: c.as_bytes().to_vec(),
                    truncated: false,
                })
                .collect(),
            uncompressed_size: 10,
            extractor_version: 1,
            warnings: vec![],
        }
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let l1 = layer(
            vec![
                e("/opt/app/secret.txt", EntryKind::File, None),
                e("/opt/app/keep.txt", EntryKind::File, None),
                e("/opt/app/cache/a.txt", EntryKind::File, None),
                e("/var/lib/dpkg/status", EntryKind::File, None),
            ],
            vec![("/var/lib/dpkg/status", "Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: install ok installed\nVersion: 2\n")],
        );
        let l2 = layer(
            vec![
                e("/opt/app/secret.txt", EntryKind::Whiteout, None),
                e("/opt/app/cache", EntryKind::Opaque, None),
                e("/opt/app/cache/c.txt", EntryKind::File, None),
                e("/var/lib/dpkg/status", EntryKind::File, None),
            ],
            vec![("/var/lib/dpkg/status", "Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n")],
        );
        let fs = squash(&[l1, l2]);
        assert!(!fs.entries.contains_key("/opt/app/secret.txt"));
        assert!(fs.entries.contains_key("/opt/app/keep.txt"));
        assert!(!fs.entries.contains_key("/opt/app/cache/a.txt"));
        assert!(fs.entries.contains_key("/opt/app/cache/c.txt"));
        let pk = parse_dpkg(
            "/var/lib/dpkg/status",
            fs.read("/var/lib/dpkg/status").unwrap(),
            None,
        );
        assert_eq!(pk.len(), 1, "the deinstalled package is not reported");
    }

    #[test]
    fn distro_through_symlink_and_loop_ends() {
        let l = layer(
            vec![
                e(
                    "/etc/os-release",
                    EntryKind::Symlink,
                    Some("../usr/lib/os-release"),
                ),
                e("/usr/lib/os-release", EntryKind::File, None),
                e("/a", EntryKind::Symlink, Some("/b")),
                e("/b", EntryKind::Symlink, Some("/a")),
            ],
            vec![(
                "/usr/lib/os-release",
                "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
            )],
        );
        let fs = squash(&[l]);
        let d = detect_distro(&fs).unwrap();
        assert_eq!(
            (d.id.as_str(), d.version_id.as_deref()),
            ("debian", Some("12"))
        );
        assert!(fs.read("/a").is_none(), "a symlink loop ends");
        assert!(detect_distro(&squash(&[])).is_none());
    }

    #[test]
    fn apk_and_distroless_status_d() {
        let apk = "C:Q1=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nL:MIT\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\n";
        let p = parse_apk("/lib/apk/db/installed", apk.as_bytes(), None);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].source_name.as_deref(), Some("musl"));
        assert_eq!(p[0].licenses, vec!["MIT"]);
        let sd = "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\nSource: tzdata (2024a-0+deb12u1)\n";
        let p = parse_dpkg("/var/lib/dpkg/status.d/tzdata", sd.as_bytes(), None);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].source_version.as_deref(), Some("2024a-0+deb12u1"));
    }
}
