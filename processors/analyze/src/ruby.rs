//! Ruby: installed gems (`specifications/*.gemspec`) and declared `Gemfile.lock`.

use vigil_contracts::{Package, PackageType};

use crate::catalog::{pkg, purl, CatalogCtx};

fn gem(name: &str, version: &str, path: &str) -> Package {
    pkg(
        name,
        version,
        PackageType::Gem,
        path,
        purl("gem", "", name, version, &[]),
    )
}

/// Quoted strings of a Ruby expression: `["MIT".freeze, "Ruby".freeze]` → `MIT`, `Ruby`.
fn strings(expr: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = expr;
    while let Some(start) = rest.find(['"', '\'']) {
        let q = rest.as_bytes()[start] as char;
        let after = &rest[start + 1..];
        let Some(end) = after.find(q) else { break };
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// A gemspec as RubyGems writes it into `specifications/`: `s.name = "rake".freeze`,
/// `s.version = "13.0.6"`, `s.licenses = ["MIT".freeze]`. Not evaluated: read.
pub fn parse_gemspec(path: &str, text: &str) -> Option<Package> {
    let (mut name, mut version, mut licenses) = (None, None, vec![]);
    for line in text.lines() {
        let l = line.trim();
        let Some((lhs, rhs)) = l.split_once('=') else {
            continue;
        };
        let field = lhs.trim().rsplit('.').next().unwrap_or("").trim();
        match field {
            "name" if name.is_none() => name = strings(rhs).into_iter().next(),
            "version" if version.is_none() => version = strings(rhs).into_iter().next(),
            "licenses" | "license" => licenses.extend(strings(rhs)),
            _ => {}
        }
    }
    let mut p = gem(&name?, &version?, path);
    p.licenses = licenses;
    Some(p)
}

/// The `ruby-installed-gemspec` cataloger.
pub fn catalog_gemspec(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    parse_gemspec(path, &String::from_utf8_lossy(content))
        .into_iter()
        .collect()
}

/// `Gemfile.lock`: the `specs:` of the `GEM` (also `GIT`/`PATH`) sections, four-space
/// indented `name (version[-platform])` lines.
pub fn catalog_gemfile_lock(_ctx: &CatalogCtx<'_>, path: &str, content: &[u8]) -> Vec<Package> {
    let text = String::from_utf8_lossy(content);
    let mut out = vec![];
    let mut in_specs = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_specs = false;
            continue;
        }
        if line.trim() == "specs:" {
            in_specs = true;
            continue;
        }
        if !in_specs || !line.starts_with("    ") || line.starts_with("     ") {
            continue;
        }
        if let Some((n, v)) = line.trim().split_once(" (") {
            let v = v.trim_end_matches(')');
            out.push(gem(n, v, path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemspec_and_lock() {
        let spec = "# -*- encoding: utf-8 -*-\n# stub: rake 13.0.6 ruby lib\n\nGem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  s.version = \"13.0.6\"\n  s.licenses = [\"MIT\".freeze]\n  s.require_paths = [\"lib\".freeze]\nend\n";
        let p = parse_gemspec(
            "/usr/lib/ruby/gems/3.1.0/specifications/rake-13.0.6.gemspec",
            spec,
        )
        .unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("rake", "13.0.6"));
        assert_eq!(p.licenses, ["MIT"]);
        assert_eq!(p.purl.as_deref(), Some("pkg:gem/rake@13.0.6"));
        let lock = "GEM\n  remote: https://rubygems.org/\n  specs:\n    actionpack (7.0.4)\n      rack (~> 2.0)\n    nokogiri (1.13.9-x86_64-linux)\n\nPLATFORMS\n  x86_64-linux\n\nDEPENDENCIES\n  rails\n";
        let p = catalog_gemfile_lock(
            &crate::catalog::tests_ctx(),
            "/app/Gemfile.lock",
            lock.as_bytes(),
        );
        let nv: Vec<_> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            nv,
            [("actionpack", "7.0.4"), ("nokogiri", "1.13.9-x86_64-linux")]
        );
    }
}
