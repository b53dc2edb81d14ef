//! Detectors that run while a layer streams, each a pure function over bytes:
//!
//! * [`secrets`]: named regex rules over text files (path, rule, line; never the text).
//! * [`golang`]: Go build info of ELF binaries (modules, replacements, `stdlib`).
//! * [`rust_audit`]: `cargo-auditable` dependency data of ELF binaries.
//! * [`java`]: jar/war/ear/jpi/hpi archives, nested at any depth up to a limit.
//! * [`python_egg`]: Python eggs installed as zip files (`EGG-INFO/PKG-INFO`).
//! * [`runtime`]: Python, Node.js, Java and BusyBox runtimes by version string.
//!
//! With `hash_files`, every regular file's sha256, md5 and sha1 (`FileEntry`).
//!
//! [`FileScan`] feeds one tar entry to the detectors that want it, chunk by chunk.

pub mod elf;
pub mod golang;
pub mod java;
pub mod literals;
pub mod python_egg;
pub mod runtime;
pub mod rust_audit;
pub mod secrets;
pub mod text;

use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use vigil_contracts::{FileEntry, KeptFile, LayerIndex};

use crate::index::ExtractLimits;
use crate::path::{glob_match, wanted};

/// Chunk size of the per-file read loop.
const CHUNK: usize = 256 * 1024;
/// Bytes captured after the Go build-info magic in a binary too large to buffer.
const GO_WINDOW: usize = 1 << 20;

/// The detectors compiled from the configuration, and the buffers reused across the
/// entries of one layer.
pub struct FileScan {
    limits: ExtractLimits,
    /// The secret and content searches, when either is configured.
    text: Option<Arc<text::TextSearch>>,
    /// Where text files go when the searches run on a worker ([`FileScan::text_worker`]);
    /// without one they run inline.
    text_queue: Option<text::TextQueue>,
    java: java::JavaLimits,
    chunk: Vec<u8>,
    full: Vec<u8>,
}

impl FileScan {
    /// Compile the configured rules.
    pub fn new(limits: &ExtractLimits) -> Result<Self, secrets::RuleError> {
        let secrets = if limits.secret_scan {
            Some(secrets::SecretScanner::new(
                &limits.secret_rules,
                &limits.secret_allow,
            )?)
        } else {
            None
        };
        let content = if limits.content_search.is_empty() {
            None
        } else {
            let rules: Vec<secrets::SecretRule> = limits
                .content_search
                .iter()
                .map(|r| secrets::SecretRule {
                    name: r.clone(),
                    regex: r.clone(),
                })
                .collect();
            Some(secrets::SecretScanner::new(&rules, &[])?)
        };
        let text = (secrets.is_some() || content.is_some())
            .then(|| Arc::new(text::TextSearch { secrets, content }));
        Ok(FileScan {
            text,
            text_queue: None,
            java: java::JavaLimits {
                max_depth: limits.java_max_depth,
                max_decompressed: limits.java_max_decompressed_bytes,
                max_nested_bytes: limits.java_max_archive_bytes,
            },
            limits: limits.clone(),
            chunk: vec![0; CHUNK],
            full: Vec::new(),
        })
    }

