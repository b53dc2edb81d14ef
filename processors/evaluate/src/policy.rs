//! Policy bundle storage and evaluation history over the typed store, for the CLI and API.
//!
//! The store keeps bundles as submitted JSON; every function here validates with
//! [`load_bundle`] before storing or activating, so an invalid bundle is never stored.

use md5::{Digest, Md5};
use vigil_contracts::{Evaluation, PolicyUpdated, StoredBundle, UnixMillis};
use vigil_store::{Store, StoreError};

use crate::bundle::{default_bundle, load_bundle, Allowlist, Bundle, PolicyError};
use crate::engine::{evaluate, EvalInput};

/// Why a policy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error("invalid policy bundle: {0}")]
    Invalid(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("policy bundle {0:?} is the active bundle: activate another one first")]
    Active(String),
}

/// The id a bundle is stored under: its own `id`, else one derived from its content.
pub fn bundle_store_id(bundle: &Bundle, json: &str) -> String {
    if !bundle.id.trim().is_empty() {
        return bundle.id.trim().to_string();
    }
    let mut h = Md5::new();
    h.update(json.as_bytes());
    format!("bundle-{}", &hex::encode(h.finalize())[..16])
}

/// Validate and store a bundle (replacing one with the same id, keeping it active if it was).
pub async fn add_bundle(
    store: &Store,
    json: &str,
    now: UnixMillis,
) -> Result<StoredBundle, PolicyStoreError> {
    let bundle = load_bundle(json)?;
    let id = bundle_store_id(&bundle, json);
    let stored = StoredBundle {
        name: if bundle.name.is_empty() {
            id.clone()
        } else {
            bundle.name.clone()
        },
        id,
        json: json.to_string(),
        active: false,
        created_at: now,
    };
    store.put_bundle(&stored).await?;
    Ok(store.get_bundle(&stored.id).await?.unwrap_or(stored))
}

/// Every stored bundle, with its `active` flag.
pub async fn list_bundles(store: &Store) -> Result<Vec<StoredBundle>, PolicyStoreError> {
    Ok(store.list_bundles().await?)
}

pub async fn get_bundle(store: &Store, id: &str) -> Result<StoredBundle, PolicyStoreError> {
    store
        .get_bundle(id)
        .await?
        .ok_or_else(|| PolicyStoreError::NotFound(format!("policy bundle {id:?}")))
}

/// Make a stored bundle active. Returns the `PolicyUpdated` record the caller publishes
/// on `Subject::PolicyUpdated`, so that the evaluate stage re-evaluates evaluated images.
pub async fn activate_bundle(
    store: &Store,
    id: &str,
    now: UnixMillis,
) -> Result<PolicyUpdated, PolicyStoreError> {
    let stored = get_bundle(store, id).await?;
    load_bundle(&stored.json)?;
    store.activate_bundle(id).await?;
    Ok(PolicyUpdated {
        bundle_id: id.to_string(),
        updated_at: now,
        bundle_json: None,
    })
}

/// Delete a stored bundle; the active bundle cannot be deleted (as in Anchore).
pub async fn delete_bundle(store: &Store, id: &str) -> Result<(), PolicyStoreError> {
    let stored = get_bundle(store, id).await?;
    if stored.active {
        return Err(PolicyStoreError::Active(id.to_string()));
    }
    Ok(store.delete_bundle(id).await?)
}

/// The bundle evaluations use when none is named: the active one, else the built-in default.
pub async fn active_bundle(store: &Store) -> Result<Bundle, PolicyStoreError> {
    match store.active_bundle_id().await? {
        Some(id) => Ok(load_bundle(&get_bundle(store, &id).await?.json)?),
        None => Ok(default_bundle()),
    }
}

/// Evaluation history of an image for one tag, oldest first.
pub async fn history(
    store: &Store,
    image_digest: &str,
    tag: &str,
) -> Result<Vec<Evaluation>, PolicyStoreError> {
    Ok(store.evaluation_history(image_digest, tag).await?)
}

/// Interactive evaluation of a stored image: nothing is stored. `tag` defaults to the
/// analysed tag; `extra_allowlists` are applied with the mapping's (e.g. OpenVEX).
pub async fn evaluate_stored(
    store: &Store,
    bundle: &Bundle,
    image_digest: &str,
    tag: Option<&str>,
    extra_allowlists: &[Allowlist],
    now: UnixMillis,
) -> Result<Evaluation, PolicyStoreError> {
    let analysis = store
        .get_analysis_shared(image_digest)
        .await?
        .ok_or_else(|| PolicyStoreError::NotFound(format!("analysis of {image_digest}")))?;
    let report = store.get_vuln_report(image_digest).await?.ok_or_else(|| {
        PolicyStoreError::NotFound(format!("vulnerability report of {image_digest}"))
    })?;
    let feeds = store.list_feed_states().await?;
    let tag = tag
        .map(String::from)
        .unwrap_or_else(|| analysis.descriptor.image.full_tag());
    Ok(evaluate(
        bundle,
        &EvalInput {
            feeds: &feeds,
            extra_allowlists,
            ..EvalInput::new(&analysis, &report, &tag)
        },
        now,
    ))
}
