//! Record types. Everything is keyed by content (digests, advisory ids), so that a
//! redelivered message writes the same thing again and changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::subjects::StageName;

macro_rules! record {
    ($t:ty, $kind:literal) => {
        impl Record for $t {
            const KIND: &'static str = $kind;
        }
    };
}

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// Who asked for a scan and how; travels with every stage record of that scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RequestContext {
    /// Caller-chosen or generated id; the result is published on `<prefix>.result.<request_id>`.
    pub request_id: String,
    /// Source as the user wrote it: `HOST/REPO:TAG`, `HOST/REPO@sha256:…`, `oci-dir:PATH`,
    /// `docker-archive:PATH`, `dir:PATH`.
    pub source: String,
    /// `os/arch[/variant]`; `None` means linux/amd64.
    #[serde(default)]
    pub platform: Option<String>,
    /// Stored policy bundle to evaluate with; `None` means the active one (or the built-in default).
    #[serde(default)]
    pub policy_id: Option<String>,
    /// An inline policy bundle (JSON), evaluated without being stored.
    #[serde(default)]
    pub policy_bundle: Option<String>,
    #[serde(default)]
    pub submitted_at: UnixMillis,
    /// The image's Dockerfile as the user supplied it (the "actual" Dockerfile).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Image index digest when this request is one platform of a `--platform all` scan.
    #[serde(default)]
    pub index_digest: Option<String>,
    /// How often extract sent this request back to fetch because a staged layer blob
    /// had expired from the blob cache (bounded, so that a cache too small for one
    /// image ends in a failure rather than a loop).
    #[serde(default)]
    pub refetches: u32,
}

impl RequestContext {
    pub fn new(request_id: impl Into<String>, source: impl Into<String>) -> Self {
        RequestContext {
            request_id: request_id.into(),
            source: source.into(),
            ..Default::default()
        }
    }
}

/// `<prefix>.scan.request`: the public entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRequest {
    pub request: RequestContext,
    /// Re-analyse even when an analysis for the digest exists.
    #[serde(default)]
    pub force: bool,
    /// A CycloneDX, SPDX or Syft JSON document to match instead of fetching an image.
    #[serde(default)]
    pub sbom: Option<String>,
}
record!(ScanRequest, "scan_request");

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Registry,
    OciDir,
    DockerArchive,
    Dir,
}

/// Identity of one (single-platform) image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub source_kind: SourceKind,
    /// `registry/repository` for registry images, the path for local sources.
    pub name: String,
    /// The tag, when the image was named by one.
    #[serde(default)]
    pub tag: Option<String>,
    /// The image id used as store key: the manifest digest (`sha256:…`).
    pub digest: String,
    /// The index the manifest was selected from, for multi-platform images.
    #[serde(default)]
    pub index_digest: Option<String>,
    pub config_digest: String,
    /// `os/arch[/variant]` of this image.
    pub platform: String,
}

impl ImageRef {
    /// `name:tag` or `name@digest`, as users write it.
    pub fn full_tag(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{}", self.name, t),
            None => format!("{}@{}", self.name, self.digest),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One layer as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the blob as stored (compressed); the layer index key.
    pub digest: String,
    /// Digest of the uncompressed tar, from the config's rootfs.diff_ids.
    #[serde(default)]
    pub diff_id: Option<String>,
    pub media_type: String,
    /// Size of the blob in bytes.
    pub size: u64,
    pub compression: Compression,
}

/// One entry of the config's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HistoryEntry {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub empty_layer: bool,
}

/// The parts of the image config that analysis and policy use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// As in the config: `22/tcp`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `Healthcheck.Test`, when present.
    #[serde(default)]
    pub healthcheck: Option<Vec<String>>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// rootfs.diff_ids in layer order.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An image with its config and layers, as fetch and extract hand it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDescriptor {
    pub image: ImageRef,
    pub config: ImageConfig,
    /// Bottom layer first.
    pub layers: Vec<LayerRef>,
}

/// `<prefix>.stage.extract`: fetch staged the blobs of `to_extract`; the other layers are indexed already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedImage {
    pub request: RequestContext,
    pub descriptor: ImageDescriptor,
    /// Blob digests of the layers that have no layer index yet, staged in the blob cache.
    pub to_extract: Vec<String>,
    #[serde(default)]
    pub force: bool,
}
record!(FetchedImage, "fetched_image");

