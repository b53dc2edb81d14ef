//! The pure streaming core: one pass over a layer (gzip, zstd or plain tar) to a
//! [`LayerIndex`]. Reads `reader` once, holds at most one kept file in memory at a time,
//! and never writes anything to the host.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use vigil_contracts::{EntryKind, FailureKind, FileEntry, LayerIndex};

use crate::detect::secrets::{self, SecretRule};
use crate::detect::FileScan;
use crate::path::normalize;
use crate::readahead;
use crate::EXTRACTOR_VERSION;

/// Limits that bound what one layer may cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractLimits {
    /// Largest single tar entry (bytes).
    pub max_entry_bytes: u64,
    /// Most uncompressed tar bytes per layer.
    pub max_total_bytes: u64,
    /// Most tar entries per layer.
    pub max_entries: u64,
    /// Most bytes kept of one file analysis needs; longer files are cut and marked.
    pub max_kept_file_bytes: u64,
    /// Compute the sha256, md5 and sha1 of every regular file into `FileEntry.{sha256,
    /// md5, sha1}` (costs three hashes of every byte; off by default). Package databases'
    /// file digests are compared with them by the policy's `packages.verify`.
    pub hash_files: bool,
    /// Extra files whose bytes are kept ("retrieved files"), exact paths or globs (`*`
    /// within one segment), on top of what analysis needs.
    pub retrieve_files: Vec<String>,
    /// Most bytes kept of one retrieved file; longer files are cut and marked.
    pub retrieve_max_bytes: u64,
    /// Search regular text files for secrets.
    pub secret_scan: bool,
    /// Files larger than this are not searched for secrets.
    pub secret_max_file_bytes: u64,
    /// Secret rules (name, regex); several rules may share a name. Replaces the defaults
    /// when set.
    pub secret_rules: Vec<SecretRule>,
    /// Regexes of matches never reported (documentation example keys).
    pub secret_allow: Vec<String>,
    /// Content search (Anchore's `content_search` analyzer): regexes run over text files
    /// like the secret rules; matches feed the policy's `files.content_regex_match`.
    pub content_search: Vec<String>,
    /// Look into ELF files for Go build info and cargo-auditable data, and into runtime
    /// binaries (python, node, java, busybox) for their versions.
    pub binary_scan: bool,
    /// ELF files up to this size are read whole (bounded memory); larger ones are only
    /// searched, in a stream, for Go ≥ 1.18 build info.
    pub max_binary_bytes: u64,
    /// Read Java archives (jar, war, ear, jpi, hpi), nested ones included.
    pub java_scan: bool,
    /// Largest Java archive (in the layer, or nested and decompressed) read.
    pub java_max_archive_bytes: u64,
    /// Deepest nesting of Java archives read (the outer one is 1).
    pub java_max_depth: u32,
    /// Most decompressed bytes read from the entries of one outer Java archive.
    pub java_max_decompressed_bytes: u64,
    /// Read Python eggs installed as zip files (`*.egg`: `EGG-INFO/PKG-INFO`).
    pub egg_scan: bool,
    /// Largest zipped egg read (bytes in the layer); a larger one is a warning.
    pub egg_max_archive_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_entry_bytes: 2 << 30,
            max_total_bytes: 16 << 30,
            max_entries: 1_000_000,
            max_kept_file_bytes: 8 << 20,
            hash_files: false,
            retrieve_files: vec!["/etc/passwd".into()],
            retrieve_max_bytes: 1000 * 1024,
            secret_scan: true,
            secret_max_file_bytes: 1 << 20,
            secret_rules: secrets::default_rules(),
            secret_allow: secrets::default_allow(),
            content_search: Vec::new(),
            binary_scan: true,
            max_binary_bytes: 32 << 20,
            java_scan: true,
            java_max_archive_bytes: 64 << 20,
            java_max_depth: 5,
            java_max_decompressed_bytes: 256 << 20,
            egg_scan: true,
            egg_max_archive_bytes: 64 << 20,
        }
    }
}

/// Why a layer could not be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("invalid extract configuration: {0}")]
    Config(String),
}

impl ExtractError {
    /// The failure kind a requester sees.
    pub fn kind(&self) -> FailureKind {
        match self {
            ExtractError::Corrupt { .. } => FailureKind::MalformedImage,
            ExtractError::Config(_) => FailureKind::Internal,
            _ => FailureKind::LimitExceeded,
        }
    }
}

/// Compression of a layer blob, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Gzip,
    Zstd,
    Tar,
}

/// Detect the compression from magic bytes (gzip `1f 8b`, zstd `28 b5 2f fd`).
pub fn detect(magic: &[u8]) -> Detected {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Detected::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Zstd
    } else {
        Detected::Tar
    }
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

/// Counts uncompressed bytes (shared with the caller) and stops at the total limit.
struct Counting<R> {
    inner: R,
    n: Rc<Cell<u64>>,
    limit: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf)?;
        let n = self.n.get() + r as u64;
        self.n.set(n);
        if n > self.limit {
            return Err(std::io::Error::other("uncompressed size limit reached"));
        }
        Ok(r)
    }
}

fn kind_of(t: tar::EntryType) -> Option<EntryKind> {
    Some(match t {
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::Hardlink,
        tar::EntryType::Char => EntryKind::Char,
        tar::EntryType::Block => EntryKind::Block,
        tar::EntryType::Fifo => EntryKind::Fifo,
        // Metadata records that `tar::Entries` did not fold into the next entry.
        tar::EntryType::XGlobalHeader
        | tar::EntryType::XHeader
        | tar::EntryType::GNULongName
        | tar::EntryType::GNULongLink => return None,
        // Regular, continuous, GNU sparse and unknown types hold file data.
        _ => EntryKind::File,
    })
}

