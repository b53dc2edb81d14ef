//! vigil extract stage: stream each new layer once (gzip, zstd or plain tar), record
//! every entry and keep the bytes of the files analysis needs, as a [`LayerIndex`] stored
//! by layer digest. Image files are never written to the host and paths are never joined
//! onto a host path.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use vigil_contracts::{
    codec, EntryKind, ExtractedImage, FailureKind, FetchedImage, FileEntry, KeptFile, LayerIndex,
    StageName, Subject,
};
use vigil_runtime::blobs::BlobStore;
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;

/// Version of the index format; an index written by another version is redone.
pub const EXTRACTOR_VERSION: u32 = 1;

/// Limits that bound what one layer may cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractLimits {
    pub max_entry_bytes: u64,
    pub max_total_bytes: u64,
    pub max_entries: u64,
    pub max_kept_file_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_entry_bytes: 2 << 30,
            max_total_bytes: 16 << 30,
            max_entries: 1_000_000,
            max_kept_file_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("layer {layer}: entry {path} is {size} bytes, over the limit of {limit}")]
    EntryTooLarge {
        layer: String,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error("layer {layer}: more than {limit} bytes of uncompressed content")]
    TotalTooLarge { layer: String, limit: u64 },
    #[error("layer {layer}: more than {limit} entries")]
    TooManyEntries { layer: String, limit: u64 },
    #[error("layer {layer} is corrupt: {message}")]
    Corrupt { layer: String, message: String },
}

impl From<ExtractError> for StageError {
    fn from(e: ExtractError) -> Self {
        let kind = match e {
            ExtractError::Corrupt { .. } => FailureKind::MalformedImage,
            _ => FailureKind::LimitExceeded,
        };
        StageError::new(kind, e.to_string())
    }
}

/// Files whose bytes analysis needs: exact paths, or a directory whose direct children count.
const KEEP_EXACT: &[&str] = &[
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/debian_version",
    "/etc/alpine-release",
    "/etc/lsb-release",
    "/etc/redhat-release",
    "/etc/system-release",
    "/var/lib/dpkg/status",
    "/lib/apk/db/installed",
    "/etc/passwd",
    "/etc/group",
];
const KEEP_DIRS: &[&str] = &["/var/lib/dpkg/status.d"];

/// Whether the bytes of `path` are kept for analysis.
pub fn wanted(path: &str) -> bool {
    KEEP_EXACT.contains(&path)
        || KEEP_DIRS.iter().any(|d| {
            path.strip_prefix(d)
                .is_some_and(|r| r.starts_with('/') && !r[1..].contains('/'))
        })
}

/// Normalise a tar path to an absolute path without `.`/`..`/`//`; `..` never climbs
/// above `/` (the second value says it tried).
pub fn normalize(raw: &str) -> (String, bool) {
    let mut parts: Vec<&str> = Vec::new();
    let mut escaped = false;
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    escaped = true;
                }
            }
            s => parts.push(s),
        }
    }
    (format!("/{}", parts.join("/")), escaped)
}

enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, R>>),
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// Counts uncompressed bytes and enforces the total limit.
struct Counting<R> {
    inner: R,
    n: u64,
    limit: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf)?;
        self.n += r as u64;
        if self.n > self.limit {
            return Err(std::io::Error::other("total-limit"));
        }
        Ok(r)
    }
}