/// `<prefix>.stage.analyze`: every layer of the image has a stored layer index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedImage {
    pub request: RequestContext,
    pub descriptor: ImageDescriptor,
}
record!(ExtractedImage, "extracted_image");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    /// `.wh.NAME`: `path` is the deleted path.
    Whiteout,
    /// `.wh..wh..opq`: `path` is the directory whose lower contents are hidden.
    Opaque,
}

/// One tar entry of a layer, path normalised to an absolute, `..`-free form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    #[serde(default)]
    pub link: Option<String>,
    /// Hex sha256 of a regular file's content, when hashing was asked for.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Hex md5 of a regular file's content, when hashing was asked for (package
    /// databases record md5: dpkg's `md5sums`, older rpm headers).
    #[serde(default)]
    pub md5: Option<String>,
    /// Hex sha1 of a regular file's content, when hashing was asked for (apk's
    /// `Z:Q1…` file checksums).
    #[serde(default)]
    pub sha1: Option<String>,
}

impl FileEntry {
    pub fn is_setuid(&self) -> bool {
        self.mode & 0o4000 != 0
    }
    pub fn is_setgid(&self) -> bool {
        self.mode & 0o2000 != 0
    }
}

/// A secret found in a file: where and by which rule, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHit {
    pub path: String,
    /// Rule name, e.g. `AWS_ACCESS_KEY`.
    pub rule: String,
    /// 1-based line number.
    pub line: u64,
}

/// Bytes of a file that analysis needs (package databases, os-release, passwd…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    pub path: String,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
    /// The file was larger than the keep cap; `content` is its beginning.
    #[serde(default)]
    pub truncated: bool,
}

/// What extract records of one layer, stored by layer digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    pub layer_digest: String,
    /// Version of the extractor that wrote it; an index from another version is redone.
    /// Declared (so encoded) before the entries: [`crate::codec::peek_body_u64`] reads it
    /// without walking them.
    pub extractor_version: u32,
    /// Entries in tar order.
    pub entries: Vec<FileEntry>,
    pub kept: Vec<KeptFile>,
    /// Uncompressed tar bytes read.
    pub uncompressed_size: u64,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Secrets found while the layer streamed.
    #[serde(default)]
    pub secrets: Vec<SecretHit>,
    /// Matches of the configured content-search regexes (`rule` is the regex), for the
    /// policy's `files.content_regex_match`.
    #[serde(default)]
    pub content_matches: Vec<SecretHit>,
    /// Packages recognised in file contents while the layer streamed: Go and Rust build
    /// information in binaries, Java archives (nested ones too), runtime binaries. Each
    /// has the file it came from as its first location.
    #[serde(default)]
    pub packages: Vec<Package>,
}
record!(LayerIndex, "layer_index");

/// Distribution of the image, from os-release or its fallbacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Distro {
    /// `debian`, `alpine`, `ubuntu`, …
    pub id: String,
    #[serde(default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub codename: Option<String>,
    #[serde(default)]
    pub id_like: Vec<String>,
    #[serde(default)]
    pub pretty_name: Option<String>,
}

/// Package ecosystem, named as Syft names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageType {
    Deb,
    Apk,
    Rpm,
    Python,
    Npm,
    JavaArchive,
    GoModule,
    Gem,
    RustCrate,
    Dotnet,
    Php,
    Binary,
}

impl PackageType {
    pub fn as_str(&self) -> &'static str {
        match self {
            PackageType::Deb => "deb",
            PackageType::Apk => "apk",
            PackageType::Rpm => "rpm",
            PackageType::Python => "python",
            PackageType::Npm => "npm",
            PackageType::JavaArchive => "java-archive",
            PackageType::GoModule => "go-module",
            PackageType::Gem => "gem",
            PackageType::RustCrate => "rust-crate",
            PackageType::Dotnet => "dotnet",
            PackageType::Php => "php",
            PackageType::Binary => "binary",
        }
    }

    /// OS packages are matched against distro feeds.
    pub fn is_os(&self) -> bool {
        matches!(self, PackageType::Deb | PackageType::Apk | PackageType::Rpm)
    }
}

