//! The conformance suite every backend must pass.
//!
//! [`run_backend`] exercises the six raw [`Backend`] methods on every table;
//! [`run_typed`] exercises every method of the typed [`Store`]; [`run_all`] runs both.
//! Failures panic with a message naming the broken behaviour, so the suite is meant to
//! be called from tests:
//!
//! ```no_run
//! # async fn f() {
//! let dir = std::env::temp_dir().join("vigil-conformance.redb");
//! let store = vigil_store::Store::open_embedded(&dir).unwrap();
//! vigil_store::conformance::run_all(&store).await;
//! # }
//! ```
//!
//! Every run uses keys with a fresh random prefix, so one database (a shared ScyllaDB
//! keyspace) can be reused across runs. The few global partitions of the store
//! (feed states, bundles, the active bundle) are checked only for this run's ids.

use std::collections::BTreeMap;

use vigil_contracts::codec;
use vigil_contracts::Advisory;
use vigil_contracts::{
    Action, AffectedRange, Analysis, Compression, Distro, EntryKind, Evaluation, Failure,
    FailureKind, FeedState, FileEntry, Finding, FixState, ImageConfig, ImageDescriptor, ImageRef,
    KeptFile, LayerIndex, LayerRef, MatchDetail, Notification, NotificationKind,
    NotificationPayload, Package, PackageKey, PackageRef, PackageType, PolicyFinding, ScanResult,
    ScanStatus, ScanSummary, Severity, SourceKind, StageName, StoredBundle, VulnDiff, VulnReport,
};

use crate::backend::{Backend, Table, Write};
use crate::typed::{image_shard, package_partition, shard_partition, EVALUATED_INDEX, SHARDS};
use crate::{EventFilter, Store, StoreError};

/// Run the raw backend part and the typed part.
pub async fn run_all(store: &Store) {
    run_backend(store.backend().as_ref()).await;
    run_typed(store).await;
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn ok<T>(what: &str, r: Result<T, StoreError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

// ---- raw backend ---------------------------------------------------------------------

/// Exercise every method of a raw backend, on every table.
pub async fn run_backend(b: &dyn Backend) {
    let x = format!("cf-{}-", run_id());
    backend_every_table(b, &x).await;
    backend_put_get_overwrite(b, &x).await;
    backend_put_if_absent(b, &x).await;
    backend_list_one_partition(b, &x).await;
    backend_list_pages(b, &x).await;
    backend_delete(b, &x).await;
    backend_write_batch(b, &x).await;
    backend_concurrent_writers(b, &x).await;
    backend_large_values(b, &x).await;
    backend_large_batch(b, &x).await;
    backend_large_partition(b, &x).await;
}

/// Values of every size round-trip: megabyte records (layer indexes, analyses), values
/// replaced by larger and smaller ones, rows beside large ones, and arbitrary bytes.
async fn backend_large_values(b: &dyn Backend, x: &str) {
    let t = Table::Analysis;
    let p = format!("{x}large");
    let value = |len: usize, seed: u8| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let sizes = [
        0usize,
        1,
        32 * 1024,
        32 * 1024 + 1,
        64 * 1024,
        64 * 1024 + 7,
        300_000,
        2_500_000,
        40_000,
        10,
        1_000_000,
        // Around ScyllaDB's chunk threshold (1 MiB), and chunked values replaced by
        // chunked ones of another size.
        1_048_576,
        1_048_577,
        5_000_000,
        3_000_000,
        10,
    ];
    for (i, len) in sizes.iter().enumerate() {
        let v = value(*len, i as u8);
        ok("put", b.put(t, &p, "row", v.clone()).await);
        assert_eq!(
            ok("get", b.get(t, &p, "row").await),
            Some(v),
            "a value of {len} bytes, replacing the one before, must round-trip"
        );
    }
    ok("delete", b.delete(t, &p, "row").await);
    assert_eq!(ok("get", b.get(t, &p, "row").await), None);
    ok("put", b.put(t, &p, "row", vec![1, 2, 3]).await);
    assert_eq!(ok("get", b.get(t, &p, "row").await), Some(vec![1, 2, 3]));

    // Bytes that are no record are a value like any other.
    let mut lookalike = vec![0xC1, b'v', b'1'];
    lookalike.extend_from_slice(&5u64.to_le_bytes());
    ok("put", b.put(t, &p, "lookalike", lookalike.clone()).await);
    assert_eq!(ok("get", b.get(t, &p, "lookalike").await), Some(lookalike));
    // Nor are bytes that look like a ScyllaDB chunk pointer, or a JetStream slot.
    let mut pointer_like = crate::scylla_backend::CHUNK_POINTER_MAGIC.to_vec();
    pointer_like.extend_from_slice(&[b'0'; 32]);
    pointer_like.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1]);
    for v in [
        pointer_like,
        b"c\x00\x01".to_vec(),
        b"P".to_vec(),
        b"d".to_vec(),
    ] {
        ok("put", b.put(t, &p, "pointer-like", v.clone()).await);
        assert_eq!(
            ok("get", b.get(t, &p, "pointer-like").await),
            Some(v.clone())
        );
        assert_eq!(
            ok("list", b.list(t, &p).await)
                .into_iter()
                .find(|(k, _)| k == "pointer-like")
                .map(|(_, v)| v),
            Some(v)
        );
    }

    // A partition mixing large and small rows lists each with its own value, in order.
    let q = format!("{x}large-list");
    let rows: Vec<(String, Vec<u8>)> = (0..6u8)
        .map(|i| {
            let len = if i % 2 == 0 { 100_000 + i as usize } else { 5 };
            (format!("k{i}"), value(len, i))
        })
        .collect();
    ok(
        "write_batch",
        b.write_batch(
            rows.iter()
                .map(|(k, v)| Write::Put {
                    table: t,
                    partition: q.clone(),
                    sort: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        )
        .await,
    );
    assert_eq!(ok("list", b.list(t, &q).await), rows);
    // A neighbour's large value is untouched by writes beside it.
    ok("put", b.put(t, &q, "k3", value(200_000, 9)).await);
    ok("delete", b.delete(t, &q, "k2").await);
    let listed = ok("list", b.list(t, &q).await);
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[0], rows[0]);
    assert_eq!(listed[2], ("k3".to_string(), value(200_000, 9)));
    assert_eq!(listed[3], rows[4]);

    // put_if_absent of a large value: stored once, never replaced.
    let big = value(500_000, 1);
    assert!(ok(
        "put_if_absent",
        b.put_if_absent(t, &q, "once", big.clone()).await
    ));
    assert!(!ok(
        "put_if_absent",
        b.put_if_absent(t, &q, "once", value(10, 2)).await
    ));
    assert_eq!(ok("get", b.get(t, &q, "once").await), Some(big));
    let huge = value(2_200_000, 3);
    assert!(ok(
        "put_if_absent",
        b.put_if_absent(t, &q, "once-huge", huge.clone()).await
    ));
    assert!(!ok(
        "put_if_absent",
        b.put_if_absent(t, &q, "once-huge", value(2_000_000, 4))
            .await
    ));
    assert_eq!(ok("get", b.get(t, &q, "once-huge").await), Some(huge));

    // A batch mixing values over a megabyte with small rows and deletes; then the large
    // ones replaced by small ones and deleted, in batches.
    let r = format!("{x}large-batch");
    let big1 = value(1_500_000, 5);
    let big2 = value(4_000_000, 6);
    ok("put", b.put(t, &r, "gone", value(1_200_000, 7)).await);
    let put = |sort: &str, v: &Vec<u8>| Write::Put {
        table: t,
        partition: r.clone(),
        sort: sort.to_string(),
        value: v.clone(),
    };
    ok(
        "write_batch",
        b.write_batch(vec![
            put("a", &big1),
            put("b", &vec![1]),
            put("c", &big2),
            Write::Delete {
                table: t,
                partition: r.clone(),
                sort: "gone".into(),
            },
        ])
        .await,
    );
    assert_eq!(
        ok("list", b.list(t, &r).await),
        vec![
            ("a".to_string(), big1.clone()),
            ("b".to_string(), vec![1]),
            ("c".to_string(), big2.clone()),
        ]
    );
    ok(
        "write_batch",
        b.write_batch(vec![
            put("a", &vec![2]),
            Write::Delete {
                table: t,
                partition: r.clone(),
                sort: "c".into(),
            },
        ])
        .await,
    );
    assert_eq!(
        ok("list", b.list(t, &r).await),
        vec![("a".to_string(), vec![2]), ("b".to_string(), vec![1])]
    );
    assert_eq!(ok("get", b.get(t, &r, "c").await), None);
}

/// Many writers at once (the embedded backend commits them in groups): every write is
/// visible afterwards, and of concurrent `put_if_absent`s on one key exactly one wins.
async fn backend_concurrent_writers(b: &dyn Backend, x: &str) {
    use futures::future::join_all;
    let t = Table::Notification;
    let p = format!("{x}concurrent");
    let keys: Vec<String> = (0..200u32).map(|i| format!("{i:04}")).collect();
    let puts = (0u32..)
        .zip(&keys)
        .map(|(i, k)| b.put(t, &p, k, i.to_be_bytes().to_vec()));
    for r in join_all(puts).await {
        ok("concurrent put", r);
    }
    let rows = ok("list", b.list(t, &p).await);
    assert_eq!(rows.len(), 200, "every concurrent put is visible");
    for (k, v) in &rows {
        let i: u32 = k.parse().unwrap();
        assert_eq!(v, &i.to_be_bytes().to_vec(), "row {k} holds its own value");
    }
    let q = format!("{x}race");
    let races = (0..50u8).map(|i| b.put_if_absent(t, &q, "", vec![i]));
    let won: Vec<bool> = join_all(races)
        .await
        .into_iter()
        .map(|r| ok("put_if_absent race", r))
        .collect();
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "exactly one put_if_absent wins"
    );
    let winner = won.iter().position(|w| *w).unwrap() as u8;
    assert_eq!(ok("get", b.get(t, &q, "").await), Some(vec![winner]));
}

