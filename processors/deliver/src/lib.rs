//! Webhook delivery of notifications and events.
//!
//! Deliveries (`DeliveryTask`s) are queued durably per endpoint on
//! `<p>.deliver.<endpoint>` (the `<P>_DELIVER` work queue). The [`Deliverer`] runs one
//! durable pull consumer per configured webhook, so a dead endpoint never holds up
//! another one. Deliveries about the same tag (event resource) go out strictly in
//! stream order, different tags concurrently up to `concurrency`. A failed attempt is
//! retried in process with exponential backoff (and jitter) while the message is held
//! with progress acks, until the retry window (from `queued_at`) is over; then it becomes
//! a dead letter in the store and a `webhook_given_up` event. Every attempt is recorded
//! in the delivery log, which survives restarts: a redelivered message resumes counting,
//! and one already delivered is not sent again.
//!
//! Requests: `POST` with `Content-Type: application/json`, `X-Vigil-Notification-Id`
//! (stable per notification or event: receivers de-duplicate by it),
//! `X-Vigil-Delivery-Id`, `X-Vigil-Notification-Type`, `X-Vigil-Attempt`, and when a
//! secret is configured `X-Vigil-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//! basic auth or a bearer token. Body: see [`body::body_value`].

pub mod body;
pub mod config;
pub mod deliverer;
pub mod error;
pub mod hmac;
pub mod sender;

pub use body::{backoff, body_json, render_url};
pub use config::{DeliverConfig, WebhookConfig};
pub use deliverer::{replay, replay_all, sample_task, send_test, Deliverer};
pub use error::DeliverError;
pub use hmac::{sign, verify};
pub use sender::Sender;
