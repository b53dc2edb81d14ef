//! The typed store: what keys mean and how records are encoded. Shared by all backends.

use std::path::Path;
use std::sync::{Arc, Mutex};

use vigil_contracts::codec::{self, Record};
use vigil_contracts::{
    Advisory, Analysis, Evaluation, FeedState, LayerIndex, Notification, PackageKey, ScanResult,
    StoredBundle, VulnReport,
};

use crate::backend::{Backend, Table, Write};
use crate::StoreError;

/// The typed store used by every stage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The embedded store's last analysis written or read, decoded, shared by the
    /// stages of the one process that owns the file (match, evaluate and notify each
    /// read the analysis the analyze stage just wrote: megabytes of file entries to
    /// decode three times). `None` for a shared backend, which other processes write.
    recent_analysis: Option<Arc<Mutex<Option<Arc<Analysis>>>>>,
    /// The embedded store's decoded layer indexes waiting for the analyze stage's read.
    fresh_layers: Option<Arc<Mutex<FreshLayers>>>,
    /// Most evaluations kept per (image, tag): see [`Store::put_evaluation`].
    evaluation_history_limit: usize,
}

/// Layer indexes the analyze stage is about to read, decoded ahead of it: those extract
/// just wrote ([`Store::put_layer_index_shared`]) and those fetch found already indexed
/// ([`Store::prefetch_layer_index`]). Each is handed over once.
#[derive(Default)]
struct FreshLayers {
    /// At most [`FRESH_LAYER_ENTRIES`] file entries in all, oldest dropped first.
    kept: Vec<Arc<LayerIndex>>,
    /// Reads started by `prefetch_layer_index`, by digest: the cell is set once the
    /// read is over (its index, if any, then in `kept`).
    reading: std::collections::HashMap<String, Arc<tokio::sync::OnceCell<()>>>,
}

impl FreshLayers {
    fn keep(&mut self, idx: Arc<LayerIndex>) {
        self.kept.retain(|k| k.layer_digest != idx.layer_digest);
        let mut total: usize = self.kept.iter().map(|i| i.entries.len()).sum();
        total += idx.entries.len();
        while total > FRESH_LAYER_ENTRIES && !self.kept.is_empty() {
            total -= self.kept.remove(0).entries.len();
        }
        if total <= FRESH_LAYER_ENTRIES {
            self.kept.push(idx);
        }
    }

    fn take(&mut self, digest: &str) -> Option<Arc<LayerIndex>> {
        let at = self.kept.iter().position(|i| i.layer_digest == digest)?;
        Some(self.kept.remove(at))
    }
}

/// Bound of [`Store`]'s fresh layer indexes, in file entries (a few hundred bytes each).
const FRESH_LAYER_ENTRIES: usize = 50_000;

fn enc<T: Record>(table: Table, r: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(r).map_err(|source| StoreError::Encode {
        table: table.name(),
        source,
    })
}

fn dec<T: Record>(table: Table, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Codec {
        table: table.name(),
        key: key.to_string(),
        source,
    })
}

/// Partition key of a (namespace, package) pair: the sort key of its forward row
/// (`image_keys`), and the reverse index's partition in the layout before sharding.
pub fn package_partition(k: &PackageKey) -> String {
    format!("{}|{}", k.namespace, k.package)
}

/// Shards of every partition that would otherwise grow without bound with the number of
/// images: the reverse index of one package (`package_images`, e.g. `debian:12|libc6`, in
/// nearly every image) and the list of evaluated images. Part of the stored format:
/// changing it needs the shards rewritten.
pub const SHARDS: u32 = 16;

/// FNV-1a 64: a stable hash (stored layout), the same on every platform and version.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard of an image digest, in `0..SHARDS`.
pub fn image_shard(image_digest: &str) -> u32 {
    (fnv1a64(image_digest.as_bytes()) % u64::from(SHARDS)) as u32
}

/// The name of one shard of a partition: `<partition>#NN` (two digits). The suffix has a
/// fixed length, so distinct (partition, shard) pairs never share a name.
pub fn shard_partition(partition: &str, shard: u32) -> String {
    format!("{partition}#{shard:02}")
}

