//! Platform strings and selection from an image index (pure).

use std::fmt;

/// `os/arch[/variant]`, with architecture aliases normalised (`x86_64` → `amd64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// Normalise an architecture name to the OCI (GOARCH) spelling.
pub fn normalize_arch(arch: &str) -> String {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "i386" | "i686" => "386".into(),
        "armhf" | "armv7l" => "arm".into(),
        other => other.to_string(),
    }
}

/// The architecture of the running host, OCI spelling.
pub fn host_arch() -> String {
    normalize_arch(std::env::consts::ARCH)
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_ascii_lowercase(),
            architecture: normalize_arch(architecture),
            variant: variant
                .filter(|v| !v.is_empty())
                .map(|v| v.to_ascii_lowercase()),
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        match parts.as_slice() {
            [os, arch] => Some(Platform::new(os, arch, None)),
            [os, arch, variant] => Some(Platform::new(os, arch, Some(variant))),
            _ => None,
        }
    }

    /// The variant, with the implied default (`arm64` is `v8`).
    fn effective_variant(&self) -> Option<&str> {
        match (&self.variant, self.architecture.as_str()) {
            (Some(v), _) => Some(v.as_str()),
            (None, "arm64") => Some("v8"),
            _ => None,
        }
    }

    /// Whether an image of platform `have` satisfies this wanted platform. A wanted
    /// platform without variant matches any variant.
    pub fn matches(&self, have: &Platform) -> bool {
        if self.os != have.os || self.architecture != have.architecture {
            return false;
        }
        match self.variant {
            None => true,
            Some(_) => match have.effective_variant() {
                None => true,
                Some(v) => Some(v) == self.effective_variant(),
            },
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Index of the best entry for `want` among `candidates` (`None` = entry without
/// platform, never chosen). An exact variant match wins over a looser one.
pub fn select_platform(want: &Platform, candidates: &[Option<Platform>]) -> Option<usize> {
    let matching: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, p)| p.as_ref().is_some_and(|p| want.matches(p)))
        .map(|(i, _)| i)
        .collect();
    matching
        .iter()
        .copied()
        .find(|&i| {
            candidates[i]
                .as_ref()
                .is_some_and(|p| p.variant == want.variant)
        })
        .or_else(|| matching.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").architecture, "amd64");
        assert_eq!(p("linux/arm64/v8").variant.as_deref(), Some("v8"));
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux//v8").is_none());
        assert!(Platform::parse("a/b/c/d").is_none());
    }

    #[test]
    fn variant_optional_match() {
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64/v8")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/arm").matches(&p("linux/arm/v6")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
    }

    #[test]
    fn selection() {
        let c = vec![
            None,
            Some(p("linux/arm/v6")),
            Some(p("linux/arm/v7")),
            Some(p("linux/amd64")),
            Some(p("linux/arm64/v8")),
        ];
        assert_eq!(select_platform(&p("linux/amd64"), &c), Some(3));
        assert_eq!(select_platform(&p("linux/arm64"), &c), Some(4));
        assert_eq!(select_platform(&p("linux/arm/v7"), &c), Some(2));
        assert_eq!(select_platform(&p("linux/arm"), &c), Some(1));
        assert_eq!(select_platform(&p("linux/s390x"), &c), None);
    }
}