/// Every logical table exists, and tables are independent namespaces.
async fn backend_every_table(b: &dyn Backend, x: &str) {
    let p = format!("{x}tables");
    for (i, t) in Table::ALL.iter().enumerate() {
        ok("put", b.put(*t, &p, "", vec![i as u8, 0xff]).await);
    }
    for (i, t) in Table::ALL.iter().enumerate() {
        assert_eq!(
            ok("get", b.get(*t, &p, "").await),
            Some(vec![i as u8, 0xff]),
            "table {} must hold its own value for the same key",
            t.name()
        );
        ok("delete", b.delete(*t, &p, "").await);
        assert_eq!(
            ok("get", b.get(*t, &p, "").await),
            None,
            "delete in {} must remove the row",
            t.name()
        );
    }
}

async fn backend_put_get_overwrite(b: &dyn Backend, x: &str) {
    let t = Table::Analysis;
    let p = format!("{x}pgo");
    assert_eq!(
        ok("get", b.get(t, &p, "").await),
        None,
        "absent key must read None"
    );
    ok("put", b.put(t, &p, "", vec![1, 2, 3]).await);
    assert_eq!(ok("get", b.get(t, &p, "").await), Some(vec![1, 2, 3]));
    ok("put", b.put(t, &p, "", vec![0, 0xff, 0, 7]).await);
    assert_eq!(
        ok("get", b.get(t, &p, "").await),
        Some(vec![0, 0xff, 0, 7]),
        "put must overwrite"
    );
    // An empty value is a value, not an absence.
    ok("put", b.put(t, &p, "empty", Vec::new()).await);
    assert_eq!(ok("get", b.get(t, &p, "empty").await), Some(Vec::new()));
    // Sort keys are exact: "" and "empty" are different rows, and no other sort matches.
    assert_eq!(ok("get", b.get(t, &p, "").await), Some(vec![0, 0xff, 0, 7]));
    assert_eq!(ok("get", b.get(t, &p, "emp").await), None);
    assert_eq!(ok("get", b.get(t, &format!("{p}x"), "").await), None);
}

async fn backend_put_if_absent(b: &dyn Backend, x: &str) {
    let t = Table::ScanResult;
    let p = format!("{x}pia");
    assert!(
        ok("put_if_absent", b.put_if_absent(t, &p, "", vec![1]).await),
        "first put_if_absent must write"
    );
    assert!(
        !ok("put_if_absent", b.put_if_absent(t, &p, "", vec![2]).await),
        "second put_if_absent must not write"
    );
    assert_eq!(
        ok("get", b.get(t, &p, "").await),
        Some(vec![1]),
        "put_if_absent must keep the first value"
    );
    // Another sort key of the same partition is a different row.
    assert!(ok(
        "put_if_absent",
        b.put_if_absent(t, &p, "other", vec![3]).await
    ));
    assert_eq!(ok("get", b.get(t, &p, "other").await), Some(vec![3]));
}

async fn backend_list_one_partition(b: &dyn Backend, x: &str) {
    let t = Table::Notification;
    let a = format!("{x}a");
    let neighbours = [
        format!("{x}a|b"),
        format!("{x}ab"),
        x.to_string(),
        format!("{x}a "),
    ];
    for n in &neighbours {
        ok("put", b.put(t, n, "", b"neighbour".to_vec()).await);
        ok("put", b.put(t, n, "m", b"neighbour".to_vec()).await);
        ok("put", b.put(t, n, "zz", b"neighbour".to_vec()).await);
    }
    // Written out of order; includes "", a separator, a prefix pair and a non-ASCII key.
    let sorts = ["m", "b", "", "a|z", "a", "zz", "é", "a0", "B"];
    for (i, s) in sorts.iter().enumerate() {
        ok("put", b.put(t, &a, s, vec![i as u8]).await);
    }
    let got = ok("list", b.list(t, &a).await);
    let mut want: Vec<(String, Vec<u8>)> = sorts
        .iter()
        .enumerate()
        .map(|(i, s)| (s.to_string(), vec![i as u8]))
        .collect();
    want.sort_by(|l, r| l.0.cmp(&r.0));
    assert_eq!(
        got, want,
        "list must return exactly the partition's rows, ordered by sort key (byte order)"
    );
    for n in &neighbours {
        let rows = ok("list", b.list(t, n).await);
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["", "m", "zz"],
            "neighbour partition {n:?} must be listed alone"
        );
    }
    assert!(
        ok("list", b.list(t, &format!("{x}none")).await).is_empty(),
        "an absent partition lists empty"
    );
    // Same partition name in another table is not listed.
    assert!(ok("list", b.list(Table::Meta, &a).await).is_empty());
}

/// A partition larger than one page of a paged backend is listed whole, in order.
async fn backend_list_pages(b: &dyn Backend, x: &str) {
    let t = Table::PackageImages;
    let p = format!("{x}big");
    const N: usize = 2_345;
    let mut batch = Vec::new();
    // Insert in reverse order, in batches.
    for i in (0..N).rev() {
        batch.push(Write::Put {
            table: t,
            partition: p.clone(),
            sort: format!("sha256:{i:06}"),
            value: (i as u32).to_be_bytes().to_vec(),
        });
        if batch.len() == 100 {
            ok(
                "write_batch",
                b.write_batch(std::mem::take(&mut batch)).await,
            );
        }
    }
    ok("write_batch", b.write_batch(batch).await);
    let rows = ok("list", b.list(t, &p).await);
    assert_eq!(
        rows.len(),
        N,
        "list must return every row of a large partition"
    );
    for (i, (s, v)) in rows.iter().enumerate() {
        assert_eq!(s, &format!("sha256:{i:06}"), "row {i} out of order");
        assert_eq!(v, &(i as u32).to_be_bytes().to_vec());
    }
}

async fn backend_delete(b: &dyn Backend, x: &str) {
    let t = Table::Advisories;
    let p = format!("{x}del");
    ok("put", b.put(t, &p, "a", vec![1]).await);
    ok("put", b.put(t, &p, "b", vec![2]).await);
    ok("delete", b.delete(t, &p, "a").await);
    assert_eq!(
        ok("get", b.get(t, &p, "a").await),
        None,
        "delete must remove the row"
    );
    assert_eq!(
        ok("get", b.get(t, &p, "b").await),
        Some(vec![2]),
        "delete must not touch other rows"
    );
    assert_eq!(
        ok("list", b.list(t, &p).await),
        vec![("b".to_string(), vec![2])]
    );
    // Deleting an absent row is not an error.
    ok("delete absent", b.delete(t, &p, "a").await);
    ok(
        "delete absent",
        b.delete(t, &format!("{x}nowhere"), "").await,
    );
    // A deleted row can be written again.
    ok("put", b.put(t, &p, "a", vec![3]).await);
    assert_eq!(ok("get", b.get(t, &p, "a").await), Some(vec![3]));
    // put_if_absent sees a deleted row as absent.
    ok("delete", b.delete(Table::ScanResult, &p, "").await);
    assert!(ok(
        "put_if_absent",
        b.put_if_absent(Table::ScanResult, &p, "", vec![9]).await
    ));
}

async fn backend_write_batch(b: &dyn Backend, x: &str) {
    let p1 = format!("{x}wb1");
    let p2 = format!("{x}wb2");
    ok("put", b.put(Table::ImageKeys, &p1, "old", vec![1]).await);
    ok(
        "put",
        b.put(Table::PackageImages, &p2, "old", vec![1]).await,
    );
    ok(
        "put",
        b.put(Table::PackageImages, &p2, "keep", vec![5]).await,
    );
    // Mix puts and deletes over two tables and partitions (distinct keys: the order of
    // writes to one key inside a batch is not defined on every backend).
    let writes = vec![
        Write::Delete {
            table: Table::ImageKeys,
            partition: p1.clone(),
            sort: "old".into(),
        },
        Write::Put {
            table: Table::ImageKeys,
            partition: p1.clone(),
            sort: "new".into(),
            value: vec![2],
        },
        Write::Put {
            table: Table::PackageImages,
            partition: p2.clone(),
            sort: "new".into(),
            value: vec![3],
        },
        Write::Delete {
            table: Table::PackageImages,
            partition: p2.clone(),
            sort: "old".into(),
        },
        Write::Put {
            table: Table::PackageImages,
            partition: p2.clone(),
            sort: "keep".into(),
            value: vec![6],
        },
        Write::Delete {
            table: Table::PackageImages,
            partition: p2.clone(),
            sort: "never-written".into(),
        },
    ];
    ok("write_batch", b.write_batch(writes).await);
    assert_eq!(
        ok("list", b.list(Table::ImageKeys, &p1).await),
        vec![("new".to_string(), vec![2])]
    );
    assert_eq!(
        ok("list", b.list(Table::PackageImages, &p2).await),
        vec![("keep".to_string(), vec![6]), ("new".to_string(), vec![3])],
        "write_batch must apply every put (including overwrites) and delete"
    );
    ok("empty write_batch", b.write_batch(Vec::new()).await);
    assert_eq!(ok("list", b.list(Table::PackageImages, &p2).await).len(), 2);
}

