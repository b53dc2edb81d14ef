//! A fixture analysis covering every package type, and the pinned export options.
#![allow(dead_code)]

use std::collections::BTreeMap;

use jsonschema::{Retrieve, Uri};
use serde_json::Value;
use vigil_contracts::*;
use vigil_sbom::ExportOptions;

pub fn opts() -> ExportOptions {
    ExportOptions::new(
        1_764_217_229_000,
        uuid::Uuid::parse_str("3e671687-395b-41f5-a30f-a58921a69b79").unwrap(),
    )
}

fn pkg(name: &str, version: &str, kind: PackageType, purl: &str) -> Package {
    let mut p = Package::new(name, version, kind);
    p.purl = Some(purl.to_string());
    p
}

pub fn analysis() -> Analysis {
    let mut libc = pkg(
        "libc6",
        "2.36-9+deb12u4",
        PackageType::Deb,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc&distro=debian-12",
    );
    libc.arch = Some("amd64".into());
    libc.source_name = Some("glibc".into());
    libc.licenses = vec![
        "GPL-2.0-only".into(),
        "LGPL-2.1-or-later".into(),
        "GPL 2+ with weird text".into(),
    ];
    libc.locations = vec!["/var/lib/dpkg/status".into()];
    libc.cpes = vec![
        "cpe:2.3:a:libc6:libc6:2.36-9\\+deb12u4:*:*:*:*:*:*:*".into(),
        "cpe:2.3:a:gnu:glibc:2.36-9\\+deb12u4:*:*:*:*:*:*:*".into(),
    ];
    libc.found_by = Some("dpkg-db".into());

    let mut bash = pkg(
        "bash",
        "5.2.15-2+b2",
        PackageType::Deb,
        "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12",
    );
    bash.arch = Some("amd64".into());
    bash.licenses = vec!["GPL-3.0-or-later".into()];
    bash.locations = vec!["/var/lib/dpkg/status".into()];
    bash.found_by = Some("dpkg-db".into());

    let mut musl = pkg(
        "musl",
        "1.2.4-r2",
        PackageType::Apk,
        "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1",
    );
    musl.arch = Some("x86_64".into());
    musl.licenses = vec!["MIT".into()];
    let mut openssl = pkg(
        "openssl-libs",
        "3.0.7-25.el9_3",
        PackageType::Rpm,
        "pkg:rpm/redhat/openssl-libs@3.0.7-25.el9_3?arch=x86_64&epoch=1&distro=rhel-9.3",
    );
    openssl.arch = Some("x86_64".into());
    openssl.metadata = BTreeMap::from([
        ("epoch".into(), "1".into()),
        ("release".into(), "25.el9_3".into()),
    ]);

    let mut requests = pkg(
        "requests",
        "2.31.0",
        PackageType::Python,
        "pkg:pypi/requests@2.31.0",
    );
    requests.licenses = vec!["Apache-2.0".into()];
    requests.locations =
        vec!["/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA".into()];
    requests.found_by = Some("python-installed".into());

    let mut lodash = pkg(
        "lodash",
        "4.17.21",
        PackageType::Npm,
        "pkg:npm/lodash@4.17.21",
    );
    lodash.licenses = vec!["MIT".into()];
    let scoped = pkg(
        "@babel/core",
        "7.23.0",
        PackageType::Npm,
        "pkg:npm/%40babel/core@7.23.0",
    );

    let mut log4j = pkg(
        "log4j-core",
        "2.14.1",
        PackageType::JavaArchive,
        "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
    );
    log4j.metadata = BTreeMap::from([
        ("group_id".into(), "org.apache.logging.log4j".into()),
        ("artifact_id".into(), "log4j-core".into()),
    ]);
    log4j.locations = vec!["/app/lib/log4j-core-2.14.1.jar".into()];
    log4j.licenses = vec!["Apache-2.0 OR MIT".into()];

    let mut gomod = pkg(
        "golang.org/x/net",
        "v0.17.0",
        PackageType::GoModule,
        "pkg:golang/golang.org/x/net@v0.17.0",
    );
    gomod.metadata = BTreeMap::from([("go_toolchain".into(), "go1.21.3".into())]);
    gomod.locations = vec!["/usr/local/bin/app".into()];
    let serde = pkg(
        "serde",
        "1.0.193",
        PackageType::RustCrate,
        "pkg:cargo/serde@1.0.193",
    );
    let rack = pkg("rack", "2.2.8", PackageType::Gem, "pkg:gem/rack@2.2.8");
    let newtonsoft = pkg(
        "Newtonsoft.Json",
        "13.0.3",
        PackageType::Dotnet,
        "pkg:nuget/Newtonsoft.Json@13.0.3",
    );
    let monolog = pkg(
        "monolog/monolog",
        "3.5.0",
        PackageType::Php,
        "pkg:composer/monolog/monolog@3.5.0",
    );
    let mut node = pkg(
        "node",
        "20.10.0",
        PackageType::Binary,
        "pkg:generic/node@20.10.0",
    );
    node.locations = vec!["/usr/local/bin/node".into()];
    // The same package twice, in two places.
    let mut lodash2 = lodash.clone();
    lodash2.locations = vec!["/app/node_modules/lodash/package.json".into()];

    let packages = vec![
        requests, libc, bash, musl, openssl, lodash, lodash2, scoped, log4j, gomod, serde, rack,
        newtonsoft, monolog, node,
    ];

    Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Registry,
                name: "127.0.0.1:5000/testbed/app".into(),
                tag: Some("1.0".into()),
                digest: "sha256:3cf492aa68a1f94245a3b8bd2b8c6a987271c8c41995109bec983b0011e312b9"
                    .into(),
                index_digest: None,
                config_digest:
                    "sha256:86b5ceaa79f3ceac2d50d7ce3b21cb39d43415f72ec49c85d06cdba963d370fb".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            },
            layers: Vec::new(),
        },
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            codename: Some("bookworm".into()),
            id_like: Vec::new(),
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
        }),
        packages,
        file_count: 1234,
        image_size: 74_871_044,
        analyzed_at: 1_764_217_229_000,
        analyzer_version: 1,
        warnings: Vec::new(),
        files: Vec::new(),
        users: Vec::new(),
        groups: Vec::new(),
        secrets: Vec::new(),
        retrieved_files: Vec::new(),
        dockerfile: None,
        passwd_present: true,
        from_sbom: false,
        content_matches: Vec::new(),
    }
}

