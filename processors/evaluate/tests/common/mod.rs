//! Analyses of the real testbed images: extract's `index_layer` over the OCI layout's
//! layers, then `vigil_analyze::analyze`. Fields that the analyzer does not fill yet
//! (files, users, retrieved /etc/passwd, secrets) are filled here from the same layers,
//! and each filled field is recorded in `Built::filled_by_test`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use vigil_contracts::*;
use vigil_extract::{index_layer, ExtractLimits};
use vigil_testkit::testbed;

pub struct Built {
    pub analysis: Analysis,
    pub filled_by_test: Vec<&'static str>,
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(testbed::blob_path(layout, digest)).unwrap()).unwrap()
}

fn config_of(layout: &Path) -> (ImageConfig, String) {
    let manifest = blob_json(layout, &testbed::manifest_digest(layout, None));
    let cdigest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let c = blob_json(layout, &cdigest);
    let cc = &c["config"];
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let config = ImageConfig {
        os: c["os"].as_str().unwrap_or("").into(),
        architecture: c["architecture"].as_str().unwrap_or("").into(),
        user: cc["User"].as_str().map(String::from),
        exposed_ports: cc["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        env: strs(&cc["Env"]),
        cmd: strs(&cc["Cmd"]),
        healthcheck: cc["Healthcheck"]["Test"]
            .as_array()
            .map(|_| strs(&cc["Healthcheck"]["Test"])),
        history: c["history"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| HistoryEntry {
                        created: h["created"].as_str().map(String::from),
                        created_by: h["created_by"].as_str().map(String::from),
                        comment: None,
                        empty_layer: h["empty_layer"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    (config, cdigest)
}

/// Regular-file contents of a layer tar (gzip), for the paths asked.
fn layer_files(layout: &Path, digest: &str, want: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(testbed::blob_path(layout, digest)).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = format!(
            "/{}",
            e.path()
                .unwrap()
                .display()
                .to_string()
                .trim_start_matches("./")
        );
        if want.contains(&p.as_str()) && e.header().entry_type().is_file() {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            out.insert(p, b);
        }
    }
    out
}

const SECRET_FILES: &[&str] = &["/root/.aws/credentials", "/opt/app/.env", "/opt/app/id_rsa"];

/// A minimal secret scan of known files, used only when extract reports no secrets.
fn scan_secrets(files: &BTreeMap<String, Vec<u8>>) -> Vec<SecretHit> {
    let akia = regex::Regex::new(r"AKIA[0-9A-Z]{16}").unwrap();
    let mut out = Vec::new();
    for (path, content) in files {
        for (i, line) in String::from_utf8_lossy(content).lines().enumerate() {
            let rule = if akia.is_match(line) && !line.contains("EXAMPLE") {
                "aws-access-key-id"
            } else if line.contains("BEGIN RSA PRIVATE KEY") {
                "private-key"
            } else {
                continue;
            };
            out.push(SecretHit {
                path: path.clone(),
                rule: rule.into(),
                line: i as u64 + 1,
            });
        }
    }
    out
}

/// The content-search regex the test images are analysed with (`[extract] content_search`).
pub const CONTENT_REGEX: &str = "(?i)aws_secret_access_key";

fn build(name: &str) -> Built {
    let layout = testbed::oci_layout(name);
    let layers = testbed::layers(&layout, None);
    let indexes: Vec<LayerIndex> = layers
        .iter()
        .map(|d| {
            let f = std::fs::File::open(testbed::blob_path(&layout, d)).unwrap();
            let limits = ExtractLimits {
                content_search: vec![CONTENT_REGEX.to_string()],
                // File digests, for packages.verify `changed`.
                hash_files: true,
                ..ExtractLimits::default()
            };
            index_layer(f, d, &limits).unwrap()
        })
        .collect();
    let (config, config_digest) = config_of(&layout);
    let desc = ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::Registry,
            name: format!("127.0.0.1:5000/{name}"),
            tag: Some("latest".into()),
            digest: testbed::manifest_digest(&layout, None),
            index_digest: None,
            config_digest,
            platform: "linux/amd64".into(),
        },
        config,
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
    let mut a = vigil_analyze::analyze(&desc, &indexes);
    let mut filled = Vec::new();
    let fs = vigil_analyze::squash(&indexes);
    if a.files.is_empty() {
        a.files = fs.entries.values().cloned().collect();
        filled.push("files");
    }
    if let Some(passwd) = fs.read("/etc/passwd") {
        if a.users.is_empty() {
            a.users = vigil_evaluate::triggers::parse_passwd(&String::from_utf8_lossy(passwd));
            filled.push("users");
        }
        if !a.passwd_present {
            a.passwd_present = true;
            filled.push("passwd_present");
        }
        if !a.retrieved_files.iter().any(|f| f.path == "/etc/passwd") {
            a.retrieved_files.push(RetrievedFile {
                path: "/etc/passwd".into(),
                content: passwd.to_vec(),
                truncated: false,
            });
            filled.push("retrieved_files");
        }
    }
    if a.secrets.is_empty() {
        let from_extract: Vec<SecretHit> = indexes
            .iter()
            .flat_map(|i| i.secrets.iter().cloned())
            .collect();
        if from_extract.is_empty() {
            let mut files = BTreeMap::new();
            for d in &layers {
                files.extend(layer_files(&layout, d, SECRET_FILES));
            }
            a.secrets = scan_secrets(&files);
            filled.push("secrets (test-side scan)");
        } else {
            a.secrets = from_extract;
            filled.push("secrets (from layer indexes)");
        }
    }
    Built {
        analysis: a,
        filled_by_test: filled,
    }
}

/// The analysis of a testbed image, built once per test binary.
pub fn image(name: &'static str) -> &'static Analysis {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<&'static str, &'static Built>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut m = cache.lock().unwrap();
    let b = *m
        .entry(name)
        .or_insert_with(|| Box::leak(Box::new(build(name))));
    &b.analysis
}

// ---- vulnerability data ----

pub fn advisory(id: &str, ns: &str, pkg: &str, sev: Severity, fixed: &str, nvd: f64) -> Advisory {
    Advisory {
        id: id.into(),
        aliases: vec![],
        namespace: ns.into(),
        package: pkg.into(),
        feed: "osv".into(),
        severity: sev,
        state: FixState::Fixed,
        ranges: vec![AffectedRange {
            kind: Default::default(),
            introduced: Some("0".into()),
            fixed: Some(fixed.into()),
            last_affected: None,
        }],
        versions: vec![],
        description: None,
        urls: vec![],
        published: Some("2019-04-18T00:00:00Z".into()),
        modified: None,
        cvss: vec![Cvss {
            source: "nvd".into(),
            version: "3.1".into(),
            vector: String::new(),
            base_score: nvd,
            exploitability_score: Some(3.9),
            impact_score: Some(nvd - 3.9),
        }],
        cwes: vec![],
        withdrawn: false,
        vendor_only: false,
        fix_published: Some("2019-04-20T00:00:00Z".into()),
        module: None,
    }
}

/// Real CVEs of python-app's and node-app's pinned packages (from shared/feeds/EXPECTED.md),
/// with their NVD v3 base scores.
pub fn advisories() -> Vec<Advisory> {
    vec![
        advisory(
            "CVE-2019-11324",
            "pypi",
            "urllib3",
            Severity::High,
            "1.24.2",
            7.5,
        ),
        advisory(
            "CVE-2018-18074",
            "pypi",
            "requests",
            Severity::High,
            "2.20.0",
            7.5,
        ),
        advisory(
            "CVE-2020-14343",
            "pypi",
            "pyyaml",
            Severity::Critical,
            "5.4",
            9.8,
        ),
        advisory(
            "CVE-2020-8203",
            "npm",
            "lodash",
            Severity::High,
            "4.17.19",
            7.4,
        ),
        advisory(
            "CVE-2020-7598",
            "npm",
            "minimist",
            Severity::Medium,
            "1.2.2",
            5.6,
        ),
    ]
}

/// The matcher over a real analysis; the Debian namespace is declared as having data.
pub fn matched_report(a: &Analysis) -> VulnReport {
    let advs = advisories();
    let out = vigil_match::match_packages(a, |k| {
        advs.iter()
            .filter(|x| x.namespace == k.namespace && x.package == k.package)
            .cloned()
            .collect()
    });
    let mut ns = out.namespaces_with_data;
    ns.push("debian:12".into());
    VulnReport {
        image_digest: a.descriptor.image.digest.clone(),
        findings: out.findings,
        namespaces_with_data: ns,
        matched_at: 0,
    }
}