/// A batch of 5,000 writes (more than one atomic batch of a JetStream server), over
/// many partitions of a row table and of a paged one, then one deleting them again.
async fn backend_large_batch(b: &dyn Backend, x: &str) {
    const N: usize = 5_000;
    let row = |i: usize| {
        (
            Table::LayerVersion,
            format!("{x}lb-layer-{i:05}"),
            String::new(),
        )
    };
    let paged = |i: usize| {
        (
            Table::ImageKeys,
            format!("{x}lb-image-{:02}", i % 25),
            format!("ns|pkg-{i:05}"),
        )
    };
    let key = |i: usize| {
        if i.is_multiple_of(2) {
            row(i)
        } else {
            paged(i)
        }
    };
    let writes = (0..N)
        .map(|i| {
            let (table, partition, sort) = key(i);
            Write::Put {
                table,
                partition,
                sort,
                value: (i as u32).to_be_bytes().to_vec(),
            }
        })
        .collect();
    ok("write_batch of 5,000", b.write_batch(writes).await);
    for i in [0, 1, 2, 999, 1000, 1001, 2500, 4998, 4999] {
        let (table, partition, sort) = key(i);
        assert_eq!(
            ok("get", b.get(table, &partition, &sort).await),
            Some((i as u32).to_be_bytes().to_vec()),
            "row {i} of a 5,000-row batch"
        );
    }
    for p in 0..25 {
        let rows = ok(
            "list",
            b.list(Table::ImageKeys, &format!("{x}lb-image-{p:02}"))
                .await,
        );
        let want: Vec<String> = (0..N)
            .filter(|i| i % 2 == 1 && i % 25 == p)
            .map(|i| format!("ns|pkg-{i:05}"))
            .collect();
        let got: Vec<String> = rows.into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, want, "partition {p} of a 5,000-row batch, in order");
    }
    // Replace every tenth row, delete the others.
    let writes = (0..N)
        .map(|i| {
            let (table, partition, sort) = key(i);
            if i.is_multiple_of(10) {
                Write::Put {
                    table,
                    partition,
                    sort,
                    value: b"kept".to_vec(),
                }
            } else {
                Write::Delete {
                    table,
                    partition,
                    sort,
                }
            }
        })
        .collect();
    ok("write_batch of 5,000", b.write_batch(writes).await);
    for i in [0, 1, 2, 10, 990, 1000, 1001, 4990, 4999] {
        let (table, partition, sort) = key(i);
        let want = i.is_multiple_of(10).then(|| b"kept".to_vec());
        assert_eq!(
            ok("get", b.get(table, &partition, &sort).await),
            want,
            "row {i}"
        );
    }
    let mut kept = 0;
    for p in 0..25 {
        kept += ok(
            "list",
            b.list(Table::ImageKeys, &format!("{x}lb-image-{p:02}"))
                .await,
        )
        .len();
    }
    assert_eq!(
        kept, 0,
        "every odd row was deleted, and no odd i is a multiple of 10"
    );
}

/// A paged partition of 20,000 rows (a package in 20,000 images), written in batches in
/// an order that is not the sort order, is listed whole and in order; deleting half of
/// it in one batch leaves the other half.
async fn backend_large_partition(b: &dyn Backend, x: &str) {
    const N: usize = 20_000;
    let t = Table::PackageImages;
    let p = format!("{x}huge");
    let sort = |i: usize| {
        format!(
            "sha256:{:064x}",
            (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
    };
    // A permutation of 0..N (7919 is prime to N).
    let order: Vec<usize> = (0..N).map(|i| (i * 7919) % N).collect();
    for part in order.chunks(1_000) {
        let writes = part
            .iter()
            .map(|&i| Write::Put {
                table: t,
                partition: p.clone(),
                sort: sort(i),
                value: Vec::new(),
            })
            .collect();
        ok("write_batch", b.write_batch(writes).await);
    }
    let mut want: Vec<String> = (0..N).map(sort).collect();
    want.sort();
    let got: Vec<String> = ok("list", b.list(t, &p).await)
        .into_iter()
        .map(|(k, v)| {
            assert!(v.is_empty());
            k
        })
        .collect();
    assert_eq!(
        got.len(),
        N,
        "every row of a 20,000-row partition is listed"
    );
    assert!(
        got == want,
        "a 20,000-row partition is listed in sort order"
    );
    let writes = (0..N)
        .filter(|i| i.is_multiple_of(2))
        .map(|i| Write::Delete {
            table: t,
            partition: p.clone(),
            sort: sort(i),
        })
        .collect();
    ok("write_batch of 10,000 deletes", b.write_batch(writes).await);
    let mut want: Vec<String> = (0..N).filter(|i| i % 2 == 1).map(sort).collect();
    want.sort();
    let got: Vec<String> = ok("list", b.list(t, &p).await)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(got == want, "the other 10,000 rows are left, in order");
}

// ---- typed store ---------------------------------------------------------------------

/// Exercise every method of the typed store.
pub async fn run_typed(store: &Store) {
    let x = format!("cf-{}-", run_id());
    typed_layer_index(store, &x).await;
    typed_analysis(store, &x).await;
    typed_wrong_kind(store, &x).await;
    typed_reverse_index(store, &x).await;
    typed_reverse_index_repair(store, &x).await;
    typed_reverse_index_shards(store, &x).await;
    typed_reverse_index_update(store, &x).await;
    typed_advisories(store, &x).await;
    typed_feed_states(store, &x).await;
    typed_vuln_report(store, &x).await;
    typed_bundles(store, &x).await;
    typed_evaluations(store, &x).await;
    typed_evaluation_history_bound(store, &x).await;
    typed_evaluated_index(store, &x).await;
    typed_scan_result(store, &x).await;
    typed_notifications(store, &x).await;
    typed_watch_rows(store, &x).await;
    typed_events(store, &x).await;
    typed_deliveries(store, &x).await;
}

fn key(ns: &str, pkg: &str) -> PackageKey {
    PackageKey {
        namespace: ns.to_string(),
        package: pkg.to_string(),
    }
}

/// A sample layer index.
pub fn sample_layer_index(digest: &str, extractor_version: u32) -> LayerIndex {
    LayerIndex {
        layer_digest: digest.to_string(),
        entries: vec![
            FileEntry {
                path: "/etc".into(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                link: None,
                sha256: None,
                md5: None,
                sha1: None,
            },
            FileEntry {
                path: "/etc/os-release".into(),
                kind: EntryKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 21,
                link: None,
                sha256: None,
                md5: None,
                sha1: None,
            },
            FileEntry {
                path: "/bin/sh".into(),
                kind: EntryKind::Symlink,
                mode: 0o777,
                uid: 0,
                gid: 0,
                size: 0,
                link: Some("busybox".into()),
                sha256: None,
                md5: None,
                sha1: None,
            },
        ],
        kept: vec![KeptFile {
            path: "/etc/os-release".into(),
            content: b"ID=debian\nVERSION_ID=12\n\x00\xff".to_vec(),
            truncated: false,
        }],
        uncompressed_size: 10_240,
        extractor_version,
        warnings: vec!["odd entry".into()],
        packages: Vec::new(),
        secrets: Vec::new(),
        content_matches: Vec::new(),
    }
}

/// A sample analysis of `digest`.
pub fn sample_analysis(digest: &str) -> Analysis {
    let mut labels = BTreeMap::new();
    labels.insert("maintainer".to_string(), "vigil".to_string());
    Analysis {
        descriptor: ImageDescriptor {
            image: ImageRef {
                source_kind: SourceKind::Registry,
                name: "registry.example/app".into(),
                tag: Some("1.0".into()),
                digest: digest.to_string(),
                index_digest: Some("sha256:index".into()),
                config_digest: "sha256:config".into(),
                platform: "linux/amd64".into(),
            },
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                user: Some("1000".into()),
                exposed_ports: vec!["8080/tcp".into()],
                env: vec!["PATH=/usr/bin".into()],
                cmd: vec!["/app".into()],
                labels,
                diff_ids: vec!["sha256:diff".into()],
                ..Default::default()
            },
            layers: vec![LayerRef {
                digest: "sha256:layer".into(),
                diff_id: Some("sha256:diff".into()),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 1234,
                compression: Compression::Gzip,
            }],
        },
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            codename: Some("bookworm".into()),
            id_like: vec![],
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
        }),
        packages: vec![Package {
            name: "libc6".into(),
            version: "2.36-9+deb12u3".into(),
            kind: PackageType::Deb,
            arch: Some("amd64".into()),
            source_name: Some("glibc".into()),
            source_version: None,
            licenses: vec!["LGPL-2.1".into()],
            locations: vec!["/var/lib/dpkg/status".into()],
            purl: Some("pkg:deb/debian/libc6@2.36-9+deb12u3".into()),
            cpes: Vec::new(),
            files: Vec::new(),
            found_by: None,
            metadata: Default::default(),
            file_digests: Default::default(),
        }],
        file_count: 3,
        image_size: 10_240,
        analyzed_at: 1_700_000_000_000,
        analyzer_version: 1,
        warnings: vec![],
        dockerfile: None,
        files: Vec::new(),
        from_sbom: false,
        groups: Vec::new(),
        passwd_present: false,
        retrieved_files: Vec::new(),
        secrets: Vec::new(),
        users: Vec::new(),
        content_matches: Vec::new(),
    }
}

