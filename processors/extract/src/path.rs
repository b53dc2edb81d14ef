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

/// [`KEEP_RULES`] by their last segment, so that a path is compared only with the rules
/// that can name its file.
struct KeepIndex {
    /// Rules whose last segment is a plain name, by that name.
    by_name: std::collections::HashMap<&'static str, Vec<&'static str>>,
    /// Rules whose last segment has a `*` (or is `**`): (text before the rule's first
    /// `*`, last segment, rule). A path must start with the first to match.
    patterned: Vec<(&'static str, &'static str, &'static str)>,
}

fn keep_index() -> &'static KeepIndex {
    static INDEX: std::sync::OnceLock<KeepIndex> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_name = std::collections::HashMap::<_, Vec<_>>::new();
        let mut patterned = Vec::new();
        for r in KEEP_RULES {
            let last = r.rsplit('/').next().unwrap_or("");
            if last.contains('*') {
                let prefix = &r[..r.find('*').unwrap_or(r.len())];
                patterned.push((prefix, last, *r));
            } else {
                by_name.entry(last).or_default().push(*r);
            }
        }
        KeepIndex { by_name, patterned }
    })
}

/// Whether the bytes of `path` (normalised) are kept for analysis.
pub fn wanted(path: &str) -> bool {
    // Runs for every tar entry: compare the file names first, without allocating.
    let name = path.rsplit('/').next().unwrap_or("");
    let k = keep_index();
    k.by_name
        .get(name)
        .is_some_and(|rules| rules.iter().any(|r| glob_match(r, path)))
        || k.patterned.iter().any(|(prefix, last, r)| {
            path.starts_with(prefix)
                && (*last == "**" || segment_match(last.as_bytes(), name.as_bytes()))
                && glob_match(r, path)
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
    if is_normal(raw) {
        return (raw.to_string(), false);
    }
    let mut out = String::with_capacity(raw.len() + 1);
    let mut escaped = false;
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.rfind('/') {
                Some(i) => out.truncate(i),
                None => escaped = true,
            },
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, escaped)
}

/// Whether `path` is already what [`normalize`] makes of it: absolute, and no empty,
/// `.` or `..` segment (most paths analysis handles are).
pub fn is_normal(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && path[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."))
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
        assert_eq!(normalize(""), ("/".into(), false));
        assert_eq!(normalize(".."), ("/".into(), true));
        assert_eq!(normalize("/a/b/../../.."), ("/".into(), true));
        assert_eq!(normalize("usr/bin/x"), ("/usr/bin/x".into(), false));
        assert_eq!(normalize("/usr/bin/x"), ("/usr/bin/x".into(), false));
        assert_eq!(normalize("/usr/bin/x/"), ("/usr/bin/x".into(), false));
        assert_eq!(normalize("/usr/./bin"), ("/usr/bin".into(), false));
        assert_eq!(normalize("/usr/../bin"), ("/bin".into(), false));
        assert_eq!(normalize("/..a/b.."), ("/..a/b..".into(), false));
        for p in ["/", "/a", "/a/b.c/d", "/..a"] {
            assert!(is_normal(p), "{p}");
        }
        for p in ["", "a", "/a/", "//a", "/a//b", "/./a", "/a/..", "/a/."] {
            assert!(!is_normal(p), "{p}");
        }
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

    #[test]
    fn wanted_is_any_keep_rule() {
        // The indexed lookup agrees with trying every rule, on paths each rule matches
        // and near misses.
        let mut paths: Vec<String> = Vec::new();
        for r in KEEP_RULES {
            let concrete = r.replace("/**", "/x/y").replace('*', "abc");
            paths.push(concrete.clone());
            paths.push(format!("{concrete}.bak"));
            paths.push(format!("{concrete}/child"));
            paths.push(concrete.replacen("/x/y", "", 1));
        }
        paths.extend(["/", "/a", "/etc/passwd", "/usr/lib/os-release"].map(String::from));
        for p in &paths {
            let slow = KEEP_RULES.iter().any(|r| glob_match(r, p));
            assert_eq!(wanted(p), slow, "{p}");
        }
        assert!(paths.iter().filter(|p| wanted(p)).count() > KEEP_RULES.len());
    }
}
