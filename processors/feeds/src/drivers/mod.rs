//! Drivers: parse a source's own format into [`Advisory`] records grouped by key.

use std::collections::BTreeMap;

use vigil_contracts::{Advisory, PackageKey};

pub mod alpine;
pub mod debian;
pub mod nvd;
pub mod osv;

/// What a parse skipped, for the progress callback and the sync report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    /// One line per skipped record, file or affected entry.
    pub messages: Vec<String>,
    /// Whether input that could have carried advisories was skipped (a malformed or
    /// oversized record or file). The sync is then partial: it adds and updates, and
    /// removes nothing the feed stored before.
    pub partial: bool,
}

impl Warnings {
    /// A skipped entry that carried nothing vigil stores (an unknown ecosystem).
    pub fn note(&mut self, m: impl Into<String>) {
        self.messages.push(m.into());
    }

    /// Skipped input that may have carried advisories: the sync becomes partial.
    pub fn skipped(&mut self, m: impl Into<String>) {
        self.messages.push(m.into());
        self.partial = true;
    }
}

/// Advisories grouped by (namespace, package), each list sorted by id (and module).
pub type Grouped = BTreeMap<PackageKey, Vec<Advisory>>;

/// Group advisories by key; two records with the same id (and module stream, see
/// [`Advisory::record_key`]) under one key are merged (ranges and versions joined).
pub fn group(advisories: Vec<Advisory>) -> Grouped {
    let mut by_key: BTreeMap<PackageKey, BTreeMap<String, Advisory>> = BTreeMap::new();
    for a in advisories {
        let key = PackageKey {
            namespace: a.namespace.clone(),
            package: a.package.clone(),
        };
        let slot = by_key.entry(key).or_default();
        match slot.get_mut(&a.record_key()) {
            None => {
                slot.insert(a.record_key(), a);
            }
            Some(prev) => {
                for r in a.ranges {
                    if !prev.ranges.contains(&r) {
                        prev.ranges.push(r);
                    }
                }
                for v in a.versions {
                    if !prev.versions.contains(&v) {
                        prev.versions.push(v);
                    }
                }
                for al in a.aliases {
                    if !prev.aliases.contains(&al) {
                        prev.aliases.push(al);
                    }
                }
                for c in a.cvss {
                    if !prev.cvss.contains(&c) {
                        prev.cvss.push(c);
                    }
                }
                for c in a.cwes {
                    if !prev.cwes.contains(&c) {
                        prev.cwes.push(c);
                    }
                }
                prev.severity = prev.severity.max(a.severity);
            }
        }
    }
    by_key
        .into_iter()
        .map(|(k, m)| (k, m.into_values().collect()))
        .collect()
}

/// Number of advisories per namespace.
pub fn counts(g: &Grouped) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in g {
        *out.entry(k.namespace.clone()).or_insert(0) += v.len() as u64;
    }
    out
}
