//! Manifests, indexes, configs and layer media types (pure).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vigil_contracts::{Compression, HistoryEntry, ImageConfig, LayerRef};

use crate::platform::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Manifest media types asked for from registries.
pub const ACCEPTED_MANIFESTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Compression of a layer, from its media type; `None` when it is not a layer type we read.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    let m = media_type.trim().to_ascii_lowercase();
    let m = m.split(';').next().unwrap_or("").trim();
    if !(m.starts_with("application/vnd.oci.image.layer.")
        || m.starts_with("application/vnd.docker.image.rootfs.")
        || m.starts_with("application/vnd.docker.image.layer."))
    {
        return None;
    }
    if m.ends_with("+gzip") || m.ends_with(".tar.gzip") || m.ends_with(".tar.gz") {
        Some(Compression::Gzip)
    } else if m.ends_with("+zstd") || m.ends_with(".tar.zstd") {
        Some(Compression::Zstd)
    } else if m.ends_with(".tar") {
        Some(Compression::None)
    } else {
        None
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<RawPlatform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RawPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl RawPlatform {
    pub fn to_platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

/// Why a manifest could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("unsupported manifest: {0}")]
    Unsupported(String),
}

/// Parse manifest or index JSON (OCI or Docker v2 schema 2).
pub fn parse_manifest(bytes: &[u8]) -> Result<Parsed, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Malformed(format!("not a JSON manifest: {e}")))?;
    match raw.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(ManifestError::Unsupported(
                "Docker schema 1 manifests are not supported".into(),
            ))
        }
        Some(v) => return Err(ManifestError::Unsupported(format!("schemaVersion {v}"))),
        None => return Err(ManifestError::Malformed("missing schemaVersion".into())),
    }
    let mt = raw.media_type.clone().unwrap_or_default();
    let is_index = match mt.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => raw.manifests.is_some(),
        other => return Err(ManifestError::Unsupported(format!("media type {other}"))),
    };
    let check = |d: &Descriptor| -> Result<(), ManifestError> {
        vigil_runtime::blobs::sha256_hex(&d.digest)
            .map(|_| ())
            .map_err(|_| ManifestError::Unsupported(format!("digest {:?}", d.digest)))
    };
    if is_index {
        let manifests = raw
            .manifests
            .ok_or_else(|| ManifestError::Malformed("index without manifests".into()))?;
        manifests.iter().try_for_each(check)?;
        Ok(Parsed::Index { manifests })
    } else {
        let config = raw
            .config
            .ok_or_else(|| ManifestError::Malformed("manifest without config".into()))?;
        let layers = raw
            .layers
            .ok_or_else(|| ManifestError::Malformed("manifest without layers".into()))?;
        check(&config)?;
        layers.iter().try_for_each(check)?;
        Ok(Parsed::Manifest { config, layers })
    }
}

