//! Index the largest testbed layer and print the throughput in MB/s of uncompressed tar:
//! wall-clock (decompression, tar parsing and the text searches run on separate threads)
//! and per CPU-second summed over all threads (the per-core figure).
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
    let (mut rates, mut per_cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let (t, cpu0) = (Instant::now(), cpu_seconds());
        let idx = index_layer(f, &digest, &limits).expect("index");
        let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let mb = idx.uncompressed_size as f64 / 1e6;
        println!(
            "{} entries, {} kept, {} packages, {} secrets, {mb:.1} MB uncompressed in {secs:.3} s \
             ({cpu:.3} s of CPU on all threads): {:.0} MB/s, {:.0} MB per CPU-second",
            idx.entries.len(),
            idx.kept.len(),
            idx.packages.len(),
            idx.secrets.len(),
            mb / secs,
            mb / cpu
        );
        rates.push(mb / secs);
        per_cpu.push(mb / cpu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "median {:.0} MB/s wall, {:.0} MB per CPU-second (per core)",
        median(&mut rates),
        median(&mut per_cpu)
    );
}

/// User and system CPU time of the whole process (every thread), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}
