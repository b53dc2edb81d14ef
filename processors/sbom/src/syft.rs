//! Syft JSON import (`syft -o syft-json`).

use serde_json::Value;
use vigil_contracts::Distro;

use crate::import::{self, Doc, ImportedSbom, SbomFormat};
use crate::purl::package_type_from_syft;
use crate::SbomError;

const FORMAT: &str = "Syft JSON";

pub(crate) fn import(v: &Value) -> Result<ImportedSbom, SbomError> {
    let doc = Doc::new(FORMAT);
    let mut out = ImportedSbom::new(SbomFormat::SyftJson);
    let artifacts = doc.array(&v["artifacts"], "artifacts")?;
    for (i, a) in artifacts.iter().enumerate() {
        let path = format!("artifacts[{i}]");
        doc.object(a, &path)?;
        let name = doc.req_str(a, "name", &path)?;
        let version = doc.opt_str(a, "version").unwrap_or_default();
        let purl = doc.opt_str(a, "purl");
        let declared = doc
            .opt_str(a, "type")
            .and_then(|t| package_type_from_syft(&t));
        let mut p = import::package_from_purl(
            name,
            &version,
            purl.as_deref(),
            declared,
            &mut out.warnings,
            &path,
        );
        p.found_by = doc.opt_str(a, "foundBy");
        // cpes: strings (older schemas) or {cpe, source} objects.
        if let Some(Value::Array(cpes)) = a.get("cpes") {
            for c in cpes {
                let s = c.as_str().or_else(|| c.get("cpe").and_then(Value::as_str));
                if let Some(s) = s.filter(|s| !s.is_empty()) {
                    p.cpes.push(s.to_string());
                }
            }
        }
        // locations: {path, layerID, …} objects (or plain strings).
        if let Some(Value::Array(locs)) = a.get("locations") {
            for l in locs {
                let s = l.as_str().or_else(|| l.get("path").and_then(Value::as_str));
                if let Some(s) = s.filter(|s| !s.is_empty()) {
                    p.locations.push(s.to_string());
                }
            }
        }
        // licenses: strings (older schemas) or {value, spdxExpression, …} objects.
        if let Some(Value::Array(lics)) = a.get("licenses") {
            for l in lics {
                let s = l.as_str().or_else(|| {
                    l.get("spdxExpression")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .or_else(|| l.get("value").and_then(Value::as_str))
                });
                if let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) {
                    if !p.licenses.iter().any(|x| x == s) {
                        p.licenses.push(s.to_string());
                    }
                }
            }
        }
        if let Some(m) = a.get("metadata").filter(|m| m.is_object()) {
            let get = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            if p.arch.is_none() {
                p.arch = get("architecture").or_else(|| get("arch"));
            }
            if let Some(s) = get("source").or_else(|| get("originPackage")) {
                p.source_name = Some(s);
            }
            if let Some(s) = get("sourceVersion") {
                p.source_version = Some(s);
            }
            if let Some(s) = get("sourceRpm") {
                p.metadata.insert("source_rpm".into(), s);
            }
            if let Some(e) = m.get("epoch").and_then(Value::as_i64) {
                p.metadata.insert("epoch".into(), e.to_string());
            }
            if let Some(s) = get("release") {
                p.metadata.insert("release".into(), s);
            }
            // rpm: the module stream the package was built for (RHEL modularity).
            if let Some(s) = get("modularityLabel") {
                p.metadata.insert("modularity_label".into(), s);
            }
            if let Some(s) = get("mainModule") {
                p.metadata.insert("main_module".into(), s);
            }
            if let Some(s) = get("goCompiledVersion") {
                p.metadata.insert("go_toolchain".into(), s);
            }
            if let Some(pom) = m.get("pomProperties") {
                for (src, dst) in [("groupId", "group_id"), ("artifactId", "artifact_id")] {
                    if let Some(s) = pom
                        .get(src)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    {
                        p.metadata
                            .entry(dst.into())
                            .or_insert_with(|| s.to_string());
                    }
                }
            }
        }
        out.packages.push(p);
    }

    if let Some(d) = v.get("distro").filter(|d| d.is_object()) {
        if let Some(id) = doc.opt_str(d, "id") {
            out.distros.push(Distro {
                id: id.to_ascii_lowercase(),
                version_id: doc.opt_str(d, "versionID"),
                codename: doc.opt_str(d, "versionCodename"),
                id_like: match d.get("idLike") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
                    _ => Vec::new(),
                },
                pretty_name: doc.opt_str(d, "prettyName"),
            });
        }
    }

    if let Some(src) = v.get("source").filter(|s| s.is_object()) {
        let meta = src.get("metadata").cloned().unwrap_or(Value::Null);
        let ty = src.get("type").and_then(Value::as_str).unwrap_or("");
        out.image_name = doc
            .opt_str(&meta, "userInput")
            .or_else(|| doc.opt_str(src, "name"));
        if ty == "image" {
            out.image_digest = doc.opt_str(&meta, "manifestDigest").or_else(|| {
                doc.opt_str(src, "version")
                    .filter(|v| v.starts_with("sha256:"))
            });
            out.config_digest = doc.opt_str(&meta, "imageID");
            out.image_tag = meta
                .get("tags")
                .and_then(Value::as_array)
                .and_then(|t| t.first())
                .and_then(Value::as_str)
                .and_then(|t| t.rsplit_once(':'))
                .map(|(_, tag)| tag.to_string())
                .filter(|t| !t.contains('/'));
            let os = doc.opt_str(&meta, "os");
            let arch = doc.opt_str(&meta, "architecture");
            if let (Some(os), Some(arch)) = (os, arch) {
                out.platform = Some(match doc.opt_str(&meta, "variant") {
                    Some(var) => format!("{os}/{arch}/{var}"),
                    None => format!("{os}/{arch}"),
                });
            }
        }
    }
    Ok(out)
}
