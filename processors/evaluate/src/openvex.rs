//! OpenVEX documents as allowlist input: `not_affected` and `fixed` statements become
//! allowlist items for the `vulnerabilities` gate, scoped to the package (and version)
//! the statement names, with the justification kept in the item id so that it shows in
//! `PolicyFinding.allowlist_id` as `openvex:<statement id>: <justification>`.

use serde_json::Value;

use crate::bundle::{Allowlist, AllowlistItem, PolicyError, Selector};

/// Why an OpenVEX document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenVexError {
    #[error("OpenVEX document is not valid JSON: {0}")]
    Json(String),
    #[error("OpenVEX document: {0}")]
    Structure(String),
}

/// The largest OpenVEX document accepted.
pub const MAX_OPENVEX_BYTES: usize = 8 * 1024 * 1024;

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(type, name, version)` of a package URL.
pub fn parse_purl(purl: &str) -> Option<(String, String, Option<String>)> {
    let rest = purl.trim().strip_prefix("pkg:")?;
    let rest = rest.split('#').next()?.split('?').next()?;
    let (ty, path) = rest.split_once('/')?;
    let last = path.rsplit('/').next()?;
    let (name, version) = match last.split_once('@') {
        Some((n, v)) => (n, Some(percent_decode(v))),
        None => (last, None),
    };
    if name.is_empty() {
        return None;
    }
    Some((ty.to_ascii_lowercase(), percent_decode(name), version))
}

fn id_of(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("@id").and_then(Value::as_str),
        _ => None,
    }
}

/// The packages a statement is about: the products' subcomponents, else the products
/// themselves unless they are the image (`pkg:oci`, `pkg:docker`), else any package.
fn statement_packages(st: &Value) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let products = st.get("products").and_then(Value::as_array);
    let mut any_image = false;
    for p in products.into_iter().flatten() {
        let subs: Vec<&str> = p
            .get("subcomponents")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(id_of).collect())
            .unwrap_or_default();
        // v0.0.x: subcomponents on the statement.
        let subs = if subs.is_empty() {
            st.get("subcomponents")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(id_of).collect())
                .unwrap_or_default()
        } else {
            subs
        };
        if !subs.is_empty() {
            out.extend(
                subs.iter()
                    .filter_map(|s| parse_purl(s))
                    .map(|(_, n, v)| (n, v)),
            );
            continue;
        }
        match id_of(p).and_then(parse_purl) {
            Some((ty, _, _)) if ty == "oci" || ty == "docker" => any_image = true,
            Some((_, n, v)) => out.push((n, v)),
            None => any_image = true,
        }
    }
    if out.is_empty() && (any_image || products.is_none_or(|p| p.is_empty())) {
        out.push(("*".into(), None));
    }
    out
}

/// Build an allowlist from an OpenVEX document (v0.0.x and v0.2.x shapes).
pub fn allowlist_from_openvex(json: &str) -> Result<Allowlist, OpenVexError> {
    if json.len() > MAX_OPENVEX_BYTES {
        return Err(OpenVexError::Structure(format!(
            "document is too large: {} bytes, the limit is {MAX_OPENVEX_BYTES}",
            json.len()
        )));
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| OpenVexError::Json(e.to_string()))?;
    let doc_id = doc
        .get("@id")
        .and_then(Value::as_str)
        .unwrap_or("openvex")
        .to_string();
    let statements = doc
        .get("statements")
        .and_then(Value::as_array)
        .ok_or_else(|| OpenVexError::Structure("no \"statements\" array".into()))?;
    let mut items = Vec::new();
    for (i, st) in statements.iter().enumerate() {
        let status = st.get("status").and_then(Value::as_str).unwrap_or("");
        if status != "not_affected" && status != "fixed" {
            continue;
        }
        let sid = st
            .get("@id")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("{doc_id}#{i}"));
        let vuln = st.get("vulnerability");
        let mut names: Vec<String> = Vec::new();
        match vuln {
            Some(Value::String(s)) => names.push(s.clone()),
            Some(Value::Object(o)) => {
                if let Some(n) = o.get("name").and_then(Value::as_str) {
                    names.push(n.to_string());
                }
                for a in o
                    .get("aliases")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(a) = a.as_str() {
                        names.push(a.to_string());
                    }
                }
            }
            _ => {}
        }
        names.retain(|n| !n.trim().is_empty());
        if names.is_empty() {
            return Err(OpenVexError::Structure(format!(
                "statement {sid:?} names no vulnerability"
            )));
        }
        let justification = if status == "fixed" {
            "fixed".to_string()
        } else {
            st.get("justification")
                .and_then(Value::as_str)
                .or_else(|| st.get("impact_statement").and_then(Value::as_str))
                .unwrap_or("not_affected")
                .to_string()
        };
        let item_id = format!("openvex:{sid}: {justification}");
        for (pkg, version) in statement_packages(st) {
            for name in &names {
                let ctx = format!("OpenVEX statement {sid:?}");
                let sel = |s: &str| -> Result<Selector, OpenVexError> {
                    Selector::parse(s, &ctx)
                        .map_err(|e: PolicyError| OpenVexError::Structure(e.to_string()))
                };
                items.push(AllowlistItem {
                    id: item_id.clone(),
                    gate: "vulnerabilities".into(),
                    trigger_id: sel(&format!("{}+{pkg}", name.trim()))?,
                    expires_on: None,
                    package_version: match &version {
                        Some(v) => Some(sel(v)?),
                        None => None,
                    },
                });
            }
        }
    }
    Ok(Allowlist {
        id: doc_id.clone(),
        name: format!("OpenVEX {doc_id}"),
        items,
    })
}
