//! The feed-sync lease against a real nats-server (JetStream KV).

use std::time::Duration;

use vigil_feeds::FeedLease;

async fn lease(url: &str, holder: &str, ttl: Duration) -> FeedLease {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    FeedLease::new(&js, "vigil_feeds_lease_test", "sync", holder, ttl)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_holder_at_a_time() {
    let nats = vigil_testkit::Nats::start();
    let ttl = Duration::from_secs(2);
    let a = lease(&nats.url(), "a", ttl).await;
    let b = lease(&nats.url(), "b", ttl).await;

    // Both race for it: exactly one wins.
    let (ra, rb) = tokio::join!(a.try_acquire(), b.try_acquire());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb, "a={ra} b={rb}");
    let (winner, loser) = if ra { (&a, &b) } else { (&b, &a) };
    assert!(winner.is_held().await.unwrap());
    assert!(!loser.try_acquire().await.unwrap());
    // The holder renews.
    assert!(winner.try_acquire().await.unwrap());
    assert_eq!(
        loser.current().await.unwrap().unwrap().holder,
        winner.holder_id()
    );

    // Released: the other gets it.
    winner.release().await.unwrap();
    assert!(loser.try_acquire().await.unwrap());
    assert!(!winner.try_acquire().await.unwrap());

    // Not renewed: after the TTL the first one takes it over.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(winner.try_acquire().await.unwrap());
    assert!(!loser.try_acquire().await.unwrap());
    // The expired holder's release does not drop the new holder's lease.
    loser.release().await.unwrap();
    assert!(winner.is_held().await.unwrap());
}

/// FeedsStage syncs only while it holds the lease.
#[tokio::test]
async fn stage_waits_for_the_lease() {
    use vigil_contracts::{codec, FeedSyncRequest, Subject};
    use vigil_feeds::{FeedKind, FeedSource, FeedsConfig, FeedsStage};
    use vigil_runtime::Stage;

    let nats = vigil_testkit::Nats::start();
    let ttl = Duration::from_secs(30);
    let other = lease(&nats.url(), "other-instance", ttl).await;
    assert!(other.try_acquire().await.unwrap());

    let tmp = tempfile::tempdir().unwrap();
    let store = vigil_store::Store::open_embedded(&tmp.path().join("s.redb")).unwrap();
    let config = FeedsConfig {
        feeds: vec![FeedSource::new(
            FeedKind::Debian,
            "debian",
            vigil_testkit::testbed::feeds_dir()
                .join("debian/tracker.json")
                .display()
                .to_string(),
        )],
    };
    let mine = lease(&nats.url(), "this-instance", ttl).await;
    let stage = FeedsStage::new(config, store.clone()).with_lease(mine.clone());
    let req = codec::encode(&FeedSyncRequest::default()).unwrap();

    let out = stage.handle(&Subject::FeedsSync, &req).await.unwrap();
    assert!(out.is_empty());
    assert!(store.get_feed_state("debian").await.unwrap().is_none());

    other.release().await.unwrap();
    let out = stage.handle(&Subject::FeedsSync, &req).await.unwrap();
    assert_eq!(
        out.iter()
            .filter(|o| o.subject == vigil_contracts::Subject::FeedsUpdated)
            .count(),
        1
    );
    assert!(store.get_feed_state("debian").await.unwrap().is_some());
    // Released after the sync.
    assert!(other.try_acquire().await.unwrap());
}
