//! The NATS JetStream backend: the store of a cluster that runs nothing but NATS.
//!
//! # Layout
//!
//! Two streams per prefix `P` (e.g. `vigil`), both with the backend's replica count:
//!
//! * `P_STORE` (subjects `P.store.>`, one message kept per subject, file storage, no
//!   direct get, atomic batch publish allowed): one subject per *slot*. A slot is either
//!   one row (`P.store.<table>.<partition>.<sort>`) or one page of a paged partition
//!   (`P.store.<table>.<partition>.pNN`).
//! * `P_STORE_CHUNKS` (subjects `P.store_chunks.>`): the bytes of large values, one
//!   subject per value (`P.store_chunks.<uuid>`), one message per chunk.
//!
//! Partition and sort keys are escaped into subject tokens: `A-Z a-z 0-9 -` stay as they
//! are, every other byte becomes `_XX` (two upper-case hex digits; `_` itself is `_5F`),
//! and the empty string is the token `_`. So `debian:12|libc6` is `debian_3A12_7Clibc6`
//! and `sha256:ab…` is `sha256_3Aab…`. The escape is reversible but does not keep byte
//! order, so `list` sorts rows in memory after reading them.
//!
//! # Paged tables
//!
//! The server keeps an in-memory index of every subject of a stream, so a subject per row
//! of the dense tables does not scale: the reverse index alone would be one subject per
//! (package, image) pair, 30,000,000 for 100,000 images of 300 packages each. Those tables
//! are stored as pages instead: a partition is split into a fixed number of pages
//! ([`pages`]; page = FNV-1a 64 of the sort key modulo that number), and each page is one
//! slot whose value is the page's rows, sorted, length-prefixed (`P`, then a varint count,
//! then for each row a varint length and the sort key, a varint length and the value).
//!
//! | table | pages per partition | slots for 100,000 images |
//! |---|---|---|
//! | package_images | 1 (the typed store already shards a package's reverse index into 16 partitions by image, `ns|pkg#NN`) | at most 16 per `namespace\|package`: with, say, 50,000 distinct ones, at most 800,000 (rare packages fill fewer shards) |
//! | image_keys | 1 (an image's key set) | 100,000 |
//! | evaluation | 4 | at most 400,000, however many evaluations each image has |
//! | notification | 4 | at most 4 per subscription key |
//! | advisories | 1 (every match reads a key's advisories whole: one read, not four) | one per `namespace\|package`; a package with thousands of advisories has a page of a few MB, chunked |
//! | every other table | one slot per row | layer_index, layer_version: one per layer; analysis, vuln_report: one per image; scan_result: one per request; feed_state, policy_bundle, meta: a handful |
//!
//! The chunks stream adds one subject per chunked value (an analysis or layer index of
//! more than 256 KiB, a large page), whatever its size.
//!
//! A page grows with its partition: a package found in all 100,000 images has pages of
//! about 6,250 image digests, some 450 KB each. A page over the chunk threshold simply
//! spills to chunks like any large value, and an update rewrites the whole page (its
//! cost grows with the page, not with the table). Empty pages are removed. Page counts are
//! part of the stored format: changing one needs the partitions rewritten.
//!
//! Writes to a page are optimistic: read the page and its stream sequence, apply the
//! changes, publish with `Nats-Expected-Last-Subject-Sequence` set to that sequence; on
//! a conflict (another writer got there first) read again and retry, at most
//! [`MAX_ATTEMPTS`] times with a jittered backoff. Writers of one process to the same
//! slot take turns on an in-process lock first, so that only writers of different
//! processes ever conflict. Every write to a row slot goes the same way, so that each
//! write knows exactly which value it replaced (below).
//!
//! # Large values
//!
//! A slot's message is `v` + the value when the value is at most the chunk threshold
//! (`min(256 KiB, max_payload / 4)`, `max_payload` read from the server at open: 1 MiB by
//! default), else `c` + a pointer (the chunk subject's id, the length, and the chunks'
//! stream sequences, varint deltas): the value goes to the chunks stream first, in
//! threshold-sized messages, and only once every chunk is acknowledged is the pointer
//! published, so a reader never sees half a value. No message depends on the server's
//! payload limit. When a write replaces or deletes a chunked value (the value its CAS
//! replaced), it then purges the old value's chunk subject, so replaced values leave
//! nothing behind. A reader that finds a chunk gone (the value was replaced while it
//! read) reads the slot again.
//!
//! A deleted row or emptied page is first replaced by a tombstone (`d`, through the same
//! CAS), then its subject is purged up to the tombstone's sequence, which removes the
//! subject from the index unless a newer write has landed meanwhile.
//!
//! # Reads see completed writes
//!
//! JetStream's "direct get" may be answered by any replica, including a follower that has
//! not applied the latest write yet: a caller could miss the write it has just been told
//! is stored. So both streams are created with `allow_direct: false`, and every read goes
//! through the stream API (`$JS.API.STREAM.MSG.GET`, `get_last_raw_message_by_subject` /
//! `get_raw_message`) and subject listing through `STREAM.INFO`, which only the stream
//! leader answers; a write is acknowledged once the leader has stored it. The cost: every
//! read is served by the stream's leader.
//!
//! # Batches
//!
//! [`Backend::write_batch`] groups the writes by slot and publishes one message per slot
//! as a JetStream *atomic batch* (nats-server 2.12+, `allow_atomic`; headers
//! `Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit`). What it gave on
//! nats-server 2.15.1, on one server and on a 3-node R3 cluster: a batch becomes visible
//! whole, at consecutive sequences, or not at all; every message may carry
//! `Nats-Expected-Last-Subject-Sequence` (one message per subject per batch), and one
//! failed check rejects the whole batch (error 10071), which is then retried like a
//! single write (a single publish's failed check may also come back as 10164). The
//! server takes at most 1,000 messages per batch (error 10199 beyond), so a batch over
//! [`MAX_BATCH`] slots is split into several atomic batches applied in order: each part
//! is atomic, the whole is not (like ScyllaDB's unlogged batch; the store's batches are
//! idempotent, and a redelivered message repairs a partial one). The chunks of large
//! values are written before the batch, outside it. A server without atomic publish
//! (older than 2.12: the stream comes back without `allow_atomic`) gets every slot of a
//! batch written on its own, in order, each with its CAS: not atomic at all.
//!
//! `put_if_absent` is the same CAS: a row slot with no message (expected sequence 0) or
//! a tombstone, or a page without the sort key; of two processes racing, exactly one
//! publish succeeds and the other reads the row and returns `false`.
//!
//! # Limits
//!
//! * A write whose acknowledgement times out has an unknown outcome and is reported as an
//!   error; its chunks, if any, are kept (they may be referenced), so they leak when the
//!   write did not land. So do the chunks of a process that dies between its chunks and
//!   its pointer.
//! * Chunk cleanup after a successful write is best effort: a failure is logged, not
//!   returned (the write itself is done).
//! * A slot subject (prefix, table, escaped partition and sort; an escaped byte takes
//!   three characters) may be at most 2,048 bytes: a write of a longer key is refused
//!   (the server's protocol lines are at most 4 KiB).
//! * A read or write in flight when a stream leader dies waits for its request timeout
//!   (the JetStream context's) before it is retried (reads) or reported (writes whose
//!   acknowledgement did not come).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::{self, stream, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::backend::{Backend, Table, Write};
use crate::StoreError;