/// One package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub kind: PackageType,
    #[serde(default)]
    pub arch: Option<String>,
    /// Source package (deb), origin (apk), source RPM name (rpm).
    #[serde(default)]
    pub source_name: Option<String>,
    #[serde(default)]
    pub source_version: Option<String>,
    #[serde(default)]
    pub licenses: Vec<String>,
    /// Where the package's metadata was read (path in the image).
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default)]
    pub purl: Option<String>,
    #[serde(default)]
    pub cpes: Vec<String>,
    /// Files the package owns (OS packages; for ownership of language packages).
    #[serde(default)]
    pub files: Vec<String>,
    /// Digests the package database records for its files: path → `<algo>:<hex>`
    /// (`md5:` from dpkg `md5sums`; `sha256:` or `md5:` from rpm FILEDIGESTS by
    /// FILEDIGESTALGO; `sha1:` from apk `Z:Q1…`), for the policy's `packages.verify`.
    #[serde(default)]
    pub file_digests: BTreeMap<String, String>,
    /// Ecosystem details: `epoch`, `release`, `group_id`, `artifact_id`, `main_module`,
    /// `go_toolchain`, `source_rpm`, …
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The cataloger that found it (`dpkg-db`, `python-installed`, `go-binary`, …).
    #[serde(default)]
    pub found_by: Option<String>,
}

impl Package {
    pub fn new(name: impl Into<String>, version: impl Into<String>, kind: PackageType) -> Self {
        Package {
            name: name.into(),
            version: version.into(),
            kind,
            arch: None,
            source_name: None,
            source_version: None,
            licenses: Vec::new(),
            locations: Vec::new(),
            purl: None,
            cpes: Vec::new(),
            files: Vec::new(),
            file_digests: BTreeMap::new(),
            metadata: BTreeMap::new(),
            found_by: None,
        }
    }
}

/// One entry of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u64,
    pub gid: u64,
    #[serde(default)]
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// The raw line, as Anchore's passwd_file gate matches full entries.
    pub entry: String,
}

/// One entry of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub gid: u64,
    #[serde(default)]
    pub members: Vec<String>,
}

/// A file whose content is stored with the analysis (`retrieved_files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievedFile {
    pub path: String,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerfileMode {
    /// Reconstructed from the config's history.
    Guessed,
    /// Supplied by the user with the request.
    Actual,
}

/// One Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerInstruction {
    /// Upper case: `RUN`, `USER`, `EXPOSE`, `HEALTHCHECK`, …
    pub instruction: String,
    pub args: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dockerfile {
    pub mode: DockerfileMode,
    pub text: String,
    pub instructions: Vec<DockerInstruction>,
}

/// The analysis of one image: its SBOM plus image metadata. Stored by image digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub descriptor: ImageDescriptor,
    #[serde(default)]
    pub distro: Option<Distro>,
    pub packages: Vec<Package>,
    /// Number of entries in the squashed file system.
    pub file_count: u64,
    /// Sum of uncompressed layer sizes.
    pub image_size: u64,
    pub analyzed_at: UnixMillis,
    pub analyzer_version: u32,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The squashed file system, path order.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub secrets: Vec<SecretHit>,
    /// Content-search matches (`rule` is the regex).
    #[serde(default)]
    pub content_matches: Vec<SecretHit>,
    #[serde(default)]
    pub retrieved_files: Vec<RetrievedFile>,
    #[serde(default)]
    pub dockerfile: Option<Dockerfile>,
    /// Whether `/etc/passwd` was present (Anchore's `content_not_available`).
    #[serde(default)]
    pub passwd_present: bool,
    /// The analysis came from an imported SBOM, not from image content.
    #[serde(default)]
    pub from_sbom: bool,
}
record!(Analysis, "analysis");

impl Analysis {
    /// An analysis of `descriptor` holding only a distro and packages (everything else
    /// empty): imported SBOMs, synthetic images in tests and load tests.
    pub fn of_packages(
        descriptor: ImageDescriptor,
        distro: Option<Distro>,
        packages: Vec<Package>,
    ) -> Self {
        Analysis {
            descriptor,
            distro,
            packages,
            file_count: 0,
            image_size: 0,
            analyzed_at: 0,
            analyzer_version: 0,
            warnings: Vec::new(),
            files: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            secrets: Vec::new(),
            content_matches: Vec::new(),
            retrieved_files: Vec::new(),
            dockerfile: None,
            passwd_present: false,
            from_sbom: false,
        }
    }

    /// A synthetic image reference (`dir` source, digest `sha256:t`) for tests.
    pub fn test_descriptor() -> ImageDescriptor {
        ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Dir,
                name: "t".into(),
                tag: None,
                digest: "sha256:t".into(),
                index_digest: None,
                config_digest: "sha256:c".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig::default(),
            layers: vec![],
        }
    }
}

