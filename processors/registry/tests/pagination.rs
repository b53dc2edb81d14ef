//! Catalog and tag-list pagination against a real docker-registry.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::{client, fast, within};
use vigil_registry::{ClientConfig, RegistryError};
use vigil_testkit::proxy::{Faults, Proxy};
use vigil_testkit::tiny_images::{push_tiny, push_tiny_many};
use vigil_testkit::{Registry, RegistryOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_of_250_repos_in_pages_of_100() {
    let reg = Registry::start(RegistryOpts::default());
    let start = Instant::now();
    let images: Vec<(String, String, String)> = (0..250)
        .map(|i| {
            (
                format!("team/app{i:03}"),
                "latest".into(),
                format!("salt-{i}"),
            )
        })
        .collect();
    push_tiny_many(&reg.host(), &images);
    let want: BTreeSet<String> = images.iter().map(|(r, _, _)| r.clone()).collect();
    eprintln!("pushed 250 repos in {:?}", start.elapsed());
    let proxy = Proxy::start(&reg.host(), Faults::default());
    let c = client(ClientConfig {
        page_size: 100,
        ..fast()
    });
    let host = proxy.host();
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    let mut pages = 0;
    within(60, async {
        loop {
            let p = c
                .catalog_page(&host, last.as_deref())
                .await
                .expect("catalog page");
            pages += 1;
            assert!(p.items.len() <= 100, "page of {}", p.items.len());
            seen.extend(p.items);
            match p.next {
                Some(n) => last = Some(n),
                None => break,
            }
            assert!(pages < 10, "pagination does not end");
        }
    })
    .await;
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250, "every repo exactly once");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), want);
    let reqs = proxy.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r.path.starts_with("/v2/_catalog?n=100")),
        "{reqs:?}"
    );
    assert_eq!(c.requests_sent(&host), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_list_of_230_tags_and_the_bound() {
    let reg = Registry::start(RegistryOpts::default());
    let mut want = BTreeSet::new();
    for i in 0..230 {
        let tag = format!("v{i:03}");
        push_tiny(&reg.host(), "many/tags", &tag, "same");
        want.insert(tag);
    }
    let proxy = Proxy::start(&reg.host(), Faults::default());
    let host = proxy.host();
    let c = client(ClientConfig {
        page_size: 100,
        ..fast()
    });
    let tags = within(60, c.list_tags(&host, "many/tags"))
        .await
        .expect("list tags");
    assert_eq!(tags.len(), 230);
    assert_eq!(tags.iter().cloned().collect::<BTreeSet<_>>(), want);
    let pages = proxy.requests();
    eprintln!(
        "tag list pages: {:?}",
        pages.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(pages.iter().all(|r| r.path.contains("n=100")));

    // One page by hand.
    let first = within(30, c.tags_page(&host, "many/tags", None))
        .await
        .unwrap();
    assert!(!first.items.is_empty() && first.items.len() <= 230);

    // More tags than allowed.
    let small = client(ClientConfig {
        page_size: 100,
        max_tags: 150,
        ..fast()
    });
    match within(60, small.list_tags(&host, "many/tags")).await {
        Err(RegistryError::TooMany { limit, .. }) => assert_eq!(limit, 150),
        other => panic!("expected TooMany, got {other:?}"),
    }
    // A repository that does not exist.
    assert!(matches!(
        within(30, c.list_tags(&host, "no/such")).await,
        Err(RegistryError::NotFound { .. })
    ));
}
