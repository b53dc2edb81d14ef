//! Squash layer indexes into the file system a container would see.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use vigil_contracts::{EntryKind, FileEntry, LayerIndex, Package, SecretHit};
use vigil_extract::normalize;

/// Most symlinks followed while resolving one path (as Linux's `MAXSYMLINKS`).
pub const MAX_LINK_HOPS: usize = 40;

/// The squashed file system: entries and kept file bytes by absolute path.
#[derive(Debug, Default, Clone)]
pub struct SquashedFs {
    pub entries: BTreeMap<String, FileEntry>,
    /// Bytes of the kept files (see `vigil_extract::KEEP_RULES`) that survived squashing.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Kept files whose bytes extract cut at its cap.
    pub truncated: BTreeSet<String>,
    /// Packages extract found while streaming (binaries, archives) whose file is still
    /// there in the squashed view: a whiteout or an upper layer's file at the same path
    /// drops the lower layer's record.
    pub stream_packages: Vec<Package>,
    /// Secrets extract found, on the same terms.
    pub secrets: Vec<SecretHit>,
    pub content_matches: Vec<SecretHit>,
    pub warnings: Vec<String>,
}

/// Records of one layer that live and die with a path (stream packages, secrets).
#[derive(Default)]
struct ByPath {
    packages: BTreeMap<String, Vec<Package>>,
    secrets: BTreeMap<String, Vec<SecretHit>>,
    content: BTreeMap<String, Vec<SecretHit>>,
}

impl ByPath {
    fn remove(&mut self, path: &Subtree<'_>, keep_self: bool) {
        remove_tree(&mut self.packages, path, keep_self);
        remove_tree(&mut self.secrets, path, keep_self);
        remove_tree(&mut self.content, path, keep_self);
    }
}

/// A path and the prefix its descendants share (`/a/b` and `/a/b/`), built once for
/// the several maps a path is removed from.
struct Subtree<'a> {
    path: &'a str,
    prefix: String,
}

impl<'a> Subtree<'a> {
    fn new(path: &'a str) -> Self {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        Subtree { path, prefix }
    }
}

/// The file a stream-found package came from: its location, or for a package inside a
/// nested archive (`/app/x.war:WEB-INF/lib/y.jar`) the outer archive's path.
fn file_of(location: &str) -> &str {
    const ARCHIVES: [&str; 5] = [".jar:", ".war:", ".ear:", ".jpi:", ".hpi:"];
    ARCHIVES
        .iter()
        .filter_map(|ext| location.find(ext).map(|i| &location[..i + ext.len() - 1]))
        .min_by_key(|p| p.len())
        .unwrap_or(location)
}

