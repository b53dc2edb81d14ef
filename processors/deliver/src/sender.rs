//! One attempt: an HTTP client per endpoint and one POST.

use std::time::{Duration, Instant};

use vigil_contracts::watch::{DeliveryAttempt, DeliveryTask};

use crate::body::{body_json, render_url};
use crate::config::WebhookConfig;
use crate::error::DeliverError;
use crate::hmac::sign;

/// Header names.
pub mod header {
    pub const NOTIFICATION_ID: &str = "X-Vigil-Notification-Id";
    pub const DELIVERY_ID: &str = "X-Vigil-Delivery-Id";
    pub const NOTIFICATION_TYPE: &str = "X-Vigil-Notification-Type";
    pub const ATTEMPT: &str = "X-Vigil-Attempt";
    pub const SIGNATURE: &str = "X-Vigil-Signature-256";
}

/// Posts deliveries to one configured webhook.
#[derive(Clone)]
pub struct Sender {
    endpoint: String,
    cfg: WebhookConfig,
    client: reqwest::Client,
    timeout: Duration,
}

/// The error text of a failure, with its causes (the TLS reason is several levels down).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A URL with any user info removed (for the delivery log).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Sender {
    /// Build the endpoint's client: TLS verification on unless
    /// `insecure_skip_tls_verify`, `ca_cert` trusted besides the system roots, the
    /// per-attempt timeout `timeout_secs` (else `default_timeout`).
    pub fn new(
        endpoint: &str,
        cfg: &WebhookConfig,
        default_timeout: Duration,
    ) -> Result<Sender, DeliverError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = cfg
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(default_timeout);
        let bad = |m: String| DeliverError::Config {
            endpoint: endpoint.to_string(),
            message: m,
        };
        if cfg.url.trim().is_empty() {
            return Err(bad("no url".into()));
        }
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("vigil-deliver/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &cfg.ca_cert {
            let pem =
                std::fs::read(path).map_err(|e| bad(format!("ca_cert {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("ca_cert {}: {}", path.display(), error_chain(&e))))?;
            if certs.is_empty() {
                return Err(bad(format!(
                    "ca_cert {}: no certificate in it",
                    path.display()
                )));
            }
            b = b.tls_certs_merge(certs);
        }
        if cfg.insecure_skip_tls_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let client = b.build().map_err(|e| bad(error_chain(&e)))?;
        Ok(Sender {
            endpoint: endpoint.to_string(),
            cfg: cfg.clone(),
            client,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URL a task goes to (template expanded).
    pub fn url_for(&self, task: &DeliveryTask) -> String {
        render_url(&self.cfg.url, &task.account, task.body.type_name())
    }

    /// POST the task once. 2xx: delivered (`status` set, no `error`); anything else,
    /// a timeout or a connection/TLS error: a failed attempt with the status or the error.
    pub async fn attempt(&self, task: &DeliveryTask, attempt: u32) -> DeliveryAttempt {
        let body = body_json(task);
        let at = now_millis();
        let started = Instant::now();
        let mut req = self
            .client
            .post(self.url_for(task))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(header::NOTIFICATION_ID, task.body.id())
            .header(header::DELIVERY_ID, task.delivery_id())
            .header(header::NOTIFICATION_TYPE, task.body.type_name())
            .header(header::ATTEMPT, attempt.to_string());
        if let Some(secret) = &self.cfg.secret {
            req = req.header(header::SIGNATURE, sign(secret, &body));
        }
        if let Some(token) = &self.cfg.token {
            req = req.bearer_auth(token);
        } else if let Some(user) = &self.cfg.username {
            req = req.basic_auth(user, self.cfg.password.as_ref());
        }
        let res = req.body(body).send().await;
        let (status, error) = match res {
            Ok(resp) => {
                let code = resp.status();
                // Drain (bounded by the client timeout) so the connection can be reused.
                let text = resp.text().await.unwrap_or_default();
                if code.is_success() {
                    (Some(code.as_u16()), None)
                } else {
                    let mut snippet: String = text.chars().take(200).collect();
                    if !snippet.is_empty() {
                        snippet = format!(": {snippet}");
                    }
                    (Some(code.as_u16()), Some(format!("HTTP {code}{snippet}")))
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    format!("timed out after {:?}: ", self.timeout)
                } else if e.is_connect() {
                    "connection failed: ".to_string()
                } else {
                    String::new()
                };
                (None, Some(format!("{kind}{}", error_chain(&e))))
            }
        };
        DeliveryAttempt {
            at,
            status,
            error,
            took_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// Whether an attempt delivered.
pub fn delivered(a: &DeliveryAttempt) -> bool {
    a.error.is_none() && a.status.is_some_and(|s| (200..300).contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_logged() {
        assert_eq!(
            redact_url("https://u:p@h.example/x?y=1"),
            "https://h.example/x?y=1"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn missing_url_or_ca_is_a_config_error() {
        assert!(Sender::new("x", &WebhookConfig::default(), Duration::from_secs(1)).is_err());
        let cfg = WebhookConfig {
            url: "https://h/".into(),
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(Sender::new("x", &cfg, Duration::from_secs(1)).is_err());
    }
}