/// A sample advisory.
pub fn sample_advisory(id: &str, k: &PackageKey, severity: Severity) -> Advisory {
    Advisory {
        id: id.to_string(),
        aliases: vec![format!("ALIAS-{id}")],
        namespace: k.namespace.clone(),
        package: k.package.clone(),
        feed: "debian".into(),
        severity,
        state: FixState::Fixed,
        ranges: vec![AffectedRange {
            kind: Default::default(),
            introduced: None,
            fixed: Some("2.36-9+deb12u4".into()),
            last_affected: None,
        }],
        versions: vec![],
        description: Some("a bug".into()),
        urls: vec!["https://security-tracker.debian.org/".into()],
        published: Some("2024-01-01".into()),
        modified: None,
        cvss: Vec::new(),
        cwes: Vec::new(),
        fix_published: None,
        vendor_only: false,
        withdrawn: false,
        module: None,
    }
}

fn sample_finding(id: &str) -> Finding {
    Finding {
        vuln_id: id.to_string(),
        aliases: vec![],
        severity: Severity::High,
        package: PackageRef {
            name: "libc6".into(),
            version: "2.36-9+deb12u3".into(),
            kind: PackageType::Deb,
            location: Some("/var/lib/dpkg/status".into()),
        },
        fixed_in: Some("2.36-9+deb12u4".into()),
        state: FixState::Fixed,
        feed: "debian".into(),
        matched: MatchDetail {
            namespace: "debian:12".into(),
            searched_name: "glibc".into(),
            comparator: "dpkg".into(),
            constraint: "< 2.36-9+deb12u4".into(),
        },
        description: None,
        urls: vec![],
        cvss: Vec::new(),
        fix_published: None,
        published: None,
        vendor_only: false,
    }
}

/// A sample evaluation.
pub fn sample_evaluation(digest: &str, tag: &str, at: i64, action: Action) -> Evaluation {
    Evaluation {
        image_digest: digest.to_string(),
        tag: tag.to_string(),
        bundle_id: "default".into(),
        policy_ids: vec!["p1".into()],
        final_action: action,
        final_action_reason: "policy_evaluation".into(),
        findings: vec![PolicyFinding {
            gate: "vulnerabilities".into(),
            trigger: "package".into(),
            trigger_id: "CVE-1+libc6".into(),
            message: format!("evaluated at {at}"),
            action,
            policy_id: "p1".into(),
            rule_id: "r1".into(),
            allowlisted: false,
            allowlist_id: None,
        }],
        evaluated_at: at,
    }
}

async fn typed_layer_index(s: &Store, x: &str) {
    let d = format!("sha256:{x}layer");
    assert_eq!(ok("get_layer_index", s.get_layer_index(&d).await), None);
    assert!(!ok("has_layer_index", s.has_layer_index(&d, 1).await));
    let idx = sample_layer_index(&d, 3);
    ok("put_layer_index", s.put_layer_index(&idx).await);
    assert_eq!(
        ok("get_layer_index", s.get_layer_index(&d).await),
        Some(idx.clone()),
        "layer index must round-trip"
    );
    assert!(ok("has_layer_index", s.has_layer_index(&d, 3).await));
    assert!(
        !ok("has_layer_index", s.has_layer_index(&d, 4).await),
        "an index from another extractor version does not count"
    );
    assert!(!ok("has_layer_index", s.has_layer_index(&d, 2).await));
    let newer = sample_layer_index(&d, 4);
    ok("put_layer_index", s.put_layer_index(&newer).await);
    assert!(ok("has_layer_index", s.has_layer_index(&d, 4).await));
    assert!(!ok("has_layer_index", s.has_layer_index(&d, 3).await));

    // An index without its version row (stored by an older vigil, or a crash between the
    // two writes) counts as absent, so it is made again.
    let old = format!("sha256:{x}oldlayer");
    let bytes = codec::encode(&sample_layer_index(&old, 3)).unwrap();
    ok(
        "put",
        s.backend().put(Table::LayerIndex, &old, "", bytes).await,
    );
    assert!(!ok("has_layer_index", s.has_layer_index(&old, 3).await));
    ok(
        "put_layer_index",
        s.put_layer_index(&sample_layer_index(&old, 3)).await,
    );
    assert!(ok("has_layer_index", s.has_layer_index(&old, 3).await));
}

async fn typed_analysis(s: &Store, x: &str) {
    let d = format!("sha256:{x}image");
    assert_eq!(ok("get_analysis", s.get_analysis(&d).await), None);
    assert!(!ok("has_analysis", s.has_analysis(&d).await));
    let mut a = sample_analysis(&d);
    ok("put_analysis", s.put_analysis(&a).await);
    assert!(ok("has_analysis", s.has_analysis(&d).await));
    assert_eq!(
        ok("get_analysis", s.get_analysis(&d).await),
        Some(a.clone())
    );
    a.analyzer_version = 2;
    a.packages.clear();
    ok("put_analysis", s.put_analysis(&a).await);
    assert_eq!(
        ok("get_analysis", s.get_analysis(&d).await),
        Some(a),
        "put_analysis must overwrite"
    );
    let other = format!("sha256:{x}image2");
    assert_eq!(ok("get_analysis", s.get_analysis(&other).await), None);

    // The shared reads see every write, whichever way it was made.
    let shared = |r: Result<Option<std::sync::Arc<Analysis>>, StoreError>| {
        ok("get_analysis_shared", r).map(|a| (*a).clone())
    };
    let mut b = sample_analysis(&d);
    b.analyzer_version = 7;
    ok(
        "put_analysis_shared",
        s.put_analysis_shared(std::sync::Arc::new(b.clone())).await,
    );
    assert_eq!(shared(s.get_analysis_shared(&d).await), Some(b.clone()));
    assert_eq!(
        ok("get_analysis", s.get_analysis(&d).await),
        Some(b.clone())
    );
    b.analyzer_version = 8;
    b.packages.clear();
    ok("put_analysis", s.put_analysis(&b).await);
    assert_eq!(
        shared(s.get_analysis_shared(&d).await),
        Some(b.clone()),
        "a plain put_analysis must not leave an older shared copy"
    );
    assert_eq!(shared(s.get_analysis_shared(&other).await), None);
    assert_eq!(shared(s.get_analysis_shared(&d).await), Some(b));
}

/// A stored record of the wrong kind is a codec error, not a silent misread.
async fn typed_wrong_kind(s: &Store, x: &str) {
    let d = format!("sha256:{x}wrongkind");
    let report = VulnReport {
        image_digest: d.clone(),
        findings: vec![],
        namespaces_with_data: vec![],
        matched_at: 1,
    };
    let bytes = codec::encode(&report).expect("encode");
    ok("put", s.backend().put(Table::Analysis, &d, "", bytes).await);
    match s.get_analysis(&d).await {
        Err(StoreError::Codec { table, key, .. }) => {
            assert_eq!(table, "analysis");
            assert_eq!(key, d);
        }
        other => panic!("a record of another kind must be a Codec error, got {other:?}"),
    }
    ok(
        "put",
        s.backend()
            .put(Table::Analysis, &d, "", b"not msgpack".to_vec())
            .await,
    );
    assert!(matches!(
        s.get_analysis(&d).await,
        Err(StoreError::Codec { .. })
    ));
    ok("delete", s.backend().delete(Table::Analysis, &d, "").await);
}

async fn typed_reverse_index(s: &Store, x: &str) {
    let ns = format!("{x}debian:12");
    let k1 = key(&ns, "a");
    let k2 = key(&ns, "a|b");
    let k3 = key(&ns, "ab");
    let img_a = format!("sha256:{x}a");
    let img_b = format!("sha256:{x}b");

    for k in [&k1, &k2, &k3] {
        assert!(ok("images_for_key", s.images_for_key(k).await).is_empty());
    }
    ok(
        "index",
        s.index_image_keys(&img_a, &[k1.clone(), k2.clone()]).await,
    );
    ok(
        "index",
        s.index_image_keys(&img_b, std::slice::from_ref(&k2)).await,
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k1).await),
        vec![img_a.clone()]
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k2).await),
        vec![img_a.clone(), img_b.clone()],
        "images_for_key lists every image, sorted"
    );
    assert!(
        ok("images_for_key", s.images_for_key(&k3).await).is_empty(),
        "a key sharing a prefix must not see another key's images"
    );
    // Forward side.
    let fwd: Vec<String> = ok("list", s.backend().list(Table::ImageKeys, &img_a).await)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(fwd, vec![format!("{ns}|a"), format!("{ns}|a|b")]);

    // Re-indexing replaces the set: k1 dropped, k3 added, k2 kept.
    ok(
        "index",
        s.index_image_keys(&img_a, &[k2.clone(), k3.clone(), k2.clone()])
            .await,
    );
    assert!(
        ok("images_for_key", s.images_for_key(&k1).await).is_empty(),
        "a dropped key must no longer list the image"
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k2).await),
        vec![img_a.clone(), img_b.clone()]
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k3).await),
        vec![img_a.clone()]
    );
    // Same set again changes nothing.
    ok(
        "index",
        s.index_image_keys(&img_a, &[k3.clone(), k2.clone()]).await,
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k3).await),
        vec![img_a.clone()]
    );

    // An empty set removes the image everywhere.
    ok("index", s.index_image_keys(&img_a, &[]).await);
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k2).await),
        vec![img_b.clone()]
    );
    assert!(ok("images_for_key", s.images_for_key(&k3).await).is_empty());
    assert!(ok("list", s.backend().list(Table::ImageKeys, &img_a).await).is_empty());
    ok("index", s.index_image_keys(&img_b, &[]).await);
    assert!(ok("images_for_key", s.images_for_key(&k2).await).is_empty());
}

