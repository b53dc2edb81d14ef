//! vigil analyze stage: squash the layer indexes in order (whiteouts, opaque dirs),
//! detect the distro, run the catalogers and store the [`Analysis`]. Everything but the
//! stage itself is a pure function of the layer indexes.
//!
//! * [`squash`]: the squashed view, with symlink resolution inside the image.
//! * [`detect_distro`]: os-release and the older release files.
//! * [`CATALOGERS`]: the package catalogers (dpkg, apk) in one list.
//! * [`analyze`]: all of it, as the stage and `vigil scan` run it.

pub mod catalog;
pub mod distro;
pub mod squash;

use async_trait::async_trait;
use tracing::Instrument;
use vigil_contracts::{
    codec, Analysis, AnalyzedImage, ExtractedImage, FailureKind, ImageDescriptor, LayerIndex,
    Package, StageName, Subject, UnixMillis,
};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;

pub use catalog::{parse_apk, parse_dpkg, Cataloger, CATALOGERS};
pub use distro::{detect_distro, parse_os_release};
pub use squash::{squash, Resolved, SquashedFs, MAX_LINK_HOPS};

/// Version of the analysis; stored with each [`Analysis`].
pub const ANALYZER_VERSION: u32 = 1;

/// Run every cataloger over the squashed view. Pure.
pub fn catalog(fs: &SquashedFs, distro: Option<&vigil_contracts::Distro>) -> Vec<Package> {
    let mut packages = Vec::new();
    for c in CATALOGERS {
        for (path, content) in &fs.files {
            if c.matches(path) {
                packages.extend((c.parse)(path, content, distro));
            }
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
    let fs = squash(indexes);
    let mut warnings = fs.warnings.clone();
    let distro = detect_distro(&fs, &mut warnings);
    let packages = catalog(&fs, distro.as_ref());
    Analysis {
        descriptor: descriptor.clone(),
        distro,
        packages,
        file_count: fs.entries.len() as u64,
        image_size: indexes.iter().map(|i| i.uncompressed_size).sum(),
        analyzed_at,
        analyzer_version: ANALYZER_VERSION,
        warnings,
        files: Vec::new(),
        users: Vec::new(),
        groups: Vec::new(),
        secrets: Vec::new(),
        retrieved_files: Vec::new(),
        dockerfile: None,
        passwd_present: false,
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
            let mut indexes = Vec::with_capacity(msg.descriptor.layers.len());
            for l in &msg.descriptor.layers {
                let idx = self
                    .store
                    .get_layer_index(&l.digest)
                    .await?
                    .ok_or_else(|| {
                        // Extract stored it before handing on; a missing index is retried.
                        StageError::new(
                            FailureKind::Internal,
                            format!("no layer index for {}", l.digest),
                        )
                    })?;
                indexes.push(idx);
            }
            let started = std::time::Instant::now();
            // Squashing and parsing are in-memory and take milliseconds.
            let a = analyze(&msg.descriptor, &indexes);
            tracing::info!(
                packages = a.packages.len(),
                files = a.file_count,
                distro = a.distro.as_ref().map(|d| d.id.as_str()).unwrap_or("none"),
                ms = started.elapsed().as_millis() as u64,
                "analyzed"
            );
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
        .instrument(span)
        .await
    }
}
