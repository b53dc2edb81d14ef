//! vigil-match: version orderings per ecosystem, namespaces, pure matching of packages
//! against advisories, and the match stage.

pub mod matcher;
pub mod namespace;
pub mod stage;
pub mod version;

pub use matcher::{affects, diff, lookup_keys, lookups, match_packages, Lookup, MatchOutcome};
pub use namespace::{distro_namespace, ecosystem_namespace, normalize_name, package_namespace};
pub use stage::{ImageMatch, MatchStage};
pub use version::Comparator;