/// Pages per partition of a paged table; `None`: one slot per row.
pub fn pages(table: Table) -> Option<u32> {
    match table {
        Table::PackageImages => Some(1),
        Table::ImageKeys => Some(1),
        Table::Evaluation => Some(4),
        Table::Notification => Some(4),
        Table::Advisories => Some(1),
        Table::LayerIndex
        | Table::LayerVersion
        | Table::Analysis
        | Table::FeedState
        | Table::VulnReport
        | Table::PolicyBundle
        | Table::ScanResult
        | Table::Meta => None,
    }
}

/// Most slots in one atomic batch (the server's limit is 1,000 messages).
pub const MAX_BATCH: usize = 1000;

/// Most attempts of one write when other processes keep winning the CAS.
pub const MAX_ATTEMPTS: u32 = 100;

/// The largest inline value and chunk, whatever the server allows.
const CHUNK_MAX: usize = 256 * 1024;

/// How long transient failures (no stream leader during an election) are retried.
const TRANSIENT_BUDGET: Duration = Duration::from_secs(20);

/// Chunk publishes awaiting their acknowledgement at once.
const CHUNK_WINDOW: usize = 16;

/// Reads in flight at once for one call (heads of a batch, rows of a list, chunks).
const READ_CONCURRENCY: usize = 32;

/// The longest slot subject written (the server's protocol lines are at most 4 KiB).
const MAX_SUBJECT: usize = 2048;

/// In-process lock stripes over slot subjects.
const STRIPES: usize = 256;

/// Multi-message batches in flight at once from one backend (the server allows 50 per
/// stream, shared by every process).
const BATCHES_IN_FLIGHT: usize = 8;

/// A batch message asks for an acknowledgement every so many messages (flow control).
const BATCH_ACK_EVERY: usize = 100;

/// JetStream error codes.
const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;
const ERR_WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
const ERR_BATCH_INCOMPLETE: u64 = 10176;
const ERR_BATCH_SEQUENCE_MISSING: u64 = 10175;
const ERR_BATCH_TOO_MANY_INFLIGHT: u64 = 10210;

const TAG_VALUE: u8 = b'v';
const TAG_CHUNKED: u8 = b'c';
const TAG_TOMBSTONE: u8 = b'd';
const PAGE_FORMAT: u8 = b'P';

fn backend_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("jetstream: {what}: {e}"))
}

/// The escaped subject token of a key (see the module doc).
pub fn encode_token(key: &str) -> String {
    if key.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push('_');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

/// The key of an escaped token; `None` when the token is no escape of a UTF-8 key.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if b[i].is_ascii_alphanumeric() || b[i] == b'-' {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The page of a sort key: FNV-1a 64 modulo the table's page count (stable across
/// processes and versions: it is part of the stored format).
fn page_of(sort: &str, pages: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sort.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(pages)) as u32
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn get_bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(get_varint(b, at)?).ok()?;
    let end = at.checked_add(len)?;
    let s = b.get(*at..end)?;
    *at = end;
    Some(s)
}

/// A page: its rows by sort key.
type Page = BTreeMap<String, Vec<u8>>;

fn encode_page(page: &Page) -> Vec<u8> {
    let size: usize = page.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(size + 8);
    out.push(PAGE_FORMAT);
    put_varint(&mut out, page.len() as u64);
    for (k, v) in page {
        put_varint(&mut out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        put_varint(&mut out, v.len() as u64);
        out.extend_from_slice(v);
    }
    out
}

fn decode_page(b: &[u8]) -> Option<Page> {
    if b.first() != Some(&PAGE_FORMAT) {
        return None;
    }
    let mut at = 1;
    let n = get_varint(b, &mut at)?;
    let mut page = Page::new();
    for _ in 0..n {
        let k = std::str::from_utf8(get_bytes(b, &mut at)?)
            .ok()?
            .to_string();
        let v = get_bytes(b, &mut at)?.to_vec();
        page.insert(k, v);
    }
    (at == b.len()).then_some(page)
}

/// Where a chunked value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pointer {
    /// The chunk subject's last token.
    id: String,
    len: u64,
    /// Stream sequence of each chunk, in order.
    seqs: Vec<u64>,
}

impl Pointer {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.id.len() + 16 + self.seqs.len() * 2);
        out.push(TAG_CHUNKED);
        put_varint(&mut out, self.id.len() as u64);
        out.extend_from_slice(self.id.as_bytes());
        put_varint(&mut out, self.len);
        put_varint(&mut out, self.seqs.len() as u64);
        let mut prev = 0;
        for s in &self.seqs {
            put_varint(&mut out, s - prev);
            prev = *s;
        }
        out
    }

    /// Decode what follows the tag.
    fn decode(b: &[u8]) -> Option<Pointer> {
        let mut at = 0;
        let id = std::str::from_utf8(get_bytes(b, &mut at)?)
            .ok()?
            .to_string();
        let len = get_varint(b, &mut at)?;
        let n = get_varint(b, &mut at)?;
        let mut seqs = Vec::with_capacity(n.min(1 << 20) as usize);
        let mut prev: u64 = 0;
        for _ in 0..n {
            prev = prev.checked_add(get_varint(b, &mut at)?)?;
            seqs.push(prev);
        }
        (at == b.len()).then_some(Pointer { id, len, seqs })
    }
}

/// What a slot holds.
#[derive(Debug, Clone)]
enum Content {
    /// No message, or a tombstone.
    Absent,
    Inline(Bytes),
    Chunked(Pointer),
}