/// Whether a descriptor in an index points at a nested index.
pub fn is_index_media_type(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<RawRunConfig>,
    #[serde(default)]
    history: Option<Vec<RawHistory>>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Value>,
    #[serde(default)]
    cmd: Option<Value>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    volumes: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    healthcheck: Option<RawHealthcheck>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealthcheck {
    #[serde(default)]
    test: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawHistory {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Option<Vec<String>>,
}

fn string_list(v: Option<Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|x| match x {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        Some(Value::String(s)) => vec![s],
        _ => Vec::new(),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Parse an image config JSON into the parts vigil uses.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
    let raw: RawConfig = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Malformed(format!("image config is not valid JSON: {e}")))?;
    let rc = raw.config.unwrap_or_default();
    Ok(ImageConfig {
        os: raw.os.unwrap_or_default(),
        architecture: raw.architecture.unwrap_or_default(),
        variant: non_empty(raw.variant),
        created: non_empty(raw.created),
        user: non_empty(rc.user),
        exposed_ports: rc.exposed_ports.unwrap_or_default().into_keys().collect(),
        env: rc.env.unwrap_or_default(),
        entrypoint: string_list(rc.entrypoint),
        cmd: string_list(rc.cmd),
        working_dir: non_empty(rc.working_dir),
        labels: rc
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        volumes: rc.volumes.unwrap_or_default().into_keys().collect(),
        stop_signal: non_empty(rc.stop_signal),
        healthcheck: rc.healthcheck.and_then(|h| h.test),
        history: raw
            .history
            .unwrap_or_default()
            .into_iter()
            .map(|h| HistoryEntry {
                created: h.created,
                created_by: h.created_by,
                comment: h.comment,
                empty_layer: h.empty_layer.unwrap_or(false),
            })
            .collect(),
        diff_ids: raw.rootfs.and_then(|r| r.diff_ids).unwrap_or_default(),
    })
}

/// `os/arch[/variant]` of a config (linux/amd64 parts filled in when missing).
pub fn config_platform(c: &ImageConfig) -> String {
    Platform::new(
        if c.os.is_empty() { "linux" } else { &c.os },
        if c.architecture.is_empty() {
            "amd64"
        } else {
            &c.architecture
        },
        c.variant.as_deref(),
    )
    .to_string()
}

/// Layer references from manifest layer descriptors and the config's diff_ids.
pub fn layer_refs(
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<Vec<LayerRef>, ManifestError> {
    if !diff_ids.is_empty() && diff_ids.len() != layers.len() {
        return Err(ManifestError::Malformed(format!(
            "manifest has {} layers but config has {} diff_ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    layers
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let compression = layer_compression(&d.media_type).ok_or_else(|| {
                ManifestError::Unsupported(format!(
                    "layer {} has media type {:?}",
                    d.digest, d.media_type
                ))
            })?;
            Ok(LayerRef {
                digest: d.digest.clone(),
                diff_id: diff_ids.get(i).cloned(),
                media_type: d.media_type.clone(),
                size: d.size,
                compression,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        use Compression::*;
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
            (
                "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                Option::None,
            ),
            ("application/json", Option::None),
        ];
        for (mt, want) in cases {
            assert_eq!(layer_compression(mt), want, "{mt}");
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn manifests_and_indexes() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D1}","size":10}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{D2}","size":20}}]}}"#
        );
        let Parsed::Manifest { config, layers } = parse_manifest(m.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(config.digest, D1);
        let refs = layer_refs(&layers, &[D1.to_string()]).unwrap();
        assert_eq!(refs[0].compression, Compression::Gzip);
        assert_eq!(refs[0].diff_id.as_deref(), Some(D1));
        assert!(layer_refs(&layers, &[D1.to_string(), D2.to_string()]).is_err());

        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Parsed::Index { manifests } = parse_manifest(i.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            manifests[0]
                .platform
                .as_ref()
                .unwrap()
                .to_platform()
                .to_string(),
            "linux/arm64/v8"
        );

        assert!(matches!(
            parse_manifest(b"<html>"),
            Err(ManifestError::Malformed(_))
        ));
        assert!(matches!(
            parse_manifest(br#"{"schemaVersion":1}"#),
            Err(ManifestError::Unsupported(_))
        ));
        assert!(matches!(
            parse_manifest(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
            ),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn config_parsing() {
        let c = br#"{"architecture":"arm64","variant":"v8","os":"linux","created":"2024-01-01T00:00:00Z",
          "config":{"User":"root","ExposedPorts":{"443/tcp":{},"22/tcp":{}},"Env":["PATH=/bin"],
            "Entrypoint":null,"Cmd":["/usr/sbin/sshd","-D"],"WorkingDir":"","Labels":{"a":"b"},
            "Volumes":{"/data":{}},"StopSignal":"SIGTERM","Healthcheck":{"Test":["CMD","true"]}},
          "history":[{"created_by":"EXPOSE 22","comment":"buildkit.dockerfile.v0","empty_layer":true},{"created_by":"ADD x"}],
          "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let c = parse_config(c).unwrap();
        assert_eq!(c.user.as_deref(), Some("root"));
        assert_eq!(c.exposed_ports, vec!["22/tcp", "443/tcp"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.cmd, vec!["/usr/sbin/sshd", "-D"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(c.volumes, vec!["/data"]);
        assert_eq!(
            c.healthcheck,
            Some(vec!["CMD".to_string(), "true".to_string()])
        );
        assert_eq!(c.history.len(), 2);
        assert!(c.history[0].empty_layer);
        assert_eq!(c.diff_ids, vec!["sha256:aa"]);
        assert_eq!(config_platform(&c), "linux/arm64/v8");
        assert!(parse_config(b"not json").is_err());
    }
}
