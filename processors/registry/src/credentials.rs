//! Registry credentials: configured ones first, then `~/.docker/config.json`.
//!
//! Lookup order for `(registry, repo)`:
//!
//! 1. configured [`CredentialEntry`]s of the registry (hosts compared normalised:
//!    `docker.io`, `index.docker.io` and `registry-1.docker.io` are one), the longest
//!    matching `prefix` winning (an entry without prefix matches every repository);
//! 2. the docker config (`docker_config`, or `$DOCKER_CONFIG/config.json` /
//!    `~/.docker/config.json` when `use_docker_config`): `credHelpers` of the host, then
//!    an `auths` entry with credentials (`auth`, `username`/`password`,
//!    `identitytoken`), then `credsStore`;
//! 3. anonymous.
//!
//! Helpers are run as `docker-credential-<name> get` with the server on stdin; their
//! "credentials not found" answer means anonymous, any other failure is an error.
//! An identity token (or a helper's `<token>` user) is returned as
//! `Basic { username: "<token>", password: <token> }`: the client then exchanges it as an
//! OAuth2 refresh token at the token server.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// How to authenticate to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A static bearer token (sent as is; no token exchange).
    Bearer {
        token: String,
    },
}

/// The user name docker uses for an identity (refresh) token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// A configured credential for a registry, optionally only for a repository prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CredentialEntry {
    pub registry: String,
    /// Only repositories starting with this (`team/`); the longest matching prefix wins.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

impl CredentialEntry {
    fn auth(&self) -> RegistryAuth {
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            RegistryAuth::Bearer { token: t.clone() }
        } else if let Some(u) = self.username.as_ref().filter(|u| !u.is_empty()) {
            RegistryAuth::Basic {
                username: u.clone(),
                password: self.password.clone().unwrap_or_default(),
            }
        } else {
            RegistryAuth::Anonymous
        }
    }
}

/// Where credentials come from.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub entries: Vec<CredentialEntry>,
    /// A docker config file (`~/.docker/config.json` when `None` and `use_docker_config`).
    pub docker_config: Option<PathBuf>,
    pub use_docker_config: bool,
}

/// A registry host as credentials compare it: no scheme, no path, lowercase, Docker Hub's
/// aliases as `docker.io`.
pub fn normalize_registry(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// The server name given to credential helpers for a registry (Docker Hub's is its v1
/// index URL, as `docker login` stores it).
pub fn helper_server_name(registry: &str) -> String {
    let n = normalize_registry(registry);
    if n == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        n
    }
}

/// One `auths` entry of a docker config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DockerAuthEntry {
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    pub identity_token: Option<String>,
    #[serde(default, rename = "registrytoken")]
    pub registry_token: Option<String>,
}

/// The parts of a docker `config.json` that name credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    pub auths: HashMap<String, DockerAuthEntry>,
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
}

/// Where a docker config says a registry's credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerSource {
    /// In the file itself.
    Auth(RegistryAuth),
    /// Ask `docker-credential-<helper>` for `server`.
    Helper { helper: String, server: String },
    /// Nowhere.
    None,
}

/// Parse a docker config file's content.
pub fn parse_docker_config(bytes: &[u8]) -> Result<DockerConfig, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DockerConfig::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("docker config: {e}"))
}

impl DockerAuthEntry {
    /// The credential of this entry, `None` when it holds none (a `credsStore` stub).
    pub fn to_auth(&self) -> Result<Option<RegistryAuth>, String> {
        if let Some(tok) = self.identity_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(RegistryAuth::Basic {
                username: IDENTITY_TOKEN_USER.into(),
                password: tok.clone(),
            }));
        }
        if let Some(tok) = self.registry_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(RegistryAuth::Bearer { token: tok.clone() }));
        }
        if let Some(a) = self
            .auth
            .as_ref()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(a))
                .map_err(|e| format!("auths: `auth` is not base64: {e}"))?;
            let s = String::from_utf8(raw).map_err(|_| "auths: `auth` is not UTF-8".to_string())?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| "auths: `auth` is not user:password".to_string())?;
            return Ok(Some(RegistryAuth::Basic {
                username: u.to_string(),
                password: p.trim_end_matches(['\n', '\r']).to_string(),
            }));
        }
        if let Some(u) = self.username.as_ref().filter(|u| !u.is_empty()) {
            return Ok(Some(RegistryAuth::Basic {
                username: u.clone(),
                password: self.password.clone().unwrap_or_default(),
            }));
        }
        Ok(None)
    }
}

