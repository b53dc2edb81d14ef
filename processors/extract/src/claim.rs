//! One extraction of a layer at a time, cluster-wide: before streaming a layer, an
//! extract stage claims it with an insert-if-absent row in the shared store (`Meta`,
//! partition `layer-claim|<digest>`). A second extract replica that gets the same layer
//! at the same moment (two images sharing a base layer) waits for the first one's index
//! instead of streaming the layer again. The holder refreshes its claim while it works; a
//! claim not refreshed for [`STALE_AFTER`] (its holder was killed) is taken over.

use std::time::Duration;

use vigil_store::{Store, StoreError, Table};

/// A claim older than this without a refresh belongs to a holder that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a holder refreshes its claim.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15);

fn partition(digest: &str) -> String {
    format!("layer-claim|{digest}")
}

fn now_ms() -> i64 {
    vigil_runtime::now_millis()
}

fn encode(holder: &str, at: i64) -> Vec<u8> {
    format!("{holder}\t{at}").into_bytes()
}

fn decode(v: &[u8]) -> Option<(String, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (h, t) = s.rsplit_once('\t')?;
    Some((h.to_string(), t.parse().ok()?))
}

/// What trying to claim a layer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This holder owns the layer's extraction now.
    Mine,
    /// Another holder is extracting it (fresh claim).
    Busy { holder: String },
}

/// Try once to claim `digest` for `holder`; a stale claim is removed and retried once.
pub async fn try_claim(store: &Store, digest: &str, holder: &str) -> Result<Claimed, StoreError> {
    let b = store.backend();
    let p = partition(digest);
    for _ in 0..2 {
        if b.put_if_absent(Table::Meta, &p, "", encode(holder, now_ms()))
            .await?
        {
            return Ok(Claimed::Mine);
        }
        let current = b.get(Table::Meta, &p, "").await?;
        let Some((other, at)) = current.as_deref().and_then(decode) else {
            // Deleted meanwhile, or unreadable: take it over.
            b.delete(Table::Meta, &p, "").await?;
            continue;
        };
        if other == holder {
            return Ok(Claimed::Mine);
        }
        if now_ms() - at > STALE_AFTER.as_millis() as i64 {
            tracing::warn!(layer = digest, stale_holder = %other, "taking over a stale extraction claim");
            b.delete(Table::Meta, &p, "").await?;
            continue;
        }
        return Ok(Claimed::Busy { holder: other });
    }
    Ok(Claimed::Busy {
        holder: "unknown".into(),
    })
}

/// Refresh the claim (the holder is alive).
pub async fn refresh(store: &Store, digest: &str, holder: &str) -> Result<(), StoreError> {
    store
        .backend()
        .put(
            Table::Meta,
            &partition(digest),
            "",
            encode(holder, now_ms()),
        )
        .await
}

/// Give the claim up (extraction done or failed).
pub async fn release(store: &Store, digest: &str, holder: &str) -> Result<(), StoreError> {
    let b = store.backend();
    let p = partition(digest);
    if let Some((h, _)) = b
        .get(Table::Meta, &p, "")
        .await?
        .as_deref()
        .and_then(decode)
    {
        if h != holder {
            return Ok(());
        }
    }
    b.delete(Table::Meta, &p, "").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_round_trip() {
        assert_eq!(
            decode(&encode("host-1\tx", 42)),
            Some(("host-1\tx".into(), 42))
        );
        assert_eq!(decode(b"garbage"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_holder_at_a_time_and_stale_claims_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(&dir.path().join("s.redb")).unwrap();
        let d = "sha256:aa";
        assert_eq!(try_claim(&store, d, "a").await.unwrap(), Claimed::Mine);
        assert_eq!(
            try_claim(&store, d, "b").await.unwrap(),
            Claimed::Busy { holder: "a".into() }
        );
        // b's release of a's claim changes nothing.
        release(&store, d, "b").await.unwrap();
        assert!(matches!(
            try_claim(&store, d, "b").await.unwrap(),
            Claimed::Busy { .. }
        ));
        release(&store, d, "a").await.unwrap();
        assert_eq!(try_claim(&store, d, "b").await.unwrap(), Claimed::Mine);
        // A claim whose holder stopped refreshing it is taken over.
        store
            .backend()
            .put(
                Table::Meta,
                &partition(d),
                "",
                encode("b", now_ms() - STALE_AFTER.as_millis() as i64 - 1000),
            )
            .await
            .unwrap();
        assert_eq!(try_claim(&store, d, "c").await.unwrap(), Claimed::Mine);
    }
}
