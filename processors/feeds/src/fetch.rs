//! Getting a source's bytes: `http(s)://` with conditional requests, `file://` URLs and
//! plain paths (files, or directories of JSON files).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vigil_contracts::FeedState;

use crate::config::Limits;
use crate::FeedError;

/// What a source holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One file or HTTP response.
    Bytes(Vec<u8>),
    /// A directory: `.json` files by relative path, sorted.
    Files(Vec<(String, Vec<u8>)>),
}

impl Body {
    /// sha256 of the content (for directories: of every path and content, in order).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Body::Bytes(b) => h.update(b),
            Body::Files(fs) => {
                for (p, b) in fs {
                    h.update(p.as_bytes());
                    h.update([0u8]);
                    h.update(Sha256::digest(b));
                }
            }
        }
        hex::encode(h.finalize())
    }
}

/// The result of fetching a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The server answered 304 to the conditional request.
    NotModified,
    Content {
        body: Body,
        etag: Option<String>,
        last_modified: Option<String>,
        /// Files of a directory left unread because they exceed the record cap: relative
        /// path and size.
        skipped: Vec<(String, u64)>,
    },
}

fn too_large(feed: &str, what: String, size: u64, limit: u64) -> FeedError {
    FeedError::TooLarge {
        feed: feed.to_string(),
        what,
        size,
        limit,
    }
}

/// Whether a URL is fetched over HTTP(S).
pub fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    if url.contains("://") {
        return None;
    }
    Some(PathBuf::from(url))
}

fn io_err(feed: &str, path: &Path, source: std::io::Error) -> FeedError {
    FeedError::Io {
        feed: feed.to_string(),
        path: path.display().to_string(),
        source,
    }
}

/// The `.json` files of a directory tree, sorted, and those skipped as over
/// `limits.record`. Fails when the files read add up to more than `limits.total`.
async fn read_dir_json(
    feed: &str,
    root: &Path,
    limits: Limits,
) -> Result<(Vec<(String, Vec<u8>)>, Vec<(String, u64)>), FeedError> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut rd = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| io_err(feed, &dir, e))?;
        while let Some(entry) = rd.next_entry().await.map_err(|e| io_err(feed, &dir, e))? {
            let path = entry.path();
            let ft = entry
                .file_type()
                .await
                .map_err(|e| io_err(feed, &path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let size = entry
                    .metadata()
                    .await
                    .map_err(|e| io_err(feed, &path, e))?
                    .len();
                if size > limits.record {
                    skipped.push((rel, size));
                    continue;
                }
                let bytes = read_capped(feed, &path, limits.record).await?;
                let Some(bytes) = bytes else {
                    // Grew past the cap since the metadata was read.
                    skipped.push((rel, size));
                    continue;
                };
                total += bytes.len() as u64;
                if total > limits.total {
                    return Err(too_large(
                        feed,
                        format!("directory {}", root.display()),
                        total,
                        limits.total,
                    ));
                }
                out.push((rel, bytes));
            }
        }
    }
    out.sort();
    skipped.sort();
    Ok((out, skipped))
}

/// Read a file, at most `cap` bytes: `None` when it holds more.
async fn read_capped(feed: &str, path: &Path, cap: u64) -> Result<Option<Vec<u8>>, FeedError> {
    use tokio::io::AsyncReadExt;
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_err(feed, path, e))?;
    let mut buf = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .await
        .map_err(|e| io_err(feed, path, e))?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

/// Fetch a source with the default [`Limits`]. For HTTP, `previous` supplies
/// `If-None-Match` / `If-Modified-Since` when it was recorded for the same URL.
pub async fn fetch(
    feed: &str,
    url: &str,
    previous: Option<&FeedState>,
) -> Result<Fetched, FeedError> {
    fetch_limited(feed, url, previous, Limits::default()).await
}

/// [`fetch`] with size caps: a file or HTTP body over `limits.total` is an error
/// ([`FeedError::TooLarge`]) and is never held in memory whole; the JSON files of a
/// directory over `limits.record` are left unread and listed in `skipped`.
pub async fn fetch_limited(
    feed: &str,
    url: &str,
    previous: Option<&FeedState>,
    limits: Limits,
) -> Result<Fetched, FeedError> {
    if is_http(url) {
        return fetch_http(feed, url, previous, limits.total).await;
    }
    let path = local_path(url).ok_or_else(|| FeedError::Http {
        feed: feed.to_string(),
        url: url.to_string(),
        message: "unsupported URL scheme".into(),
    })?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| io_err(feed, &path, e))?;
    let (body, skipped) = if meta.is_dir() {
        let (files, skipped) = read_dir_json(feed, &path, limits).await?;
        (Body::Files(files), skipped)
    } else {
        let what = || format!("file {}", path.display());
        if meta.len() > limits.total {
            return Err(too_large(feed, what(), meta.len(), limits.total));
        }
        let bytes = read_capped(feed, &path, limits.total)
            .await?
            .ok_or_else(|| too_large(feed, what(), limits.total + 1, limits.total))?;
        (Body::Bytes(bytes), Vec::new())
    };
    Ok(Fetched::Content {
        body,
        etag: None,
        last_modified: None,
        skipped,
    })
}

/// Why [`read_body_capped`] failed.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the cap: the declared length, or the bytes read when the cap was passed.
    TooLarge(u64),
    /// The connection failed while reading.
    Read(String),
}

/// Read a response body of at most `cap` bytes: a larger `Content-Length` is refused
/// before reading; otherwise the body is read chunk by chunk and reading stops as soon
/// as it passes `cap`, so an oversized body is never held whole.
pub(crate) async fn read_body_capped(
    mut resp: reqwest::Response,
    cap: u64,
) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = resp.content_length().filter(|l| *l > cap) {
        return Err(BodyError::TooLarge(len));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Read(e.to_string()))?
    {
        let size = (body.len() + chunk.len()) as u64;
        if size > cap {
            return Err(BodyError::TooLarge(size));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn fetch_http(
    feed: &str,
    url: &str,
    previous: Option<&FeedState>,
    cap: u64,
) -> Result<Fetched, FeedError> {
    use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
    vigil_runtime::install_crypto_provider();
    let herr = |m: String| FeedError::Http {
        feed: feed.to_string(),
        url: url.to_string(),
        message: m,
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("vigil-feeds/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| herr(e.to_string()))?;
    let mut req = client.get(url);
    if let Some(prev) = previous.filter(|p| p.url == url && p.content_hash.is_some()) {
        if let Some(e) = &prev.etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        if let Some(lm) = &prev.last_modified {
            req = req.header(IF_MODIFIED_SINCE, lm);
        }
    }
    let resp = req.send().await.map_err(|e| herr(e.to_string()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FeedError::HttpStatus {
            feed: feed.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let header = |n| {
        resp.headers()
            .get(n)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(ETAG);
    let last_modified = header(LAST_MODIFIED);
    let body = read_body_capped(resp, cap).await.map_err(|e| match e {
        BodyError::TooLarge(size) => too_large(feed, format!("HTTP body of {url}"), size, cap),
        BodyError::Read(m) => herr(m),
    })?;
    Ok(Fetched::Content {
        body: Body::Bytes(body),
        etag,
        last_modified,
        skipped: Vec::new(),
    })
}
