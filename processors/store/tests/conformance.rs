//! Runs the conformance suite on the embedded backend always, and on ScyllaDB when
//! `VIGIL_SCYLLA_NODES` (comma-separated `host:port`) is set; keyspace from
//! `VIGIL_SCYLLA_KEYSPACE` (default `vigil_test`). See `infra/scylla/README.md`.

use std::sync::Arc;

use serde::Serialize;
use vigil_contracts::codec::{self, CodecError};
use vigil_store::conformance;
use vigil_store::scylla_backend::{Consistency, ScyllaBackend, ScyllaOptions, SerialConsistency};
use vigil_store::{Store, StoreError, Table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("vigil.redb")).unwrap();
    conformance::run_all(&store).await;
    // A second run on the same database (fresh key prefixes) passes too.
    conformance::run_all(&store).await;
}

/// Deferred writes (`vigil scan`) keep every contract: a read sees the write made just
/// before it, whether or not the writer thread has committed it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_with_deferred_writes_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded_deferred(&dir.path().join("vigil.redb")).unwrap();
    conformance::run_all(&store).await;
    store.flush().await.unwrap();
    conformance::run_all(&store).await;
    store.flush().await.unwrap();
}

/// What a deferred store returned from is on disk after `flush`, and after the store is
/// dropped without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_writes_are_durable_after_flush_and_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.redb");
    let layer = conformance::sample_layer_index("sha256:layer-deferred", 7);
    let analysis = conformance::sample_analysis("sha256:deferred");
    {
        let store = Store::open_embedded_deferred(&path).unwrap();
        store.put_layer_index(&layer).await.unwrap();
        store.put_analysis(&analysis).await.unwrap();
        store.flush().await.unwrap();
        // Written after the flush, then deleted and written again: the last one wins.
        let b = store.backend();
        b.put(Table::Meta, "m", "k", b"first".to_vec())
            .await
            .unwrap();
        b.delete(Table::Meta, "m", "k").await.unwrap();
        b.put(Table::Meta, "m", "k", b"last".to_vec())
            .await
            .unwrap();
        b.put(Table::Meta, "m", "gone", b"x".to_vec())
            .await
            .unwrap();
        b.delete(Table::Meta, "m", "gone").await.unwrap();
        // Dropped with writes still queued: the writer thread commits them first.
    }
    let store = Store::open_embedded(&path).unwrap();
    assert_eq!(
        store
            .get_layer_index("sha256:layer-deferred")
            .await
            .unwrap(),
        Some(layer)
    );
    assert!(store
        .has_layer_index("sha256:layer-deferred", 7)
        .await
        .unwrap());
    assert_eq!(
        store.get_analysis("sha256:deferred").await.unwrap(),
        Some(analysis)
    );
    let meta = store.backend().list(Table::Meta, "m").await.unwrap();
    assert_eq!(meta, vec![("k".to_string(), b"last".to_vec())]);
}

/// An index written with `put_layer_index_shared` is handed to the next read of its
/// digest from memory, once; later reads, and indexes over the bound, come from the
/// table. (The table's copy is replaced behind the store's back to tell them apart.)
#[tokio::test]
async fn fresh_layer_indexes_are_handed_over_once_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("vigil.redb")).unwrap();
    let replace_row = |digest: &str, idx: &vigil_contracts::LayerIndex| {
        let (b, d, v) = (
            store.backend().clone(),
            digest.to_string(),
            codec::encode(idx).unwrap(),
        );
        async move { b.put(Table::LayerIndex, &d, "", v).await.unwrap() }
    };
    let fresh = conformance::sample_layer_index("sha256:fresh", 7);
    store
        .put_layer_index_shared(Arc::new(fresh.clone()))
        .await
        .unwrap();
    let mut other = fresh.clone();
    other.warnings = vec!["the table's copy".into()];
    replace_row("sha256:fresh", &other).await;
    assert_eq!(
        store.get_layer_index("sha256:fresh").await.unwrap(),
        Some(fresh)
    );
    assert_eq!(
        store.get_layer_index("sha256:fresh").await.unwrap(),
        Some(other.clone())
    );

    // Over the bound (50 000 entries): stored, not kept.
    let mut big = conformance::sample_layer_index("sha256:big", 7);
    let entry = big.entries[1].clone();
    big.entries = (0..50_001)
        .map(|i| vigil_contracts::FileEntry {
            path: format!("/f/{i}"),
            ..entry.clone()
        })
        .collect();
    store.put_layer_index_shared(Arc::new(big)).await.unwrap();
    replace_row("sha256:big", &other).await;
    assert_eq!(
        store.get_layer_index("sha256:big").await.unwrap(),
        Some(other)
    );
    assert!(store.has_layer_index("sha256:big", 7).await.unwrap());
}

