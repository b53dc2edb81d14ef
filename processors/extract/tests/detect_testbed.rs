//! Stream-time detectors on the real testbed layers, checked against expected.json.

use vigil_contracts::{LayerIndex, PackageType};
use vigil_extract::{index_layer, ExtractLimits};
use vigil_testkit::testbed;

/// Index every layer of an image with the default limits.
fn index_image(name: &str) -> Vec<LayerIndex> {
    let layout = testbed::oci_layout(name);
    testbed::layers(&layout, None)
        .iter()
        .map(|d| {
            let f = std::fs::File::open(testbed::blob_path(&layout, d)).unwrap();
            index_layer(f, d, &ExtractLimits::default()).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// expected.json's secret rule names → ours (Anchore's names).
fn rule_name(expected: &str) -> &'static str {
    match expected {
        "aws-access-key-id" => "AWS_ACCESS_KEY",
        "aws-secret-access-key" => "AWS_SECRET_KEY",
        "github-pat" => "GITHUB_TOKEN",
        "private-key" => "PRIV_KEY",
        other => panic!("no rule for {other}"),
    }
}

#[test]
fn misconfig_secrets_are_found_with_path_rule_and_line() {
    let idx = index_image("misconfig-secrets");
    let hits: Vec<_> = idx.iter().flat_map(|l| l.secrets.iter()).collect();
    let exp = testbed::expected();
    let want = exp["images"]["misconfig-secrets"]["secrets"]
        .as_array()
        .unwrap();
    assert!(!want.is_empty());
    for w in want {
        let path = w["path"].as_str().unwrap();
        let rule = rule_name(w["rule"].as_str().unwrap());
        let line = w["line"].as_u64().unwrap();
        assert!(
            hits.iter()
                .any(|h| h.path == path && h.rule == rule && h.line == line),
            "missing {path} {rule} line {line}; found {hits:#?}"
        );
    }
    // The AWS documentation example key is allow-listed.
    for a in exp["images"]["misconfig-secrets"]["allow_listed"]
        .as_array()
        .unwrap()
    {
        let path = a["path"].as_str().unwrap();
        assert!(
            !hits.iter().any(|h| h.path == path),
            "allow-listed {path} reported: {hits:#?}"
        );
    }
    // The secret values themselves are stored nowhere in the index.
    let blob = serde_json::to_string(&idx.iter().map(|l| &l.secrets).collect::<Vec<_>>()).unwrap();
    assert!(!blob.contains("AKIAZ3MJ") && !blob.contains("ghp_"));
    // No false positives in the base layer (a stock Debian).
    assert!(
        idx[0].secrets.is_empty(),
        "base layer secrets: {:#?}",
        idx[0].secrets
    );
}

#[test]
fn deleted_secret_of_layered_whiteout_is_seen_in_its_layer() {
    let idx = index_image("layered-whiteout");
    let exp = testbed::expected();
    for s in exp["images"]["layered-whiteout"]["secrets_in_deleted_files"]
        .as_array()
        .unwrap()
    {
        let layer = s["layer"].as_u64().unwrap() as usize;
        let path = s["path"].as_str().unwrap();
        let rule = rule_name(s["rule"].as_str().unwrap());
        assert!(
            idx[layer - 1]
                .secrets
                .iter()
                .any(|h| h.path == path && h.rule == rule),
            "{:#?}",
            idx[layer - 1].secrets
        );
    }
}

fn check_must_find(image: &str, ty: &str, kind: PackageType) {
    let idx = index_image(image);
    let pkgs: Vec<_> = idx.iter().flat_map(|l| l.packages.iter()).collect();
    let exp = testbed::expected();
    let want: Vec<_> = exp["images"][image]["must_find"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == ty)
        .collect();
    assert!(!want.is_empty());
    for w in &want {
        let name = w["name"].as_str().unwrap();
        let version = w["version"].as_str().unwrap();
        let mut location = w["path"].as_str().unwrap().to_string();
        if let Some(n) = w["nested"].as_str() {
            location = format!("{location}:{n}");
        }
        let found = pkgs.iter().any(|p| {
            p.kind == kind
                && p.name == name
                && p.version == version
                && p.locations.first() == Some(&location)
                && w["group"]
                    .as_str()
                    .is_none_or(|g| p.metadata.get("group_id").map(String::as_str) == Some(g))
        });
        assert!(
            found,
            "{image}: missing {name} {version} at {location}; found {:#?}",
            pkgs.iter()
                .map(|p| (&p.name, &p.version, &p.locations))
                .collect::<Vec<_>>()
        );
    }
    let count_key = match ty {
        "java-archive" => "java_package_count",
        _ => "go_package_count",
    };
    let n = pkgs.iter().filter(|p| p.kind == kind).count() as u64;
    assert_eq!(
        n,
        exp["images"][image][count_key].as_u64().unwrap(),
        "{:#?}",
        pkgs.iter()
            .map(|p| (&p.name, &p.version, &p.locations))
            .collect::<Vec<_>>()
    );
    for p in pkgs.iter().filter(|p| p.kind == kind) {
        assert!(p.purl.is_some(), "{p:?}");
    }
}

#[test]
fn java_app_archives_match_expected() {
    check_must_find("java-app", "java-archive", PackageType::JavaArchive);
}

#[test]
fn go_bin_modules_match_expected() {
    check_must_find("go-bin", "go-module", PackageType::GoModule);
    let idx = index_image("go-bin");
    let net = idx[0]
        .packages
        .iter()
        .find(|p| p.name == "golang.org/x/net")
        .unwrap();
    assert_eq!(
        net.purl.as_deref(),
        Some("pkg:golang/golang.org/x/net@v0.7.0")
    );
    assert_eq!(net.found_by.as_deref(), Some("go-binary"));
    assert_eq!(
        net.metadata.get("main_module").map(String::as_str),
        Some("example.com/testbed/htmltitle")
    );
    assert_eq!(
        net.metadata.get("go_toolchain").map(String::as_str),
        Some("go1.19.8")
    );
}

#[test]
fn debian_base_has_no_stream_packages_or_warnings() {
    let idx = index_image("debian-base");
    assert!(idx[0].warnings.is_empty(), "{:?}", idx[0].warnings);
    assert!(idx[0].packages.is_empty(), "{:#?}", idx[0].packages);
}
