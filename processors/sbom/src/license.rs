//! SPDX license identifiers, from the license list the CycloneDX schema ships
//! (`schemas/spdx.schema.json`), so that exported licenses use `id` where they can.

use std::collections::HashSet;
use std::sync::OnceLock;

const SPDX_LICENSE_SCHEMA: &str = include_str!("../schemas/spdx.schema.json");

fn ids() -> &'static HashSet<String> {
    static IDS: OnceLock<HashSet<String>> = OnceLock::new();
    IDS.get_or_init(|| {
        let v: serde_json::Value = serde_json::from_str(SPDX_LICENSE_SCHEMA).unwrap_or_default();
        v.get("enum")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Whether `s` is an SPDX license (or exception) identifier, exactly as listed.
pub(crate) fn is_spdx_id(s: &str) -> bool {
    ids().contains(s)
}

/// Whether `s` looks like an SPDX license expression of several terms (`A OR B`,
/// `(A AND B)`, `A WITH E`) whose single terms are all listed identifiers or
/// `LicenseRef-…`.
pub(crate) fn is_spdx_expression(s: &str) -> bool {
    let mut terms = 0;
    for tok in s
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
    {
        match tok {
            "AND" | "OR" | "WITH" => {}
            t => {
                let t = t.strip_suffix('+').unwrap_or(t);
                if !(is_spdx_id(t) || is_license_ref(t)) {
                    return false;
                }
                terms += 1;
            }
        }
    }
    terms > 0
}

fn is_license_ref(t: &str) -> bool {
    let rest = t
        .strip_prefix("LicenseRef-")
        .or_else(|| t.split_once(":LicenseRef-").map(|(_, r)| r));
    matches!(rest, Some(r) if !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
}

/// `LicenseRef-…` for a license name that is no SPDX identifier: characters outside
/// `[A-Za-z0-9.-]` become `-`.
pub(crate) fn license_ref(name: &str) -> String {
    let body: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_and_expressions() {
        assert!(is_spdx_id("MIT"));
        assert!(is_spdx_id("GPL-2.0-only"));
        assert!(!is_spdx_id("GPL-2"));
        assert!(is_spdx_expression("MIT OR Apache-2.0"));
        assert!(is_spdx_expression(
            "(GPL-2.0-or-later WITH Classpath-exception-2.0) AND MIT"
        ));
        assert!(!is_spdx_expression("GPL-2+ and LGPL"));
        assert_eq!(license_ref("GPL 2+"), "LicenseRef-GPL-2-");
    }
}
