//! Exported documents validate against the published JSON schemas committed in
//! `schemas/` (see `schemas/README.md` for where each came from).

mod common;

use common::validate;
use serde_json::Value;

#[test]
fn cyclonedx_export_is_valid_cyclonedx_1_6() {
    let a = common::analysis();
    let f = common::findings();
    let text = vigil_sbom::cyclonedx_json(&a, Some(&f), &common::opts()).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let errors = validate("bom-1.6.schema.json", &doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));

    // What the committed copy of the schema relaxes (see schemas/README.md), checked by hand.
    assert_eq!(
        doc["$schema"],
        "http://cyclonedx.org/schema/bom-1.6.schema.json"
    );
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["specVersion"], "1.6");
    assert_eq!(
        doc["serialNumber"],
        "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79"
    );
    assert_eq!(doc["metadata"]["timestamp"], "2025-11-27T04:20:29Z");
    assert_eq!(doc["metadata"]["component"]["type"], "container");
    assert_eq!(
        doc["metadata"]["component"]["name"],
        "127.0.0.1:5000/testbed/app"
    );

    // One component per package plus the operating system; bom-refs unique.
    let comps = doc["components"].as_array().unwrap();
    assert_eq!(comps.len(), a.packages.len() + 1);
    let refs: std::collections::BTreeSet<&str> = comps
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), comps.len());
    let libc = comps.iter().find(|c| c["name"] == "libc6").unwrap();
    assert_eq!(
        libc["cpe"],
        "cpe:2.3:a:libc6:libc6:2.36-9\\+deb12u4:*:*:*:*:*:*:*"
    );
    let props: Vec<(&str, &str)> = libc["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["value"].as_str().unwrap()))
        .collect();
    assert!(props.contains(&("vigil:found_by", "dpkg-db")));
    assert!(props.contains(&("vigil:location:0", "/var/lib/dpkg/status")));
    assert!(props.contains(&(
        "vigil:cpe:1",
        "cpe:2.3:a:gnu:glibc:2.36-9\\+deb12u4:*:*:*:*:*:*:*"
    )));
    assert_eq!(libc["licenses"][0]["license"]["id"], "GPL-2.0-only");
    assert_eq!(
        libc["licenses"][2]["license"]["name"],
        "GPL 2+ with weird text"
    );
    let log4j = comps.iter().find(|c| c["name"] == "log4j-core").unwrap();
    assert_eq!(log4j["licenses"][0]["expression"], "Apache-2.0 OR MIT");
    assert_eq!(log4j["group"], "org.apache.logging.log4j");

    // Vulnerabilities point at the component bom-refs.
    let vulns = doc["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 3);
    for v in vulns {
        let r = v["affects"][0]["ref"].as_str().unwrap();
        assert!(refs.contains(r), "{r} is no component");
    }
    let l4s = vulns.iter().find(|v| v["id"] == "CVE-2021-44228").unwrap();
    assert_eq!(l4s["ratings"][0]["severity"], "critical");
    assert_eq!(l4s["ratings"][1]["method"], "CVSSv31");
    assert_eq!(l4s["source"]["name"], "ghsa");
    assert_eq!(l4s["affects"][0]["ref"], log4j["bom-ref"]);
}

#[test]
fn cyclonedx_export_without_findings_and_distro_is_valid() {
    let mut a = common::analysis();
    a.distro = None;
    a.descriptor.image.tag = None;
    let text = vigil_sbom::cyclonedx_json(&a, None, &common::opts()).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let errors = validate("bom-1.6.schema.json", &doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
    assert!(doc.get("vulnerabilities").is_none());
}

#[test]
fn the_schema_rejects_a_broken_cyclonedx_document() {
    // The validator really checks: a component without a name and a bad serial fail.
    let a = common::analysis();
    let text = vigil_sbom::cyclonedx_json(&a, None, &common::opts()).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["components"][0].as_object_mut().unwrap().remove("name");
    doc["serialNumber"] = Value::String("not-a-urn".into());
    doc["components"][1]["licenses"][0]["license"]["id"] = Value::String("Not-A-License".into());
    let errors = validate("bom-1.6.schema.json", &doc);
    for path in ["/components/0", "/serialNumber", "/components/1/licenses"] {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "no error at {path}: {errors:#?}"
        );
    }
}

#[test]
fn spdx_export_is_valid_spdx_2_3() {
    let a = common::analysis();
    let text = vigil_sbom::spdx_json(&a, &common::opts()).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let errors = validate("spdx-2.3.schema.json", &doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));

    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["creationInfo"]["created"], "2025-11-27T04:20:29Z");
    let pkgs = doc["packages"].as_array().unwrap();
    // image + operating system + one per package
    assert_eq!(pkgs.len(), a.packages.len() + 2);
    let ids: std::collections::BTreeSet<&str> =
        pkgs.iter().map(|p| p["SPDXID"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), pkgs.len(), "SPDXIDs are unique");
    let rels = doc["relationships"].as_array().unwrap();
    let describes: Vec<&Value> = rels
        .iter()
        .filter(|r| r["relationshipType"] == "DESCRIBES")
        .collect();
    assert_eq!(describes.len(), 1);
    assert_eq!(describes[0]["spdxElementId"], "SPDXRef-DOCUMENT");
    let image_id = describes[0]["relatedSpdxElement"].as_str().unwrap();
    let image = pkgs.iter().find(|p| p["SPDXID"] == image_id).unwrap();
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    // The image CONTAINS every other package.
    let contained: std::collections::BTreeSet<&str> = rels
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS" && r["spdxElementId"] == image_id)
        .map(|r| r["relatedSpdxElement"].as_str().unwrap())
        .collect();
    assert_eq!(contained.len(), pkgs.len() - 1);
    for p in pkgs {
        assert_eq!(p["downloadLocation"], "NOASSERTION");
    }
    let libc = pkgs.iter().find(|p| p["name"] == "libc6").unwrap();
    assert_eq!(libc["versionInfo"], "2.36-9+deb12u4");
    let refs = libc["externalRefs"].as_array().unwrap();
    assert!(refs
        .iter()
        .any(|r| r["referenceCategory"] == "PACKAGE-MANAGER"
            && r["referenceType"] == "purl"
            && r["referenceLocator"]
                .as_str()
                .unwrap()
                .starts_with("pkg:deb/debian/libc6@")));
    assert_eq!(
        refs.iter()
            .filter(|r| r["referenceCategory"] == "SECURITY" && r["referenceType"] == "cpe23Type")
            .count(),
        2
    );
    // A license name that is no SPDX id becomes a LicenseRef with its text extracted.
    let declared = libc["licenseDeclared"].as_str().unwrap();
    assert!(
        declared.contains("GPL-2.0-only") && declared.contains("LicenseRef-"),
        "{declared}"
    );
    let extracted = doc["hasExtractedLicensingInfos"].as_array().unwrap();
    assert!(extracted
        .iter()
        .any(|e| e["extractedText"] == "GPL 2+ with weird text"));
}