/// A prefetched index reads as the stored one; a missing one as absent; an unreadable
/// one as the read's error, reported by `get_layer_index` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_layer_indexes_read_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded_deferred(&dir.path().join("vigil.redb")).unwrap();
    let stored = conformance::sample_layer_index("sha256:stored", 7);
    store.put_layer_index(&stored).await.unwrap();
    store.prefetch_layer_index("sha256:stored");
    store.prefetch_layer_index("sha256:stored");
    store.prefetch_layer_index("sha256:missing");
    assert_eq!(
        store.get_layer_index("sha256:stored").await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.get_layer_index("sha256:missing").await.unwrap(), None);
    // Handed over once; later reads read the table.
    assert_eq!(
        store.get_layer_index("sha256:stored").await.unwrap(),
        Some(stored)
    );

    store
        .backend()
        .put(
            Table::LayerIndex,
            "sha256:garbage",
            "",
            b"\x93not an envelope".to_vec(),
        )
        .await
        .unwrap();
    store.prefetch_layer_index("sha256:garbage");
    assert!(matches!(
        store.get_layer_index("sha256:garbage").await,
        Err(StoreError::Codec { .. })
    ));
    store.flush().await.unwrap();
}

/// The line printed when the ScyllaDB run is skipped.
const SCYLLA_SKIPPED: &str =
    "SKIPPED: ScyllaDB conformance suite — VIGIL_SCYLLA_NODES is not set; \
                              see infra/scylla/README.md";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_backend_conforms() {
    let nodes = match std::env::var("VIGIL_SCYLLA_NODES") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => {
            // On stderr, which the test harness shows even for a passing test run with
            // `--nocapture`, and which a CI log keeps: this test passed without testing.
            eprintln!("{SCYLLA_SKIPPED}");
            return;
        }
    };
    let nodes: Vec<String> = nodes
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let keyspace =
        std::env::var("VIGIL_SCYLLA_KEYSPACE").unwrap_or_else(|_| "vigil_test".to_string());
    let rf: u32 = std::env::var("VIGIL_SCYLLA_RF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let backend = ScyllaBackend::connect(&nodes, &keyspace, rf)
        .await
        .unwrap_or_else(|e| panic!("connect to ScyllaDB at {nodes:?}: {e}"));
    // Connecting again is idempotent (schema already there).
    let backend2 = ScyllaBackend::connect(&nodes, &keyspace, rf)
        .await
        .expect("second connect");
    let store = Store::new(Arc::new(backend));
    conformance::run_all(&store).await;
    eprintln!("ScyllaDB conformance run passed on {nodes:?}, keyspace {keyspace}");
    // Data written through one session is visible through another.
    let d = "sha256:cross-session";
    let a = conformance::sample_analysis(d);
    store.put_analysis(&a).await.unwrap();
    let other = Store::new(Arc::new(backend2));
    assert_eq!(other.get_analysis(d).await.unwrap(), Some(a));

    // Small limits: many batch parts, values chunked at a few KiB, statements not
    // marked idempotent, explicit consistency levels.
    let small = ScyllaOptions {
        replication_factor: rf,
        read_consistency: Consistency::Quorum,
        write_consistency: Consistency::Quorum,
        serial_consistency: SerialConsistency::Serial,
        idempotent: false,
        request_timeout: Some(std::time::Duration::from_secs(20)),
        batch_max_bytes: 4 * 1024,
        batch_max_statements: 50,
        chunk_threshold: 8 * 1024,
        chunk_size: 4 * 1024,
    };
    let backend = ScyllaBackend::connect_with(&nodes, &keyspace, small)
        .await
        .expect("connect with small limits");
    conformance::run_all(&Store::new(Arc::new(backend))).await;
    eprintln!("ScyllaDB conformance run with small batch and chunk limits passed");
}

