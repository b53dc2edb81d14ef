//! Parsing of scan sources (pure).

use std::path::PathBuf;

use crate::error::FetchError;

/// A registry image reference, normalised (`alpine` → `docker.io/library/alpine:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`
    pub digest: Option<String>,
}

impl RegistryRef {
    /// `registry/repository`
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// As users write it: `name:tag@digest`, `name:tag` or `name@digest`.
    pub fn display(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// Where to read an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Registry(RegistryRef),
    /// An OCI image layout directory and an optional ref name (`org.opencontainers.image.ref.name`).
    OciDir {
        path: PathBuf,
        reference: Option<String>,
    },
    /// A `docker save` tarball.
    DockerArchive {
        path: PathBuf,
    },
    /// A root filesystem directory.
    Dir {
        path: PathBuf,
    },
}

impl Source {
    /// Human-readable name used in error messages.
    pub fn display(&self) -> String {
        match self {
            Source::Registry(r) => r.display(),
            Source::OciDir { path, reference } => match reference {
                Some(r) => format!("oci-dir:{}:{r}", path.display()),
                None => format!("oci-dir:{}", path.display()),
            },
            Source::DockerArchive { path } => format!("docker-archive:{}", path.display()),
            Source::Dir { path } => format!("dir:{}", path.display()),
        }
    }
}

fn invalid(source: &str, reason: impl Into<String>) -> FetchError {
    FetchError::InvalidSource {
        input: source.to_string(),
        reason: reason.into(),
    }
}

/// Parse a source as users write it.
pub fn parse_source(input: &str) -> Result<Source, FetchError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(invalid(input, "empty source"));
    }
    if let Some(rest) = s
        .strip_prefix("oci-dir:")
        .or_else(|| s.strip_prefix("oci:"))
    {
        if rest.is_empty() {
            return Err(invalid(input, "missing path"));
        }
        // `PATH[:REF]`: a trailing `:REF` without `/` names a ref.
        let (path, reference) = match rest.rsplit_once(':') {
            Some((p, r)) if !p.is_empty() && !r.is_empty() && !r.contains('/') => {
                (p, Some(r.to_string()))
            }
            _ => (rest, None),
        };
        return Ok(Source::OciDir {
            path: PathBuf::from(path),
            reference,
        });
    }
    if let Some(rest) = s.strip_prefix("docker-archive:") {
        if rest.is_empty() {
            return Err(invalid(input, "missing path"));
        }
        return Ok(Source::DockerArchive {
            path: PathBuf::from(rest),
        });
    }
    if let Some(rest) = s.strip_prefix("dir:") {
        if rest.is_empty() {
            return Err(invalid(input, "missing path"));
        }
        return Ok(Source::Dir {
            path: PathBuf::from(rest),
        });
    }
    let r = s
        .strip_prefix("registry:")
        .or_else(|| s.strip_prefix("docker://"))
        .unwrap_or(s);
    parse_registry_ref(r)
        .map(Source::Registry)
        .map_err(|reason| invalid(input, reason))
}

fn valid_digest(d: &str) -> bool {
    matches!(d.strip_prefix("sha256:"), Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn valid_repo_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Parse `[HOST/]REPO[:TAG][@sha256:…]`.
pub fn parse_registry_ref(s: &str) -> Result<RegistryRef, String> {
    if s.contains("://") {
        return Err("unknown scheme; use HOST/REPO:TAG, oci-dir:, docker-archive: or dir:".into());
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => {
            if !valid_digest(d) {
                return Err(format!(
                    "{d:?} is not a sha256 digest (sha256:<64 lowercase hex>)"
                ));
            }
            (n, Some(d.to_string()))
        }
        None => (s, None),
    };
    // The tag follows the last ':' after the last '/'.
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => {
            let t = &name[last_slash + i + 1..];
            if !valid_tag(t) {
                return Err(format!("invalid tag {t:?}"));
            }
            (&name[..last_slash + i], Some(t.to_string()))
        }
        None => (name, None),
    };
    if name.is_empty() {
        return Err("missing repository".into());
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => registry,
    };
    if !valid_host(&registry) {
        return Err(format!("invalid registry host {registry:?}"));
    }
    let repository = if registry == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if !repository.split('/').all(valid_repo_component) {
        return Err(format!(
            "invalid repository {repository:?} (lowercase letters, digits, '.', '_', '-' and '/')"
        ));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t,
    };
    Ok(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3cf492aa68a1f94245a3b8bd2b8c6a987271c8c41995109bec983b0011e312b9";

    fn reg(s: &str) -> RegistryRef {
        match parse_source(s).unwrap() {
            Source::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_short_names() {
        let r = reg("alpine");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.display(), "docker.io/library/alpine:latest");
        assert_eq!(
            reg("bitnami/redis:7").display(),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            reg("index.docker.io/library/debian:12").registry,
            "docker.io"
        );
    }

    #[test]
    fn host_repo_tag_and_digest() {
        let r = reg("127.0.0.1:5000/debian-base:latest");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "debian-base")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.digest, None);

        let r = reg(&format!("registry:ghcr.io/org/app@{D}"));
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "org/app");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));

        let r = reg(&format!("localhost:5000/a/b/c:v1.2@{D}"));
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.digest.as_deref(), Some(D));

        let r = reg("localhost/app");
        assert_eq!(r.registry, "localhost");
    }

    #[test]
    fn invalid_registry_refs() {
        for s in [
            "",
            "Upper/Case",
            "host.io/repo:bad tag",
            "host.io/repo@sha256:abc",
            "host.io/repo@md5:0123",
            "http://host/repo",
            "host.io/:tag",
            "oci-dir:",
        ] {
            let e = parse_source(s).unwrap_err();
            assert_eq!(
                e.kind(),
                vigil_contracts::FailureKind::InvalidRequest,
                "{s}"
            );
        }
    }

    #[test]
    fn local_sources() {
        assert_eq!(
            parse_source("oci-dir:/images/oci/multiarch").unwrap(),
            Source::OciDir {
                path: "/images/oci/multiarch".into(),
                reference: None
            }
        );
        assert_eq!(
            parse_source("oci-dir:/images/x:latest").unwrap(),
            Source::OciDir {
                path: "/images/x".into(),
                reference: Some("latest".into())
            }
        );
        assert_eq!(
            parse_source("docker-archive:/a/debian-base.tar").unwrap(),
            Source::DockerArchive {
                path: "/a/debian-base.tar".into()
            }
        );
        assert_eq!(
            parse_source("dir:./rootfs").unwrap(),
            Source::Dir {
                path: "./rootfs".into()
            }
        );
    }
}