/// `<prefix>.stage.match`: an analysis to match (scan) or re-match (feed update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzedImage {
    /// `None` when the match was not asked for by a request (feed update).
    #[serde(default)]
    pub request: Option<RequestContext>,
    pub image_digest: String,
    /// What asked for a re-match without a request (`<feed>:<sync id>`), so that the
    /// re-matches of two feed updates are two different messages.
    #[serde(default)]
    pub cause: Option<String>,
}
record!(AnalyzedImage, "analyzed_image");

/// `<prefix>.stage.match`: images to re-match after a feed update, several per message.
/// A feed delta that hits a thousand images fans out a few dozen of these, not a thousand
/// single messages: the images of one message share their advisory reads (images built
/// on one base hold the same packages) and its JetStream round trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RematchImages {
    /// `<feed>:<sync id>` of the feed update.
    pub cause: String,
    /// Image digests, sorted, each once.
    pub images: Vec<String>,
}
record!(RematchImages, "rematch_images");

/// Severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Severity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Parse vendor wording (`unimportant`, `moderate`, `important`, CVSS rating names…).
    pub fn parse_loose(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "negligible" | "unimportant" | "none" => Severity::Negligible,
            "low" | "minor" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }
}

/// Whether and how an advisory says a fix exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixState {
    /// A fixed version exists.
    Fixed,
    /// Affected, no fix yet.
    NotFixed,
    /// The vendor will not fix it (Debian no-dsa, ignored, postponed).
    WontFix,
    /// The vendor says the package is not affected.
    NotAffected,
}

/// A CVSS score from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// `nvd`, or the vendor/feed name (`debian`, `ghsa`, …).
    pub source: String,
    /// `3.1`, `3.0`, `4.0`, `2.0`.
    pub version: String,
    pub vector: String,
    pub base_score: f64,
    #[serde(default)]
    pub exploitability_score: Option<f64>,
    #[serde(default)]
    pub impact_score: Option<f64>,
}

impl Eq for Cvss {}

/// How the bounds of an [`AffectedRange`] are ordered (OSV's range `type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeKind {
    /// The ecosystem's own version ordering (OSV `ECOSYSTEM`; every distro feed).
    #[default]
    Ecosystem,
    /// SemVer 2.0 precedence whatever the ecosystem (OSV `SEMVER`); a version that is
    /// not SemVer falls back to the ecosystem's ordering.
    Semver,
}

impl RangeKind {
    fn is_ecosystem(&self) -> bool {
        *self == RangeKind::Ecosystem
    }
}

/// One affected-range statement of an advisory for one package in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedRange {
    /// How the bounds are ordered; absent in records written before it existed
    /// (decoded as `Ecosystem`).
    #[serde(default, skip_serializing_if = "RangeKind::is_ecosystem")]
    pub kind: RangeKind,
    /// Inclusive lower bound; `None` (or "0") means from the beginning.
    #[serde(default)]
    pub introduced: Option<String>,
    /// Exclusive upper bound: the first fixed version.
    #[serde(default)]
    pub fixed: Option<String>,
    /// Inclusive upper bound, when the source gives the last affected version instead.
    #[serde(default)]
    pub last_affected: Option<String>,
}

/// A normalised advisory for one package in one namespace. Stored by (namespace, package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    /// CVE-…, GHSA-…, ALSA-…, GO-…
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `debian:12`, `alpine:3.19`, `osv:PyPI`, …
    pub namespace: String,
    /// Package name as the feed names it (Debian: source package).
    pub package: String,
    /// The feed that supplied it (`debian`, `alpine`, `osv`).
    pub feed: String,
    pub severity: Severity,
    pub state: FixState,
    /// Affected when any range contains the version (OR).
    #[serde(default)]
    pub ranges: Vec<AffectedRange>,
    /// Explicitly listed affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub published: Option<String>,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default)]
    pub cvss: Vec<Cvss>,
    #[serde(default)]
    pub cwes: Vec<String>,
    /// The record is withdrawn (OSV `withdrawn`); never matched.
    #[serde(default)]
    pub withdrawn: bool,
    /// Debian/Ubuntu "vendor only" style: the vendor disputes or will not fix it.
    #[serde(default)]
    pub vendor_only: bool,
    /// When the fix was published, if the source says.
    #[serde(default)]
    pub fix_published: Option<String>,
    /// The RHEL module stream (`name:stream`, e.g. `nodejs:18`) the advisory is about:
    /// it applies only to packages built for that stream (rpm `MODULARITYLABEL`).
    /// `None`: not about a module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}