#[test]
fn the_schema_rejects_a_broken_spdx_document() {
    let a = common::analysis();
    let text = vigil_sbom::spdx_json(&a, &common::opts()).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["packages"][2]
        .as_object_mut()
        .unwrap()
        .remove("downloadLocation");
    doc["packages"][3]["SPDXID"] = Value::String("Package_3".into());
    doc["creationInfo"]["created"] = Value::String("yesterday".into());
    let errors = validate("spdx-2.3.schema.json", &doc);
    for path in ["/packages/2", "/packages/3/SPDXID", "/creationInfo/created"] {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "no error at {path}: {errors:#?}"
        );
    }
}

#[test]
fn exports_are_deterministic() {
    let a = common::analysis();
    let mut shuffled = a.clone();
    shuffled.packages.reverse();
    let f = common::findings();
    let mut f2 = f.clone();
    f2.reverse();
    assert_eq!(
        vigil_sbom::cyclonedx_json(&a, Some(&f), &common::opts()).unwrap(),
        vigil_sbom::cyclonedx_json(&shuffled, Some(&f2), &common::opts()).unwrap()
    );
    assert_eq!(
        vigil_sbom::spdx_json(&a, &common::opts()).unwrap(),
        vigil_sbom::spdx_json(&shuffled, &common::opts()).unwrap()
    );
}