/// Stream one layer and build its index. Pure apart from reading `reader`.
pub fn index_layer(
    reader: impl Read,
    layer_digest: &str,
    limits: &ExtractLimits,
) -> Result<LayerIndex, ExtractError> {
    let corrupt = |m: String| ExtractError::Corrupt {
        layer: layer_digest.to_string(),
        message: m,
    };
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let magic = buf.fill_buf().map_err(|e| corrupt(e.to_string()))?.to_vec();
    let dec = if magic.starts_with(&[0x1f, 0x8b]) {
        Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Decoder::Zstd(Box::new(
            zstd::stream::read::Decoder::with_buffer(buf).map_err(|e| corrupt(e.to_string()))?,
        ))
    } else {
        Decoder::Plain(buf)
    };
    let counting = Counting {
        inner: dec,
        n: 0,
        limit: limits.max_total_bytes,
    };
    let mut archive = tar::Archive::new(counting);
    let mut idx = LayerIndex {
        layer_digest: layer_digest.to_string(),
        entries: Vec::new(),
        kept: Vec::new(),
        uncompressed_size: 0,
        extractor_version: EXTRACTOR_VERSION,
        warnings: Vec::new(),
    };
    let map_io = |e: std::io::Error| {
        if e.to_string().contains("total-limit") {
            ExtractError::TotalTooLarge {
                layer: layer_digest.to_string(),
                limit: limits.max_total_bytes,
            }
        } else {
            corrupt(e.to_string())
        }
    };
    let entries = archive.entries().map_err(map_io)?;
    for entry in entries {
        let mut entry = entry.map_err(map_io)?;
        if idx.entries.len() as u64 >= limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                layer: layer_digest.to_string(),
                limit: limits.max_entries,
            });
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (path, escaped) = normalize(&raw);
        if escaped {
            idx.warnings.push(format!(
                "entry {raw:?} climbs above the root; recorded as {path}"
            ));
        }
        let h = entry.header();
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(ExtractError::EntryTooLarge {
                layer: layer_digest.to_string(),
                path,
                size,
                limit: limits.max_entry_bytes,
            });
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let dir = if dir.is_empty() { "/" } else { dir };
        let et = h.entry_type();
        let (kind, epath) = if name == ".wh..wh..opq" {
            (EntryKind::Opaque, dir.to_string())
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            (
                EntryKind::Whiteout,
                format!("{}/{hidden}", dir.trim_end_matches('/')),
            )
        } else {
            let k = match et {
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                tar::EntryType::Link => EntryKind::Hardlink,
                tar::EntryType::Char => EntryKind::Char,
                tar::EntryType::Block => EntryKind::Block,
                tar::EntryType::Fifo => EntryKind::Fifo,
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
                _ => EntryKind::File,
            };
            (k, path.clone())
        };
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let fe = FileEntry {
            path: epath,
            kind,
            mode: h.mode().unwrap_or(0),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            size,
            link,
        };
        if kind == EntryKind::File && wanted(&fe.path) {
            let cap = limits.max_kept_file_bytes;
            let mut content = Vec::with_capacity(size.min(cap) as usize);
            (&mut entry)
                .take(cap)
                .read_to_end(&mut content)
                .map_err(map_io)?;
            idx.kept.push(KeptFile {
                path: fe.path.clone(),
                truncated: size > cap,
                content,
            });
        }
        idx.entries.push(fe);
    }
    // Drain to the end so that a truncated stream is noticed.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(map_io)?;
    idx.uncompressed_size = rest.n;
    Ok(idx)
}

/// The extract stage.
pub struct ExtractStage {
    limits: ExtractLimits,
    store: Store,
    blobs: Arc<dyn BlobStore>,
}

impl ExtractStage {
    pub fn new(limits: ExtractLimits, store: Store, blobs: Arc<dyn BlobStore>) -> Self {
        ExtractStage {
            limits,
            store,
            blobs,
        }
    }

    async fn extract_one(&self, digest: &str) -> Result<(), StageError> {
        if self
            .store
            .has_layer_index(digest, EXTRACTOR_VERSION)
            .await?
        {
            return Ok(());
        }
        let reader = self.blobs.open(digest).await.map_err(|e| {
            StageError::new(
                FailureKind::Internal,
                format!("layer {digest} not staged: {e}"),
            )
        })?;
        let limits = self.limits.clone();
        let d = digest.to_string();
        let idx = tokio::task::spawn_blocking(move || {
            let sync = tokio_util::io::SyncIoBridge::new(reader);
            index_layer(sync, &d, &limits)
        })
        .await
        .map_err(StageError::internal)??;
        self.store.put_layer_index(&idx).await?;
        let _ = self.blobs.delete(digest).await;
        Ok(())
    }
}

