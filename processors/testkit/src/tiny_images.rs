//! Tiny, valid OCI images built in memory and pushed over the registry HTTP API, for
//! tests that need many repositories or tags quickly (hundreds a second on loopback).
//!
//! An image is one gzip layer (a tar holding `etc/os-release` of Alpine 3.19 and a file
//! `salt` with the salt), an OCI config (linux/amd64, the layer's diff_id) and an OCI
//! manifest. Everything is deterministic: the same salt gives the same digests, another
//! salt other ones. Pushing is synchronous (plain http over `std::net::TcpStream`, one
//! connection per request), so it works from sync tests and from inside a tokio runtime
//! alike.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};

/// `application/vnd.oci.image.manifest.v1+json`
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

const OS_RELEASE: &str = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\nHOME_URL=\"https://alpinelinux.org/\"\nBUG_REPORT_URL=\"https://gitlab.alpinelinux.org/alpine/aports/-/issues\"\n";

/// A built image: its blobs and manifest.
#[derive(Debug, Clone)]
pub struct TinyImage {
    /// The gzip layer.
    pub layer: Vec<u8>,
    pub layer_digest: String,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Build the image for `salt` (no I/O).
pub fn build(salt: &str) -> TinyImage {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, std::io::empty())
            .expect("append to an in-memory tar");
    };
    dir(&mut b, "etc/");
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data)
            .expect("append to an in-memory tar");
    };
    file(&mut b, "etc/os-release", OS_RELEASE.as_bytes());
    file(&mut b, "salt", salt.as_bytes());
    let tar = b.into_inner().expect("finish an in-memory tar");
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip in memory");
    let layer = gz.finish().expect("gzip in memory");
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"vigil.test.salt": salt}
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "vigil tiny image"}]
    }))
    .expect("config JSON");
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len()
        }]
    }))
    .expect("manifest JSON");
    let manifest_digest = sha256_digest(&manifest);
    TinyImage {
        layer,
        layer_digest,
        diff_id,
        config,
        config_digest,
        manifest,
        manifest_digest,
    }
}

/// Build the image for `salt` and push it to `registry_host` (`host:port`, plain http) as
/// `repo:tag`. Returns the manifest digest. Panics when the registry refuses.
pub fn push_tiny(registry_host: &str, repo: &str, tag: &str, salt: &str) -> String {
    try_push(registry_host, repo, tag, salt, None).unwrap_or_else(|e| panic!("push_tiny: {e}"))
}

/// [`push_tiny`] with basic credentials.
pub fn push_tiny_with_auth(
    registry_host: &str,
    repo: &str,
    tag: &str,
    salt: &str,
    user: &str,
    password: &str,
) -> String {
    try_push(registry_host, repo, tag, salt, Some((user, password)))
        .unwrap_or_else(|e| panic!("push_tiny_with_auth: {e}"))
}

/// Push many images (`(repo, tag, salt)`) with a few threads at once; the digests, in
/// order. Much faster than one [`push_tiny`] after the other.
pub fn push_tiny_many(registry_host: &str, images: &[(String, String, String)]) -> Vec<String> {
    push_many(registry_host, images, None)
}

/// [`push_tiny_many`] with basic credentials.
pub fn push_tiny_many_with_auth(
    registry_host: &str,
    images: &[(String, String, String)],
    user: &str,
    password: &str,
) -> Vec<String> {
    push_many(registry_host, images, Some((user, password)))
}

fn push_many(
    registry_host: &str,
    images: &[(String, String, String)],
    auth: Option<(&str, &str)>,
) -> Vec<String> {
    const THREADS: usize = 6;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(vec![String::new(); images.len()]);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS.min(images.len()))
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((repo, tag, salt)) = images.get(i) else {
                        return Ok::<(), String>(());
                    };
                    let d = try_push(registry_host, repo, tag, salt, auth)?;
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = d;
                })
            })
            .collect();
        for w in workers {
            if let Err(e) = w.join().expect("push thread") {
                panic!("push_tiny_many: {e}");
            }
        }
    });
    out.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Push (`auth`: basic credentials), returning the manifest digest or what went wrong.
