//! The ScyllaDB backend: every logical [`Table`] is one CQL table
//! `(p text, s text, v blob, PRIMARY KEY (p, s))`, so that every hot query reads one
//! partition. A thin mapping of the six [`Backend`] methods to prepared CQL statements,
//! prepared once per table on connect. The schema (also in `infra/scylla/schema.cql`)
//! is created on start with idempotent `CREATE ... IF NOT EXISTS` statements.
//!
//! What the mapping adds to keep within ScyllaDB's limits (all of it configurable in
//! [`ScyllaOptions`]):
//!
//! * **Batches** are split ([`split_batch`]) into unlogged batches of at most
//!   [`ScyllaOptions::batch_max_bytes`] of bound values (estimated: keys and value plus
//!   [`STATEMENT_OVERHEAD`] per statement; default 100 KiB, under ScyllaDB's
//!   `batch_size_warn_threshold_in_kb` of 128 and far under its
//!   `batch_size_fail_threshold_in_kb` of 1024) and at most
//!   [`ScyllaOptions::batch_max_statements`] statements (default 1,000; the protocol's
//!   limit is 65,535). A write over the byte limit goes alone, as a plain statement. The
//!   parts are sent side by side: every statement carries its own timestamp
//!   (`USING TIMESTAMP`, increasing in the order of the writes), so the last write of a
//!   row wins whatever order the parts land in. A batch is not atomic across its parts
//!   (nor is an unlogged batch across partitions): the typed store's batches are
//!   idempotent and written so that a repeated call repairs a partial one.
//! * **Large values** (over [`ScyllaOptions::chunk_threshold`], default 1 MiB: ScyllaDB
//!   warns on cells over 1 MB and refuses mutations over `max_mutation_size`, 16 MB by
//!   default) are stored as rows of the [`CHUNK_TABLE`] table of at most
//!   [`ScyllaOptions::chunk_size`] bytes each (default 512 KiB), one chunk partition per
//!   stored row ([`chunk_partition`]), each write under a fresh generation
//!   ([`chunk_sort`]). The row then holds a small pointer ([`ChunkPointer`], told apart
//!   from a value by [`CHUNK_POINTER_MAGIC`]; a value that starts with it is chunked
//!   whatever its size, so [`decode_cell`] never mistakes one). Chunks are written
//!   first, the pointer last, so a reader never sees half a value; a reader that finds a
//!   chunk gone (the value was replaced while it read) reads the row again. A write
//!   then deletes the row's older chunks: a chunked write deletes the chunk partition
//!   at a timestamp just below its new chunks'; an inline write or a delete looks for
//!   chunks of its rows (`WHERE p IN ...`, at most [`MAX_IN_KEYS`] keys a query; a
//!   partition that never had chunks is a bloom-filter miss) and deletes them at a
//!   timestamp just below its own. A concurrent newer write's chunks are never deleted.
//!   Chunks of a write that failed or died after its chunks are deleted by the next
//!   write of the row.
//! * **Consistency**: reads at [`ScyllaOptions::read_consistency`], writes at
//!   [`ScyllaOptions::write_consistency`] (both `LOCAL_QUORUM` by default), the
//!   lightweight transaction of `put_if_absent` with serial consistency
//!   [`ScyllaOptions::serial_consistency`] (`LOCAL_SERIAL`). Every statement but that
//!   one is idempotent (explicit timestamps: a retried write writes the same cells), and
//!   is marked so when [`ScyllaOptions::idempotent`] is set (default), which lets the
//!   driver retry it after a timeout. A chunked value needs reads and writes that
//!   overlap (quorum and quorum), or a reader may see a pointer before its chunks.
//!
//! The typed store shards the partitions that grow with the number of images (the
//! reverse index of a package, the list of evaluated images) and bounds evaluation
//! history, so no partition here grows without bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{ControlFlow, Range};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::{MonotonicTimestampGenerator, TimestampGenerator};
use scylla::response::PagingState;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlValue, Row};

pub use scylla::statement::{Consistency, SerialConsistency};

use crate::backend::{Backend, Table, Write};
use crate::StoreError;

/// Rows fetched per page by `list`.
const LIST_PAGE_SIZE: i32 = 1000;

/// The table of large values' chunks (not a logical [`Table`]).
pub const CHUNK_TABLE: &str = "value_chunk";

/// The first bytes of a row holding a [`ChunkPointer`] instead of its value. `0xC1` is
/// never used by MessagePack, so no record envelope starts with it.
pub const CHUNK_POINTER_MAGIC: &[u8] = b"\xC1vigil-chunked:";

/// Bytes counted per statement of a batch on top of its keys and value (statement id,
/// timestamp, cell and row headers): [`split_batch`]'s estimate errs on the large side.
pub const STATEMENT_OVERHEAD: usize = 64;

/// The largest [`ScyllaOptions::batch_max_bytes`] accepted: ScyllaDB refuses batches over
/// `batch_size_fail_threshold_in_kb` (1024 by default), and the estimate is only that.
pub const BATCH_BYTES_CEILING: usize = 900 * 1024;

/// The protocol's limit on statements in one batch (a 16-bit count).
pub const BATCH_STATEMENTS_CEILING: usize = 65_535;

/// The largest chunk and inline value accepted (`max_mutation_size` is 16 MB by default).
pub const VALUE_CEILING: usize = 8 * 1024 * 1024;

/// Most partition keys in one `IN` (ScyllaDB's `max_partition_key_restrictions_per_query`
/// is 100 by default).
pub const MAX_IN_KEYS: usize = 100;

/// Chunk reads or writes in flight for one value; batch parts in flight for one call.
const CONCURRENCY: usize = 4;

/// Reads of a row whose chunks vanish while it is read (replaced meanwhile), at most.
const READ_ATTEMPTS: usize = 5;

fn err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("scylla: {what}: {e}"))
}

// ---- options -------------------------------------------------------------------------

