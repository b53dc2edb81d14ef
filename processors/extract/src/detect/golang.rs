//! Go build info in ELF binaries: the `.go.buildinfo` blob (magic `\xff Go buildinf:`),
//! in the inline-string format of Go ≥ 1.18 and the pointer format before it, parsed into
//! the main module, the dependencies (with `=>` replacements) and the toolchain version.

use std::collections::BTreeMap;

use vigil_contracts::{Package, PackageType};

use super::elf::Elf;

/// The 14-byte magic at the start of the build-info blob.
pub const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Header size: magic, pointer size, flags, padding to 32 bytes.
const HEADER: usize = 32;
/// Most bytes one build-info string may have (the module list of a large program is a
/// few hundred KiB at most).
pub const MAX_STRING: u64 = 4 << 20;

/// A module line of the build info.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Module {
    pub path: String,
    pub version: String,
    pub sum: Option<String>,
    pub replace: Option<Box<Module>>,
}

/// What a Go binary says about how it was built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildInfo {
    /// `go1.19.8` (first word of the runtime version).
    pub go_version: String,
    /// The `path` line: the main package's import path.
    pub path: String,
    pub main: Option<Module>,
    pub deps: Vec<Module>,
    /// `build` lines: `-compiler=gc`, `GOARCH=amd64`, `vcs.revision=…`.
    pub settings: BTreeMap<String, String>,
}

/// Why build info could not be read although the magic was there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoError {
    #[error("build info header truncated")]
    Truncated,
    #[error("build info string out of range")]
    BadString,
    #[error("pointer-format build info needs the whole binary")]
    NeedsWholeFile,
    #[error("unsupported pointer size {0}")]
    PointerSize(u8),
}

/// Find and decode the build info of a whole ELF file. `Ok(None)`: not a Go binary.
pub fn from_elf(data: &[u8]) -> Result<Option<BuildInfo>, GoError> {
    let Some(elf) = Elf::parse(data) else {
        return Ok(None);
    };
    let start = match elf.section_offset(".go.buildinfo") {
        Some(o) if data.get(o as usize..).is_some_and(|d| d.starts_with(MAGIC)) => o as usize,
        // A section table without the section: not a Go binary.
        _ if !elf.sections.is_empty() => return Ok(None),
        // Stripped section table: the blob is 16-byte aligned in a data segment.
        _ => match memchr::memmem::find_iter(data, MAGIC).find(|p| p.is_multiple_of(16)) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let blob = &data[start..];
    if blob.len() < HEADER {
        return Err(GoError::Truncated);
    }
    let (vers, modinfo) = if blob[15] & 2 != 0 {
        read_inline(blob)?
    } else {
        read_pointers(&elf, blob)?
    };
    Ok(Some(parse(&vers, &modinfo)))
}

/// Decode a build-info blob that starts at the magic, in the inline format only (no
/// access to the rest of the binary): used on a bounded window of a large binary.
pub fn from_window(blob: &[u8]) -> Result<BuildInfo, GoError> {
    if blob.len() < HEADER || !blob.starts_with(MAGIC) {
        return Err(GoError::Truncated);
    }
    if blob[15] & 2 == 0 {
        return Err(GoError::NeedsWholeFile);
    }
    let (vers, modinfo) = read_inline(blob)?;
    Ok(parse(&vers, &modinfo))
}

fn read_inline(blob: &[u8]) -> Result<(Vec<u8>, Vec<u8>), GoError> {
    let mut pos = HEADER;
    let mut next = || -> Result<Vec<u8>, GoError> {
        let (len, n) = uvarint(blob.get(pos..).ok_or(GoError::BadString)?)?;
        if len > MAX_STRING {
            return Err(GoError::BadString);
        }
        let s = pos + n;
        let e = s.checked_add(len as usize).ok_or(GoError::BadString)?;
        let v = blob.get(s..e).ok_or(GoError::BadString)?.to_vec();
        pos = e;
        Ok(v)
    };
    let vers = next()?;
    let modinfo = next()?;
    Ok((vers, modinfo))
}

fn read_pointers(elf: &Elf, blob: &[u8]) -> Result<(Vec<u8>, Vec<u8>), GoError> {
    let psize = blob[14];
    if psize != 4 && psize != 8 {
        return Err(GoError::PointerSize(psize));
    }
    let be = blob[15] & 1 != 0;
    let word = |b: &[u8]| -> u64 {
        match (psize, be) {
            (8, false) => u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
            (8, true) => u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8])),
            (_, false) => u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4])) as u64,
            (_, true) => u32::from_be_bytes(b[..4].try_into().unwrap_or([0; 4])) as u64,
        }
    };
    let p = psize as usize;
    let need = 16 + 2 * p;
    if blob.len() < need {
        return Err(GoError::Truncated);
    }
    // Each pointer names a Go string header {data pointer, length}.
    let string_at = |addr: u64| -> Result<Vec<u8>, GoError> {
        let hdr = elf
            .read_vaddr(addr, 2 * p as u64)
            .ok_or(GoError::BadString)?;
        let (data, len) = (word(&hdr[..p]), word(&hdr[p..]));
        if len > MAX_STRING {
            return Err(GoError::BadString);
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(elf
            .read_vaddr(data, len)
            .ok_or(GoError::BadString)?
            .to_vec())
    };
    let vers = string_at(word(&blob[16..16 + p]))?;
    let modinfo = string_at(word(&blob[16 + p..16 + 2 * p]))?;
    Ok((vers, modinfo))
}

