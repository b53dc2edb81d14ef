//! The HTTP client: one per process, shared by every registry it talks to.
//!
//! Every request (token fetches and retries included) first takes a token from its
//! registry's [`RateLimiter`]. A 429 waits `Retry-After` (capped at `max_retry_after`;
//! without one, exponential backoff from 1 s) and is retried; 5xx answers and transport
//! errors back off exponentially with jitter (from 200 ms, at most 5 s); both at most
//! `max_attempts` times. A 401 with a `Bearer` challenge fetches a token (cached per
//! registry and scope until shortly before it expires) and retries once; a `Basic`
//! challenge retries once with the basic credentials (sent up front from then on).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tracing::Instrument;

use crate::auth::{self, AuthChallenge, BearerChallenge};
use crate::credentials::{normalize_registry, Credentials, RegistryAuth, IDENTITY_TOKEN_USER};
use crate::ratelimit::{self, RateLimiter};
use crate::{link, RegistryError};

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Hosts reached over plain http (loopback hosts always are).
    pub insecure_registries: Vec<String>,
    /// Extra PEM root certificates.
    pub ca_certs: Vec<PathBuf>,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Largest answer body read (a catalog or tag-list page).
    pub max_body_bytes: u64,
    /// Most tags [`RegistryClient::list_tags`] returns before failing with `TooMany`.
    pub max_tags: usize,
    /// `n` of paginated lists.
    pub page_size: u32,
    /// Requests per second per registry (token bucket), and its burst.
    pub rate_per_sec: f64,
    pub burst: u32,
    /// Per-registry overrides of the rate: `(host, requests per second)`.
    pub registry_rates: Vec<(String, f64)>,
    /// Attempts of a request answered 429 or 5xx (or failing in transport) before the
    /// error is returned.
    pub max_attempts: u32,
    /// Longest `Retry-After` honoured (longer ones are capped to it).
    pub max_retry_after: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            ca_certs: Vec::new(),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 16 << 20,
            max_tags: 100_000,
            page_size: 100,
            rate_per_sec: 10.0,
            burst: 10,
            registry_rates: Vec::new(),
            max_attempts: 5,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// What a conditional manifest `HEAD` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadResult {
    /// The tag still points at the digest the caller knew.
    Unchanged,
    /// The tag points at this digest (new, or the caller knew none).
    Digest(String),
    /// No such tag (404).
    NotFound,
}

/// One page of a catalog or tag list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// The `last` to ask for the next page with, when there is one.
    pub next: Option<String>,
}

/// Media types a manifest `HEAD` accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// First wait of a 5xx or transport error; doubled each attempt up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// First wait of a 429 without `Retry-After`.
const RATE_LIMIT_BASE: Duration = Duration::from_secs(1);
/// Lifetime of a token whose answer names none.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// A cached bearer token.
struct CachedToken {
    token: String,
    valid_until: Instant,
}

/// Everything the client keeps per registry.
struct RegistryState {
    limiter: RateLimiter,
    sent: AtomicU64,
    /// The registry answered a `Basic` challenge: send basic credentials up front.
    basic: AtomicBool,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// One token fetch at a time (concurrent 401s share its result).
    token_fetch: tokio::sync::Mutex<()>,
    /// Credentials looked up, by repository.
    creds: Mutex<HashMap<String, RegistryAuth>>,
}

/// A registry API client with credentials and per-registry rate limits.
pub struct RegistryClient {
    cfg: ClientConfig,
    credentials: Credentials,
    http: reqwest::Client,
    registries: Mutex<HashMap<String, Arc<RegistryState>>>,
}

