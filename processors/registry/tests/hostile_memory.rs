//! A hostile tag list of 1,000,000 entries: refused, with bounded memory. Alone in its
//! test binary so that the peak RSS measured is this test's.

mod common;

use common::{client, fast, within};
use vigil_registry::{ClientConfig, RegistryError};
use vigil_testkit::proxy::{Canned, Faults, Proxy};
use vigil_testkit::{Registry, RegistryOpts};

/// VmHWM (peak resident set) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_tags_are_refused_in_bounded_memory() {
    let reg = Registry::start(RegistryOpts::default());
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            canned: vec![(
                "/v2/hostile/tags/list".into(),
                Canned::huge_tags("hostile", 1_000_000),
            )],
            ..Default::default()
        },
    );
    let host = proxy.host();
    // Warm up (client, runtime, proxy) before measuring.
    let c = client(fast());
    let _ = within(30, c.catalog_page(&host, None)).await;
    let before = peak_rss_kib();

    // Defaults: 16 MiB and 100 000 tags.
    let r = within(120, c.list_tags(&host, "hostile")).await;
    assert!(
        matches!(
            r,
            Err(RegistryError::TooLarge { .. }) | Err(RegistryError::TooMany { .. })
        ),
        "{r:?}"
    );
    // A larger byte bound: the count bound stops it.
    let roomy = client(ClientConfig {
        max_body_bytes: 64 << 20,
        max_tags: 10_000,
        ..fast()
    });
    let r = within(120, roomy.list_tags(&host, "hostile")).await;
    assert!(
        matches!(r, Err(RegistryError::TooMany { limit: 10_000, .. })),
        "{r:?}"
    );
    // A small byte bound stops reading early.
    let tight = client(ClientConfig {
        max_body_bytes: 1 << 20,
        ..fast()
    });
    let r = within(120, tight.list_tags(&host, "hostile")).await;
    assert!(matches!(r, Err(RegistryError::TooLarge { .. })), "{r:?}");

    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB");
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
}
