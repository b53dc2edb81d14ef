//! NVD CVE API 2.0 records (`vulnerabilities[].cve`), parsed into enrichment records.
//!
//! Convention: one [`Advisory`] per CVE under namespace [`NVD_NAMESPACE`] with
//! `package` = `id` = the CVE id. It carries no ranges (NVD CPE configurations are not
//! used for matching), only what enriches a finding: `cvss` (v3.1, v3.0, v4.0 in that
//! order, NVD's primary score first), `cwes`, `description`, `published`, `modified`,
//! `urls` and the severity of the primary v3.x score. A `Rejected` CVE is `withdrawn`.

use serde_json::Value;
use vigil_contracts::{Advisory, Cvss, FixState, Severity};

/// The namespace NVD enrichment records live in.
pub const NVD_NAMESPACE: &str = "nvd";

/// Paging fields of an API response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageInfo {
    pub results_per_page: u64,
    pub start_index: u64,
    pub total_results: u64,
}

/// The paging fields of an API response, when the document is one.
pub fn page_info(doc: &Value) -> Option<PageInfo> {
    let n = |k: &str| doc.get(k).and_then(Value::as_u64);
    Some(PageInfo {
        results_per_page: n("resultsPerPage")?,
        start_index: n("startIndex").unwrap_or(0),
        total_results: n("totalResults")?,
    })
}

fn metric_source(s: Option<&str>) -> String {
    match s {
        None | Some("nvd@nist.gov") => "nvd".to_string(),
        Some(s) => s.to_string(),
    }
}

fn metrics(cve: &Value, key: &str) -> Vec<(bool, Cvss, Option<String>)> {
    let mut out = Vec::new();
    for m in cve
        .pointer(&format!("/metrics/{key}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(data) = m.get("cvssData") else {
            continue;
        };
        let (Some(vector), Some(base)) = (
            data.get("vectorString").and_then(Value::as_str),
            data.get("baseScore").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let version = data
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let primary = m.get("type").and_then(Value::as_str) == Some("Primary");
        let severity = data
            .get("baseSeverity")
            .or_else(|| m.get("baseSeverity"))
            .and_then(Value::as_str)
            .map(str::to_string);
        out.push((
            primary,
            Cvss {
                source: metric_source(m.get("source").and_then(Value::as_str)),
                version,
                vector: vector.to_string(),
                base_score: base,
                exploitability_score: m.get("exploitabilityScore").and_then(Value::as_f64),
                impact_score: m.get("impactScore").and_then(Value::as_f64),
            },
            severity,
        ));
    }
    // Primary (NVD's own) scores first, order otherwise kept.
    out.sort_by_key(|(p, _, _)| !*p);
    out
}

/// Parse one `cve` object.
pub fn parse_cve(feed: &str, cve: &Value) -> Result<Advisory, String> {
    let id = cve
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| id.starts_with("CVE-"))
        .ok_or("NVD record without a CVE id")?;
    let mut cvss = Vec::new();
    let mut severity = None;
    for key in ["cvssMetricV31", "cvssMetricV30", "cvssMetricV40"] {
        for (_, c, sev) in metrics(cve, key) {
            if severity.is_none() {
                severity = sev.map(|s| Severity::parse_loose(&s));
            }
            cvss.push(c);
        }
    }
    if severity.is_none() {
        // v2 only (old records): its severity word, no vector scoring.
        severity = cve
            .pointer("/metrics/cvssMetricV2/0/baseSeverity")
            .and_then(Value::as_str)
            .map(Severity::parse_loose);
    }
    let mut cwes: Vec<String> = Vec::new();
    for w in cve
        .get("weaknesses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for d in w
            .get("description")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(v) = d.get("value").and_then(Value::as_str) {
                if !cwes.iter().any(|c| c == v) {
                    cwes.push(v.to_string());
                }
            }
        }
    }
    let descriptions = cve.get("descriptions").and_then(Value::as_array);
    let description = descriptions
        .and_then(|ds| {
            ds.iter()
                .find(|d| d.get("lang").and_then(Value::as_str) == Some("en"))
                .or_else(|| ds.first())
        })
        .and_then(|d| d.get("value").and_then(Value::as_str))
        .map(str::to_string);
    let urls = cve
        .get("references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("url").and_then(Value::as_str).map(str::to_string))
        .collect();
    let s = |k: &str| cve.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Advisory {
        id: id.to_string(),
        aliases: Vec::new(),
        namespace: NVD_NAMESPACE.to_string(),
        package: id.to_string(),
        feed: feed.to_string(),
        severity: severity.unwrap_or(Severity::Unknown),
        state: FixState::NotFixed,
        ranges: Vec::new(),
        versions: Vec::new(),
        description,
        urls,
        published: s("published"),
        modified: s("lastModified"),
        cvss,
        cwes,
        withdrawn: s("vulnStatus").as_deref() == Some("Rejected"),
        vendor_only: false,
        fix_published: None,
        module: None,
    })
}

fn collect(feed: &str, origin: &str, v: &Value, out: &mut Vec<Advisory>) {
    let mut one = |cve: &Value| match parse_cve(feed, cve) {
        Ok(a) => out.push(a),
        Err(e) => tracing::warn!(feed, origin, error = e, "skipping malformed NVD record"),
    };
    if let Some(vs) = v.get("vulnerabilities").and_then(Value::as_array) {
        for item in vs {
            one(item.get("cve").unwrap_or(item));
        }
    } else if let Some(cve) = v.get("cve") {
        one(cve);
    } else if let Some(items) = v.as_array() {
        for item in items {
            collect(feed, origin, item, out);
        }
    } else {
        one(v);
    }
}

/// Parse one JSON document: an API 2.0 response page, a `{"cve": …}` wrapper, a bare
/// CVE object, or an array of those. Malformed records are skipped with a warning;
/// `Err` only when the bytes are not JSON.
pub fn parse_document(feed: &str, origin: &str, bytes: &[u8]) -> Result<Vec<Advisory>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("{origin}: {e}"))?;
    let mut out = Vec::new();
    collect(feed, origin, &v, &mut out);
    Ok(out)
}