async fn typed_advisories(s: &Store, x: &str) {
    let k = key(&format!("{x}debian:12"), "glibc");
    let neighbour = key(&format!("{x}debian:12"), "glibc|x");
    assert!(ok("get_advisories", s.get_advisories(&k).await).is_empty());
    assert!(
        !ok("replace", s.replace_advisories(&k, &[]).await),
        "replacing nothing with nothing is no change"
    );
    let a1 = sample_advisory("CVE-2024-0002", &k, Severity::High);
    let a2 = sample_advisory("CVE-2024-0001", &k, Severity::Low);
    let n1 = sample_advisory("CVE-2024-0003", &neighbour, Severity::Low);
    ok(
        "replace",
        s.replace_advisories(&neighbour, std::slice::from_ref(&n1))
            .await,
    );

    assert!(ok(
        "replace",
        s.replace_advisories(&k, &[a1.clone(), a2.clone()]).await
    ));
    assert_eq!(
        ok("get_advisories", s.get_advisories(&k).await),
        vec![a2.clone(), a1.clone()],
        "advisories are listed by id and only for their key"
    );
    assert!(
        !ok(
            "replace",
            s.replace_advisories(&k, &[a2.clone(), a1.clone()]).await
        ),
        "identical advisories are no change"
    );
    let mut a1b = a1.clone();
    a1b.severity = Severity::Critical;
    assert!(
        ok(
            "replace",
            s.replace_advisories(&k, &[a1b.clone(), a2.clone()]).await
        ),
        "a changed advisory is a change"
    );
    assert_eq!(
        ok("get_advisories", s.get_advisories(&k).await),
        vec![a2.clone(), a1b.clone()]
    );
    assert!(
        ok("replace", s.replace_advisories(&k, &[a1b.clone()]).await),
        "a dropped advisory is a change"
    );
    assert_eq!(
        ok("get_advisories", s.get_advisories(&k).await),
        vec![a1b.clone()],
        "a dropped advisory id must be removed"
    );
    assert!(ok("replace", s.replace_advisories(&k, &[]).await));
    assert!(ok("get_advisories", s.get_advisories(&k).await).is_empty());
    assert_eq!(
        ok("get_advisories", s.get_advisories(&neighbour).await),
        vec![n1],
        "another key's advisories are untouched"
    );

    // Two module streams of one package under one id are two records.
    let mut m18 = sample_advisory("CVE-2024-0009", &k, Severity::High);
    m18.module = Some("nodejs:18".into());
    let mut m20 = m18.clone();
    m20.module = Some("nodejs:20".into());
    m20.severity = Severity::Low;
    let plain = sample_advisory("CVE-2024-0009", &k, Severity::Medium);
    assert!(ok(
        "replace",
        s.replace_advisories(&k, &[plain.clone(), m18.clone(), m20.clone()])
            .await
    ));
    assert_eq!(
        ok("get_advisories", s.get_advisories(&k).await),
        vec![plain.clone(), m18.clone(), m20.clone()],
        "one id, a plain and two module-stream records: all three kept"
    );
    assert!(ok(
        "replace",
        s.replace_advisories(&k, &[plain.clone(), m20.clone()])
            .await
    ));
    assert_eq!(
        ok("get_advisories", s.get_advisories(&k).await),
        vec![plain, m20],
        "dropping one stream's record removes only that stream's"
    );
    assert!(ok("replace", s.replace_advisories(&k, &[]).await));
}

async fn typed_feed_states(s: &Store, x: &str) {
    let f1 = format!("{x}debian");
    let f2 = format!("{x}alpine");
    assert_eq!(ok("get_feed_state", s.get_feed_state(&f1).await), None);
    let mut namespaces = BTreeMap::new();
    namespaces.insert("debian:12".to_string(), 10);
    let mut s1 = FeedState {
        feed: f1.clone(),
        url: "https://security-tracker.debian.org/tracker/data/json".into(),
        etag: Some("\"abc\"".into()),
        last_modified: None,
        content_hash: Some("00ff".into()),
        last_sync: 1000,
        record_count: 10,
        namespaces,
        parser_version: 0,
    };
    let s2 = FeedState {
        feed: f2.clone(),
        url: "https://secdb.alpinelinux.org/".into(),
        last_sync: 2000,
        record_count: 5,
        ..Default::default()
    };
    ok("put_feed_state", s.put_feed_state(&s1).await);
    ok("put_feed_state", s.put_feed_state(&s2).await);
    assert_eq!(
        ok("get_feed_state", s.get_feed_state(&f1).await),
        Some(s1.clone())
    );
    s1.last_sync = 3000;
    s1.etag = None;
    ok("put_feed_state", s.put_feed_state(&s1).await);
    let mine: Vec<FeedState> = ok("list_feed_states", s.list_feed_states().await)
        .into_iter()
        .filter(|f| f.feed.starts_with(x))
        .collect();
    assert_eq!(
        mine,
        vec![s2, s1],
        "feed states are listed once each, by name, with the latest write"
    );
}

async fn typed_vuln_report(s: &Store, x: &str) {
    let d = format!("sha256:{x}vulns");
    assert_eq!(ok("get_vuln_report", s.get_vuln_report(&d).await), None);
    let mut r = VulnReport {
        image_digest: d.clone(),
        findings: vec![
            sample_finding("CVE-2024-0001"),
            sample_finding("CVE-2024-0002"),
        ],
        namespaces_with_data: vec!["debian:12".into()],
        matched_at: 42,
    };
    ok("put_vuln_report", s.put_vuln_report(&r).await);
    assert_eq!(
        ok("get_vuln_report", s.get_vuln_report(&d).await),
        Some(r.clone())
    );
    r.findings.pop();
    r.matched_at = 43;
    ok("put_vuln_report", s.put_vuln_report(&r).await);
    assert_eq!(ok("get_vuln_report", s.get_vuln_report(&d).await), Some(r));
}

async fn typed_bundles(s: &Store, x: &str) {
    let id1 = format!("{x}bundle1");
    let id2 = format!("{x}bundle2");
    let b1 = StoredBundle {
        id: id1.clone(),
        name: "first".into(),
        json: r#"{"id":"b1","policies":[]}"#.into(),
        // The stored flag is not trusted: only activation makes a bundle active.
        active: true,
        created_at: 1,
    };
    let b2 = StoredBundle {
        id: id2.clone(),
        name: "second".into(),
        json: r#"{"id":"b2","policies":[]}"#.into(),
        active: false,
        created_at: 2,
    };
    assert_eq!(ok("get_bundle", s.get_bundle(&id1).await), None);
    ok("put_bundle", s.put_bundle(&b1).await);
    ok("put_bundle", s.put_bundle(&b2).await);
    let mine = |all: Vec<StoredBundle>| -> Vec<(String, bool)> {
        all.into_iter()
            .filter(|b| b.id.starts_with(x))
            .map(|b| (b.id, b.active))
            .collect()
    };
    assert_eq!(
        mine(ok("list_bundles", s.list_bundles().await)),
        vec![(id1.clone(), false), (id2.clone(), false)],
        "bundles are listed by id, inactive until activated"
    );
    let got = ok("get_bundle", s.get_bundle(&id1).await).expect("bundle 1 stored");
    assert_eq!(
        (got.name.as_str(), got.json.as_str(), got.active),
        ("first", b1.json.as_str(), false)
    );

    ok("activate", s.activate_bundle(&id1).await);
    assert_eq!(
        ok("active_bundle_id", s.active_bundle_id().await),
        Some(id1.clone())
    );
    assert!(ok("get_bundle", s.get_bundle(&id1).await).unwrap().active);
    assert!(!ok("get_bundle", s.get_bundle(&id2).await).unwrap().active);
    assert_eq!(
        mine(ok("list_bundles", s.list_bundles().await)),
        vec![(id1.clone(), true), (id2.clone(), false)]
    );

    ok("activate", s.activate_bundle(&id2).await);
    assert_eq!(
        ok("active_bundle_id", s.active_bundle_id().await),
        Some(id2.clone())
    );
    assert_eq!(
        mine(ok("list_bundles", s.list_bundles().await)),
        vec![(id1.clone(), false), (id2.clone(), true)],
        "exactly one bundle is active"
    );

    let missing = format!("{x}missing");
    match s.activate_bundle(&missing).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains(&missing), "NotFound names the id: {m}"),
        other => panic!("activating a missing bundle must be NotFound, got {other:?}"),
    }
    assert_eq!(
        ok("active_bundle_id", s.active_bundle_id().await),
        Some(id2.clone()),
        "a failed activation keeps the active bundle"
    );

    // Deleting an inactive bundle keeps the active one.
    ok("delete_bundle", s.delete_bundle(&id1).await);
    assert_eq!(ok("get_bundle", s.get_bundle(&id1).await), None);
    assert_eq!(
        ok("active_bundle_id", s.active_bundle_id().await),
        Some(id2.clone())
    );
    // Deleting the active bundle clears the active flag.
    ok("delete_bundle", s.delete_bundle(&id2).await);
    assert_eq!(ok("get_bundle", s.get_bundle(&id2).await), None);
    assert_eq!(
        ok("active_bundle_id", s.active_bundle_id().await),
        None,
        "deleting the active bundle clears the active id"
    );
    assert!(mine(ok("list_bundles", s.list_bundles().await)).is_empty());
    // Deleting a missing bundle is not an error.
    ok("delete_bundle", s.delete_bundle(&missing).await);
}

