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

/// Types checked here: cataloged from files, or found by extract while streaming (java,
/// go) and carried through the squash.
const FILE_TYPES: &[&str] = &["deb", "python", "npm", "java-archive", "go-module"];

fn type_of(t: &str) -> Option<PackageType> {
    Some(match t {
        "deb" => PackageType::Deb,
        "python" => PackageType::Python,
        "npm" => PackageType::Npm,
        "java-archive" => PackageType::JavaArchive,
        "go-module" => PackageType::GoModule,
        _ => return None,
    })
}

fn same_name(kind: PackageType, a: &str, b: &str) -> bool {
    match kind {
        PackageType::Python => {
            vigil_analyze::python::normalize_name(a) == vigil_analyze::python::normalize_name(b)
        }
        _ => a == b,
    }
}

fn assert_must_find(a: &Analysis, musts: &Value, image: &str) {
    for m in musts.as_array().unwrap() {
        let t = m["type"].as_str().unwrap();
        if !FILE_TYPES.contains(&t) {
            continue;
        }
        let kind = type_of(t).unwrap();
        let name = m["name"].as_str().unwrap();
        let found = a.packages.iter().any(|p| {
            p.kind == kind
                && same_name(kind, &p.name, name)
                && m["version"].as_str().is_none_or(|v| p.version == v)
                && m["path"].as_str().is_none_or(|path| {
                    // A jar inside an archive: `OUTER:INNER`, as Syft's location shows it.
                    let want = match m["nested"].as_str() {
                        Some(inner) => format!("{path}:{inner}"),
                        None => path.to_string(),
                    };
                    p.locations.contains(&want)
                })
        });
        assert!(found, "{image}: {t} {name} {:?} not found", m["version"]);
    }
}

#[test]
fn java_app_reports_every_archive_nested_ones_too() {
    let (desc, idx) = indexes("java-app", None);
    let a = analyze(&desc, &idx);
    let want = expected("java-app")["java_package_count"].as_u64().unwrap();
    let java: Vec<String> = a
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::JavaArchive)
        .map(|p| format!("{} {} {:?}", p.name, p.version, p.locations))
        .collect();
    assert_eq!(java.len() as u64, want, "{java:#?}");
    assert!(
        java.iter()
            .any(|j| j.starts_with("log4j-core 2.14.1") && j.contains(".war:WEB-INF/lib/")),
        "the jar inside the war survives the squash: {java:#?}"
    );
}

fn count(a: &Analysis, kind: PackageType) -> u64 {
    a.packages.iter().filter(|p| p.kind == kind).count() as u64
}

#[test]
fn every_image_finds_its_must_find_and_none_of_its_must_not_find() {
    let all = testbed::expected()["images"].clone();
    for (name, exp) in all.as_object().unwrap() {
        let arches: Vec<Option<&str>> = if name == "multiarch" {
            vec![None, Some("arm64")]
        } else {
            vec![None]
        };
        for arch in arches {
            let (desc, idx) = indexes(name, arch);
            let a = analyze(&desc, &idx);
            if let Some(m) = exp.get("must_find") {
                assert_must_find(&a, m, name);
            }
            for key in ["must_not_find", "must_not_find_squashed"] {
                for m in exp[key].as_array().into_iter().flatten() {
                    let n = m["name"].as_str().unwrap();
                    let t = type_of(m["type"].as_str().unwrap());
                    assert!(
                        !a.packages
                            .iter()
                            .any(|p| Some(p.kind) == t && same_name(p.kind, &p.name, n)),
                        "{name}: {n} found"
                    );
                }
            }
            if let (Some(n), None) = (exp["deb_package_count"].as_u64(), arch) {
                assert_eq!(count(&a, PackageType::Deb), n, "{name}");
            }
            // Every package has a purl; every versioned one CPEs.
            for p in &a.packages {
                assert!(p.purl.is_some(), "{name}: {} has no purl", p.name);
                assert!(
                    p.version.is_empty() || !p.cpes.is_empty(),
                    "{name}: {} has no CPE",
                    p.name
                );
                assert!(p.found_by.is_some());
            }
        }
    }
}

#[test]
fn python_app_reports_the_twelve_dist_infos_once() {
    let exp = expected("python-app");
    let (desc, idx) = indexes("python-app", None);
    let a = analyze(&desc, &idx);
    assert_must_find(&a, &exp["must_find"], "python-app");
    assert_eq!(
        count(&a, PackageType::Python),
        exp["python_package_count"].as_u64().unwrap()
    );
    assert_eq!(count(&a, PackageType::Deb), 88);
    let django = a.packages.iter().find(|p| p.name == "Django").unwrap();
    assert_eq!(django.purl.as_deref(), Some("pkg:pypi/django@3.2"));
    assert_eq!(django.found_by.as_deref(), Some("python-installed"));
    // RECORD: files relative to site-packages, console scripts climb to /usr/local/bin.
    assert!(django
        .files
        .iter()
        .any(|f| f == "/usr/local/bin/django-admin"));
    assert!(django
        .files
        .iter()
        .any(|f| f == "/usr/local/lib/python3.11/site-packages/django/__init__.py"));
    // /app/requirements.txt is a declared source: only for directory scans.
    assert!(!a
        .packages
        .iter()
        .any(|p| p.locations[0] == "/app/requirements.txt"));
    let opts = vigil_analyze::AnalyzeOptions {
        declared_sources: true,
        ..Default::default()
    };
    let d = vigil_analyze::analyze_with(&desc, &idx, &opts, 1);
    let declared: Vec<_> = d
        .packages
        .iter()
        .filter(|p| p.locations[0] == "/app/requirements.txt")
        .collect();
    assert_eq!(declared.len(), 12, "{declared:?}");
    assert!(declared
        .iter()
        .all(|p| p.found_by.as_deref() == Some("python-requirements") && !p.version.is_empty()));
}

