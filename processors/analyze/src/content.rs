//! Image content beyond packages: `/etc/passwd` users, `/etc/group` groups and the
//! retrieved files (kept bytes of configured paths, size capped). Pure.

use vigil_contracts::{Group, RetrievedFile, User};

use crate::squash::SquashedFs;

/// `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`. Comments, blank lines,
/// NIS `+`/`-` lines and lines with a non-numeric uid or gid are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') || line.starts_with(['+', '-']) {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                gecos: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6..].join(":"),
                entry: line.to_string(),
            })
        })
        .collect()
}

/// `/etc/group`: `name:password:gid:member,member`.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') || line.starts_with(['+', '-']) {
                return None;
            }
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The kept bytes of each configured path (through symlinks), cut at `max_bytes`. A
/// path whose bytes extract did not keep is not retrieved (see `KEEP_RULES`).
pub fn retrieve(fs: &SquashedFs, paths: &[String], max_bytes: usize) -> Vec<RetrievedFile> {
    paths
        .iter()
        .filter_map(|p| {
            let b = fs.read(p)?;
            let resolved = match fs.resolve(p) {
                crate::squash::Resolved::Path(r) => r,
                _ => p.clone(),
            };
            let cut = b.len() > max_bytes;
            Some(RetrievedFile {
                path: p.clone(),
                content: b[..b.len().min(max_bytes)].to_vec(),
                truncated: cut || fs.truncated.contains(&resolved),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group() {
        let u = parse_passwd("root:x:0:0:root:/root:/bin/bash\n# c\n\ntoor:x:0:0:Backdoor,,,:/root:/bin/bash\nbad:x:y:0::/:/bin/sh\n+nis::::::\nsvc:x:1001:1001::/home/svc:/bin/bash\n");
        let names: Vec<_> = u.iter().map(|u| (u.name.as_str(), u.uid)).collect();
        assert_eq!(names, [("root", 0), ("toor", 0), ("svc", 1001)]);
        assert_eq!(u[1].gecos, "Backdoor,,,");
        assert_eq!(u[1].entry, "toor:x:0:0:Backdoor,,,:/root:/bin/bash");
        let g = parse_group("root:x:0:\nsudo:x:27:alice,bob\nshort:x\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].members, ["alice", "bob"]);
        assert!(g[0].members.is_empty());
    }
}