/// How [`ScyllaBackend`] talks to the cluster. `Default` is the production setting.
#[derive(Debug, Clone, PartialEq)]
pub struct ScyllaOptions {
    /// Replication factor of the keyspace when `connect` creates it (SimpleStrategy).
    pub replication_factor: u32,
    /// Consistency of reads (`get`, `list`, chunk reads). Default `LOCAL_QUORUM`.
    pub read_consistency: Consistency,
    /// Consistency of writes, and of the commit of `put_if_absent`. Default `LOCAL_QUORUM`.
    pub write_consistency: Consistency,
    /// Serial consistency of `put_if_absent`'s lightweight transaction. Default
    /// `LOCAL_SERIAL`.
    pub serial_consistency: SerialConsistency,
    /// Mark every statement but the lightweight transaction idempotent, so that the
    /// driver's retry policy may retry it after a timeout. Default true.
    pub idempotent: bool,
    /// Client-side timeout of one request; `None`: the driver's (30 s). Default 30 s.
    pub request_timeout: Option<Duration>,
    /// Most estimated bytes in one batch ([`split_batch`]). Default 100 KiB; at most
    /// [`BATCH_BYTES_CEILING`].
    pub batch_max_bytes: usize,
    /// Most statements in one batch. Default 1,000; at most [`BATCH_STATEMENTS_CEILING`].
    pub batch_max_statements: usize,
    /// Values longer than this are chunked. Default 1 MiB; at most [`VALUE_CEILING`].
    pub chunk_threshold: usize,
    /// Bytes per chunk. Default 512 KiB; from 1 KiB to [`VALUE_CEILING`].
    pub chunk_size: usize,
}

impl Default for ScyllaOptions {
    fn default() -> Self {
        ScyllaOptions {
            replication_factor: 1,
            read_consistency: Consistency::LocalQuorum,
            write_consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            idempotent: true,
            request_timeout: Some(Duration::from_secs(30)),
            batch_max_bytes: 100 * 1024,
            batch_max_statements: 1_000,
            chunk_threshold: 1024 * 1024,
            chunk_size: 512 * 1024,
        }
    }
}

impl ScyllaOptions {
    /// The defaults with another replication factor.
    pub fn with_replication_factor(replication_factor: u32) -> Self {
        ScyllaOptions {
            replication_factor,
            ..ScyllaOptions::default()
        }
    }

    /// Why these options cannot be used, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.replication_factor == 0 {
            return Err("replication factor must be at least 1".into());
        }
        if matches!(
            self.read_consistency,
            Consistency::Any | Consistency::EachQuorum
        ) {
            return Err(format!(
                "read consistency {} is for writes only",
                self.read_consistency
            ));
        }
        if matches!(
            self.write_consistency,
            Consistency::Serial | Consistency::LocalSerial
        ) {
            return Err(format!(
                "write consistency {} is for reads only",
                self.write_consistency
            ));
        }
        if self.request_timeout == Some(Duration::ZERO) {
            return Err("request timeout must not be zero".into());
        }
        if !(1..=BATCH_BYTES_CEILING).contains(&self.batch_max_bytes) {
            return Err(format!(
                "batch_max_bytes {} is not in 1..={BATCH_BYTES_CEILING}",
                self.batch_max_bytes
            ));
        }
        if !(1..=BATCH_STATEMENTS_CEILING).contains(&self.batch_max_statements) {
            return Err(format!(
                "batch_max_statements {} is not in 1..={BATCH_STATEMENTS_CEILING}",
                self.batch_max_statements
            ));
        }
        if self.chunk_threshold > VALUE_CEILING {
            return Err(format!(
                "chunk_threshold {} is over {VALUE_CEILING}",
                self.chunk_threshold
            ));
        }
        if !(1024..=VALUE_CEILING).contains(&self.chunk_size) {
            return Err(format!(
                "chunk_size {} is not in 1024..={VALUE_CEILING}",
                self.chunk_size
            ));
        }
        Ok(())
    }
}

/// A consistency level by its CQL name (`LOCAL_QUORUM`, `quorum`, `one`…).
pub fn parse_consistency(name: &str) -> Option<Consistency> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        "SERIAL" => Consistency::Serial,
        "LOCAL_SERIAL" => Consistency::LocalSerial,
        _ => return None,
    })
}

/// A serial consistency level by its CQL name (`SERIAL`, `LOCAL_SERIAL`).
pub fn parse_serial_consistency(name: &str) -> Option<SerialConsistency> {
    match name.trim().to_ascii_uppercase().as_str() {
        "SERIAL" => Some(SerialConsistency::Serial),
        "LOCAL_SERIAL" => Some(SerialConsistency::LocalSerial),
        _ => None,
    }
}

// ---- batches (pure) --------------------------------------------------------------------

/// The estimated size of one write in a batch: its bound values plus
/// [`STATEMENT_OVERHEAD`].
pub fn write_size(w: &Write) -> usize {
    STATEMENT_OVERHEAD
        + match w {
            Write::Put {
                partition,
                sort,
                value,
                ..
            } => partition.len() + sort.len() + value.len() + 8,
            Write::Delete {
                partition, sort, ..
            } => partition.len() + sort.len() + 8,
        }
}

