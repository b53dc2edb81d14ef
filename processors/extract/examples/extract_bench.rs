//! Index the largest testbed layer and print the throughput in MB/s of uncompressed tar.
//!
//! `cargo run --release -p vigil-extract --example extract_bench [-- ROUNDS [plain|hash|secrets|binaries]]`
//!
//! `VIGIL_BENCH_LAYER=PATH` picks another blob. `plain` turns the stream-time detectors (secrets, binaries, Java archives) off;
//! `hash` also computes every file's sha256; `secrets` and `binaries` run only those.

use std::path::PathBuf;
use std::time::Instant;

use vigil_extract::{index_layer, ExtractLimits};

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let mut limits = ExtractLimits::default();
    match std::env::args().nth(2).as_deref() {
        Some("plain") => {
            limits.secret_scan = false;
            limits.binary_scan = false;
            limits.java_scan = false;
        }
        Some("hash") => limits.hash_files = true,
        Some("secrets") => {
            limits.binary_scan = false;
            limits.java_scan = false;
        }
        Some("binaries") => {
            limits.secret_scan = false;
            limits.java_scan = false;
        }
        _ => {}
    }
    let oci = vigil_testkit::testbed::images_dir().join("oci");
    // Every layer blob of every layout: the largest is the one named by a manifest's
    // layers with the greatest size.
    let mut best: Option<(u64, String, PathBuf)> = None;
    for layout in std::fs::read_dir(&oci).expect("testbed images").flatten() {
        let blobs = layout.path().join("blobs/sha256");
        for blob in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(
                &std::fs::read(blob.path()).unwrap_or_default(),
            ) else {
                continue;
            };
            for l in v["layers"].as_array().into_iter().flatten() {
                let (Some(d), Some(size)) = (l["digest"].as_str(), l["size"].as_u64()) else {
                    continue;
                };
                let path = blobs.join(d.trim_start_matches("sha256:"));
                if best.as_ref().is_none_or(|b| size > b.0) && path.exists() {
                    best = Some((size, d.to_string(), path));
                }
            }
        }
    }
    // `VIGIL_BENCH_LAYER=PATH` measures that blob instead (e.g. python-app's top layer).
    if let Some(p) = std::env::var_os("VIGIL_BENCH_LAYER").map(PathBuf::from) {
        let size = std::fs::metadata(&p).expect("VIGIL_BENCH_LAYER").len();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        best = Some((size, format!("sha256:{name}"), p));
    }
    let (size, digest, path) = best.expect("no testbed layer found");
    println!(
        "layer {digest} ({size} bytes compressed) from {}",
        path.display()
    );
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let t = Instant::now();
        let idx = index_layer(f, &digest, &limits).expect("index");
        let secs = t.elapsed().as_secs_f64();
        let mbs = idx.uncompressed_size as f64 / 1e6 / secs;
        println!(
            "{} entries, {} kept, {} packages, {} secrets, {:.1} MB uncompressed in {:.3} s: {:.0} MB/s",
            idx.entries.len(),
            idx.kept.len(),
            idx.packages.len(),
            idx.secrets.len(),
            idx.uncompressed_size as f64 / 1e6,
            secs,
            mbs
        );
        rates.push(mbs);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!("median {:.0} MB/s", rates[rates.len() / 2]);
}