#[tokio::test]
async fn embedded_store_is_durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/vigil.redb");
    let digest = "sha256:durable";
    let analysis = conformance::sample_analysis(digest);
    let layer = conformance::sample_layer_index("sha256:layer-durable", 7);
    {
        let store = Store::open_embedded(&path).unwrap();
        store.put_analysis(&analysis).await.unwrap();
        store.put_layer_index(&layer).await.unwrap();
        store
            .backend()
            .put(Table::Meta, "m", "k", b"v".to_vec())
            .await
            .unwrap();
        // The store (and its redb handle) is dropped here, closing the file.
    }
    let store = Store::open_embedded(&path).unwrap();
    assert_eq!(store.get_analysis(digest).await.unwrap(), Some(analysis));
    assert_eq!(
        store.get_layer_index("sha256:layer-durable").await.unwrap(),
        Some(layer)
    );
    assert!(store
        .has_layer_index("sha256:layer-durable", 7)
        .await
        .unwrap());
    assert_eq!(
        store.backend().get(Table::Meta, "m", "k").await.unwrap(),
        Some(b"v".to_vec())
    );
}

#[tokio::test]
async fn an_embedded_file_missing_a_table_gains_it_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.redb");
    // A file as an older vigil left it: some tables, not layer_version.
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        let def: redb::TableDefinition<(&str, &str), &[u8]> =
            redb::TableDefinition::new(Table::Meta.name());
        tx.open_table(def)
            .unwrap()
            .insert(("m", "k"), b"old".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open_embedded(&path).unwrap();
    // Every table is there (reads of a missing redb table fail) and old rows are kept.
    for t in Table::ALL {
        store.backend().get(t, "p", "s").await.unwrap();
    }
    assert_eq!(
        store.backend().get(Table::Meta, "m", "k").await.unwrap(),
        Some(b"old".to_vec())
    );
    let layer = conformance::sample_layer_index("sha256:layer-after-upgrade", 7);
    store.put_layer_index(&layer).await.unwrap();
    assert!(store
        .has_layer_index("sha256:layer-after-upgrade", 7)
        .await
        .unwrap());
}

/// An envelope as a newer vigil would write it.
#[derive(Serialize)]
struct FutureEnvelope<T> {
    schema_version: u32,
    record: String,
    body: T,
}

#[tokio::test]
async fn newer_schema_version_is_rejected_with_codec_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("vigil.redb")).unwrap();
    let digest = "sha256:from-the-future";
    let env = FutureEnvelope {
        schema_version: 99,
        record: "analysis".to_string(),
        body: conformance::sample_analysis(digest),
    };
    let bytes = rmp_serde::to_vec_named(&env).unwrap();
    store
        .backend()
        .put(Table::Analysis, digest, "", bytes)
        .await
        .unwrap();
    let err = store.get_analysis(digest).await.unwrap_err();
    match &err {
        StoreError::Codec { table, key, source } => {
            assert_eq!(*table, "analysis");
            assert_eq!(key, digest);
            assert!(
                matches!(
                    source,
                    CodecError::NewerSchema {
                        found: 99,
                        supported: codec::SCHEMA_VERSION,
                        ..
                    }
                ),
                "expected NewerSchema, got {source:?}"
            );
        }
        other => panic!("expected StoreError::Codec, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("analysis") && msg.contains(digest) && msg.contains("99"),
        "error must name the table, key and version: {msg}"
    );
    // The same check guards list reads.
    let ns = "debian:12|glibc";
    let env = FutureEnvelope {
        schema_version: 99,
        record: "advisory".to_string(),
        body: (),
    };
    store
        .backend()
        .put(
            Table::Advisories,
            ns,
            "CVE-1",
            rmp_serde::to_vec_named(&env).unwrap(),
        )
        .await
        .unwrap();
    let key = vigil_contracts::PackageKey {
        namespace: "debian:12".into(),
        package: "glibc".into(),
    };
    assert!(matches!(
        store.get_advisories(&key).await,
        Err(StoreError::Codec { .. })
    ));
}

/// `infra/scylla/schema.cql` holds exactly the tables `ScyllaBackend::connect` creates.
#[test]
fn schema_cql_matches_the_backend() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/scylla/schema.cql");
    let cql = std::fs::read_to_string(&path).unwrap();
    let mut stmts: Vec<String> = Table::ALL
        .iter()
        .map(|t| vigil_store::scylla_backend::create_table_cql("vigil", *t))
        .collect();
    stmts.push(vigil_store::scylla_backend::create_chunk_table_cql("vigil"));
    for stmt in &stmts {
        let stmt = format!("{stmt};");
        assert!(cql.contains(&stmt), "schema.cql lacks: {stmt}");
    }
    let creates = cql
        .lines()
        .filter(|l| l.starts_with("CREATE TABLE"))
        .count();
    assert_eq!(creates, stmts.len(), "schema.cql has extra tables");
    assert!(cql.contains(
        "CREATE KEYSPACE IF NOT EXISTS vigil\n  WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};"
    ));
}
