//! A real HTTP/1.1 reverse proxy on a free 127.0.0.1 port, for tests that need a
//! registry to misbehave: it forwards every request (method, path and query, headers
//! including `Authorization`, body) to an upstream `host:port` over plain http and streams
//! the answer back (status and headers preserved; `Location` and `Link` naming the
//! upstream are rewritten to the proxy), records what it saw, and injects [`Faults`]:
//!
//! * `every_nth`: every n-th request (counted from [`Proxy::start`] or the last
//!   [`Proxy::set_faults`]) is answered with a status (and `Retry-After`) instead of
//!   being forwarded;
//! * `canned`: requests whose path (with query) starts with a prefix get a canned answer,
//!   for instance a [`CannedBody::HugeTags`] tag list generated while it is streamed;
//! * `require_bearer`: requests without `Authorization: Bearer <token>` get a 401 with a
//!   `Bearer` challenge whose realm is the proxy's own `GET /token`, which hands out the
//!   token (to the basic credentials of `token_basic`, when set).
//!
//! Faults are applied in that order. The proxy runs on its own thread with its own tokio
//! runtime (usable from sync and async tests alike) and stops when dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;

/// What the proxy does instead of (or besides) forwarding.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// `(n, status, retry_after_secs)`: every n-th request is answered `status` (with
    /// `Retry-After: retry_after_secs` when given) without being forwarded.
    pub every_nth: Option<(u64, u16, Option<u64>)>,
    /// `(path prefix, answer)`: the first prefix the path (with query) starts with wins.
    pub canned: Vec<(String, Canned)>,
    /// Only requests with `Authorization: Bearer <this>` are forwarded (`/token` hands it
    /// out).
    pub require_bearer: Option<String>,
    /// The basic credentials `/token` wants (`None`: it answers anyone).
    pub token_basic: Option<(String, String)>,
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: String,
    pub body: CannedBody,
}

/// The body of a canned answer.
#[derive(Debug, Clone)]
pub enum CannedBody {
    Bytes(Vec<u8>),
    /// `{"name":"<repo>","tags":["t0000000","t0000001",…]}` with `count` tags, generated
    /// while streamed (chunked, no `Content-Length`), never held in memory.
    HugeTags {
        repo: String,
        count: u64,
    },
}