/// Meta partition (sharded: `evaluated_images#NN`) indexing the (image, tag) pairs that
/// have evaluations, sort key `digest|tag`. Before sharding it was this one partition,
/// which [`Store::evaluated_images`] still reads.
pub const EVALUATED_INDEX: &str = "evaluated_images";

/// Default of [`Store::with_evaluation_history_limit`].
pub const EVALUATION_HISTORY_LIMIT: usize = 1_000;

/// Records at least this large are decoded on the blocking pool.
const LARGE_RECORD: usize = 256 * 1024;

const BUNDLES: &str = "bundles";
const FEEDS: &str = "feeds";
const META_POLICY: &str = "policy";
const META_ACTIVE: &str = "active";

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Store {
            backend,
            recent_analysis: None,
            fresh_layers: None,
            evaluation_history_limit: EVALUATION_HISTORY_LIMIT,
        }
    }

    /// This store, keeping at most `limit` (at least 1) evaluations per (image, tag)
    /// instead of [`EVALUATION_HISTORY_LIMIT`].
    pub fn with_evaluation_history_limit(mut self, limit: usize) -> Self {
        self.evaluation_history_limit = limit.max(1);
        self
    }

    /// Open (or create) the embedded single-file store. The file is this process's
    /// alone (redb locks it), so decoded analyses may be kept between reads.
    pub fn open_embedded(path: &Path) -> Result<Self, StoreError> {
        Ok(Store {
            recent_analysis: Some(Arc::default()),
            fresh_layers: Some(Arc::default()),
            ..Store::new(Arc::new(crate::embedded::EmbeddedBackend::open(path)?))
        })
    }

    /// [`Store::open_embedded`] whose writes return before their commit (see
    /// [`crate::embedded::WriteMode::Deferred`]): for a one-shot process, which must
    /// call [`Store::flush`] before it ends.
    pub fn open_embedded_deferred(path: &Path) -> Result<Self, StoreError> {
        let backend = crate::embedded::EmbeddedBackend::open_with(
            path,
            crate::embedded::WriteMode::Deferred,
        )?;
        Ok(Store {
            recent_analysis: Some(Arc::default()),
            fresh_layers: Some(Arc::default()),
            ..Store::new(Arc::new(backend))
        })
    }

    /// For a process about to exit: let go of the decoded records kept for reuse without
    /// running their destructors (an analysis is tens of thousands of allocations, and
    /// the operating system takes the memory back at once). Later reads read the table.
    pub fn forget_kept_records(&self) {
        if let Some(a) = self
            .recent_analysis
            .as_ref()
            .and_then(|s| s.lock().ok()?.take())
        {
            std::mem::forget(a);
        }
        if let Some(mut fresh) = self.fresh_layers.as_ref().and_then(|f| f.lock().ok()) {
            std::mem::forget(std::mem::take(&mut fresh.kept));
        }
    }

    /// Wait until every write made so far is durable; the error of one that failed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush().await
    }

    /// The kept analysis, when it is the one of `image_digest`.
    fn recent(&self, image_digest: &str) -> Option<Arc<Analysis>> {
        let slot = self.recent_analysis.as_ref()?.lock().ok()?;
        slot.as_ref()
            .filter(|a| a.descriptor.image.digest == image_digest)
            .cloned()
    }

    /// Keep `a` as the recent analysis, or forget the kept one of its image (`None`).
    fn keep_recent(&self, image_digest: &str, a: Option<Arc<Analysis>>) {
        if let Some(slot) = &self.recent_analysis {
            if let Ok(mut slot) = slot.lock() {
                match a {
                    Some(a) => *slot = Some(a),
                    None if slot
                        .as_ref()
                        .is_some_and(|k| k.descriptor.image.digest == image_digest) =>
                    {
                        *slot = None
                    }
                    None => {}
                }
            }
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    async fn get_one<T: Record + Send + 'static>(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.backend.get(table, partition, sort).await? {
            // A large record (a layer index, an analysis) takes milliseconds to decode:
            // off the async workers, and side by side when several are read at once.
            Some(b) if b.len() >= LARGE_RECORD => {
                let key = partition.to_string();
                tokio::task::spawn_blocking(move || dec(table, &key, &b))
                    .await
                    .map_err(|e| StoreError::Backend(format!("decoding task: {e}")))?
                    .map(Some)
            }
            Some(b) => Ok(Some(dec(table, partition, &b)?)),
            None => Ok(None),
        }
    }

    async fn list_all<T: Record>(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.backend.list(table, partition).await?;
        rows.iter()
            .map(|(k, v)| dec(table, &format!("{partition}/{k}"), v))
            .collect()
    }

    // ---- layer indexes -------------------------------------------------------------

    /// Store a layer index, then its extractor version in the small `layer_version`
    /// table, which [`Store::has_layer_index`] reads. Two writes, not a batch: an index is
    /// megabytes, over ScyllaDB's batch size limit. The order keeps them consistent: a
    /// version row always has its index; an index whose row was not written (a crash
    /// between the two) counts as absent and is made again.
    pub async fn put_layer_index(&self, idx: &LayerIndex) -> Result<(), StoreError> {
        let v = enc(Table::LayerIndex, idx)?;
        let d = &idx.layer_digest;
        self.backend.put(Table::LayerIndex, d, "", v).await?;
        let version = idx.extractor_version.to_string().into_bytes();
        self.backend.put(Table::LayerVersion, d, "", version).await
    }

    /// [`Store::put_layer_index`], keeping the index for the next
    /// [`Store::get_layer_index`] of its digest (embedded store), which then does not
    /// read and decode it again.
    pub async fn put_layer_index_shared(&self, idx: Arc<LayerIndex>) -> Result<(), StoreError> {
        self.take_fresh_layer(&idx.layer_digest);
        self.put_layer_index(&idx).await?;
        if let Some(mut fresh) = self.fresh_layers.as_ref().and_then(|f| f.lock().ok()) {
            fresh.keep(idx);
        }
        Ok(())
    }

    /// Start reading and decoding the stored index of `digest` in the background, for a
    /// [`Store::get_layer_index`] soon to come (embedded store; elsewhere nothing): fetch
    /// calls it for the layers it finds indexed already, so that analyze need not wait
    /// for their megabytes while extract works on the new ones.
    pub fn prefetch_layer_index(&self, digest: &str) {
        let Some(fresh) = &self.fresh_layers else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cell = {
            let Ok(mut f) = fresh.lock() else { return };
            if f.reading.contains_key(digest) || f.kept.iter().any(|k| k.layer_digest == digest) {
                return;
            }
            let cell = Arc::new(tokio::sync::OnceCell::new());
            f.reading.insert(digest.to_string(), cell.clone());
            cell
        };
        let (store, digest) = (self.clone(), digest.to_string());
        rt.spawn(async move {
            cell.get_or_init(|| async {
                // A failed read is left to the reader, which reads again and reports it.
                if let Ok(Some(idx)) = store.get_one(Table::LayerIndex, &digest, "").await {
                    if let Some(mut f) = store.fresh_layers.as_ref().and_then(|f| f.lock().ok()) {
                        f.keep(Arc::new(idx));
                    }
                }
            })
            .await;
            if let Some(mut f) = store.fresh_layers.as_ref().and_then(|f| f.lock().ok()) {
                f.reading.remove(&digest);
            }
        });
    }

    /// The kept fresh index of `digest`, no longer kept.
    fn take_fresh_layer(&self, digest: &str) -> Option<Arc<LayerIndex>> {
        self.fresh_layers.as_ref()?.lock().ok()?.take(digest)
    }

    pub async fn get_layer_index(&self, digest: &str) -> Result<Option<LayerIndex>, StoreError> {
        // A read started ahead: wait for it (or, if it has not begun, mark it done).
        let reading = self
            .fresh_layers
            .as_ref()
            .and_then(|f| f.lock().ok()?.reading.get(digest).cloned());
        if let Some(cell) = reading {
            cell.get_or_init(|| async {}).await;
        }
        if let Some(idx) = self.take_fresh_layer(digest) {
            return Ok(Some(Arc::unwrap_or_clone(idx)));
        }
        self.get_one(Table::LayerIndex, digest, "").await
    }

    /// Whether a layer index written by `extractor_version` exists for the digest. Reads
    /// only the version row: reading an index (megabytes) to answer yes or no would cost
    /// as much as using it, and in the embedded store even a lookup that misses among the
    /// indexes reads a page holding one of them.
    pub async fn has_layer_index(
        &self,
        digest: &str,
        extractor_version: u32,
    ) -> Result<bool, StoreError> {
        let v = self.backend.get(Table::LayerVersion, digest, "").await?;
        Ok(v.as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u32>().ok())
            == Some(extractor_version))
    }

    // ---- analyses ------------------------------------------------------------------

    pub async fn put_analysis(&self, a: &Analysis) -> Result<(), StoreError> {
        let digest = &a.descriptor.image.digest;
        self.keep_recent(digest, None);
        let v = enc(Table::Analysis, a)?;
        self.backend.put(Table::Analysis, digest, "", v).await
    }

    /// [`Store::put_analysis`], keeping the written analysis for
    /// [`Store::get_analysis_shared`] (embedded store).
    pub async fn put_analysis_shared(&self, a: Arc<Analysis>) -> Result<(), StoreError> {
        self.put_analysis(&a).await?;
        let digest = a.descriptor.image.digest.clone();
        self.keep_recent(&digest, Some(a));
        Ok(())
    }

    /// The analysis of an image, shared: with the embedded store, the one just written
    /// or read is not decoded again.
    pub async fn get_analysis_shared(
        &self,
        image_digest: &str,
    ) -> Result<Option<Arc<Analysis>>, StoreError> {
        if let Some(a) = self.recent(image_digest) {
            return Ok(Some(a));
        }
        let a = self.get_analysis(image_digest).await?.map(Arc::new);
        if let Some(a) = &a {
            self.keep_recent(image_digest, Some(a.clone()));
        }
        Ok(a)
    }

    /// Whether an analysis is stored for the image (read, not decoded).
    pub async fn has_analysis(&self, image_digest: &str) -> Result<bool, StoreError> {
        Ok(self
            .backend
            .get(Table::Analysis, image_digest, "")
            .await?
            .is_some())
    }

    pub async fn get_analysis(&self, image_digest: &str) -> Result<Option<Analysis>, StoreError> {
        self.get_one(Table::Analysis, image_digest, "").await
    }

    // ---- reverse index: (namespace, package) -> images ---------------------------------
    //
    // Forward rows: `image_keys`, partition = image digest, sort = `namespace|package`.
    // Reverse rows: `package_images`, partition = `namespace|package#NN` (NN = the image's
    // shard, [`image_shard`]), sort = image digest. A common package (libc6) is then
    // [`SHARDS`] partitions of a sixteenth of its images each, not one that grows with
    // every image scanned.
    //
    // Repairable: a batch is not atomic on every backend (ScyllaDB's unlogged batches,
    // JetStream batches over 1,000 slots), so a call may stop half applied. The reverse
    // side is written first and the forward side only once it is applied: a forward row
    // always has its reverse row, and a call that stopped half way leaves the forward
    // rows as they were, so the next call sees the same keys as new and writes them again.
    // Two ways to call it:
    // * [`Store::index_image_keys`] (a scan's match) puts the reverse rows of *every*
    //   current key again (puts are idempotent; the JetStream backend publishes nothing
    //   for a page that does not change), which also repairs a reverse row lost anyway (a
    //   half-applied batch of an older vigil, which wrote both sides in one batch and
    //   diffed against the forward rows);
    // * [`Store::update_image_keys`] (a re-match after a feed update, a thousand images
    //   at once) writes only the keys that changed: a re-match whose keys did not change
    //   writes no index row at all.
    //
    // Rows of the layout before sharding (partition `namespace|package`) are still read
    // by `images_for_key` and deleted with their key; no new ones are written. Re-matching
    // an image writes its sharded rows, which rebuilds the index; no migration is needed.

    /// Record the package keys an image was matched under, replacing the previous set;
    /// every current key's reverse row is put again (repairing a lost one).
    pub async fn index_image_keys(
        &self,
        image_digest: &str,
        keys: &[PackageKey],
    ) -> Result<(), StoreError> {
        self.write_image_keys(image_digest, keys, true).await
    }

    /// As [`Store::index_image_keys`], writing only the rows of keys that were added or
    /// dropped since the last call.
    pub async fn update_image_keys(
        &self,
        image_digest: &str,
        keys: &[PackageKey],
    ) -> Result<(), StoreError> {
        self.write_image_keys(image_digest, keys, false).await
    }

    async fn write_image_keys(
        &self,
        image_digest: &str,
        keys: &[PackageKey],
        reput_all: bool,
    ) -> Result<(), StoreError> {
        use std::collections::BTreeSet;
        let old: BTreeSet<String> = self
            .backend
            .list(Table::ImageKeys, image_digest)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let new: BTreeSet<String> = keys.iter().map(package_partition).collect();
        let shard = image_shard(image_digest);
        let digest = image_digest.to_string();

        // 1. The reverse side: the current keys' rows (all of them, or the added ones),
        // and no row for a dropped key.
        let mut reverse = Vec::new();
        for k in new.iter().filter(|k| reput_all || !old.contains(*k)) {
            reverse.push(Write::Put {
                table: Table::PackageImages,
                partition: shard_partition(k, shard),
                sort: digest.clone(),
                value: Vec::new(),
            });
        }
        for k in old.difference(&new) {
            for partition in [shard_partition(k, shard), k.clone()] {
                reverse.push(Write::Delete {
                    table: Table::PackageImages,
                    partition,
                    sort: digest.clone(),
                });
            }
        }
        if !reverse.is_empty() {
            self.backend.write_batch(reverse).await?;
        }

        // 2. The forward side, once the reverse side is applied.
        let mut forward = Vec::new();
        for k in new.difference(&old) {
            forward.push(Write::Put {
                table: Table::ImageKeys,
                partition: digest.clone(),
                sort: k.clone(),
                value: Vec::new(),
            });
        }
        for k in old.difference(&new) {
            forward.push(Write::Delete {
                table: Table::ImageKeys,
                partition: digest.clone(),
                sort: k.clone(),
            });
        }
        if forward.is_empty() {
            return Ok(());
        }
        self.backend.write_batch(forward).await
    }

    /// Images holding a package key, from the reverse index: every shard (read side by
    /// side) and the partition of the layout before sharding; sorted, each once.
    pub async fn images_for_key(&self, key: &PackageKey) -> Result<Vec<String>, StoreError> {
        let part = package_partition(key);
        let mut partitions: Vec<String> = (0..SHARDS).map(|i| shard_partition(&part, i)).collect();
        partitions.push(part);
        self.sort_keys_of(Table::PackageImages, &partitions).await
    }

    /// The sort keys of several partitions of a table, read side by side; sorted, each once.
    async fn sort_keys_of(
        &self,
        table: Table,
        partitions: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let lists =
            futures::future::try_join_all(partitions.iter().map(|p| self.backend.list(table, p)))
                .await?;
        let all: std::collections::BTreeSet<String> =
            lists.into_iter().flatten().map(|(k, _)| k).collect();
        Ok(all.into_iter().collect())
    }

    // ---- advisories ------------------------------------------------------------------

    pub async fn get_advisories(&self, key: &PackageKey) -> Result<Vec<Advisory>, StoreError> {
        self.list_all(Table::Advisories, &package_partition(key))
            .await
    }

    /// Make the stored advisories of a key exactly `advisories` (by
    /// [`Advisory::record_key`]: the id, plus the module stream when there is one, so
    /// two streams of one package under one id are two rows). Returns whether anything
    /// changed.
    pub async fn replace_advisories(
        &self,
        key: &PackageKey,
        advisories: &[Advisory],
    ) -> Result<bool, StoreError> {
        let part = package_partition(key);
        let old = self.get_advisories(key).await?;
        let mut writes = Vec::new();
        for o in &old {
            let ok = o.record_key();
            if !advisories.iter().any(|a| a.record_key() == ok) {
                writes.push(Write::Delete {
                    table: Table::Advisories,
                    partition: part.clone(),
                    sort: ok,
                });
            }
        }
        for a in advisories {
            if old.iter().any(|o| o == a) {
                continue;
            }
            writes.push(Write::Put {
                table: Table::Advisories,
                partition: part.clone(),
                sort: a.record_key(),
                value: enc(Table::Advisories, a)?,
            });
        }
        if writes.is_empty() {
            return Ok(false);
        }
        self.backend.write_batch(writes).await?;
        Ok(true)
    }

    // ---- feed state ------------------------------------------------------------------

    pub async fn put_feed_state(&self, s: &FeedState) -> Result<(), StoreError> {
        let v = enc(Table::FeedState, s)?;
        self.backend.put(Table::FeedState, FEEDS, &s.feed, v).await
    }

    pub async fn get_feed_state(&self, feed: &str) -> Result<Option<FeedState>, StoreError> {
        self.get_one(Table::FeedState, FEEDS, feed).await
    }

    pub async fn list_feed_states(&self) -> Result<Vec<FeedState>, StoreError> {
        self.list_all(Table::FeedState, FEEDS).await
    }

    // ---- vulnerability reports --------------------------------------------------------

    pub async fn put_vuln_report(&self, r: &VulnReport) -> Result<(), StoreError> {
        let v = enc(Table::VulnReport, r)?;
        self.backend
            .put(Table::VulnReport, &r.image_digest, "", v)
            .await
    }

    pub async fn get_vuln_report(
        &self,
        image_digest: &str,
    ) -> Result<Option<VulnReport>, StoreError> {
        self.get_one(Table::VulnReport, image_digest, "").await
    }

    // ---- policy bundles --------------------------------------------------------------

    pub async fn put_bundle(&self, b: &StoredBundle) -> Result<(), StoreError> {
        let v = enc(Table::PolicyBundle, b)?;
        self.backend
            .put(Table::PolicyBundle, BUNDLES, &b.id, v)
            .await
    }

    pub async fn get_bundle(&self, id: &str) -> Result<Option<StoredBundle>, StoreError> {
        let mut b: Option<StoredBundle> = self.get_one(Table::PolicyBundle, BUNDLES, id).await?;
        if let Some(b) = b.as_mut() {
            b.active = self.active_bundle_id().await?.as_deref() == Some(id);
        }
        Ok(b)
    }

    pub async fn list_bundles(&self) -> Result<Vec<StoredBundle>, StoreError> {
        let active = self.active_bundle_id().await?;
        let mut all: Vec<StoredBundle> = self.list_all(Table::PolicyBundle, BUNDLES).await?;
        for b in &mut all {
            b.active = active.as_deref() == Some(b.id.as_str());
        }
        Ok(all)
    }

    pub async fn delete_bundle(&self, id: &str) -> Result<(), StoreError> {
        if self.active_bundle_id().await?.as_deref() == Some(id) {
            self.backend
                .delete(Table::Meta, META_POLICY, META_ACTIVE)
                .await?;
        }
        self.backend.delete(Table::PolicyBundle, BUNDLES, id).await
    }

    /// Make a stored bundle the active one.
    pub async fn activate_bundle(&self, id: &str) -> Result<(), StoreError> {
        if self
            .get_one::<StoredBundle>(Table::PolicyBundle, BUNDLES, id)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("policy bundle {id}")));
        }
        self.backend
            .put(
                Table::Meta,
                META_POLICY,
                META_ACTIVE,
                id.as_bytes().to_vec(),
            )
            .await
    }

    pub async fn active_bundle_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .backend
            .get(Table::Meta, META_POLICY, META_ACTIVE)
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    // ---- evaluations -----------------------------------------------------------------
    //
    // History is partitioned per image (sort key `tag|evaluated_at`), which bounds it by
    // the image, but not one image's history: re-evaluated on every feed and policy update,
    // an image would gather evaluations for ever. So each write keeps only the latest
    // `evaluation_history_limit` evaluations (default [`EVALUATION_HISTORY_LIMIT`]) of its
    // (image, tag), deleting older ones. (Partitioning by (image, month) would bound the
    // partitions but not the history, and needs a listing of months to read it back.) The
    // evaluate stage reads the history it compares with anyway; the write lists the
    // partition once more to find the rows over the limit.

    /// Store an evaluation, then delete the oldest of its (image, tag) beyond the limit.
    pub async fn put_evaluation(&self, e: &Evaluation) -> Result<(), StoreError> {
        self.put_evaluation_inner(e, None).await
    }

    /// As [`Store::put_evaluation`], for a caller that has just read the (image, tag)'s
    /// history ([`Store::evaluation_history`]): the rows over the limit are found in it
    /// instead of listing the partition again. A row written by another process since is
    /// trimmed by a later write.
    pub async fn put_evaluation_after(
        &self,
        e: &Evaluation,
        history: &[Evaluation],
    ) -> Result<(), StoreError> {
        self.put_evaluation_inner(e, Some(history)).await
    }

    async fn put_evaluation_inner(
        &self,
        e: &Evaluation,
        history: Option<&[Evaluation]>,
    ) -> Result<(), StoreError> {
        let sort_of = |e: &Evaluation| format!("{}|{:020}", e.tag, e.evaluated_at.max(0));
        let v = enc(Table::Evaluation, e)?;
        let sort = sort_of(e);
        self.backend
            .put(Table::Evaluation, &e.image_digest, &sort, v)
            .await?;
        // Sorted by key: one tag's rows by time, oldest first.
        let of_tag: Vec<String> = match history {
            Some(h) => {
                let mut keys: std::collections::BTreeSet<String> = h
                    .iter()
                    .filter(|o| o.tag == e.tag && o.image_digest == e.image_digest)
                    .map(sort_of)
                    .collect();
                keys.insert(sort);
                keys.into_iter().collect()
            }
            None => self
                .backend
                .list(Table::Evaluation, &e.image_digest)
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| k.rsplit_once('|').is_some_and(|(t, _)| t == e.tag))
                .collect(),
        };
        let over = of_tag.len().saturating_sub(self.evaluation_history_limit);
        if over == 0 {
            return Ok(());
        }
        let writes = of_tag[..over]
            .iter()
            .map(|k| Write::Delete {
                table: Table::Evaluation,
                partition: e.image_digest.clone(),
                sort: k.clone(),
            })
            .collect();
        self.backend.write_batch(writes).await
    }

    /// Record that (image, tag) has evaluations, for [`Store::evaluated_images`]. One row
    /// in the image's shard of the evaluated-images index.
    pub async fn index_evaluated(&self, image_digest: &str, tag: &str) -> Result<(), StoreError> {
        self.backend
            .put(
                Table::Meta,
                &shard_partition(EVALUATED_INDEX, image_shard(image_digest)),
                &format!("{image_digest}|{tag}"),
                Vec::new(),
            )
            .await
    }

    /// Every (image digest, tag) recorded by [`Store::index_evaluated`] (and by the
    /// unsharded index of older versions), ordered by digest then tag, each once.
    pub async fn evaluated_images(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut partitions: Vec<String> = (0..SHARDS)
            .map(|i| shard_partition(EVALUATED_INDEX, i))
            .collect();
        partitions.push(EVALUATED_INDEX.to_string());
        Ok(self
            .sort_keys_of(Table::Meta, &partitions)
            .await?
            .into_iter()
            .filter_map(|k| {
                k.split_once('|')
                    .map(|(d, t)| (d.to_string(), t.to_string()))
            })
            .collect())
    }

    /// Evaluation history of an image for one tag, oldest first.
    pub async fn evaluation_history(
        &self,
        image_digest: &str,
        tag: &str,
    ) -> Result<Vec<Evaluation>, StoreError> {
        let all: Vec<Evaluation> = self.list_all(Table::Evaluation, image_digest).await?;
        Ok(all.into_iter().filter(|e| e.tag == tag).collect())
    }

    pub async fn latest_evaluation(
        &self,
        image_digest: &str,
        tag: &str,
    ) -> Result<Option<Evaluation>, StoreError> {
        Ok(self.evaluation_history(image_digest, tag).await?.pop())
    }

    // ---- scan results ----------------------------------------------------------------

    /// Store the result of a request once; a second call for the same request id does
    /// nothing and returns false.
    pub async fn put_scan_result(&self, r: &ScanResult) -> Result<bool, StoreError> {
        let v = enc(Table::ScanResult, r)?;
        self.put_encoded_scan_result(&r.request_id, v).await
    }

    /// [`Store::put_scan_result`] of a result already encoded (`codec::encode` of a
    /// `ScanResult` of `request_id`), for a caller that publishes the same bytes: a
    /// result with its full report is a megabyte to encode.
    pub async fn put_encoded_scan_result(
        &self,
        request_id: &str,
        bytes: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.backend
            .put_if_absent(Table::ScanResult, request_id, "", bytes)
            .await
    }

    pub async fn get_scan_result(
        &self,
        request_id: &str,
    ) -> Result<Option<ScanResult>, StoreError> {
        self.get_one(Table::ScanResult, request_id, "").await
    }

    // ---- notifications ---------------------------------------------------------------

    pub async fn put_notification(&self, n: &Notification) -> Result<(), StoreError> {
        let v = enc(Table::Notification, n)?;
        self.backend
            .put(Table::Notification, &n.subscription_key, &n.id, v)
            .await
    }

    pub async fn list_notifications(&self, key: &str) -> Result<Vec<Notification>, StoreError> {
        self.list_all(Table::Notification, key).await
    }
}

