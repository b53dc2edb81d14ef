//! The embedded backend: one redb file. redb is a pure-Rust, single-file, ACID
//! (copy-on-write B-tree) store that is actively maintained and needs no C library;
//! every logical table is one redb table keyed by `(partition, sort)`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

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

/// When a write call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Once its transaction is committed and synced to disk: what every long-running
    /// process uses.
    #[default]
    Durable,
    /// At once. The write is queued for the writer thread and, until committed, kept in
    /// memory, where this backend's reads see it (`put_if_absent` decides from those
    /// and the table, without waiting for earlier writes to be committed).
    /// [`Backend::flush`] waits until every queued write is on disk and reports a failed
    /// one. For a one-shot process whose writes only need to be on disk when it ends
    /// (`vigil scan`): the commits of one stage's writes then overlap the next stage's
    /// work. A write that fails makes every later call fail with its error.
    Deferred,
}

/// A redb database shared by all handles.
///
/// Reads run on the blocking pool. Writes go through one writer thread that commits
/// every batch waiting at that moment in a single transaction (group commit): with
/// [`WriteMode::Durable`] each caller still returns only after its writes are durable,
/// but many concurrent writers share one fsync instead of paying one each.
#[derive(Clone)]
pub struct EmbeddedBackend {
    db: Arc<Database>,
    writer: Arc<Writer>,
    mode: WriteMode,
    pending: Arc<Mutex<Pending>>,
}

type Key = (Table, String, String);

/// A deferred row's value, shared by the queue and [`Pending`]; `None` deletes the row.
type RowValue = Option<Arc<Vec<u8>>>;

/// Deferred writes not yet committed, by key: the newest one's sequence number and its
/// value (`None`: deleted). The writer thread removes a row once the write that put it
/// there is committed, unless a newer write of the key replaced it meanwhile.
#[derive(Default)]
struct Pending {
    rows: HashMap<Key, (u64, RowValue)>,
    next: u64,
    /// The first deferred write that failed to commit.
    failed: Option<String>,
    /// Unit tests make every commit that writes this sort key fail.
    #[cfg(test)]
    unwritable_sort_key: Option<String>,
}

impl Pending {
    fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(e) => Err(StoreError::Backend(format!(
                "an earlier write to the embedded store failed: {e}"
            ))),
            None => Ok(()),
        }
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // The lock is never held across a panic that could leave `Pending` half-changed.
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The writer thread's queue; dropping the last handle stops the thread and waits for
/// it (after it has committed every queued write), so the file is closed when the
/// backend is gone (and can be opened again).
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
    /// Deferred writes, each with its sequence number in [`Pending`].
    Deferred(Vec<(Key, u64, RowValue)>),
    /// Answered once every job queued before it is committed; writes nothing.
    Barrier,
}

struct WriteJob {
    op: WriteOp,
    /// `None` for deferred writes: nobody waits for them.
    done: Option<tokio::sync::oneshot::Sender<Result<bool, StoreError>>>,
}

