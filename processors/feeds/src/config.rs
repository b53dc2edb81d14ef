use serde::{Deserialize, Serialize};

/// The format of a feed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// Debian security tracker JSON (`https://security-tracker.debian.org/tracker/data/json`).
    Debian,
    /// Alpine secdb (`https://secdb.alpinelinux.org/v3.x/main.json`), one release per source.
    Alpine,
    /// OSV records: a directory of JSON files, a `.zip` of them, or one JSON file.
    Osv,
    /// NVD CVE API 2.0 (`https://services.nvd.nist.gov/rest/json/cves/2.0`), paged and
    /// incremental by `lastModStartDate`; or a file/directory of CVE JSON (API pages, a
    /// `{"cve": …}` wrapper or bare CVE objects). Enrichment only: namespace `nvd`.
    Nvd,
}

impl FeedKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeedKind::Debian => "debian",
            FeedKind::Alpine => "alpine",
            FeedKind::Osv => "osv",
            FeedKind::Nvd => "nvd",
        }
    }
}

/// One configured feed. `name` identifies it (feed state, `Advisory::feed`); `url` is an
/// `http(s)://` or `file://` URL or a plain path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSource {
    pub kind: FeedKind,
    pub name: String,
    pub url: String,
    /// NVD API key (sent as the `apiKey` header). When unset, `VIGIL_NVD_API_KEY` or
    /// `NVD_API_KEY` from the environment is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Pause between NVD API pages in milliseconds. Default: 6000 without an API key,
    /// 600 with one (NVD's published rate limits). Tests set 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_delay_ms: Option<u64>,
    /// NVD `resultsPerPage` (default and maximum 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Largest single record in bytes: a JSON file of a directory or an entry of a zip
    /// above it is skipped with a warning, unread (default [`DEFAULT_MAX_RECORD_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_bytes: Option<u64>,
    /// Largest source in bytes: a file, an HTTP body, the files of a directory or the
    /// uncompressed entries of a zip above it fail the sync with
    /// [`FeedError::TooLarge`](crate::FeedError::TooLarge) and change nothing (default
    /// [`DEFAULT_MAX_TOTAL_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<u64>,
    /// NVD API: largest page body in bytes. A page over it (by `Content-Length`, or
    /// while it streams) fails the sync with
    /// [`FeedError::PageTooLarge`](crate::FeedError::PageTooLarge) and changes nothing
    /// (default [`DEFAULT_MAX_PAGE_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_page_bytes: Option<u64>,
    /// NVD API: most records (CVEs) one sync may page through, over every page and
    /// window; also refused up front when the server's `totalResults` says more. Every
    /// page must bring at least one new record, so this also bounds the number of
    /// pages (default [`DEFAULT_MAX_RECORDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u64>,
}

/// Default per-record cap: 16 MiB (the largest real OSV record is well under 1 MiB).
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 16 << 20;
/// Default per-source cap: 1 GiB (the Debian tracker JSON is about 70 MB).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1 << 30;

/// Default NVD API page cap: 128 MiB (a full page of 2,000 CVEs is typically 10–30 MB).
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 128 << 20;
/// Default NVD API record cap per sync: 2,000,000 (NVD holds about 300,000 CVEs).
pub const DEFAULT_MAX_RECORDS: u64 = 2_000_000;

/// The size caps of one source (see [`FeedSource::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub record: u64,
    pub total: u64,
    /// NVD API: bytes of one page.
    pub page: u64,
    /// NVD API: records of one sync.
    pub records: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            record: DEFAULT_MAX_RECORD_BYTES,
            total: DEFAULT_MAX_TOTAL_BYTES,
            page: DEFAULT_MAX_PAGE_BYTES,
            records: DEFAULT_MAX_RECORDS,
        }
    }
}

impl FeedSource {
    /// The API key: configured, else from `VIGIL_NVD_API_KEY` / `NVD_API_KEY`.
    pub fn effective_api_key(&self) -> Option<String> {
        self.api_key
            .clone()
            .or_else(|| std::env::var("VIGIL_NVD_API_KEY").ok())
            .or_else(|| std::env::var("NVD_API_KEY").ok())
            .filter(|k| !k.trim().is_empty())
    }

    /// The pause between NVD pages.
    pub fn page_delay(&self, with_key: bool) -> std::time::Duration {
        std::time::Duration::from_millis(self.page_delay_ms.unwrap_or(if with_key {
            600
        } else {
            6000
        }))
    }

    /// The size caps, defaults filled in.
    pub fn limits(&self) -> Limits {
        Limits {
            record: self.max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES),
            total: self.max_total_bytes.unwrap_or(DEFAULT_MAX_TOTAL_BYTES),
            page: self.max_page_bytes.unwrap_or(DEFAULT_MAX_PAGE_BYTES),
            records: self.max_records.unwrap_or(DEFAULT_MAX_RECORDS),
        }
    }

    pub fn new(kind: FeedKind, name: impl Into<String>, url: impl Into<String>) -> Self {
        FeedSource {
            kind,
            name: name.into(),
            url: url.into(),
            api_key: None,
            page_delay_ms: None,
            page_size: None,
            max_record_bytes: None,
            max_total_bytes: None,
            max_page_bytes: None,
            max_records: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FeedsConfig {
    #[serde(default)]
    pub feeds: Vec<FeedSource>,
}