    /// Run the text searches on a worker thread of `scope` from now on; joining the
    /// handle (after [`FileScan::end_text_worker`]) gives their hits. `None` when no
    /// search is configured.
    pub fn text_worker<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> Option<std::thread::ScopedJoinHandle<'scope, text::TextHits>> {
        let search = self.text.clone()?;
        let (queue, handle) = text::spawn(scope, search);
        self.text_queue = Some(queue);
        Some(handle)
    }

    /// No more files for the worker: it ends once it has searched what it was given.
    pub fn end_text_worker(&mut self) {
        self.text_queue = None;
    }

    /// The keep cap of `path`: the analysis keep list, then the retrieve list.
    fn keep_cap(&self, path: &str) -> Option<u64> {
        let analysis = wanted(path).then_some(self.limits.max_kept_file_bytes);
        let retrieve = self
            .limits
            .retrieve_files
            .iter()
            .any(|g| glob_match(g, path))
            .then_some(self.limits.retrieve_max_bytes);
        analysis.max(retrieve)
    }

    /// Read one regular file's content from `entry`, feeding every detector that wants
    /// it; results go into `idx` and `fe`. Holds at most the largest applicable cap of
    /// the file in memory.
    pub fn file(
        &mut self,
        entry: &mut impl Read,
        fe: &mut FileEntry,
        idx: &mut LayerIndex,
    ) -> std::io::Result<()> {
        let l = &self.limits;
        let size = fe.size;
        let keep_cap = self.keep_cap(&fe.path);
        let name = fe.path.rsplit('/').next().unwrap_or("");
        let maybe_java = l.java_scan && java::is_archive_name(name);
        let is_egg = l.egg_scan && python_egg::is_egg_name(name);
        let rt = if l.binary_scan {
            runtime::candidate(&fe.path)
        } else {
            None
        };
        let maybe_elf = l.binary_scan && size >= 52;
        let maybe_secret = self.text.is_some() && size > 0 && size <= l.secret_max_file_bytes;
        if keep_cap.is_none()
            && !maybe_java
            && !is_egg
            && rt.is_none()
            && !maybe_elf
            && !maybe_secret
            && !l.hash_files
        {
            return Ok(());
        }

        // The first chunk decides what the file is.
        let first = read_full(entry, &mut self.chunk[..(size.min(CHUNK as u64) as usize)])?;
        let head = &self.chunk[..first];
        let is_elf = maybe_elf && elf::is_elf(head);
        let is_text = maybe_secret && !is_elf && !secrets::looks_binary(head);
        let is_zip = maybe_java && head.starts_with(b"PK");
        let mut limit = keep_cap.unwrap_or(0);
        if is_text {
            limit = limit.max(size);
        }
        let mut go_stream = None;
        if is_elf {
            if size <= l.max_binary_bytes {
                limit = limit.max(size);
            } else {
                go_stream = Some(golang::StreamScan::new(GO_WINDOW));
            }
        }
        if is_zip {
            if size <= l.java_max_archive_bytes {
                limit = limit.max(size);
            } else {
                idx.warnings.push(format!(
                    "{}: Java archive of {size} bytes is over java_max_archive_bytes ({}); not read",
                    fe.path, l.java_max_archive_bytes
                ));
            }
        }
        if is_egg {
            if size <= l.egg_max_archive_bytes {
                limit = limit.max(size);
            } else {
                idx.warnings.push(format!(
                    "{}: Python egg of {size} bytes is over egg_max_archive_bytes ({}); not read",
                    fe.path, l.egg_max_archive_bytes
                ));
            }
        }
        let mut hasher = l.hash_files.then(Hashes::default);
        let mut rt_scan = rt.map(runtime::Scanner::new);
        self.full.clear();

        if limit >= size {
            // The whole file is wanted: read it straight into the buffer, then feed the
            // chunk-wise detectors from there (one copy fewer).
            self.full.reserve(size as usize);
            self.full.extend_from_slice(&self.chunk[..first]);
            entry
                .take(size - first as u64)
                .read_to_end(&mut self.full)?;
            for c in self.full.chunks(CHUNK) {
                if let Some(h) = hasher.as_mut() {
                    h.update(c);
                }
                if let Some(s) = rt_scan.as_mut() {
                    s.feed(c);
                }
            }
            // Drain anything past the header's size (nothing, for a well-formed tar).
            let mut n = entry.read(&mut self.chunk)?;
            while n > 0 {
                n = entry.read(&mut self.chunk)?;
            }
        } else {
            let mut n = first;
            loop {
                let c = &self.chunk[..n];
                if let Some(h) = hasher.as_mut() {
                    h.update(c);
                }
                if let Some(s) = rt_scan.as_mut() {
                    s.feed(c);
                }
                if let Some(g) = go_stream.as_mut() {
                    g.feed(c);
                }
                let room = limit.saturating_sub(self.full.len() as u64);
                if room > 0 {
                    self.full
                        .extend_from_slice(&c[..(room.min(n as u64) as usize)]);
                }
                n = entry.read(&mut self.chunk)?;
                if n == 0 {
                    break;
                }
            }
        }
        let l = &self.limits;
        let whole = self.full.len() as u64 == size;

        if let Some(h) = hasher {
            h.finish(fe);
        }
        if let Some(cap) = keep_cap {
            let k = (cap as usize).min(self.full.len());
            if size > cap {
                idx.warnings
                    .push(format!("{} is {size} bytes; kept the first {cap}", fe.path));
            }
            idx.kept.push(KeptFile {
                path: fe.path.clone(),
                truncated: size > cap,
                content: self.full[..k].to_vec(),
            });
        }
        if is_elf && whole {
            match golang::from_elf(&self.full) {
                Ok(Some(info)) => idx.packages.extend(golang::packages(&info, &fe.path)),
                Ok(None) => {}
                Err(e) => idx
                    .warnings
                    .push(format!("{}: Go build info unreadable: {e}", fe.path)),
            }
            match rust_audit::from_elf(&self.full, &fe.path) {
                Ok(p) => idx.packages.extend(p),
                Err(e) => idx.warnings.push(format!("{}: {e}", fe.path)),
            }
        }
        if let Some(blob) = go_stream.and_then(|g| g.finish()) {
            match golang::from_window(&blob) {
                Ok(info) => idx.packages.extend(golang::packages(&info, &fe.path)),
                Err(e) => idx.warnings.push(format!(
                    "{}: {size}-byte binary over max_binary_bytes ({}): Go build info not read: {e}",
                    fe.path, l.max_binary_bytes
                )),
            }
        }
        if is_zip && whole {
            let r = java::scan(&self.full, &fe.path, &self.java);
            idx.packages.extend(r.packages);
            idx.warnings.extend(r.warnings);
        }
        if is_egg && whole && size <= l.egg_max_archive_bytes {
            let r = python_egg::scan(&self.full, &fe.path);
            idx.packages.extend(r.packages);
            idx.warnings.extend(r.warnings);
        }
        if let Some(p) = rt_scan.and_then(|s| s.finish(&fe.path)) {
            idx.packages.push(p);
        }
        // Last, as it may hand the buffer over to the worker.
        if is_text && whole {
            self.search_text(&fe.path, idx);
        }
        // Do not hold on to a large buffer between files.
        if self.full.capacity() > 16 << 20 {
            self.full = Vec::new();
        }
        Ok(())
    }
}