impl DockerConfig {
    /// Where this config keeps `registry`'s credentials.
    pub fn resolve(&self, registry: &str) -> Result<DockerSource, String> {
        let want = normalize_registry(registry);
        let server = helper_server_name(registry);
        let mut helpers: Vec<(&String, &String)> = self.cred_helpers.iter().collect();
        helpers.sort();
        if let Some((_, h)) = helpers
            .into_iter()
            .find(|(k, h)| normalize_registry(k) == want && !h.is_empty())
        {
            return Ok(DockerSource::Helper {
                helper: h.clone(),
                server,
            });
        }
        // Prefer an exact key, then any key normalising to the host (sorted: stable).
        let mut keys: Vec<&String> = self
            .auths
            .keys()
            .filter(|k| normalize_registry(k) == want)
            .collect();
        keys.sort_by_key(|k| (k.as_str() != registry, k.as_str()));
        for k in keys {
            if let Some(a) = self.auths[k].to_auth()? {
                return Ok(DockerSource::Auth(a));
            }
        }
        if let Some(store) = self.creds_store.as_ref().filter(|s| !s.is_empty()) {
            return Ok(DockerSource::Helper {
                helper: store.clone(),
                server,
            });
        }
        Ok(DockerSource::None)
    }
}

/// Parse a credential helper's `get` answer (`{"ServerURL","Username","Secret"}`).
pub fn parse_helper_output(stdout: &[u8]) -> Result<RegistryAuth, String> {
    #[derive(Deserialize)]
    struct Out {
        #[serde(default, rename = "Username")]
        username: String,
        #[serde(default, rename = "Secret")]
        secret: String,
    }
    let o: Out = serde_json::from_slice(stdout)
        .map_err(|e| format!("credential helper answer is not JSON: {e}"))?;
    if o.username.is_empty() && o.secret.is_empty() {
        return Ok(RegistryAuth::Anonymous);
    }
    Ok(RegistryAuth::Basic {
        username: o.username,
        password: o.secret,
    })
}

/// Run `docker-credential-<helper> get` (from `dir` when given, else from `PATH`) for
/// `server`. `Ok(None)`: the helper has no credentials for it.
pub fn run_helper(
    helper: &str,
    server: &str,
    dir: Option<&Path>,
) -> Result<Option<RegistryAuth>, String> {
    if helper.contains('/') || helper.contains('\\') {
        return Err(format!("invalid credential helper name {helper:?}"));
    }
    let name = format!("docker-credential-{helper}");
    let program = match dir {
        Some(d) => d.join(&name),
        None => PathBuf::from(&name),
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading closes the pipe: its exit status tells.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("credentials not found") || err.contains("credentials not found") {
            return Ok(None);
        }
        let msg = if err.trim().is_empty() { text } else { err };
        return Err(format!(
            "{name} get failed ({}): {}",
            out.status,
            msg.trim().chars().take(500).collect::<String>()
        ));
    }
    parse_helper_output(&out.stdout).map(Some)
}

impl Credentials {
    /// Credentials for `repo` on `registry`. Credential helpers are found on `PATH`.
    pub fn lookup(&self, registry: &str, repo: &str) -> Result<RegistryAuth, RegistryError> {
        self.lookup_with_helper_dir(registry, repo, None)
    }