/// Split writes, in order, into parts of at most `max_statements` writes whose
/// [`write_size`]s add up to at most `max_bytes`; a write larger than `max_bytes` is a
/// part of its own. The parts, concatenated, are the writes.
pub fn split_batch(writes: Vec<Write>, max_bytes: usize, max_statements: usize) -> Vec<Vec<Write>> {
    let max_statements = max_statements.max(1);
    let mut parts = Vec::new();
    let mut part: Vec<Write> = Vec::new();
    let mut bytes = 0usize;
    for w in writes {
        let size = write_size(&w);
        if !part.is_empty() && (part.len() >= max_statements || bytes + size > max_bytes) {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += size;
        part.push(w);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

// ---- large values (pure) ---------------------------------------------------------------

/// What a row holds instead of a chunked value: where its chunks are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPointer {
    /// The write's generation: 32 lower-case hex digits, fresh for every write.
    pub generation: String,
    /// The value's length.
    pub len: u64,
    /// Its chunks (`chunk_sort(generation, 0..chunks)`), at least one.
    pub chunks: u32,
}

const GENERATION_LEN: usize = 32;
const POINTER_LEN: usize = CHUNK_POINTER_MAGIC.len() + GENERATION_LEN + 8 + 4;

impl ChunkPointer {
    /// The row's bytes: magic, generation, length (u64 BE), chunk count (u32 BE).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(POINTER_LEN);
        out.extend_from_slice(CHUNK_POINTER_MAGIC);
        out.extend_from_slice(self.generation.as_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.chunks.to_be_bytes());
        out
    }
}

/// Whether `value` is stored in its row as it is (else as chunks and a pointer): when it
/// is at most `threshold` bytes and does not start with [`CHUNK_POINTER_MAGIC`].
pub fn stored_inline(value: &[u8], threshold: usize) -> bool {
    value.len() <= threshold && !value.starts_with(CHUNK_POINTER_MAGIC)
}

/// What a stored row holds: `None` when it is the value itself, else the pointer to its
/// chunks. A row starting with the magic that is no pointer is an error (never written).
pub fn decode_cell(stored: &[u8]) -> Result<Option<ChunkPointer>, String> {
    let Some(rest) = stored.strip_prefix(CHUNK_POINTER_MAGIC) else {
        return Ok(None);
    };
    if stored.len() != POINTER_LEN {
        return Err(format!(
            "a chunk pointer of {} bytes, not {POINTER_LEN}",
            stored.len()
        ));
    }
    let (generation, rest) = rest.split_at(GENERATION_LEN);
    if !generation
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err("a chunk pointer with a malformed generation".into());
    }
    let len = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let chunks = u32::from_be_bytes(rest[8..].try_into().expect("4 bytes"));
    if chunks == 0 || u64::from(chunks) > len {
        return Err(format!(
            "a chunk pointer of {chunks} chunks for {len} bytes"
        ));
    }
    Ok(Some(ChunkPointer {
        generation: String::from_utf8(generation.to_vec()).expect("hex is UTF-8"),
        len,
        chunks,
    }))
}

/// The byte ranges of a value's chunks: `chunk_size` each, the last one shorter. (An
/// empty value is never chunked: see [`stored_inline`].)
pub fn chunk_ranges(len: usize, chunk_size: usize) -> Vec<Range<usize>> {
    let chunk_size = chunk_size.max(1);
    (0..len)
        .step_by(chunk_size)
        .map(|at| at..(at + chunk_size).min(len))
        .collect()
}

/// The chunk partition of one stored row: `<table>|<partition length>|<partition><sort>`
/// (the length makes it unambiguous whatever the keys hold).
pub fn chunk_partition(table: Table, partition: &str, sort: &str) -> String {
    format!("{}|{}|{partition}{sort}", table.name(), partition.len())
}

/// The sort key of chunk `n` of a generation: `<generation>/<n, 6 digits>`.
pub fn chunk_sort(generation: &str, n: u32) -> String {
    format!("{generation}/{n:06}")
}

// ---- schema ----------------------------------------------------------------------------

/// Whether `name` is a valid unquoted CQL keyspace name (it is interpolated into DDL).
fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// The CQL that creates the keyspace (SimpleStrategy with `replication_factor`).
pub fn create_keyspace_cql(keyspace: &str, replication_factor: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    )
}

fn create_kv_table_cql(keyspace: &str, name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.{name} (p text, s text, v blob, PRIMARY KEY (p, s)) \
         WITH CLUSTERING ORDER BY (s ASC)"
    )
}

/// The CQL that creates one logical table.
pub fn create_table_cql(keyspace: &str, table: Table) -> String {
    create_kv_table_cql(keyspace, table.name())
}

/// The CQL that creates the [`CHUNK_TABLE`] (p = [`chunk_partition`], s = [`chunk_sort`],
/// v = the chunk's bytes).
pub fn create_chunk_table_cql(keyspace: &str) -> String {
    create_kv_table_cql(keyspace, CHUNK_TABLE)
}

// ---- the backend -----------------------------------------------------------------------

/// The statements of one table, prepared once.
struct Prepared {
    /// `(p, s, v, timestamp)`.
    insert: PreparedStatement,
    insert_if_absent: PreparedStatement,
    select_one: PreparedStatement,
    select_partition: PreparedStatement,
    /// `(timestamp, p, s)`.
    delete: PreparedStatement,
}

/// The statements of the chunk table.
struct ChunkStatements {
    /// `(p, s, v, timestamp)`.
    insert: PreparedStatement,
    select_one: PreparedStatement,
    /// `(timestamp, p)`: every chunk of a row written at or before the timestamp.
    delete_older: PreparedStatement,
    /// `(timestamp, p, s)`.
    delete_one: PreparedStatement,
    /// `(list of p)`: the chunk partitions that hold any chunk.
    select_present: PreparedStatement,
}

/// What is left to do once a row is written.
enum Cleanup {
    /// An inline value or a delete written at `ts`: delete the row's chunks, if any,
    /// written before it.
    IfAny { key: String, ts: i64 },
    /// A chunked value whose chunks were written at `chunks_ts`: delete the older ones.
    Older { key: String, chunks_ts: i64 },
}

/// A ScyllaDB session plus the prepared statements of every table.
pub struct ScyllaBackend {
    session: Session,
    keyspace: String,
    stmts: HashMap<Table, Prepared>,
    chunks: ChunkStatements,
    /// The session's timestamp source, also for the explicit timestamps of writes.
    clock: Arc<MonotonicTimestampGenerator>,
    opts: ScyllaOptions,
}

impl ScyllaBackend {
    /// [`ScyllaBackend::connect_with`] with the default options and `replication_factor`.
    pub async fn connect(
        nodes: &[String],
        keyspace: &str,
        replication_factor: u32,
    ) -> Result<Self, StoreError> {
        Self::connect_with(
            nodes,
            keyspace,
            ScyllaOptions::with_replication_factor(replication_factor),
        )
        .await
    }

