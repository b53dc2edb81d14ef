//! Registry access through `oci-client`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures::TryStreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use vigil_contracts::FailureKind;

use crate::config::FetchConfig;
use crate::error::{error_chain, FetchError};
use crate::source::RegistryRef;

/// A slot a blob stream fills when oci-client's own digest check fails.
pub(crate) type MismatchSlot = Arc<StdMutex<Option<(String, String)>>>;

/// One `oci-client` per registry host, with that host's protocol and TLS roots.
pub(crate) struct Registries {
    config: FetchConfig,
    clients: tokio::sync::Mutex<HashMap<String, Arc<Client>>>,
}

/// Everything needed to read from one repository.
#[derive(Clone)]
pub(crate) struct RepoHandle {
    pub client: Arc<Client>,
    pub reference: Reference,
    pub auth: RegistryAuth,
    pub image: String,
}

impl Registries {
    pub fn new(config: FetchConfig) -> Self {
        Registries {
            config,
            clients: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn extra_roots(&self, image: &str) -> Result<Vec<Certificate>, FetchError> {
        let mut out = Vec::new();
        for path in &self.config.ca_certs {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                FetchError::new(
                    FailureKind::Internal,
                    image,
                    format!("cannot read CA certificate {}: {e}", path.display()),
                )
            })?;
            // One Certificate per PEM block: reqwest reads only the first of a bundle.
            const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
            const END: &str = "-----END CERTIFICATE-----";
            let mut rest = pem.as_str();
            while let Some(start) = rest.find(BEGIN) {
                let Some(end) = rest[start..].find(END) else {
                    break;
                };
                let block = &rest[start..start + end + END.len()];
                out.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: format!("{block}\n").into_bytes(),
                });
                rest = &rest[start + end + END.len()..];
            }
        }
        Ok(out)
    }

    /// Whether `registry` (allowed plain http) actually speaks plain http: ask `/v2/`
    /// without TLS; a TLS server answers with a 400 "HTTPS server" page, an alert or nothing.
    async fn speaks_plain_http(registry: &str) -> bool {
        let probe = async {
            let mut s = tokio::net::TcpStream::connect(registry).await.ok()?;
            let req = format!("GET /v2/ HTTP/1.1\r\nHost: {registry}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut buf = vec![0u8; 1024];
            let mut n = 0;
            while n < buf.len() {
                match s.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(r) => n += r,
                }
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            Some(text.starts_with("HTTP/") && !text.contains("HTTPS server"))
        };
        match tokio::time::timeout(Duration::from_secs(10), probe).await {
            Ok(Some(plain)) => plain,
            // Unreachable: keep http so the error names the connection failure.
            Ok(None) => true,
            Err(_) => false,
        }
    }

    pub async fn client_for(&self, registry: &str, image: &str) -> Result<Arc<Client>, FetchError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        vigil_runtime::install_crypto_provider();
        let resolved = match registry {
            "docker.io" => "index.docker.io",
            other => other,
        };
        let plain =
            self.config.allows_plain_http(registry) && Self::speaks_plain_http(resolved).await;
        let protocol = if plain {
            ClientProtocol::HttpsExcept(vec![resolved.to_string()])
        } else {
            ClientProtocol::Https
        };
        let cfg = ClientConfig {
            protocol,
            extra_root_certificates: self.extra_roots(image)?,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            ..Default::default()
        };
        let client = Arc::new(Client::new(cfg));
        clients.insert(registry.to_string(), client.clone());
        Ok(client)
    }

    pub async fn handle(&self, r: &RegistryRef) -> Result<RepoHandle, FetchError> {
        let image = r.display();
        let client = self.client_for(&r.registry, &image).await?;
        let (reg, repo) = (r.registry.clone(), r.repository.clone());
        let reference = match (&r.tag, &r.digest) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(reg, repo, t.clone(), d.clone()),
            (None, Some(d)) => Reference::with_digest(reg, repo, d.clone()),
            (Some(t), None) => Reference::with_tag(reg, repo, t.clone()),
            (None, None) => Reference::with_tag(reg, repo, "latest".into()),
        };
        let auth = match self.config.credential_for(&r.registry) {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(RepoHandle {
            client,
            reference,
            auth,
            image,
        })
    }
}

