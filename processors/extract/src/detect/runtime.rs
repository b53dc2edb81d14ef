//! Runtimes not owned by a package manager, recognised by file name and a version string
//! in their bytes: Python (`python3.X`, `libpython3.X.so*`), Node.js (`node`), Java (the
//! JDK `release` file, the `java` launcher) and BusyBox. Content is searched in bounded
//! chunks with an overlap, so a binary of any size costs one pass and no buffer.

use regex::bytes::Regex;
use vigil_contracts::{Package, PackageType};

/// Which runtime a file may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// `python3.11` / `libpython3.11.so.1.0`: the `3.11` from the name.
    Python(String),
    Node,
    JavaRelease,
    JavaBinary,
    BusyBox,
}

impl Candidate {
    /// The package name reported.
    pub fn name(&self) -> &'static str {
        match self {
            Candidate::Python(_) => "python",
            Candidate::Node => "node",
            Candidate::JavaRelease | Candidate::JavaBinary => "java",
            Candidate::BusyBox => "busybox",
        }
    }
}

/// The runtime `path` may be, from its name alone.
pub fn candidate(path: &str) -> Option<Candidate> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if let Some(v) = name.strip_prefix("python") {
        if is_major_minor(v) {
            return Some(Candidate::Python(v.to_string()));
        }
    }
    if let Some(rest) = name.strip_prefix("libpython") {
        if let Some((v, _)) = rest.split_once(".so") {
            let v = v.trim_end_matches('m');
            if is_major_minor(v) {
                return Some(Candidate::Python(v.to_string()));
            }
        }
    }
    match name {
        "node" | "nodejs" => Some(Candidate::Node),
        "busybox" => Some(Candidate::BusyBox),
        "java" if dir.ends_with("/bin") => Some(Candidate::JavaBinary),
        "release" => {
            let parent = dir.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
            (dir.contains("/jvm/")
                || parent.contains("jdk")
                || parent.contains("jre")
                || parent.contains("java"))
            .then_some(Candidate::JavaRelease)
        }
        _ => None,
    }
}

fn is_major_minor(v: &str) -> bool {
    let mut parts = v.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Bytes kept between chunks so that a version string split by a chunk edge is seen.
const OVERLAP: usize = 256;

/// Searches a file's chunks for the candidate's version string.
#[derive(Debug)]
pub struct Scanner {
    candidate: Candidate,
    re: Regex,
    carry: Vec<u8>,
    found: Option<String>,
}

impl Scanner {
    pub fn new(candidate: Candidate) -> Self {
        let pattern = match &candidate {
            Candidate::Python(mm) => format!(
                r"(?-u)(?:^|[^0-9.])({}\.[0-9]+(?:(?:a|b|rc)[0-9]+)?\+?)(?:[^0-9.]|$)",
                regex::escape(mm)
            ),
            Candidate::Node => r"(?-u)node\.js/v([0-9]+\.[0-9]+\.[0-9]+)".into(),
            Candidate::JavaRelease => r#"(?m)^JAVA_VERSION="([^"\n]+)""#.into(),
            // OpenJDK launchers carry `\0openjdk\0java\0<release>\0<version>\0`.
            Candidate::JavaBinary => {
                r"(?-u)\x00(?:openjdk|java)\x00java\x00[0-9][0-9.]*\x00([0-9][^\x00]{0,40})\x00"
                    .into()
            }
            Candidate::BusyBox => r"(?-u)BusyBox v([0-9]+\.[0-9]+(?:\.[0-9]+)?)".into(),
        };
        Scanner {
            candidate,
            re: Regex::new(&pattern).expect("runtime patterns compile"),
            carry: Vec::new(),
            found: None,
        }
    }

    /// Feed the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.found.is_some() {
            return;
        }
        let hay: std::borrow::Cow<[u8]> = if self.carry.is_empty() {
            chunk.into()
        } else {
            let mut j = std::mem::take(&mut self.carry);
            j.extend_from_slice(chunk);
            j.into()
        };
        if let Some(c) = self.re.captures(&hay) {
            if let Some(m) = c.get(1) {
                self.found = Some(String::from_utf8_lossy(m.as_bytes()).into_owned());
                return;
            }
        }
        let keep = hay.len().min(OVERLAP);
        self.carry = hay[hay.len() - keep..].to_vec();
    }

    /// The runtime package, if a version was found.
    pub fn finish(self, location: &str) -> Option<Package> {
        let version = self.found?;
        let name = self.candidate.name();
        let mut p = Package::new(name, version.clone(), PackageType::Binary);
        p.purl = packageurl::PackageUrl::new("generic", name)
            .ok()
            .and_then(|mut u| u.with_version(version.as_str()).ok().map(|u| u.to_string()));
        p.locations = vec![location.to_string()];
        p.found_by = Some(format!("binary-{name}"));
        Some(p)
    }
}

/// One-shot: the runtime package of a whole file (tests, small files).
pub fn detect(path: &str, bytes: &[u8]) -> Option<Package> {
    let mut s = Scanner::new(candidate(path)?);
    s.feed(bytes);
    s.finish(path)
}
