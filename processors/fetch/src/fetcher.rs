//! Resolving sources to image descriptors and staging layer blobs.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use vigil_contracts::{
    Compression, FailureKind, ImageConfig, ImageDescriptor, ImageRef, LayerRef, SourceKind,
};
use vigil_runtime::blobs::{sha256_hex, BlobStore, DigestCheck};

use crate::config::FetchConfig;
use crate::error::FetchError;
use crate::image::{
    config_platform, layer_refs, parse_config, parse_manifest, sha256_digest, Descriptor,
    ManifestError, Parsed, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST,
};
use crate::platform::{host_arch, select_platform, Platform};
use crate::registry::{MismatchSlot, Registries, RepoHandle};
use crate::source::{parse_source, Source};

/// Nesting allowed for index → index → manifest.
const MAX_INDEX_DEPTH: usize = 4;

/// A resolved image: its descriptor and where its layer blobs can be read.
pub struct Resolved {
    pub descriptor: ImageDescriptor,
    /// Source as displayed in messages.
    pub display: String,
    layers: LayerSource,
}

enum LayerSource {
    Registry(RepoHandle),
    OciDir(PathBuf),
    /// Archive path and, per layer digest, the tar entry holding it.
    DockerArchive(PathBuf, HashMap<String, String>),
    /// The synthesised layer, spooled to a temp file removed on drop.
    Dir(tempfile::TempPath),
}

/// Fetches images from any source kind.
pub struct Fetcher {
    config: FetchConfig,
    registries: Registries,
}

fn manifest_err(image: &str, what: &str, e: ManifestError) -> FetchError {
    match e {
        ManifestError::Malformed(m) => FetchError::malformed(image, format!("{what}: {m}")),
        ManifestError::Unsupported(m) => {
            FetchError::new(FailureKind::Unsupported, image, format!("{what}: {m}"))
        }
    }
}

fn verify(image: &str, what: &str, expected: &str, bytes: &[u8]) -> Result<(), FetchError> {
    let actual = sha256_digest(bytes);
    if actual != expected {
        return Err(FetchError::DigestMismatch {
            image: image.into(),
            what: what.into(),
            expected: expected.into(),
            actual,
        });
    }
    Ok(())
}

fn io_err(image: &str, what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::new(FailureKind::NotFound, image, format!("{what}: {e}"))
}