    /// Connect to `nodes` (`host:port`), create the keyspace and every table when
    /// missing, and prepare the statements of every table with the options' consistency,
    /// idempotence and timeout.
    pub async fn connect_with(
        nodes: &[String],
        keyspace: &str,
        opts: ScyllaOptions,
    ) -> Result<Self, StoreError> {
        if nodes.is_empty() {
            return Err(StoreError::Backend(
                "scylla: no contact nodes given".to_string(),
            ));
        }
        if !valid_keyspace(keyspace) {
            return Err(StoreError::Backend(format!(
                "scylla: invalid keyspace name {keyspace:?} (letters, digits and _ only, starting with a letter, at most 48)"
            )));
        }
        opts.validate()
            .map_err(|e| StoreError::Backend(format!("scylla: {e}")))?;
        // Client-side monotonic timestamps, so that a put followed by a delete (or an
        // overwrite) from this process is ordered even across coordinators.
        let clock = Arc::new(MonotonicTimestampGenerator::new());
        let session = SessionBuilder::new()
            .known_nodes(nodes)
            .timestamp_generator(clock.clone())
            .build()
            .await
            .map_err(|e| err("connect", e))?;

        session
            .query_unpaged(create_keyspace_cql(keyspace, opts.replication_factor), ())
            .await
            .map_err(|e| err("create keyspace", e))?;
        let mut ddl: Vec<(String, String)> = Table::ALL
            .iter()
            .map(|t| (t.name().to_string(), create_table_cql(keyspace, *t)))
            .collect();
        ddl.push((CHUNK_TABLE.to_string(), create_chunk_table_cql(keyspace)));
        for (name, cql) in ddl {
            session
                .query_unpaged(cql, ())
                .await
                .map_err(|e| err(&format!("create table {name}"), e))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| err("schema agreement", e))?;

        let prep = |cql: String, read: bool| {
            let (session, opts) = (&session, &opts);
            async move {
                let mut st = Statement::new(cql.clone());
                if read {
                    st = st.with_page_size(LIST_PAGE_SIZE);
                }
                let mut p = session
                    .prepare(st)
                    .await
                    .map_err(|e| err(&format!("prepare {cql}"), e))?;
                p.set_consistency(if read {
                    opts.read_consistency
                } else {
                    opts.write_consistency
                });
                p.set_is_idempotent(opts.idempotent);
                p.set_request_timeout(opts.request_timeout);
                Ok::<_, StoreError>(p)
            }
        };
        let mut stmts = HashMap::new();
        for t in Table::ALL {
            let name = format!("{keyspace}.{}", t.name());
            let mut insert_if_absent = prep(
                format!("INSERT INTO {name} (p, s, v) VALUES (?, ?, ?) IF NOT EXISTS"),
                false,
            )
            .await?;
            insert_if_absent.set_serial_consistency(Some(opts.serial_consistency));
            // A lightweight transaction retried after a timeout may report "not applied"
            // for its own first attempt: never marked idempotent.
            insert_if_absent.set_is_idempotent(false);
            let p = Prepared {
                insert: prep(
                    format!("INSERT INTO {name} (p, s, v) VALUES (?, ?, ?) USING TIMESTAMP ?"),
                    false,
                )
                .await?,
                insert_if_absent,
                select_one: prep(format!("SELECT v FROM {name} WHERE p = ? AND s = ?"), true)
                    .await?,
                select_partition: prep(
                    format!("SELECT s, v FROM {name} WHERE p = ? ORDER BY s ASC"),
                    true,
                )
                .await?,
                delete: prep(
                    format!("DELETE FROM {name} USING TIMESTAMP ? WHERE p = ? AND s = ?"),
                    false,
                )
                .await?,
            };
            stmts.insert(t, p);
        }
        let c = format!("{keyspace}.{CHUNK_TABLE}");
        let chunks = ChunkStatements {
            insert: prep(
                format!("INSERT INTO {c} (p, s, v) VALUES (?, ?, ?) USING TIMESTAMP ?"),
                false,
            )
            .await?,
            select_one: prep(format!("SELECT v FROM {c} WHERE p = ? AND s = ?"), true).await?,
            delete_older: prep(
                format!("DELETE FROM {c} USING TIMESTAMP ? WHERE p = ?"),
                false,
            )
            .await?,
            delete_one: prep(
                format!("DELETE FROM {c} USING TIMESTAMP ? WHERE p = ? AND s = ?"),
                false,
            )
            .await?,
            select_present: prep(format!("SELECT p FROM {c} WHERE p IN ?"), true).await?,
        };
        Ok(ScyllaBackend {
            session,
            keyspace: keyspace.to_string(),
            stmts,
            chunks,
            clock,
            opts,
        })
    }

    /// The keyspace this backend writes to.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The options it was connected with.
    pub fn options(&self) -> &ScyllaOptions {
        &self.opts
    }

    fn stmts(&self, table: Table) -> &Prepared {
        // Every table is prepared in `connect`.
        &self.stmts[&table]
    }

    fn now(&self) -> i64 {
        self.clock.next_timestamp()
    }

    // ---- chunks ------------------------------------------------------------------------

