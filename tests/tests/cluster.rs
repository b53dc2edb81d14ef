//! The distributed deployment on real processes: a 3-node nats-server cluster (R3
//! streams, buckets and object stores), a real registry, every stage in its own
//! `vigil run` process (two replicas of extract and match) on the JetStream store.
//!
//! * Under a load of mixed images, stage processes are killed (SIGKILL) and restarted
//!   again and again, the work stream's leader node is killed and restarted, and a
//!   node's host is cut off for 30 s (as root every node has its own network namespace
//!   and the cut-off takes its link down; without root the node is frozen with SIGSTOP
//!   instead: its sockets stay open and it answers nothing); every request still ends in
//!   exactly one result, none failed, and the work stream drains.
//! * Two extract replicas that get the same shared layer at the same moment extract it
//!   once.
//!
//! `VIGIL_CHAOS_REQUESTS` sets the number of requests (default 200).

use std::time::{Duration, Instant};

use vigil_e2e::cluster::{chaos_run, wait_for_all, Deployment, Layout};

/// One deployment at a time: two of them (six nats-servers, eighteen stage processes)
/// on a 2-core machine would time each other out.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn requests_survive_killed_stages_and_nats_nodes() {
    let _one = serial();
    let n: usize = std::env::var("VIGIL_CHAOS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let layout = Layout::default();
    let images = layout.images.clone();
    let mut d = Deployment::start(layout);
    d.wait_consuming(Duration::from_secs(120));
    let ids: Vec<String> = (0..n).map(|i| format!("chaos-{i:04}")).collect();
    let t = chaos_run(&mut d, &ids, &images, Duration::from_secs(600));
    eprintln!("chaos: {t}");
    assert!(
        t.lost == 0 && t.duplicated == 0 && t.failed == 0 && t.work_left == 0,
        "{t}\n{}",
        d.logs()
    );
    assert!(t.restarts >= 10, "{t}");
}

#[test]
fn a_layer_two_extract_replicas_get_at_once_is_extracted_once() {
    let _one = serial();
    // Five images on one base layer; two extract replicas; all submitted at once.
    let images = vec![
        "debian-base",
        "layered-whiteout",
        "misconfig-secrets",
        "node-app",
        "java-app",
    ];
    let mut d = Deployment::start(Layout {
        images: images.clone(),
        ..Default::default()
    });
    let t0 = Instant::now();
    d.wait_consuming(Duration::from_secs(120));
    eprintln!("consuming after {:?}", t0.elapsed());
    let ids: Vec<String> = (0..10).map(|i| format!("shared-{i}")).collect();
    d.submit(&ids, &images);
    let t0 = Instant::now();
    let t = wait_for_all(&d, &ids, Duration::from_secs(300));
    eprintln!("shared layers: {t} after {:?}", t0.elapsed());
    assert!(t.lost == 0 && t.failed == 0, "{t}\n{}", d.logs());
    let extractions = d.extractions();
    let base =
        vigil_testkit::testbed::layers(&vigil_testkit::testbed::oci_layout("debian-base"), None);
    assert_eq!(
        extractions.get(&base[0]).copied(),
        Some(1),
        "the shared base layer: {extractions:?}\n{}",
        d.logs()
    );
    for (layer, n) in &extractions {
        assert_eq!(*n, 1, "layer {layer} extracted {n} times: {extractions:?}");
    }
    // Both replicas were there to race.
    assert_eq!(
        d.processes.iter().filter(|p| p.stage == "extract").count(),
        2
    );
}