/// A slot's last message: its stream sequence (0: none) and content.
#[derive(Debug, Clone)]
struct Head {
    seq: u64,
    content: Content,
}

impl Head {
    fn present(&self) -> bool {
        !matches!(self.content, Content::Absent)
    }

    fn pointer(&self) -> Option<&Pointer> {
        match &self.content {
            Content::Chunked(p) => Some(p),
            _ => None,
        }
    }
}

/// A slot's value could not be assembled: a chunk is gone (the value was replaced).
struct ChunkGone;

/// One change to one slot.
#[derive(Debug)]
enum SlotOp {
    Put(Bytes),
    PutIfAbsent(Bytes),
    Delete,
    /// Changes to a page's rows, in order: `Some` puts, `None` deletes; `if_absent`
    /// makes the (single) put conditional.
    Page {
        changes: Vec<(String, Option<Vec<u8>>)>,
        if_absent: bool,
    },
}

/// What one write changes in its slot.
enum Change {
    Page(String, Option<Vec<u8>>),
    Row(SlotOp),
}

/// A slot and its change.
#[derive(Debug)]
struct SlotWrite {
    subject: String,
    /// For error messages: table, partition and sort (or page).
    what: String,
    op: SlotOp,
}

/// One message of a write attempt.
struct Outgoing {
    subject: String,
    payload: Bytes,
    expected: u64,
    /// The chunked value this message replaces, to purge once it is stored.
    replaces: Option<Pointer>,
    tombstone: bool,
}

/// Why a publish failed.
enum PubError {
    /// A CAS check failed: read again and retry.
    Conflict,
    /// Nothing was stored (no stream leader, an abandoned batch): retry for a while.
    Transient(String),
    /// The outcome is unknown (an acknowledgement timed out): keep the chunks, report.
    Ambiguous(String),
    Fatal(String),
}

/// A JetStream API error in a reply.
#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(serde::Deserialize)]
struct BatchReply {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: usize,
}

fn is_wrong_last_sequence(code: u64) -> bool {
    code == ERR_WRONG_LAST_SEQUENCE || code == ERR_WRONG_LAST_SEQUENCE_CONSTANT
}

/// The JetStream error code behind a publish error.
fn api_error_code(e: &jetstream::context::PublishError) -> Option<u64> {
    let source = std::error::Error::source(e)?;
    Some(source.downcast_ref::<jetstream::Error>()?.error_code().0)
}

fn classify(code: u64, description: &str) -> PubError {
    match code {
        c if is_wrong_last_sequence(c) => PubError::Conflict,
        ERR_BATCH_INCOMPLETE | ERR_BATCH_SEQUENCE_MISSING | ERR_BATCH_TOO_MANY_INFLIGHT => {
            PubError::Transient(format!("{description} ({code})"))
        }
        _ => PubError::Fatal(format!("{description} ({code})")),
    }
}

/// A jittered backoff for the `attempt`-th retry: up to 1, 2, 4 … 64, then 100 ms.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = (1u64 << attempt.min(6)).min(100);
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(cap_ms * 500 + r % (cap_ms * 500 + 1))
}

