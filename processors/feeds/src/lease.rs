//! One feed syncer at a time in a cluster: a lease on a JetStream KV bucket.
//!
//! The lease is one key whose value names the holder and the expiry time. Acquiring
//! uses KV `create` (succeeds only when the key is absent or deleted) or, when the
//! current lease has expired or is already ours, a revision-checked `update` (fails when
//! someone else wrote in between). The bucket is created with `max_age` = the lease TTL,
//! so an abandoned lease also disappears server-side; the expiry in the value makes
//! the decision independent of when the server purges it (holders' clocks are assumed
//! to agree to well within the TTL).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use vigil_runtime::now_millis;

/// Default bucket for feed leases.
pub const DEFAULT_BUCKET: &str = "vigil_feeds_lease";
/// Default key of the feed-sync lease.
pub const DEFAULT_KEY: &str = "sync";

#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("lease bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("lease {key}: {message}")]
    Kv { key: String, message: String },
}

/// What the lease key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub holder: String,
    /// Unix milliseconds after which the lease may be taken by anyone.
    pub expires_at: i64,
}

/// A holder's handle on the cluster-wide feed-sync lease. Cheap to clone (clones share
/// the held revision).
#[derive(Clone)]
pub struct FeedLease {
    kv: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
    revision: Arc<Mutex<Option<u64>>>,
}

impl std::fmt::Debug for FeedLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedLease")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl FeedLease {
    /// Open (creating when missing) the lease bucket. `holder` must be unique per process
    /// (host name + pid, a UUID…).
    pub async fn new(
        js: &jetstream::Context,
        bucket: &str,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<FeedLease, LeaseError> {
        Self::with_replicas(js, bucket, key, holder, ttl, 1).await
    }

    /// As [`FeedLease::new`], with the bucket replicated `replicas` times (3 on a 3-node
    /// cluster); an existing bucket with another replica count is updated.
    pub async fn with_replicas(
        js: &jetstream::Context,
        bucket: &str,
        key: &str,
        holder: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<FeedLease, LeaseError> {
        let berr = |m: String| LeaseError::Bucket {
            bucket: bucket.to_string(),
            message: m,
        };
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => match js
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    description: "vigil feed-sync lease".into(),
                    history: 1,
                    max_age: ttl,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                })
                .await
            {
                Ok(kv) => kv,
                // Another holder created it concurrently.
                Err(e) => js
                    .get_key_value(bucket)
                    .await
                    .map_err(|_| berr(e.to_string()))?,
            },
        };
        let stream_name = format!("KV_{bucket}");
        if let Ok(mut stream) = js.get_stream(&stream_name).await {
            if let Ok(info) = stream.info().await {
                if info.config.num_replicas != replicas.max(1) {
                    let mut c = info.config.clone();
                    c.num_replicas = replicas.max(1);
                    js.update_stream(&c)
                        .await
                        .map_err(|e| berr(format!("updating replicas: {e}")))?;
                }
            }
        }
        Ok(FeedLease {
            kv,
            key: key.to_string(),
            holder: holder.to_string(),
            ttl,
            revision: Arc::default(),
        })
    }

    pub fn holder_id(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn kerr(&self, m: impl std::fmt::Display) -> LeaseError {
        LeaseError::Kv {
            key: self.key.clone(),
            message: m.to_string(),
        }
    }

    fn value(&self) -> Result<bytes::Bytes, LeaseError> {
        let info = LeaseInfo {
            holder: self.holder.clone(),
            expires_at: now_millis() + self.ttl.as_millis() as i64,
        };
        serde_json::to_vec(&info)
            .map(Into::into)
            .map_err(|e| self.kerr(e))
    }

    /// The current lease, if any and not expired.
    pub async fn current(&self) -> Result<Option<LeaseInfo>, LeaseError> {
        Ok(self.read().await?.map(|(i, _)| i))
    }

    async fn read(&self) -> Result<Option<(LeaseInfo, u64)>, LeaseError> {
        let entry = self.kv.entry(&self.key).await.map_err(|e| self.kerr(e))?;
        Ok(entry.and_then(|e| {
            if e.operation != kv::Operation::Put {
                return None;
            }
            let info: LeaseInfo = serde_json::from_slice(&e.value).ok()?;
            (info.expires_at > now_millis()).then_some((info, e.revision))
        }))
    }

    /// Take the lease, or renew it when already held. `Ok(false)` when another holder
    /// has an unexpired lease (or won a race for it).
    pub async fn try_acquire(&self) -> Result<bool, LeaseError> {
        let value = self.value()?;
        let entry = self.kv.entry(&self.key).await.map_err(|e| self.kerr(e))?;
        let result = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let current: Option<LeaseInfo> = serde_json::from_slice(&e.value).ok();
                let takeable = match &current {
                    None => true,
                    Some(i) => i.holder == self.holder || i.expires_at <= now_millis(),
                };
                if !takeable {
                    return Ok(false);
                }
                self.kv.update(&self.key, value, e.revision).await.ok()
            }
            // Absent, deleted or purged: create (which handles the deleted case).
            _ => self.kv.create(&self.key, value).await.ok(),
        };
        let won = result.is_some();
        *self.revision.lock().expect("lease lock") = result;
        Ok(won)
    }

    /// Give the lease up (only if still ours; a lease taken over after expiry is left).
    pub async fn release(&self) -> Result<(), LeaseError> {
        let rev = self.revision.lock().expect("lease lock").take();
        if let Some(rev) = rev {
            // A revision mismatch means someone else holds it now: nothing to release.
            let _ = self.kv.delete_expect_revision(&self.key, Some(rev)).await;
        }
        Ok(())
    }

    /// Whether this handle currently holds an unexpired lease (checked against the KV).
    pub async fn is_held(&self) -> Result<bool, LeaseError> {
        Ok(self
            .read()
            .await?
            .is_some_and(|(i, _)| i.holder == self.holder))
    }
}