/// What a request is about (for errors, tokens and credentials).
struct Call<'a> {
    registry: &'a str,
    what: String,
    /// The token scope (`repository:<repo>:pull`, `registry:catalog:*`).
    scope: String,
    /// The repository credentials are looked up for.
    repo: &'a str,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RegistryClient {
    pub fn new(cfg: ClientConfig, credentials: Credentials) -> Result<Self, RegistryError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let err = |message: String| RegistryError::Transport {
            registry: "*".into(),
            what: "building the HTTP client".into(),
            message,
        };
        let mut certs = Vec::new();
        for p in &cfg.ca_certs {
            let pem = std::fs::read(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
            let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| err(format!("{}: {e}", p.display())))?;
            if bundle.is_empty() {
                return Err(err(format!("{}: no PEM certificate", p.display())));
            }
            certs.extend(bundle);
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("vigil-registry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(30)))
            .timeout(cfg.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        if !certs.is_empty() {
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| err(e.to_string()))?;
        Ok(RegistryClient {
            cfg,
            credentials,
            http,
            registries: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn state(&self, registry: &str) -> Arc<RegistryState> {
        let key = normalize_registry(registry);
        let mut all = lock(&self.registries);
        all.entry(key.clone())
            .or_insert_with(|| {
                let rate = self
                    .cfg
                    .registry_rates
                    .iter()
                    .rev()
                    .find(|(h, _)| normalize_registry(h) == key)
                    .map_or(self.cfg.rate_per_sec, |(_, r)| *r);
                Arc::new(RegistryState {
                    limiter: RateLimiter::new(rate, self.cfg.burst),
                    sent: AtomicU64::new(0),
                    basic: AtomicBool::new(false),
                    tokens: Mutex::new(HashMap::new()),
                    token_fetch: tokio::sync::Mutex::new(()),
                    creds: Mutex::new(HashMap::new()),
                })
            })
            .clone()
    }

    /// Change `registry`'s rate (requests per second) from now on; zero or less means
    /// unlimited.
    pub fn set_rate(&self, registry: &str, per_sec: f64) {
        self.state(registry).limiter.set_rate(per_sec);
    }

    /// The current rate of `registry`.
    pub fn rate(&self, registry: &str) -> f64 {
        self.state(registry).limiter.rate()
    }

    /// Requests sent so far to `registry` (every attempt, token fetches included).
    pub fn requests_sent(&self, registry: &str) -> u64 {
        let key = normalize_registry(registry);
        lock(&self.registries)
            .get(&key)
            .map_or(0, |s| s.sent.load(Ordering::Relaxed))
    }

    /// `http` or `https` for a registry host.
    pub fn scheme(&self, registry: &str) -> &'static str {
        let n = normalize_registry(registry);
        let insecure = is_loopback_host(&n)
            || self.cfg.insecure_registries.iter().any(|i| {
                let i = normalize_registry(i);
                i == n || host_only(&i) == host_only(&n) && !i.contains(':')
            });
        if insecure {
            "http"
        } else {
            "https"
        }
    }

    /// The base URL of a registry's API (`https://registry-1.docker.io` for Docker Hub).
    fn base(&self, registry: &str) -> String {
        let n = normalize_registry(registry);
        let host = if n == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            n
        };
        format!("{}://{host}", self.scheme(registry))
    }

    /// Resolve `reference` (a tag) of `repo` on `registry` with one `HEAD`
    /// (`If-None-Match` with the known digest, when given).
    pub async fn head_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
        known_digest: Option<&str>,
    ) -> Result<HeadResult, RegistryError> {
        let repo = &hub_repo(registry, repo);
        let call = Call {
            registry,
            what: format!("manifest {repo}:{reference}"),
            scope: format!("repository:{repo}:pull"),
            repo,
        };
        check_name(&call, repo)?;
        if reference.is_empty() || reference.contains(['/', '?', '#']) {
            return Err(malformed(&call, format!("invalid reference {reference:?}")));
        }
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base(registry));
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        if let Some(d) = known_digest {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{d}\"")) {
                headers.insert(IF_NONE_MATCH, v);
            }
        }
        let resp = self.send(&call, Method::HEAD, &url, headers).await?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => Ok(HeadResult::Unchanged),
            StatusCode::NOT_FOUND => Ok(HeadResult::NotFound),
            s if s.is_success() => {
                let digest = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| malformed(&call, "no Docker-Content-Digest header".into()))?;
                if !valid_digest(&digest) {
                    return Err(malformed(&call, format!("invalid digest {digest:?}")));
                }
                if known_digest == Some(digest.as_str()) {
                    Ok(HeadResult::Unchanged)
                } else {
                    Ok(HeadResult::Digest(digest))
                }
            }
            s => Err(status_error(&call, s)),
        }
    }

    /// One page of the catalog after `last`.
    pub async fn catalog_page(
        &self,
        registry: &str,
        last: Option<&str>,
    ) -> Result<Page, RegistryError> {
        let call = Call {
            registry,
            what: "catalog".into(),
            scope: "registry:catalog:*".into(),
            repo: "",
        };
        let url = self.page_url(&format!("{}/v2/_catalog", self.base(registry)), last);
        self.page(&call, &url, "repositories").await
    }

    /// One page of a repository's tags after `last`.
    pub async fn tags_page(
        &self,
        registry: &str,
        repo: &str,
        last: Option<&str>,
    ) -> Result<Page, RegistryError> {
        let repo = &hub_repo(registry, repo);
        let call = Call {
            registry,
            what: format!("tags of {repo}"),
            scope: format!("repository:{repo}:pull"),
            repo,
        };
        check_name(&call, repo)?;
        let url = self.page_url(
            &format!("{}/v2/{repo}/tags/list", self.base(registry)),
            last,
        );
        self.page(&call, &url, "tags").await
    }

    /// Every tag of a repository (all pages), at most `max_tags`.
    pub async fn list_tags(
        &self,
        registry: &str,
        repo: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let mut all: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.tags_page(registry, repo, last.as_deref()).await?;
            if all.len() + page.items.len() > self.cfg.max_tags {
                return Err(RegistryError::TooMany {
                    registry: registry.to_string(),
                    what: format!("tags of {repo}"),
                    limit: self.cfg.max_tags,
                });
            }
            let empty = page.items.is_empty();
            all.extend(page.items);
            match page.next {
                None => break,
                Some(n) if empty || last.as_deref() == Some(n.as_str()) => {
                    return Err(RegistryError::Malformed {
                        registry: registry.to_string(),
                        what: format!("tags of {repo}"),
                        message: format!("pagination does not advance (next last={n:?})"),
                    });
                }
                Some(n) => last = Some(n),
            }
        }
        Ok(all)
    }

    fn page_url(&self, base: &str, last: Option<&str>) -> String {
        let mut u = reqwest::Url::parse(base).expect("a valid registry URL");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("n", &self.cfg.page_size.max(1).to_string());
            if let Some(l) = last {
                q.append_pair("last", l);
            }
        }
        u.to_string()
    }

    async fn page(
        &self,
        call: &Call<'_>,
        url: &str,
        key: &'static str,
    ) -> Result<Page, RegistryError> {
        let resp = self.send(call, Method::GET, url, HeaderMap::new()).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: call.registry.to_string(),
                what: call.what.clone(),
            });
        }
        if !status.is_success() {
            return Err(status_error(call, status));
        }
        let next = resp
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(link::next_last);
        let body = self.read_body(call, resp).await?;
        let items = parse_list(&body, key, self.cfg.max_tags).map_err(|e| match e {
            ListError::TooMany => RegistryError::TooMany {
                registry: call.registry.to_string(),
                what: call.what.clone(),
                limit: self.cfg.max_tags,
            },
            ListError::Malformed(m) => malformed(call, m),
        })?;
        Ok(Page { items, next })
    }

    /// The body, at most `max_body_bytes` of it (read chunk by chunk; a longer one is
    /// `TooLarge` without being read further).
    async fn read_body(
        &self,
        call: &Call<'_>,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, RegistryError> {
        read_bounded(call, &mut resp, self.cfg.max_body_bytes).await
    }

    /// The credentials of a call (looked up once per registry and repository).
    async fn auth_of(
        &self,
        st: &RegistryState,
        call: &Call<'_>,
    ) -> Result<RegistryAuth, RegistryError> {
        if let Some(a) = lock(&st.creds).get(call.repo) {
            return Ok(a.clone());
        }
        let creds = self.credentials.clone();
        let (registry, repo) = (call.registry.to_string(), call.repo.to_string());
        let timeout = self.cfg.request_timeout;
        let job = tokio::task::spawn_blocking(move || creds.lookup(&registry, &repo));
        let auth = match tokio::time::timeout(timeout, job).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => {
                return Err(RegistryError::Credentials {
                    registry: call.registry.to_string(),
                    message: format!("credential lookup failed: {e}"),
                })
            }
            Err(_) => {
                return Err(RegistryError::Credentials {
                    registry: call.registry.to_string(),
                    message: format!("credential lookup took longer than {timeout:?}"),
                })
            }
        };
        lock(&st.creds).insert(call.repo.to_string(), auth.clone());
        Ok(auth)
    }

    /// The `Authorization` sent up front, and the bearer token it holds (if one).
    fn authorization(
        &self,
        st: &RegistryState,
        auth: &RegistryAuth,
        scope: &str,
    ) -> Option<(String, Option<String>)> {
        match auth {
            RegistryAuth::Bearer { token } => Some((auth::bearer_header(token), None)),
            _ => {
                let mut tokens = lock(&st.tokens);
                if let Some(t) = tokens.get(scope) {
                    if t.valid_until > Instant::now() {
                        return Some((auth::bearer_header(&t.token), Some(t.token.clone())));
                    }
                    tokens.remove(scope);
                }
                drop(tokens);
                match auth {
                    RegistryAuth::Basic { username, password }
                        if st.basic.load(Ordering::Relaxed) && username != IDENTITY_TOKEN_USER =>
                    {
                        Some((auth::basic_header(username, password), None))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Send a registry request with credentials: a 401 is answered once (token or basic
    /// credentials), then a 401 or 403 is `Unauthorized`. Any other status is returned.
    async fn send(
        &self,
        call: &Call<'_>,
        method: Method,
        url: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
        let st = self.state(call.registry);
        let auth = self.auth_of(&st, call).await?;
        let mut answered = false;
        loop {
            let authz = self.authorization(&st, &auth, &call.scope);
            let used_token = authz.as_ref().and_then(|(_, t)| t.clone());
            let mut h = headers.clone();
            if let Some((v, _)) = &authz {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(AUTHORIZATION, v);
                }
            }
            let resp = self
                .send_retrying(&st, call, || {
                    self.http.request(method.clone(), url).headers(h.clone())
                })
                .await?;
            let status = resp.status();
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(auth::challenge_of)
                .find(|c| *c != AuthChallenge::Unsupported)
                .unwrap_or(AuthChallenge::Unsupported);
            let message = error_message(call, resp).await;
            let unauthorized = |message: String| RegistryError::Unauthorized {
                registry: call.registry.to_string(),
                what: call.what.clone(),
                status: status.as_u16(),
                message,
            };
            if status == StatusCode::FORBIDDEN || answered {
                return Err(unauthorized(message));
            }
            answered = true;
            match (challenge, &auth) {
                (_, RegistryAuth::Bearer { .. }) => return Err(unauthorized(message)),
                (AuthChallenge::Bearer(ch), _) => {
                    self.fetch_token(&st, call, &auth, &ch, used_token.as_deref())
                        .await?;
                }
                (AuthChallenge::Basic, RegistryAuth::Basic { username, .. })
                    if username != IDENTITY_TOKEN_USER =>
                {
                    st.basic.store(true, Ordering::Relaxed);
                }
                (AuthChallenge::Basic, _) => {
                    return Err(unauthorized(format!(
                        "basic credentials required: {message}"
                    )))
                }
                (AuthChallenge::Unsupported, _) => return Err(unauthorized(message)),
            }
        }
    }

    /// Get a token for `call.scope` (unless another task got a different one than
    /// `stale` meanwhile) and cache it.
    async fn fetch_token(
        &self,
        st: &RegistryState,
        call: &Call<'_>,
        auth: &RegistryAuth,
        ch: &BearerChallenge,
        stale: Option<&str>,
    ) -> Result<(), RegistryError> {
        let _one = st.token_fetch.lock().await;
        if let Some(t) = lock(&st.tokens).get(&call.scope) {
            if t.valid_until > Instant::now() && Some(t.token.as_str()) != stale {
                return Ok(());
            }
        }
        let err = |message: String| RegistryError::Unauthorized {
            registry: call.registry.to_string(),
            what: format!("token for {}", call.what),
            status: 0,
            message,
        };
        let scope = ch
            .scope
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| call.scope.clone());
        let mut url = reqwest::Url::parse(&ch.realm)
            .map_err(|e| err(format!("invalid token realm {:?}: {e}", ch.realm)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(format!("invalid token realm {:?}", ch.realm)));
        }
        let token_call = Call {
            registry: call.registry,
            what: format!("token for {}", call.what),
            scope: call.scope.clone(),
            repo: call.repo,
        };
        let resp = match auth {
            RegistryAuth::Basic { username, password } if username == IDENTITY_TOKEN_USER => {
                // OAuth2 refresh-token grant.
                let mut form = reqwest::Url::parse("http://form/").expect("static URL");
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", password);
                    q.append_pair("client_id", "vigil");
                    q.append_pair("scope", &scope);
                    if let Some(s) = &ch.service {
                        q.append_pair("service", s);
                    }
                }
                let body = form.query().unwrap_or("").to_string();
                self.send_retrying(st, &token_call, || {
                    self.http
                        .post(url.clone())
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(body.clone())
                })
                .await?
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &ch.service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &scope);
                }
                self.send_retrying(st, &token_call, || {
                    let r = self.http.get(url.clone());
                    match auth {
                        RegistryAuth::Basic { username, password } => {
                            r.header(AUTHORIZATION, auth::basic_header(username, password))
                        }
                        _ => r,
                    }
                })
                .await?
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let m = error_message(&token_call, resp).await;
            return Err(RegistryError::Unauthorized {
                registry: call.registry.to_string(),
                what: token_call.what,
                status: status.as_u16(),
                message: m,
            });
        }
        let body = read_bounded(&token_call, &mut { resp }, 1 << 20).await?;
        let answer = auth::parse_token_answer(&body).map_err(|m| malformed(&token_call, m))?;
        let life = answer.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME).max(1);
        // Renew before it runs out: 10 s early, or at half its life when that is shorter.
        let slack = (life / 2).min(10);
        let valid_until = Instant::now() + Duration::from_secs(life - slack);
        lock(&st.tokens).insert(
            call.scope.clone(),
            CachedToken {
                token: answer.token,
                valid_until,
            },
        );
        Ok(())
    }

    /// Send one request, retrying 429s, 5xx answers and transport errors; each attempt
    /// takes a rate-limit token first and is counted.
    async fn send_retrying(
        &self,
        st: &RegistryState,
        call: &Call<'_>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let max = self.cfg.max_attempts.max(1);
        let mut rate_limited = 0u32;
        for attempt in 1..=max {
            st.limiter.acquire().await;
            st.sent.fetch_add(1, Ordering::Relaxed);
            let req = build();
            let span = tracing::debug_span!(
                "registry_request",
                registry = call.registry,
                what = %call.what,
                attempt
            );
            let result = async {
                let r = req.send().await;
                match &r {
                    Ok(resp) => tracing::debug!(status = resp.status().as_u16(), url = %resp.url(), "answer"),
                    Err(e) => tracing::debug!(error = %e, "transport error"),
                }
                r
            }
            .instrument(span)
            .await;
            let last = attempt == max;
            match result {
                Err(e) => {
                    if last {
                        return Err(RegistryError::Transport {
                            registry: call.registry.to_string(),
                            what: call.what.clone(),
                            message: error_chain(&e),
                        });
                    }
                    tokio::time::sleep(ratelimit::backoff(
                        attempt,
                        BACKOFF_BASE,
                        BACKOFF_CAP,
                        ratelimit::jitter(),
                    ))
                    .await;
                }
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    rate_limited += 1;
                    if last {
                        return Err(RegistryError::RateLimited {
                            registry: call.registry.to_string(),
                            what: call.what.clone(),
                            attempts: rate_limited,
                        });
                    }
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| ratelimit::parse_retry_after(v, SystemTime::now()))
                        .unwrap_or_else(|| {
                            ratelimit::backoff(
                                rate_limited,
                                RATE_LIMIT_BASE,
                                self.cfg.max_retry_after,
                                1.0,
                            )
                        })
                        .min(self.cfg.max_retry_after);
                    drop(resp);
                    tracing::debug!(registry = call.registry, ?wait, "rate limited (429)");
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) if resp.status().is_server_error() => {
                    let status = resp.status().as_u16();
                    if last {
                        return Err(RegistryError::Server {
                            registry: call.registry.to_string(),
                            what: call.what.clone(),
                            status,
                            attempts: max,
                        });
                    }
                    drop(resp);
                    tokio::time::sleep(ratelimit::backoff(
                        attempt,
                        BACKOFF_BASE,
                        BACKOFF_CAP,
                        ratelimit::jitter(),
                    ))
                    .await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Docker Hub's official images live under `library/`.
fn hub_repo(registry: &str, repo: &str) -> String {
    if normalize_registry(registry) == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_string()
    }
}

fn check_name(call: &Call<'_>, repo: &str) -> Result<(), RegistryError> {
    let ok = !repo.is_empty()
        && repo
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(malformed(call, format!("invalid repository name {repo:?}")))
    }
}

fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && !hex.is_empty()
                && hex
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c))
        }
        None => false,
    }
}

