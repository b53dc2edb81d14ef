//! A small real HTTP/1.1 server on 127.0.0.1:0 for tests: one request per connection,
//! every request recorded.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One received request.
#[derive(Debug, Clone)]
pub struct Req {
    /// Path and query, as sent.
    pub target: String,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (raw, not percent-decoded).
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn ok(body: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            headers: Vec::new(),
            body,
        }
    }
    pub fn status(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, n: &str, v: &str) -> Resp {
        self.headers.push((n.into(), v.into()));
        self
    }
}

pub type Log = Arc<Mutex<Vec<Req>>>;

/// Start the server; returns its `http://127.0.0.1:PORT` base and the request log.
pub async fn serve<F>(handler: F) -> (String, Log)
where
    F: Fn(&Req) -> Resp + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let log2 = log.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log2.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let mut lines = head.split("\r\n");
                let target = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or("/")
                    .to_string();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let req = Req { target, headers };
                let resp = handler(&req);
                log.lock().unwrap().push(req);
                let mut out = format!("HTTP/1.1 {} X\r\n", resp.status);
                for (n, v) in &resp.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    resp.body.len()
                ));
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&resp.body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), log)
}
