//! Distro detection from the squashed view: os-release first, then the older release files.

use std::collections::BTreeMap;

use vigil_contracts::Distro;

use crate::squash::SquashedFs;

fn unquote(v: &str) -> String {
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v);
    v.replace("\\\"", "\"")
        .replace("\\$", "$")
        .replace("\\\\", "\\")
}

/// Parse os-release (`KEY=value`, shell quoting, `#` comments). Pure.
pub fn parse_os_release(text: &str) -> Option<Distro> {
    let kv: BTreeMap<&str, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), unquote(v)))
        .collect();
    let id = kv.get("ID").filter(|s| !s.is_empty())?;
    Some(Distro {
        id: id.to_ascii_lowercase(),
        version_id: kv.get("VERSION_ID").cloned(),
        codename: kv.get("VERSION_CODENAME").cloned(),
        id_like: kv
            .get("ID_LIKE")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        pretty_name: kv.get("PRETTY_NAME").cloned(),
    })
}

/// `/etc/debian_version`: `12.7` → debian 12; `bookworm/sid` → debian, codename only.
fn debian_version(text: &str) -> Distro {
    let v = text.trim();
    let mut d = Distro {
        id: "debian".into(),
        ..Default::default()
    };
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        d.version_id = v.split('.').next().map(str::to_string);
    } else if let Some(code) = v.split('/').next().filter(|c| !c.is_empty()) {
        d.codename = Some(code.to_string());
    }
    d
}

/// `/etc/redhat-release`, `/etc/system-release`: `Rocky Linux release 9.3 (Blue Onyx)`.
fn redhat_release(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let (name, rest) = line.split_once(" release ")?;
    let version = rest.split_whitespace().next()?;
    let lname = name.to_ascii_lowercase();
    let id = if lname.contains("centos") {
        "centos"
    } else if lname.contains("red hat") {
        "rhel"
    } else if lname.contains("rocky") {
        "rocky"
    } else if lname.contains("alma") {
        "almalinux"
    } else if lname.contains("fedora") {
        "fedora"
    } else if lname.contains("amazon") {
        "amzn"
    } else if lname.contains("oracle") {
        "ol"
    } else {
        return None;
    };
    Some(Distro {
        id: id.into(),
        version_id: version.split('.').next().map(str::to_string),
        codename: rest
            .split_once('(')
            .and_then(|(_, c)| c.split_once(')'))
            .map(|(c, _)| c.to_string()),
        id_like: vec![],
        pretty_name: Some(line.to_string()),
    })
}

/// `/etc/lsb-release`: `DISTRIB_ID=Ubuntu`, `DISTRIB_RELEASE=22.04`, `DISTRIB_CODENAME=jammy`.
fn lsb_release(text: &str) -> Option<Distro> {
    let kv: BTreeMap<&str, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), unquote(v)))
        .collect();
    Some(Distro {
        id: kv
            .get("DISTRIB_ID")
            .filter(|s| !s.is_empty())?
            .to_ascii_lowercase(),
        version_id: kv.get("DISTRIB_RELEASE").cloned(),
        codename: kv.get("DISTRIB_CODENAME").cloned(),
        id_like: vec![],
        pretty_name: kv.get("DISTRIB_DESCRIPTION").cloned(),
    })
}

/// Detect the distro: `/etc/os-release`, `/usr/lib/os-release`, then `/etc/debian_version`,
/// `/etc/alpine-release`, `/etc/redhat-release`, `/etc/system-release`, `/etc/lsb-release`.
/// Symlinks are followed inside the image; a loop adds a warning. `None` for images
/// without an OS (FROM scratch).
pub fn detect_distro(fs: &SquashedFs, warnings: &mut Vec<String>) -> Option<Distro> {
    let mut read = |p: &str| {
        fs.read_file(p, warnings)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(d) = read(p).as_deref().and_then(parse_os_release) {
            return Some(d);
        }
    }
    if let Some(t) = read("/etc/debian_version") {
        return Some(debian_version(&t));
    }
    if let Some(t) = read("/etc/alpine-release") {
        let v = t.trim().to_string();
        return Some(Distro {
            id: "alpine".into(),
            pretty_name: Some(format!("Alpine Linux v{v}")),
            version_id: Some(v),
            ..Default::default()
        });
    }
    for p in ["/etc/redhat-release", "/etc/system-release"] {
        if let Some(d) = read(p).as_deref().and_then(redhat_release) {
            return Some(d);
        }
    }
    read("/etc/lsb-release").as_deref().and_then(lsb_release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_parsers() {
        let d = parse_os_release("# c\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\nID_LIKE='a b'\n").unwrap();
        assert_eq!(d.id, "debian");
        assert_eq!(d.version_id.as_deref(), Some("12"));
        assert_eq!(d.codename.as_deref(), Some("bookworm"));
        assert_eq!(d.id_like, ["a", "b"]);
        assert!(parse_os_release("NAME=x\n").is_none());
        assert_eq!(debian_version("12.7\n").version_id.as_deref(), Some("12"));
        assert_eq!(
            debian_version("trixie/sid\n").codename.as_deref(),
            Some("trixie")
        );
        let r = redhat_release("Rocky Linux release 9.3 (Blue Onyx)\n").unwrap();
        assert_eq!(
            (
                r.id.as_str(),
                r.version_id.as_deref(),
                r.codename.as_deref()
            ),
            ("rocky", Some("9"), Some("Blue Onyx"))
        );
        let u = lsb_release("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n")
            .unwrap();
        assert_eq!(
            (u.id.as_str(), u.version_id.as_deref()),
            ("ubuntu", Some("22.04"))
        );
    }
}
