//! vigil evaluate stage: Anchore-style policy bundles (version `1_0`) evaluated against
//! an image's analysis and vulnerability report.
//!
//! * [`bundle`]: the bundle model, parsed and validated at load ([`load_bundle`]), and the
//!   built-in [`default_bundle`].
//! * [`gates`]: the declarative trigger table (13 gates, 40 triggers, parameter specs with
//!   defaults and load-time checks); [`triggers`]: the trigger functions.
//! * [`engine`]: the pure [`evaluate`] function: mapping, triggers, allowlists (with
//!   expiry, wildcards, package-version scope), image allow/deny lists, final action.
//! * [`openvex`]: OpenVEX `not_affected`/`fixed` statements as an allowlist.
//! * [`render`]: table and JSON output with Anchore's columns.
//! * [`policy`]: bundle storage (add, list, get, activate, delete), history, interactive
//!   evaluation over the typed store.
//! * [`stage`]: [`EvaluateStage`]: evaluates matched images, stores history, and
//!   re-evaluates evaluated images on `vigil.policy.updated`.

pub mod bundle;
pub mod engine;
pub mod gates;
pub mod openvex;
pub mod policy;
pub mod render;
pub mod stage;
pub mod triggers;

pub use bundle::{
    default_bundle, load_bundle, Allowlist, Bundle, PolicyError, DEFAULT_BUNDLE_JSON,
    MAX_BUNDLE_BYTES,
};
pub use engine::{evaluate, md5_trigger_id, EvalInput};
pub use openvex::{allowlist_from_openvex, OpenVexError};
pub use policy::PolicyStoreError;
pub use render::{render_json, render_table};
pub use stage::EvaluateStage;

#[cfg(test)]
mod tests;
