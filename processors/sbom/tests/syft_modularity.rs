//! A Syft JSON rpm entry's `modularityLabel` (RHEL modularity) is kept as
//! `metadata["modularity_label"]`, as the rpmdb cataloger records it, so module
//! advisories match SBOM-imported packages too.

use vigil_sbom::import_sbom;

#[test]
fn syft_rpm_modularity_label_is_kept() {
    let doc = r#"{
      "artifacts": [
        {"id": "a", "name": "nodejs", "version": "1:18.18.2-1.module+el8.9.0+20473+c4e3d824",
         "type": "rpm", "purl": "pkg:rpm/redhat/nodejs@18.18.2-1.module%2Bel8.9.0%2B20473%2Bc4e3d824?epoch=1",
         "metadataType": "rpm-db-entry",
         "metadata": {"name": "nodejs", "version": "18.18.2", "epoch": 1,
                      "release": "1.module+el8.9.0+20473+c4e3d824",
                      "modularityLabel": "nodejs:18:8090020231019152822:a75119d5"}},
        {"id": "b", "name": "bash", "version": "4.4.20-4.el8", "type": "rpm",
         "metadataType": "rpm-db-entry",
         "metadata": {"name": "bash", "version": "4.4.20", "release": "4.el8", "modularityLabel": ""}}
      ],
      "source": {"type": "image", "metadata": {}},
      "distro": {"id": "rhel", "versionID": "8.9"},
      "schema": {"version": "16.0.18"}
    }"#;
    let sbom = import_sbom(doc).unwrap();
    let label = |name: &str| {
        sbom.packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} not imported: {:?}", sbom.packages))
            .metadata
            .get("modularity_label")
            .cloned()
    };
    assert_eq!(
        label("nodejs").as_deref(),
        Some("nodejs:18:8090020231019152822:a75119d5")
    );
    assert_eq!(label("bash"), None, "an empty label is no module");
}
