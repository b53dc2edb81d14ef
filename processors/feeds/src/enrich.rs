//! NVD enrichment for the matcher side.
//!
//! NVD records are stored by the [`FeedKind::Nvd`](crate::FeedKind::Nvd) driver under
//! namespace `nvd` with package = id = the CVE id (see [`crate::drivers::nvd`]).
//! [`nvd_lookup`] fetches the record of a CVE; [`enrich`] merges it into an advisory
//! from another source (the advisory's own CVSS/CWE data stays first: vendor over NVD).
//! For a GHSA or distro advisory, look up its id when it is a CVE, else each `CVE-`
//! alias ([`cve_ids`]).

use vigil_contracts::{Advisory, PackageKey};
use vigil_store::{Store, StoreError};

use crate::drivers::nvd::NVD_NAMESPACE;

/// The key an NVD record of `cve` is stored under.
pub fn nvd_key(cve: &str) -> PackageKey {
    PackageKey {
        namespace: NVD_NAMESPACE.to_string(),
        package: cve.to_string(),
    }
}

/// The stored NVD record of a CVE, if an NVD feed has synced it.
pub async fn nvd_lookup(store: &Store, cve: &str) -> Result<Option<Advisory>, StoreError> {
    Ok(store
        .get_advisories(&nvd_key(cve))
        .await?
        .into_iter()
        .find(|a| a.id == cve))
}

/// The CVE ids an advisory names: its id when a CVE, then `CVE-` aliases.
pub fn cve_ids(a: &Advisory) -> Vec<&str> {
    std::iter::once(a.id.as_str())
        .chain(a.aliases.iter().map(String::as_str))
        .filter(|s| s.starts_with("CVE-"))
        .collect()
}

/// Merge an NVD record into an advisory: NVD's CVSS entries not already present are
/// appended (so the advisory's own scores stay first), CWEs are joined, and the
/// description, published date and URLs are filled when the advisory has none.
/// The severity is taken from NVD only when the advisory's is `Unknown`.
pub fn enrich(advisory: &mut Advisory, nvd: &Advisory) {
    for c in &nvd.cvss {
        if !advisory
            .cvss
            .iter()
            .any(|o| o.vector == c.vector && o.source == c.source)
        {
            advisory.cvss.push(c.clone());
        }
    }
    for w in &nvd.cwes {
        if !advisory.cwes.contains(w) {
            advisory.cwes.push(w.clone());
        }
    }
    if advisory.description.is_none() {
        advisory.description = nvd.description.clone();
    }
    if advisory.published.is_none() {
        advisory.published = nvd.published.clone();
    }
    if advisory.urls.is_empty() {
        advisory.urls = nvd.urls.clone();
    }
    if advisory.severity == vigil_contracts::Severity::Unknown {
        advisory.severity = nvd.severity;
    }
}