async fn typed_evaluations(s: &Store, x: &str) {
    let d = format!("sha256:{x}evals");
    let t1 = "registry.example/app:1";
    let t2 = "registry.example/app:10";
    assert!(ok("history", s.evaluation_history(&d, t1).await).is_empty());
    assert_eq!(ok("latest", s.latest_evaluation(&d, t1).await), None);
    // Out of order, with timestamps of different digit counts (sorted numerically,
    // not as text), and a tag that is a prefix of another.
    let e_1000 = sample_evaluation(&d, t1, 1_000, Action::Stop);
    let e_99 = sample_evaluation(&d, t1, 99, Action::Go);
    let e_200 = sample_evaluation(&d, t1, 200, Action::Warn);
    let f_150 = sample_evaluation(&d, t2, 150, Action::Go);
    for e in [&e_1000, &f_150, &e_99, &e_200] {
        ok("put_evaluation", s.put_evaluation(e).await);
    }
    let other = sample_evaluation(&format!("sha256:{x}evals2"), t1, 5, Action::Go);
    ok("put_evaluation", s.put_evaluation(&other).await);

    assert_eq!(
        ok("history", s.evaluation_history(&d, t1).await),
        vec![e_99, e_200, e_1000.clone()],
        "history is oldest first, for the tag only"
    );
    assert_eq!(
        ok("history", s.evaluation_history(&d, t2).await),
        vec![f_150.clone()]
    );
    assert_eq!(
        ok("latest", s.latest_evaluation(&d, t1).await),
        Some(e_1000)
    );
    assert_eq!(ok("latest", s.latest_evaluation(&d, t2).await), Some(f_150));
    assert!(ok("history", s.evaluation_history(&d, "nope").await).is_empty());
    // Rewriting the same evaluation (a redelivery) does not duplicate history.
    ok("put_evaluation", s.put_evaluation(&other).await);
    assert_eq!(
        ok(
            "history",
            s.evaluation_history(&other.image_digest, t1).await
        ),
        vec![other]
    );
}

async fn typed_scan_result(s: &Store, x: &str) {
    let id = format!("{x}request");
    assert_eq!(ok("get_scan_result", s.get_scan_result(&id).await), None);
    let mut by_severity = BTreeMap::new();
    by_severity.insert("High".to_string(), 2);
    let first = ScanResult {
        request_id: id.clone(),
        status: ScanStatus::Succeeded,
        source: "registry.example/app:1".into(),
        image_digest: Some("sha256:abc".into()),
        tag: Some("registry.example/app:1".into()),
        summary: Some(ScanSummary {
            packages: 10,
            vulnerabilities: 2,
            by_severity,
            final_action: Some(Action::Stop),
            distro: Some("debian:12".into()),
        }),
        failure: None,
        completed_at: 100,
        report: None,
        platform_requests: Vec::new(),
    };
    let second = ScanResult {
        request_id: id.clone(),
        status: ScanStatus::Failed,
        source: "registry.example/app:1".into(),
        image_digest: None,
        tag: None,
        summary: None,
        failure: Some(Failure {
            stage: StageName::Fetch,
            kind: FailureKind::Upstream,
            message: "late duplicate".into(),
        }),
        completed_at: 200,
        report: None,
        platform_requests: Vec::new(),
    };
    assert!(
        ok("put_scan_result", s.put_scan_result(&first).await),
        "the first result is stored"
    );
    assert!(
        !ok("put_scan_result", s.put_scan_result(&second).await),
        "a second result for the same request is refused"
    );
    assert!(!ok("put_scan_result", s.put_scan_result(&first).await));
    assert_eq!(
        ok("get_scan_result", s.get_scan_result(&id).await),
        Some(first),
        "the first result is kept"
    );
}

async fn typed_notifications(s: &Store, x: &str) {
    let sub = format!("{x}registry.example/app:1");
    let neighbour = format!("{x}registry.example/app:1|x");
    assert!(ok("list_notifications", s.list_notifications(&sub).await).is_empty());
    let n =
        |id: &str, key: &str, kind: NotificationKind, payload: NotificationPayload| Notification {
            id: id.to_string(),
            kind,
            subscription_key: key.to_string(),
            image_digest: Some("sha256:abc".into()),
            request_id: None,
            payload,
            created_at: 7,
        };
    let nb = n(
        "b",
        &sub,
        NotificationKind::VulnUpdate,
        NotificationPayload::VulnUpdate {
            diff: VulnDiff {
                added: vec![sample_finding("CVE-2024-0001")],
                updated: vec![],
                removed: vec![],
            },
        },
    );
    let na = n(
        "a",
        &sub,
        NotificationKind::PolicyEval,
        NotificationPayload::PolicyEval {
            previous_action: Some(Action::Go),
            current_action: Action::Stop,
            policy_id: "p1".into(),
        },
    );
    let nc = n(
        "c",
        &sub,
        NotificationKind::TagUpdate,
        NotificationPayload::TagUpdate {
            previous_digests: vec!["sha256:old".into()],
            current_digest: "sha256:abc".into(),
        },
    );
    let other = n(
        "a",
        &neighbour,
        NotificationKind::AnalysisUpdate,
        NotificationPayload::AnalysisUpdate {
            status: "analysis_failed".into(),
            failure: Some(Failure {
                stage: StageName::Analyze,
                kind: FailureKind::MalformedImage,
                message: "bad tar".into(),
            }),
        },
    );
    for m in [&nb, &na, &other, &nc, &na] {
        ok("put_notification", s.put_notification(m).await);
    }
    assert_eq!(
        ok("list_notifications", s.list_notifications(&sub).await),
        vec![na, nb, nc],
        "notifications of one key, once each, by id"
    );
    assert_eq!(
        ok("list_notifications", s.list_notifications(&neighbour).await),
        vec![other]
    );
}

/// The reverse index repairs itself: a forward row whose reverse row was never written
/// (an unlogged batch applied in part) gets it back from the next `index_image_keys` of
/// the same keys; rows of the layout before sharding are found, and removed with their
/// key.
async fn typed_reverse_index_repair(s: &Store, x: &str) {
    let b = s.backend();
    let k = key(&format!("{x}debian:12"), "repair");
    let other = key(&format!("{x}debian:12"), "repair-other");
    let img = format!("sha256:{x}half-applied");

    // Half applied: the forward row alone.
    ok(
        "put",
        b.put(Table::ImageKeys, &img, &package_partition(&k), Vec::new())
            .await,
    );
    assert!(ok("images_for_key", s.images_for_key(&k).await).is_empty());
    ok(
        "index",
        s.index_image_keys(&img, std::slice::from_ref(&k)).await,
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k).await),
        vec![img.clone()],
        "re-indexing the same keys writes a missing reverse row again"
    );
    // The other half: a reverse row lost while its forward row stays, among other keys.
    ok(
        "index",
        s.index_image_keys(&img, &[k.clone(), other.clone()]).await,
    );
    let shard = image_shard(&img);
    ok(
        "delete",
        b.delete(
            Table::PackageImages,
            &shard_partition(&package_partition(&other), shard),
            &img,
        )
        .await,
    );
    assert!(ok("images_for_key", s.images_for_key(&other).await).is_empty());
    ok(
        "index",
        s.index_image_keys(&img, &[other.clone(), k.clone()]).await,
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&other).await),
        vec![img.clone()]
    );
    ok("index", s.index_image_keys(&img, &[]).await);
    for k in [&k, &other] {
        assert!(ok("images_for_key", s.images_for_key(k).await).is_empty());
    }

    // The layout before sharding: one partition `namespace|package`.
    let old_img = format!("sha256:{x}old-layout");
    let part = package_partition(&k);
    ok(
        "put",
        b.put(Table::ImageKeys, &old_img, &part, Vec::new()).await,
    );
    ok(
        "put",
        b.put(Table::PackageImages, &part, &old_img, Vec::new())
            .await,
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k).await),
        vec![old_img.clone()],
        "a reverse row of the old layout is still found"
    );
    ok(
        "index",
        s.index_image_keys(&old_img, std::slice::from_ref(&k)).await,
    );
    let sharded = shard_partition(&part, image_shard(&old_img));
    assert_eq!(
        ok("list", b.list(Table::PackageImages, &sharded).await),
        vec![(old_img.clone(), Vec::new())],
        "re-indexing writes the row of the sharded layout"
    );
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k).await),
        vec![old_img.clone()],
        "an image in both layouts is listed once"
    );
    ok("index", s.index_image_keys(&old_img, &[]).await);
    assert!(ok("images_for_key", s.images_for_key(&k).await).is_empty());
    assert!(
        ok("list", b.list(Table::PackageImages, &part).await).is_empty(),
        "dropping the key removes the old layout's row too"
    );
}

