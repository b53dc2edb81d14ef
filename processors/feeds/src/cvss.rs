//! CVSS vectors → [`vigil_contracts::Cvss`] scores, computed with the RustSec `cvss`
//! crate. For v3.x the exploitability and impact sub-scores are given the way NVD
//! publishes them (rounded to one decimal; impact with the scope adjustment), so a
//! score computed here equals NVD's `exploitabilityScore` / `impactScore`.

use std::str::FromStr;

use vigil_contracts::{Cvss, Severity};

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Score a CVSS vector string (`CVSS:3.0/…`, `CVSS:3.1/…`, `CVSS:4.0/…`). `None` when the
/// vector is not a v3.x/v4 vector or does not parse (v2 vectors have no prefix and are
/// not scored here).
pub fn score_vector(source: &str, vector: &str) -> Option<Cvss> {
    let vector = vector.trim();
    if vector.starts_with("CVSS:3.") {
        let v = cvss::v3::Vector::from_str(vector).ok()?;
        let version = if vector.starts_with("CVSS:3.0") {
            "3.0"
        } else {
            "3.1"
        };
        let iss = v.impact().value();
        let changed = vector.contains("/S:C");
        let impact = if changed {
            7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powf(15.0)
        } else {
            6.42 * iss
        };
        return Some(Cvss {
            source: source.to_string(),
            version: version.to_string(),
            vector: vector.to_string(),
            base_score: v.base_score().value(),
            exploitability_score: Some(round1(v.exploitability().value())),
            impact_score: Some(round1(impact.max(0.0))),
        });
    }
    if vector.starts_with("CVSS:4.0") {
        let v = cvss::v4::Vector::from_str(vector).ok()?;
        return Some(Cvss {
            source: source.to_string(),
            version: "4.0".to_string(),
            vector: vector.to_string(),
            base_score: round1(v.score().value()),
            exploitability_score: None,
            impact_score: None,
        });
    }
    None
}

/// The qualitative severity of a CVSS score (v3/v4 rating scale).
pub fn severity_of(score: f64) -> Severity {
    if score <= 0.0 {
        Severity::Negligible
    } else if score < 4.0 {
        Severity::Low
    } else if score < 7.0 {
        Severity::Medium
    } else if score < 9.0 {
        Severity::High
    } else {
        Severity::Critical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v31_scores() {
        let c = score_vector("nvd", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H").unwrap();
        assert_eq!(c.base_score, 10.0);
        assert_eq!(c.exploitability_score, Some(3.9));
        assert_eq!(c.impact_score, Some(6.0));
        assert_eq!(c.version, "3.1");
        let c = score_vector("nvd", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N").unwrap();
        assert_eq!((c.version.as_str(), c.base_score), ("3.0", 7.5));
        assert_eq!(c.impact_score, Some(3.6));
    }

    #[test]
    fn v4_and_garbage() {
        let c = score_vector(
            "ghsa",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        )
        .unwrap();
        assert_eq!(c.base_score, 9.3);
        assert!(score_vector("x", "AV:N/AC:L/Au:N/C:P/I:P/A:P").is_none());
        assert!(score_vector("x", "CVSS:3.1/AV:Q").is_none());
        assert_eq!(severity_of(9.8), Severity::Critical);
        assert_eq!(severity_of(6.1), Severity::Medium);
    }
}
