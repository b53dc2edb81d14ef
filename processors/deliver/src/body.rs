//! What is sent, where, and when again: URL templates, the JSON body and retry delays.
//! No I/O.

use std::time::Duration;

use serde_json::{json, Value};
use vigil_contracts::watch::{DeliveryBody, DeliveryTask};

use crate::config::DeliverConfig;

/// Percent-encode everything but RFC 3986 unreserved characters.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Expand a webhook URL template: `<account>` (also Anchore's `<userId>`) and
/// `<notification_type>` are replaced by the URL-encoded values.
pub fn render_url(template: &str, account: &str, notification_type: &str) -> String {
    let account = encode_component(account);
    template
        .replace("<account>", &account)
        .replace("<userId>", &account)
        .replace("<notification_type>", &encode_component(notification_type))
}

/// The JSON body of a delivery, shaped like Anchore's webhook payload:
/// `{"data": {"notification_type", "notification_user", "notification_id",
/// "notification_payload"}}`.
pub fn body_value(task: &DeliveryTask) -> Value {
    let payload = match &task.body {
        DeliveryBody::Notification(n) => json!({
            "subscription_key": n.subscription_key,
            "subscription_type": n.kind.as_str(),
            "image_digest": n.image_digest,
            "request_id": n.request_id,
            "payload": n.payload,
            "created_at": n.created_at,
            // Anchore's base fields.
            "userId": task.account,
            "notificationId": n.id,
        }),
        DeliveryBody::Event(e) => serde_json::to_value(e).unwrap_or(Value::Null),
    };
    json!({
        "data": {
            "notification_type": task.body.type_name(),
            "notification_user": task.account,
            "notification_id": task.body.id(),
            "notification_payload": payload,
        }
    })
}

/// [`body_value`] serialised: the bytes that are POSTed and signed.
pub fn body_json(task: &DeliveryTask) -> Vec<u8> {
    serde_json::to_vec(&body_value(task)).unwrap_or_default()
}

/// The delay after the `attempt`-th failed attempt (1-based): `initial_backoff_ms`
/// doubled per attempt, capped at `max_backoff_secs`, with "equal jitter": half the delay
/// is fixed, the other half scaled by `jitter` (in `[0, 1]`, clamped).
pub fn backoff(attempt: u32, cfg: &DeliverConfig, jitter: f64) -> Duration {
    let initial = cfg.initial_backoff_ms.max(1);
    let cap = cfg.max_backoff_secs.saturating_mul(1000).max(initial);
    let shift = attempt.saturating_sub(1).min(40);
    let full = initial.saturating_mul(1u64 << shift).min(cap);
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = full / 2;
    Duration::from_millis(full - half + (half as f64 * j) as u64)
}

/// A jitter value in `[0, 1)` from the standard library's randomly seeded hasher.
pub fn random_jitter() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_contracts::watch::{Event, EventLevel};
    use vigil_contracts::{Notification, NotificationKind, NotificationPayload};

    #[test]
    fn urls_are_expanded_and_encoded() {
        assert_eq!(
            render_url(
                "https://h/x/<account>/<notification_type>?u=<userId>",
                "a b/c",
                "vuln_update"
            ),
            "https://h/x/a%20b%2Fc/vuln_update?u=a%20b%2Fc"
        );
        assert_eq!(render_url("http://h/plain", "x", "y"), "http://h/plain");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = DeliverConfig {
            initial_backoff_ms: 100,
            max_backoff_secs: 1,
            ..Default::default()
        };
        assert_eq!(backoff(1, &cfg, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(1, &cfg, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(2, &cfg, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(4, &cfg, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(5, &cfg, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(500, &cfg, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(500, &cfg, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(3, &cfg, f64::NAN), Duration::from_millis(200));
        for _ in 0..100 {
            let j = random_jitter();
            assert!((0.0..1.0).contains(&j));
            let d = backoff(3, &cfg, j);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }

    #[test]
    fn bodies_look_like_anchore() {
        let n = Notification {
            id: "n1".into(),
            kind: NotificationKind::TagUpdate,
            subscription_key: "r/a:1".into(),
            image_digest: Some("sha256:ab".into()),
            request_id: None,
            payload: NotificationPayload::TagUpdate {
                previous_digests: vec![],
                current_digest: "sha256:ab".into(),
            },
            created_at: 5,
        };
        let t = DeliveryTask {
            endpoint: "general".into(),
            account: "acme".into(),
            body: DeliveryBody::Notification(n),
            queued_at: 7,
        };
        let v: Value = serde_json::from_slice(&body_json(&t)).unwrap();
        assert_eq!(v["data"]["notification_type"], "tag_update");
        assert_eq!(v["data"]["notification_user"], "acme");
        assert_eq!(v["data"]["notification_id"], "n1");
        let p = &v["data"]["notification_payload"];
        assert_eq!(p["subscription_key"], "r/a:1");
        assert_eq!(p["image_digest"], "sha256:ab");
        assert_eq!(p["payload"]["current_digest"], "sha256:ab");
        assert_eq!(p["created_at"], 5);

        let e = Event {
            id: "e1".into(),
            account: "acme".into(),
            level: EventLevel::Error,
            kind: "analysis_failed".into(),
            resource: "r/a:1".into(),
            message: "boom".into(),
            details: Default::default(),
            at: 9,
        };
        let t = DeliveryTask {
            endpoint: "event".into(),
            account: "acme".into(),
            body: DeliveryBody::Event(e),
            queued_at: 7,
        };
        let v: Value = serde_json::from_slice(&body_json(&t)).unwrap();
        assert_eq!(v["data"]["notification_type"], "event");
        assert_eq!(v["data"]["notification_id"], "e1");
        assert_eq!(v["data"]["notification_payload"]["kind"], "analysis_failed");
        assert_eq!(v["data"]["notification_payload"]["level"], "error");
    }
}
