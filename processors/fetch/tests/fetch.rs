//! Integration tests against a real docker-registry and the testbed images.

use std::sync::Arc;

use vigil_contracts::{
    codec, Analysis, AnalyzedImage, FailureKind, FetchedImage, LayerIndex, RequestContext,
    ScanRequest, SourceKind, StageName, Subject,
};
use vigil_fetch::{FetchConfig, FetchStage, Fetcher, RegistryCredential};
use vigil_runtime::blobs::{BlobStore, LocalBlobStore};
use vigil_runtime::{Outgoing, Stage, StageError};
use vigil_store::Store;
use vigil_testkit::{testbed, Registry, RegistryOpts};

struct Env {
    stage: FetchStage,
    store: Store,
    blobs: Arc<LocalBlobStore>,
    _dir: tempfile::TempDir,
}

fn env(config: FetchConfig) -> Env {
    env_with(config, FetchStage::new)
}

/// An environment whose stage `make` builds from the configuration (its temp dir set),
/// the store and the blob cache.
fn env_with(
    mut config: FetchConfig,
    make: impl FnOnce(FetchConfig, Store, Arc<dyn BlobStore>) -> FetchStage,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("store.redb")).unwrap();
    let blobs = Arc::new(LocalBlobStore::new(dir.path().join("blobs")));
    config.temp_dir = Some(dir.path().join("blobs"));
    let stage = make(config, store.clone(), blobs.clone());
    Env {
        stage,
        store,
        blobs,
        _dir: dir,
    }
}

async fn run(
    e: &Env,
    source: &str,
    platform: Option<&str>,
    force: bool,
) -> Result<Vec<Outgoing>, StageError> {
    let mut request = RequestContext::new("req-1", source);
    request.platform = platform.map(str::to_string);
    let payload = codec::encode(&ScanRequest {
        request,
        force,
        sbom: None,
    })
    .unwrap();
    e.stage.handle(&Subject::ScanRequest, &payload).await
}

