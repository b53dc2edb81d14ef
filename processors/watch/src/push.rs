//! The registry push-event endpoint: docker-registry (CNCF distribution) notifications
//! turned into `RegistryPush` messages on `<p>.watch.push`.
//!
//! `POST /v1/registry/events` (and `/`), body at most 1 MiB, JSON (docker-registry sends
//! `application/vnd.docker.distribution.events.v1+json`). The shared secret comes as
//! `Authorization: Bearer <secret>` or as the bare header value (docker-registry sends
//! its configured headers verbatim). A push is answered 200 only after every
//! `RegistryPush` was stored by JetStream, so the registry retries what was not.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use vigil_contracts::watch::{event_kind, EventLevel, RegistryPush};
use vigil_contracts::Subject;
use vigil_runtime::{now_millis, Outgoing};
use vigil_store::Store;

use crate::{event_outgoing, make_event, Publisher};

/// Largest notification body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Rejection events of one kind of reason are stored at most this often.
const REJECT_EVENT_EVERY_MS: i64 = 10_000;

/// Manifest media types (blob pushes and others are ignored).
pub const MANIFEST_MEDIA_TYPES: [&str; 6] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push endpoint: no secret configured (push_secret)")]
    NoSecret,
    #[error("push endpoint: binding {addr}: {message}")]
    Bind { addr: String, message: String },
}

/// docker-registry's notification envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub events: Vec<RegistryEvent>,
}

#[derive(Debug, Deserialize)]
pub struct RegistryEvent {
    pub id: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub target: EventTarget,
    #[serde(default)]
    pub request: EventRequest,
}