/// Where manifests and small blobs come from while resolving.
enum ManifestSource<'a> {
    Registry(&'a RepoHandle),
    OciDir(&'a Path),
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Self {
        Fetcher {
            registries: Registries::new(config.clone()),
            config,
        }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Get ready to fetch `source`: for a registry image, probe the registry and build
    /// its client (TLS roots and all, milliseconds of CPU) now, so that a caller with
    /// other start-up work can overlap the two. Errors are left to the fetch itself.
    pub async fn prepare(&self, source: &str) {
        if let Ok(Source::Registry(r)) = parse_source(source) {
            if let Err(e) = self.registries.client_for(&r.registry, &r.display()).await {
                tracing::debug!(error = %e, "preparing the registry client failed");
            }
        }
    }

    /// Resolve `source` for `platform` (`None`: the configured default).
    pub async fn resolve(
        &self,
        source: &str,
        platform: Option<&str>,
    ) -> Result<Resolved, FetchError> {
        let src = parse_source(source)?;
        let p = platform
            .filter(|p| !p.trim().is_empty())
            .unwrap_or(&self.config.default_platform);
        let want = Platform::parse(p).ok_or_else(|| FetchError::InvalidPlatform(p.to_string()))?;
        match &src {
            Source::Registry(r) => self.resolve_registry(r, &want).await,
            Source::OciDir { path, reference } => {
                self.resolve_oci_dir(&src.display(), path, reference.as_deref(), &want)
                    .await
            }
            Source::DockerArchive { path } => {
                self.resolve_docker_archive(&src.display(), path).await
            }
            Source::Dir { path } => self.resolve_dir(&src.display(), path).await,
        }
    }

    /// The platforms of a multi-platform image (`--platform all`): the index digest and
    /// its platforms, in index order, without attestation entries (`unknown/unknown`).
    /// `None` when the source is a single image.
    pub async fn index_platforms(
        &self,
        source: &str,
    ) -> Result<Option<(String, Vec<String>)>, FetchError> {
        let src = parse_source(source)?;
        let (image, bytes) = match &src {
            Source::Registry(r) => {
                let h = self.registries.handle(r).await?;
                let top = h.manifest(None, self.config.max_manifest_bytes).await?;
                if let Some(d) = &r.digest {
                    verify(&h.image, &format!("manifest {d}"), d, &top)?;
                }
                (h.image.clone(), top)
            }
            Source::OciDir { path, reference } => {
                let image = src.display();
                let manifests = self.layout_index(&image, path).await?;
                const REF: &str = "org.opencontainers.image.ref.name";
                let entry = match reference {
                    Some(r) => match manifests
                        .iter()
                        .find(|m| m.annotations.get(REF).map(String::as_str) == Some(r.as_str()))
                    {
                        Some(m) => Some(m),
                        // Unknown ref: resolving the single image reports it.
                        None => return Ok(None),
                    },
                    None if manifests.len() == 1 => manifests.first(),
                    // index.json itself lists the platforms.
                    None => None,
                };
                match entry {
                    Some(e) => {
                        let ms = ManifestSource::OciDir(path);
                        let b = self.read_manifest(&ms, &image, &e.digest).await?;
                        (image, b)
                    }
                    // index.json itself lists the platforms.
                    None => {
                        let digest = sha256_digest(
                            &tokio::fs::read(path.join("index.json"))
                                .await
                                .map_err(|e| io_err(&image, "index.json", e))?,
                        );
                        return Ok(Some((digest, platforms_of(&manifests))));
                    }
                }
            }
            Source::DockerArchive { .. } | Source::Dir { .. } => return Ok(None),
        };
        match parse_manifest(&bytes).map_err(|e| manifest_err(&image, "manifest", e))? {
            Parsed::Index { manifests } => {
                Ok(Some((sha256_digest(&bytes), platforms_of(&manifests))))
            }
            Parsed::Manifest { .. } => Ok(None),
        }
    }

    async fn read_manifest(
        &self,
        ms: &ManifestSource<'_>,
        image: &str,
        digest: &str,
    ) -> Result<Vec<u8>, FetchError> {
        let limit = self.config.max_manifest_bytes;
        let bytes = match ms {
            ManifestSource::Registry(h) => h.manifest(Some(digest), limit).await?,
            ManifestSource::OciDir(root) => read_layout_blob(root, image, digest, limit).await?,
        };
        verify(image, &format!("manifest {digest}"), digest, &bytes)?;
        Ok(bytes)
    }

    async fn read_config(
        &self,
        ms: &ManifestSource<'_>,
        image: &str,
        digest: &str,
    ) -> Result<Vec<u8>, FetchError> {
        let limit = self.config.max_manifest_bytes;
        let what = format!("config {digest}");
        let bytes = match ms {
            ManifestSource::Registry(h) => {
                let (mut r, slot) = h.blob_reader(digest).await?;
                let mut buf = Vec::new();
                let res = (&mut r).take(limit + 1).read_to_end(&mut buf).await;
                check_slot(image, &what, &slot)?;
                res.map_err(|e| {
                    FetchError::new(FailureKind::Upstream, image, format!("{what}: {e}"))
                })?;
                if buf.len() as u64 > limit {
                    return Err(FetchError::new(
                        FailureKind::LimitExceeded,
                        image,
                        format!("{what} is larger than the limit of {limit} bytes"),
                    ));
                }
                buf
            }
            ManifestSource::OciDir(root) => read_layout_blob(root, image, digest, limit).await?,
        };
        verify(image, &what, digest, &bytes)?;
        Ok(bytes)
    }

    /// From a verified manifest or index, descend to the platform manifest and read its config.
    #[allow(clippy::too_many_arguments)]
    async fn descend(
        &self,
        ms: &ManifestSource<'_>,
        image: &str,
        mut bytes: Vec<u8>,
        mut digest: String,
        want: &Platform,
        mut index_digest: Option<String>,
    ) -> Result<
        (
            String,
            Option<String>,
            Descriptor,
            ImageConfig,
            Vec<LayerRef>,
        ),
        FetchError,
    > {
        let mut selected: Option<Platform> = None;
        for _ in 0..MAX_INDEX_DEPTH {
            match parse_manifest(&bytes)
                .map_err(|e| manifest_err(image, &format!("manifest {digest}"), e))?
            {
                Parsed::Index { manifests } => {
                    let cands: Vec<Option<Platform>> = manifests
                        .iter()
                        .map(|m| m.platform.as_ref().map(|p| p.to_platform()))
                        .collect();
                    let i = select_platform(want, &cands).ok_or_else(|| {
                        let have: Vec<String> =
                            cands.iter().flatten().map(|p| p.to_string()).collect();
                        FetchError::new(
                            FailureKind::NotFound,
                            image,
                            format!(
                                "no manifest for platform {want} (index has {})",
                                have.join(", ")
                            ),
                        )
                    })?;
                    index_digest.get_or_insert_with(|| digest.clone());
                    selected = cands[i].clone();
                    digest = manifests[i].digest.clone();
                    bytes = self.read_manifest(ms, image, &digest).await?;
                }
                Parsed::Manifest { config, layers } => {
                    let cbytes = self.read_config(ms, image, &config.digest).await?;
                    let mut cfg = parse_config(&cbytes).map_err(|e| {
                        manifest_err(image, &format!("config {}", config.digest), e)
                    })?;
                    // The index may be more precise than the config (arm64 → arm64/v8).
                    if let Some(sel) = &selected {
                        let same = Platform::new(&cfg.os, &cfg.architecture, None);
                        if cfg.variant.is_none()
                            && sel.os == same.os
                            && sel.architecture == same.architecture
                        {
                            cfg.variant = sel.variant.clone();
                        }
                    }
                    let refs = layer_refs(&layers, &cfg.diff_ids)
                        .map_err(|e| manifest_err(image, &format!("manifest {digest}"), e))?;
                    for l in &refs {
                        if l.size > self.config.max_blob_bytes {
                            return Err(FetchError::new(
                                FailureKind::LimitExceeded,
                                image,
                                format!(
                                    "layer {} is {} bytes, more than the limit of {}",
                                    l.digest, l.size, self.config.max_blob_bytes
                                ),
                            ));
                        }
                    }
                    return Ok((digest, index_digest, config, cfg, refs));
                }
            }
        }
        Err(FetchError::malformed(
            image,
            "image indexes nested too deeply",
        ))
    }

    async fn resolve_registry(
        &self,
        r: &crate::source::RegistryRef,
        want: &Platform,
    ) -> Result<Resolved, FetchError> {
        let h = self.registries.handle(r).await?;
        let image = h.image.clone();
        let top = h.manifest(None, self.config.max_manifest_bytes).await?;
        let top_digest = sha256_digest(&top);
        if let Some(d) = &r.digest {
            verify(&image, &format!("manifest {d}"), d, &top)?;
        }
        let ms = ManifestSource::Registry(&h);
        let (digest, index_digest, config, cfg, layers) = self
            .descend(&ms, &image, top, top_digest, want, None)
            .await?;
        let platform = config_platform(&cfg);
        Ok(Resolved {
            descriptor: ImageDescriptor {
                image: ImageRef {
                    source_kind: SourceKind::Registry,
                    name: r.name(),
                    tag: r.tag.clone(),
                    digest,
                    index_digest,
                    config_digest: config.digest,
                    platform,
                },
                config: cfg,
                layers,
            },
            display: image,
            layers: LayerSource::Registry(h),
        })
    }

    /// The entries of an OCI layout's `index.json` (size-capped, must be an index).
    async fn layout_index(&self, image: &str, root: &Path) -> Result<Vec<Descriptor>, FetchError> {
        let index_path = root.join("index.json");
        let meta = tokio::fs::metadata(&index_path).await.map_err(|e| {
            io_err(
                image,
                &format!("{} (not an OCI layout?)", index_path.display()),
                e,
            )
        })?;
        if meta.len() > self.config.max_manifest_bytes {
            return Err(FetchError::new(
                FailureKind::LimitExceeded,
                image,
                "index.json is too large",
            ));
        }
        let bytes = tokio::fs::read(&index_path)
            .await
            .map_err(|e| io_err(image, "index.json", e))?;
        match parse_manifest(&bytes).map_err(|e| manifest_err(image, "index.json", e))? {
            Parsed::Index { manifests } => Ok(manifests),
            Parsed::Manifest { .. } => Err(FetchError::malformed(
                image,
                "index.json is not an image index",
            )),
        }
    }

    async fn resolve_oci_dir(
        &self,
        image: &str,
        root: &Path,
        reference: Option<&str>,
        want: &Platform,
    ) -> Result<Resolved, FetchError> {
        let manifests = self.layout_index(image, root).await?;
        const REF: &str = "org.opencontainers.image.ref.name";
        let entry = match reference {
            Some(r) => manifests
                .iter()
                .find(|m| m.annotations.get(REF).map(String::as_str) == Some(r))
                .ok_or_else(|| {
                    FetchError::new(
                        FailureKind::NotFound,
                        image,
                        format!("no ref {r:?} in index.json"),
                    )
                })?,
            None if manifests.len() == 1 => &manifests[0],
            None => {
                let cands: Vec<Option<Platform>> = manifests
                    .iter()
                    .map(|m| m.platform.as_ref().map(|p| p.to_platform()))
                    .collect();
                let i = select_platform(want, &cands).ok_or_else(|| {
                    FetchError::new(
                        FailureKind::InvalidRequest,
                        image,
                        format!(
                            "index.json has {} images: name one with oci-dir:PATH:REF",
                            manifests.len()
                        ),
                    )
                })?;
                &manifests[i]
            }
        };
        let ms = ManifestSource::OciDir(root);
        let first = self.read_manifest(&ms, image, &entry.digest).await?;
        let (digest, index_digest, config, cfg, layers) = self
            .descend(&ms, image, first, entry.digest.clone(), want, None)
            .await?;
        let platform = config_platform(&cfg);
        Ok(Resolved {
            descriptor: ImageDescriptor {
                image: ImageRef {
                    source_kind: SourceKind::OciDir,
                    name: root.display().to_string(),
                    tag: reference
                        .map(str::to_string)
                        .or_else(|| entry.annotations.get(REF).cloned()),
                    digest,
                    index_digest,
                    config_digest: config.digest,
                    platform,
                },
                config: cfg,
                layers,
            },
            display: image.to_string(),
            layers: LayerSource::OciDir(root.to_path_buf()),
        })
    }

    async fn resolve_docker_archive(
        &self,
        image: &str,
        path: &Path,
    ) -> Result<Resolved, FetchError> {
        let limit = self.config.max_manifest_bytes;
        let (p, img) = (path.to_path_buf(), image.to_string());
        let scan = tokio::task::spawn_blocking(move || scan_archive(&p, &img, limit))
            .await
            .map_err(|e| FetchError::new(FailureKind::Internal, image, e.to_string()))??;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            layers: Vec<String>,
        }
        let manifest_bytes = scan.json.get("manifest.json").ok_or_else(|| {
            FetchError::malformed(
                image,
                "no manifest.json in the archive (not a docker save tarball?)",
            )
        })?;
        let entries: Vec<Entry> = serde_json::from_slice(manifest_bytes)
            .map_err(|e| FetchError::malformed(image, format!("manifest.json: {e}")))?;
        let entry = entries
            .first()
            .ok_or_else(|| FetchError::malformed(image, "manifest.json lists no image"))?;
        let config_name = normalize_entry(&entry.config);
        let cbytes = scan.json.get(&config_name).ok_or_else(|| {
            FetchError::malformed(
                image,
                format!("config {} missing from the archive", entry.config),
            )
        })?;
        let config_digest = sha256_digest(cbytes);
        let cfg = parse_config(cbytes).map_err(|e| manifest_err(image, "config", e))?;
        if cfg.diff_ids.len() != entry.layers.len() {
            return Err(FetchError::malformed(
                image,
                format!(
                    "manifest.json lists {} layers but the config has {} diff_ids",
                    entry.layers.len(),
                    cfg.diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        let mut where_ = HashMap::new();
        for (name, diff_id) in entry.layers.iter().zip(&cfg.diff_ids) {
            sha256_hex(diff_id).map_err(|e| FetchError::malformed(image, e.to_string()))?;
            let target = scan.resolve(&normalize_entry(name));
            let size = *scan.sizes.get(&target).ok_or_else(|| {
                FetchError::malformed(image, format!("layer {name} missing from the archive"))
            })?;
            if size > self.config.max_blob_bytes {
                return Err(FetchError::new(
                    FailureKind::LimitExceeded,
                    image,
                    format!(
                        "layer {name} is larger than the limit of {} bytes",
                        self.config.max_blob_bytes
                    ),
                ));
            }
            where_.insert(diff_id.clone(), target);
            layers.push(LayerRef {
                digest: diff_id.clone(),
                diff_id: Some(diff_id.clone()),
                media_type: OCI_LAYER_TAR.into(),
                size,
                compression: Compression::None,
            });
        }
        let digest = synthesize_manifest_digest(&config_digest, cbytes.len() as u64, &layers);
        let platform = config_platform(&cfg);
        Ok(Resolved {
            descriptor: ImageDescriptor {
                image: ImageRef {
                    source_kind: SourceKind::DockerArchive,
                    name: path.display().to_string(),
                    tag: None,
                    digest,
                    index_digest: None,
                    config_digest,
                    platform,
                },
                config: cfg,
                layers,
            },
            display: image.to_string(),
            layers: LayerSource::DockerArchive(path.to_path_buf(), where_),
        })
    }

    async fn resolve_dir(&self, image: &str, path: &Path) -> Result<Resolved, FetchError> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| io_err(image, &path.display().to_string(), e))?;
        if !meta.is_dir() {
            return Err(FetchError::InvalidSource {
                input: image.into(),
                reason: "not a directory".into(),
            });
        }
        let tmp_dir = self
            .config
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let (root, img, limit) = (
            path.to_path_buf(),
            image.to_string(),
            self.config.max_blob_bytes,
        );
        let (tmp, digest, size) =
            tokio::task::spawn_blocking(move || tar_directory(&root, &tmp_dir, &img, limit))
                .await
                .map_err(|e| FetchError::new(FailureKind::Internal, image, e.to_string()))??;
        let config_json = serde_json::json!({
            "architecture": host_arch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest]},
            "history": [{"created_by": format!("vigil: directory {}", path.display())}],
        });
        let cbytes = serde_json::to_vec(&config_json)
            .map_err(|e| FetchError::new(FailureKind::Internal, image, e.to_string()))?;
        let config_digest = sha256_digest(&cbytes);
        let cfg = parse_config(&cbytes).map_err(|e| manifest_err(image, "config", e))?;
        let layers = vec![LayerRef {
            digest: digest.clone(),
            diff_id: Some(digest),
            media_type: OCI_LAYER_TAR.into(),
            size,
            compression: Compression::None,
        }];
        let mdigest = synthesize_manifest_digest(&config_digest, cbytes.len() as u64, &layers);
        let platform = config_platform(&cfg);
        Ok(Resolved {
            descriptor: ImageDescriptor {
                image: ImageRef {
                    source_kind: SourceKind::Dir,
                    name: path.display().to_string(),
                    tag: None,
                    digest: mdigest,
                    index_digest: None,
                    config_digest,
                    platform,
                },
                config: cfg,
                layers,
            },
            display: image.to_string(),
            layers: LayerSource::Dir(tmp),
        })
    }

    /// Stream one layer blob of `resolved` into `blobs` (verified, bounded). Returns its size.
    pub async fn stage_layer(
        &self,
        resolved: &Resolved,
        layer: &LayerRef,
        blobs: &dyn BlobStore,
    ) -> Result<u64, FetchError> {
        let image = resolved.display.as_str();
        let what = format!("layer {}", layer.digest);
        let max = self.config.max_blob_bytes;
        let (reader, slot): (vigil_runtime::blobs::BlobReader, Option<MismatchSlot>) =
            match &resolved.layers {
                LayerSource::Registry(h) => {
                    let (r, slot) = h.blob_reader(&layer.digest).await?;
                    (Box::pin(r), Some(slot))
                }
                LayerSource::OciDir(root) => {
                    let p = layout_blob_path(root, image, &layer.digest)?;
                    let f = tokio::fs::File::open(&p)
                        .await
                        .map_err(|e| io_err(image, &format!("{what} ({})", p.display()), e))?;
                    (Box::pin(f), None)
                }
                LayerSource::Dir(tmp) => {
                    let f = tokio::fs::File::open(&**tmp).await.map_err(|e| {
                        FetchError::new(FailureKind::Internal, image, format!("{what}: {e}"))
                    })?;
                    (Box::pin(f), None)
                }
                LayerSource::DockerArchive(path, where_) => {
                    let entry = where_.get(&layer.digest).ok_or_else(|| {
                        FetchError::malformed(image, format!("{what} not in the archive"))
                    })?;
                    (archive_entry_reader(path.clone(), entry.clone()), None)
                }
            };
        // oci-client checks a registry blob's digest as it streams (the stream ends in an
        // error on a mismatch, and the slot names the digest found): not hashed twice.
        let check = match slot {
            Some(_) => DigestCheck::ByStream,
            None => DigestCheck::Hash,
        };
        let res = blobs.put_checked(&layer.digest, reader, max, check).await;
        if let Some(slot) = &slot {
            check_slot(image, &what, slot)?;
        }
        res.map_err(|e| FetchError::from_blob(image, &what, e))
    }
}

fn check_slot(image: &str, what: &str, slot: &MismatchSlot) -> Result<(), FetchError> {
    if let Some((expected, actual)) = slot.lock().ok().and_then(|g| g.clone()) {
        return Err(FetchError::DigestMismatch {
            image: image.into(),
            what: what.into(),
            expected,
            actual,
        });
    }
    Ok(())
}

fn layout_blob_path(root: &Path, image: &str, digest: &str) -> Result<PathBuf, FetchError> {
    let hex = sha256_hex(digest)
        .map_err(|e| FetchError::new(FailureKind::Unsupported, image, e.to_string()))?;
    Ok(root.join("blobs").join("sha256").join(hex))
}

async fn read_layout_blob(
    root: &Path,
    image: &str,
    digest: &str,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    let p = layout_blob_path(root, image, digest)?;
    let f = tokio::fs::File::open(&p)
        .await
        .map_err(|e| io_err(image, &format!("blob {digest} ({})", p.display()), e))?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| io_err(image, &format!("blob {digest}"), e))?;
    if buf.len() as u64 > limit {
        return Err(FetchError::new(
            FailureKind::LimitExceeded,
            image,
            format!("blob {digest} is larger than the limit of {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// The digest of an OCI manifest naming `config` and `layers`: the image id of local
/// sources that have no manifest of their own.
fn synthesize_manifest_digest(
    config_digest: &str,
    config_size: u64,
    layers: &[LayerRef],
) -> String {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "digest": l.digest, "size": l.size
        })).collect::<Vec<_>>(),
    });
    sha256_digest(m.to_string().as_bytes())
}

