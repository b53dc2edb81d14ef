//! The isolated cluster harness: three nats-server nodes, each in its own network
//! namespace behind a bridge. A node cut off the network (`ip link set … down`) keeps
//! running but answers nothing from the host, and the two others keep a JetStream meta
//! leader and take writes to an R3 stream; once it is reconnected it answers again and
//! the cluster is whole (routes between every two nodes, every meta peer current).
//!
//! Needs root (network namespaces): prints `SKIPPED: …` and passes otherwise.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use vigil_testkit::{http_get_timeout, isolation_available, NatsCluster};

/// Poll `f` every 250 ms until it gives `Some`, for at most `timeout` (and at most
/// `timeout / 250 ms + 1` tries).
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let tries = timeout.as_millis() / 250 + 1;
    for _ in 0..tries {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// The meta leader every node in `nodes` agrees on.
fn agreed_leader(c: &NatsCluster, nodes: &[usize]) -> Option<String> {
    let leaders: Vec<Option<String>> = nodes.iter().map(|i| c.meta_leader(*i)).collect();
    let first = leaders[0].clone()?;
    leaders
        .iter()
        .all(|l| l.as_deref() == Some(&first))
        .then_some(first)
}

/// The cluster is whole: every node answers `/healthz`, has routes to every other node,
/// agrees on the meta leader, and the leader reports every other meta peer current.
fn whole(c: &NatsCluster) -> Result<(), String> {
    let all: Vec<usize> = (0..c.len()).collect();
    for &i in &all {
        match c.monitor_get(i, "/healthz") {
            Ok((200, _)) => {}
            other => return Err(format!("n{i} /healthz: {other:?}")),
        }
        let want: Vec<String> = all
            .iter()
            .filter(|j| **j != i)
            .map(|j| c.server_name(*j))
            .collect();
        let routes = c.routes_to(i);
        if routes.as_ref() != Some(&want) {
            return Err(format!("n{i} routes to {routes:?}, not {want:?}"));
        }
    }
    let leader = agreed_leader(c, &all).ok_or("no agreed meta leader")?;
    let l = (0..c.len())
        .find(|i| c.server_name(*i) == leader)
        .ok_or_else(|| format!("unknown meta leader {leader}"))?;
    let (_, jsz) = c.monitor_get(l, "/jsz").map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&jsz).map_err(|e| e.to_string())?;
    let replicas = v["meta_cluster"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let current = replicas
        .iter()
        .filter(|r| r["current"] == true && r["offline"] != true)
        .count();
    if current != c.len() - 1 {
        return Err(format!("meta leader {leader} replicas: {replicas:?}"));
    }
    Ok(())
}

#[test]
fn a_cut_off_node_is_unreachable_and_rejoins() {
    if !isolation_available() {
        println!("SKIPPED: network namespaces need root (ip netns add failed or not root)");
        return;
    }
    let mut c = NatsCluster::start_isolated(3);
    assert!(c.is_isolated());
    let (bridge, bridge_ip) = c.bridge().expect("a bridge");
    println!("bridge {bridge} {bridge_ip}; nodes {}", c.urls());
    let hosts: Vec<String> = (0..3).map(|i| c.host(i).to_string()).collect();
    for (i, h) in hosts.iter().enumerate() {
        assert!(h.starts_with("10.") && h != "10.0.0.1", "n{i} on {h}");
        assert_eq!(c.url(i), format!("nats://{h}:4222"));
        assert_eq!(c.monitor_host(i), h);
        assert!(c.namespace(i).unwrap().starts_with("vigil-"));
        assert!(c.host_link(i).unwrap().len() <= 15);
    }
    assert!(!c.urls().contains("127.0.0.1"));
    let leader = poll(Duration::from_secs(30), || agreed_leader(&c, &[0, 1, 2]))
        .expect("the three nodes agree on a meta leader");
    // Cut off the meta leader: the other two have to elect a new one.
    let cut = (0..3).find(|i| c.server_name(*i) == leader).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    println!("meta leader {leader}; cutting n{cut} off");

    let rt = tokio::runtime::Runtime::new().unwrap();
    // jetstream::new spawns its acker task on the current runtime.
    let _rt = rt.enter();
    let client = rt
        .block_on(async_nats::connect(
            others.iter().map(|i| c.url(*i)).collect::<Vec<_>>(),
        ))
        .expect("connect to the two nodes that stay");
    let js = jetstream::new(client);
    rt.block_on(js.create_stream(stream::Config {
        name: "CUT".into(),
        subjects: vec!["cut.>".into()],
        num_replicas: 3,
        ..Default::default()
    }))
    .expect("an R3 stream");

    c.cut_off(cut);
    assert!(c.is_cut_off(cut) && c.is_running(cut));
    let t0 = Instant::now();
    let answer = http_get_timeout(
        c.monitor_host(cut),
        c.monitor_port(cut),
        "/healthz",
        Duration::from_secs(2),
    );
    assert!(answer.is_err(), "n{cut} answers while cut off: {answer:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        std::fs::metadata(format!("/proc/{}", pid_in(&c, cut))).is_ok(),
        "n{cut}'s process runs on while cut off"
    );
    let t0 = Instant::now();
    let new_leader = poll(Duration::from_secs(60), || {
        agreed_leader(&c, &others).filter(|l| *l != leader)
    })
    .unwrap_or_else(|| {
        panic!(
            "n{} and n{} have no new meta leader without n{cut}",
            others[0], others[1]
        )
    });
    println!(
        "n{} and n{} elected {new_leader} after {:.1} s",
        others[0],
        others[1],
        t0.elapsed().as_secs_f64()
    );
    // The two that stay take writes to the R3 stream.
    for i in 0..5u32 {
        let ack = poll(Duration::from_secs(30), || {
            rt.block_on(async {
                let ack = js
                    .publish(format!("cut.{i}"), i.to_string().into())
                    .await
                    .ok()?;
                tokio::time::timeout(Duration::from_secs(5), ack)
                    .await
                    .ok()?
                    .ok()
            })
        });
        assert!(ack.is_some(), "publish {i} with n{cut} cut off");
    }
    // Still cut off.
    assert!(http_get_timeout(
        c.monitor_host(cut),
        c.monitor_port(cut),
        "/healthz",
        Duration::from_secs(2)
    )
    .is_err());

    c.reconnect(cut);
    assert!(!c.is_cut_off(cut));
    let t0 = Instant::now();
    c.wait_ready_within(cut, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("n{cut} does not answer after reconnecting: {e}"));
    println!(
        "n{cut} answers again after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut last = String::new();
    let rejoined = poll(Duration::from_secs(120), || match whole(&c) {
        Ok(()) => Some(()),
        Err(e) => {
            last = e;
            None
        }
    });
    assert!(
        rejoined.is_some(),
        "the cluster is not whole again after reconnecting n{cut}: {last}"
    );
    println!(
        "the cluster is whole again after {:.1} s (routes, meta peers)",
        t0.elapsed().as_secs_f64()
    );
    // The rejoined node serves the stream with every message.
    let direct = rt
        .block_on(async_nats::connect(c.url(cut)))
        .expect("connect to the rejoined node");
    let js_cut = jetstream::new(direct);
    let messages = poll(Duration::from_secs(30), || {
        rt.block_on(async {
            let mut s = js_cut.get_stream("CUT").await.ok()?;
            let n = s.info().await.ok()?.state.messages;
            (n == 5).then_some(n)
        })
    });
    assert_eq!(messages, Some(5), "the stream through n{cut}");
}

/// The pid of node `i`'s process, found in its namespace.
fn pid_in(c: &NatsCluster, i: usize) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", c.namespace(i).unwrap()])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no process in n{i}'s namespace"))
        .to_string()
}
