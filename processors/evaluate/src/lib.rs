//! vigil evaluate stage: Anchore-style policy bundles (version `1_0`) evaluated against
//! an image's analysis and vulnerability report.
//!
//! * [`bundle`]: the bundle model, parsed and validated at load ([`load_bundle`]), and the
//!   built-in [`default_bundle`].
//! * [`gates`]: the declarative trigger table (gate → trigger → parameter specs → function).
//! * [`engine`]: the pure [`evaluate`] function: mapping, triggers, allowlists, final action.
//! * [`stage`]: [`EvaluateStage`], the thin runner-facing stage.

pub mod bundle;
pub mod engine;
pub mod gates;
pub mod stage;

pub use bundle::{default_bundle, load_bundle, Bundle, PolicyError, DEFAULT_BUNDLE_JSON};
pub use engine::{evaluate, md5_trigger_id, EvalInput};
pub use stage::EvaluateStage;

#[cfg(test)]
mod tests;