/// `./a/../b.json` → `b.json`
fn normalize_entry(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

struct ArchiveScan {
    /// Small `.json` entries (and manifest.json) by normalised path.
    json: HashMap<String, Vec<u8>>,
    sizes: HashMap<String, u64>,
    /// Symlink entries: path → normalised target.
    links: HashMap<String, String>,
}

impl ArchiveScan {
    fn resolve(&self, p: &str) -> String {
        let mut cur = p.to_string();
        for _ in 0..8 {
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => break,
            }
        }
        cur
    }
}

fn scan_archive(path: &Path, image: &str, limit: u64) -> Result<ArchiveScan, FetchError> {
    let f = std::fs::File::open(path).map_err(|e| io_err(image, &path.display().to_string(), e))?;
    let mut ar = tar::Archive::new(f);
    let mut scan = ArchiveScan {
        json: HashMap::new(),
        sizes: HashMap::new(),
        links: HashMap::new(),
    };
    let bad = |e: std::io::Error| {
        FetchError::malformed(image, format!("not a readable tar archive: {e}"))
    };
    for entry in ar.entries_with_seek().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = normalize_entry(&entry.path().map_err(bad)?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                let t = target.to_string_lossy().to_string();
                let full = if kind.is_symlink() {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize_entry(&format!("{dir}/{t}"))
                } else {
                    normalize_entry(&t)
                };
                scan.links.insert(name, full);
            }
            continue;
        }
        let size = entry.size();
        scan.sizes.insert(name.clone(), size);
        if name.ends_with(".json") && size <= limit {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(bad)?;
            scan.json.insert(name, buf);
        }
    }
    Ok(scan)
}