#[async_trait]
impl Stage for ExtractStage {
    fn name(&self) -> StageName {
        StageName::Extract
    }

    async fn handle(
        &self,
        _subject: &Subject,
        payload: &[u8],
    ) -> Result<Vec<Outgoing>, StageError> {
        let msg: FetchedImage = codec::decode(payload)?;
        let span = tracing::info_span!("extract", request_id = %msg.request.request_id, image = %msg.descriptor.image.digest);
        async {
            for d in &msg.to_extract {
                self.extract_one(d).await?;
            }
            let out = ExtractedImage {
                request: msg.request.clone(),
                descriptor: msg.descriptor.clone(),
            };
            Ok(vec![Outgoing::record(
                Subject::Stage(StageName::Analyze),
                format!(
                    "{}:extract:{}",
                    msg.request.request_id, msg.descriptor.image.digest
                ),
                &out,
            )?])
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Raw name: the builder refuses `..`, a hostile layer does not.
            h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "etc/os-release", "../usr/lib/os-release")
            .unwrap();
        b.into_inner().unwrap()
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn indexes_entries_whiteouts_and_kept_files() {
        let t = tar_of(&[
            ("usr/lib/os-release", b"ID=debian\n"),
            ("./var/lib/dpkg/status", b"Package: a\n"),
            ("opt/app/.wh.secret.txt", b""),
            ("opt/cache/.wh..wh..opq", b""),
            ("a/../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        ]);
        for data in [t.clone(), gz(&t), zstd::encode_all(&t[..], 1).unwrap()] {
            let idx = index_layer(&data[..], "sha256:l", &ExtractLimits::default()).unwrap();
            let kinds: Vec<(&str, EntryKind)> = idx
                .entries
                .iter()
                .map(|e| (e.path.as_str(), e.kind))
                .collect();
            assert!(kinds.contains(&("/opt/app/secret.txt", EntryKind::Whiteout)));
            assert!(kinds.contains(&("/opt/cache", EntryKind::Opaque)));
            assert!(
                kinds.contains(&("/etc/passwd", EntryKind::File)),
                "{kinds:?}"
            );
            assert!(kinds.contains(&("/etc/os-release", EntryKind::Symlink)));
            let kept: Vec<&str> = idx.kept.iter().map(|k| k.path.as_str()).collect();
            assert_eq!(
                kept,
                vec!["/usr/lib/os-release", "/var/lib/dpkg/status", "/etc/passwd"]
            );
            assert_eq!(idx.warnings.len(), 1, "the climbing path is reported");
            assert_eq!(idx.uncompressed_size, t.len() as u64);
        }
    }

    #[test]
    fn limits_and_corruption_are_clear_errors() {
        let t = tar_of(&[("big", &[0u8; 5000]), ("small", b"x")]);
        let l = ExtractLimits {
            max_entry_bytes: 1000,
            ..Default::default()
        };
        assert!(matches!(
            index_layer(&t[..], "d", &l),
            Err(ExtractError::EntryTooLarge { .. })
        ));
        let l = ExtractLimits {
            max_entries: 1,
            ..Default::default()
        };
        assert!(matches!(
            index_layer(&t[..], "d", &l),
            Err(ExtractError::TooManyEntries { .. })
        ));
        let l = ExtractLimits {
            max_total_bytes: 2048,
            ..Default::default()
        };
        assert!(matches!(
            index_layer(&t[..], "d", &l),
            Err(ExtractError::TotalTooLarge { .. })
        ));
        let g = gz(&t);
        let e = index_layer(&g[..g.len() / 2], "d", &ExtractLimits::default()).unwrap_err();
        assert!(matches!(e, ExtractError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn normalize_never_escapes_root() {
        assert_eq!(normalize("./a//b/./c"), ("/a/b/c".into(), false));
        assert_eq!(normalize("../../etc/passwd"), ("/etc/passwd".into(), true));
        assert_eq!(normalize("/"), ("/".into(), false));
    }
}
