//! Benchmark: match one image of 1,000 packages against a large advisory set.
//!
//! `cargo run --release -p vigil-match --example match_bench`
//!
//! Builds an in-memory advisory index (200,000 advisories over 20,000 package keys in
//! seven namespaces, each with ranges, aliases and some explicit version lists), then
//! times `match_packages` for an image of 1,000 packages (Debian OS packages with
//! source names plus PyPI, npm, Maven, Go and crates.io packages). The lookup clones
//! the advisories of each key, as a store read would hand over owned records.

use std::collections::HashMap;
use std::time::Instant;

use vigil_contracts::{
    Advisory, AffectedRange, Analysis, Distro, FixState, ImageConfig, ImageDescriptor, ImageRef,
    Package, PackageKey, PackageType, Severity, SourceKind,
};
use vigil_match::match_packages;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KINDS: [(PackageType, &str); 6] = [
    (PackageType::Deb, "debian:12"),
    (PackageType::Python, "pypi"),
    (PackageType::Npm, "npm"),
    (PackageType::JavaArchive, "maven"),
    (PackageType::GoModule, "go"),
    (PackageType::RustCrate, "crates.io"),
];

fn version(r: &mut Rng, kind: PackageType) -> String {
    let (a, b, c) = (r.below(5), r.below(30), r.below(40));
    match kind {
        PackageType::Deb => format!("{a}.{b}.{c}-{}+deb12u{}", 1 + r.below(5), r.below(4)),
        PackageType::GoModule => format!("v{a}.{b}.{c}"),
        _ => format!("{a}.{b}.{c}"),
    }
}

fn main() {
    let mut r = Rng(0xBE_4C_11);
    let keys_per_ns = 20_000 / KINDS.len();
    let per_key = 10;
    let mut index: HashMap<PackageKey, Vec<Advisory>> = HashMap::new();
    let t0 = Instant::now();
    let mut n_adv = 0usize;
    for (kind, ns) in KINDS {
        for k in 0..keys_per_ns {
            let name = match kind {
                PackageType::JavaArchive => format!("org.example{}:artifact{k}", k % 50),
                _ => format!("pkg{k}"),
            };
            let mut list = Vec::with_capacity(per_key);
            for j in 0..per_key {
                let intro = version(&mut r, kind);
                let fixed = version(&mut r, kind);
                let cve = format!("CVE-20{}-{}", 10 + r.below(15), 1000 + r.below(90_000));
                let ghsa = ns != "debian:12" && j % 2 == 0;
                let adv = Advisory {
                    id: if ghsa {
                        format!("GHSA-{k:04x}-{j:04x}-bench")
                    } else {
                        cve.clone()
                    },
                    aliases: if ghsa { vec![cve] } else { vec![] },
                    namespace: ns.to_string(),
                    package: name.clone(),
                    feed: if ns == "debian:12" {
                        "debian".into()
                    } else {
                        "osv".into()
                    },
                    severity: Severity::Medium,
                    state: if j % 7 == 0 {
                        FixState::NotFixed
                    } else {
                        FixState::Fixed
                    },
                    ranges: vec![AffectedRange {
                        kind: Default::default(),
                        introduced: Some(if j % 3 == 0 { "0".into() } else { intro }),
                        fixed: if j % 7 == 0 { None } else { Some(fixed) },
                        last_affected: None,
                    }],
                    versions: if j % 5 == 0 {
                        (0..8).map(|_| version(&mut r, kind)).collect()
                    } else {
                        vec![]
                    },
                    description: Some("benchmark advisory".into()),
                    urls: vec!["https://example.invalid/advisory".into()],
                    published: Some("2024-01-01T00:00:00Z".into()),
                    modified: None,
                    cvss: vec![],
                    cwes: vec![],
                    withdrawn: j == 9,
                    vendor_only: j == 8,
                    fix_published: None,
                    module: None,
                };
                list.push(adv);
            }
            n_adv += list.len();
            index.insert(
                PackageKey {
                    namespace: ns.to_string(),
                    package: name,
                },
                list,
            );
        }
    }
    let build = t0.elapsed();

    let mut packages = Vec::new();
    for i in 0..1000 {
        let (kind, _) = KINDS[i % KINDS.len()];
        let k = r.below(keys_per_ns as u64 * 2) as usize; // half of the names have no data
        let mut p = Package {
            name: format!("pkg{k}"),
            version: version(&mut r, kind),
            kind,
            arch: None,
            source_name: None,
            source_version: None,
            licenses: vec![],
            locations: vec![format!("/layer/{i}")],
            purl: None,
            cpes: vec![],
            files: vec![],
            metadata: Default::default(),
            found_by: None,
            file_digests: Default::default(),
        };
        match kind {
            PackageType::Deb => {
                p.source_name = Some(format!("pkg{}", r.below(keys_per_ns as u64)));
                p.name = format!("lib{k}");
            }
            PackageType::JavaArchive => {
                p.metadata
                    .insert("group_id".into(), format!("org.example{}", k % 50));
                p.metadata
                    .insert("artifact_id".into(), format!("artifact{k}"));
                p.name = format!("artifact{k}");
            }
            _ => {}
        }
        packages.push(p);
    }
    let analysis = Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Dir,
                name: "bench".into(),
                tag: None,
                digest: "sha256:bench".into(),
                index_digest: None,
                config_digest: "sha256:c".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig::default(),
            layers: vec![],
        },
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        }),
        packages,
        file_count: 0,
        image_size: 0,
        analyzed_at: 0,
        analyzer_version: 1,
        warnings: vec![],
        files: vec![],
        users: vec![],
        groups: vec![],
        secrets: vec![],
        retrieved_files: vec![],
        dockerfile: None,
        passwd_present: false,
        from_sbom: false,
        content_matches: Vec::new(),
    };

    let runs = 50;
    let mut times = Vec::with_capacity(runs);
    let mut findings = 0;
    let mut looked_up = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = match_packages(&analysis, |k| index.get(k).cloned().unwrap_or_default());
        times.push(t.elapsed());
        findings = out.findings.len();
        looked_up = out.keys.len();
    }
    times.sort();
    // The share of the store-like lookup (cloning each key's advisories) in that time.
    let keys: Vec<PackageKey> = vigil_match::lookup_keys(&analysis);
    let mut clone_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let n: usize = keys
            .iter()
            .map(|k| index.get(k).cloned().unwrap_or_default().len())
            .sum();
        std::hint::black_box(n);
        clone_times.push(t.elapsed());
    }
    clone_times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "advisory set: {n_adv} advisories over {} keys (built in {:.0} ms)",
        index.len(),
        ms(build)
    );
    println!("image: 1000 packages, {looked_up} keys looked up, {findings} findings");
    println!(
        "match_packages over {runs} runs: min {:.2} ms, median {:.2} ms, p95 {:.2} ms, max {:.2} ms (goal < 20 ms)",
        ms(times[0]),
        ms(times[runs / 2]),
        ms(times[runs * 95 / 100]),
        ms(times[runs - 1])
    );
    println!(
        "of which the lookup closure (cloning advisories, as a store read would): median {:.2} ms",
        ms(clone_times[runs / 2])
    );
}