/// Stream one tar entry of an archive, read on a blocking thread, as an AsyncRead.
fn archive_entry_reader(path: PathBuf, entry_name: String) -> vigil_runtime::blobs::BlobReader {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let run = || -> std::io::Result<bool> {
            let f = std::fs::File::open(&path)?;
            let mut ar = tar::Archive::new(f);
            for entry in ar.entries_with_seek()? {
                let mut entry = entry?;
                if normalize_entry(&entry.path()?.to_string_lossy()) != entry_name {
                    continue;
                }
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = entry.read(&mut buf)?;
                    if n == 0 {
                        return Ok(true);
                    }
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        };
        match run() {
            Ok(true) => {}
            Ok(false) => {
                let _ = tx.blocking_send(Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("entry {entry_name} not in {}", path.display()),
                )));
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Box::pin(tokio_util::io::StreamReader::new(Box::pin(stream)))
}

/// A writer that hashes and counts what passes through, failing past `limit`.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    n: u64,
    limit: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        if self.n > self.limit {
            return Err(std::io::Error::other(format!(
                "layer larger than the limit of {} bytes",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Tar `root` (sorted, symlinks stored as links, never followed) into a temp file in
/// `tmp_dir`, hashing as it is written. Returns the file, its digest and size.
fn tar_directory(
    root: &Path,
    tmp_dir: &Path,
    image: &str,
    limit: u64,
) -> Result<(tempfile::TempPath, String, u64), FetchError> {
    let fail = |e: std::io::Error| {
        let kind = if e.to_string().contains("limit") {
            FailureKind::LimitExceeded
        } else {
            FailureKind::Internal
        };
        FetchError::new(kind, image, format!("building the layer tar: {e}"))
    };
    std::fs::create_dir_all(tmp_dir).map_err(fail)?;
    let tmp = tempfile::Builder::new()
        .prefix(".dir-layer-")
        .tempfile_in(tmp_dir)
        .map_err(fail)?;
    let (file, tmp_path) = tmp.into_parts();
    let w = HashingWriter {
        inner: std::io::BufWriter::new(file),
        hasher: Sha256::new(),
        n: 0,
        limit,
    };
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(fail)?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in names {
            let rel_child = rel.join(e.file_name());
            if rel_child
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                continue;
            }
            let ft = e.file_type().map_err(fail)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                if ft.is_socket() {
                    continue;
                }
            }
            b.append_path_with_name(e.path(), &rel_child)
                .map_err(fail)?;
            if ft.is_dir() {
                subdirs.push(rel_child);
            }
        }
        // Depth-first in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    let w = b.into_inner().map_err(fail)?;
    let HashingWriter {
        mut inner,
        hasher,
        n,
        ..
    } = w;
    inner.flush().map_err(fail)?;
    let mut f = inner.into_inner().map_err(|e| fail(e.into_error()))?;
    f.sync_all().map_err(fail)?;
    f.rewind().map_err(fail)?;
    Ok((
        tmp_path,
        format!("sha256:{}", hex::encode(hasher.finalize())),
        n,
    ))
}

/// Layers of `descriptor` as (digest, layer) without duplicates, bottom first.
pub fn unique_layers(layers: &[LayerRef]) -> Vec<&LayerRef> {
    let mut seen = std::collections::HashSet::new();
    layers
        .iter()
        .filter(|l| seen.insert(l.digest.clone()))
        .collect()
}

/// The platforms an index lists, in order, without attestation entries (`unknown/unknown`).
fn platforms_of(manifests: &[Descriptor]) -> Vec<String> {
    manifests
        .iter()
        .filter_map(|m| m.platform.as_ref().map(|p| p.to_platform()))
        .filter(|p| p.os != "unknown" && p.architecture != "unknown")
        .map(|p| p.to_string())
        .collect()
}
