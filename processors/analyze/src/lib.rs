//! vigil analyze stage: squash the layer indexes in order (whiteouts, opaque dirs),
//! detect the distro, run the catalogers and store the [`Analysis`]. Everything but the
//! stage itself is a pure function of the layer indexes: no cataloger does I/O, each
//! reads only the squashed view ([`SquashedFs`]), so each can be tested and fuzzed alone.
//!
//! * [`squash`]: the squashed view, with symlink resolution inside the image; stream
//!   packages and secrets of extract survive only where their file does.
//! * [`detect_distro`]: os-release and the older release files.
//! * [`CATALOGERS`]: every package cataloger (glob → parse function) in one list, one
//!   module per ecosystem: [`dpkg`], [`apk`], [`rpm`], [`python`], [`npm`], [`ruby`],
//!   [`dotnet`], [`php`], [`golang`], [`cargo`]; [`cpe`] and purls for all;
//!   [`ownership`] drops language packages an OS package owns.
//! * [`content`]: users, groups, retrieved files; [`dockerfile`]: guessed or actual.
//! * [`analyze_with`]: all of it, as the stage and `vigil scan` run it.
//!
//! ```
//! use vigil_analyze::{catalog_with, AnalyzeOptions, SquashedFs};
//! let mut fs = SquashedFs::default();
//! fs.files.insert(
//!     "/app/node_modules/lodash/package.json".into(),
//!     br#"{"name":"lodash","version":"4.17.15"}"#.to_vec(),
//! );
//! let p = catalog_with(&fs, None, &AnalyzeOptions::default());
//! assert_eq!(p[0].purl.as_deref(), Some("pkg:npm/lodash@4.17.15"));
//! ```

pub mod apk;
pub mod cargo;
pub mod catalog;
pub mod content;
pub mod cpe;
pub mod distro;
pub mod dockerfile;
pub mod dotnet;
pub mod dpkg;
pub mod golang;
pub mod npm;
pub mod ownership;
pub mod php;
pub mod python;
pub mod rpm;
pub mod ruby;
pub mod squash;

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::{
    codec, Analysis, AnalyzedImage, ExtractedImage, FailureKind, ImageDescriptor, LayerIndex,
    Package, SourceKind, StageName, Subject, UnixMillis,
};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;

pub use catalog::{parse_apk, parse_dpkg, CatalogCtx, Cataloger, CATALOGERS};
pub use distro::{detect_distro, parse_os_release};
pub use squash::{squash, squash_owned, Resolved, SquashedFs, MAX_LINK_HOPS};

/// Version of the analysis; stored with each [`Analysis`].
pub const ANALYZER_VERSION: u32 = 2;

/// What an analysis includes beyond the installed packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// Run the declared-source catalogers (lock and requirement files: `python-lock`,
    /// `javascript-lock`, `go-mod-file`, …). Syft runs them for directory scans only:
    /// true for `dir:` sources.
    pub declared_sources: bool,
    /// Paths whose kept bytes are stored as `retrieved_files` (extract must keep them:
    /// see `vigil_extract::KEEP_RULES`).
    pub retrieve_paths: Vec<String>,
    /// Most bytes stored of one retrieved file.
    pub retrieve_max_bytes: usize,
    /// The Dockerfile supplied with the request (`RequestContext::dockerfile`).
    pub actual_dockerfile: Option<String>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            declared_sources: false,
            retrieve_paths: vec!["/etc/passwd".into()],
            retrieve_max_bytes: 1 << 20,
            actual_dockerfile: None,
        }
    }
}

impl AnalyzeOptions {
    /// The defaults for an image: declared sources for `dir:` sources only.
    pub fn for_descriptor(d: &ImageDescriptor) -> Self {
        AnalyzeOptions {
            declared_sources: d.image.source_kind == SourceKind::Dir,
            ..Default::default()
        }
    }
}

/// Run every cataloger over the squashed view. Pure.
pub fn catalog(fs: &SquashedFs, distro: Option<&vigil_contracts::Distro>) -> Vec<Package> {
    catalog_with(fs, distro, &AnalyzeOptions::default())
}

