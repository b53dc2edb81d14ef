//! Shared by the runner tests.

use vigil_contracts::{RequestContext, ScanRequest, Subject, Subjects};
use vigil_runtime::jetstream::publish;
use vigil_runtime::Outgoing;

/// Publish a scan request with id `id` (its `Nats-Msg-Id` is `req-<id>`).
pub async fn request(js: &async_nats::jetstream::Context, s: &Subjects, id: &str) {
    let out = Outgoing::record(
        Subject::ScanRequest,
        format!("req-{id}"),
        &ScanRequest {
            request: RequestContext::new(id, "127.0.0.1:1/x:y"),
            force: false,
            sbom: None,
        },
    )
    .unwrap();
    publish(js, s, &out).await.unwrap();
}
