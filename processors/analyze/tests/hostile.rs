//! Hostile image content through extract and analyze together: a `package.json` of
//! 100 MB is streamed with bounded memory (only the keep cap is held), reported as a
//! warning, and does not hide the packages next to it.

use std::io::Read;

use vigil_analyze::analyze;
use vigil_contracts::{
    Compression, ImageConfig, ImageDescriptor, ImageRef, LayerRef, PackageType, SourceKind,
};
use vigil_extract::{index_layer, ExtractLimits};

const BIG: u64 = 100 << 20;

fn tar_with_a_huge_package_json(path: &std::path::Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(file);
    let head = br#"{"name":"big","version":"1.0.0","description":""#;
    let tail = br#""}"#;
    let filler = BIG - head.len() as u64 - tail.len() as u64;
    // Generated while written: the test never holds the 100 MB either.
    let body = (&head[..])
        .chain(std::io::repeat(b'x').take(filler))
        .chain(&tail[..]);
    let mut h = tar::Header::new_gnu();
    h.set_size(BIG);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "usr/lib/node_modules/big/package.json", body)
        .unwrap();
    let small = br#"{"name":"small","version":"2.0.0"}"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(small.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(
        &mut h,
        "usr/lib/node_modules/small/package.json",
        &small[..],
    )
    .unwrap();
    b.into_inner().unwrap();
}

#[test]
fn package_json_of_100_mb_is_a_warning_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar");
    tar_with_a_huge_package_json(&tar);
    let limits = ExtractLimits::default();
    let idx = index_layer(std::fs::File::open(&tar).unwrap(), "sha256:huge", &limits).unwrap();
    let kept = idx
        .kept
        .iter()
        .find(|k| k.path == "/usr/lib/node_modules/big/package.json")
        .expect("the beginning of the file is kept");
    assert!(kept.truncated);
    assert!(kept.content.len() as u64 <= limits.max_kept_file_bytes);
    let big_entry = idx
        .entries
        .iter()
        .find(|e| e.path == "/usr/lib/node_modules/big/package.json")
        .unwrap();
    assert_eq!(big_entry.size, BIG, "the entry itself is recorded in full");

    let desc = ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::OciDir,
            name: "hostile".into(),
            tag: None,
            digest: "sha256:img".into(),
            index_digest: None,
            config_digest: "sha256:cfg".into(),
            platform: "linux/amd64".into(),
        },
        config: ImageConfig::default(),
        layers: vec![LayerRef {
            digest: "sha256:huge".into(),
            diff_id: None,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: BIG,
            compression: Compression::None,
        }],
    };
    let a = analyze(&desc, &[idx]);
    let npm: Vec<(&str, &str)> = a
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Npm)
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(npm, vec![("small", "2.0.0")], "the cut file is not misread");
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("/usr/lib/node_modules/big/package.json")),
        "the cut file is named in a warning: {:?}",
        a.warnings
    );
}