pub mod watch;

#[cfg(test)]
mod tests {
    use super::*;

    /// The shard function is part of the stored layout: pinned.
    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_partition("debian:12|libc6", 3), "debian:12|libc6#03");
        assert_eq!(shard_partition("x", 15), "x#15");
        let mut seen = [0u32; SHARDS as usize];
        for i in 0..1_600 {
            let s = image_shard(&format!("sha256:{i:064x}"));
            assert!(s < SHARDS);
            seen[s as usize] += 1;
        }
        assert!(
            seen.iter().all(|n| (50..=150).contains(n)),
            "digests spread over every shard: {seen:?}"
        );
    }

    /// Wait (bounded) until no prefetch of the store is running.
    async fn prefetches_done(store: &Store) {
        for _ in 0..10_000 {
            let running = !store
                .fresh_layers
                .as_ref()
                .unwrap()
                .lock()
                .unwrap()
                .reading
                .is_empty();
            if !running {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("the prefetch did not end");
    }

    /// Once a prefetch has ended, the index is served from memory: a row replaced in
    /// the table afterwards is not what the next read returns; the read after it is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_prefetch_is_served_from_memory_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(&dir.path().join("s.redb")).unwrap();
        let stored = crate::conformance::sample_layer_index("sha256:pre", 7);
        store.put_layer_index(&stored).await.unwrap();
        store.prefetch_layer_index("sha256:pre");
        prefetches_done(&store).await;

        let mut replaced = stored.clone();
        replaced.warnings = vec!["written after the prefetch".into()];
        let bytes = enc(Table::LayerIndex, &replaced).unwrap();
        store
            .backend()
            .put(Table::LayerIndex, "sha256:pre", "", bytes)
            .await
            .unwrap();
        assert_eq!(
            store.get_layer_index("sha256:pre").await.unwrap(),
            Some(stored)
        );
        assert_eq!(
            store.get_layer_index("sha256:pre").await.unwrap(),
            Some(replaced)
        );
    }

    /// After `forget_kept_records`, reads still answer, from the table.
    #[tokio::test]
    async fn forgetting_kept_records_leaves_reads_to_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(&dir.path().join("s.redb")).unwrap();
        let a = Arc::new(crate::conformance::sample_analysis("sha256:img"));
        store.put_analysis_shared(a.clone()).await.unwrap();
        let idx = Arc::new(crate::conformance::sample_layer_index("sha256:l", 7));
        store.put_layer_index_shared(idx.clone()).await.unwrap();
        store.forget_kept_records();
        assert!(store.recent("sha256:img").is_none());
        assert_eq!(
            store
                .get_analysis_shared("sha256:img")
                .await
                .unwrap()
                .as_deref(),
            Some(&*a)
        );
        assert_eq!(
            store.get_layer_index("sha256:l").await.unwrap().as_ref(),
            Some(&*idx)
        );
    }
}
