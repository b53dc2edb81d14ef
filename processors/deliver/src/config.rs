//! `[deliver]`: the webhooks and how hard to try.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct WebhookConfig {
    /// URL template: `<account>` and `<notification_type>` are replaced (URL-encoded).
    pub url: String,
    /// Basic auth.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Bearer token (instead of basic auth).
    pub token: Option<String>,
    /// HMAC-SHA256 key: the body is signed into `X-Vigil-Signature-256: sha256=<hex>`.
    pub secret: Option<String>,
    /// TLS verification is on unless this is set.
    pub insecure_skip_tls_verify: bool,
    /// An extra PEM CA to trust.
    pub ca_cert: Option<PathBuf>,
    /// Timeout of one attempt (default: `[deliver] attempt_timeout_secs`).
    pub timeout_secs: Option<u64>,
}

/// Webhooks by name: `general`, a notification type (`tag_update`, `analysis_update`,
/// `vuln_update`, `policy_eval`, `repo_update`) or `event` (the event log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliverConfig {
    pub webhooks: BTreeMap<String, WebhookConfig>,
    /// How long a delivery is retried before it becomes a dead letter.
    pub retry_window_secs: u64,
    /// First retry delay; doubled each attempt (with jitter) up to `max_backoff_secs`.
    pub initial_backoff_ms: u64,
    pub max_backoff_secs: u64,
    pub attempt_timeout_secs: u64,
    /// Sub-second attempt timeout; overrides `attempt_timeout_secs` when set (tests).
    pub attempt_timeout_ms: Option<u64>,
    /// Deliveries in flight per endpoint (different tags; one tag is always in order).
    pub concurrency: usize,
    /// Events at this level or worse go to the `event` webhook (`info`, `warn`, `error`).
    pub event_level: String,
    /// Ack wait of the delivery consumers: a delivery held by a process that died is
    /// handed out again after this long (held ones are kept with progress acks).
    pub ack_wait_secs: u64,
    /// Deliveries held (in flight or waiting behind their tag) per endpoint.
    pub max_ack_pending: i64,
}

impl Default for DeliverConfig {
    fn default() -> Self {
        DeliverConfig {
            webhooks: BTreeMap::new(),
            retry_window_secs: 24 * 3600,
            initial_backoff_ms: 1_000,
            max_backoff_secs: 600,
            attempt_timeout_secs: 10,
            attempt_timeout_ms: None,
            concurrency: 8,
            event_level: "info".into(),
            ack_wait_secs: 60,
            max_ack_pending: 1000,
        }
    }
}

impl DeliverConfig {
    /// The default timeout of one attempt (a webhook's `timeout_secs` overrides it).
    pub fn attempt_timeout(&self) -> std::time::Duration {
        match self.attempt_timeout_ms {
            Some(ms) => std::time::Duration::from_millis(ms.max(1)),
            None => std::time::Duration::from_secs(self.attempt_timeout_secs.max(1)),
        }
    }

    /// The endpoint that gets notifications of `notification_type`: its own webhook,
    /// else `general`, else none.
    pub fn endpoint_for(&self, notification_type: &str) -> Option<&str> {
        if let Some((name, _)) = self.webhooks.get_key_value(notification_type) {
            if name != "event" {
                return Some(name.as_str());
            }
        }
        self.webhooks
            .get_key_value("general")
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_routing() {
        let mut c = DeliverConfig::default();
        assert_eq!(c.endpoint_for("vuln_update"), None);
        c.webhooks
            .insert("general".into(), WebhookConfig::default());
        assert_eq!(c.endpoint_for("vuln_update"), Some("general"));
        c.webhooks
            .insert("vuln_update".into(), WebhookConfig::default());
        assert_eq!(c.endpoint_for("vuln_update"), Some("vuln_update"));
        assert_eq!(c.endpoint_for("policy_eval"), Some("general"));
        c.webhooks.insert("event".into(), WebhookConfig::default());
        assert_eq!(c.endpoint_for("event"), Some("general"));
    }
}
