//! Shared helpers of the registry tests: clients and time bounds.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use vigil_registry::{ClientConfig, CredentialEntry, Credentials, RegistryClient};

/// A client with `cfg` and no credentials.
pub fn client(cfg: ClientConfig) -> RegistryClient {
    RegistryClient::new(cfg, Credentials::default()).expect("build the client")
}

/// A client with basic credentials for `registry`.
pub fn client_with_basic(
    cfg: ClientConfig,
    registry: &str,
    user: &str,
    pass: &str,
) -> RegistryClient {
    let creds = Credentials {
        entries: vec![CredentialEntry {
            registry: registry.into(),
            username: Some(user.into()),
            password: Some(pass.into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    RegistryClient::new(cfg, creds).expect("build the client")
}

/// A fast configuration for tests: no rate limit to speak of, short timeouts.
pub fn fast() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(20),
        rate_per_sec: 0.0,
        burst: 100,
        ..Default::default()
    }
}

/// Run `f`, failing the test when it takes longer than `secs`.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test step took longer than {secs} s"))
}
