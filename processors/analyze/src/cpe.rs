//! CPE 2.3 candidates per package, in the manner of Syft's generator: vendor and
//! product candidates from the ecosystem's naming conventions, one formatted string per
//! pair, the ecosystem's `target_sw` where NVD uses one. Pure.

use vigil_contracts::{Package, PackageType};

/// Escape one CPE 2.3 formatted-string component: letters, digits, `_`, `-` and `.`
/// stand as they are, spaces become `_`, anything else is backslash-escaped; empty is
/// `*`.
pub fn escape(s: &str) -> String {
    if s.is_empty() {
        return "*".into();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') => out.push(c),
            ' ' => out.push('_'),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out
}

/// `cpe:2.3:a:VENDOR:PRODUCT:VERSION:*:*:*:*:TARGET_SW:*:*`.
pub fn format(vendor: &str, product: &str, version: &str, target_sw: &str) -> String {
    format!(
        "cpe:2.3:a:{}:{}:{}:*:*:*:*:{}:*:*",
        escape(vendor),
        escape(product),
        escape(version),
        if target_sw.is_empty() {
            "*".to_string()
        } else {
            escape(target_sw)
        }
    )
}

/// Well-known runtimes reported as binaries: (package name, vendor, product).
const RUNTIMES: &[(&str, &str, &str)] = &[
    ("python", "python_software_foundation", "python"),
    ("python", "python", "python"),
    ("node", "nodejs", "node.js"),
    ("nodejs", "nodejs", "node.js"),
    ("busybox", "busybox", "busybox"),
    ("java", "oracle", "openjdk"),
    ("openjdk", "oracle", "openjdk"),
    ("go", "golang", "go"),
];

/// The CPE candidates of a package (none for a package without a version).
pub fn generate(p: &Package) -> Vec<String> {
    let v = p.version.as_str();
    if v.is_empty() {
        return vec![];
    }
    let name = p.name.as_str();
    let mut pairs: Vec<(String, String, &'static str)> = Vec::new();
    fn push(
        pairs: &mut Vec<(String, String, &'static str)>,
        vendor: &str,
        product: &str,
        target: &'static str,
    ) {
        let t = (vendor.to_string(), product.to_string(), target);
        if !vendor.is_empty() && !product.is_empty() && !pairs.contains(&t) {
            pairs.push(t);
        }
    }
    macro_rules! add {
        ($v:expr, $p:expr, $t:expr) => {
            push(&mut pairs, $v, $p, $t)
        };
    }
    match p.kind {
        PackageType::Python => {
            let n = crate::python::normalize_name(name);
            add!(&n, &n, "");
            add!(&n, &n, "python");
            add!(&format!("python-{n}"), &n, "");
            add!("python", &n, "python");
        }
        PackageType::Npm => match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, n)) => {
                add!(scope, n, "node.js");
                add!(n, n, "node.js");
            }
            None => {
                add!(name, name, "");
                add!(name, name, "node.js");
            }
        },
        PackageType::Gem => {
            add!(name, name, "");
            add!(name, name, "ruby");
        }
        PackageType::Php => {
            let (ns, n) = name.split_once('/').unwrap_or((name, name));
            add!(ns, n, "");
            add!(n, n, "");
        }
        PackageType::RustCrate => {
            add!(name, name, "");
            add!(name, name, "rust");
        }
        PackageType::Dotnet => {
            add!(name, name, "");
            add!(name, name, ".net");
        }
        PackageType::GoModule => {
            if name == "stdlib" {
                let ver = v.strip_prefix("go").unwrap_or(v);
                return vec![format!("cpe:2.3:a:golang:go:{}:-:*:*:*:*:*:*", escape(ver))];
            }
            let parts: Vec<&str> = name.split('/').collect();
            let product = parts.last().copied().unwrap_or(name);
            if parts.len() >= 3 && matches!(parts[0], "github.com" | "gitlab.com" | "bitbucket.org")
            {
                add!(parts[1], parts[2], "");
            } else if parts.len() >= 2 {
                let host = parts[0].split('.').rev().nth(1).unwrap_or(parts[0]);
                add!(host, product, "");
            }
            add!(product, product, "");
        }
        PackageType::JavaArchive => {
            let artifact = p
                .metadata
                .get("artifact_id")
                .map(String::as_str)
                .unwrap_or(name);
            if let Some(g) = p.metadata.get("group_id") {
                let segs: Vec<&str> = g.split('.').collect();
                let vendor = match segs.as_slice() {
                    [tld, org, ..] if matches!(*tld, "org" | "com" | "io" | "net" | "de") => *org,
                    [first, ..] => *first,
                    [] => artifact,
                };
                add!(vendor, artifact, "");
            }
            add!(artifact, artifact, "");
        }
        PackageType::Binary => {
            for (n, vendor, product) in RUNTIMES {
                if *n == name {
                    add!(vendor, product, "");
                }
            }
            if pairs.is_empty() {
                add!(name, name, "");
            }
        }
        PackageType::Deb | PackageType::Apk | PackageType::Rpm => {
            add!(name, name, "");
            if let Some(s) = p.source_name.as_deref().filter(|s| *s != name) {
                add!(s, s, "");
            }
            if let Some(vendor) = p.metadata.get("vendor") {
                let vendor = vendor
                    .split([',', ' '])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                add!(&vendor, name, "");
            }
        }
    }
    pairs
        .into_iter()
        .map(|(vn, pr, t)| format(&vn, &pr, v, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syft_style_candidates() {
        let p = Package::new("Jinja2", "2.10", PackageType::Python);
        let c = generate(&p);
        assert!(
            c.contains(&"cpe:2.3:a:jinja2:jinja2:2.10:*:*:*:*:python:*:*".to_string()),
            "{c:?}"
        );
        assert!(c.contains(&"cpe:2.3:a:python-jinja2:jinja2:2.10:*:*:*:*:*:*:*".to_string()));
        let p = Package::new("@babel/core", "7.0.0", PackageType::Npm);
        assert_eq!(
            generate(&p)[0],
            "cpe:2.3:a:babel:core:7.0.0:*:*:*:*:node.js:*:*"
        );
        let p = Package::new("stdlib", "go1.19.8", PackageType::GoModule);
        assert_eq!(generate(&p), ["cpe:2.3:a:golang:go:1.19.8:-:*:*:*:*:*:*"]);
        let p = Package::new(
            "github.com/evanw/esbuild",
            "v0.14.54",
            PackageType::GoModule,
        );
        assert_eq!(
            generate(&p)[0],
            "cpe:2.3:a:evanw:esbuild:v0.14.54:*:*:*:*:*:*:*"
        );
        let mut p = Package::new("log4j-core", "2.14.1", PackageType::JavaArchive);
        p.metadata
            .insert("group_id".into(), "org.apache.logging.log4j".into());
        assert_eq!(
            generate(&p)[0],
            "cpe:2.3:a:apache:log4j-core:2.14.1:*:*:*:*:*:*:*"
        );
        let p = Package::new("libc6", "2.36-9+deb12u4", PackageType::Deb);
        assert_eq!(
            generate(&p)[0],
            "cpe:2.3:a:libc6:libc6:2.36-9\\+deb12u4:*:*:*:*:*:*:*"
        );
        assert!(generate(&Package::new("x", "", PackageType::Npm)).is_empty());
    }
}
