//! vigil-match: version orderings per ecosystem, namespaces, pure matching of packages
//! against advisories, and the match stage.

pub mod matcher;
pub mod namespace;
pub mod stage;
pub mod version;

pub use matcher::{
    affects, diff, ecosystem_name, lookup_keys, lookups, match_packages, match_packages_with,
    module_applies, package_module, source_rank, Affected, Lookup, MatchOptions, MatchOutcome,
};
pub use namespace::{
    distro_namespace, distro_namespaces, ecosystem_namespace, normalize_name, package_namespace,
};
pub use stage::{ImageMatch, MatchStage};
pub use version::Comparator;
