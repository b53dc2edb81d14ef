//! The JetStream backend on real nats-servers (`vigil_testkit`): the conformance suite on
//! one server, on one server with a small `max_payload`, and on a 3-node cluster with 3
//! replicas; then what only this backend has: chunked values that leave nothing behind,
//! put-if-absent races between processes, the subject count of a large paged
//! partition, reads through a follower, replica updates and a lost stream leader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use vigil_store::backend::Write;
use vigil_store::{conformance, Backend, JetStreamBackend, Store, Table};
use vigil_testkit::{Nats, NatsCluster, NatsOpts};

fn prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn connect(urls: &[String]) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(urls)
        .await
        .unwrap_or_else(|e| panic!("connect to {urls:?}: {e}"));
    jetstream::new(client)
}

async fn open(urls: &[String], prefix: &str, replicas: usize) -> JetStreamBackend {
    JetStreamBackend::open(connect(urls).await, prefix, replicas)
        .await
        .unwrap_or_else(|e| panic!("open the store on {urls:?}: {e}"))
}

fn timed(what: &str, start: Instant) {
    println!("{what}: {:.1} s", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_conforms() {
    let nats = Nats::start();
    let urls = vec![nats.url()];
    let backend = open(&urls, &prefix(), 1).await;
    assert!(
        backend.atomic_batches(),
        "nats-server 2.12+ has atomic batches"
    );
    assert_eq!(backend.chunk_threshold(), 256 * 1024);
    let store = Store::new(Arc::new(backend));
    let start = Instant::now();
    conformance::run_all(&store).await;
    // A second run on the same streams (fresh key prefixes) passes too.
    conformance::run_all(&store).await;
    timed("two conformance runs on one server", start);
}

/// With a 64 KiB `max_payload`, values over 16 KiB are chunked: the suite's large values,
/// and its large pages, all go through chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_max_payload_conforms() {
    let nats = Nats::start_with(NatsOpts {
        max_payload: Some(64 * 1024),
        ..Default::default()
    });
    let backend = open(&[nats.url()], &prefix(), 1).await;
    assert_eq!(backend.chunk_threshold(), 16 * 1024);
    let start = Instant::now();
    conformance::run_all(&Store::new(Arc::new(backend))).await;
    timed("a conformance run with max_payload 64 KiB", start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_conforms() {
    let cluster = NatsCluster::start(3);
    let backend = open(&cluster.url_list(), &prefix(), 3).await;
    let store = Store::new(Arc::new(backend));
    let start = Instant::now();
    conformance::run_all(&store).await;
    conformance::run_all(&store).await;
    timed("two conformance runs on a 3-node R3 cluster", start);
}

/// Values of 30 MB round-trip, and once replaced by a small value or deleted, the chunk
/// stream is empty again; so is it after a large page shrinks back under the threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_megabyte_values_leave_no_chunks_behind() {
    let nats = Nats::start();
    let b = open(&[nats.url()], &prefix(), 1).await;
    let big = |seed: u8| -> Vec<u8> {
        (0..30_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    };
    let t = Table::LayerIndex;
    assert_eq!(b.chunk_usage().await.unwrap(), (0, 0));

    let start = Instant::now();
    let v = big(1);
    b.put(t, "sha256:big", "", v.clone()).await.unwrap();
    assert_eq!(b.get(t, "sha256:big", "").await.unwrap().as_ref(), Some(&v));
    let (msgs, subjects) = b.chunk_usage().await.unwrap();
    assert_eq!(msgs as usize, v.len().div_ceil(b.chunk_threshold()));
    assert_eq!(subjects, 1, "a chunked value is one subject");
    timed("30 MB put and get", start);

    // Replaced by another 30 MB value: only the new chunks are left.
    let w = big(2);
    b.put(t, "sha256:big", "", w.clone()).await.unwrap();
    assert_eq!(b.get(t, "sha256:big", "").await.unwrap().as_ref(), Some(&w));
    assert_eq!(b.chunk_usage().await.unwrap(), (msgs, 1));

    // Replaced by a small value: no chunk left.
    b.put(t, "sha256:big", "", b"small".to_vec()).await.unwrap();
    assert_eq!(
        b.get(t, "sha256:big", "").await.unwrap(),
        Some(b"small".to_vec())
    );
    assert_eq!(b.chunk_usage().await.unwrap(), (0, 0));

    // Large again, then deleted: no chunk, and no subject left for the row either.
    let (_, slots_before) = b.slot_usage().await.unwrap();
    b.put(t, "sha256:big", "", v.clone()).await.unwrap();
    assert!(b.chunk_usage().await.unwrap().0 > 0);
    b.delete(t, "sha256:big", "").await.unwrap();
    assert_eq!(b.get(t, "sha256:big", "").await.unwrap(), None);
    assert_eq!(b.chunk_usage().await.unwrap(), (0, 0));
    assert_eq!(b.slot_usage().await.unwrap().1, slots_before - 1);

    // put_if_absent of a large value that loses leaves nothing either.
    assert!(b
        .put_if_absent(t, "sha256:once", "", v.clone())
        .await
        .unwrap());
    let used = b.chunk_usage().await.unwrap();
    assert!(!b
        .put_if_absent(t, "sha256:once", "", w.clone())
        .await
        .unwrap());
    assert_eq!(b.chunk_usage().await.unwrap(), used);
    assert_eq!(
        b.get(t, "sha256:once", "").await.unwrap().as_ref(),
        Some(&v)
    );
    b.delete(t, "sha256:once", "").await.unwrap();

    // A page that grows over the threshold spills to chunks and comes back.
    let p = "debian:12|libc6";
    let rows: Vec<Write> = (0..20_000)
        .map(|i| Write::Put {
            table: Table::ImageKeys,
            partition: p.into(),
            sort: format!("ns|package-{i:06}"),
            value: vec![7; 16],
        })
        .collect();
    b.write_batch(rows).await.unwrap();
    assert!(
        b.chunk_usage().await.unwrap().0 > 0,
        "a 700 KB page is chunked"
    );
    assert_eq!(b.list(Table::ImageKeys, p).await.unwrap().len(), 20_000);
    let deletes: Vec<Write> = (1..20_000)
        .map(|i| Write::Delete {
            table: Table::ImageKeys,
            partition: p.into(),
            sort: format!("ns|package-{i:06}"),
        })
        .collect();
    b.write_batch(deletes).await.unwrap();
    assert_eq!(b.chunk_usage().await.unwrap(), (0, 0));
    assert_eq!(
        b.list(Table::ImageKeys, p).await.unwrap(),
        vec![("ns|package-000000".to_string(), vec![7; 16])]
    );
    timed("30 MB values and a large page", start);
}

/// Two backends on two connections (two processes, as far as the server can tell)
/// race `put_if_absent` on the same keys: exactly one wins each, and its value is stored.
async fn put_if_absent_race(urls: &[String], replicas: usize) {
    let p = prefix();
    let a = Arc::new(open(urls, &p, replicas).await);
    let b = Arc::new(open(urls, &p, replicas).await);
    const KEYS: usize = 100;
    let race = |who: u8, backend: Arc<JetStreamBackend>| {
        tokio::spawn(async move {
            let mut won = Vec::new();
            for i in 0..KEYS {
                // A row table and a paged one (where the keys share 4 pages).
                let row = backend
                    .put_if_absent(Table::ScanResult, &format!("req-{i}"), "", vec![who])
                    .await
                    .unwrap();
                let paged = backend
                    .put_if_absent(Table::Notification, "sub", &format!("n-{i:03}"), vec![who])
                    .await
                    .unwrap();
                won.push((row, paged));
            }
            won
        })
    };
    let (wa, wb) = tokio::join!(race(1, a.clone()), race(2, b.clone()));
    let (wa, wb) = (wa.unwrap(), wb.unwrap());
    let mut wins = [0usize; 2];
    for i in 0..KEYS {
        assert!(
            wa[i].0 ^ wb[i].0,
            "row key {i}: exactly one winner ({:?} {:?})",
            wa[i],
            wb[i]
        );
        assert!(wa[i].1 ^ wb[i].1, "paged key {i}: exactly one winner");
        let row_winner = if wa[i].0 { 1 } else { 2 };
        let paged_winner = if wa[i].1 { 1 } else { 2 };
        wins[0] += usize::from(wa[i].0) + usize::from(wa[i].1);
        wins[1] += usize::from(wb[i].0) + usize::from(wb[i].1);
        // Each side reads what the winner wrote.
        for backend in [&a, &b] {
            assert_eq!(
                backend
                    .get(Table::ScanResult, &format!("req-{i}"), "")
                    .await
                    .unwrap(),
                Some(vec![row_winner])
            );
            assert_eq!(
                backend
                    .get(Table::Notification, "sub", &format!("n-{i:03}"))
                    .await
                    .unwrap(),
                Some(vec![paged_winner])
            );
        }
    }
    println!("put_if_absent race: wins {wins:?}");
    assert_eq!(
        a.list(Table::Notification, "sub").await.unwrap().len(),
        KEYS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_if_absent_has_one_winner_across_connections() {
    let nats = Nats::start();
    let start = Instant::now();
    put_if_absent_race(&[nats.url()], 1).await;
    timed("put_if_absent race on one server", start);
}

/// 20,000 rows of one reverse-index partition take its few pages' subjects (one: the
/// typed store shards the index into 16 partitions already), not 20,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_paged_partition_takes_few_subjects() {
    let nats = Nats::start();
    let b = open(&[nats.url()], &prefix(), 1).await;
    let (_, before) = b.slot_usage().await.unwrap();
    let start = Instant::now();
    for part in 0..20 {
        let writes = (0..1_000)
            .map(|i| Write::Put {
                table: Table::PackageImages,
                partition: "debian:12|libc6".into(),
                sort: format!("sha256:{:064x}", part * 1_000 + i),
                value: Vec::new(),
            })
            .collect();
        b.write_batch(writes).await.unwrap();
    }
    timed("20,000 rows written in 20 batches", start);
    let (_, after) = b.slot_usage().await.unwrap();
    let pages = vigil_store::jetstream_backend::pages(Table::PackageImages).unwrap() as u64;
    assert_eq!(after - before, pages, "{pages} pages hold the 20,000 rows");
    let start = Instant::now();
    let rows = b
        .list(Table::PackageImages, "debian:12|libc6")
        .await
        .unwrap();
    timed("20,000 rows listed", start);
    assert_eq!(rows.len(), 20_000);
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "listed in order");
    assert_eq!(rows[0].0, format!("sha256:{:064x}", 0));
}

/// The stream leader of the rows stream, from the stream's cluster info.
async fn rows_leader(js: &jetstream::Context, b: &JetStreamBackend) -> String {
    let mut s = js.get_stream(b.stream_names().0).await.unwrap();
    let info = s.info().await.unwrap();
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a stream leader")
}

/// On a 3-node R3 cluster: a write acknowledged through one follower is read at once
/// through the other follower (reads go to the stream leader, never to a replica's
/// possibly older copy); then the race of two processes; then the leader's node is
/// killed and the store keeps working through the two others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reads_after_writes_through_followers_and_survives_the_leader() {
    let mut cluster = NatsCluster::start(3);
    let p = prefix();
    let all = cluster.url_list();
    let admin = connect(&all).await;
    let first = open(&all, &p, 3).await;
    let leader = rows_leader(&admin, &first).await;
    let followers: Vec<usize> = (0..3)
        .filter(|i| cluster.server_name(*i) != leader)
        .collect();
    assert_eq!(followers.len(), 2, "leader {leader}");
    let writer = open(&[cluster.url(followers[0])], &p, 3).await;
    let reader = open(&[cluster.url(followers[1])], &p, 3).await;

    let start = Instant::now();
    for i in 0..200u32 {
        let v = i.to_be_bytes().to_vec();
        writer
            .put(Table::Analysis, "sha256:raw", "", v.clone())
            .await
            .unwrap();
        assert_eq!(
            reader.get(Table::Analysis, "sha256:raw", "").await.unwrap(),
            Some(v.clone()),
            "write {i} is read through the other follower"
        );
        writer
            .put(
                Table::Evaluation,
                "sha256:raw",
                &format!("tag|{i:020}"),
                v.clone(),
            )
            .await
            .unwrap();
        let history = reader.list(Table::Evaluation, "sha256:raw").await.unwrap();
        assert_eq!(
            history.len(),
            i as usize + 1,
            "evaluation {i} is listed at once"
        );
        assert_eq!(history.last().unwrap().1, v);
        if i.is_multiple_of(20) {
            writer
                .delete(Table::Analysis, "sha256:raw", "")
                .await
                .unwrap();
            assert_eq!(
                reader.get(Table::Analysis, "sha256:raw", "").await.unwrap(),
                None
            );
        }
    }
    // A large value too.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    writer
        .put(Table::LayerIndex, "sha256:l", "", big.clone())
        .await
        .unwrap();
    assert_eq!(
        reader.get(Table::LayerIndex, "sha256:l", "").await.unwrap(),
        Some(big.clone())
    );
    timed("200 read-after-write rounds through followers", start);

    let start = Instant::now();
    put_if_absent_race(&all, 3).await;
    timed("put_if_absent race on the cluster", start);

    // Kill the rows stream's leader: the others elect a new one, and the store (retrying
    // while there is none) keeps working through the surviving nodes.
    let leader_node = (0..3).find(|i| cluster.server_name(*i) == leader).unwrap();
    drop(first);
    cluster.kill(leader_node);
    let start = Instant::now();
    writer
        .put(Table::Meta, "m", "after-failover", b"yes".to_vec())
        .await
        .unwrap();
    assert_eq!(
        reader
            .get(Table::Meta, "m", "after-failover")
            .await
            .unwrap(),
        Some(b"yes".to_vec())
    );
    assert_eq!(
        reader.get(Table::LayerIndex, "sha256:l", "").await.unwrap(),
        Some(big)
    );
    assert_eq!(
        reader
            .list(Table::Evaluation, "sha256:raw")
            .await
            .unwrap()
            .len(),
        200
    );
    timed("first write and reads after the leader was killed", start);
    let store = Store::new(Arc::new(reader));
    let d = "sha256:after-failover";
    let a = conformance::sample_analysis(d);
    store.put_analysis(&a).await.unwrap();
    assert_eq!(store.get_analysis(d).await.unwrap(), Some(a));
    cluster.start_node(leader_node);
}

/// Opening with another replica count updates the existing streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_updates_the_replica_count() {
    let cluster = NatsCluster::start(3);
    let all = cluster.url_list();
    let js = connect(&all).await;
    let p = prefix();
    let replicas = |b: &JetStreamBackend| {
        let (rows, chunks) = b.stream_names();
        let (rows, chunks) = (rows.to_string(), chunks.to_string());
        let js = js.clone();
        async move {
            let mut r = Vec::new();
            for name in [rows, chunks] {
                let mut s = js.get_stream(&name).await.unwrap();
                r.push(s.info().await.unwrap().config.num_replicas);
            }
            r
        }
    };
    let one = open(&all, &p, 1).await;
    one.put(Table::Meta, "m", "k", b"v".to_vec()).await.unwrap();
    assert_eq!(replicas(&one).await, vec![1, 1]);
    let three = open(&all, &p, 3).await;
    assert_eq!(replicas(&three).await, vec![3, 3]);
    // The data is still there, through either handle.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match three.get(Table::Meta, "m", "k").await {
            Ok(v) => {
                assert_eq!(v, Some(b"v".to_vec()));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                println!("read while the stream scales up: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Opening again with the same count changes nothing.
    let again = open(&all, &p, 3).await;
    assert_eq!(replicas(&again).await, vec![3, 3]);
}

#[tokio::test]
async fn open_rejects_bad_arguments() {
    let nats = Nats::start();
    let js = connect(&[nats.url()]).await;
    for (prefix, replicas) in [("", 1), ("a b", 1), ("a.>", 1), ("ok", 0)] {
        match JetStreamBackend::open(js.clone(), prefix, replicas).await {
            Err(vigil_store::StoreError::Backend(m)) => println!("{prefix:?}/{replicas}: {m}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("open({prefix:?}, {replicas}) must fail"),
        }
    }
}

/// A key whose subject would be too long for the protocol is refused, not sent.
#[tokio::test]
async fn a_key_too_long_for_a_subject_is_refused() {
    let nats = Nats::start();
    let b = open(&[nats.url()], &prefix(), 1).await;
    let long = "é".repeat(400);
    let e = b
        .put(Table::Meta, "m", &long, b"v".to_vec())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("subject would be"), "{e}");
    // The connection is still fine.
    b.put(Table::Meta, "m", "short", b"v".to_vec())
        .await
        .unwrap();
    assert_eq!(
        b.get(Table::Meta, "m", "short").await.unwrap(),
        Some(b"v".to_vec())
    );
}

/// What the backend's batches rely on, checked on this nats-server: an atomic batch whose
/// one `Nats-Expected-Last-Subject-Sequence` check fails stores none of its messages, and
/// one that passes stores all of them at consecutive sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_applies_an_atomic_batch_whole_or_not_at_all() {
    use async_nats::header::{self, HeaderMap};
    let nats = Nats::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut s = js
        .create_stream(jetstream::stream::Config {
            name: "ATOMIC".into(),
            subjects: vec!["atomic.>".into()],
            max_messages_per_subject: 1,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(s.cached_info().config.allow_atomic_publish);
    let batch = |msgs: Vec<(&'static str, u64)>| {
        let client = client.clone();
        async move {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let n = msgs.len();
            let mut reply = String::new();
            for (i, (subject, expected)) in msgs.into_iter().enumerate() {
                let mut h = HeaderMap::new();
                h.insert(header::NATS_BATCH_ID, id.as_str());
                h.insert(header::NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
                h.insert(
                    header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    expected.to_string().as_str(),
                );
                if i + 1 == n {
                    h.insert(header::NATS_BATCH_COMMIT, "1");
                }
                let r = client
                    .request_with_headers(subject, h, "x".into())
                    .await
                    .unwrap();
                reply = String::from_utf8_lossy(&r.payload).into_owned();
            }
            reply
        }
    };
    let ok = batch(vec![("atomic.a", 0), ("atomic.b", 0), ("atomic.c", 0)]).await;
    assert!(
        ok.contains("\"seq\":3") && ok.contains("\"count\":3"),
        "{ok}"
    );
    // atomic.b is at sequence 2, not 0: the whole batch is refused.
    let refused = batch(vec![("atomic.d", 0), ("atomic.b", 0), ("atomic.e", 0)]).await;
    assert!(refused.contains("10071"), "{refused}");
    assert_eq!(s.info().await.unwrap().state.messages, 3);
    let ok = batch(vec![("atomic.a", 1), ("atomic.b", 2), ("atomic.d", 0)]).await;
    assert!(
        ok.contains("\"seq\":6") && ok.contains("\"count\":3"),
        "{ok}"
    );
    let last = s.get_last_raw_message_by_subject("atomic.a").await.unwrap();
    assert_eq!(
        last.sequence, 4,
        "a batch's messages have consecutive sequences"
    );
}