async fn fetched(e: &Env, source: &str, platform: Option<&str>) -> FetchedImage {
    let out = run(e, source, platform, false)
        .await
        .unwrap_or_else(|err| panic!("{source}: {err}"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject, Subject::Stage(StageName::Extract));
    codec::decode(&out[0].payload).unwrap()
}

fn manifest_digest(name: &str, platform: &str) -> String {
    let s = std::fs::read_to_string(testbed::images_dir().join("images.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name && e["platform"] == platform)
        .unwrap_or_else(|| panic!("{name} {platform} not in images.json"))["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn err_of(e: &Env, source: &str) -> StageError {
    match run(e, source, None, false).await {
        Ok(o) => panic!("{source}: expected an error, got {} outputs", o.len()),
        Err(err) => err,
    }
}

#[tokio::test]
async fn registry_plain_http_debian_base_and_reuse() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["debian-base"]);
    let e = env(FetchConfig::default());
    let src = format!("{}/debian-base:latest", reg.host());
    let f = fetched(&e, &src, None).await;
    let want = testbed::image_info("debian-base")["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let img = &f.descriptor.image;
    assert_eq!(img.digest, want);
    assert_eq!(img.source_kind, SourceKind::Registry);
    assert_eq!(img.name, format!("{}/debian-base", reg.host()));
    assert_eq!(img.tag.as_deref(), Some("latest"));
    assert_eq!(img.index_digest, None);
    assert_eq!(img.platform, "linux/amd64");
    assert_eq!(f.descriptor.config.cmd, vec!["bash"]);
    assert_eq!(f.descriptor.layers.len(), 1);
    assert_eq!(f.to_extract, vec![f.descriptor.layers[0].digest.clone()]);
    assert!(e.blobs.has(&f.to_extract[0]).await.unwrap());
    // msg id is stable across redeliveries
    let again = run(&e, &src, None, false).await.unwrap();
    assert_eq!(again[0].msg_id, format!("req-1:fetch:extract:{want}"));

    // by digest, and tag+digest
    let f2 = fetched(&e, &format!("{}/debian-base@{want}", reg.host()), None).await;
    assert_eq!(f2.descriptor.image.digest, want);
    let f3 = fetched(
        &e,
        &format!("registry:{}/debian-base:latest@{want}", reg.host()),
        None,
    )
    .await;
    assert_eq!(f3.descriptor.image.digest, want);

    // once the layer is indexed, nothing is staged
    for l in &f.descriptor.layers {
        e.store
            .put_layer_index(&LayerIndex {
                layer_digest: l.digest.clone(),
                entries: vec![],
                kept: vec![],
                uncompressed_size: 0,
                extractor_version: FetchConfig::default().extractor_version,
                warnings: vec![],
                secrets: Vec::new(),
                packages: Vec::new(),
                content_matches: Vec::new(),
            })
            .await
            .unwrap();
        e.blobs.delete(&l.digest).await.unwrap();
    }
    let f4 = fetched(&e, &src, None).await;
    assert!(f4.to_extract.is_empty());
    assert!(!e.blobs.has(&f.descriptor.layers[0].digest).await.unwrap());

    // an existing analysis short-cuts to match (unless forced)
    e.store
        .put_analysis(&Analysis {
            descriptor: f.descriptor.clone(),
            distro: None,
            packages: vec![],
            file_count: 0,
            image_size: 0,
            analyzed_at: 0,
            analyzer_version: 1,
            warnings: vec![],
            files: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            secrets: Vec::new(),
            retrieved_files: Vec::new(),
            dockerfile: None,
            passwd_present: false,
            from_sbom: false,
            content_matches: Vec::new(),
        })
        .await
        .unwrap();
    let out = run(&e, &src, None, false).await.unwrap();
    assert_eq!(out[0].subject, Subject::Stage(StageName::Match));
    let a: AnalyzedImage = codec::decode(&out[0].payload).unwrap();
    assert_eq!(a.image_digest, want);
    assert_eq!(a.request.unwrap().request_id, "req-1");
    let out = run(&e, &src, None, true).await.unwrap();
    assert_eq!(out[0].subject, Subject::Stage(StageName::Extract));

    // missing tag and repo
    let err = err_of(&e, &format!("{}/debian-base:nope", reg.host())).await;
    assert_eq!(err.kind, FailureKind::NotFound, "{err}");
    assert!(err.message.contains("debian-base:nope"), "{err}");
    let err = err_of(&e, &format!("{}/no-such-repo:latest", reg.host())).await;
    assert_eq!(err.kind, FailureKind::NotFound, "{err}");
    // unparseable source
    let err = err_of(&e, "Not A/Valid Ref").await;
    assert_eq!(err.kind, FailureKind::InvalidRequest, "{err}");
}

#[tokio::test]
async fn registry_multiarch_platforms_and_corrupt_blob() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["multiarch"]);
    let e = env(FetchConfig::default());
    let src = format!("{}/multiarch:latest", reg.host());
    let index = testbed::image_info("multiarch")["top_digest"]
        .as_str()
        .unwrap()
        .to_string();

    let arm = fetched(&e, &src, Some("linux/arm64")).await;
    assert_eq!(
        arm.descriptor.image.digest,
        manifest_digest("multiarch", "linux/arm64")
    );
    assert_eq!(
        arm.descriptor.image.index_digest.as_deref(),
        Some(index.as_str())
    );
    assert_eq!(arm.descriptor.image.platform, "linux/arm64/v8");
    assert_eq!(arm.descriptor.layers.len(), 1);
    assert_eq!(arm.to_extract.len(), 1);

    let amd = fetched(&e, &src, None).await;
    assert_eq!(
        amd.descriptor.image.digest,
        manifest_digest("multiarch", "linux/amd64")
    );
    assert_eq!(
        amd.descriptor.image.index_digest.as_deref(),
        Some(index.as_str())
    );

    let err = run(&e, &src, Some("linux/s390x"), false).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NotFound, "{err}");
    let err = run(&e, &src, Some("linux"), false).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::InvalidRequest, "{err}");

    // corrupt the arm64 layer in the registry's storage: same length, one byte flipped
    let layer = &arm.descriptor.layers[0].digest;
    let hex = layer.strip_prefix("sha256:").unwrap();
    let data = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let e2 = env(FetchConfig::default());
    let err = run(&e2, &src, Some("linux/arm64"), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::DigestMismatch, "{err}");
    assert!(err.message.contains(layer.as_str()), "{err}");
    assert!(!e2.blobs.has(layer).await.unwrap());
}