record!(Advisory, "advisory");

impl Advisory {
    /// The advisory's identity under its (namespace, package) key and its store sort
    /// key: the id, plus `|module` for a module stream's advisory, so that two streams
    /// of one package under the same id are kept apart.
    pub fn record_key(&self) -> String {
        match &self.module {
            Some(m) => format!("{}|{m}", self.id),
            None => self.id.clone(),
        }
    }
}

/// The package a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub kind: PackageType,
    #[serde(default)]
    pub location: Option<String>,
}

/// Why a finding matched, so that a user can audit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchDetail {
    pub namespace: String,
    /// The name looked up (binary or source package).
    pub searched_name: String,
    /// `dpkg`, `apk`, …
    pub comparator: String,
    /// Human-readable constraint, e.g. `< 2.36-9+deb12u4`.
    pub constraint: String,
}

/// One vulnerability in one package of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub vuln_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub package: PackageRef,
    #[serde(default)]
    pub fixed_in: Option<String>,
    pub state: FixState,
    pub feed: String,
    pub matched: MatchDetail,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub cvss: Vec<Cvss>,
    /// When the vulnerability was published (RFC 3339), for `max_days_since_creation`.
    #[serde(default)]
    pub published: Option<String>,
    /// When the fix was published, for `max_days_since_fix`.
    #[serde(default)]
    pub fix_published: Option<String>,
    #[serde(default)]
    pub vendor_only: bool,
}

impl Finding {
    /// Anchore's trigger id for vulnerability matches: `VULN+package`.
    pub fn key(&self) -> String {
        format!("{}+{}", self.vuln_id, self.package.name)
    }
}

/// Vulnerabilities of one image. Stored by image digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnReport {
    pub image_digest: String,
    pub findings: Vec<Finding>,
    /// Namespaces looked up that had advisory data.
    #[serde(default)]
    pub namespaces_with_data: Vec<String>,
    pub matched_at: UnixMillis,
}
record!(VulnReport, "vuln_report");

/// `<prefix>.stage.evaluate`: a matched image to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedImage {
    #[serde(default)]
    pub request: Option<RequestContext>,
    pub image_digest: String,
    /// The change against the previously stored report, when there was one.
    #[serde(default)]
    pub diff: Option<VulnDiff>,
    /// When the match was made (the report's `matched_at`): the time of the evaluation
    /// it leads to, so that a redelivered message evaluates to the same record.
    #[serde(default)]
    pub matched_at: UnixMillis,
}
record!(MatchedImage, "matched_image");

/// Added, updated and removed findings between two reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VulnDiff {
    pub added: Vec<Finding>,
    pub updated: Vec<Finding>,
    pub removed: Vec<Finding>,
}

impl VulnDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// Policy action; the order is STOP < WARN < GO, as in Anchore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Stop,
    Warn,
    Go,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Stop => "STOP",
            Action::Warn => "WARN",
            Action::Go => "GO",
        }
    }
}

/// One trigger match of a policy rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFinding {
    pub gate: String,
    pub trigger: String,
    pub trigger_id: String,
    pub message: String,
    pub action: Action,
    pub policy_id: String,
    pub rule_id: String,
    #[serde(default)]
    pub allowlisted: bool,
    #[serde(default)]
    pub allowlist_id: Option<String>,
}

/// The result of evaluating one image against one bundle. Stored per image and tag as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub image_digest: String,
    pub tag: String,
    pub bundle_id: String,
    pub policy_ids: Vec<String>,
    pub final_action: Action,
    /// `policy_evaluation`, `blacklisted`, `whitelisted`, `no_mappings`, `no_match`, `bundle_error`.
    pub final_action_reason: String,
    pub findings: Vec<PolicyFinding>,
    pub evaluated_at: UnixMillis,
}
record!(Evaluation, "evaluation");

/// `<prefix>.stage.notify`: an evaluated image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluatedImage {
    #[serde(default)]
    pub request: Option<RequestContext>,
    pub image_digest: String,
    pub evaluation: Evaluation,
    /// Final action of the previously stored evaluation for the same tag.
    #[serde(default)]
    pub previous_action: Option<Action>,
    #[serde(default)]
    pub diff: Option<VulnDiff>,
}
record!(EvaluatedImage, "evaluated_image");

