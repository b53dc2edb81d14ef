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
}

impl FeedKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeedKind::Debian => "debian",
            FeedKind::Alpine => "alpine",
            FeedKind::Osv => "osv",
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
}

impl FeedSource {
    pub fn new(kind: FeedKind, name: impl Into<String>, url: impl Into<String>) -> Self {
        FeedSource {
            kind,
            name: name.into(),
            url: url.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FeedsConfig {
    #[serde(default)]
    pub feeds: Vec<FeedSource>,
}
