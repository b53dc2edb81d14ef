//! Basic auth against an htpasswd docker-registry, and the bearer token dance through
//! the proxy.

mod common;

use common::{client, client_with_basic, fast, within};
use vigil_registry::{Credentials, HeadResult, RegistryClient, RegistryError};
use vigil_testkit::proxy::{Faults, Proxy};
use vigil_testkit::tiny_images::{push_tiny, push_tiny_with_auth};
use vigil_testkit::{Registry, RegistryOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registry() {
    let reg = Registry::start(RegistryOpts {
        auth: Some(("alice".into(), "wonder".into())),
        tls: false,
    });
    let host = reg.host();
    let d = push_tiny_with_auth(&host, "priv/app", "v1", "s", "alice", "wonder");

    let c = client_with_basic(fast(), &host, "alice", "wonder");
    assert_eq!(
        within(30, c.head_manifest(&host, "priv/app", "v1", None))
            .await
            .unwrap(),
        HeadResult::Digest(d.clone())
    );
    // The basic challenge is remembered: one request per call from now on.
    let before = c.requests_sent(&host);
    assert_eq!(
        within(30, c.head_manifest(&host, "priv/app", "v1", Some(&d)))
            .await
            .unwrap(),
        HeadResult::Unchanged
    );
    assert_eq!(c.requests_sent(&host), before + 1);
    assert_eq!(
        within(30, c.list_tags(&host, "priv/app")).await.unwrap(),
        ["v1"]
    );
    let cat = within(30, c.catalog_page(&host, None)).await.unwrap();
    assert_eq!(cat.items, ["priv/app"]);

    // No credentials, wrong credentials.
    let anon = client(fast());
    for r in [
        within(30, anon.head_manifest(&host, "priv/app", "v1", None))
            .await
            .map(|_| ()),
        within(30, anon.list_tags(&host, "priv/app"))
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(r, Err(RegistryError::Unauthorized { status: 401, .. })),
            "{r:?}"
        );
    }
    let wrong = client_with_basic(fast(), &host, "alice", "nope");
    let r = within(30, wrong.head_manifest(&host, "priv/app", "v1", None)).await;
    assert!(
        matches!(r, Err(RegistryError::Unauthorized { .. })),
        "{r:?}"
    );

    // The same credentials from a docker config file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"auths": {{"http://{host}": {{"auth": "YWxpY2U6d29uZGVy"}}}}}}"#),
    )
    .unwrap();
    let from_file = RegistryClient::new(
        fast(),
        Credentials {
            docker_config: Some(config),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        within(30, from_file.head_manifest(&host, "priv/app", "v1", None))
            .await
            .unwrap(),
        HeadResult::Digest(d)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_through_the_proxy() {
    let reg = Registry::start(RegistryOpts::default());
    let d = push_tiny(&reg.host(), "tok/app", "v1", "bearer");
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            require_bearer: Some("t0k3n".into()),
            token_basic: Some(("bob".into(), "builder".into())),
            ..Default::default()
        },
    );
    let host = proxy.host();
    let c = client_with_basic(fast(), &host, "bob", "builder");
    let token_requests = |p: &Proxy| {
        p.requests()
            .iter()
            .filter(|r| r.path.starts_with("/token"))
            .count()
    };

    assert_eq!(
        within(30, c.head_manifest(&host, "tok/app", "v1", None))
            .await
            .unwrap(),
        HeadResult::Digest(d.clone())
    );
    // 401, token, retry.
    let seen = proxy.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].status, 401);
    assert!(seen[1].path.starts_with("/token?"), "{seen:?}");
    assert!(
        seen[1].path.contains("scope=repository%3Atok%2Fapp%3Apull"),
        "{seen:?}"
    );
    assert!(seen[1].path.contains("service=test"), "{seen:?}");
    assert_eq!(seen[2].status, 200);
    assert_eq!(c.requests_sent(&host), 3);

    // The cached token is reused: one request, no token fetch.
    proxy.clear();
    assert_eq!(
        within(30, c.head_manifest(&host, "tok/app", "v1", Some(&d)))
            .await
            .unwrap(),
        HeadResult::Unchanged
    );
    assert_eq!(proxy.requests().len(), 1);
    assert_eq!(token_requests(&proxy), 0);
    assert_eq!(
        within(30, c.list_tags(&host, "tok/app")).await.unwrap(),
        ["v1"]
    );
    assert_eq!(token_requests(&proxy), 0, "same scope, same token");

    // The catalog has another scope: one more token.
    let cat = within(30, c.catalog_page(&host, None)).await.unwrap();
    assert_eq!(cat.items, ["tok/app"]);
    assert_eq!(token_requests(&proxy), 1);

    // Concurrent first calls share one token fetch.
    let c2 = client_with_basic(fast(), &host, "bob", "builder");
    proxy.clear();
    let calls = (0..8).map(|_| c2.head_manifest(&host, "tok/app", "v1", Some(&d)));
    for r in within(30, futures::future::join_all(calls)).await {
        assert_eq!(r.unwrap(), HeadResult::Unchanged);
    }
    assert_eq!(token_requests(&proxy), 1);

    // Without or with wrong token credentials: unauthorized.
    for bad in [
        client(fast()),
        client_with_basic(fast(), &host, "bob", "nope"),
    ] {
        let r = within(30, bad.head_manifest(&host, "tok/app", "v1", None)).await;
        assert!(
            matches!(r, Err(RegistryError::Unauthorized { .. })),
            "{r:?}"
        );
    }
}