/// The stream-name form of a subject prefix: upper case, `_` for anything else.
fn stream_name_of(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The JetStream backend (see the module doc).
pub struct JetStreamBackend {
    js: Context,
    client: async_nats::Client,
    rows: stream::Stream<()>,
    chunks: stream::Stream<()>,
    rows_stream: String,
    chunks_stream: String,
    /// `P.store`
    rows_prefix: String,
    /// `P.store_chunks`
    chunk_prefix: String,
    /// The largest inline value, and the size of a chunk.
    threshold: usize,
    atomic: bool,
    locks: Vec<tokio::sync::Mutex<()>>,
    batches: tokio::sync::Semaphore,
}

impl JetStreamBackend {
    /// Create (or update) the two streams of `prefix` (a subject prefix such as `vigil`)
    /// with `replicas` replicas (1 on one server, 3 on a 3-node cluster). An existing
    /// stream whose replica count or store settings differ is updated.
    pub async fn open(js: Context, prefix: &str, replicas: usize) -> Result<Self, StoreError> {
        if !valid_prefix(prefix) {
            return Err(StoreError::Backend(format!(
                "jetstream: invalid store prefix {prefix:?} (subject tokens of letters, digits, - and _)"
            )));
        }
        if replicas == 0 {
            return Err(StoreError::Backend(
                "jetstream: the replica count must be at least 1".into(),
            ));
        }
        let client = js.client();
        let name = stream_name_of(prefix);
        let rows_stream = format!("{name}_STORE");
        let chunks_stream = format!("{name}_STORE_CHUNKS");
        let rows_prefix = format!("{prefix}.store");
        let chunk_prefix = format!("{prefix}.store_chunks");
        let rows_config = stream::Config {
            name: rows_stream.clone(),
            description: Some("vigil store: rows and pages (jetstream_backend)".into()),
            subjects: vec![format!("{rows_prefix}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            // Reads must come from the leader: see the module doc.
            allow_direct: false,
            allow_atomic_publish: true,
            ..Default::default()
        };
        let chunks_config = stream::Config {
            name: chunks_stream.clone(),
            description: Some("vigil store: chunks of large values (jetstream_backend)".into()),
            subjects: vec![format!("{chunk_prefix}.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            allow_direct: false,
            ..Default::default()
        };
        let rows_info = ensure_stream(&js, rows_config).await?;
        ensure_stream(&js, chunks_config).await?;
        // Known once connected (the stream requests above were answered).
        let max_payload = match client.server_info().max_payload {
            0 => 1024 * 1024,
            n => n,
        };
        let threshold = (max_payload / 4).clamp(1024, CHUNK_MAX);
        // A server older than 2.12 drops the field it does not know.
        let atomic = rows_info.config.allow_atomic_publish;
        if !atomic {
            tracing::warn!(
                stream = %rows_stream,
                "atomic batch publish unavailable (nats-server < 2.12): batches are written slot by slot"
            );
        }
        let rows = js
            .get_stream_no_info(&rows_stream)
            .await
            .map_err(|e| backend_err(format!("stream {rows_stream}"), e))?;
        let chunks = js
            .get_stream_no_info(&chunks_stream)
            .await
            .map_err(|e| backend_err(format!("stream {chunks_stream}"), e))?;
        Ok(JetStreamBackend {
            js,
            client,
            rows,
            chunks,
            rows_stream,
            chunks_stream,
            rows_prefix,
            chunk_prefix,
            threshold,
            atomic,
            locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            batches: tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT),
        })
    }

    /// The streams: rows and pages, and chunks.
    pub fn stream_names(&self) -> (&str, &str) {
        (&self.rows_stream, &self.chunks_stream)
    }

    /// The size over which a value goes to chunks (also the chunk size).
    pub fn chunk_threshold(&self) -> usize {
        self.threshold
    }

    /// Whether batches are published as atomic batches.
    pub fn atomic_batches(&self) -> bool {
        self.atomic
    }

    /// Messages and subjects in the chunk stream (both 0 when no large value is stored).
    pub async fn chunk_usage(&self) -> Result<(u64, u64), StoreError> {
        let info = self
            .chunks
            .get_info()
            .await
            .map_err(|e| backend_err(format!("stream info {}", self.chunks_stream), e))?;
        Ok((info.state.messages, info.state.subjects_count))
    }

    /// Messages and subjects in the rows stream.
    pub async fn slot_usage(&self) -> Result<(u64, u64), StoreError> {
        let info = self
            .rows
            .get_info()
            .await
            .map_err(|e| backend_err(format!("stream info {}", self.rows_stream), e))?;
        Ok((info.state.messages, info.state.subjects_count))
    }

    fn partition_prefix(&self, table: Table, partition: &str) -> String {
        format!(
            "{}.{}.{}",
            self.rows_prefix,
            table.name(),
            encode_token(partition)
        )
    }

    fn row_subject(&self, table: Table, partition: &str, sort: &str) -> String {
        format!(
            "{}.{}",
            self.partition_prefix(table, partition),
            encode_token(sort)
        )
    }

    fn page_subject(&self, table: Table, partition: &str, page: u32) -> String {
        format!("{}.p{page:02}", self.partition_prefix(table, partition))
    }

    // ---- reads ------------------------------------------------------------------------

    /// A slot's last message, from the stream leader.
    async fn read_head(&self, subject: &str) -> Result<Head, StoreError> {
        use stream::LastRawMessageErrorKind as K;
        let start = Instant::now();
        let msg = loop {
            match self.rows.get_last_raw_message_by_subject(subject).await {
                Ok(m) => break m,
                Err(e) if e.kind() == K::NoMessageFound => {
                    return Ok(Head {
                        seq: 0,
                        content: Content::Absent,
                    })
                }
                // A request that got no answer (no leader during an election, a
                // reconnect): a read can always be asked again.
                Err(e) if e.kind() == K::Other && start.elapsed() < TRANSIENT_BUDGET => {
                    tracing::debug!(subject, error = %e, "read retried");
                    tokio::time::sleep(backoff(6)).await;
                }
                Err(e) => return Err(backend_err(format!("read {subject} (STREAM.MSG.GET)"), e)),
            }
        };
        let content = match msg.payload.first() {
            Some(&TAG_VALUE) => Content::Inline(msg.payload.slice(1..)),
            Some(&TAG_CHUNKED) => {
                Content::Chunked(Pointer::decode(&msg.payload[1..]).ok_or_else(|| {
                    StoreError::Backend(format!("jetstream: {subject}: unreadable chunk pointer"))
                })?)
            }
            Some(&TAG_TOMBSTONE) => Content::Absent,
            _ => {
                return Err(StoreError::Backend(format!(
                    "jetstream: {subject}: not a store message (seq {})",
                    msg.sequence
                )))
            }
        };
        Ok(Head {
            seq: msg.sequence,
            content,
        })
    }

    /// The value a head holds; `Err(ChunkGone)` when its chunks were purged meanwhile.
    async fn materialize(
        &self,
        head: &Head,
    ) -> Result<Result<Option<Bytes>, ChunkGone>, StoreError> {
        let p = match &head.content {
            Content::Absent => return Ok(Ok(None)),
            Content::Inline(b) => return Ok(Ok(Some(b.clone()))),
            Content::Chunked(p) => p,
        };
        let subject = format!("{}.{}", self.chunk_prefix, p.id);
        let parts: Vec<Option<Bytes>> = futures::stream::iter(p.seqs.iter().copied())
            .map(|seq| self.read_chunk(&subject, seq))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(p.len as usize);
        for part in parts {
            match part {
                Some(b) => out.extend_from_slice(&b),
                None => return Ok(Err(ChunkGone)),
            }
        }
        if out.len() as u64 != p.len {
            return Err(StoreError::Backend(format!(
                "jetstream: chunks of {subject} hold {} bytes, the pointer says {}",
                out.len(),
                p.len
            )));
        }
        Ok(Ok(Some(Bytes::from(out))))
    }

    /// One chunk; `None` when it is gone.
    async fn read_chunk(&self, subject: &str, seq: u64) -> Result<Option<Bytes>, StoreError> {
        use stream::RawMessageErrorKind as K;
        let start = Instant::now();
        loop {
            match self.chunks.get_raw_message(seq).await {
                Ok(m) if m.subject.as_str() == subject => return Ok(Some(m.payload)),
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == K::NoMessageFound => return Ok(None),
                Err(e) if e.kind() == K::Other && start.elapsed() < TRANSIENT_BUDGET => {
                    tokio::time::sleep(backoff(6)).await;
                }
                Err(e) => {
                    return Err(backend_err(
                        format!("read chunk {subject} seq {seq} (STREAM.MSG.GET)"),
                        e,
                    ))
                }
            }
        }
    }

    /// A slot's value, read again when it was replaced while being read.
    async fn read_slot(&self, subject: &str) -> Result<Option<Bytes>, StoreError> {
        let mut head = self.read_head(subject).await?;
        for _ in 0..MAX_ATTEMPTS {
            match self.materialize(&head).await? {
                Ok(v) => return Ok(v),
                Err(ChunkGone) => {
                    let again = self.read_head(subject).await?;
                    if again.seq == head.seq {
                        return Err(StoreError::Backend(format!(
                            "jetstream: {subject}: chunks of the current value are missing"
                        )));
                    }
                    head = again;
                }
            }
        }
        Err(StoreError::Backend(format!(
            "jetstream: {subject}: replaced too often while being read"
        )))
    }

    async fn read_page(&self, subject: &str) -> Result<Page, StoreError> {
        match self.read_slot(subject).await? {
            None => Ok(Page::new()),
            Some(b) => decode_page(&b).ok_or_else(|| {
                StoreError::Backend(format!("jetstream: {subject}: unreadable page"))
            }),
        }
    }

    /// The subjects of a row table's partition (from the stream leader).
    async fn row_subjects(&self, table: Table, partition: &str) -> Result<Vec<String>, StoreError> {
        use jetstream::context::RequestErrorKind as K;
        let filter = format!("{}.*", self.partition_prefix(table, partition));
        let start = Instant::now();
        loop {
            let attempt = async {
                let info = self.rows.info_with_subjects(&filter).await?;
                info.map_ok(|(s, _)| s).try_collect::<Vec<String>>().await
            };
            match attempt.await {
                Ok(s) => return Ok(s),
                Err(e)
                    if matches!(e.kind(), K::NoResponders | K::TimedOut)
                        && start.elapsed() < TRANSIENT_BUDGET =>
                {
                    tokio::time::sleep(backoff(6)).await;
                }
                Err(e) => return Err(backend_err(format!("list {filter} (STREAM.INFO)"), e)),
            }
        }
    }

    // ---- writes -----------------------------------------------------------------------

    /// The slot of a write and what it changes there.
    fn slot_of(&self, w: Write) -> (String, String, Change) {
        let (table, partition, sort, value) = match w {
            Write::Put {
                table,
                partition,
                sort,
                value,
            } => (table, partition, sort, Some(value)),
            Write::Delete {
                table,
                partition,
                sort,
            } => (table, partition, sort, None),
        };
        match pages(table) {
            Some(n) => {
                let page = page_of(&sort, n);
                let subject = self.page_subject(table, &partition, page);
                let what = format!("{} {partition:?} page {page}", table.name());
                (subject, what, Change::Page(sort, value))
            }
            None => {
                let subject = self.row_subject(table, &partition, &sort);
                let what = format!("{} {partition:?}/{sort:?}", table.name());
                let op = match value {
                    Some(v) => SlotOp::Put(Bytes::from(v)),
                    None => SlotOp::Delete,
                };
                (subject, what, Change::Row(op))
            }
        }
    }

    /// Group writes by slot, in the order slots first appear; the last write of a row
    /// wins, the changes to one page apply in order.
    fn plan(&self, writes: Vec<Write>) -> Vec<SlotWrite> {
        let mut slots: Vec<SlotWrite> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for w in writes {
            let (subject, what, change) = self.slot_of(w);
            if let Some(&i) = at.get(&subject) {
                match (&mut slots[i].op, change) {
                    (SlotOp::Page { changes, .. }, Change::Page(sort, value)) => {
                        changes.push((sort, value))
                    }
                    (op, Change::Row(new)) => *op = new,
                    (_, Change::Page(..)) => unreachable!("a page subject is never a row's"),
                }
                continue;
            }
            at.insert(subject.clone(), slots.len());
            let op = match change {
                Change::Page(sort, value) => SlotOp::Page {
                    changes: vec![(sort, value)],
                    if_absent: false,
                },
                Change::Row(op) => op,
            };
            slots.push(SlotWrite { subject, what, op });
        }
        slots
    }

    /// Apply slot writes: in groups of at most [`MAX_BATCH`] slots, each group atomic
    /// when the server has atomic publish (else one slot at a time). Returns, for each
    /// slot, whether it was written (`false`: a put-if-absent that found the row).
    async fn apply(&self, slots: Vec<SlotWrite>) -> Result<Vec<bool>, StoreError> {
        if let Some(long) = slots.iter().find(|s| s.subject.len() > MAX_SUBJECT) {
            // The server closes a connection whose protocol line is over 4 KiB.
            return Err(StoreError::Backend(format!(
                "jetstream: write {}: its subject would be {} bytes, over {MAX_SUBJECT}",
                long.what,
                long.subject.len()
            )));
        }
        let group = if self.atomic { MAX_BATCH } else { 1 };
        let mut out = Vec::with_capacity(slots.len());
        let mut slots = slots.into_iter().peekable();
        while slots.peek().is_some() {
            let part: Vec<SlotWrite> = slots.by_ref().take(group).collect();
            out.extend(self.apply_group(&part).await?);
        }
        Ok(out)
    }

    /// Lock the in-process stripes of the subjects, in stripe order (no deadlock).
    async fn lock_slots(&self, subjects: &[&str]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = subjects
            .iter()
            .map(|s| page_of(s, STRIPES as u32) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.locks[s].lock().await);
        }
        guards
    }

    /// Write a value's chunks; returns the pointer once every chunk is acknowledged.
    async fn write_chunks(&self, value: &Bytes, what: &str) -> Result<Pointer, StoreError> {
        let start = Instant::now();
        loop {
            let id = uuid::Uuid::new_v4().simple().to_string();
            match self.try_write_chunks(&id, value).await {
                Ok(seqs) => {
                    return Ok(Pointer {
                        id,
                        len: value.len() as u64,
                        seqs,
                    })
                }
                Err((transient, e)) => {
                    self.purge_chunks(&id).await;
                    if !(transient && start.elapsed() < TRANSIENT_BUDGET) {
                        return Err(backend_err(format!("write chunks of {what}"), e));
                    }
                    tokio::time::sleep(backoff(6)).await;
                }
            }
        }
    }

    async fn try_write_chunks(&self, id: &str, value: &Bytes) -> Result<Vec<u64>, (bool, String)> {
        use jetstream::context::PublishErrorKind as K;
        let subject = format!("{}.{id}", self.chunk_prefix);
        let fail =
            |e: jetstream::context::PublishError| (e.kind() == K::StreamNotFound, e.to_string());
        let mut pending = VecDeque::new();
        let mut seqs = Vec::with_capacity(value.len().div_ceil(self.threshold));
        for at in (0..value.len()).step_by(self.threshold) {
            let part = value.slice(at..(at + self.threshold).min(value.len()));
            let ack = self.js.publish(subject.clone(), part).await.map_err(fail)?;
            pending.push_back(ack);
            if pending.len() >= CHUNK_WINDOW {
                let ack = pending.pop_front().expect("a pending ack");
                seqs.push(ack.await.map_err(fail)?.sequence);
            }
        }
        while let Some(ack) = pending.pop_front() {
            seqs.push(ack.await.map_err(fail)?.sequence);
        }
        Ok(seqs)
    }

    /// Purge a chunked value's subject (best effort: logged on failure).
    async fn purge_chunks(&self, id: &str) {
        let subject = format!("{}.{id}", self.chunk_prefix);
        if let Err(e) = self.chunks.purge().filter(subject.clone()).await {
            tracing::warn!(%subject, error = %e, "cannot purge the chunks of a replaced value");
        }
    }

    /// Remove a tombstone's subject, unless a newer message has been written to it.
    async fn purge_tombstone(&self, subject: &str, seq: u64) {
        if let Err(e) = self
            .rows
            .purge()
            .filter(subject.to_string())
            .sequence(seq + 1)
            .await
        {
            tracing::warn!(%subject, error = %e, "cannot purge a tombstone");
        }
    }

    /// The message carrying `value` (inline or as a pointer to chunks written now).
    async fn value_message(
        &self,
        value: &Bytes,
        what: &str,
    ) -> Result<(Bytes, Option<Pointer>), StoreError> {
        if value.len() <= self.threshold {
            let mut m = Vec::with_capacity(value.len() + 1);
            m.push(TAG_VALUE);
            m.extend_from_slice(value);
            return Ok((Bytes::from(m), None));
        }
        let p = self.write_chunks(value, what).await?;
        let m = p.encode();
        if m.len() > self.threshold {
            self.purge_chunks(&p.id).await;
            return Err(StoreError::Backend(format!(
                "jetstream: {what}: a value of {} bytes needs a pointer larger than a message",
                value.len()
            )));
        }
        Ok((Bytes::from(m), Some(p)))
    }

    /// Apply one group of slot writes: read every slot, compute the new contents, write
    /// chunks, publish (one message, or an atomic batch) with a CAS on every slot, and
    /// on success purge what was replaced. Retried on conflicts.
    async fn apply_group(&self, slots: &[SlotWrite]) -> Result<Vec<bool>, StoreError> {
        let subjects: Vec<&str> = slots.iter().map(|s| s.subject.as_str()).collect();
        let _locks = self.lock_slots(&subjects).await;
        let _permit = if slots.len() > 1 {
            Some(
                self.batches
                    .acquire()
                    .await
                    .map_err(|e| backend_err("batch permit", e))?,
            )
        } else {
            None
        };
        let what_all = || {
            if slots.len() == 1 {
                slots[0].what.clone()
            } else {
                format!("a batch of {} slots ({}, …)", slots.len(), slots[0].what)
            }
        };
        // The message of a row put does not depend on what it replaces: its chunks are
        // written once, whatever the retries.
        let mut row_messages: Vec<Option<(Bytes, Option<Pointer>)>> = vec![None; slots.len()];
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Chunks of pages written by this attempt: purged unless it lands.
            let mut fresh: Vec<Pointer> = Vec::new();
            let prepared = self.prepare(slots, &mut row_messages, &mut fresh).await;
            let (msgs, written) = match prepared {
                Ok(Some(p)) => p,
                // A page's chunks went away while it was read: it was just replaced.
                Ok(None) => (Vec::new(), Vec::new()),
                Err(e) => {
                    self.purge_all(fresh, &mut row_messages).await;
                    return Err(e);
                }
            };
            let result = if written.is_empty() {
                Err(PubError::Conflict)
            } else if msgs.is_empty() {
                Ok(Vec::new())
            } else {
                self.publish(&msgs).await
            };
            match result {
                Ok(seqs) => {
                    // A put-if-absent that found its row wrote chunks nothing points to.
                    for (m, w) in row_messages.iter_mut().zip(&written) {
                        if !w {
                            if let Some((_, Some(p))) = m.take() {
                                self.purge_chunks(&p.id).await;
                            }
                        }
                    }
                    for (m, seq) in msgs.iter().zip(seqs) {
                        if let Some(p) = &m.replaces {
                            self.purge_chunks(&p.id).await;
                        }
                        if m.tombstone {
                            self.purge_tombstone(&m.subject, seq).await;
                        }
                    }
                    return Ok(written);
                }
                // The chunks are kept: the write may have landed and point to them.
                Err(PubError::Ambiguous(e)) => {
                    return Err(backend_err(
                        format!("write {} (outcome unknown)", what_all()),
                        e,
                    ))
                }
                Err(e) => {
                    let retry = match &e {
                        PubError::Conflict => attempt < MAX_ATTEMPTS,
                        PubError::Transient(_) => start.elapsed() < TRANSIENT_BUDGET,
                        _ => false,
                    };
                    if !retry {
                        self.purge_all(fresh, &mut row_messages).await;
                        let why = match e {
                            PubError::Conflict => {
                                format!("still conflicting after {attempt} attempts")
                            }
                            PubError::Transient(s)
                            | PubError::Fatal(s)
                            | PubError::Ambiguous(s) => s,
                        };
                        return Err(backend_err(format!("write {}", what_all()), why));
                    }
                    for p in fresh {
                        self.purge_chunks(&p.id).await;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// Purge the chunks an attempt wrote: the pages' and the rows'.
    async fn purge_all(
        &self,
        fresh: Vec<Pointer>,
        row_messages: &mut [Option<(Bytes, Option<Pointer>)>],
    ) {
        for p in fresh {
            self.purge_chunks(&p.id).await;
        }
        for m in row_messages.iter_mut() {
            if let Some((_, Some(p))) = m.take() {
                self.purge_chunks(&p.id).await;
            }
        }
    }

    /// Read the slots and compute one attempt's messages (with their chunks written)
    /// and, for each slot, whether it is written. `None`: a page was replaced while it
    /// was read (retry).
    async fn prepare(
        &self,
        slots: &[SlotWrite],
        row_messages: &mut [Option<(Bytes, Option<Pointer>)>],
        fresh: &mut Vec<Pointer>,
    ) -> Result<Option<(Vec<Outgoing>, Vec<bool>)>, StoreError> {
        enum Body<'a> {
            Row(&'a Bytes),
            Page(Bytes),
            Tombstone,
        }
        let subjects: Vec<String> = slots.iter().map(|s| s.subject.clone()).collect();
        let heads: Vec<Head> = futures::stream::iter(subjects)
            .map(|subject| async move { self.read_head(&subject).await })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut written = vec![false; slots.len()];
        let mut msgs: Vec<Outgoing> = Vec::new();
        for (i, (slot, head)) in slots.iter().zip(&heads).enumerate() {
            let body = match &slot.op {
                SlotOp::Put(v) => Some(Body::Row(v)),
                SlotOp::PutIfAbsent(v) => (!head.present()).then_some(Body::Row(v)),
                SlotOp::Delete => head.present().then_some(Body::Tombstone),
                SlotOp::Page { changes, if_absent } => {
                    let Ok(bytes) = self.materialize(head).await? else {
                        return Ok(None);
                    };
                    let mut page = match bytes {
                        None => Page::new(),
                        Some(b) => decode_page(&b).ok_or_else(|| {
                            StoreError::Backend(format!(
                                "jetstream: {}: unreadable page",
                                slot.subject
                            ))
                        })?,
                    };
                    let mut changed = false;
                    for (sort, value) in changes {
                        match value {
                            Some(_) if *if_absent && page.contains_key(sort) => {}
                            Some(v) => {
                                changed |= page.insert(sort.clone(), v.clone()).as_ref() != Some(v)
                            }
                            None => changed |= page.remove(sort).is_some(),
                        }
                    }
                    match (changed, page.is_empty()) {
                        (false, _) => None,
                        (true, true) => Some(Body::Tombstone),
                        (true, false) => Some(Body::Page(Bytes::from(encode_page(&page)))),
                    }
                }
            };
            let Some(body) = body else { continue };
            written[i] = true;
            let tombstone = matches!(body, Body::Tombstone);
            let payload = match body {
                Body::Tombstone => Bytes::from_static(&[TAG_TOMBSTONE]),
                Body::Row(v) => match &row_messages[i] {
                    Some((m, _)) => m.clone(),
                    None => {
                        let (m, p) = self.value_message(v, &slot.what).await?;
                        row_messages[i] = Some((m.clone(), p));
                        m
                    }
                },
                Body::Page(b) => {
                    let (m, p) = self.value_message(&b, &slot.what).await?;
                    fresh.extend(p);
                    m
                }
            };
            msgs.push(Outgoing {
                subject: slot.subject.clone(),
                payload,
                expected: head.seq,
                replaces: head.pointer().cloned(),
                tombstone,
            });
        }
        Ok(Some((msgs, written)))
    }

    /// Publish the messages of one attempt with their CAS: one plain publish, or one
    /// atomic batch. Returns each message's stream sequence.
    async fn publish(&self, msgs: &[Outgoing]) -> Result<Vec<u64>, PubError> {
        if msgs.len() == 1 {
            return self.publish_one(&msgs[0]).await.map(|s| vec![s]);
        }
        debug_assert!(self.atomic && msgs.len() <= MAX_BATCH);
        self.publish_batch(msgs).await
    }

    async fn publish_one(&self, m: &Outgoing) -> Result<u64, PubError> {
        use jetstream::context::PublishErrorKind as K;
        let classify_err = |e: jetstream::context::PublishError| match e.kind() {
            K::WrongLastSequence => PubError::Conflict,
            // 10164: the same failed check, as an R3 stream answered a single publish
            // here (nats-server 2.15.1); async-nats only knows 10071.
            K::Other if api_error_code(&e).is_some_and(is_wrong_last_sequence) => {
                PubError::Conflict
            }
            K::StreamNotFound => PubError::Transient(format!("publish {}: {e}", m.subject)),
            K::TimedOut | K::BrokenPipe => {
                PubError::Ambiguous(format!("publish {}: {e}", m.subject))
            }
            _ => PubError::Fatal(format!("publish {}: {e}", m.subject)),
        };
        let ack = self
            .js
            .send_publish(
                m.subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(m.payload.clone())
                    .expected_last_subject_sequence(m.expected),
            )
            .await
            .map_err(classify_err)?;
        Ok(ack.await.map_err(classify_err)?.sequence)
    }

    /// One atomic batch: the first message and every [`BATCH_ACK_EVERY`]-th are requests
    /// (an empty reply: staged), the others plain publishes, the last one commits and
    /// gets the pub ack with the last sequence; the batch's messages have consecutive
    /// sequences.
    async fn publish_batch(&self, msgs: &[Outgoing]) -> Result<Vec<u64>, PubError> {
        use async_nats::client::RequestErrorKind as R;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let n = msgs.len();
        for (i, m) in msgs.iter().enumerate() {
            let last = i + 1 == n;
            let mut h = HeaderMap::new();
            h.insert(header::NATS_BATCH_ID, id.as_str());
            h.insert(header::NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
            h.insert(
                header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                m.expected.to_string().as_str(),
            );
            if last {
                h.insert(header::NATS_BATCH_COMMIT, header::NATS_BATCH_COMMIT_FINAL);
            }
            if !(i == 0 || last || i % BATCH_ACK_EVERY == 0) {
                self.client
                    .publish_with_headers(m.subject.clone(), h, m.payload.clone())
                    .await
                    .map_err(|e| {
                        PubError::Transient(format!("batch publish {}: {e}", m.subject))
                    })?;
                continue;
            }
            let reply = match self
                .client
                .request_with_headers(m.subject.clone(), h, m.payload.clone())
                .await
            {
                Ok(r) => r,
                Err(e) if e.kind() == R::NoResponders => {
                    return Err(PubError::Transient(format!("batch {}: {e}", m.subject)))
                }
                // Before the commit, nothing is stored without it.
                Err(e) if !last => {
                    return Err(PubError::Transient(format!("batch {}: {e}", m.subject)))
                }
                Err(e) => {
                    return Err(PubError::Ambiguous(format!(
                        "batch commit {}: {e}",
                        m.subject
                    )))
                }
            };
            if reply.payload.is_empty() && !last {
                continue;
            }
            let r: BatchReply = serde_json::from_slice(&reply.payload).map_err(|e| {
                PubError::Fatal(format!(
                    "batch reply {:?}: {e}",
                    String::from_utf8_lossy(&reply.payload)
                ))
            })?;
            if let Some(err) = r.error {
                return Err(classify(err.err_code, &err.description));
            }
            if last {
                if r.count != n || r.seq < n as u64 {
                    // Committed, but not as sent: the chunks may be referenced.
                    return Err(PubError::Ambiguous(format!(
                        "batch of {n} acknowledged as {} messages up to seq {}",
                        r.count, r.seq
                    )));
                }
                let first = r.seq + 1 - n as u64;
                return Ok((first..=r.seq).collect());
            }
        }
        unreachable!("the last message of a batch returns")
    }

    async fn write_one(&self, slot: SlotWrite) -> Result<bool, StoreError> {
        Ok(self
            .apply(vec![slot])
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }
}

/// Create the stream, or bring an existing one to this configuration's replicas and
/// store settings (other settings an operator changed are kept).
async fn ensure_stream(js: &Context, config: stream::Config) -> Result<stream::Info, StoreError> {
    let name = config.name.clone();
    let what = |op: &str| format!("{op} stream {name}");
    let mut s = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| backend_err(what("create"), e))?;
    let info = s
        .info()
        .await
        .map_err(|e| backend_err(what("info"), e))?
        .clone();
    let have = &info.config;
    let stale = have.num_replicas != config.num_replicas
        || have.allow_direct != config.allow_direct
        || have.allow_atomic_publish != config.allow_atomic_publish
        || have.max_messages_per_subject != config.max_messages_per_subject
        || have.subjects != config.subjects;
    if !stale {
        return Ok(info);
    }
    let mut want = have.clone();
    want.num_replicas = config.num_replicas;
    want.allow_direct = config.allow_direct;
    want.allow_atomic_publish = config.allow_atomic_publish;
    want.max_messages_per_subject = config.max_messages_per_subject;
    want.subjects = config.subjects.clone();
    let updated = js
        .update_stream(&want)
        .await
        .map_err(|e| backend_err(what("update"), e))?;
    tracing::info!(
        stream = %name,
        replicas = updated.config.num_replicas,
        "store stream updated"
    );
    Ok(updated)
}

#[async_trait]
impl Backend for JetStreamBackend {
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
        let mut slots = self.plan(vec![Write::Put {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
            value,
        }]);
        let mut slot = slots.pop().expect("one write, one slot");
        slot.op = match slot.op {
            SlotOp::Put(v) => SlotOp::PutIfAbsent(v),
            SlotOp::Page { changes, .. } => SlotOp::Page {
                changes,
                if_absent: true,
            },
            other => other,
        };
        self.write_one(slot).await
    }

    async fn get(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let read = async {
            match pages(table) {
                None => Ok(self
                    .read_slot(&self.row_subject(table, partition, sort))
                    .await?
                    .map(|b| b.to_vec())),
                Some(n) => {
                    let subject = self.page_subject(table, partition, page_of(sort, n));
                    Ok(self.read_page(&subject).await?.remove(sort))
                }
            }
        };
        read.await
            .map_err(|e| in_context(e, format!("get {} {partition:?}/{sort:?}", table.name())))
    }

    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.list_partition(table, partition).await
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
        if writes.is_empty() {
            return Ok(());
        }
        let slots = self.plan(writes);
        self.apply(slots).await.map(drop)
    }
}

impl JetStreamBackend {
    /// Every row of a partition, sorted.
    async fn list_rows(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut rows: Vec<(String, Vec<u8>)> = match pages(table) {
            Some(n) => {
                let pages: Vec<Page> = futures::stream::iter(0..n)
                    .map(|p| {
                        let subject = self.page_subject(table, partition, p);
                        async move { self.read_page(&subject).await }
                    })
                    .buffered(READ_CONCURRENCY)
                    .try_collect()
                    .await?;
                pages.into_iter().flatten().collect()
            }
            None => {
                let subjects = self.row_subjects(table, partition).await?;
                let rows: Vec<Option<(String, Vec<u8>)>> = futures::stream::iter(subjects)
                    .map(|subject| async move {
                        let token = subject.rsplit('.').next().unwrap_or_default();
                        let sort = decode_token(token).ok_or_else(|| {
                            StoreError::Backend(format!("jetstream: {subject}: not a row subject"))
                        })?;
                        Ok::<_, StoreError>(
                            self.read_slot(&subject).await?.map(|v| (sort, v.to_vec())),
                        )
                    })
                    .buffered(READ_CONCURRENCY)
                    .try_collect()
                    .await?;
                rows.into_iter().flatten().collect()
            }
        };
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }
}

/// Name the store call an error happened in.
fn in_context(e: StoreError, call: String) -> StoreError {
    match e {
        StoreError::Backend(m) => StoreError::Backend(format!("{call}: {m}")),
        other => other,
    }
}

impl JetStreamBackend {
    async fn list_partition(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.list_rows(table, partition)
            .await
            .map_err(|e| in_context(e, format!("list {} {partition:?}", table.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_in_the_subject_alphabet() {
        for k in [
            "",
            "_",
            "a",
            "debian:12|libc6",
            "sha256:abcdef0123",
            "tag|000001234",
            "é",
            "a b.c*d>e",
            "__5F",
            "-x-",
        ] {
            let t = encode_token(k);
            assert!(!t.is_empty());
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{t}"
            );
            assert_eq!(decode_token(&t).as_deref(), Some(k), "{k:?} → {t}");
        }
        assert_eq!(encode_token("debian:12|libc6"), "debian_3A12_7Clibc6");
        assert_eq!(decode_token("a_Z1"), None);
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("_FF"), None, "not UTF-8");
    }

    #[test]
    fn pages_and_pointers_round_trip() {
        let mut page = Page::new();
        assert_eq!(decode_page(&encode_page(&page)), Some(page.clone()));
        page.insert(String::new(), Vec::new());
        page.insert("sha256:aa".into(), vec![0, 1, 2]);
        page.insert("é".into(), vec![0xff; 300]);
        let b = encode_page(&page);
        assert_eq!(decode_page(&b), Some(page));
        assert_eq!(decode_page(&b[..b.len() - 1]), None);
        assert_eq!(decode_page(b"x"), None);

        let p = Pointer {
            id: "0123abcd".into(),
            len: 30_000_000,
            seqs: vec![5, 6, 7, 1_000_000, 1_000_001],
        };
        let b = p.encode();
        assert_eq!(b[0], TAG_CHUNKED);
        assert_eq!(Pointer::decode(&b[1..]), Some(p));
    }

    #[test]
    fn pages_are_stable_and_spread() {
        assert_eq!(page_of("sha256:abc", 16), page_of("sha256:abc", 16));
        assert_eq!(page_of("anything", 1), 0);
        let mut seen = [0usize; 16];
        for i in 0..1600 {
            seen[page_of(&format!("sha256:{i:064x}"), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(valid_prefix("vigil"));
        assert!(valid_prefix("vigil.test-1_a"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a..b"));
        assert!(!valid_prefix("a.*"));
        assert!(!valid_prefix("a b"));
        assert_eq!(stream_name_of("vigil.t-1"), "VIGIL_T_1");
    }
}