/// The re-match path writes only what changed and stays repairable: a call that stopped
/// after the reverse side (its forward rows never written) is completed by the next call
/// with the same keys, and dropped keys lose both rows.
async fn typed_reverse_index_update(s: &Store, x: &str) {
    let b = s.backend();
    let k1 = key(&format!("{x}debian:12"), "update-1");
    let k2 = key(&format!("{x}debian:12"), "update-2");
    let k3 = key(&format!("{x}debian:12"), "update-3");
    let img = format!("sha256:{x}update");
    ok(
        "update",
        s.update_image_keys(&img, &[k1.clone(), k2.clone()]).await,
    );
    assert_eq!(
        forward_keys(s, &img).await,
        vec![package_partition(&k1), package_partition(&k2)]
    );
    for k in [&k1, &k2] {
        assert_eq!(
            ok("images_for_key", s.images_for_key(k).await),
            vec![img.clone()]
        );
    }
    // Stopped half way: the reverse row of a new key written, its forward row not.
    let shard = image_shard(&img);
    ok(
        "put",
        b.put(
            Table::PackageImages,
            &shard_partition(&package_partition(&k3), shard),
            &img,
            Vec::new(),
        )
        .await,
    );
    ok(
        "update",
        s.update_image_keys(&img, &[k2.clone(), k3.clone()]).await,
    );
    assert_eq!(
        forward_keys(s, &img).await,
        vec![package_partition(&k2), package_partition(&k3)],
        "the next call writes the forward row of the key still new, and drops k1's"
    );
    assert!(ok("images_for_key", s.images_for_key(&k1).await).is_empty());
    for k in [&k2, &k3] {
        assert_eq!(
            ok("images_for_key", s.images_for_key(k).await),
            vec![img.clone()]
        );
    }
    ok("update", s.update_image_keys(&img, &[]).await);
    assert!(forward_keys(s, &img).await.is_empty());
    for k in [&k1, &k2, &k3] {
        assert!(ok("images_for_key", s.images_for_key(k).await).is_empty());
    }
}

/// The forward rows (keys) of an image.
async fn forward_keys(s: &Store, img: &str) -> Vec<String> {
    ok("list", s.backend().list(Table::ImageKeys, img).await)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// A key in many images: one row per image, each in its image's shard, none in the
/// unsharded partition; every image listed once, sorted.
async fn typed_reverse_index_shards(s: &Store, x: &str) {
    let b = s.backend();
    let k = key(&format!("{x}debian:12"), "libc6");
    let part = package_partition(&k);
    let images: Vec<String> = (0..48).map(|i| format!("sha256:{x}{i:03}")).collect();
    for img in images.iter().rev() {
        ok(
            "index",
            s.index_image_keys(img, std::slice::from_ref(&k)).await,
        );
    }
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k).await),
        images,
        "every image of a sharded key, sorted"
    );
    assert!(ok("list", b.list(Table::PackageImages, &part).await).is_empty());
    let mut used = 0;
    for shard in 0..SHARDS {
        let rows = ok(
            "list",
            b.list(Table::PackageImages, &shard_partition(&part, shard))
                .await,
        );
        used += usize::from(!rows.is_empty());
        for (img, _) in rows {
            assert_eq!(image_shard(&img), shard, "{img} is in its own shard");
        }
    }
    assert!(used > 1, "48 images spread over several shards");
    for img in &images[..40] {
        ok("index", s.index_image_keys(img, &[]).await);
    }
    assert_eq!(
        ok("images_for_key", s.images_for_key(&k).await),
        images[40..].to_vec()
    );
    for img in &images[40..] {
        ok("index", s.index_image_keys(img, &[]).await);
    }
    assert!(ok("images_for_key", s.images_for_key(&k).await).is_empty());
}

/// History is bounded per (image, tag): the newest evaluations are kept, whatever the
/// order they were written in; other tags and images keep their own.
async fn typed_evaluation_history_bound(s: &Store, x: &str) {
    let s = s.clone().with_evaluation_history_limit(3);
    let d = format!("sha256:{x}bounded");
    let t = "registry.example/app:1";
    let t2 = "registry.example/app:10";
    for at in [5, 1, 2, 3, 4] {
        ok(
            "put_evaluation",
            s.put_evaluation(&sample_evaluation(&d, t, at, Action::Go))
                .await,
        );
    }
    for at in [7, 6] {
        ok(
            "put_evaluation",
            s.put_evaluation(&sample_evaluation(&d, t2, at, Action::Warn))
                .await,
        );
    }
    let times = |h: Vec<Evaluation>| h.into_iter().map(|e| e.evaluated_at).collect::<Vec<_>>();
    assert_eq!(
        times(ok("history", s.evaluation_history(&d, t).await)),
        vec![3, 4, 5],
        "the newest evaluations of the tag are kept, oldest first"
    );
    assert_eq!(
        times(ok("history", s.evaluation_history(&d, t2).await)),
        vec![6, 7],
        "another tag keeps its own"
    );
    // An evaluation older than those kept is not kept.
    ok(
        "put_evaluation",
        s.put_evaluation(&sample_evaluation(&d, t, 0, Action::Stop))
            .await,
    );
    assert_eq!(
        times(ok("history", s.evaluation_history(&d, t).await)),
        vec![3, 4, 5]
    );
    assert_eq!(
        ok("latest", s.latest_evaluation(&d, t).await).map(|e| e.evaluated_at),
        Some(5)
    );

    // The same bound when the caller hands over the history it has just read.
    let d2 = format!("sha256:{x}bounded-after");
    for at in [5, 1, 2, 3, 4, 0] {
        let history = ok("history", s.evaluation_history(&d2, t).await);
        ok(
            "put_evaluation_after",
            s.put_evaluation_after(&sample_evaluation(&d2, t, at, Action::Go), &history)
                .await,
        );
    }
    assert_eq!(
        times(ok("history", s.evaluation_history(&d2, t).await)),
        vec![3, 4, 5],
        "bounded from the history handed over"
    );
}

/// The index of evaluated images: every (image, tag) recorded, once each, by digest
/// then tag, from every shard and from the unsharded partition of older versions.
async fn typed_evaluated_index(s: &Store, x: &str) {
    let b = s.backend();
    let mine = |all: Vec<(String, String)>| -> Vec<(String, String)> {
        all.into_iter()
            .filter(|(d, _)| d.starts_with(&format!("sha256:{x}")))
            .collect()
    };
    assert!(mine(ok("evaluated_images", s.evaluated_images().await)).is_empty());
    let pairs: Vec<(String, String)> = (0..20)
        .flat_map(|i| {
            let d = format!("sha256:{x}ev{i:02}");
            [
                (d.clone(), "registry.example/app:1".to_string()),
                (d, "registry.example/app:2".to_string()),
            ]
        })
        .collect();
    for (d, t) in pairs.iter().rev() {
        ok("index_evaluated", s.index_evaluated(d, t).await);
    }
    // Again: no duplicates.
    ok(
        "index_evaluated",
        s.index_evaluated(&pairs[0].0, &pairs[0].1).await,
    );
    // Rows of the unsharded index of an older version: one new, one also indexed now.
    let legacy = (
        format!("sha256:{x}legacy"),
        "registry.example/old:1".to_string(),
    );
    for (d, t) in [&legacy, &pairs[3]] {
        ok(
            "put",
            b.put(
                Table::Meta,
                EVALUATED_INDEX,
                &format!("{d}|{t}"),
                Vec::new(),
            )
            .await,
        );
    }
    let mut want = pairs.clone();
    want.push(legacy.clone());
    want.sort();
    assert_eq!(
        mine(ok("evaluated_images", s.evaluated_images().await)),
        want,
        "every evaluated (image, tag), once, sorted"
    );
    // Clean up (the index partitions are global).
    for (d, t) in [&legacy, &pairs[3]] {
        ok(
            "delete",
            b.delete(Table::Meta, EVALUATED_INDEX, &format!("{d}|{t}"))
                .await,
        );
    }
    for (d, t) in &pairs {
        ok(
            "delete",
            b.delete(
                Table::Meta,
                &shard_partition(EVALUATED_INDEX, image_shard(d)),
                &format!("{d}|{t}"),
            )
            .await,
        );
    }
    assert!(mine(ok("evaluated_images", s.evaluated_images().await)).is_empty());
}

// ---- watch, subscriptions, events, deliveries -----------------------------------------