fn uvarint(b: &[u8]) -> Result<(u64, usize), GoError> {
    let mut x = 0u64;
    for (i, &c) in b.iter().enumerate().take(10) {
        x |= ((c & 0x7f) as u64) << (7 * i);
        if c < 0x80 {
            return Ok((x, i + 1));
        }
    }
    Err(GoError::BadString)
}

/// Parse the version string and the module info text (with or without its 16-byte
/// sentinels).
pub fn parse(vers: &[u8], modinfo: &[u8]) -> BuildInfo {
    let mut m = modinfo;
    // Sentinels: 16 bytes before and after the text, which ends with a newline.
    if m.len() >= 33 && m[m.len() - 17] == b'\n' {
        m = &m[16..m.len() - 16];
    }
    let text = String::from_utf8_lossy(m);
    let mut info = BuildInfo {
        go_version: String::from_utf8_lossy(vers)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
        ..Default::default()
    };
    // Which module the next `=>` line replaces: None, the main module, or a dep.
    let mut last_is_main = None::<bool>;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let module = || Module {
            path: f.get(1).unwrap_or(&"").to_string(),
            version: f.get(2).unwrap_or(&"").to_string(),
            sum: f.get(3).filter(|s| !s.is_empty()).map(|s| s.to_string()),
            replace: None,
        };
        match f[0] {
            "path" if f.len() >= 2 => info.path = f[1].to_string(),
            "mod" if f.len() >= 2 => {
                info.main = Some(module());
                last_is_main = Some(true);
            }
            "dep" if f.len() >= 2 => {
                info.deps.push(module());
                last_is_main = Some(false);
            }
            "=>" if f.len() >= 2 => {
                let r = Some(Box::new(module()));
                match last_is_main {
                    Some(true) => {
                        if let Some(m) = info.main.as_mut() {
                            m.replace = r;
                        }
                    }
                    Some(false) => {
                        if let Some(d) = info.deps.last_mut() {
                            d.replace = r;
                        }
                    }
                    None => {}
                }
                last_is_main = None;
            }
            "build" if f.len() >= 2 => {
                let kv = f[1..].join("\t");
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                info.settings.insert(k.to_string(), v.to_string());
            }
            _ => {}
        }
    }
    info
}

/// The pseudo-version Go would give a `(devel)` main module built from a VCS checkout:
/// `v0.0.0-YYYYMMDDhhmmss-<12 hex of the revision>`, as Syft reports it.
fn pseudo_version(settings: &BTreeMap<String, String>) -> Option<String> {
    let rev = settings.get("vcs.revision")?;
    let time = settings.get("vcs.time")?;
    let digits: String = time
        .chars()
        .take_while(|&c| c != 'Z' && c != '+' && c != '.')
        .filter(|c| c.is_ascii_digit())
        .collect();
    if digits.len() != 14 || rev.len() < 12 {
        return None;
    }
    Some(format!("v0.0.0-{digits}-{}", &rev[..12]))
}