/// Run the catalogers the options ask for, add extract's stream packages, drop the
/// language packages OS packages own, fill purls' companions (CPEs) and sort. Pure.
pub fn catalog_with(
    fs: &SquashedFs,
    distro: Option<&vigil_contracts::Distro>,
    opts: &AnalyzeOptions,
) -> Vec<Package> {
    let ctx = CatalogCtx { fs, distro };
    // Every (cataloger, file) pair to parse, in cataloger then path order.
    let work: Vec<(&Cataloger, &str, &[u8])> = CATALOGERS
        .iter()
        .filter(|c| !c.declared || opts.declared_sources)
        .flat_map(|c| {
            fs.files
                .iter()
                .filter(|(path, _)| c.matches(path))
                .map(move |(path, content)| (c, path.as_str(), content.as_slice()))
        })
        .collect();
    let parse = |(c, path, content): &(&Cataloger, &str, &[u8])| {
        let mut found = (c.parse)(&ctx, path, content);
        for p in &mut found {
            p.found_by.get_or_insert_with(|| c.name.to_string());
        }
        found
    };
    let mut packages: Vec<Package> = parallel_map(&work, parse).into_iter().flatten().collect();
    packages.extend(fs.stream_packages.iter().cloned());
    ownership::drop_owned(&mut packages);
    for p in &mut packages {
        if p.purl.is_none() {
            p.purl = default_purl(p);
        }
        if p.cpes.is_empty() {
            p.cpes = cpe::generate(p);
        }
    }
    packages.sort_by(|a, b| {
        (a.kind, &a.name, &a.version, &a.arch, &a.locations).cmp(&(
            b.kind,
            &b.name,
            &b.version,
            &b.arch,
            &b.locations,
        ))
    });
    packages
}

