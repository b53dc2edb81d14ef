//! Rate limits, 429s, 5xx answers and transport errors, injected by the proxy in front of
//! a real docker-registry.

mod common;

use std::time::{Duration, Instant};

use common::{client, fast, within};
use vigil_registry::{ClientConfig, HeadResult, RegistryError};
use vigil_testkit::proxy::{Faults, Proxy, Seen};
use vigil_testkit::tiny_images::push_tiny;
use vigil_testkit::{Registry, RegistryOpts};

/// The most requests the proxy saw in any window of `window`.
fn max_in_window(seen: &[Seen], window: Duration) -> usize {
    let mut at: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    at.sort();
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t - at[i] < window).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_retry_after() {
    let reg = Registry::start(RegistryOpts::default());
    let d = push_tiny(&reg.host(), "rl/app", "v1", "rl");
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            every_nth: Some((5, 429, Some(1))),
            ..Default::default()
        },
    );
    let host = proxy.host();
    let c = client(ClientConfig {
        rate_per_sec: 100.0,
        burst: 1,
        max_attempts: 5,
        ..fast()
    });
    c.set_rate(&host, 5.0);
    assert_eq!(c.rate(&host), 5.0);
    let start = Instant::now();
    // 33 calls at once; with every 5th answered 429 that is a walk of 41 requests.
    let calls = (0..33).map(|_| c.head_manifest(&host, "rl/app", "v1", Some(&d)));
    for r in within(90, futures::future::join_all(calls)).await {
        assert_eq!(r.unwrap(), HeadResult::Unchanged);
    }
    let took = start.elapsed();
    let seen = proxy.requests();
    assert_eq!(seen.len(), 41, "33 answered + 8 rate limited");
    assert_eq!(seen.iter().filter(|s| s.status == 429).count(), 8);
    assert_eq!(c.requests_sent(&host), 41);
    let max = max_in_window(&seen, Duration::from_secs(1));
    assert!(max <= 6, "{max} requests in one second (rate 5, burst 1)");
    // 41 requests at 5 a second (one token saved up) take at least 40 / 5 s.
    assert!(took >= Duration::from_millis(7800), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_without_retry_after_backs_off() {
    let reg = Registry::start(RegistryOpts::default());
    let d = push_tiny(&reg.host(), "rl/app", "v1", "rl");
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            every_nth: Some((5, 429, None)),
            ..Default::default()
        },
    );
    let host = proxy.host();
    let c = client(fast());
    within(60, async {
        for _ in 0..10 {
            let r = c.head_manifest(&host, "rl/app", "v1", Some(&d)).await;
            assert_eq!(r.unwrap(), HeadResult::Unchanged);
        }
    })
    .await;
    let seen = proxy.requests();
    assert_eq!(seen.len(), 12);
    for (i, s) in seen.iter().enumerate() {
        if s.status == 429 {
            let gap = seen[i + 1].at - s.at;
            assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
        }
    }

    // Always 429, with a Retry-After far beyond max_retry_after: capped, then RateLimited.
    proxy.set_faults(Faults {
        every_nth: Some((1, 429, Some(3600))),
        ..Default::default()
    });
    proxy.clear();
    let capped = client(ClientConfig {
        max_attempts: 3,
        max_retry_after: Duration::from_millis(100),
        ..fast()
    });
    let start = Instant::now();
    let r = within(30, capped.head_manifest(&host, "rl/app", "v1", None)).await;
    match r {
        Err(e @ RegistryError::RateLimited { attempts: 3, .. }) => assert!(e.is_transient()),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(proxy.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let reg = Registry::start(RegistryOpts::default());
    let d = push_tiny(&reg.host(), "se/app", "v1", "se");
    for t in 0..20 {
        push_tiny(&reg.host(), "se/app", &format!("t{t}"), "se");
    }
    let proxy = Proxy::start(
        &reg.host(),
        Faults {
            every_nth: Some((3, 503, None)),
            ..Default::default()
        },
    );
    let host = proxy.host();
    let c = client(fast());
    within(60, async {
        for _ in 0..6 {
            let r = c.head_manifest(&host, "se/app", "v1", Some(&d)).await;
            assert_eq!(r.unwrap(), HeadResult::Unchanged);
        }
        assert_eq!(c.list_tags(&host, "se/app").await.unwrap().len(), 21);
    })
    .await;
    let seen = proxy.requests();
    assert!(seen.iter().any(|s| s.status == 503));
    assert_eq!(c.requests_sent(&host), seen.len() as u64);

    // Always 500: Server after max_attempts requests.
    proxy.set_faults(Faults {
        every_nth: Some((1, 500, None)),
        ..Default::default()
    });
    proxy.clear();
    let c3 = client(ClientConfig {
        max_attempts: 3,
        ..fast()
    });
    let start = Instant::now();
    match within(30, c3.head_manifest(&host, "se/app", "v1", None)).await {
        Err(
            e @ RegistryError::Server {
                status: 500,
                attempts: 3,
                ..
            },
        ) => {
            assert!(e.is_transient())
        }
        other => panic!("expected Server, got {other:?}"),
    }
    let seen = proxy.requests();
    assert_eq!(seen.len(), 3);
    // Backoff between the attempts (200 ms, 400 ms, at least half of each).
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(100));
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(200));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_errors_are_retried_then_reported() {
    // A port nobody listens on.
    let port = vigil_testkit::free_port();
    let host = format!("127.0.0.1:{port}");
    let c = client(ClientConfig {
        max_attempts: 3,
        request_timeout: Duration::from_secs(5),
        ..fast()
    });
    match within(30, c.head_manifest(&host, "x/y", "v1", None)).await {
        Err(e @ RegistryError::Transport { .. }) => assert!(e.is_transient()),
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(c.requests_sent(&host), 3);
}