    /// [`Credentials::lookup`] with credential helpers taken from `helper_dir` (when
    /// given) instead of `PATH`.
    pub fn lookup_with_helper_dir(
        &self,
        registry: &str,
        repo: &str,
        helper_dir: Option<&Path>,
    ) -> Result<RegistryAuth, RegistryError> {
        let err = |message: String| RegistryError::Credentials {
            registry: registry.to_string(),
            message,
        };
        if let Some(e) = self.configured(registry, repo) {
            return Ok(e.auth());
        }
        let Some((path, explicit)) = self.docker_config_path() else {
            return Ok(RegistryAuth::Anonymous);
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(RegistryAuth::Anonymous)
            }
            Err(e) => return Err(err(format!("{}: {e}", path.display()))),
        };
        let cfg =
            parse_docker_config(&bytes).map_err(|m| err(format!("{}: {m}", path.display())))?;
        match cfg
            .resolve(registry)
            .map_err(|m| err(format!("{}: {m}", path.display())))?
        {
            DockerSource::Auth(a) => Ok(a),
            DockerSource::None => Ok(RegistryAuth::Anonymous),
            DockerSource::Helper { helper, server } => Ok(run_helper(&helper, &server, helper_dir)
                .map_err(err)?
                .unwrap_or(RegistryAuth::Anonymous)),
        }
    }

    /// The configured entry for `(registry, repo)`: same registry, longest matching prefix.
    pub fn configured(&self, registry: &str, repo: &str) -> Option<&CredentialEntry> {
        let want = normalize_registry(registry);
        self.entries
            .iter()
            .filter(|e| normalize_registry(&e.registry) == want)
            .filter(|e| repo.starts_with(e.prefix.as_deref().unwrap_or("")))
            .max_by_key(|e| e.prefix.as_deref().map_or(0, str::len))
    }

    /// The docker config read, and whether it was named explicitly (a missing explicit
    /// file is an error, a missing default one is not).
    pub fn docker_config_path(&self) -> Option<(PathBuf, bool)> {
        if let Some(p) = &self.docker_config {
            return Some((p.clone(), true));
        }
        if !self.use_docker_config {
            return None;
        }
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some((PathBuf::from(d).join("config.json"), false));
        }
        dirs::home_dir().map(|h| (h.join(".docker/config.json"), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(registry: &str, prefix: Option<&str>, user: &str) -> CredentialEntry {
        CredentialEntry {
            registry: registry.into(),
            prefix: prefix.map(str::to_string),
            username: Some(user.into()),
            password: Some("pw".into()),
            token: None,
        }
    }

    fn user_of(a: RegistryAuth) -> String {
        match a {
            RegistryAuth::Basic { username, .. } => username,
            other => panic!("not basic: {other:?}"),
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_registry("Docker.IO"), "docker.io");
        assert_eq!(
            normalize_registry("http://Reg.example:5000/x"),
            "reg.example:5000"
        );
        assert_eq!(
            helper_server_name("registry-1.docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(helper_server_name("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn longest_prefix_wins() {
        let c = Credentials {
            entries: vec![
                entry("reg.example", None, "any"),
                entry("reg.example", Some("team/"), "team"),
                entry("reg.example", Some("team/app"), "app"),
                entry("other.example", Some("team/app/x"), "other"),
                entry("index.docker.io", None, "hub"),
            ],
            ..Default::default()
        };
        assert_eq!(
            user_of(c.lookup("reg.example", "team/app/x").unwrap()),
            "app"
        );
        assert_eq!(user_of(c.lookup("reg.example", "team/b").unwrap()), "team");
        assert_eq!(user_of(c.lookup("reg.example", "solo").unwrap()), "any");
        assert_eq!(
            user_of(c.lookup("docker.io", "library/alpine").unwrap()),
            "hub"
        );
        assert_eq!(
            user_of(c.lookup("registry-1.docker.io", "x").unwrap()),
            "hub"
        );
        assert_eq!(
            c.lookup("nowhere.example", "x").unwrap(),
            RegistryAuth::Anonymous
        );
        let t = Credentials {
            entries: vec![CredentialEntry {
                registry: "r".into(),
                token: Some("tok".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            t.lookup("r", "x").unwrap(),
            RegistryAuth::Bearer {
                token: "tok".into()
            }
        );
    }

    #[test]
    fn docker_config_auths() {
        let cfg = parse_docker_config(
            br#"{
              "auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "reg.example:5000": {"username": "u", "password": "p"},
                "id.example": {"identitytoken": "refresh"},
                "stub.example": {},
                "bad.example": {"auth": "!!!"},
                "nocolon.example": {"auth": "bm9jb2xvbg=="}
              },
              "HttpHeaders": {"User-Agent": "x"}
            }"#,
        )
        .unwrap();
        assert_eq!(
            cfg.resolve("registry-1.docker.io").unwrap(),
            DockerSource::Auth(RegistryAuth::Basic {
                username: "hub".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            cfg.resolve("http://reg.example:5000").unwrap(),
            DockerSource::Auth(RegistryAuth::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            cfg.resolve("id.example").unwrap(),
            DockerSource::Auth(RegistryAuth::Basic {
                username: IDENTITY_TOKEN_USER.into(),
                password: "refresh".into()
            })
        );
        assert_eq!(cfg.resolve("stub.example").unwrap(), DockerSource::None);
        assert_eq!(cfg.resolve("unknown.example").unwrap(), DockerSource::None);
        assert!(cfg.resolve("bad.example").is_err());
        assert!(cfg.resolve("nocolon.example").is_err());
        assert_eq!(parse_docker_config(b"").unwrap(), DockerConfig::default());
        assert!(parse_docker_config(b"{not json").is_err());
        assert!(parse_docker_config(br#"{"auths": 5}"#).is_err());
    }

    #[test]
    fn docker_config_helpers_and_store() {
        let cfg = parse_docker_config(
            br#"{
              "auths": {"reg.example": {}, "plain.example": {"username": "u", "password": "p"}},
              "credHelpers": {"helped.example": "gcr", "docker.io": "hubhelper"},
              "credsStore": "desktop"
            }"#,
        )
        .unwrap();
        assert_eq!(
            cfg.resolve("helped.example").unwrap(),
            DockerSource::Helper {
                helper: "gcr".into(),
                server: "helped.example".into()
            }
        );
        assert_eq!(
            cfg.resolve("index.docker.io").unwrap(),
            DockerSource::Helper {
                helper: "hubhelper".into(),
                server: "https://index.docker.io/v1/".into()
            }
        );
        assert_eq!(
            cfg.resolve("reg.example").unwrap(),
            DockerSource::Helper {
                helper: "desktop".into(),
                server: "reg.example".into()
            }
        );
        assert!(matches!(
            cfg.resolve("plain.example").unwrap(),
            DockerSource::Auth(RegistryAuth::Basic { .. })
        ));
    }

    #[test]
    fn helper_output() {
        assert_eq!(
            parse_helper_output(br#"{"ServerURL":"s","Username":"u","Secret":"p"}"#).unwrap(),
            RegistryAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            parse_helper_output(br#"{"Username":"","Secret":""}"#).unwrap(),
            RegistryAuth::Anonymous
        );
        assert!(parse_helper_output(b"oops").is_err());
    }

    #[cfg(unix)]
    fn write_helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn helpers_run_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        // Echoes the server it was asked for as the user name.
        write_helper(
            dir.path(),
            "echo",
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r s\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"pw\"}' \"$s\" \"$s\"\n",
        );
        write_helper(
            dir.path(),
            "missing",
            "#!/bin/sh\ncat >/dev/null\necho 'credentials not found in native keychain'\nexit 1\n",
        );
        write_helper(
            dir.path(),
            "broken",
            "#!/bin/sh\ncat >/dev/null\necho 'keychain locked' >&2\nexit 3\n",
        );
        write_helper(
            dir.path(),
            "garbage",
            "#!/bin/sh\ncat >/dev/null\necho nope\n",
        );
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers": {"a.example": "echo", "m.example": "missing",
                 "b.example": "broken", "g.example": "garbage", "n.example": "absent"},
                "auths": {"s.example": {}}, "credsStore": "echo"}"#,
        )
        .unwrap();
        let c = Credentials {
            docker_config: Some(config),
            ..Default::default()
        };
        let d = Some(dir.path());
        assert_eq!(
            c.lookup_with_helper_dir("a.example", "r", d).unwrap(),
            RegistryAuth::Basic {
                username: "a.example".into(),
                password: "pw".into()
            }
        );
        // credsStore, and Docker Hub's server name.
        assert_eq!(
            user_of(
                c.lookup_with_helper_dir("docker.io", "library/x", d)
                    .unwrap()
            ),
            "https://index.docker.io/v1/"
        );
        assert_eq!(
            c.lookup_with_helper_dir("m.example", "r", d).unwrap(),
            RegistryAuth::Anonymous
        );
        for failing in ["b.example", "g.example", "n.example"] {
            let e = c.lookup_with_helper_dir(failing, "r", d).unwrap_err();
            assert!(
                matches!(e, RegistryError::Credentials { .. }),
                "{failing}: {e}"
            );
        }
        let msg = c
            .lookup_with_helper_dir("b.example", "r", d)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("keychain locked"), "{msg}");
    }

    #[test]
    fn configured_entries_before_docker_config_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"auths": {"r.example": {"username": "file", "password": "p"}}}"#,
        )
        .unwrap();
        let c = Credentials {
            entries: vec![entry("r.example", Some("team/"), "entry")],
            docker_config: Some(config),
            use_docker_config: true,
        };
        assert_eq!(user_of(c.lookup("r.example", "team/a").unwrap()), "entry");
        assert_eq!(user_of(c.lookup("r.example", "other").unwrap()), "file");
        let missing = Credentials {
            docker_config: Some(dir.path().join("nope.json")),
            ..Default::default()
        };
        assert!(matches!(
            missing.lookup("r.example", "x"),
            Err(RegistryError::Credentials { .. })
        ));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{").unwrap();
        let bad = Credentials {
            docker_config: Some(bad),
            ..Default::default()
        };
        assert!(matches!(
            bad.lookup("r.example", "x"),
            Err(RegistryError::Credentials { .. })
        ));
        let off = Credentials::default();
        assert_eq!(
            off.lookup("r.example", "x").unwrap(),
            RegistryAuth::Anonymous
        );
    }
}
