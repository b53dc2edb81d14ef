//! The 3-node cluster harness: JetStream is ready when `start` returns, and an R3 stream
//! keeps serving (writes and reads) with one node killed, and after it is back.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use vigil_testkit::{http_get, NatsCluster, NatsOpts};

/// Retry a JetStream call for a while: right after a node dies the stream may be
/// between leaders for a few seconds.
async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_survives_a_killed_node() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.urls().split(',').count(), 3);
    for i in 0..3 {
        let (code, body) = http_get(cluster.monitor_port(i), "/healthz").unwrap();
        assert_eq!(code, 200, "n{i} healthz: {body}");
        assert!(cluster.meta_leader(i).is_some());
    }

    let client = async_nats::connect(cluster.url_list().as_slice())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let s = js
        .create_stream(stream::Config {
            name: "R3TEST".into(),
            subjects: vec!["r3.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let info = s.get_info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let cl = info.cluster.expect("cluster info of an R3 stream");
    assert_eq!(cl.replicas.len(), 2, "a leader and two replicas");

    for i in 0..10u32 {
        js.publish(format!("r3.before.{i}"), i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // Kill node 0 (whichever role it had); the other two keep a quorum.
    cluster.kill(0);
    assert!(!cluster.is_running(0));
    for i in 0..10u32 {
        let js = js.clone();
        retry("publish with n0 down", || {
            let js = js.clone();
            async move {
                js.publish(format!("r3.after.{i}"), i.to_string().into())
                    .await?
                    .await
                    .map_err(async_nats::Error::from)
            }
        })
        .await;
    }
    for phase in ["before", "after"] {
        for i in 0..10u32 {
            let subject = format!("r3.{phase}.{i}");
            let js = js.clone();
            let m = retry("read back with n0 down", || {
                let (js, subject) = (js.clone(), subject.clone());
                async move {
                    let s = js.get_stream("R3TEST").await?;
                    s.get_last_raw_message_by_subject(&subject)
                        .await
                        .map_err(async_nats::Error::from)
                }
            })
            .await;
            assert_eq!(m.payload, i.to_string().as_bytes());
        }
    }

    // Node 0 comes back on the same ports and store and catches up.
    cluster.start_node(0);
    assert!(cluster.is_running(0));
    let direct = async_nats::connect(cluster.url(0)).await.unwrap();
    let js0 = jetstream::new(direct);
    let info = retry("stream info through n0", || {
        let js0 = js0.clone();
        async move {
            let mut s = js0.get_stream("R3TEST").await?;
            let info = s.info().await?.clone();
            if info.state.messages == 20 {
                Ok(info)
            } else {
                Err(async_nats::Error::from(format!(
                    "{} messages so far",
                    info.state.messages
                )))
            }
        }
    })
    .await;
    assert_eq!(info.state.messages, 20);
}

#[tokio::test]
async fn a_single_server_takes_a_smaller_max_payload() {
    let nats = vigil_testkit::Nats::start_with(NatsOpts {
        max_payload: Some(64 * 1024),
        ..Default::default()
    });
    let client = async_nats::connect(nats.url()).await.unwrap();
    assert_eq!(client.server_info().max_payload, 64 * 1024);
    let default = vigil_testkit::Nats::start();
    let client = async_nats::connect(default.url()).await.unwrap();
    assert_eq!(client.server_info().max_payload, 1024 * 1024);
}

/// The deployment files of `infra/nats/cluster/` are valid nats-server configurations,
/// and each routes to the two other nodes under its own server name.
#[test]
fn the_cluster_configuration_files_are_valid() {
    let bin = std::env::var("VIGIL_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let dir = vigil_testkit::testbed::workspace_root().join("infra/nats/cluster");
    for i in 0..3 {
        let file = dir.join(format!("n{i}.conf"));
        let out = std::process::Command::new(&bin)
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("run {bin}: {e}"));
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(&format!("server_name: n{i}\n")));
        assert!(text.contains(&format!("store_dir: /data/nats/n{i}\n")));
        for j in (0..3).filter(|j| *j != i) {
            assert!(
                text.contains(&format!("nats://n{j}:6222")),
                "n{i} routes to n{j}"
            );
        }
        assert!(
            !text.contains(&format!("nats://n{i}:6222")),
            "n{i} has no route to itself"
        );
    }
}
