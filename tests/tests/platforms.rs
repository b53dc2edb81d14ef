//! End to end, distributed: `vigil submit --platform all --wait` of the multi-platform
//! testbed image over a real nats-server (`vigil run all`) and a real registry. The
//! fetch stage fans out one request per platform of the index and publishes a parent
//! result naming them; `submit` waits for every platform's result.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use vigil_contracts::{codec, streams, ScanResult, ScanStatus, Subject, Subjects};
use vigil_e2e::{package_names, Vigil};
use vigil_testkit::{testbed, Nats, Registry, RegistryOpts};

/// The index digest of the multiarch layout and its manifests: digest → `os/arch[/variant]`.
fn index_of_multiarch() -> (String, BTreeMap<String, String>) {
    let layout = testbed::oci_layout("multiarch");
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let index_digest = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testbed::blob_path(&layout, &index_digest)).unwrap())
            .unwrap();
    assert!(
        index["mediaType"].as_str().unwrap_or("").contains("index"),
        "multiarch is an image index: {index}"
    );
    let manifests = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                platform = format!("{platform}/{v}");
            }
            (m["digest"].as_str().unwrap().to_string(), platform)
        })
        .collect();
    (index_digest, manifests)
}

/// Every result published on `result.<id>` for the given request ids, read back from
/// the results stream as the wire records (MessagePack envelopes).
fn results_over_nats(url: &str, ids: &[String]) -> Vec<ScanResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let subjects = Subjects::new("vigil");
        let stream = js
            .get_stream(streams::results_stream_name(&subjects))
            .await
            .unwrap();
        let mut out = Vec::new();
        for id in ids {
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: subjects.render(&Subject::Result(id.clone())),
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut msgs = consumer.messages().await.unwrap();
            let msg = tokio::time::timeout(Duration::from_secs(30), msgs.next())
                .await
                .unwrap_or_else(|_| panic!("no result for {id} on the results stream"))
                .unwrap()
                .unwrap();
            // A result too large for one message arrives as a reference.
            let bytes = vigil_runtime::jetstream::resolve_payload(&js, &subjects, &msg.payload)
                .await
                .unwrap();
            out.push(codec::decode::<ScanResult>(&bytes).unwrap());
        }
        out
    })
}

/// `vigil run all`, killed if the test fails before its graceful stop.
struct Runner(Option<std::process::Child>);

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn distributed_submit_of_every_platform_of_an_index() {
    let (index_digest, manifests) = index_of_multiarch();
    assert!(manifests.len() >= 2, "{manifests:?}");
    let nats = Nats::start();
    let reg = Registry::start(RegistryOpts::default());
    reg.push_testbed(&["multiarch"]);
    let v = Vigil::new().env("VIGIL_NATS__URL", &nats.url());
    let mut guard = Runner(Some(v.spawn(&["run", "all"], "run.log")));

    let source = format!("{}/multiarch:latest", reg.host());
    let out = v.run(&[
        "submit",
        &source,
        "--platform",
        "all",
        "--wait",
        "--timeout",
        "180",
        "-o",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "submit: {stderr}\nrunner log:\n{}",
        v.log("run.log")
    );
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "submit --platform all prints a JSON array ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    // One report per platform of the index, each its own image linked to the index.
    assert_eq!(reports.len(), manifests.len(), "{reports:#?}");
    let mut by_digest: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for r in &reports {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(
            r["image"]["index_digest"],
            index_digest.as_str(),
            "{}",
            r["image"]
        );
        assert!(
            !r["packages"].as_array().unwrap().is_empty(),
            "every platform has packages"
        );
        by_digest.insert(r["image"]["digest"].as_str().unwrap().to_string(), r);
    }
    assert_eq!(
        by_digest.keys().collect::<Vec<_>>(),
        manifests.keys().collect::<Vec<_>>(),
        "the reports are the index's manifests"
    );
    let expected = &testbed::expected()["images"]["multiarch"]["platforms"];
    for p in expected.as_array().unwrap() {
        let platform = p["platform"].as_str().unwrap();
        let digest = manifests
            .iter()
            .find(|(_, pl)| pl.as_str() == platform)
            .map(|(d, _)| d)
            .unwrap_or_else(|| panic!("{platform} not in the index: {manifests:?}"));
        let debs = package_names(by_digest[digest], "deb");
        assert_eq!(
            debs.len() as u64,
            p["deb_package_count"].as_u64().unwrap(),
            "{platform}: {debs:?}"
        );
        for m in p["must_find"].as_array().into_iter().flatten() {
            assert!(debs.iter().any(|d| d == &m["name"]), "{platform}: {m}");
        }
    }

    // The wire records: the parent result announces one request per platform (and is
    // not a report itself); each platform's result carries the index digest.
    let parent_id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("vigil: submitted request "))
        .unwrap_or_else(|| panic!("submit names its request: {stderr}"))
        .trim()
        .to_string();
    let parent = results_over_nats(&nats.url(), std::slice::from_ref(&parent_id)).remove(0);
    assert_eq!(parent.status, ScanStatus::Succeeded);
    assert_eq!(parent.image_digest.as_deref(), Some(index_digest.as_str()));
    assert!(parent.report.is_none() && parent.failure.is_none());
    assert_eq!(parent.platform_requests.len(), manifests.len());
    let mut child_ids: Vec<String> = reports
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    child_ids.sort();
    let mut announced = parent.platform_requests.clone();
    announced.sort();
    assert_eq!(
        announced, child_ids,
        "the reports are the announced requests"
    );
    for child in results_over_nats(&nats.url(), &parent.platform_requests) {
        assert!(
            child.request_id.starts_with(&format!("{parent_id}-")),
            "{}",
            child.request_id
        );
        assert_eq!(child.status, ScanStatus::Succeeded);
        assert!(child.platform_requests.is_empty());
        let d = &child.report.as_ref().expect("a report").descriptor;
        let image = &d.as_ref().expect("the image descriptor").image;
        assert_eq!(image.index_digest.as_deref(), Some(index_digest.as_str()));
        assert_eq!(Some(&image.digest), child.image_digest.as_ref());
        assert_eq!(
            manifests.get(&image.digest).map(|p| p.as_str()),
            Some(image.platform.as_str()),
            "each result is the platform it was asked for"
        );
    }

    // SIGTERM: graceful shutdown, exit 0.
    let mut runner = guard.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = runner.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "runner exits after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "runner exit status {status:?}");
}