impl FileScan {
    /// Search the text file in `self.full`: on the worker when there is one (the buffer
    /// goes with it), else here, straight into `idx`.
    fn search_text(&mut self, path: &str, idx: &mut LayerIndex) {
        if let Some(q) = &mut self.text_queue {
            if q.submit(path, &mut self.full) {
                return;
            }
            // The worker is gone (it panicked): search here rather than lose the file.
            self.text_queue = None;
        }
        if let Some(search) = &self.text {
            let mut hits = text::TextHits::default();
            search.search(path, &self.full, &mut hits);
            idx.secrets.extend(hits.secrets);
            idx.content_matches.extend(hits.content);
        }
    }
}

/// The digests `hash_files` records: sha256, and the md5 and sha1 package databases
/// record (dpkg `md5sums`, rpm FILEDIGESTS, apk `Z:Q1…`).
#[derive(Default)]
struct Hashes {
    sha256: Sha256,
    md5: md5::Md5,
    sha1: sha1::Sha1,
}

impl Hashes {
    fn update(&mut self, c: &[u8]) {
        self.sha256.update(c);
        self.md5.update(c);
        self.sha1.update(c);
    }

    fn finish(self, fe: &mut FileEntry) {
        fe.sha256 = Some(hex::encode(self.sha256.finalize()));
        fe.md5 = Some(hex::encode(self.md5.finalize()));
        fe.sha1 = Some(hex::encode(self.sha1.finalize()));
    }
}

/// Fill `buf` from `r` as far as it goes; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    match crate::readahead::fill(r, buf) {
        (n, None) => Ok(n),
        (_, Some(e)) => Err(e),
    }
}