/// Bytes of uncompressed tar handed over from the decompressing thread at a time.
const READ_AHEAD_BYTES: usize = 256 * 1024;
/// Most buffers the decompressing thread fills ahead of the tar parser.
const READ_AHEAD_DEPTH: usize = 4;

fn corrupt(layer: &str, what: &str, e: &dyn std::fmt::Display) -> ExtractError {
    ExtractError::Corrupt {
        layer: layer.to_string(),
        message: format!("{what}: {e}"),
    }
}

/// Stream one layer and build its index. Pure apart from reading `reader`, which is
/// read once, front to back. Decompression runs on a second thread (bounded read-ahead),
/// the secret and content searches of text files on a third, tar parsing and the other
/// detectors on the calling one.
pub fn index_layer(
    reader: impl Read + Send,
    layer_digest: &str,
    limits: &ExtractLimits,
) -> Result<LayerIndex, ExtractError> {
    let mut scan = FileScan::new(limits).map_err(|e| ExtractError::Config(e.to_string()))?;
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let magic = buf
        .fill_buf()
        .map_err(|e| corrupt(layer_digest, "reading the blob", &e))?;
    let dec = match detect(magic) {
        Detected::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buf))),
        Detected::Zstd => Decoder::Zstd(Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|e| corrupt(layer_digest, "starting zstd", &e))?,
        )),
        Detected::Tar => Decoder::Plain(buf),
    };
    std::thread::scope(|s| {
        let tar = readahead::spawn(s, dec, READ_AHEAD_BYTES, READ_AHEAD_DEPTH);
        let text_worker = scan.text_worker(s);
        let indexed = index_tar(tar, layer_digest, limits, &mut scan);
        scan.end_text_worker();
        let hits = text_worker.map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        let mut idx = indexed?;
        if let Some(h) = hits {
            idx.secrets.extend(h.secrets);
            idx.content_matches.extend(h.content);
        }
        Ok(idx)
    })
}

/// The tar stream of one layer to its index.
fn index_tar(
    tar: impl Read,
    layer_digest: &str,
    limits: &ExtractLimits,
    scan: &mut FileScan,
) -> Result<LayerIndex, ExtractError> {
    let layer = || layer_digest.to_string();
    let corrupt = |what: &str, e: &dyn std::fmt::Display| corrupt(layer_digest, what, e);
    let total = Rc::new(Cell::new(0u64));
    let mut archive = tar::Archive::new(Counting {
        inner: tar,
        n: total.clone(),
        limit: limits.max_total_bytes,
    });
    // An I/O error is the total limit when the counter passed it, else corruption.
    let map_io = |what: &str, e: std::io::Error| {
        if total.get() > limits.max_total_bytes {
            ExtractError::TotalTooLarge {
                layer: layer(),
                limit: limits.max_total_bytes,
            }
        } else {
            corrupt(what, &e)
        }
    };
    let mut idx = LayerIndex {
        layer_digest: layer(),
        entries: Vec::new(),
        kept: Vec::new(),
        uncompressed_size: 0,
        extractor_version: EXTRACTOR_VERSION,
        warnings: Vec::new(),
        packages: Vec::new(),
        secrets: Vec::new(),
        content_matches: Vec::new(),
    };
    let entries = archive
        .entries()
        .map_err(|e| map_io("reading the tar stream", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| map_io("reading a tar header", e))?;
        let Some(kind) = kind_of(entry.header().entry_type()) else {
            continue;
        };
        if idx.entries.len() as u64 >= limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                layer: layer(),
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
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(ExtractError::EntryTooLarge {
                layer: layer(),
                path,
                size,
                limit: limits.max_entry_bytes,
            });
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let (kind, epath) = if name == ".wh..wh..opq" {
            (
                EntryKind::Opaque,
                if dir.is_empty() { "/" } else { dir }.to_string(),
            )
        } else if let Some(hidden) = name.strip_prefix(".wh.").filter(|h| !h.is_empty()) {
            (EntryKind::Whiteout, format!("{dir}/{hidden}"))
        } else {
            (kind, path.clone())
        };
        let link = entry.link_name_bytes().map(|l| {
            let l = String::from_utf8_lossy(&l).into_owned();
            // A hard link names another entry of the archive: normalise it the same way.
            // A symlink target is kept as written (resolved later, inside the image).
            if kind == EntryKind::Hardlink {
                normalize(&l).0
            } else {
                l
            }
        });
        let h = entry.header();
        let mut fe = FileEntry {
            path: epath,
            kind,
            mode: h.mode().unwrap_or(0),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            size,
            link,
            sha256: None,
            md5: None,
            sha1: None,
        };
        if kind == EntryKind::File {
            scan.file(&mut entry, &mut fe, &mut idx)
                .map_err(|e| map_io(&format!("reading {}", fe.path), e))?;
        }
        idx.entries.push(fe);
    }
    // Read to the end of the blob so that a truncated or corrupt compressed stream (bad
    // CRC, missing trailer) is noticed even after the tar end-of-archive marker.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| map_io("reading past the end of the archive", e))?;
    idx.uncompressed_size = total.get();
    Ok(idx)
}