fn host_only(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    if h.matches(':').count() > 1 {
        return h;
    }
    h.split(':').next().unwrap_or("")
}

/// 127.0.0.0/8, `localhost`, `::1`, with or without a port.
pub fn is_loopback_host(registry: &str) -> bool {
    let h = host_only(registry);
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn malformed(call: &Call<'_>, message: String) -> RegistryError {
    RegistryError::Malformed {
        registry: call.registry.to_string(),
        what: call.what.clone(),
        message,
    }
}

fn status_error(call: &Call<'_>, status: StatusCode) -> RegistryError {
    RegistryError::Status {
        registry: call.registry.to_string(),
        what: call.what.clone(),
        status: status.as_u16(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A short text of an error answer's body (at most 4 KiB read).
async fn error_message(call: &Call<'_>, mut resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = match read_bounded(call, &mut resp, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b)
            .trim()
            .chars()
            .take(300)
            .collect(),
        Err(_) => String::from("(body too long)"),
    };
    if body.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {body}")
    }
}

async fn read_bounded(
    call: &Call<'_>,
    resp: &mut reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: call.registry.to_string(),
        what: call.what.clone(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf =
        Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit).min(1 << 20) as usize);
    loop {
        let chunk = resp.chunk().await.map_err(|e| RegistryError::Transport {
            registry: call.registry.to_string(),
            what: call.what.clone(),
            message: format!("reading the answer: {}", error_chain(&e)),
        })?;
        let Some(chunk) = chunk else {
            return Ok(buf);
        };
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ListError {
    TooMany,
    Malformed(String),
}

/// The string list under `key` of a JSON object (`null` or absent: empty), at most
/// `limit` strings (more: `TooMany`, without collecting them).
fn parse_list(body: &[u8], key: &'static str, limit: usize) -> Result<Vec<String>, ListError> {
    let over = std::cell::Cell::new(false);
    let seed = ObjectSeed {
        key,
        limit,
        over: &over,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let r = seed.deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    match r {
        Ok(v) => Ok(v),
        Err(_) if over.get() => Err(ListError::TooMany),
        Err(e) => Err(ListError::Malformed(e.to_string())),
    }
}

struct ObjectSeed<'a> {
    key: &'static str,
    limit: usize,
    over: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an object with a `{}` list", self.key)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut found: Option<Vec<String>> = None;
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if k == self.key {
                if found.is_some() {
                    return Err(serde::de::Error::duplicate_field(self.key));
                }
                found = Some(map.next_value_seed(ListSeed {
                    limit: self.limit,
                    over: self.over,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.unwrap_or_default())
    }
}

struct ListSeed<'a> {
    limit: usize,
    over: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of strings or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(s) = seq.next_element::<String>()? {
            if out.len() >= self.limit {
                self.over.set(true);
                return Err(serde::de::Error::custom("too many entries"));
            }
            if s.is_empty() {
                return Err(serde::de::Error::custom("empty name in list"));
            }
            out.push(s);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        let p = |b: &str| parse_list(b.as_bytes(), "tags", 3);
        assert_eq!(
            p(r#"{"name":"a","tags":["x","y"]}"#),
            Ok(vec!["x".into(), "y".into()])
        );
        assert_eq!(p(r#"{"name":"a","tags":null}"#), Ok(vec![]));
        assert_eq!(p(r#"{"name":"a"}"#), Ok(vec![]));
        assert_eq!(p(r#"{"tags":["a","b","c","d"]}"#), Err(ListError::TooMany));
        assert!(matches!(p(r#"{"tags":5}"#), Err(ListError::Malformed(_))));
        assert!(matches!(p(r#"{"tags":[1]}"#), Err(ListError::Malformed(_))));
        assert!(matches!(
            p(r#"{"tags":[""]}"#),
            Err(ListError::Malformed(_))
        ));
        assert!(matches!(p("not json"), Err(ListError::Malformed(_))));
        assert!(matches!(p("[]"), Err(ListError::Malformed(_))));
        assert!(matches!(
            p(r#"{"tags":[]} x"#),
            Err(ListError::Malformed(_))
        ));
        assert!(matches!(
            p(r#"{"tags":["a"],"tags":["b"]}"#),
            Err(ListError::Malformed(_))
        ));
        assert_eq!(
            parse_list(br#"{"repositories":["a/b"]}"#, "repositories", 10),
            Ok(vec!["a/b".into()])
        );
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:80",
            "LOCALHOST",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1:5000", "example.com", "[::2]:1", "128.0.0.1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn schemes_and_names() {
        let c = RegistryClient::new(
            ClientConfig {
                insecure_registries: vec!["reg.lan:5000".into(), "other.lan".into()],
                ..Default::default()
            },
            Credentials::default(),
        )
        .unwrap();
        assert_eq!(c.scheme("127.0.0.1:5000"), "http");
        assert_eq!(c.scheme("reg.lan:5000"), "http");
        assert_eq!(c.scheme("reg.lan:6000"), "https");
        assert_eq!(c.scheme("other.lan:6000"), "http");
        assert_eq!(c.scheme("ghcr.io"), "https");
        assert_eq!(c.base("docker.io"), "https://registry-1.docker.io");
        assert_eq!(hub_repo("docker.io", "alpine"), "library/alpine");
        assert_eq!(hub_repo("ghcr.io", "alpine"), "alpine");
        assert!(valid_digest("sha256:abc"));
        assert!(!valid_digest("abc"));
        c.set_rate("R.example", 3.0);
        assert_eq!(c.rate("r.example"), 3.0);
        assert_eq!(c.requests_sent("r.example"), 0);
    }
}