fn golang_purl(path: &str, version: &str) -> Option<String> {
    let (ns, name) = match path.rsplit_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, path),
    };
    let mut p = packageurl::PackageUrl::new("golang", name).ok()?;
    if let Some(ns) = ns {
        p.with_namespace(ns).ok()?;
    }
    if !version.is_empty() && version != "(devel)" {
        p.with_version(version).ok()?;
    }
    Some(p.to_string())
}

/// The packages of one binary at `location`: main module, dependencies (replacements
/// win, as the binary was built with them) and `stdlib` at the toolchain version.
pub fn packages(info: &BuildInfo, location: &str) -> Vec<Package> {
    let main_path = info
        .main
        .as_ref()
        .map(|m| m.path.clone())
        .unwrap_or_else(|| info.path.clone());
    let arch = info.settings.get("GOARCH").cloned();
    let mk = |m: &Module, version: String| {
        let mut p = Package::new(m.path.clone(), version, PackageType::GoModule);
        p.purl = golang_purl(&m.path, &p.version);
        p.locations = vec![location.to_string()];
        p.found_by = Some("go-binary".into());
        p.arch = arch.clone();
        if !main_path.is_empty() {
            p.metadata.insert("main_module".into(), main_path.clone());
        }
        if !info.go_version.is_empty() {
            p.metadata
                .insert("go_toolchain".into(), info.go_version.clone());
        }
        if let Some(h) = &m.sum {
            p.metadata.insert("h1".into(), h.clone());
        }
        p
    };
    let mut out = Vec::new();
    let main = info.main.clone().or_else(|| {
        (!info.path.is_empty()).then(|| Module {
            path: info.path.clone(),
            version: "(devel)".into(),
            ..Default::default()
        })
    });
    if let Some(m) = main {
        let m = match m.replace {
            Some(r) => *r,
            None => m,
        };
        let version = if m.version.is_empty() || m.version == "(devel)" {
            pseudo_version(&info.settings).unwrap_or_else(|| "(devel)".into())
        } else {
            m.version.clone()
        };
        let mut p = mk(&m, version);
        if let Some(r) = info.settings.get("vcs.revision") {
            p.metadata.insert("vcs_revision".into(), r.clone());
        }
        out.push(p);
    }
    for d in &info.deps {
        let p = match &d.replace {
            Some(r) => {
                let mut p = mk(r, r.version.clone());
                p.metadata
                    .insert("replaces".into(), format!("{} {}", d.path, d.version));
                p
            }
            None => mk(d, d.version.clone()),
        };
        out.push(p);
    }
    if !info.go_version.is_empty() {
        let m = Module {
            path: "stdlib".into(),
            ..Default::default()
        };
        let mut p = mk(&m, info.go_version.clone());
        p.purl = golang_purl("stdlib", info.go_version.trim_start_matches("go"));
        p.metadata.remove("h1");
        out.push(p);
    }
    out
}

/// Streaming search for the inline build-info blob in a binary too large to buffer:
/// feed the file in chunks; once the magic is seen at a 16-byte-aligned file offset, up
/// to `window` bytes from it are captured.
#[derive(Debug)]
pub struct StreamScan {
    window: usize,
    /// Bytes of the file seen so far.
    offset: u64,
    /// The last bytes of the previous chunk (magic split across chunks).
    carry: Vec<u8>,
    captured: Option<Vec<u8>>,
}

impl StreamScan {
    pub fn new(window: usize) -> Self {
        StreamScan {
            window,
            offset: 0,
            carry: Vec::new(),
            captured: None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if let Some(c) = self.captured.as_mut() {
            let room = self.window.saturating_sub(c.len());
            c.extend_from_slice(&chunk[..room.min(chunk.len())]);
            self.offset += chunk.len() as u64;
            return;
        }
        let carry_start = self.offset - self.carry.len() as u64;
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(chunk);
        if let Some(p) = memchr::memmem::find_iter(&joined, MAGIC)
            .find(|&p| (carry_start + p as u64).is_multiple_of(16))
        {
            let end = joined.len().min(p + self.window);
            self.captured = Some(joined[p..end].to_vec());
        } else {
            let keep = joined.len().min(MAGIC.len() - 1);
            self.carry = joined[joined.len() - keep..].to_vec();
        }
        self.offset += chunk.len() as u64;
    }

    /// The captured blob, if the magic was seen.
    pub fn finish(self) -> Option<Vec<u8>> {
        self.captured
    }
}