#[tokio::test]
async fn registry_basic_auth() {
    let reg = Registry::start(RegistryOpts {
        auth: Some(("tester".into(), "s3cret".into())),
        tls: false,
    });
    reg.push_testbed(&["multiarch"]);
    let src = format!("{}/multiarch:latest", reg.host());
    let anon = env(FetchConfig::default());
    let err = run(&anon, &src, Some("linux/arm64"), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Unauthorized, "{err}");
    assert!(err.message.contains("multiarch"), "{err}");

    let wrong = env(FetchConfig {
        credentials: vec![RegistryCredential {
            registry: reg.host(),
            username: "tester".into(),
            password: "wrong".into(),
        }],
        ..Default::default()
    });
    let err = run(&wrong, &src, Some("linux/arm64"), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Unauthorized, "{err}");

    let ok = env(FetchConfig {
        credentials: vec![RegistryCredential {
            registry: reg.host(),
            username: "tester".into(),
            password: "s3cret".into(),
        }],
        ..Default::default()
    });
    let f = fetched(&ok, &src, Some("linux/arm64")).await;
    assert_eq!(
        f.descriptor.image.digest,
        manifest_digest("multiarch", "linux/arm64")
    );
    assert!(ok.blobs.has(&f.to_extract[0]).await.unwrap());
}

/// An environment whose stage shares a `Fetcher` prepared for `source`, as `vigil scan`
/// makes it (the registry client built while the store opens).
async fn env_prepared(config: FetchConfig, source: &str) -> Env {
    let mut fetcher = None;
    let e = env_with(config, |config, store, blobs| {
        let f = Arc::new(Fetcher::new(config));
        fetcher = Some(f.clone());
        FetchStage::with_fetcher(f, store, blobs)
    });
    let fetcher = fetcher.unwrap();
    fetcher.prepare(source).await;
    // Sources it has nothing to prepare for, or cannot parse: it returns quietly.
    for other in [
        "oci-dir:/nonexistent",
        "dir:/nonexistent",
        "::not a source::",
    ] {
        fetcher.prepare(other).await;
    }
    e
}

/// Without the registry's CA the fetch fails with the TLS error, with it the image is
/// fetched; the same with a prepared `Fetcher`, whose client serves the stage and which
/// leaves the error to the fetch.
#[tokio::test]
async fn registry_tls_with_and_without_ca() {
    let reg = Registry::start(RegistryOpts {
        auth: None,
        tls: true,
    });
    reg.push_testbed(&["multiarch"]);
    let src = format!("{}/multiarch:latest", reg.host());
    let with_ca = || FetchConfig {
        ca_certs: vec![reg.ca_cert().unwrap()],
        ..Default::default()
    };
    for prepared in [false, true] {
        let (no_ca, with_ca) = if prepared {
            (
                env_prepared(FetchConfig::default(), &src).await,
                env_prepared(with_ca(), &src).await,
            )
        } else {
            (env(FetchConfig::default()), env(with_ca()))
        };
        let err = run(&no_ca, &src, Some("linux/arm64"), false)
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::Upstream, "{err}");
        assert!(
            err.message.to_lowercase().contains("certificate") || err.message.contains("TLS"),
            "{err}"
        );
        let f = fetched(&with_ca, &src, Some("linux/arm64")).await;
        assert_eq!(
            f.descriptor.image.digest,
            manifest_digest("multiarch", "linux/arm64")
        );
        assert_eq!(f.to_extract.len(), 1);
    }
}

#[tokio::test]
async fn oci_dir_layouts() {
    let e = env(FetchConfig::default());
    let path = testbed::oci_layout("debian-base");
    let f = fetched(&e, &format!("oci-dir:{}", path.display()), None).await;
    assert_eq!(
        f.descriptor.image.digest,
        manifest_digest("debian-base", "linux/amd64")
    );
    assert_eq!(f.descriptor.image.source_kind, SourceKind::OciDir);
    assert_eq!(f.descriptor.image.tag.as_deref(), Some("latest"));
    assert!(e.blobs.has(&f.to_extract[0]).await.unwrap());

    let mpath = testbed::oci_layout("multiarch");
    let index = testbed::image_info("multiarch")["top_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let arm = fetched(
        &e,
        &format!("oci-dir:{}:latest", mpath.display()),
        Some("linux/arm64"),
    )
    .await;
    assert_eq!(
        arm.descriptor.image.digest,
        manifest_digest("multiarch", "linux/arm64")
    );
    assert_eq!(
        arm.descriptor.image.index_digest.as_deref(),
        Some(index.as_str())
    );
    assert_eq!(arm.descriptor.layers.len(), 1);
    let amd = fetched(&e, &format!("oci-dir:{}", mpath.display()), None).await;
    assert_eq!(
        amd.descriptor.image.digest,
        manifest_digest("multiarch", "linux/amd64")
    );
    // the amd64 layer is debian-base's, already staged: still to extract (no index), not re-read
    assert_eq!(amd.to_extract, f.to_extract);

    let err = err_of(&e, &format!("oci-dir:{}:nope", mpath.display())).await;
    assert_eq!(err.kind, FailureKind::NotFound, "{err}");
    let err = err_of(&e, "oci-dir:/nonexistent/layout").await;
    assert_eq!(err.kind, FailureKind::NotFound, "{err}");
}