impl Canned {
    /// A JSON answer (`application/json`).
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status,
            content_type: "application/json".into(),
            body: CannedBody::Bytes(body.into()),
        }
    }

    /// A 200 tag list of `count` generated tags.
    pub fn huge_tags(repo: &str, count: u64) -> Canned {
        Canned {
            status: 200,
            content_type: "application/json".into(),
            body: CannedBody::HugeTags {
                repo: repo.into(),
                count,
            },
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// The status answered (by the fault or the upstream; 502 when the upstream failed).
    pub status: u16,
}

struct Shared {
    upstream: String,
    host: String,
    faults: Mutex<Faults>,
    count: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    client: reqwest::Client,
}

/// A running proxy; stopped when dropped.
pub struct Proxy {
    host: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Proxy {
    /// Start a proxy to `upstream` (`host:port`, plain http) with `faults`.
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port for the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking proxy listener");
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .expect("proxy HTTP client");
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            host: host.clone(),
            faults: Mutex::new(faults),
            count: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
            client,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{host}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio proxy listener");
                    let app = axum::Router::new().fallback(handle).with_state(state);
                    let _ = ready_tx.send(());
                    tokio::select! {
                        r = axum::serve(listener, app) => {
                            if let Err(e) = r {
                                eprintln!("proxy: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the proxy thread");
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("proxy started");
        Proxy {
            host,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The upstream `host:port`.
    pub fn upstream(&self) -> String {
        self.shared.upstream.clone()
    }

    /// Every request seen since the start or the last [`Proxy::clear`], in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Forget the requests seen (the `every_nth` count goes on).
    pub fn clear(&self) {
        lock(&self.shared.seen).clear();
    }

    /// Replace the faults; the `every_nth` count starts again.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
        self.shared.count.store(0, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

fn simple(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(*k), HeaderValue::from_str(v)) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// The token scope a registry path needs.
fn scope_of(path: &str) -> Option<String> {
    let p = path.split('?').next().unwrap_or("");
    let rest = p.strip_prefix("/v2/")?;
    if rest.starts_with("_catalog") {
        return Some("registry:catalog:*".into());
    }
    for marker in ["/manifests/", "/tags/", "/blobs/"] {
        if let Some(i) = rest.rfind(marker) {
            return Some(format!("repository:{}:pull", &rest[..i]));
        }
    }
    None
}

fn basic_matches(headers: &HeaderMap, user: &str, pass: &str) -> bool {
    let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|s| s == format!("{user}:{pass}"))
}

fn huge_tags_body(repo: String, count: u64) -> Body {
    const CHUNK: u64 = 10_000;
    let head = format!("{{\"name\":{},\"tags\":[", serde_json::Value::String(repo));
    let stream = futures::stream::unfold((0u64, Some(head)), move |(i, head)| async move {
        if let Some(h) = head {
            return Some((Ok::<_, std::io::Error>(bytes::Bytes::from(h)), (i, None)));
        }
        if i > count {
            return None;
        }
        if i == count {
            return Some((Ok(bytes::Bytes::from_static(b"]}")), (i + 1, None)));
        }
        let end = (i + CHUNK).min(count);
        let mut s = String::with_capacity(((end - i) * 11) as usize);
        for t in i..end {
            if t > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"t{t:07}\""));
        }
        Some((Ok(bytes::Bytes::from(s)), (end, None)))
    });
    Body::from_stream(stream)
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let n = sh.count.fetch_add(1, Ordering::SeqCst) + 1;
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let faults = lock(&sh.faults).clone();
    let resp = answer(&sh, &faults, n, req, &path).await;
    lock(&sh.seen).push(Seen {
        method,
        path,
        at,
        status: resp.status().as_u16(),
    });
    resp
}

async fn answer(sh: &Shared, faults: &Faults, n: u64, req: Request, path: &str) -> Response {
    if let Some((every, status, retry_after)) = faults.every_nth {
        if every > 0 && n.is_multiple_of(every) {
            let mut h = vec![("content-type", "application/json".to_string())];
            if let Some(s) = retry_after {
                h.push(("retry-after", s.to_string()));
            }
            return simple(
                status,
                &h,
                error_body("INJECTED", "fault injected by the proxy"),
            );
        }
    }
    if let Some(token) = &faults.require_bearer {
        let p = path.split('?').next().unwrap_or("");
        if p == "/token" {
            let ok = match &faults.token_basic {
                Some((u, pw)) => basic_matches(req.headers(), u, pw),
                None => true,
            };
            return if ok {
                simple(
                    200,
                    &[("content-type", "application/json".into())],
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                )
            } else {
                simple(
                    401,
                    &[
                        ("content-type", "application/json".into()),
                        ("www-authenticate", "Basic realm=\"token\"".into()),
                    ],
                    error_body("UNAUTHORIZED", "bad token credentials"),
                )
            };
        }
        let sent = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {token}").as_str()) {
            let mut ch = format!("Bearer realm=\"http://{}/token\",service=\"test\"", sh.host);
            if let Some(s) = scope_of(path) {
                ch.push_str(&format!(",scope=\"{s}\""));
            }
            return simple(
                401,
                &[
                    ("content-type", "application/json".into()),
                    ("www-authenticate", ch),
                ],
                error_body("UNAUTHORIZED", "authentication required"),
            );
        }
    }
    if let Some((_, c)) = faults
        .canned
        .iter()
        .find(|(p, _)| path.starts_with(p.as_str()))
    {
        let h = [("content-type", c.content_type.clone())];
        return match &c.body {
            CannedBody::Bytes(b) => simple(c.status, &h, b.clone()),
            CannedBody::HugeTags { repo, count } => {
                simple(c.status, &h, huge_tags_body(repo.clone(), *count))
            }
        };
    }
    forward(sh, req, path).await
}

async fn forward(sh: &Shared, req: Request, path: &str) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return simple(400, &[], format!("proxy: reading the request body: {e}")),
    };
    let url = format!("http://{}{path}", sh.upstream);
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &parts.headers {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || name == "host" || name == "content-length" {
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    let upstream = sh
        .client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let up = match upstream {
        Ok(r) => r,
        Err(e) => return simple(502, &[], format!("proxy: upstream {url}: {e}")),
    };
    let status = up.status();
    let mut out_headers = HeaderMap::new();
    for (k, v) in up.headers() {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) {
            continue;
        }
        let v = if name == "location" || name == "link" {
            match v.to_str() {
                Ok(s) if s.contains(&sh.upstream) => {
                    HeaderValue::from_str(&s.replace(&sh.upstream, &sh.host))
                        .unwrap_or_else(|_| v.clone())
                }
                _ => v.clone(),
            }
        } else {
            v.clone()
        };
        out_headers.append(k.clone(), v);
    }
    let mut r = Response::new(Body::from_stream(up.bytes_stream()));
    *r.status_mut() = status;
    *r.headers_mut() = out_headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            scope_of("/v2/a/b/manifests/latest").as_deref(),
            Some("repository:a/b:pull")
        );
        assert_eq!(
            scope_of("/v2/a/tags/list?n=1").as_deref(),
            Some("repository:a:pull")
        );
        assert_eq!(
            scope_of("/v2/_catalog?n=1").as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(scope_of("/v2/"), None);
    }
}