/// Remove the subtree's descendants (and its path itself unless `keep_self`).
fn remove_tree<V>(m: &mut BTreeMap<String, V>, t: &Subtree<'_>, keep_self: bool) {
    if m.is_empty() {
        return;
    }
    // Usually nothing is below the path (it names a file): one lookup, no allocation.
    let below = |m: &BTreeMap<String, V>| {
        m.range::<str, _>((Bound::Included(t.prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&t.prefix))
    };
    if below(m) {
        let doomed: Vec<String> = m
            .range::<str, _>((Bound::Included(t.prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&t.prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            m.remove(&k);
        }
    }
    if !keep_self {
        m.remove(t.path);
    }
}

/// Apply layers bottom first: later layers override earlier ones, a whiteout removes
/// the path and everything under it from lower layers, an opaque directory hides the
/// lower layers' children of that directory but keeps its own layer's entries.
pub fn squash(indexes: &[LayerIndex]) -> SquashedFs {
    squash_owned(indexes.to_vec())
}

/// [`squash`], moving the indexes' entries and kept bytes into the view rather than
/// copying them (the analyze stage has no further use for its indexes).
pub fn squash_owned(indexes: Vec<LayerIndex>) -> SquashedFs {
    let mut fs = SquashedFs::default();
    let mut by_path = ByPath::default();
    for idx in indexes {
        // Whiteouts and opaque markers apply to the lower layers only, so they go first:
        // an entry of the same layer under an opaque directory survives.
        for e in &idx.entries {
            match e.kind {
                EntryKind::Opaque => {
                    let t = Subtree::new(&e.path);
                    remove_tree(&mut fs.entries, &t, true);
                    remove_tree(&mut fs.files, &t, true);
                    by_path.remove(&t, true);
                }
                EntryKind::Whiteout => {
                    let t = Subtree::new(&e.path);
                    remove_tree(&mut fs.entries, &t, false);
                    remove_tree(&mut fs.files, &t, false);
                    by_path.remove(&t, false);
                }
                _ => {}
            }
        }
        for e in idx.entries {
            match e.kind {
                EntryKind::Opaque | EntryKind::Whiteout => {}
                EntryKind::Dir => {
                    // A directory merges with a lower directory but replaces a lower non-directory.
                    if fs
                        .entries
                        .get(&e.path)
                        .is_some_and(|l| l.kind != EntryKind::Dir)
                    {
                        fs.files.remove(&e.path);
                        by_path.packages.remove(&e.path);
                        by_path.secrets.remove(&e.path);
                        by_path.content.remove(&e.path);
                    }
                    fs.entries.insert(e.path.clone(), e);
                }
                _ => {
                    // Anything else replaces what was there, a lower directory with its contents.
                    let t = Subtree::new(&e.path);
                    remove_tree(&mut fs.entries, &t, true);
                    remove_tree(&mut fs.files, &t, false);
                    by_path.remove(&t, false);
                    fs.entries.insert(e.path.clone(), e);
                }
            }
        }
        for k in idx.kept {
            if k.truncated {
                fs.truncated.insert(k.path.clone());
            } else {
                fs.truncated.remove(&k.path);
            }
            fs.files.insert(k.path, k.content);
        }
        for p in idx.packages {
            match p.locations.first() {
                Some(at) => by_path
                    .packages
                    .entry(file_of(at).to_string())
                    .or_default()
                    .push(p),
                None => fs.warnings.push(format!(
                    "{}: package {} without a location dropped",
                    idx.layer_digest, p.name
                )),
            }
        }
        for s in idx.content_matches {
            by_path.content.entry(s.path.clone()).or_default().push(s);
        }
        for s in idx.secrets {
            by_path.secrets.entry(s.path.clone()).or_default().push(s);
        }
        fs.warnings.extend(idx.warnings);
    }
    // A record whose layer did not list its path is kept only if the path exists.
    fs.stream_packages = by_path
        .packages
        .into_iter()
        .filter(|(p, _)| fs.entries.contains_key(p))
        .flat_map(|(_, v)| v)
        .collect();
    fs.content_matches = by_path
        .content
        .into_iter()
        .filter(|(p, _)| fs.entries.contains_key(p))
        .flat_map(|(_, v)| v)
        .collect();
    fs.secrets = by_path
        .secrets
        .into_iter()
        .filter(|(p, _)| fs.entries.contains_key(p))
        .flat_map(|(_, v)| v)
        .collect();
    fs
}

/// How a path resolved inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The final path, every symlink (in any component) followed.
    Path(String),
    /// A component is missing.
    Missing,
    /// More than [`MAX_LINK_HOPS`] symlinks: a loop, or a chain too long.
    Loop,
}

impl SquashedFs {
    /// Resolve `path` inside the image, following symlinks in every component, with a
    /// hop limit. Never touches the host.
    pub fn resolve(&self, path: &str) -> Resolved {
        // Most paths name what they say: when no component is a symlink, the path is
        // the answer, found without allocating a segment list.
        if vigil_extract::path::is_normal(path) {
            let no_links = path
                .match_indices('/')
                .skip(1)
                .map(|(i, _)| &path[..i])
                .chain(std::iter::once(path))
                .all(|prefix| {
                    self.entries
                        .get(prefix)
                        .is_none_or(|e| e.kind != EntryKind::Symlink)
                });
            if no_links {
                if path != "/" && !self.entries.contains_key(path) && !self.files.contains_key(path)
                {
                    return Resolved::Missing;
                }
                return Resolved::Path(path.to_string());
            }
        }
        let mut pending: Vec<String> = normalize(path)
            .0
            .split('/')
            .filter(|s| !s.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut cur = String::new();
        let mut hops = 0;
        while let Some(seg) = pending.pop() {
            let next = if seg == ".." {
                cur.rsplit_once('/')
                    .map(|x| x.0.to_string())
                    .unwrap_or_default()
            } else if seg == "." {
                cur.clone()
            } else {
                format!("{cur}/{seg}")
            };
            match self.entries.get(&next) {
                Some(e) if e.kind == EntryKind::Symlink => {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Resolved::Loop;
                    }
                    let target = e.link.as_deref().unwrap_or("");
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    pending.extend(
                        target
                            .split('/')
                            .filter(|s| !s.is_empty())
                            .rev()
                            .map(str::to_string),
                    );
                }
                // A directory, a file, or a component the layers never listed (tar
                // streams need not carry parent directories): go on.
                _ => cur = next,
            }
        }
        if !cur.is_empty() && !self.entries.contains_key(&cur) && !self.files.contains_key(&cur) {
            return Resolved::Missing;
        }
        Resolved::Path(if cur.is_empty() { "/".into() } else { cur })
    }

    /// Read a kept file through symlinks; a loop adds a warning to `warnings`.
    pub fn read_file(&self, path: &str, warnings: &mut Vec<String>) -> Option<&[u8]> {
        match self.resolve(path) {
            Resolved::Path(p) => self.files.get(&p).map(Vec::as_slice),
            Resolved::Missing => None,
            Resolved::Loop => {
                warnings.push(format!(
                    "{path}: more than {MAX_LINK_HOPS} symbolic links (a loop?); not read"
                ));
                None
            }
        }
    }

    /// Read a kept file through symlinks, ignoring loops.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        self.read_file(path, &mut Vec::new())
    }
}