#[test]
fn node_app_reports_every_installed_package_json() {
    let exp = expected("node-app");
    let (desc, idx) = indexes("node-app", None);
    let a = analyze(&desc, &idx);
    assert_must_find(&a, &exp["must_find"], "node-app");
    assert_eq!(
        count(&a, PackageType::Npm),
        exp["npm_package_count"].as_u64().unwrap()
    );
    let lodash = a.packages.iter().find(|p| p.name == "lodash").unwrap();
    assert_eq!(lodash.purl.as_deref(), Some("pkg:npm/lodash@4.17.15"));
    assert_eq!(lodash.licenses, ["MIT"]);
    // With declared sources, the lock file adds its 53 entries (the hidden
    // node_modules/.package-lock.json is npm's cache, not a source).
    let opts = vigil_analyze::AnalyzeOptions {
        declared_sources: true,
        ..Default::default()
    };
    let d = vigil_analyze::analyze_with(&desc, &idx, &opts, 1);
    let lock = d
        .packages
        .iter()
        .filter(|p| p.found_by.as_deref() == Some("javascript-lock"))
        .count();
    assert_eq!(lock, 53);
}

#[test]
fn debian_base_file_lists_and_licenses() {
    let (desc, idx) = indexes("debian-base", None);
    let a = analyze(&desc, &idx);
    let debs = debs(&a);
    let bash = debs.iter().find(|p| p.name == "bash").unwrap();
    assert!(
        bash.files
            .iter()
            .any(|f| f == "/usr/bin/bash" || f == "/bin/bash"),
        "{:?}",
        &bash.files[..bash.files.len().min(10)]
    );
    let with_files = debs.iter().filter(|p| !p.files.is_empty()).count();
    assert!(
        with_files >= 80,
        "{with_files} of {} have file lists",
        debs.len()
    );
    let with_licenses = debs.iter().filter(|p| !p.licenses.is_empty()).count();
    assert!(with_licenses >= 40, "{with_licenses} with licenses");
    assert_eq!(a.files.len() as u64, a.file_count);
    assert!(a.files.windows(2).all(|w| w[0].path < w[1].path));
    assert!(a.passwd_present);
    assert!(a.users.iter().any(|u| u.name == "root" && u.uid == 0));
    assert!(a.groups.iter().any(|g| g.name == "root" && g.gid == 0));
    assert_eq!(a.retrieved_files.len(), 1);
    assert_eq!(a.retrieved_files[0].path, "/etc/passwd");
    assert!(a.retrieved_files[0].content.starts_with(b"root:x:0:0:"));
}

#[test]
fn misconfig_secrets_users() {
    let exp = expected("misconfig-secrets");
    let (desc, idx) = indexes("misconfig-secrets", None);
    let a = analyze(&desc, &idx);
    for u in exp["passwd"].as_array().unwrap() {
        let name = u["user"].as_str().unwrap();
        let got = a
            .users
            .iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(got.uid, u["uid"].as_u64().unwrap());
        assert_eq!(got.gid, u["gid"].as_u64().unwrap());
        assert_eq!(got.shell, u["shell"].as_str().unwrap());
    }
    let uid0: Vec<_> = a
        .users
        .iter()
        .filter(|u| u.uid == 0)
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(uid0, ["root", "toor"]);
    assert!(a.retrieved_files[0]
        .content
        .windows(5)
        .any(|w| w == b"toor:"));
}

#[test]
fn guessed_dockerfile_from_the_real_history() {
    let (mut desc, idx) = indexes("misconfig-secrets", None);
    let layout = testbed::oci_layout("misconfig-secrets");
    desc.config.history = real_history(&layout);
    let a = analyze(&desc, &idx);
    let d = a.dockerfile.expect("a guessed Dockerfile");
    assert_eq!(d.mode, vigil_contracts::DockerfileMode::Guessed);
    let want = expected("misconfig-secrets")["history_created_by"].clone();
    let lines: Vec<&str> = d.text.lines().collect();
    for w in want.as_array().unwrap() {
        assert!(lines.contains(&w.as_str().unwrap()), "{w} not in {lines:?}");
    }
    assert!(d
        .instructions
        .iter()
        .any(|i| i.instruction == "EXPOSE" && i.args == "22"));
}

/// The config's history, read from the layout (manifest → config blob).
fn real_history(layout: &std::path::Path) -> Vec<vigil_contracts::HistoryEntry> {
    let read = |d: &str| -> Value {
        serde_json::from_slice(&std::fs::read(testbed::blob_path(layout, d)).unwrap()).unwrap()
    };
    let manifest = read(&testbed::manifest_digest(layout, None));
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| vigil_contracts::HistoryEntry {
            created: h["created"].as_str().map(str::to_string),
            created_by: h["created_by"].as_str().map(str::to_string),
            comment: h["comment"].as_str().map(str::to_string),
            empty_layer: h["empty_layer"].as_bool().unwrap_or(false),
        })
        .collect()
}
