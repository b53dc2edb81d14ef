//! Configuration from a TOML file, then the environment, then flags (the caller applies
//! flags last). Generic over the configuration type so that the binary owns the shape:
//! defaults come from `T::default()`, a file overrides any subset of keys, and
//! environment variables `VIGIL_SECTION__KEY=value` (double underscore between levels)
//! override those. Values from the environment are parsed as TOML scalars or arrays when
//! they parse (`VIGIL_FETCH__INSECURE_REGISTRIES='["r:5000"]'`), else taken as strings.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Layer `T::default()`, the file (when given) and `<prefix>_…` environment variables.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env_prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut value =
        toml::Value::try_from(T::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let over: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        merge(&mut value, over);
    }
    let prefix = format!("{env_prefix}_");
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        // Only leaf keys the configuration knows are taken; others (VIGIL_LOG, or
        // VIGIL_FEEDS naming a whole section) are ignored.
        if !is_leaf(&value, &path) {
            continue;
        }
        let mut over = env_value(&v);
        for seg in path.iter().rev() {
            let mut t = toml::Table::new();
            t.insert(seg.clone(), over);
            over = toml::Value::Table(t);
        }
        merge(&mut value, over);
    }
    value
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))
}

/// Whether `path` names a key the configuration has (not a whole section): a leaf of
/// the defaults, or an absent key in a section that exists (optional keys, `None` by
/// default, are not in the serialized defaults).
fn is_leaf(v: &toml::Value, path: &[String]) -> bool {
    let mut cur = v;
    for (i, seg) in path.iter().enumerate() {
        match cur.as_table().map(|t| t.get(seg)) {
            Some(Some(n)) => cur = n,
            // An optional key of an existing section (not at the top level, where
            // VIGIL_LOG and the like live).
            Some(None) => return i + 1 == path.len() && i > 0,
            None => return false,
        }
    }
    !cur.is_table()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Inner {
        url: String,
        list: Vec<String>,
        n: u32,
        #[serde(default)]
        user: Option<String>,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Conf {
        name: String,
        inner: Inner,
    }
    impl Default for Conf {
        fn default() -> Self {
            Conf {
                name: "d".into(),
                inner: Inner {
                    url: "nats://x".into(),
                    list: vec![],
                    n: 1,
                    user: None,
                },
            }
        }
    }

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[inner]\nurl = \"nats://file\"\nn = 5\n").unwrap();
        let env = vec![
            ("VIGIL_INNER__N".to_string(), "7".to_string()),
            (
                "VIGIL_INNER__LIST".to_string(),
                "[\"a\", \"b\"]".to_string(),
            ),
            ("VIGIL_UNKNOWN".to_string(), "x".to_string()),
            // An optional key, absent from the serialized defaults.
            ("VIGIL_INNER__USER".to_string(), "alice".to_string()),
            // Names a whole section, not a key: ignored rather than replacing the table.
            ("VIGIL_INNER".to_string(), "/some/dir".to_string()),
            ("OTHER_NAME".to_string(), "no".to_string()),
        ];
        let c: Conf = load(Some(&f), "VIGIL", env).unwrap();
        assert_eq!(c.name, "d");
        assert_eq!(c.inner.url, "nats://file");
        assert_eq!(c.inner.n, 7);
        assert_eq!(c.inner.list, vec!["a", "b"]);
        assert_eq!(c.inner.user.as_deref(), Some("alice"));
    }

    #[test]
    fn bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[inner\n").unwrap();
        let e = load::<Conf>(Some(&f), "VIGIL", vec![]).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        let e = load::<Conf>(Some(&dir.path().join("missing.toml")), "VIGIL", vec![]).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }

    #[test]
    fn wrong_type_from_env_is_rejected() {
        let env = vec![("VIGIL_INNER__N".to_string(), "\"many\"".to_string())];
        assert!(matches!(
            load::<Conf>(None, "VIGIL", env),
            Err(ConfigError::Invalid(_))
        ));
    }
}