async fn typed_watch_rows(store: &Store, x: &str) {
    use vigil_contracts::watch::*;
    // Subscriptions: by account, and by (type, key) across accounts.
    let tag = format!("{x}reg/app:1");
    let sub = |account: &str, kind, active| Subscription {
        account: account.into(),
        kind,
        key: tag.clone(),
        active,
        digests: Vec::new(),
        created_at: 1,
        updated_at: 2,
    };
    let a = format!("{x}acct-a");
    let b = format!("{x}acct-b");
    store
        .put_subscription(&sub(&a, SubscriptionKind::VulnUpdate, true))
        .await
        .unwrap();
    store
        .put_subscription(&sub(&a, SubscriptionKind::TagUpdate, false))
        .await
        .unwrap();
    store
        .put_subscription(&sub(&b, SubscriptionKind::VulnUpdate, false))
        .await
        .unwrap();
    let mine = store.list_subscriptions(&a).await.unwrap();
    assert_eq!(
        mine.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [SubscriptionKind::TagUpdate, SubscriptionKind::VulnUpdate],
        "an account's subscriptions, by type"
    );
    let for_key = store
        .subscriptions_for(SubscriptionKind::VulnUpdate, &tag)
        .await
        .unwrap();
    assert_eq!(
        for_key
            .iter()
            .map(|s| (s.account.as_str(), s.active))
            .collect::<Vec<_>>(),
        [(a.as_str(), true), (b.as_str(), false)],
        "every account's subscription to one type and key"
    );
    assert!(store
        .delete_subscription(&a, SubscriptionKind::VulnUpdate, &tag)
        .await
        .unwrap());
    assert!(!store
        .delete_subscription(&a, SubscriptionKind::VulnUpdate, &tag)
        .await
        .unwrap());
    assert_eq!(store.list_subscriptions(&a).await.unwrap().len(), 1);
    assert_eq!(
        store
            .subscriptions_for(SubscriptionKind::VulnUpdate, &tag)
            .await
            .unwrap()
            .len(),
        1
    );

    // Watched tags over the shards, and repositories.
    let tags: Vec<String> = (0..40).map(|i| format!("{x}reg/app:{i:02}")).collect();
    for t in &tags {
        store
            .put_watched_tag(&WatchedTag {
                account: DEFAULT_ACCOUNT.into(),
                tag: t.clone(),
                interval_secs: Some(5),
                active: true,
                from_repo: None,
                digest: None,
                last_checked_at: None,
                last_error: None,
                failures: 0,
                created_at: 1,
            })
            .await
            .unwrap();
    }
    let listed: Vec<String> = store
        .list_watched_tags()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.tag)
        .filter(|t| t.starts_with(x))
        .collect();
    assert_eq!(listed, tags, "every watched tag once, in order");
    let mut w = store.get_watched_tag(&tags[3]).await.unwrap().unwrap();
    w.digest = Some("sha256:new".into());
    store.put_watched_tag(&w).await.unwrap();
    assert_eq!(store.get_watched_tag(&tags[3]).await.unwrap().unwrap(), w);
    store.delete_watched_tag(&tags[3]).await.unwrap();
    assert!(store.get_watched_tag(&tags[3]).await.unwrap().is_none());

    let repo = WatchedRepo {
        account: DEFAULT_ACCOUNT.into(),
        repo: format!("{x}reg/app"),
        interval_secs: None,
        active: true,
        autosubscribe: true,
        tag_filter: None,
        tags: vec!["1".into()],
        last_checked_at: Some(3),
        last_error: None,
        failures: 0,
        created_at: 1,
    };
    store.put_watched_repo(&repo).await.unwrap();
    assert_eq!(
        store.get_watched_repo(&repo.repo).await.unwrap(),
        Some(repo.clone())
    );
    assert!(store.list_watched_repos().await.unwrap().contains(&repo));
    store.delete_watched_repo(&repo.repo).await.unwrap();
    assert!(store.get_watched_repo(&repo.repo).await.unwrap().is_none());

    // Tag history: oldest first, bounded; the same entry twice is one row.
    for i in 0..(crate::typed::watch::TAG_HISTORY_LIMIT as i64 + 5) {
        let e = TagHistoryEntry {
            tag: tag.clone(),
            digest: format!("sha256:{i:04}"),
            seen_at: 1_000 + i,
        };
        store.add_tag_history(&e).await.unwrap();
        store.add_tag_history(&e).await.unwrap();
    }
    let h = store.tag_history(&tag).await.unwrap();
    assert_eq!(
        h.len(),
        crate::typed::watch::TAG_HISTORY_LIMIT,
        "history bounded"
    );
    assert_eq!(h[0].digest, "sha256:0005", "the oldest entries go first");
    assert_eq!(h.last().unwrap().digest, "sha256:0104");

    let removed = RemovedTag {
        repo: repo.repo.clone(),
        tag: "old".into(),
        last_digest: Some("sha256:1".into()),
        removed_at: 9,
    };
    store.add_removed_tag(&removed).await.unwrap();
    assert_eq!(store.removed_tags(&repo.repo).await.unwrap(), vec![removed]);

    // Ingestion: progress and first-time marks.
    let id = format!("{x}ingest");
    assert!(store.get_ingest_progress(&id).await.unwrap().is_none());
    let p = IngestProgress {
        id: id.clone(),
        registry: "reg".into(),
        prefix: String::new(),
        state: IngestState::Running,
        repositories: 3,
        repositories_done: 1,
        cursor: Some("a/b".into()),
        catalog_complete: false,
        queued: 2,
        skipped: 1,
        errors: 0,
        last_error: None,
        started_at: 1,
        updated_at: 2,
    };
    store.put_ingest_progress(&p).await.unwrap();
    assert_eq!(
        store.get_ingest_progress(&id).await.unwrap(),
        Some(p.clone())
    );
    assert!(store.list_ingest_progress().await.unwrap().contains(&p));
    assert!(!store.was_ingested(&id, "sha256:aa").await.unwrap());
    assert!(store.mark_ingested(&id, "sha256:aa").await.unwrap());
    assert!(
        !store.mark_ingested(&id, "sha256:aa").await.unwrap(),
        "second mark is not first"
    );
    assert!(store.was_ingested(&id, "sha256:aa").await.unwrap());
    assert!(!store
        .was_ingested(&format!("{x}other"), "sha256:aa")
        .await
        .unwrap());
}

async fn typed_events(store: &Store, x: &str) {
    use vigil_contracts::watch::*;
    const DAY: i64 = 86_400_000;
    // Far in the past, so that this run's days are its own (and prunable).
    let base = 1_000 * DAY + (x.len() as i64 % 7) * DAY;
    let ev = |i: i64, level, kind: &str| Event {
        id: format!("{x}e{i}"),
        account: DEFAULT_ACCOUNT.into(),
        level,
        kind: kind.into(),
        resource: format!("{x}res{}", i % 2),
        message: format!("event {i}"),
        details: Default::default(),
        at: base + i * (DAY / 2),
    };
    for i in 0..6 {
        let level = if i % 3 == 0 {
            EventLevel::Error
        } else {
            EventLevel::Info
        };
        store
            .put_event(&ev(i, level, if i < 3 { "a" } else { "b" }))
            .await
            .unwrap();
    }
    store
        .put_event(&ev(5, EventLevel::Info, "b"))
        .await
        .unwrap();
    let window = EventFilter {
        since: Some(base),
        until: Some(base + 10 * DAY),
        resource: Some(x.to_string()),
        ..Default::default()
    };
    let all = store.list_events(&window, base + DAY).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        (0..6).rev().map(|i| format!("{x}e{i}")).collect::<Vec<_>>(),
        "every event once, newest first, across days"
    );
    let errors = store
        .list_events(
            &EventFilter {
                level: Some(EventLevel::Error),
                ..window.clone()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 2);
    let kind_b = store
        .list_events(
            &EventFilter {
                kind: Some("b".into()),
                limit: Some(2),
                ..window.clone()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        kind_b.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        [format!("{x}e5"), format!("{x}e4")]
    );
    let res1 = store
        .list_events(
            &EventFilter {
                resource: Some(format!("{x}res1")),
                ..window.clone()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(res1.len(), 3);
    // Pruning drops whole days before the cutoff.
    store.prune_events(base + DAY).await.unwrap();
    let left = store.list_events(&window, 0).await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        (2..6).rev().map(|i| format!("{x}e{i}")).collect::<Vec<_>>(),
        "events of the pruned day are gone, the rest stay"
    );
    store.prune_events(base + 10 * DAY).await.unwrap();
}

async fn typed_deliveries(store: &Store, x: &str) {
    use vigil_contracts::watch::*;
    let n = Notification {
        id: format!("{x}n1"),
        kind: NotificationKind::VulnUpdate,
        subscription_key: "reg/app:1".into(),
        image_digest: None,
        request_id: None,
        payload: NotificationPayload::TagUpdate {
            previous_digests: vec![],
            current_digest: "sha256:1".into(),
        },
        created_at: 1,
    };
    let endpoint = format!("{x}general");
    let task = DeliveryTask {
        endpoint: endpoint.clone(),
        account: DEFAULT_ACCOUNT.into(),
        body: DeliveryBody::Notification(n.clone()),
        queued_at: 1,
    };
    let log = DeliveryLog {
        delivery_id: task.delivery_id(),
        endpoint: endpoint.clone(),
        account: DEFAULT_ACCOUNT.into(),
        body_id: n.id.clone(),
        body_type: "vuln_update".into(),
        url: "http://h/".into(),
        state: DeliveryState::Pending,
        attempts: vec![DeliveryAttempt {
            at: 2,
            status: Some(500),
            error: None,
            took_ms: 3,
        }],
        attempt_count: 1,
        last_error: Some("500".into()),
        first_attempt_at: 2,
        updated_at: 2,
    };
    store.put_delivery_log(&log).await.unwrap();
    assert_eq!(store.delivery_logs(&n.id).await.unwrap(), vec![log.clone()]);
    assert_eq!(
        store
            .get_delivery_log(&n.id, &log.delivery_id)
            .await
            .unwrap(),
        Some(log.clone())
    );
    let dead = DeadDelivery {
        task: task.clone(),
        attempts: 9,
        last_error: Some("timeout".into()),
        given_up_at: 5,
    };
    store.put_dead_delivery(&dead).await.unwrap();
    assert_eq!(
        store.list_dead_deliveries(Some(&endpoint)).await.unwrap(),
        vec![dead.clone()]
    );
    assert!(store
        .list_dead_deliveries(None)
        .await
        .unwrap()
        .contains(&dead));
    store
        .delete_dead_delivery(&endpoint, &task.delivery_id())
        .await
        .unwrap();
    assert!(store
        .list_dead_deliveries(Some(&endpoint))
        .await
        .unwrap()
        .is_empty());
}