/// What kind of error ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request itself is malformed (bad source, bad policy).
    InvalidRequest,
    NotFound,
    Unauthorized,
    RateLimited,
    /// The registry or feed server failed (5xx, connection reset).
    Upstream,
    DigestMismatch,
    /// Manifest, config or layer content is malformed.
    MalformedImage,
    LimitExceeded,
    Unsupported,
    Store,
    Timeout,
    Internal,
}

impl FailureKind {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FailureKind::RateLimited
                | FailureKind::Upstream
                | FailureKind::Store
                | FailureKind::Timeout
                | FailureKind::Internal
        )
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub stage: StageName,
    pub kind: FailureKind,
    pub message: String,
}

/// `<prefix>.stage.notify`: a request that failed in some stage, routed to notify so
/// that it ends in a result and an `analysis_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageFailed {
    pub request: RequestContext,
    pub failure: Failure,
    #[serde(default)]
    pub image_digest: Option<String>,
}
record!(StageFailed, "stage_failed");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    Succeeded,
    Failed,
}

/// Counts a requester sees without loading the full report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScanSummary {
    pub packages: u64,
    pub vulnerabilities: u64,
    /// Count per severity name.
    pub by_severity: BTreeMap<String, u64>,
    pub final_action: Option<Action>,
    pub distro: Option<String>,
}

/// `<prefix>.result.<request_id>`: how a request ended. Stored by request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResult {
    pub request_id: String,
    pub status: ScanStatus,
    pub source: String,
    #[serde(default)]
    pub image_digest: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub summary: Option<ScanSummary>,
    #[serde(default)]
    pub failure: Option<Failure>,
    pub completed_at: UnixMillis,
    /// The full report (SBOM, findings, evaluation) so that a requester needs no store
    /// access; absent on failures.
    #[serde(default)]
    pub report: Option<ScanReport>,
    /// `--platform all` of a multi-platform image: this result only announces one
    /// request per platform (their ids), each of which ends in its own result.
    #[serde(default)]
    pub platform_requests: Vec<String>,
}
record!(ScanResult, "scan_result");

/// What a requester needs to render the same report `vigil scan` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScanReport {
    #[serde(default)]
    pub distro: Option<Distro>,
    pub packages: Vec<Package>,
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub evaluation: Option<Evaluation>,
    /// The image as analysed: reference, config, layers.
    #[serde(default)]
    pub descriptor: Option<ImageDescriptor>,
    #[serde(default)]
    pub secrets: Vec<SecretHit>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Files with the setuid or setgid bit.
    #[serde(default)]
    pub setuid_files: Vec<FileEntry>,
    #[serde(default)]
    pub dockerfile: Option<Dockerfile>,
    #[serde(default)]
    pub from_sbom: bool,
}

impl ScanReport {
    /// The report's content as an [`Analysis`] (for SBOM export): no file list.
    pub fn to_analysis(&self) -> Option<Analysis> {
        let mut a = Analysis::of_packages(
            self.descriptor.clone()?,
            self.distro.clone(),
            self.packages.clone(),
        );
        a.files = self.setuid_files.clone();
        a.users = self.users.clone();
        a.groups = self.groups.clone();
        a.passwd_present = !self.users.is_empty();
        a.secrets = self.secrets.clone();
        a.dockerfile = self.dockerfile.clone();
        a.from_sbom = self.from_sbom;
        Some(a)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    TagUpdate,
    AnalysisUpdate,
    VulnUpdate,
    PolicyEval,
    RepoUpdate,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 5] = [
        NotificationKind::TagUpdate,
        NotificationKind::AnalysisUpdate,
        NotificationKind::VulnUpdate,
        NotificationKind::PolicyEval,
        NotificationKind::RepoUpdate,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::TagUpdate => "tag_update",
            NotificationKind::AnalysisUpdate => "analysis_update",
            NotificationKind::VulnUpdate => "vuln_update",
            NotificationKind::PolicyEval => "policy_eval",
            NotificationKind::RepoUpdate => "repo_update",
        }
    }

    pub fn parse(s: &str) -> Option<NotificationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The subscription type that lets this kind out of NATS.
    pub fn subscription(&self) -> crate::watch::SubscriptionKind {
        use crate::watch::SubscriptionKind as S;
        match self {
            NotificationKind::TagUpdate => S::TagUpdate,
            NotificationKind::AnalysisUpdate => S::AnalysisUpdate,
            NotificationKind::VulnUpdate => S::VulnUpdate,
            NotificationKind::PolicyEval => S::PolicyEval,
            NotificationKind::RepoUpdate => S::RepoUpdate,
        }
    }
}

