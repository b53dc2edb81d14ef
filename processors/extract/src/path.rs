//! Path handling for image content: normalisation of tar paths and the declarative list
//! of files whose bytes analysis needs. Nothing here ever touches the host file system.

/// Files whose bytes are kept in the layer index for analysis, as exact paths or
/// simple globs (`*` matches within one path segment). The one place to extend when a
/// cataloger needs another file.
pub const KEEP_RULES: &[&str] = &[
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/debian_version",
    "/etc/alpine-release",
    "/etc/lsb-release",
    "/etc/redhat-release",
    "/etc/system-release",
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/status.d/*",
    "/lib/apk/db/installed",
    "/etc/passwd",
    "/etc/group",
];

/// Whether the bytes of `path` (normalised) are kept for analysis.
pub fn wanted(path: &str) -> bool {
    KEEP_RULES.iter().any(|r| glob_match(r, path))
}

/// Match an absolute path against a simple glob: segments compare one to one, and `*`
/// within a segment matches any run of characters other than `/`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let mut ps = pattern.split('/');
    let mut xs = path.split('/');
    loop {
        match (ps.next(), xs.next()) {
            (None, None) => return true,
            (Some(p), Some(x)) if segment_match(p.as_bytes(), x.as_bytes()) => {}
            _ => return false,
        }
    }
}

fn segment_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with backtracking to the last `*`.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Normalise a tar path to an absolute path without `.`, `..` or `//`. `..` never climbs
/// above `/`: the second value says the path tried to.
pub fn normalize(raw: &str) -> (String, bool) {
    let mut parts: Vec<&str> = Vec::new();
    let mut escaped = false;
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    escaped = true;
                }
            }
            s => parts.push(s),
        }
    }
    (format!("/{}", parts.join("/")), escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_never_escapes_root() {
        assert_eq!(normalize("./a//b/./c"), ("/a/b/c".into(), false));
        assert_eq!(normalize("../../etc/passwd"), ("/etc/passwd".into(), true));
        assert_eq!(
            normalize("a/../../etc/passwd"),
            ("/etc/passwd".into(), true)
        );
        assert_eq!(normalize("a/b/../c/"), ("/a/c".into(), false));
        assert_eq!(normalize("/"), ("/".into(), false));
        assert_eq!(normalize("./"), ("/".into(), false));
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "/var/lib/dpkg/status.d/*",
            "/var/lib/dpkg/status.d/tzdata"
        ));
        assert!(!glob_match(
            "/var/lib/dpkg/status.d/*",
            "/var/lib/dpkg/status.d/a/b"
        ));
        assert!(!glob_match(
            "/var/lib/dpkg/status.d/*",
            "/var/lib/dpkg/status"
        ));
        assert!(glob_match("/a/*.md5sums", "/a/x.md5sums"));
        assert!(glob_match("/a/x*y*z", "/a/xAyyBz"));
        assert!(!glob_match("/a/x*y*z", "/a/xAyyBzq"));
        assert!(wanted("/etc/os-release"));
        assert!(!wanted("/etc/os-release.bak"));
        assert!(!wanted("/etc/shadow"));
    }
}
