//! Full sync of every fixture feed (alpine v3.18–3.20, Debian tracker, all OSV
//! ecosystems, NVD) into a fresh embedded store; prints the wall time.
//!
//! `cargo run --release -p vigil-feeds --example sync_bench [FEEDS_DIR]`

use std::time::Instant;

use vigil_feeds::{sync, FeedKind, FeedSource, FeedsConfig};

#[tokio::main]
async fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(vigil_testkit::testbed::feeds_dir);
    let p = |s: &str| dir.join(s).display().to_string();
    let mut feeds = Vec::new();
    for v in ["v3.18", "v3.19", "v3.20"] {
        feeds.push(FeedSource::new(
            FeedKind::Alpine,
            format!("alpine-{v}"),
            p(&format!("alpine/{v}/main.json")),
        ));
    }
    feeds.push(FeedSource::new(
        FeedKind::Debian,
        "debian",
        p("debian/tracker.json"),
    ));
    feeds.push(FeedSource::new(FeedKind::Osv, "osv", p("osv")));
    feeds.push(FeedSource::new(FeedKind::Nvd, "nvd", p("nvd")));
    let config = FeedsConfig { feeds };
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = vigil_store::Store::open_embedded(&tmp.path().join("bench.redb")).expect("store");
    let quiet = |_: &str| {};

    let t = Instant::now();
    let deltas = sync(&config, &store, &quiet).await.expect("sync");
    let full = t.elapsed();
    let keys: usize = deltas.iter().map(|d| d.changed.len()).sum();
    let records: u64 = store
        .list_feed_states()
        .await
        .expect("states")
        .iter()
        .map(|s| s.record_count)
        .sum();

    let t = Instant::now();
    let again = sync(&config, &store, &quiet).await.expect("sync");
    let unchanged = t.elapsed();

    let mut buf = Vec::new();
    let t = Instant::now();
    let ex = vigil_feeds::export(&store, &mut buf).await.expect("export");
    let export_time = t.elapsed();
    let store2 = vigil_store::Store::open_embedded(&tmp.path().join("bench2.redb")).expect("store");
    let t = Instant::now();
    vigil_feeds::import(&store2, buf.as_slice())
        .await
        .expect("import");
    let import_time = t.elapsed();

    println!(
        "full sync of {} feeds: {:.1} ms ({keys} keys changed, {records} records)",
        config.feeds.len(),
        full.as_secs_f64() * 1000.0
    );
    println!(
        "unchanged re-sync: {:.1} ms ({} deltas)",
        unchanged.as_secs_f64() * 1000.0,
        again.len()
    );
    println!(
        "export: {:.1} ms ({} bytes, {} advisories); import into fresh store: {:.1} ms",
        export_time.as_secs_f64() * 1000.0,
        buf.len(),
        ex.advisories,
        import_time.as_secs_f64() * 1000.0
    );
}
