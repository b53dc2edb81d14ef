//! The raw backend interface: partitioned, sorted key-value tables.

use async_trait::async_trait;

use crate::StoreError;

/// The logical tables. Each is `(partition text, sort text) → value blob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// partition = layer digest, sort = "".
    LayerIndex,
    /// partition = layer digest, sort = "", value = the extractor version of the layer's
    /// index, in decimal. Small rows of their own: asking whether a layer is indexed never
    /// reads the pages of the (megabyte) indexes.
    LayerVersion,
    /// partition = image digest, sort = "".
    Analysis,
    /// partition = `namespace|package`, sort = image digest, value = empty. The reverse index.
    PackageImages,
    /// partition = image digest, sort = `namespace|package`. The forward side of the reverse index.
    ImageKeys,
    /// partition = `namespace|package`, sort = advisory id (`id|module` for a module
    /// stream's advisory).
    Advisories,
    /// partition = "feeds", sort = feed name.
    FeedState,
    /// partition = image digest, sort = "".
    VulnReport,
    /// partition = "bundles", sort = bundle id.
    PolicyBundle,
    /// partition = image digest, sort = `tag|evaluated_at` (zero-padded).
    Evaluation,
    /// partition = request id, sort = "". Written once.
    ScanResult,
    /// partition = subscription key, sort = notification id.
    Notification,
    /// partition = a name, sort = a key: small settings (active bundle id…).
    Meta,
}

impl Table {
    pub const ALL: [Table; 13] = [
        Table::LayerIndex,
        Table::LayerVersion,
        Table::Analysis,
        Table::PackageImages,
        Table::ImageKeys,
        Table::Advisories,
        Table::FeedState,
        Table::VulnReport,
        Table::PolicyBundle,
        Table::Evaluation,
        Table::ScanResult,
        Table::Notification,
        Table::Meta,
    ];

    /// Table name in redb and in CQL.
    pub fn name(&self) -> &'static str {
        match self {
            Table::LayerIndex => "layer_index",
            Table::LayerVersion => "layer_version",
            Table::Analysis => "analysis",
            Table::PackageImages => "package_images",
            Table::ImageKeys => "image_keys",
            Table::Advisories => "advisories",
            Table::FeedState => "feed_state",
            Table::VulnReport => "vuln_report",
            Table::PolicyBundle => "policy_bundle",
            Table::Evaluation => "evaluation",
            Table::ScanResult => "scan_result",
            Table::Notification => "notification",
            Table::Meta => "meta",
        }
    }
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        table: Table,
        partition: String,
        sort: String,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        partition: String,
        sort: String,
    },
}

/// A partitioned, sorted key-value backend. Implementations are thin mappings.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Insert or overwrite.
    async fn put(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError>;

    /// Insert only when absent; returns whether this call wrote it.
    async fn put_if_absent(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError>;

    async fn get(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every row of a partition, ordered by sort key.
    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    async fn delete(&self, table: Table, partition: &str, sort: &str) -> Result<(), StoreError>;

    /// Apply several writes; the embedded backend applies them in one transaction,
    /// ScyllaDB as one (unlogged) batch.
    async fn write_batch(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Wait until every write made so far is durable, and report one that failed. Only
    /// the embedded backend with deferred writes has any to wait for.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
