//! Bad input ends in a clear error and a failed result naming the stage and the kind,
//! never a panic: unknown image, 401, 404, digest mismatch, truncated and corrupt gzip,
//! a tar entry over the limit, a manifest that is not JSON.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use vigil_e2e::Vigil;
use vigil_testkit::{testbed, Registry, RegistryOpts};

fn failed(v: &Vigil, source: &str, extra: &[&str]) -> serde_json::Value {
    let (code, report, stderr) = v.scan_json(source, extra);
    assert_eq!(code, 2, "a failed scan exits 2; stderr: {stderr}");
    assert_eq!(report["status"], "failed", "{report}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    report["failure"].clone()
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn put_blob(dir: &Path, b: &[u8]) -> String {
    let d = digest(b);
    let p = dir
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b).unwrap();
    d
}

/// An OCI layout with one layer; `manifest` replaces the manifest bytes when given.
fn layout(dir: &Path, layer: &[u8], media: &str, manifest: Option<&[u8]>) {
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer_d = put_blob(dir, layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_d}"]}}}}"#
    );
    let config_d = put_blob(dir, config.as_bytes());
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"{media}","digest":"{layer_d}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let mbytes = manifest
        .map(|b| b.to_vec())
        .unwrap_or_else(|| m.into_bytes());
    let md = put_blob(dir, &mbytes);
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
        mbytes.len()
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
}

fn small_tar(file_size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = vec![b'x'; file_size];
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "etc/big.bin", data.as_slice())
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "etc/hostname", &b"host\n"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[test]
fn corrupt_layers_and_manifests_fail_clearly() {
    let v = Vigil::new();

    // Truncated gzip: digest matches the (truncated) bytes, the stream ends early.
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&small_tar(200_000));
    layout(dir.path(), &gz[..gz.len() / 2], GZ, None);
    let f = failed(&v, &format!("oci-dir:{}", dir.path().display()), &[]);
    assert_eq!(f["stage"], "extract", "{f}");
    assert_eq!(f["kind"], "malformed_image", "{f}");

    // Corrupt gzip: bytes flipped in the middle of the deflate stream.
    let dir = tempfile::tempdir().unwrap();
    let mut gz = gzip(&small_tar(200_000));
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 64] {
        *b ^= 0x5a;
    }
    layout(dir.path(), &gz, GZ, None);
    let f = failed(&v, &format!("oci-dir:{}", dir.path().display()), &[]);
    assert_eq!(f["stage"], "extract", "{f}");
    assert_eq!(f["kind"], "malformed_image", "{f}");

    // A manifest that is not JSON.
    let dir = tempfile::tempdir().unwrap();
    layout(
        dir.path(),
        &gzip(&small_tar(10)),
        GZ,
        Some(b"this is not json {"),
    );
    let f = failed(&v, &format!("oci-dir:{}", dir.path().display()), &[]);
    assert_eq!(f["stage"], "fetch", "{f}");
    assert_eq!(f["kind"], "malformed_image", "{f}");

    // A tar entry larger than the configured limit.
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path(), &gzip(&small_tar(300_000)), GZ, None);
    let limited = Vigil::new().env("VIGIL_EXTRACT__MAX_ENTRY_BYTES", "100000");
    let f = failed(&limited, &format!("oci-dir:{}", dir.path().display()), &[]);
    assert_eq!(f["stage"], "extract", "{f}");
    assert_eq!(f["kind"], "limit_exceeded", "{f}");
    assert!(
        f["message"].as_str().unwrap().contains("etc/big.bin"),
        "{f}"
    );
}

#[test]
fn registry_errors_fail_clearly() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["debian-base"]);
    let v = Vigil::new();

    let f = failed(&v, &format!("{}/no-such-image:latest", reg.host()), &[]);
    assert_eq!(f["stage"], "fetch");
    assert_eq!(f["kind"], "not_found", "{f}");

    let f = failed(&v, &format!("{}/debian-base:no-such-tag", reg.host()), &[]);
    assert_eq!(f["kind"], "not_found", "{f}");

    // Digest mismatch: corrupt the layer blob inside the registry's storage.
    let info = testbed::image_info("debian-base");
    let layout = testbed::oci_layout("debian-base");
    let manifest_d = info["manifest_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&manifest_d)).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let data = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let f = failed(&v, &format!("{}/debian-base:latest", reg.host()), &[]);
    assert_eq!(f["stage"], "fetch");
    assert_eq!(f["kind"], "digest_mismatch", "{f}");

    // 401: a registry with basic auth, no credentials given.
    let auth = Registry::start(RegistryOpts {
        auth: Some(("tester".into(), "s3cret".into())),
        tls: false,
    });
    auth.push_testbed(&["debian-base"]);
    let f = failed(&v, &format!("{}/debian-base:latest", auth.host()), &[]);
    assert_eq!(f["kind"], "unauthorized", "{f}");
    // With the credentials the same scan succeeds.
    let (code, report, stderr) = v.scan_json(
        &format!("{}/debian-base:latest", auth.host()),
        &["--registry-auth", &format!("{}=tester:s3cret", auth.host())],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["status"], "succeeded");
}
