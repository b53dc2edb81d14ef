//! Manifest HEADs against a real docker-registry (through the proxy, to count requests).

mod common;

use common::{client, fast, within};
use vigil_registry::{HeadResult, RegistryError};
use vigil_testkit::proxy::{Canned, Faults, Proxy};
use vigil_testkit::tiny_images::push_tiny;
use vigil_testkit::{Registry, RegistryOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_unchanged_not_found_and_repush() {
    let reg = Registry::start(RegistryOpts::default());
    let d1 = push_tiny(&reg.host(), "web/app", "1.0", "first");
    let proxy = Proxy::start(&reg.host(), Faults::default());
    let host = proxy.host();
    let c = client(fast());

    // Unknown digest: the digest.
    let r = within(30, c.head_manifest(&host, "web/app", "1.0", None))
        .await
        .unwrap();
    assert_eq!(r, HeadResult::Digest(d1.clone()));
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(seen[0].path, "/v2/web/app/manifests/1.0");

    // Known digest: unchanged, one request per call.
    for i in 1..=3 {
        proxy.clear();
        let r = within(30, c.head_manifest(&host, "web/app", "1.0", Some(&d1)))
            .await
            .unwrap();
        assert_eq!(r, HeadResult::Unchanged, "call {i}");
        let seen = proxy.requests();
        assert_eq!(seen.len(), 1, "call {i}: {seen:?}");
        assert!(seen[0].status == 304 || seen[0].status == 200, "{seen:?}");
    }
    assert_eq!(c.requests_sent(&host), 4);

    // A stale known digest: the new one.
    let r = within(
        30,
        c.head_manifest(&host, "web/app", "1.0", Some("sha256:0000")),
    )
    .await
    .unwrap();
    assert_eq!(r, HeadResult::Digest(d1.clone()));

    // No such tag, no such repository.
    assert_eq!(
        within(30, c.head_manifest(&host, "web/app", "nope", None))
            .await
            .unwrap(),
        HeadResult::NotFound
    );
    assert_eq!(
        within(30, c.head_manifest(&host, "no/repo", "1.0", Some(&d1)))
            .await
            .unwrap(),
        HeadResult::NotFound
    );

    // Re-pushed with another salt: a new digest, and unchanged for it afterwards.
    let d2 = push_tiny(&reg.host(), "web/app", "1.0", "second");
    assert_ne!(d1, d2);
    assert_eq!(
        within(30, c.head_manifest(&host, "web/app", "1.0", Some(&d1)))
            .await
            .unwrap(),
        HeadResult::Digest(d2.clone())
    );
    assert_eq!(
        within(30, c.head_manifest(&host, "web/app", "1.0", Some(&d2)))
            .await
            .unwrap(),
        HeadResult::Unchanged
    );
    // Same salt, same digest.
    assert_eq!(push_tiny(&reg.host(), "web/other", "x", "second"), d2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_without_digest_header_is_malformed() {
    let reg = Registry::start(RegistryOpts::default());
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            canned: vec![("/v2/odd/manifests/".into(), Canned::json(200, "{}"))],
            ..Default::default()
        },
    );
    let c = client(fast());
    let r = within(30, c.head_manifest(&proxy.host(), "odd", "1", None)).await;
    assert!(matches!(r, Err(RegistryError::Malformed { .. })), "{r:?}");
    // Invalid names never reach the registry.
    let r = within(30, c.head_manifest(&proxy.host(), "../etc", "1", None)).await;
    assert!(matches!(r, Err(RegistryError::Malformed { .. })), "{r:?}");
    assert_eq!(proxy.requests().len(), 1);
}

#[test]
fn extra_ca_certificates() {
    // A TLS registry's CA is accepted as an extra root; a file without a certificate is
    // refused. (Loopback registries are always reached over plain http, so the handshake
    // itself is not exercised here.)
    let reg = Registry::start(RegistryOpts {
        auth: None,
        tls: true,
    });
    let ca = reg.ca_cert().expect("a TLS registry has a CA");
    let cfg = vigil_registry::ClientConfig {
        ca_certs: vec![ca],
        ..fast()
    };
    vigil_registry::RegistryClient::new(cfg, Default::default()).expect("client with an extra CA");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    for path in [bad, dir.path().join("missing.pem")] {
        let cfg = vigil_registry::ClientConfig {
            ca_certs: vec![path],
            ..fast()
        };
        assert!(vigil_registry::RegistryClient::new(cfg, Default::default()).is_err());
    }
}