#[tokio::test]
async fn docker_archive_debian_base() {
    let e = env(FetchConfig::default());
    let path = testbed::docker_archive("debian-base");
    let f = fetched(&e, &format!("docker-archive:{}", path.display()), None).await;
    let img = &f.descriptor.image;
    assert_eq!(img.source_kind, SourceKind::DockerArchive);
    assert!(img.digest.starts_with("sha256:"));
    assert_eq!(img.platform, "linux/amd64");
    // the same image as the OCI layout: same diff_ids, and the uncompressed layer's digest is its diff_id
    let oci = fetched(
        &e,
        &format!("oci-dir:{}", testbed::oci_layout("debian-base").display()),
        None,
    )
    .await;
    assert_eq!(f.descriptor.config.diff_ids, oci.descriptor.config.diff_ids);
    assert_eq!(
        f.descriptor.layers[0].digest,
        oci.descriptor.config.diff_ids[0]
    );
    assert_eq!(
        f.descriptor.layers[0].compression,
        vigil_contracts::Compression::None
    );
    assert!(e.blobs.has(&f.to_extract[0]).await.unwrap());
    // deterministic
    let again = fetched(&e, &format!("docker-archive:{}", path.display()), None).await;
    assert_eq!(again.descriptor.image.digest, img.digest);
}

#[tokio::test]
async fn dir_source() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/os-release"), "ID=test\n").unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::write(root.path().join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../etc/os-release", root.path().join("usr/rel")).unwrap();
    }
    let e = env(FetchConfig::default());
    let src = format!("dir:{}", root.path().display());
    let f = fetched(&e, &src, None).await;
    assert_eq!(f.descriptor.image.source_kind, SourceKind::Dir);
    assert_eq!(f.descriptor.config.os, "linux");
    assert_eq!(f.descriptor.layers.len(), 1);
    let layer = &f.descriptor.layers[0];
    assert_eq!(layer.diff_id.as_deref(), Some(layer.digest.as_str()));
    assert_eq!(f.descriptor.config.diff_ids, vec![layer.digest.clone()]);

    // the staged blob is a tar of the tree with symlinks kept as links
    let mut r = e.blobs.open(&layer.digest).await.unwrap();
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf)
        .await
        .unwrap();
    let mut ar = tar::Archive::new(std::io::Cursor::new(buf));
    let mut names = Vec::new();
    for en in ar.entries().unwrap() {
        let en = en.unwrap();
        let p = en.path().unwrap().to_string_lossy().to_string();
        if p == "escape" {
            assert!(en.header().entry_type().is_symlink());
            assert_eq!(en.header().size().unwrap(), 0);
        }
        names.push(p);
    }
    assert!(names.contains(&"etc/os-release".to_string()), "{names:?}");
    assert!(names.contains(&"usr/bin/tool".to_string()), "{names:?}");
    assert!(names.contains(&"escape".to_string()), "{names:?}");

    // same tree, same digest; no temp files left behind
    let again = fetched(&e, &src, None).await;
    assert_eq!(again.descriptor.image.digest, f.descriptor.image.digest);
    let leftovers: Vec<_> = std::fs::read_dir(e._dir.path().join("blobs"))
        .unwrap()
        .filter_map(|x| x.ok())
        .filter(|x| x.file_name().to_string_lossy().starts_with(".dir-layer-"))
        .collect();
    assert!(leftovers.is_empty());

    let err = err_of(&e, "dir:/nonexistent/rootfs").await;
    assert_eq!(err.kind, FailureKind::NotFound, "{err}");
}