#[derive(Debug, Default, Deserialize)]
pub struct EventTarget {
    #[serde(default, rename = "mediaType")]
    pub media_type: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EventRequest {
    #[serde(default)]
    pub host: String,
}

struct PushState {
    secret_hash: [u8; 32],
    registry_override: Option<String>,
    publisher: Publisher,
    store: Store,
    last_reject: Mutex<HashMap<&'static str, i64>>,
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Equal in constant time (over the hashes, so lengths do not show either).
fn same_secret(given: &[u8], want: &[u8; 32]) -> bool {
    let g = sha(given);
    g.iter()
        .zip(want.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The secret a request carries: `Bearer <s>` or the bare value.
fn presented_secret(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let v = v.trim_ascii();
    if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
        Some(v[7..].trim_ascii())
    } else {
        Some(v)
    }
}

/// The `RegistryPush` records a notification body asks for (manifest pushes only).
pub fn pushes_of(
    body: &[u8],
    registry_override: Option<&str>,
    received_at: i64,
) -> Result<Vec<RegistryPush>, String> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| format!("not a notification envelope: {e}"))?;
    let mut out = Vec::new();
    for e in env.events {
        if e.action != "push" || !MANIFEST_MEDIA_TYPES.contains(&e.target.media_type.as_str()) {
            continue;
        }
        let registry = registry_override
            .map(str::to_string)
            .unwrap_or(e.request.host);
        if registry.is_empty()
            || e.target.repository.is_empty()
            || !e.target.digest.starts_with("sha256:")
            || e.id.is_empty()
        {
            return Err(format!(
                "event {}: missing registry host, repository or digest",
                e.id
            ));
        }
        out.push(RegistryPush {
            registry,
            repository: e.target.repository,
            tag: e.target.tag.filter(|t| !t.is_empty()),
            digest: e.target.digest,
            event_id: e.id,
            received_at,
        });
    }
    Ok(out)
}

impl PushState {
    async fn reject(&self, reason: &'static str, message: String) {
        let now = now_millis();
        {
            let mut m = self.last_reject.lock().expect("reject lock");
            if m.get(reason)
                .is_some_and(|t| now - t < REJECT_EVENT_EVERY_MS)
            {
                return;
            }
            m.insert(reason, now);
        }
        let e = make_event(
            event_kind::PUSH_EVENT_REJECTED,
            EventLevel::Warn,
            "registry-push-endpoint",
            format!("registry notification rejected: {message}"),
            vec![("reason", reason.to_string()), ("error", message.clone())],
            now,
            &[reason, &message, &now.to_string()],
        );
        if let Err(err) = self.store.put_event(&e).await {
            tracing::warn!(error = %err, "storing a push rejection event");
        }
        if let Ok(out) = event_outgoing(&e) {
            if let Err(err) = self.publisher.publish(&out).await {
                tracing::warn!(error = %err, "publishing a push rejection event");
            }
        }
    }
}

async fn events(
    State(st): State<Arc<PushState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let authorized = presented_secret(&headers).is_some_and(|s| same_secret(s, &st.secret_hash));
    if !authorized {
        let why = if headers.contains_key(header::AUTHORIZATION) {
            "wrong secret"
        } else {
            "no Authorization header"
        };
        st.reject("unauthorized", why.to_string()).await;
        return (StatusCode::UNAUTHORIZED, "unauthorized\n".into());
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(ctype.is_empty() || ctype == "application/json" || ctype.ends_with("+json")) {
        let msg = format!("content type {ctype} is not JSON");
        st.reject("malformed", msg.clone()).await;
        return (StatusCode::BAD_REQUEST, format!("{msg}\n"));
    }
    let pushes = match pushes_of(&body, st.registry_override.as_deref(), now_millis()) {
        Ok(p) => p,
        Err(msg) => {
            st.reject("malformed", msg.clone()).await;
            return (StatusCode::BAD_REQUEST, format!("{msg}\n"));
        }
    };
    let mut outs = Vec::with_capacity(pushes.len());
    for p in &pushes {
        match Outgoing::record(Subject::WatchPush, p.event_id.clone(), p) {
            Ok(o) => outs.push(o),
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    }
    match st.publisher.publish_many(&outs).await {
        Ok(()) => (StatusCode::OK, format!("{} pushes accepted\n", outs.len())),
        Err(e) => {
            tracing::warn!(error = %e, "publishing registry pushes failed; the registry retries");
            (StatusCode::SERVICE_UNAVAILABLE, "try again\n".into())
        }
    }
}

/// The endpoint's router (for embedding into another server).
pub fn router(
    secret: &str,
    registry_host_override: Option<String>,
    publisher: Publisher,
    store: Store,
) -> Router {
    let st = Arc::new(PushState {
        secret_hash: sha(secret.as_bytes()),
        registry_override: registry_host_override.filter(|h| !h.is_empty()),
        publisher,
        store,
        last_reject: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/v1/registry/events", post(events))
        .route("/", post(events))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(st)
}

/// Listen on `addr` (`127.0.0.1:0` for any free port) and serve the endpoint until the
/// returned task is aborted; the address actually bound is returned.
pub async fn serve_push_endpoint(
    addr: &str,
    secret: &str,
    registry_host_override: Option<String>,
    publisher: Publisher,
    store: Store,
) -> Result<(SocketAddr, JoinHandle<()>), PushError> {
    if secret.is_empty() {
        return Err(PushError::NoSecret);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| PushError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| PushError::Bind {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    let app = router(secret, registry_host_override, publisher, store);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "push endpoint stopped");
        }
    });
    tracing::info!(addr = %local, "registry push endpoint listening");
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        let want = sha(b"s3cret");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(same_secret(presented_secret(&h).unwrap(), &want));
        h.insert(header::AUTHORIZATION, "s3cret".parse().unwrap());
        assert!(same_secret(presented_secret(&h).unwrap(), &want));
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(!same_secret(presented_secret(&h).unwrap(), &want));
    }

    #[test]
    fn envelope() {
        let body = br#"{"events":[
          {"id":"e1","timestamp":"2026-01-01T00:00:00Z","action":"push",
           "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:aa","length":1,"repository":"r/app","url":"http://x","tag":"1"},
           "request":{"id":"q","addr":"127.0.0.1:1","host":"127.0.0.1:5000","method":"PUT","useragent":"x"},
           "actor":{},"source":{"addr":"h:5000","instanceID":"i"}},
          {"id":"e2","action":"push","target":{"mediaType":"application/octet-stream",
             "digest":"sha256:bb","repository":"r/app"},"request":{"host":"127.0.0.1:5000"}},
          {"id":"e3","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "digest":"sha256:cc","repository":"r/app"},"request":{"host":"127.0.0.1:5000"}}
        ]}"#;
        let p = pushes_of(body, None, 7).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].registry, "127.0.0.1:5000");
        assert_eq!(p[0].tag.as_deref(), Some("1"));
        assert_eq!(p[0].digest, "sha256:aa");
        let p = pushes_of(body, Some("reg.internal"), 7).unwrap();
        assert_eq!(p[0].registry, "reg.internal");
        assert!(pushes_of(b"nope", None, 7).is_err());
        assert!(pushes_of(br#"{"events": 5}"#, None, 7).is_err());
    }
}
