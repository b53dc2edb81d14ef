//! Garbage and oversized answers (canned by the proxy in front of a real registry).

mod common;

use common::{client, fast, within};
use vigil_registry::{ClientConfig, RegistryError};
use vigil_testkit::proxy::{Canned, Faults, Proxy};
use vigil_testkit::tiny_images::push_tiny;
use vigil_testkit::{Registry, RegistryOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lists_are_malformed() {
    let reg = Registry::start(RegistryOpts::default());
    push_tiny(&reg.host(), "good/app", "v1", "g");
    let canned = |p: &str, body: &str| (format!("/v2/{p}"), Canned::json(200, body));
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            canned: vec![
                canned("notjson/tags/list", "not json"),
                canned("number/tags/list", r#"{"name":"number","tags":5}"#),
                canned("numbers/tags/list", r#"{"name":"numbers","tags":[1,2]}"#),
                canned("object/tags/list", r#"{"name":"object","tags":{"a":"b"}}"#),
                canned("array/tags/list", r#"["a","b"]"#),
                canned("trailing/tags/list", r#"{"tags":["a"]}{"tags":["b"]}"#),
                canned("nulltags/tags/list", r#"{"name":"nulltags","tags":null}"#),
                canned("notags/tags/list", r#"{"name":"notags"}"#),
                canned(
                    "extra/tags/list",
                    r#"{"name":"extra","tags":["a"],"x":{"y":[1]}}"#,
                ),
                canned("_catalog", r#"{"repositories":{}}"#),
            ],
            ..Default::default()
        },
    );
    let host = proxy.host();
    let c = client(fast());
    for repo in [
        "notjson", "number", "numbers", "object", "array", "trailing",
    ] {
        let r = within(30, c.list_tags(&host, repo)).await;
        assert!(
            matches!(r, Err(RegistryError::Malformed { .. })),
            "{repo}: {r:?}"
        );
    }
    assert!(within(30, c.list_tags(&host, "nulltags"))
        .await
        .unwrap()
        .is_empty());
    assert!(within(30, c.list_tags(&host, "notags"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        within(30, c.list_tags(&host, "extra")).await.unwrap(),
        ["a"]
    );
    let r = within(30, c.catalog_page(&host, None)).await;
    assert!(matches!(r, Err(RegistryError::Malformed { .. })), "{r:?}");
    // The real registry behind still answers.
    assert_eq!(
        within(30, c.list_tags(&host, "good/app")).await.unwrap(),
        ["v1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_too_large() {
    let reg = Registry::start(RegistryOpts::default());
    let big = format!(
        r#"{{"name":"big","tags":[{}]}}"#,
        (0..400)
            .map(|i| format!("\"tag{i:05}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            canned: vec![
                ("/v2/big/tags/list".into(), Canned::json(200, big)),
                (
                    "/v2/huge/tags/list".into(),
                    Canned::huge_tags("huge", 50_000),
                ),
            ],
            ..Default::default()
        },
    );
    let host = proxy.host();
    let c = client(ClientConfig {
        max_body_bytes: 1024,
        ..fast()
    });
    // With a Content-Length, and streamed (chunked) without one.
    for repo in ["big", "huge"] {
        match within(30, c.list_tags(&host, repo)).await {
            Err(RegistryError::TooLarge { limit: 1024, .. }) => {}
            other => panic!("{repo}: expected TooLarge, got {other:?}"),
        }
    }
    // Large enough a bound: the 50 000 generated tags are all there.
    let roomy = client(fast());
    let tags = within(60, roomy.list_tags(&host, "huge")).await.unwrap();
    assert_eq!(tags.len(), 50_000);
    assert_eq!(tags[0], "t0000000");
    assert_eq!(tags[49_999], "t0049999");
}