pub fn try_push(
    registry_host: &str,
    repo: &str,
    tag: &str,
    salt: &str,
    auth: Option<(&str, &str)>,
) -> Result<String, String> {
    let img = build(salt);
    let c = Conn {
        host: registry_host,
        auth: auth.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        }),
    };
    // The two blobs at once: the registry, not this side, is the slow part.
    std::thread::scope(|s| {
        let layer = s.spawn(|| push_blob(&c, repo, &img.layer_digest, &img.layer));
        let config = push_blob(&c, repo, &img.config_digest, &img.config);
        layer
            .join()
            .map_err(|_| "blob upload thread panicked".to_string())??;
        config
    })?;
    let r = c.request(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", MANIFEST_MEDIA_TYPE)],
        &img.manifest,
    )?;
    if r.status != 201 && r.status != 200 {
        return Err(format!(
            "PUT manifest {repo}:{tag}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    if let Some(d) = r.header("docker-content-digest") {
        if d != img.manifest_digest {
            return Err(format!(
                "registry stored {repo}:{tag} as {d}, expected {}",
                img.manifest_digest
            ));
        }
    }
    Ok(img.manifest_digest)
}

fn push_blob(c: &Conn<'_>, repo: &str, digest: &str, data: &[u8]) -> Result<(), String> {
    let head = c.request("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], &[])?;
    if head.status == 200 {
        return Ok(());
    }
    let start = c.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])?;
    if start.status != 202 {
        return Err(format!(
            "POST blob upload in {repo}: {} {}",
            start.status,
            String::from_utf8_lossy(&start.body)
        ));
    }
    let location = start
        .header("location")
        .ok_or_else(|| format!("POST blob upload in {repo}: no Location"))?;
    let path = path_of(location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = c.request(
        "PUT",
        &format!("{path}{sep}digest={}", digest.replace(':', "%3A")),
        &[("Content-Type", "application/octet-stream")],
        data,
    )?;
    if put.status != 201 {
        return Err(format!(
            "PUT blob {digest} in {repo}: {} {}",
            put.status,
            String::from_utf8_lossy(&put.body)
        ));
    }
    Ok(())
}

/// The path (and query) of an absolute or relative URL.
fn path_of(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    }
}

struct Conn<'a> {
    host: &'a str,
    auth: Option<String>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Conn<'_> {
    /// One HTTP/1.1 request on its own connection (`Connection: close`).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, String> {
        let what = || format!("{method} http://{}{path}", self.host);
        let err = |e: std::io::Error| format!("{}: {e}", what());
        let mut s = TcpStream::connect(self.host).map_err(err)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(err)?;
        s.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(err)?;
        let _ = s.set_nodelay(true);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: vigil-testkit\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(a) = &self.auth {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        s.write_all(&out).map_err(err)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(err)?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{}: no HTTP answer", what()))?;
        let text = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{}: bad status line", what()))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        });
        if chunked {
            body = dechunk(&body);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_salted() {
        let a = build("one");
        assert_eq!(a.manifest_digest, build("one").manifest_digest);
        assert_ne!(a.manifest_digest, build("two").manifest_digest);
        assert_eq!(a.layer_digest, sha256_digest(&a.layer));
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["layers"][0]["digest"], a.layer_digest.as_str());
        let c: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], a.diff_id.as_str());
        // The layer is a gzip tar with the two files.
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(&a.layer[..]));
        let names: Vec<String> = t
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["etc/", "etc/os-release", "salt"]);
    }

    #[test]
    fn paths_and_chunks() {
        assert_eq!(
            path_of("http://h:1/v2/a/blobs/uploads/u?x=1"),
            "/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(path_of("/v2/a/blobs/uploads/u"), "/v2/a/blobs/uploads/u");
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
