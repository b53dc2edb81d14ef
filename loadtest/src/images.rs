//! Generated images for the throughput run: `bases` distinct base layers (a Debian 12
//! root with a dpkg database of 40 packages and 300 small files, gzip) and one small
//! application layer per image (an npm lock file naming a few packages and a file unique
//! to the image), pushed to a registry through the distribution API (a blob upload per
//! missing blob, then the manifest), as OCI images.

use std::io::Write;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// One generated image: its repository and the layers' digests.
pub struct Generated {
    pub repo: String,
    pub layers: Vec<String>,
}

struct Blob {
    digest: String,
    bytes: Vec<u8>,
    /// Digest of the uncompressed tar (the config's diff id).
    diff_id: String,
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data.as_slice())
            .expect("append to an in-memory tar");
    }
    b.into_inner().expect("finish an in-memory tar")
}

fn gzip_layer(files: &[(String, Vec<u8>)]) -> Blob {
    let tar = tar_of(files);
    let diff_id = sha(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip in memory");
    let bytes = gz.finish().expect("gzip in memory");
    Blob {
        digest: sha(&bytes),
        bytes,
        diff_id,
    }
}

fn base_layer(b: usize) -> Blob {
    let mut status = String::new();
    for j in 0..40 {
        status.push_str(&format!(
            "Package: base{b}-lib{j}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{j}-{b}\nDescription: generated\n\n"
        ));
    }
    let mut files = vec![
        (
            "etc/os-release".to_string(),
            b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n".to_vec(),
        ),
        ("var/lib/dpkg/status".to_string(), status.into_bytes()),
        (
            "etc/passwd".to_string(),
            b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        ),
    ];
    for f in 0..300 {
        files.push((
            format!("usr/share/base{b}/file{f}.txt"),
            format!("base {b} file {f}\n").repeat(20).into_bytes(),
        ));
    }
    gzip_layer(&files)
}

fn app_layer(i: usize) -> Blob {
    let lock = format!(
        r#"{{"name":"app-{i}","version":"1.0.0","lockfileVersion":3,"packages":{{"":{{"name":"app-{i}","version":"1.0.0"}},"node_modules/left-pad":{{"version":"1.{}.0"}},"node_modules/app-dep-{i}":{{"version":"2.0.{i}"}}}}}}"#,
        i % 4
    );
    gzip_layer(&[
        (format!("srv/app-{i}/package-lock.json"), lock.into_bytes()),
        (format!("srv/app-{i}/id"), format!("{i}\n").into_bytes()),
    ])
}

async fn push_blob(
    http: &reqwest::Client,
    host: &str,
    repo: &str,
    blob: &[u8],
    digest: &str,
) -> Result<()> {
    let head = http
        .head(format!("http://{host}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    if head.status().is_success() {
        return Ok(());
    }
    let start = http
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    if start.status().as_u16() != 202 {
        bail!("starting an upload to {repo}: {}", start.status());
    }
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("upload without a Location")?
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{host}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{url}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .await?;
    if put.status().as_u16() != 201 {
        bail!("uploading {digest} to {repo}: {}", put.status());
    }
    Ok(())
}

/// Generate and push `images` images on `bases` base layers to `host` (plain HTTP).
pub async fn push_generated(host: &str, images: usize, bases: usize) -> Result<Vec<Generated>> {
    let http = reqwest::Client::new();
    let base_blobs: Vec<Blob> = (0..bases).map(base_layer).collect();
    let mut out = Vec::with_capacity(images);
    for i in 0..images {
        let repo = format!("load/app-{i:04}");
        let base = &base_blobs[i % bases];
        let app = app_layer(i);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [base.diff_id, app.diff_id]},
            "history": [{"created_by": "generated base"}, {"created_by": "generated app"}]
        })
        .to_string()
        .into_bytes();
        let config_digest = sha(&config);
        for (bytes, digest) in [
            (&base.bytes, &base.digest),
            (&app.bytes, &app.digest),
            (&config, &config_digest),
        ] {
            push_blob(&http, host, &repo, bytes, digest).await?;
        }
        let layer = |b: &Blob| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": b.digest,
                "size": b.bytes.len(),
            })
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [layer(base), layer(&app)],
        });
        let put = http
            .put(format!("http://{host}/v2/{repo}/manifests/latest"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await?;
        if put.status().as_u16() != 201 {
            bail!(
                "pushing the manifest of {repo}: {} {}",
                put.status(),
                put.text().await.unwrap_or_default()
            );
        }
        out.push(Generated {
            repo,
            layers: vec![base.digest.clone(), app.digest.clone()],
        });
    }
    Ok(out)
}