/// What changed, by notification kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotificationPayload {
    TagUpdate {
        previous_digests: Vec<String>,
        current_digest: String,
    },
    AnalysisUpdate {
        /// `analyzed` or `analysis_failed`.
        status: String,
        #[serde(default)]
        failure: Option<Failure>,
    },
    VulnUpdate {
        diff: VulnDiff,
    },
    PolicyEval {
        previous_action: Option<Action>,
        current_action: Action,
        policy_id: String,
    },
    RepoUpdate {
        added_tags: Vec<String>,
        removed_tags: Vec<String>,
    },
}

/// `<prefix>.notify.<kind>`: something a subscriber should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Content-derived id, also the `Nats-Msg-Id`.
    pub id: String,
    pub kind: NotificationKind,
    /// The full tag (or source) the notification is about.
    pub subscription_key: String,
    #[serde(default)]
    pub image_digest: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    pub payload: NotificationPayload,
    pub created_at: UnixMillis,
}
record!(Notification, "notification");

/// A package key whose advisories changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackageKey {
    pub namespace: String,
    pub package: String,
}

/// `<prefix>.feeds.updated`: the result of one feed sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedDelta {
    pub feed: String,
    pub sync_id: String,
    pub changed: Vec<PackageKey>,
    pub synced_at: UnixMillis,
}
record!(FeedDelta, "feed_delta");

/// `<prefix>.feeds.sync`: ask the feeds stage to sync now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FeedSyncRequest {
    /// Feed names; empty means all configured feeds.
    #[serde(default)]
    pub feeds: Vec<String>,
}
record!(FeedSyncRequest, "feed_sync_request");

/// Sync state of one feed. Stored by feed name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FeedState {
    pub feed: String,
    pub url: String,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// sha256 of the last content ingested.
    #[serde(default)]
    pub content_hash: Option<String>,
    pub last_sync: UnixMillis,
    pub record_count: u64,
    /// Records per namespace.
    #[serde(default)]
    pub namespaces: BTreeMap<String, u64>,
    /// The version of vigil's feed parsing that produced the stored advisories (0: before
    /// it was recorded). A sync by a vigil whose parsing is newer fetches and parses the
    /// content again even when it is unchanged, so stored advisories gain what the new
    /// parsing extracts.
    #[serde(default)]
    pub parser_version: u32,
}
record!(FeedState, "feed_state");

/// `<prefix>.dlq.<stage>`: a message given up on, with the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub stage: StageName,
    pub subject: String,
    pub deliveries: u64,
    pub error: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub failed_at: UnixMillis,
}
record!(DeadLetter, "dead_letter");

/// A message too large to travel inline: its encoded record is an object in the
/// `<PREFIX>_payloads` object store, named by the SHA-256 of its bytes. Any subscriber
/// of vigil's subjects may receive one in place of any record (a full scan result of a
/// large image is several MB, more than NATS's `max_payload`); it fetches the object,
/// checks `sha256` and decodes that as the record named by `record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// The record kind of the referenced bytes (`scan_result`, …).
    pub record: String,
    /// Object name in the payload bucket.
    pub object: String,
    pub size: u64,
    /// Hex SHA-256 of the referenced bytes.
    pub sha256: String,
}
record!(PayloadRef, "payload_ref");

/// A stored policy bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBundle {
    pub id: String,
    pub name: String,
    /// The bundle JSON as submitted.
    pub json: String,
    pub active: bool,
    pub created_at: UnixMillis,
}
record!(StoredBundle, "stored_bundle");

/// `<prefix>.policy.updated`: the active bundle changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUpdated {
    pub bundle_id: String,
    pub updated_at: UnixMillis,
    /// The bundle itself (JSON), when the publisher has no access to the store: the
    /// evaluate stage stores it and makes it active before re-evaluating.
    #[serde(default)]
    pub bundle_json: Option<String>,
}
record!(PolicyUpdated, "policy_updated");
