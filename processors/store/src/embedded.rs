//! The embedded backend: one redb file. redb is a pure-Rust, single-file, ACID
//! (copy-on-write B-tree) store that is actively maintained and needs no C library;
//! every logical table is one redb table keyed by `(partition, sort)`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::backend::{Backend, Table, Write};
use crate::StoreError;

type Def = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

fn def(t: Table) -> Def {
    TableDefinition::new(t.name())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {e}"))
}

/// A redb database shared by all handles.
///
/// Reads run on the blocking pool. Writes go through one writer thread that commits
/// every batch waiting at that moment in a single transaction (group commit): each
/// caller still returns only after its writes are durable, but many concurrent writers
/// share one fsync instead of paying one each.
#[derive(Clone)]
pub struct EmbeddedBackend {
    db: Arc<Database>,
    writer: Arc<Writer>,
}

/// The writer thread's queue; dropping the last handle stops the thread and waits for
/// it, so the file is closed when the backend is gone (and can be opened again).
struct Writer {
    queue: Option<std::sync::mpsc::Sender<WriteJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// redb's page cache. Its default (1 GiB) keeps every page a scan reads or writes, and a
/// scan touches each large record (layer index, analysis) once or twice: with the default,
/// a cold python-app scan peaked at 60–66 MiB, with 1 MiB at 50–59 MiB and no slower
/// (the operating system's page cache still serves re-reads).
const CACHE_BYTES: usize = 1 << 20;

/// Most jobs committed in one transaction.
const MAX_GROUP: usize = 256;

enum WriteOp {
    Batch(Vec<Write>),
    PutIfAbsent {
        table: Table,
        partition: String,
        sort: String,
        value: Vec<u8>,
    },
}

struct WriteJob {
    op: WriteOp,
    done: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
}

impl EmbeddedBackend {
    /// Open or create the file, and create every table that is missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(err)?;
        // A write (and its fsync) only when a table is missing: a new file, or one from
        // a vigil with fewer tables.
        let existing: std::collections::HashSet<String> = db
            .begin_read()
            .map_err(err)?
            .list_tables()
            .map_err(err)?
            .map(|h| h.name().to_string())
            .collect();
        if Table::ALL.iter().any(|t| !existing.contains(t.name())) {
            let tx = db.begin_write().map_err(err)?;
            for t in Table::ALL {
                tx.open_table(def(t)).map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        let db = Arc::new(db);
        let (queue, jobs) = std::sync::mpsc::channel::<WriteJob>();
        let wdb = db.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-redb-writer".into())
            .spawn(move || write_loop(&wdb, jobs))
            .map_err(err)?;
        let writer = Arc::new(Writer {
            queue: Some(queue),
            thread: Some(thread),
        });
        Ok(EmbeddedBackend { db, writer })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
    }

    async fn submit(&self, op: WriteOp) -> Result<bool, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.writer
            .queue
            .as_ref()
            .ok_or_else(|| err("the store is closed"))?
            .send(WriteJob { op, done })
            .map_err(|_| err("the writer thread has stopped"))?;
        wait.await
            .map_err(|_| err("the writer thread dropped a write"))?
    }
}

/// The writer thread: block for one job, take whatever else is queued, commit them
/// together. Ends when every handle is dropped.
fn write_loop(db: &Database, jobs: std::sync::mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        match commit_group(db, &group) {
            Ok(results) => {
                for (job, r) in group.into_iter().zip(results) {
                    let _ = job.done.send(Ok(r));
                }
            }
            // One failing job must not fail the others: redo each alone so that every
            // caller gets its own outcome.
            Err(_) => {
                for job in group {
                    let r = commit_group(db, std::slice::from_ref(&job)).map(|v| v[0]);
                    let _ = job.done.send(r);
                }
            }
        }
    }
}

fn commit_group(db: &Database, group: &[WriteJob]) -> Result<Vec<bool>, StoreError> {
    let tx = db.begin_write().map_err(err)?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        results.push(match &job.op {
            WriteOp::Batch(writes) => {
                for w in writes {
                    apply(&tx, w)?;
                }
                true
            }
            WriteOp::PutIfAbsent {
                table,
                partition,
                sort,
                value,
            } => {
                let mut t = tx.open_table(def(*table)).map_err(err)?;
                let key = (partition.as_str(), sort.as_str());
                if t.get(key).map_err(err)?.is_some() {
                    false
                } else {
                    t.insert(key, value.as_slice()).map_err(err)?;
                    true
                }
            }
        });
    }
    tx.commit().map_err(err)?;
    Ok(results)
}

fn apply(tx: &redb::WriteTransaction, w: &Write) -> Result<(), StoreError> {
    match w {
        Write::Put {
            table,
            partition,
            sort,
            value,
        } => {
            let mut t = tx.open_table(def(*table)).map_err(err)?;
            t.insert((partition.as_str(), sort.as_str()), value.as_slice())
                .map_err(err)?;
        }
        Write::Delete {
            table,
            partition,
            sort,
        } => {
            let mut t = tx.open_table(def(*table)).map_err(err)?;
            t.remove((partition.as_str(), sort.as_str())).map_err(err)?;
        }
    }
    Ok(())
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn put(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write_batch(vec![Write::Put {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
            value,
        }])
        .await
    }

    async fn put_if_absent(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.submit(WriteOp::PutIfAbsent {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
            value,
        })
        .await
    }

    async fn get(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (p, s) = (partition.to_string(), sort.to_string());
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(def(table)).map_err(err)?;
            Ok(t.get((p.as_str(), s.as_str()))
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let p = partition.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(def(table)).map_err(err)?;
            let mut out = Vec::new();
            for row in t.range((p.as_str(), "")..).map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let (kp, ks) = k.value();
                if kp != p {
                    break;
                }
                out.push((ks.to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, table: Table, partition: &str, sort: &str) -> Result<(), StoreError> {
        self.write_batch(vec![Write::Delete {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
        }])
        .await
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.submit(WriteOp::Batch(writes)).await.map(|_| ())
    }
}
