//! Go `go.mod` (declared; directory scans): `require` lines and blocks, `replace`
//! directives applied. Go binaries are found by extract while the layer streams.

use std::collections::BTreeMap;

use vigil_contracts::{Package, PackageType};

use crate::catalog::{pkg, purl, CatalogCtx};

/// `pkg:golang/github.com/a/b@v1.0.0`: all but the last path element is the namespace.
pub fn go_purl(module: &str, version: &str) -> Option<String> {
    match module.rsplit_once('/') {
        Some((ns, n)) => purl("golang", ns, n, version, &[]),
        None => purl("golang", "", module, version, &[]),
    }
}

/// Parse go.mod: (module path, [(path, version)]) with replacements applied.
pub fn parse_go_mod(text: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut module = None;
    let mut reqs: BTreeMap<String, String> = BTreeMap::new();
    let mut replaces: Vec<(String, Option<String>, String, Option<String>)> = vec![];
    let mut block: Option<&str> = None;
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if block.is_some() && line == ")" {
            block = None;
            continue;
        }
        let (verb, rest) = match block {
            Some(b) => (b, line),
            None => {
                let (v, r) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                if r.trim() == "(" {
                    block = Some(match v {
                        "require" => "require",
                        "replace" => "replace",
                        _ => "other",
                    });
                    continue;
                }
                (v, r.trim())
            }
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        match verb {
            "module" => module = f.first().map(|m| m.trim_matches('"').to_string()),
            "require" if f.len() >= 2 => {
                reqs.insert(f[0].to_string(), f[1].to_string());
            }
            "replace" => {
                if let Some(i) = f.iter().position(|x| *x == "=>") {
                    let old = f[..i].to_vec();
                    let new = f[i + 1..].to_vec();
                    if let (Some(o), Some(n)) = (old.first(), new.first()) {
                        replaces.push((
                            o.to_string(),
                            old.get(1).map(|s| s.to_string()),
                            n.to_string(),
                            new.get(1).map(|s| s.to_string()),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = vec![];
    for (path, version) in reqs {
        let r = replaces
            .iter()
            .find(|(o, ov, _, _)| *o == path && ov.as_ref().is_none_or(|v| *v == version));
        match r {
            // A local directory replacement has no version: keep the required one.
            Some((_, _, n, Some(nv))) => out.push((n.clone(), nv.clone())),
            _ => out.push((path, version)),
        }
    }
    (module, out)
}

/// `go.sum`: `(module, version) → h1:…` of the module zips (the `/go.mod` lines left out).
pub fn parse_go_sum(text: &str) -> BTreeMap<(String, String), String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [m, v, h] if !v.ends_with("/go.mod") => {
                    Some(((m.to_string(), v.to_string()), h.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// The `go-mod-file` cataloger: go.mod's requirements, with the `h1:` digest from the
/// `go.sum` beside it when there is one.
pub fn catalog_go_mod(ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let (_, reqs) = parse_go_mod(&String::from_utf8_lossy(content));
    let sums = ctx
        .fs
        .files
        .get(&format!("{}/go.sum", crate::catalog::parent(path)))
        .map(|b| parse_go_sum(&String::from_utf8_lossy(b)))
        .unwrap_or_default();
    reqs.into_iter()
        .map(|(m, v)| {
            let mut p = pkg(&m, &v, PackageType::GoModule, path, go_purl(&m, &v));
            if let Some(h) = sums.get(&(m.clone(), v.clone())) {
                p.metadata.insert("h1_digest".into(), h.clone());
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_and_replaces() {
        let m = "module example.com/app\n\ngo 1.21\n\nrequire golang.org/x/net v0.7.0\n\nrequire (\n\tgithub.com/a/b v1.2.3 // indirect\n\tgithub.com/c/d v0.1.0\n)\n\nreplace github.com/c/d => github.com/e/d v0.2.0\nreplace (\n\tgolang.org/x/net v0.7.0 => ../net\n)\n";
        let (module, r) = parse_go_mod(m);
        assert_eq!(module.as_deref(), Some("example.com/app"));
        assert_eq!(
            r,
            [
                ("github.com/a/b".into(), "v1.2.3".into()),
                ("github.com/e/d".into(), "v0.2.0".into()),
                ("golang.org/x/net".into(), "v0.7.0".into())
            ]
        );
        assert_eq!(
            go_purl("golang.org/x/net", "v0.7.0").as_deref(),
            Some("pkg:golang/golang.org/x/net@v0.7.0")
        );
    }
}
