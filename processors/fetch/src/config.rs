//! Fetch stage configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Credentials for one registry host (`registry.example.com`, `127.0.0.1:5000`, `docker.io`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredential {
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// How the fetch stage reaches registries and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchConfig {
    /// `os/arch[/variant]` used when a request names no platform.
    pub default_platform: String,
    /// Registry hosts that may be reached over plain http. Loopback hosts
    /// (127.0.0.0/8, `::1`, `localhost`) always may.
    pub insecure_registries: Vec<String>,
    /// Extra PEM root certificates (files) to trust for registry TLS.
    pub ca_certs: Vec<PathBuf>,
    pub credentials: Vec<RegistryCredential>,
    /// Largest manifest, index or config accepted.
    pub max_manifest_bytes: u64,
    /// Largest layer blob accepted.
    pub max_blob_bytes: u64,
    /// Version of the extractor whose layer indexes count as "already indexed".
    /// The extract crate owns the constant; the binary passes it in.
    pub extractor_version: u32,
    /// Where `dir:` sources spool their synthesised layer tar (set it to the blob cache
    /// directory); the system temp dir when unset.
    pub temp_dir: Option<PathBuf>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            default_platform: "linux/amd64".into(),
            insecure_registries: Vec::new(),
            ca_certs: Vec::new(),
            credentials: Vec::new(),
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 8 * 1024 * 1024 * 1024,
            extractor_version: 1,
            temp_dir: None,
        }
    }
}

impl FetchConfig {
    /// Credentials configured for `registry` (docker.io and index.docker.io are one host).
    pub fn credential_for(&self, registry: &str) -> Option<&RegistryCredential> {
        let norm = |s: &str| -> String {
            let s = s
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            match s {
                "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
                other => other.to_ascii_lowercase(),
            }
        };
        let want = norm(registry);
        self.credentials.iter().find(|c| norm(&c.registry) == want)
    }

    /// Whether plain http may be used for `registry` (`host[:port]`).
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        is_loopback_host(registry)
            || self
                .insecure_registries
                .iter()
                .any(|r| r.eq_ignore_ascii_case(registry))
    }
}

/// `localhost`, 127.0.0.0/8 or `::1`, with or without a port.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.3.2.1"));
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("registry.example.com"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
    }

    #[test]
    fn credentials_and_insecure() {
        let c = FetchConfig {
            insecure_registries: vec!["reg.local:5000".into()],
            credentials: vec![RegistryCredential {
                registry: "https://index.docker.io/".into(),
                username: "u".into(),
                password: "p".into(),
            }],
            ..Default::default()
        };
        assert!(c.allows_plain_http("reg.local:5000"));
        assert!(!c.allows_plain_http("reg.local"));
        assert_eq!(c.credential_for("docker.io").unwrap().username, "u");
        assert!(c.credential_for("quay.io").is_none());
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<FetchConfig>(&j).unwrap(), c);
        let d: FetchConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d.max_manifest_bytes, 4 << 20);
        assert_eq!(d.default_platform, "linux/amd64");
    }
}