pub fn findings() -> Vec<Finding> {
    let f = |id: &str,
             sev: Severity,
             name: &str,
             version: &str,
             kind: PackageType,
             fixed: Option<&str>| Finding {
        vuln_id: id.into(),
        aliases: Vec::new(),
        severity: sev,
        package: PackageRef {
            name: name.into(),
            version: version.into(),
            kind,
            location: None,
        },
        fixed_in: fixed.map(str::to_string),
        state: if fixed.is_some() {
            FixState::Fixed
        } else {
            FixState::NotFixed
        },
        feed: "debian".into(),
        matched: MatchDetail {
            namespace: "debian:12".into(),
            searched_name: name.into(),
            comparator: "dpkg".into(),
            constraint: fixed
                .map(|v| format!("< {v}"))
                .unwrap_or_else(|| "none".into()),
        },
        description: Some("a test vulnerability".into()),
        urls: vec!["https://security-tracker.debian.org/tracker/".to_string() + id],
        cvss: vec![Cvss {
            source: "nvd".into(),
            version: "3.1".into(),
            vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
            base_score: 9.8,
            exploitability_score: Some(3.9),
            impact_score: Some(5.9),
        }],
        published: None,
        fix_published: None,
        vendor_only: false,
    };
    let mut log4shell = f(
        "CVE-2021-44228",
        Severity::Critical,
        "log4j-core",
        "2.14.1",
        PackageType::JavaArchive,
        Some("2.15.0"),
    );
    log4shell.feed = "ghsa".into();
    log4shell.aliases = vec!["GHSA-jfh8-c2jp-5v3q".into()];
    vec![
        f(
            "CVE-2023-4911",
            Severity::High,
            "libc6",
            "2.36-9+deb12u4",
            PackageType::Deb,
            Some("2.36-9+deb12u3"),
        ),
        f(
            "CVE-2010-4756",
            Severity::Negligible,
            "libc6",
            "2.36-9+deb12u4",
            PackageType::Deb,
            None,
        ),
        log4shell,
    ]
}

/// (name, version, type, purl) of each package, sorted.
pub fn identity(pkgs: &[Package]) -> Vec<(String, String, PackageType, Option<String>)> {
    let mut v: Vec<_> = pkgs
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.kind, p.purl.clone()))
        .collect();
    v.sort();
    v
}

pub fn schema(file: &str) -> Value {
    let path = format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Resolves the CycloneDX schema's `$ref`s to `spdx.schema.json` and
/// `jsf-0.82.schema.json` from the committed copies; refuses anything else, so that a
/// test never reaches the network.
struct LocalSchemas;

impl Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        match uri.as_str() {
            "http://cyclonedx.org/schema/spdx.schema.json" => Ok(schema("spdx.schema.json")),
            "http://cyclonedx.org/schema/jsf-0.82.schema.json" => {
                Ok(schema("jsf-0.82.schema.json"))
            }
            other => Err(format!("schema {other} is not available offline").into()),
        }
    }
}

/// Errors of `doc` against a committed schema, as `path: message`.
pub fn validate(schema_file: &str, doc: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_retriever(LocalSchemas)
        .should_validate_formats(true)
        .build(&schema(schema_file))
        .expect("schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}