impl RepoHandle {
    /// Raw manifest bytes: of the reference itself, or of `digest` in the same repository.
    pub async fn manifest(&self, digest: Option<&str>, limit: u64) -> Result<Vec<u8>, FetchError> {
        let reference = match digest {
            Some(d) => Reference::with_digest(
                self.reference.registry().to_string(),
                self.reference.repository().to_string(),
                d.to_string(),
            ),
            None => self.reference.clone(),
        };
        let what = format!("manifest {}", digest.unwrap_or(&reference.whole()));
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, crate::image::ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| map_oci(&self.image, &what, e))?;
        if bytes.len() as u64 > limit {
            return Err(FetchError::new(
                FailureKind::LimitExceeded,
                &self.image,
                format!(
                    "{what} is {} bytes, more than the limit of {limit}",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes.to_vec())
    }

    /// A blob as a byte stream; digest failures detected by oci-client land in the slot.
    pub async fn blob_reader(
        &self,
        digest: &str,
    ) -> Result<(Box<dyn AsyncRead + Send + Unpin>, MismatchSlot), FetchError> {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        let stream = self
            .client
            .pull_blob_stream(&self.reference, digest)
            .await
            .map_err(|e| map_oci(&self.image, &format!("blob {digest}"), e))?;
        let slot: MismatchSlot = Arc::new(StdMutex::new(None));
        let s2 = slot.clone();
        let stream = stream.stream.map_err(move |e: std::io::Error| {
            if let Some(DigestError::VerificationError { expected, actual }) =
                e.get_ref().and_then(|i| i.downcast_ref::<DigestError>())
            {
                if let Ok(mut g) = s2.lock() {
                    *g = Some((expected.clone(), actual.clone()));
                }
            }
            e
        });
        Ok((Box::new(tokio_util::io::StreamReader::new(stream)), slot))
    }
}

/// Classify an oci-client error.
pub(crate) fn map_oci(image: &str, what: &str, e: OciDistributionError) -> FetchError {
    use OciDistributionError as E;
    let kind = match &e {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => FailureKind::Unauthorized,
        E::ImageManifestNotFoundError(_) => FailureKind::NotFound,
        E::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::ManifestBlobUnknown
                )
            }) {
                FailureKind::NotFound
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                FailureKind::Unauthorized
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                FailureKind::RateLimited
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::NameInvalid)) {
                FailureKind::InvalidRequest
            } else {
                FailureKind::Upstream
            }
        }
        E::ServerError { code, .. } => match code {
            401 | 403 => FailureKind::Unauthorized,
            404 => FailureKind::NotFound,
            429 => FailureKind::RateLimited,
            _ => FailureKind::Upstream,
        },
        E::DigestError(DigestError::VerificationError { expected, actual }) => {
            return FetchError::DigestMismatch {
                image: image.into(),
                what: what.into(),
                expected: expected.clone(),
                actual: actual.clone(),
            }
        }
        E::DigestError(_)
        | E::ManifestParsingError(_)
        | E::VersionedParsingError(_)
        | E::JsonError(_)
        | E::ManifestEncodingError(_) => FailureKind::MalformedImage,
        E::UnsupportedMediaTypeError(_)
        | E::UnsupportedSchemaVersionError(_)
        | E::IncompatibleLayerMediaTypeError(_) => FailureKind::Unsupported,
        E::RequestError(r) if r.is_timeout() => FailureKind::Timeout,
        E::UrlParseError(_) => FailureKind::InvalidRequest,
        _ => FailureKind::Upstream,
    };
    let detail = error_chain(&e);
    let hint = if kind == FailureKind::Upstream
        && (detail.contains("certificate")
            || detail.contains("UnknownIssuer")
            || detail.contains("tls"))
    {
        " (TLS: is the registry's CA among ca_certs?)"
    } else {
        ""
    };
    FetchError::new(kind, image, format!("{what}: {detail}{hint}"))
}