/// `f` over `items` on up to as many threads as there are cores (the parsers are pure
/// and independent: a dpkg database and a few hundred Python METADATA files share the
/// work), results in `items`' order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(run)).collect();
        let mut all = run();
        for h in helpers {
            all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A purl for a package that came without one (extract's stream packages): by type,
/// from the name and the `group_id`/`artifact_id` metadata of Java archives.
fn default_purl(p: &Package) -> Option<String> {
    use vigil_contracts::PackageType as T;
    let (n, v) = (p.name.as_str(), p.version.as_str());
    match p.kind {
        T::GoModule => golang::go_purl(n, v),
        T::JavaArchive => {
            let artifact = p
                .metadata
                .get("artifact_id")
                .map(String::as_str)
                .unwrap_or(n);
            let group = p.metadata.get("group_id").map(String::as_str).unwrap_or("");
            catalog::purl_of("maven", group, artifact, v)
        }
        T::RustCrate => catalog::purl_of("cargo", "", n, v),
        T::Npm => npm::npm_purl(n, v),
        T::Python => catalog::purl_of("pypi", "", &python::normalize_name(n), v),
        T::Gem => catalog::purl_of("gem", "", n, v),
        T::Dotnet => catalog::purl_of("nuget", "", n, v),
        T::Php => {
            let (ns, name) = n.split_once('/').unwrap_or(("", n));
            catalog::purl_of("composer", ns, name, v)
        }
        T::Binary | T::Deb | T::Apk | T::Rpm => catalog::purl_of("generic", "", n, v),
    }
}

/// Analyse an image from its layer indexes (bottom layer first), stamped now.
pub fn analyze(descriptor: &ImageDescriptor, indexes: &[LayerIndex]) -> Analysis {
    analyze_at(descriptor, indexes, vigil_runtime::now_millis())
}

/// [`analyze`] with a given `analyzed_at`: a pure function of its inputs.
pub fn analyze_at(
    descriptor: &ImageDescriptor,
    indexes: &[LayerIndex],
    analyzed_at: UnixMillis,
) -> Analysis {
    analyze_with(
        descriptor,
        indexes,
        &AnalyzeOptions::for_descriptor(descriptor),
        analyzed_at,
    )
}

/// The whole analysis with explicit options. Pure.
pub fn analyze_with(
    descriptor: &ImageDescriptor,
    indexes: &[LayerIndex],
    opts: &AnalyzeOptions,
    analyzed_at: UnixMillis,
) -> Analysis {
    analyze_owned(descriptor, indexes.to_vec(), opts, analyzed_at)
}

/// [`analyze_with`], consuming the indexes: their entries and kept bytes move into the
/// analysis instead of being copied.
pub fn analyze_owned(
    descriptor: &ImageDescriptor,
    indexes: Vec<LayerIndex>,
    opts: &AnalyzeOptions,
    analyzed_at: UnixMillis,
) -> Analysis {
    let image_size = indexes.iter().map(|i| i.uncompressed_size).sum();
    let fs = squash_owned(indexes);
    let mut warnings = fs.warnings.clone();
    let distro = detect_distro(&fs, &mut warnings);
    let packages = catalog_with(&fs, distro.as_ref(), opts);
    for t in &fs.truncated {
        if CATALOGERS.iter().any(|c| c.matches(t)) {
            warnings.push(format!(
                "{t}: cut at extract's keep cap; packages in it may be missing"
            ));
        }
    }
    let passwd = fs.read_file("/etc/passwd", &mut warnings);
    let users = passwd
        .map(|b| content::parse_passwd(&String::from_utf8_lossy(b)))
        .unwrap_or_default();
    let groups = fs
        .read_file("/etc/group", &mut warnings)
        .map(|b| content::parse_group(&String::from_utf8_lossy(b)))
        .unwrap_or_default();
    let dockerfile = match &opts.actual_dockerfile {
        Some(t) => Some(dockerfile::actual(t)),
        None => dockerfile::guessed(&descriptor.config.history),
    };
    let passwd_present = passwd.is_some();
    let retrieved_files = content::retrieve(&fs, &opts.retrieve_paths, opts.retrieve_max_bytes);
    // The squashed view is done with: its entries move into the analysis.
    let SquashedFs {
        entries,
        secrets,
        content_matches,
        ..
    } = fs;
    Analysis {
        descriptor: descriptor.clone(),
        distro,
        packages,
        file_count: entries.len() as u64,
        image_size,
        analyzed_at,
        analyzer_version: ANALYZER_VERSION,
        warnings,
        files: entries.into_values().collect(),
        passwd_present,
        users,
        groups,
        secrets,
        content_matches,
        retrieved_files,
        dockerfile,
        from_sbom: false,
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
        let span = tracing::info_span!(
            "analyze",
            request_id = %msg.request.request_id,
            image = %msg.descriptor.image.digest,
            layers = msg.descriptor.layers.len()
        );
        async {
            // The layers' indexes are read and decoded side by side.
            let reads = msg.descriptor.layers.iter().map(|l| async move {
                self.store.get_layer_index(&l.digest).await?.ok_or_else(|| {
                    // Extract stored it before handing on; a missing index is retried.
                    StageError::new(
                        FailureKind::Internal,
                        format!("no layer index for {}", l.digest),
                    )
                })
            });
            let indexes = futures::future::try_join_all(reads).await?;
            let started = std::time::Instant::now();
            let opts = AnalyzeOptions {
                actual_dockerfile: msg.request.dockerfile.clone(),
                ..AnalyzeOptions::for_descriptor(&msg.descriptor)
            };
            let descriptor = msg.descriptor.clone();
            // Squashing and parsing are pure CPU work: off the async workers.
            let a = tokio::task::spawn_blocking(move || {
                analyze_owned(&descriptor, indexes, &opts, vigil_runtime::now_millis())
            })
            .await
            .map_err(|e| StageError::internal(format!("analysis task: {e}")))?;
            tracing::info!(
                packages = a.packages.len(),
                files = a.file_count,
                distro = a.distro.as_ref().map(|d| d.id.as_str()).unwrap_or("none"),
                ms = started.elapsed().as_millis() as u64,
                "analyzed"
            );
            self.store
                .put_analysis_shared(std::sync::Arc::new(a))
                .await?;
            let digest = msg.descriptor.image.digest.clone();
            Ok(vec![Outgoing::record(
                Subject::Stage(StageName::Match),
                format!("{}:analyze:{digest}", msg.request.request_id),
                &AnalyzedImage {
                    request: Some(msg.request),
                    image_digest: digest,
                    cause: None,
                },
            )?])
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod parallel_tests {
    #[test]
    fn parallel_map_keeps_the_order_of_its_items() {
        // Uneven work, so that threads finish out of order.
        let items: Vec<u64> = (0..200).collect();
        let out = super::parallel_map(&items, |&i| {
            let spin = if i % 7 == 0 { 20_000 } else { 10 };
            (0..spin).fold(i, |a, x| a.wrapping_add(x % 3)) - (0..spin).map(|x| x % 3).sum::<u64>()
        });
        assert_eq!(out, items);
        assert!(super::parallel_map(&Vec::<u64>::new(), |&i| i).is_empty());
    }
}
