//! End to end over the testbed's OCI layouts: extract's streaming core, then analyze.
//! Expectations come from the testbed's expected.json.

use serde_json::Value;
use vigil_analyze::{analyze, parse_dpkg, squash, AnalyzeStage};
use vigil_contracts::{
    codec, Analysis, AnalyzedImage, Compression, ExtractedImage, FailureKind, ImageConfig,
    ImageDescriptor, ImageRef, LayerIndex, LayerRef, PackageType, RequestContext, SourceKind,
    StageName, Subject,
};
use vigil_extract::{index_layer, ExtractLimits};
use vigil_runtime::Stage;
use vigil_testkit::testbed;

fn indexes(name: &str, arch: Option<&str>) -> (ImageDescriptor, Vec<LayerIndex>) {
    let layout = testbed::oci_layout(name);
    let layers = vigil_testkit::testbed::layers(&layout, arch);
    let idx: Vec<LayerIndex> = layers
        .iter()
        .map(|d| {
            let f = std::fs::File::open(vigil_testkit::testbed::blob_path(&layout, d)).unwrap();
            index_layer(f, d, &ExtractLimits::default()).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let desc = ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::OciDir,
            name: layout.display().to_string(),
            tag: Some("latest".into()),
            digest: vigil_testkit::testbed::manifest_digest(&layout, arch),
            index_digest: None,
            config_digest: "sha256:c".into(),
            platform: format!("linux/{}", arch.unwrap_or("amd64")),
        },
        config: ImageConfig::default(),
        layers: layers
            .iter()
            .map(|d| LayerRef {
                digest: d.clone(),
                diff_id: None,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 0,
                compression: Compression::Gzip,
            })
            .collect(),
    };
    (desc, idx)
}

fn expected(name: &str) -> Value {
    testbed::expected()["images"][name].clone()
}

fn debs(a: &Analysis) -> Vec<&vigil_contracts::Package> {
    a.packages
        .iter()
        .filter(|p| p.kind == PackageType::Deb)
        .collect()
}

fn assert_distro(a: &Analysis, want: &Value) {
    let d = a.distro.as_ref().expect("a distro");
    assert_eq!(d.id, want["id"].as_str().unwrap());
    assert_eq!(d.version_id.as_deref(), want["version_id"].as_str());
    assert_eq!(d.codename.as_deref(), want["codename"].as_str());
}

#[test]
fn debian_base() {
    let exp = expected("debian-base");
    let (desc, idx) = indexes("debian-base", None);
    let a = analyze(&desc, &idx);
    assert_distro(&a, &exp["distro"]);
    let debs = debs(&a);
    assert_eq!(
        debs.len() as u64,
        exp["deb_package_count"].as_u64().unwrap()
    );
    for m in exp["must_find"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert!(debs.iter().any(|p| p.name == name), "{name} missing");
    }
    let libc = debs.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.arch.as_deref(), Some("amd64"));
    let purl = libc.purl.as_deref().unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/libc6@") && purl.contains("distro=debian-12"),
        "{purl}"
    );
    assert!(debs.iter().all(|p| p.locations == ["/var/lib/dpkg/status"]));
    assert_eq!(
        a.image_size,
        testbed::image_info("debian-base")["uncompressed_bytes"]
            .as_u64()
            .unwrap()
    );
    assert_eq!(a.file_count, squash(&idx).entries.len() as u64);
    assert!(a.file_count > 1000);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
}

#[test]
fn dpkg_parser_on_the_real_status_file() {
    let (_, idx) = indexes("debian-base", None);
    let status = idx[0]
        .kept
        .iter()
        .find(|k| k.path == "/var/lib/dpkg/status")
        .unwrap();
    let p = parse_dpkg("/var/lib/dpkg/status", &status.content, None);
    let stanzas = String::from_utf8_lossy(&status.content)
        .matches("\nPackage: ")
        .count()
        + 1;
    assert_eq!(
        p.len() as u64,
        expected("debian-base")["deb_package_count"]
            .as_u64()
            .unwrap()
    );
    assert_eq!(
        p.len(),
        stanzas,
        "every stanza of a fresh install is installed"
    );
    assert!(p.iter().all(|p| !p.version.is_empty() && p.arch.is_some()));
    // Binary packages whose source has another version carry it (`Source: name (version)`).
    assert!(p
        .iter()
        .any(|p| p.source_version.as_ref().is_some_and(|v| *v != p.version)));
}