impl EmbeddedBackend {
    /// Open or create the file, and create every table that is missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, WriteMode::Durable)
    }

    /// [`EmbeddedBackend::open`] with the given [`WriteMode`].
    pub fn open_with(path: &Path, mode: WriteMode) -> Result<Self, StoreError> {
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
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (queue, jobs) = std::sync::mpsc::channel::<WriteJob>();
        let (wdb, wpending) = (db.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("vigil-redb-writer".into())
            .spawn(move || write_loop(&wdb, &wpending, jobs))
            .map_err(err)?;
        let writer = Arc::new(Writer {
            queue: Some(queue),
            thread: Some(thread),
        });
        Ok(EmbeddedBackend {
            db,
            writer,
            mode,
            pending,
        })
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

    fn send(&self, job: WriteJob) -> Result<(), StoreError> {
        self.writer
            .queue
            .as_ref()
            .ok_or_else(|| err("the store is closed"))?
            .send(job)
            .map_err(|_| err("the writer thread has stopped"))
    }

    async fn submit(&self, op: WriteOp) -> Result<bool, StoreError> {
        lock(&self.pending).check()?;
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(WriteJob {
            op,
            done: Some(done),
        })?;
        let r = wait
            .await
            .map_err(|_| err("the writer thread dropped a write"))??;
        lock(&self.pending).check()?;
        Ok(r)
    }

    /// Queue writes without waiting for their commit ([`WriteMode::Deferred`]).
    fn defer(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut pending = lock(&self.pending);
        pending.check()?;
        self.defer_locked(&mut pending, writes)
    }

    /// [`EmbeddedBackend::defer`] with the lock of `pending` held.
    fn defer_locked(&self, pending: &mut Pending, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(writes.len());
        for w in writes {
            let (key, value) = match w {
                Write::Put {
                    table,
                    partition,
                    sort,
                    value,
                } => ((table, partition, sort), Some(Arc::new(value))),
                Write::Delete {
                    table,
                    partition,
                    sort,
                } => ((table, partition, sort), None),
            };
            pending.next += 1;
            let seq = pending.next;
            pending.rows.insert(key.clone(), (seq, value.clone()));
            rows.push((key, seq, value));
        }
        // Queued while the lock is held, so that the queue's order of two writes of one
        // key is the order in which they entered `pending`.
        self.send(WriteJob {
            op: WriteOp::Deferred(rows),
            done: None,
        })
    }

    /// `put_if_absent` with deferred writes: decided at once, from the pending rows and
    /// the committed table, with the lock of `pending` held throughout, so that no write
    /// of the key can be queued or committed in between. Blocking (a read).
    fn put_if_absent_deferred(&self, key: Key, value: Vec<u8>) -> Result<bool, StoreError> {
        let mut pending = lock(&self.pending);
        pending.check()?;
        let present = match pending.rows.get(&key) {
            Some((_, value)) => value.is_some(),
            None => {
                let tx = self.db.begin_read().map_err(err)?;
                let t = tx.open_table(def(key.0)).map_err(err)?;
                t.get((key.1.as_str(), key.2.as_str()))
                    .map_err(err)?
                    .is_some()
            }
        };
        if present {
            return Ok(false);
        }
        let (table, partition, sort) = key;
        self.defer_locked(
            &mut pending,
            vec![Write::Put {
                table,
                partition,
                sort,
                value,
            }],
        )?;
        Ok(true)
    }

    /// A deferred write of the key not yet committed: `Some(None)` when it deletes.
    fn pending_row(&self, key: &Key) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let pending = lock(&self.pending);
        pending.check()?;
        Ok(pending
            .rows
            .get(key)
            .map(|(_, v)| v.as_ref().map(|v| v.as_ref().clone())))
    }

    /// The deferred writes not yet committed in one partition, by sort key.
    fn pending_partition(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, RowValue)>, StoreError> {
        let pending = lock(&self.pending);
        pending.check()?;
        Ok(pending
            .rows
            .iter()
            .filter(|((t, p, _), _)| *t == table && p == partition)
            .map(|((_, _, s), (_, v))| (s.clone(), v.clone()))
            .collect())
    }
}

/// The writer thread: block for one job, take whatever else is queued, commit them
/// together. Ends when every handle is dropped.
fn write_loop(db: &Database, pending: &Mutex<Pending>, jobs: std::sync::mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        match commit_group(db, pending, &group) {
            Ok(results) => {
                for (job, r) in group.into_iter().zip(results) {
                    finish(pending, job, Ok(r));
                }
            }
            // One failing job must not fail the others: redo each alone so that every
            // caller gets its own outcome.
            Err(_) => {
                for job in group {
                    let r = commit_group(db, pending, std::slice::from_ref(&job)).map(|v| v[0]);
                    finish(pending, job, r);
                }
            }
        }
    }
}

/// Answer a committed (or failed) job. A deferred write leaves `pending` (its rows that
/// no newer write replaced); a failed one is kept as the error of every later call.
fn finish(pending: &Mutex<Pending>, job: WriteJob, r: Result<bool, StoreError>) {
    if let WriteOp::Deferred(rows) = &job.op {
        let mut p = lock(pending);
        if let Err(e) = &r {
            p.failed.get_or_insert_with(|| e.to_string());
        }
        for (key, seq, _) in rows {
            if p.rows.get(key).is_some_and(|(s, _)| s == seq) {
                p.rows.remove(key);
            }
        }
    }
    if let Some(done) = job.done {
        let _ = done.send(r);
    }
}

