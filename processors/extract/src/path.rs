//! Path handling for image content: normalisation of tar paths and the declarative list
//! of files whose bytes analysis needs. Nothing here ever touches the host file system.

/// Files whose bytes are kept in the layer index for analysis, as exact paths or
/// globs (`*` matches within one path segment, a whole `**` segment matches any number
/// of segments, none included). The one place to extend when a cataloger needs another
/// file.
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
    "/var/lib/dpkg/info/*.list",
    "/var/lib/dpkg/info/*.md5sums",
    "/usr/share/doc/*/copyright",
    "/lib/apk/db/installed",
    "/var/lib/rpm/Packages",
    "/var/lib/rpm/Packages.db",
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/Packages",
    "/usr/lib/sysimage/rpm/Packages.db",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "/etc/passwd",
    "/etc/group",
    // Python: installed metadata and declared sources.
    "/**/*.dist-info/METADATA",
    "/**/*.dist-info/RECORD",
    "/**/*.dist-info/top_level.txt",
    "/**/*.egg-info",
    "/**/*.egg-info/PKG-INFO",
    "/**/*.egg-info/installed-files.txt",
    "/**/*.egg-info/top_level.txt",
    "/**/EGG-INFO/PKG-INFO",
    "/**/poetry.lock",
    "/**/Pipfile.lock",
    "/**/requirements*.txt",
    "/**/uv.lock",
    // JavaScript.
    "/**/package.json",
    "/**/package-lock.json",
    "/**/yarn.lock",
    "/**/pnpm-lock.yaml",
    // Ruby, .NET, PHP, Go, Rust.
    "/**/specifications/*.gemspec",
    "/**/Gemfile.lock",
    "/**/*.deps.json",
    "/**/vendor/composer/installed.json",
    "/**/composer.lock",
    "/**/go.mod",
    "/**/go.sum",
    "/**/Cargo.lock",
];

/// Whether the bytes of `path` (normalised) are kept for analysis.
pub fn wanted(path: &str) -> bool {
    // Runs for every tar entry: compare the file names first, without allocating.
    let name = path.rsplit('/').next().unwrap_or("");
    KEEP_RULES.iter().any(|r| {
        let last = r.rsplit('/').next().unwrap_or("");
        (last == "**" || segment_match(last.as_bytes(), name.as_bytes())) && glob_match(r, path)
    })
}

/// Match an absolute path against a glob: segments compare one to one, `*` within a
/// segment matches any run of characters other than `/`, and a segment that is exactly
/// `**` matches zero or more whole segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let ps: Vec<&str> = pattern.split('/').collect();
    let xs: Vec<&str> = path.split('/').collect();
    match_segments(&ps, &xs)
}

fn match_segments(ps: &[&str], xs: &[&str]) -> bool {
    match ps.split_first() {
        None => xs.is_empty(),
        Some((&"**", rest)) => {
            // Collapse repeated `**`, then try every split point.
            let rest = {
                let mut r = rest;
                while r.first() == Some(&"**") {
                    r = &r[1..];
                }
                r
            };
            if rest.is_empty() {
                return true;
            }
            (0..=xs.len()).any(|i| match_segments(rest, &xs[i..]))
        }
        Some((p, rest)) => match xs.split_first() {
            Some((x, xrest)) => {
                segment_match(p.as_bytes(), x.as_bytes()) && match_segments(rest, xrest)
            }
            None => false,
        },
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
        assert!(glob_match("/**/package.json", "/package.json"));
        assert!(glob_match(
            "/**/package.json",
            "/app/node_modules/a/node_modules/b/package.json"
        ));
        assert!(!glob_match("/**/package.json", "/app/package.json.bak"));
        assert!(glob_match("/a/**/b/**/c", "/a/b/c"));
        assert!(glob_match("/a/**/b/**/c", "/a/x/y/b/z/c"));
        assert!(!glob_match("/a/**/b/**/c", "/a/x/y/z/c"));
        assert!(glob_match(
            "/**/*.dist-info/METADATA",
            "/usr/lib/p/x-1.dist-info/METADATA"
        ));
        assert!(wanted(
            "/usr/local/lib/python3.11/site-packages/Django-3.2.dist-info/RECORD"
        ));
        assert!(wanted("/app/requirements-dev.txt"));
        assert!(!wanted("/usr/share/doc/a/b/copyright"));
        assert!(wanted("/etc/os-release"));
        assert!(!wanted("/etc/os-release.bak"));
        assert!(!wanted("/etc/shadow"));
    }
}