#[test]
fn layered_whiteout() {
    let exp = expected("layered-whiteout");
    let (desc, idx) = indexes("layered-whiteout", None);
    assert_eq!(idx.len() as u64, exp["layers"].as_u64().unwrap());
    let a = analyze(&desc, &idx);
    let debs = debs(&a);
    assert_eq!(
        debs.len() as u64,
        exp["deb_package_count"].as_u64().unwrap()
    );
    for m in exp["must_not_find_squashed"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert!(!a.packages.iter().any(|p| p.name == name), "{name} found");
    }
    let fs = squash(&idx);
    for p in exp["absent_paths"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        assert!(!fs.entries.contains_key(p), "{p} present");
    }
    for p in exp["present_paths"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        assert!(fs.entries.contains_key(p), "{p} absent");
    }
    // Without squashing (all layers), e2fsprogs is still in the bottom layer.
    assert!(idx[0].entries.iter().any(|e| e.path == "/usr/sbin/mke2fs"));
}

#[test]
fn multiarch_arm64() {
    let exp = expected("multiarch");
    let arm = exp["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"].as_str().unwrap().contains("arm64"))
        .unwrap()
        .clone();
    let (desc, idx) = indexes("multiarch", Some("arm64"));
    let a = analyze(&desc, &idx);
    let debs = debs(&a);
    assert_eq!(
        debs.len() as u64,
        arm["deb_package_count"].as_u64().unwrap()
    );
    for m in arm["must_find"].as_array().unwrap() {
        assert!(debs
            .iter()
            .any(|p| p.name == m["name"].as_str().unwrap()
                && p.arch.as_deref() == m["arch"].as_str()));
    }
    assert_eq!(a.distro.as_ref().map(|d| d.id.as_str()), Some("debian"));
}

#[test]
fn go_bin_has_no_distro() {
    let exp = expected("go-bin");
    assert!(exp["distro"].is_null());
    let (desc, idx) = indexes("go-bin", None);
    let a = analyze(&desc, &idx);
    assert_eq!(a.distro, None);
    assert!(debs(&a).is_empty());
    assert!(a.file_count > 0);
}

#[tokio::test]
async fn stage_loads_indexes_and_stores_the_analysis() {
    let (desc, idx) = indexes("layered-whiteout", None);
    let tmp = tempfile::tempdir().unwrap();
    let store = vigil_store::Store::open_embedded(&tmp.path().join("s.redb")).unwrap();
    let stage = AnalyzeStage::new(store.clone());
    assert_eq!(stage.name(), StageName::Analyze);
    let msg = ExtractedImage {
        request: RequestContext::new("req-9", "oci-dir:layered-whiteout"),
        descriptor: desc.clone(),
    };
    let payload = codec::encode(&msg).unwrap();
    let subject = Subject::Stage(StageName::Analyze);

    // Indexes not there yet: transient.
    let err = stage.handle(&subject, &payload).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Internal);

    for i in &idx {
        store.put_layer_index(i).await.unwrap();
    }
    let out = stage.handle(&subject, &payload).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject, Subject::Stage(StageName::Match));
    assert_eq!(
        out[0].msg_id,
        format!("req-9:analyze:{}", desc.image.digest)
    );
    let ai: AnalyzedImage = codec::decode(&out[0].payload).unwrap();
    assert_eq!(ai.image_digest, desc.image.digest);
    assert_eq!(ai.request.as_ref().unwrap().request_id, "req-9");
    let stored = store
        .get_analysis(&desc.image.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.analyzer_version, vigil_analyze::ANALYZER_VERSION);
    let pure = analyze(&desc, &idx);
    assert_eq!(stored.packages, pure.packages);
    assert!(stored.analyzed_at > 0);
}
