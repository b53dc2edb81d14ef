use thiserror::Error;

/// Why a feed could not be synced.
#[derive(Debug, Error)]
pub enum FeedError {
    #[error("feed {feed}: HTTP request to {url} failed: {message}")]
    Http {
        feed: String,
        url: String,
        message: String,
    },
    #[error("feed {feed}: {url} answered HTTP {status}")]
    HttpStatus {
        feed: String,
        url: String,
        status: u16,
    },
    #[error("feed {feed}: reading {path}: {source}")]
    Io {
        feed: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("feed {feed}: malformed content: {message}")]
    Parse { feed: String, message: String },
    #[error("feed {feed}: bad zip archive {path}: {message}")]
    Zip {
        feed: String,
        path: String,
        message: String,
    },
    #[error("feed {feed}: store: {source}")]
    Store {
        feed: String,
        #[source]
        source: vigil_store::StoreError,
    },
    #[error("feed {feed}: {what} is {size} bytes, over the configured limit of {limit} bytes (max_total_bytes)")]
    TooLarge {
        feed: String,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("feed {feed}: NVD API page {url} is {size} bytes or more, over the configured limit of {limit} bytes (max_page_bytes); nothing was stored")]
    PageTooLarge {
        feed: String,
        url: String,
        size: u64,
        limit: u64,
    },
    #[error("feed {feed}: the NVD API {what} {count} records, over the configured limit of {limit} records (max_records); nothing was stored")]
    TooManyRecords {
        feed: String,
        /// `announced` (its `totalResults`) or `returned`.
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error("unknown feed {0:?}")]
    UnknownFeed(String),
}
