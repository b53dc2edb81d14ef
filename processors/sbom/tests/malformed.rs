//! Input that is not a usable SBOM gives an error that says what is wrong.

use vigil_sbom::{import_sbom, SbomError};

fn err(text: &str) -> SbomError {
    import_sbom(text).expect_err("must fail")
}

#[test]
fn not_json() {
    let e = err("this is not json {");
    assert!(matches!(e, SbomError::NotJson(_)), "{e:?}");
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

#[test]
fn json_of_an_unknown_shape() {
    let e = err(r#"{"hello": "world", "items": []}"#);
    assert!(matches!(e, SbomError::UnknownFormat(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("bomFormat") && msg.contains("spdxVersion") && msg.contains("artifacts"),
        "{msg}"
    );
    assert!(msg.contains("hello"), "names the keys it found: {msg}");

    let e = err("[1, 2, 3]");
    assert!(e.to_string().contains("top level is an array"), "{e}");

    let e = err(r#"{"bomFormat": "SWID"}"#);
    assert!(e.to_string().contains("bomFormat"), "{e}");
}

#[test]
fn cyclonedx_component_without_name() {
    let e = err(
        r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[
        {"type":"library","name":"ok","version":"1"},
        {"type":"library","bom-ref":"pkg-2","version":"1.0","purl":"pkg:npm/x@1.0"}]}"#,
    );
    let msg = e.to_string();
    assert!(matches!(e, SbomError::Malformed { .. }), "{e:?}");
    assert!(
        msg.contains("components[1]") && msg.contains("no name") && msg.contains("pkg-2"),
        "{msg}"
    );
}

#[test]
fn null_lists_are_empty_not_errors() {
    let ok =
        import_sbom(r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":null}"#).unwrap();
    assert!(ok.packages.is_empty());
    let ok =
        import_sbom(r#"{"spdxVersion":"SPDX-2.2","packages":null,"relationships":null}"#).unwrap();
    assert!(ok.packages.is_empty());
}

#[test]
fn wrong_types_and_versions() {
    let e = err(r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":{"a":1}}"#);
    assert!(
        e.to_string().contains("components") && e.to_string().contains("expected an array"),
        "{e}"
    );

    let e = err(r#"{"bomFormat":"CycloneDX","specVersion":"1.2","components":[]}"#);
    assert!(matches!(e, SbomError::UnsupportedVersion { .. }), "{e:?}");
    assert!(e.to_string().contains("1.2"), "{e}");

    let e = err(r#"{"spdxVersion":"SPDX-2.1","packages":[]}"#);
    assert!(matches!(e, SbomError::UnsupportedVersion { .. }), "{e:?}");

    let e =
        err(r#"{"spdxVersion":"SPDX-2.3","packages":[{"SPDXID":"SPDXRef-a","versionInfo":"1"}]}"#);
    assert!(
        e.to_string().contains("packages[0]") && e.to_string().contains("`name` is missing"),
        "{e}"
    );

    let e = err(r#"{"artifacts":[{"name":"x","version":"1"},{"version":"2"}]}"#);
    assert!(
        e.to_string().contains("Syft JSON") && e.to_string().contains("artifacts[1]"),
        "{e}"
    );

    let e = err(r#"{"artifacts":[{"name":42}]}"#);
    assert!(
        e.to_string().contains("artifacts[0].name") && e.to_string().contains("a number"),
        "{e}"
    );
}