    /// Write `value`'s chunks under a fresh generation; its pointer and the chunks'
    /// timestamp.
    async fn write_chunks(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<(ChunkPointer, i64), StoreError> {
        let generation = uuid::Uuid::new_v4().simple().to_string();
        let ts = self.now();
        let ranges = chunk_ranges(value.len(), self.opts.chunk_size);
        let chunks = u32::try_from(ranges.len())
            .map_err(|_| StoreError::Backend("scylla: a value of too many chunks".into()))?;
        let st = &self.chunks.insert;
        futures::stream::iter(ranges.into_iter().enumerate())
            .map(|(n, r)| {
                let sort = chunk_sort(&generation, n as u32);
                let bytes = value[r].to_vec();
                async move {
                    self.session
                        .execute_unpaged(st, (key, sort, bytes, ts))
                        .await
                        .map_err(|e| err("write chunk", e))
                }
            })
            .buffered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let pointer = ChunkPointer {
            generation,
            len: value.len() as u64,
            chunks,
        };
        Ok((pointer, ts))
    }

    /// The value a pointer points to; `None` when a chunk is gone (the row was replaced
    /// or deleted while it was read).
    async fn read_chunks(
        &self,
        key: &str,
        p: &ChunkPointer,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let st = &self.chunks.select_one;
        let parts: Vec<Option<Vec<u8>>> = futures::stream::iter(0..p.chunks)
            .map(|n| {
                let sort = chunk_sort(&p.generation, n);
                async move {
                    let res = self
                        .session
                        .execute_unpaged(st, (key, sort))
                        .await
                        .map_err(|e| err("read chunk", e))?;
                    let row: Option<(Option<Vec<u8>>,)> = res
                        .into_rows_result()
                        .map_err(|e| err("read chunk result", e))?
                        .maybe_first_row()
                        .map_err(|e| err("read chunk result", e))?;
                    Ok::<_, StoreError>(row.map(|(v,)| v.unwrap_or_default()))
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(p.len as usize);
        for part in parts {
            let Some(part) = part else { return Ok(None) };
            out.extend_from_slice(&part);
        }
        if out.len() as u64 != p.len {
            return Err(StoreError::Backend(format!(
                "scylla: the chunks of {key:?} hold {} bytes, their pointer says {}",
                out.len(),
                p.len
            )));
        }
        Ok(Some(out))
    }

    /// The value of a stored row: itself, or its chunks' bytes (`None`: chunks gone).
    async fn resolve(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        stored: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let pointer = decode_cell(&stored)
            .map_err(|e| err(&format!("read {} {partition:?}/{sort:?}", table.name()), e))?;
        match pointer {
            None => Ok(Some(stored)),
            Some(p) => {
                self.read_chunks(&chunk_partition(table, partition, sort), &p)
                    .await
            }
        }
    }

    async fn read_row(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let res = self
            .session
            .execute_unpaged(&self.stmts(table).select_one, (partition, sort))
            .await
            .map_err(|e| err("get", e))?;
        let row: Option<(Option<Vec<u8>>,)> = res
            .into_rows_result()
            .map_err(|e| err("get result", e))?
            .maybe_first_row()
            .map_err(|e| err("get result", e))?;
        // A null blob is never written by the store; treat it as an empty value.
        Ok(row.map(|(v,)| v.unwrap_or_default()))
    }

    /// The chunk partitions among `keys` that hold any chunk.
    async fn chunks_present(&self, keys: Vec<String>) -> Result<BTreeSet<String>, StoreError> {
        let st = &self.chunks.select_present;
        let groups: Vec<Vec<String>> = keys.chunks(MAX_IN_KEYS).map(<[_]>::to_vec).collect();
        let found: Vec<Vec<String>> = futures::stream::iter(groups)
            .map(|group| async move {
                let res = self
                    .session
                    .execute_unpaged(st, (group,))
                    .await
                    .map_err(|e| err("look for chunks", e))?;
                let rows = res
                    .into_rows_result()
                    .map_err(|e| err("look for chunks", e))?;
                rows.rows::<(String,)>()
                    .map_err(|e| err("look for chunks", e))?
                    .map(|r| r.map(|(p,)| p).map_err(|e| err("look for chunks", e)))
                    .collect::<Result<Vec<String>, StoreError>>()
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Delete the chunks that the written rows no longer point to.
    async fn clean_up(&self, cleanups: Vec<Cleanup>) -> Result<(), StoreError> {
        // Chunk partition → delete every chunk written at or before this timestamp.
        let mut older: BTreeMap<String, i64> = BTreeMap::new();
        let mut if_any: BTreeMap<String, i64> = BTreeMap::new();
        for c in cleanups {
            let (map, key, ts) = match c {
                Cleanup::Older { key, chunks_ts } => (&mut older, key, chunks_ts - 1),
                Cleanup::IfAny { key, ts } => (&mut if_any, key, ts - 1),
            };
            let e = map.entry(key).or_insert(ts);
            *e = (*e).max(ts);
        }
        if !if_any.is_empty() {
            let present = self
                .chunks_present(if_any.keys().cloned().collect())
                .await?;
            for (key, ts) in if_any {
                if present.contains(&key) {
                    let e = older.entry(key).or_insert(ts);
                    *e = (*e).max(ts);
                }
            }
        }
        let st = &self.chunks.delete_older;
        futures::stream::iter(older)
            .map(|(key, ts)| async move {
                self.session
                    .execute_unpaged(st, (ts, key))
                    .await
                    .map_err(|e| err("delete replaced chunks", e))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    // ---- writes ------------------------------------------------------------------------

    /// The bound values of a row write at `ts`.
    fn row_values(w: Write, ts: i64) -> (Table, bool, Vec<CqlValue>) {
        match w {
            Write::Put {
                table,
                partition,
                sort,
                value,
            } => (
                table,
                true,
                vec![
                    CqlValue::Text(partition),
                    CqlValue::Text(sort),
                    CqlValue::Blob(value),
                    CqlValue::BigInt(ts),
                ],
            ),
            Write::Delete {
                table,
                partition,
                sort,
            } => (
                table,
                false,
                vec![
                    CqlValue::BigInt(ts),
                    CqlValue::Text(partition),
                    CqlValue::Text(sort),
                ],
            ),
        }
    }

    /// Write one part of a batch: one statement alone (not a batch: ScyllaDB's batch size
    /// limit would apply to a large value), else one unlogged batch.
    async fn write_part(&self, part: Vec<(Write, i64)>) -> Result<(), StoreError> {
        if part.len() == 1 {
            let (w, ts) = part.into_iter().next().expect("one write");
            let (table, put, values) = Self::row_values(w, ts);
            let st = if put {
                &self.stmts(table).insert
            } else {
                &self.stmts(table).delete
            };
            self.session
                .execute_unpaged(st, values)
                .await
                .map_err(|e| err(if put { "put" } else { "delete" }, e))?;
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_consistency(self.opts.write_consistency);
        batch.set_is_idempotent(self.opts.idempotent);
        batch.set_request_timeout(self.opts.request_timeout);
        let mut values: Vec<Vec<CqlValue>> = Vec::with_capacity(part.len());
        for (w, ts) in part {
            let (table, put, v) = Self::row_values(w, ts);
            let st = if put {
                &self.stmts(table).insert
            } else {
                &self.stmts(table).delete
            };
            batch.append_statement(st.clone());
            values.push(v);
        }
        self.session
            .batch(&batch, values)
            .await
            .map_err(|e| err("write_batch", e))?;
        Ok(())
    }

    /// Apply writes: chunks of large values first, then the rows (split into parts sent
    /// side by side, each write at its own increasing timestamp), then the cleanup of
    /// replaced chunks.
    async fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(writes.len());
        let mut stamps = Vec::with_capacity(writes.len());
        let mut cleanups = Vec::with_capacity(writes.len());
        for w in writes {
            match w {
                Write::Put {
                    table,
                    partition,
                    sort,
                    value,
                } if !stored_inline(&value, self.opts.chunk_threshold) => {
                    let key = chunk_partition(table, &partition, &sort);
                    let (pointer, chunks_ts) = self.write_chunks(&key, &value).await?;
                    cleanups.push(Cleanup::Older { key, chunks_ts });
                    stamps.push(self.now());
                    rows.push(Write::Put {
                        table,
                        partition,
                        sort,
                        value: pointer.encode(),
                    });
                }
                Write::Put {
                    table,
                    ref partition,
                    ref sort,
                    ..
                }
                | Write::Delete {
                    table,
                    ref partition,
                    ref sort,
                } => {
                    let ts = self.now();
                    cleanups.push(Cleanup::IfAny {
                        key: chunk_partition(table, partition, sort),
                        ts,
                    });
                    stamps.push(ts);
                    rows.push(w);
                }
            }
        }
        let mut stamps = stamps.into_iter();
        let parts: Vec<Vec<(Write, i64)>> = split_batch(
            rows,
            self.opts.batch_max_bytes,
            self.opts.batch_max_statements,
        )
        .into_iter()
        .map(|part| part.into_iter().zip(stamps.by_ref()).collect())
        .collect();
        futures::stream::iter(parts)
            .map(|part| self.write_part(part))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        self.clean_up(cleanups).await
    }
}

#[async_trait]
impl Backend for ScyllaBackend {
    async fn put(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.apply(vec![Write::Put {
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
        // A large value: chunks first, under a fresh generation, deleted again when the
        // row turns out to be there already.
        let chunked = if stored_inline(&value, self.opts.chunk_threshold) {
            None
        } else {
            let key = chunk_partition(table, partition, sort);
            let (pointer, _) = self.write_chunks(&key, &value).await?;
            Some((key, pointer))
        };
        let cell = match &chunked {
            Some((_, p)) => p.encode(),
            None => value,
        };
        let res = self
            .session
            .execute_unpaged(&self.stmts(table).insert_if_absent, (partition, sort, cell))
            .await
            .map_err(|e| err("put_if_absent", e))?;
        // An LWT answers one row whose first column is `[applied]`; when not applied,
        // the existing row's columns follow, so read it untyped.
        let row: Row = res
            .into_rows_result()
            .map_err(|e| err("put_if_absent result", e))?
            .first_row()
            .map_err(|e| err("put_if_absent result", e))?;
        let applied = match row.columns.first() {
            Some(Some(CqlValue::Boolean(applied))) => *applied,
            other => {
                return Err(StoreError::Backend(format!(
                    "scylla: put_if_absent: unexpected [applied] column {other:?}"
                )))
            }
        };
        if let (false, Some((key, p))) = (applied, &chunked) {
            let ts = self.now();
            let st = &self.chunks.delete_one;
            futures::stream::iter(0..p.chunks)
                .map(|n| {
                    let sort = chunk_sort(&p.generation, n);
                    async move {
                        self.session
                            .execute_unpaged(st, (ts, key.as_str(), sort))
                            .await
                            .map_err(|e| err("delete unused chunks", e))
                    }
                })
                .buffered(CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await?;
        }
        Ok(applied)
    }

    async fn get(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            let Some(stored) = self.read_row(table, partition, sort).await? else {
                return Ok(None);
            };
            if let Some(v) = self.resolve(table, partition, sort, stored).await? {
                return Ok(Some(v));
            }
            // Its chunks went away: the row was replaced meanwhile; read it again.
        }
        Err(StoreError::Backend(format!(
            "scylla: get {} {partition:?}/{sort:?}: its chunks kept vanishing \
             ({READ_ATTEMPTS} reads; replaced all the while, or written and read at \
             consistency levels that do not overlap)",
            table.name()
        )))
    }

    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let stmt = &self.stmts(table).select_partition;
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (res, next) = self
                .session
                .execute_single_page(stmt, (partition,), paging)
                .await
                .map_err(|e| err("list", e))?;
            let rows = res.into_rows_result().map_err(|e| err("list result", e))?;
            for row in rows
                .rows::<(String, Option<Vec<u8>>)>()
                .map_err(|e| err("list result", e))?
            {
                let (s, v) = row.map_err(|e| err("list row", e))?;
                out.push((s, v.unwrap_or_default()));
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(p) => paging = p,
            }
        }
        // Chunked rows: their values (read again when replaced while listed; left out
        // when deleted meanwhile).
        let mut listed = Vec::with_capacity(out.len());
        for (s, stored) in out {
            let value = match self.resolve(table, partition, &s, stored).await? {
                Some(v) => Some(v),
                None => self.get(table, partition, &s).await?,
            };
            if let Some(v) = value {
                listed.push((s, v));
            }
        }
        Ok(listed)
    }

    async fn delete(&self, table: Table, partition: &str, sort: &str) -> Result<(), StoreError> {
        self.apply(vec![Write::Delete {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
        }])
        .await
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.apply(writes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_checked() {
        assert!(valid_keyspace("vigil"));
        assert!(valid_keyspace("vigil_test_2"));
        assert!(!valid_keyspace(""));
        assert!(!valid_keyspace("_vigil"));
        assert!(!valid_keyspace("1vigil"));
        assert!(!valid_keyspace("vigil; DROP KEYSPACE x"));
        assert!(!valid_keyspace("vigil.x"));
        assert!(!valid_keyspace(&"k".repeat(49)));
    }

    #[test]
    fn ddl_is_idempotent_and_one_partition_per_key() {
        let ks = create_keyspace_cql("vigil", 3);
        assert!(ks.starts_with("CREATE KEYSPACE IF NOT EXISTS vigil "));
        assert!(ks.contains("'replication_factor': 3"));
        for t in Table::ALL {
            let cql = create_table_cql("vigil", t);
            assert!(cql.starts_with(&format!("CREATE TABLE IF NOT EXISTS vigil.{} ", t.name())));
            assert!(cql.contains("PRIMARY KEY (p, s)"));
        }
        let chunks = create_chunk_table_cql("vigil");
        assert!(chunks.starts_with("CREATE TABLE IF NOT EXISTS vigil.value_chunk "));
        assert!(Table::ALL.iter().all(|t| t.name() != CHUNK_TABLE));
    }

    #[tokio::test]
    async fn connect_rejects_bad_arguments_before_connecting() {
        let nodes = ["127.0.0.1:9".to_string()];
        for (n, ks, rf) in [
            (&[][..], "vigil", 1),
            (&nodes[..], "bad-name", 1),
            (&nodes[..], "vigil", 0),
        ] {
            match ScyllaBackend::connect(n, ks, rf).await {
                Err(StoreError::Backend(_)) => {}
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("connect({n:?}, {ks}, {rf}) must fail"),
            }
        }
        let bad = ScyllaOptions {
            batch_max_bytes: 2 * 1024 * 1024,
            ..ScyllaOptions::default()
        };
        match ScyllaBackend::connect_with(&nodes, "vigil", bad).await {
            Err(StoreError::Backend(m)) => assert!(m.contains("batch_max_bytes"), "{m}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a batch limit over the server's must be refused"),
        }
    }

    #[test]
    fn options_default_to_local_quorum_and_are_checked() {
        let o = ScyllaOptions::default();
        assert_eq!(o.read_consistency, Consistency::LocalQuorum);
        assert_eq!(o.write_consistency, Consistency::LocalQuorum);
        assert_eq!(o.serial_consistency, SerialConsistency::LocalSerial);
        assert!(o.idempotent);
        assert!(o.batch_max_bytes < 128 * 1024);
        assert!(o.chunk_size <= o.chunk_threshold);
        o.validate().unwrap();
        assert_eq!(
            ScyllaOptions::with_replication_factor(3).replication_factor,
            3
        );
        let bad = [
            ScyllaOptions {
                replication_factor: 0,
                ..o.clone()
            },
            ScyllaOptions {
                read_consistency: Consistency::Any,
                ..o.clone()
            },
            ScyllaOptions {
                write_consistency: Consistency::LocalSerial,
                ..o.clone()
            },
            ScyllaOptions {
                request_timeout: Some(Duration::ZERO),
                ..o.clone()
            },
            ScyllaOptions {
                batch_max_bytes: 0,
                ..o.clone()
            },
            ScyllaOptions {
                batch_max_bytes: BATCH_BYTES_CEILING + 1,
                ..o.clone()
            },
            ScyllaOptions {
                batch_max_statements: 0,
                ..o.clone()
            },
            ScyllaOptions {
                batch_max_statements: 65_536,
                ..o.clone()
            },
            ScyllaOptions {
                chunk_threshold: 16 * 1024 * 1024,
                ..o.clone()
            },
            ScyllaOptions {
                chunk_size: 100,
                ..o.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?} must be refused");
        }
    }

    #[test]
    fn consistency_names_parse() {
        assert_eq!(
            parse_consistency("LOCAL_QUORUM"),
            Some(Consistency::LocalQuorum)
        );
        assert_eq!(parse_consistency(" quorum "), Some(Consistency::Quorum));
        assert_eq!(parse_consistency("local_one"), Some(Consistency::LocalOne));
        assert_eq!(
            parse_consistency("each_quorum"),
            Some(Consistency::EachQuorum)
        );
        assert_eq!(parse_consistency("most"), None);
        assert_eq!(
            parse_serial_consistency("local_serial"),
            Some(SerialConsistency::LocalSerial)
        );
        assert_eq!(
            parse_serial_consistency("SERIAL"),
            Some(SerialConsistency::Serial)
        );
        assert_eq!(parse_serial_consistency("QUORUM"), None);
    }

    fn put(p: &str, s: &str, len: usize) -> Write {
        Write::Put {
            table: Table::PackageImages,
            partition: p.to_string(),
            sort: s.to_string(),
            value: vec![7; len],
        }
    }

    fn del(p: &str, s: &str) -> Write {
        Write::Delete {
            table: Table::ImageKeys,
            partition: p.to_string(),
            sort: s.to_string(),
        }
    }

    #[test]
    fn write_sizes_count_keys_values_and_overhead() {
        assert_eq!(
            write_size(&put("ab", "c", 10)),
            STATEMENT_OVERHEAD + 2 + 1 + 10 + 8
        );
        assert_eq!(write_size(&del("ab", "cd")), STATEMENT_OVERHEAD + 2 + 2 + 8);
    }

    #[test]
    fn batches_split_by_statements_in_order() {
        assert!(split_batch(Vec::new(), 1000, 10).is_empty());
        let writes: Vec<Write> = (0..2_500)
            .map(|i| {
                if i % 3 == 0 {
                    del(&format!("p{i}"), "s")
                } else {
                    put(&format!("p{i}"), "s", 0)
                }
            })
            .collect();
        let parts = split_batch(writes.clone(), usize::MAX, 1_000);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1_000, 1_000, 500]
        );
        assert_eq!(
            parts.concat(),
            writes,
            "the parts, in order, are the writes"
        );
        // The protocol's limit, with a count of 0 read as 1.
        let parts = split_batch(writes.clone(), usize::MAX, 0);
        assert_eq!(parts.len(), 2_500);
    }

    #[test]
    fn batches_split_by_bytes_and_large_writes_go_alone() {
        let size = write_size(&put("p", "s", 100));
        let writes: Vec<Write> = (0..10).map(|_| put("p", "s", 100)).collect();
        // Three writes fit, a fourth would not.
        let parts = split_batch(writes.clone(), 3 * size + size / 2, 1_000);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        for p in &parts {
            assert!(p.iter().map(write_size).sum::<usize>() <= 3 * size + size / 2);
        }
        // Exactly at the limit still fits.
        let parts = split_batch(writes.clone(), 5 * size, 1_000);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5]);

        let mixed = vec![
            put("a", "1", 10),
            put("a", "2", 10),
            put("big", "3", 10_000),
            put("a", "4", 10),
            put("huge", "5", 20_000),
            put("huge", "6", 20_000),
            del("a", "7"),
        ];
        let parts = split_batch(mixed.clone(), 1_000, 1_000);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 1, 1, 1, 1, 1],
            "a write over the limit is a part of its own, and the next one starts a new one"
        );
        assert_eq!(parts[1], vec![mixed[2].clone()]);
        assert_eq!(parts.concat(), mixed);
        // The defaults keep a part far under ScyllaDB's 1024 KiB batch limit.
        let o = ScyllaOptions::default();
        let many: Vec<Write> = (0..5_000)
            .map(|i| {
                put(
                    &format!("debian:12|libc6#{:02}", i % 16),
                    &format!("sha256:{i:064x}"),
                    0,
                )
            })
            .collect();
        for p in split_batch(many, o.batch_max_bytes, o.batch_max_statements) {
            assert!(p.len() <= o.batch_max_statements);
            assert!(p.iter().map(write_size).sum::<usize>() <= o.batch_max_bytes);
        }
    }

    #[test]
    fn pointers_round_trip_and_values_are_never_mistaken_for_one() {
        let p = ChunkPointer {
            generation: "0123456789abcdef0123456789abcdef".into(),
            len: 5_000_000,
            chunks: 10,
        };
        let bytes = p.encode();
        assert!(bytes.starts_with(CHUNK_POINTER_MAGIC));
        assert_eq!(bytes.len(), POINTER_LEN);
        assert_eq!(POINTER_LEN, 59, "as infra/scylla/README.md says");
        assert_eq!(decode_cell(&bytes), Ok(Some(p.clone())));

        // Values stored inline decode as themselves.
        let threshold = 1024;
        for v in [
            Vec::new(),
            vec![0xC1],
            b"\xC1v1".to_vec(),
            CHUNK_POINTER_MAGIC[..CHUNK_POINTER_MAGIC.len() - 1].to_vec(),
            vec![0x82; 1024],
            b"7".to_vec(),
        ] {
            assert!(stored_inline(&v, threshold), "{v:?}");
            assert_eq!(decode_cell(&v), Ok(None), "{v:?}");
        }
        // Too long, or starting with the magic (even a copy of a pointer): chunked.
        assert!(!stored_inline(&[0u8; 1025], threshold));
        assert!(!stored_inline(CHUNK_POINTER_MAGIC, threshold));
        assert!(!stored_inline(&bytes, threshold));
        assert!(!stored_inline(&[1], 0));
        assert!(stored_inline(&[], 0));

        // Malformed pointers are errors, not values.
        let mut short = bytes.clone();
        short.pop();
        assert!(decode_cell(&short).is_err());
        assert!(decode_cell(CHUNK_POINTER_MAGIC).is_err());
        let mut upper = bytes.clone();
        upper[CHUNK_POINTER_MAGIC.len()] = b'G';
        assert!(decode_cell(&upper).is_err());
        let zero = ChunkPointer {
            chunks: 0,
            ..p.clone()
        }
        .encode();
        assert!(decode_cell(&zero).is_err());
        let more_chunks_than_bytes = ChunkPointer {
            len: 3,
            chunks: 4,
            ..p
        }
        .encode();
        assert!(decode_cell(&more_chunks_than_bytes).is_err());
    }

    #[test]
    fn chunk_ranges_cover_the_value() {
        assert!(chunk_ranges(0, 10).is_empty());
        assert_eq!(chunk_ranges(1, 10), vec![0..1]);
        assert_eq!(chunk_ranges(10, 10), vec![0..10]);
        assert_eq!(chunk_ranges(25, 10), vec![0..10, 10..20, 20..25]);
        let o = ScyllaOptions::default();
        let r = chunk_ranges(5_000_000, o.chunk_size);
        assert_eq!(r.len(), 10);
        assert!(r.iter().all(|r| r.len() <= o.chunk_size));
        assert_eq!(r.last().unwrap().end, 5_000_000);
    }

    #[test]
    fn chunk_keys_are_unambiguous() {
        assert_eq!(
            chunk_partition(Table::Analysis, "sha256:ab", ""),
            "analysis|9|sha256:ab"
        );
        // The same concatenation of partition and sort, split differently.
        assert_ne!(
            chunk_partition(Table::Evaluation, "a|b", "c"),
            chunk_partition(Table::Evaluation, "a", "|bc")
        );
        assert_ne!(
            chunk_partition(Table::Analysis, "x", ""),
            chunk_partition(Table::VulnReport, "x", "")
        );
        assert_eq!(chunk_sort("ff", 3), "ff/000003");
        assert!(
            chunk_sort("ff", 9) < chunk_sort("ff", 10),
            "chunks sort in order"
        );
    }
}