fn commit_group(
    db: &Database,
    pending: &Mutex<Pending>,
    group: &[WriteJob],
) -> Result<Vec<bool>, StoreError> {
    if group.iter().all(|j| matches!(j.op, WriteOp::Barrier)) {
        return Ok(vec![true; group.len()]);
    }
    #[cfg(test)]
    if let Some(bad) = lock(pending).unwritable_sort_key.clone() {
        let writes_it = |op: &WriteOp| match op {
            WriteOp::Batch(w) => w.iter().any(|w| match w {
                Write::Put { sort, .. } | Write::Delete { sort, .. } => *sort == bad,
            }),
            WriteOp::PutIfAbsent { sort, .. } => *sort == bad,
            WriteOp::Deferred(rows) => rows.iter().any(|((_, _, s), _, _)| *s == bad),
            WriteOp::Barrier => false,
        };
        if group.iter().any(|j| writes_it(&j.op)) {
            return Err(err(format!("cannot write {bad}")));
        }
    }
    #[cfg(not(test))]
    let _ = pending;
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
            WriteOp::Deferred(rows) => {
                for ((table, partition, sort), _, value) in rows {
                    let mut t = tx.open_table(def(*table)).map_err(err)?;
                    let key = (partition.as_str(), sort.as_str());
                    match value {
                        Some(v) => t.insert(key, v.as_slice()).map(drop),
                        None => t.remove(key).map(drop),
                    }
                    .map_err(err)?;
                }
                true
            }
            WriteOp::Barrier => true,
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
        if self.mode == WriteMode::Deferred {
            let this = self.clone();
            let key = (table, partition.to_string(), sort.to_string());
            return tokio::task::spawn_blocking(move || this.put_if_absent_deferred(key, value))
                .await
                .map_err(err)?;
        }
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
        let key = (table, partition.to_string(), sort.to_string());
        if self.mode == WriteMode::Deferred {
            if let Some(v) = self.pending_row(&key)? {
                return Ok(v);
            }
        }
        self.read_row(key).await
    }

    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Pending rows are taken before the committed ones are read: a row committed in
        // between is then in one of the two.
        let pending = match self.mode {
            WriteMode::Deferred => self.pending_partition(table, partition)?,
            WriteMode::Durable => Vec::new(),
        };
        let mut rows = self.read_partition(table, partition.to_string()).await?;
        if !pending.is_empty() {
            let mut merged: std::collections::BTreeMap<String, Vec<u8>> =
                rows.into_iter().collect();
            for (sort, value) in pending {
                match value {
                    Some(v) => merged.insert(sort, v.as_ref().clone()),
                    None => merged.remove(&sort),
                };
            }
            rows = merged.into_iter().collect();
        }
        Ok(rows)
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
        match self.mode {
            WriteMode::Durable => self.submit(WriteOp::Batch(writes)).await.map(|_| ()),
            WriteMode::Deferred => self.defer(writes),
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.submit(WriteOp::Barrier).await.map(|_| ())
    }
}

impl EmbeddedBackend {
    async fn read_row(&self, (table, p, s): Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(def(table)).map_err(err)?;
            Ok(t.get((p.as_str(), s.as_str()))
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn read_partition(
        &self,
        table: Table,
        p: String,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(mode: WriteMode) -> (tempfile::TempDir, EmbeddedBackend) {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open_with(&dir.path().join("s.redb"), mode).unwrap();
        (dir, b)
    }

    fn make_unwritable(b: &EmbeddedBackend, sort: &str) {
        lock(&b.pending).unwritable_sort_key = Some(sort.to_string());
    }

    #[tokio::test]
    async fn a_failed_deferred_write_fails_flush_and_every_later_call() {
        let (_dir, b) = open(WriteMode::Deferred);
        b.put(Table::Meta, "m", "ok", b"1".to_vec()).await.unwrap();
        b.flush().await.unwrap();
        make_unwritable(&b, "lost");
        // The write itself returns at once; its failure comes with the next calls.
        b.put(Table::Meta, "m", "lost", b"2".to_vec())
            .await
            .unwrap();
        let e = b.flush().await.unwrap_err().to_string();
        assert!(e.contains("cannot write lost"), "{e}");
        for e in [
            b.get(Table::Meta, "m", "ok").await.unwrap_err(),
            b.list(Table::Meta, "m").await.unwrap_err(),
            b.put(Table::Meta, "m", "x", vec![]).await.unwrap_err(),
            b.put_if_absent(Table::Meta, "m", "y", vec![])
                .await
                .unwrap_err(),
            b.flush().await.unwrap_err(),
        ] {
            assert!(e.to_string().contains("an earlier write"), "{e}");
        }
        // The failed write's row is not kept in memory.
        assert!(lock(&b.pending).rows.is_empty());
    }

    #[tokio::test]
    async fn a_failed_durable_write_fails_only_its_own_call() {
        let (_dir, b) = open(WriteMode::Durable);
        make_unwritable(&b, "bad");
        let e = b.put(Table::Meta, "m", "bad", b"1".to_vec()).await;
        assert!(e.unwrap_err().to_string().contains("cannot write bad"));
        b.put(Table::Meta, "m", "k", b"2".to_vec()).await.unwrap();
        assert_eq!(
            b.get(Table::Meta, "m", "k").await.unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(b.get(Table::Meta, "m", "bad").await.unwrap(), None);
        b.flush().await.unwrap();
    }

    #[tokio::test]
    async fn committed_deferred_writes_leave_memory() {
        let (_dir, b) = open(WriteMode::Deferred);
        for i in 0..50 {
            b.put(Table::Meta, "m", &format!("{i:02}"), vec![i as u8; 4096])
                .await
                .unwrap();
        }
        b.put(Table::Meta, "m", "07", b"newer".to_vec())
            .await
            .unwrap();
        b.flush().await.unwrap();
        assert!(lock(&b.pending).rows.is_empty());
        let rows = b.list(Table::Meta, "m").await.unwrap();
        assert_eq!(rows.len(), 50);
        assert_eq!(rows[7], ("07".to_string(), b"newer".to_vec()));
    }
}
