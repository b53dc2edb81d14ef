//! RHEL modularity: the rpm header tag MODULARITYLABEL (5096) becomes
//! `metadata["modularity_label"]`, from a header built here and from a real rpmdb made by
//! `rpmbuild` (spec tag `ModularityLabel:`) and `rpm -i --justdb`. The rpmdb half needs
//! the Debian package `rpm`: without it the test says so and passes, except under CI.

use std::path::Path;
use std::process::Command;

use vigil_analyze::rpm::{self, header, RpmHeader};

const LABEL: &str = "nodejs:18:8090020231019152822:a75119d5";

fn header_package(label: Option<&str>) -> vigil_contracts::Package {
    let mut strings: Vec<(u32, &[&str])> = vec![
        (header::tag::NAME, &["nodejs"]),
        (header::tag::VERSION, &["18.18.2"]),
        (header::tag::RELEASE, &["1.module+el8.9.0+20473+c4e3d824"]),
    ];
    let l = label.map(|l| [l]);
    if let Some(l) = &l {
        strings.push((header::tag::MODULARITYLABEL, l));
    }
    let blob = header::build(&strings, &[(header::tag::EPOCH, &[1])]);
    let h = RpmHeader::parse(&blob).unwrap();
    rpm::package(&h, "/var/lib/rpm/rpmdb.sqlite", None).unwrap()
}

#[test]
fn modularity_label_from_a_built_header() {
    let p = header_package(Some(LABEL));
    assert_eq!(
        p.metadata.get("modularity_label").map(String::as_str),
        Some(LABEL)
    );
    assert_eq!(p.version, "1:18.18.2-1.module+el8.9.0+20473+c4e3d824");
    // No tag, or an empty one: not built for a module.
    for p in [
        header_package(None),
        header_package(Some("")),
        header_package(Some("  ")),
    ] {
        assert_eq!(p.metadata.get("modularity_label"), None, "{:?}", p.metadata);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_rpm(dir: &Path, name: &str, label: Option<&str>) -> std::path::PathBuf {
    let label_line = label
        .map(|l| format!("ModularityLabel: {l}\n"))
        .unwrap_or_default();
    let spec = format!(
        "Name: {name}\nVersion: 18.18.2\nRelease: 1.module+el8.9.0+1\nEpoch: 1\nSummary: t\n\
         License: MIT\nBuildArch: noarch\n{label_line}%description\nt\n%files\n"
    );
    let spec_path = dir.join(format!("{name}.spec"));
    std::fs::write(&spec_path, spec).unwrap();
    let top = dir.join("top");
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec_path));
    top.join(format!(
        "RPMS/noarch/{name}-18.18.2-1.module+el8.9.0+1.noarch.rpm"
    ))
}

#[test]
fn modularity_label_from_a_real_rpmdb() {
    let ok = ["rpm", "rpmbuild"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "rpm is missing: CI must install the Debian package rpm"
        );
        eprintln!("skipping: rpm not installed (apt-get install rpm)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let modular = build_rpm(tmp.path(), "nodejs", Some(LABEL));
    let plain = build_rpm(tmp.path(), "plainpkg", None);
    let db = tmp.path().join("db");
    let rpm_cmd = |args: &[&str]| {
        let mut c = Command::new("rpm");
        c.args(args)
            .arg("--dbpath")
            .arg(&db)
            .args(["--define", "_db_backend sqlite"]);
        c
    };
    run(&mut rpm_cmd(&["--initdb"]));
    run(rpm_cmd(&["-i", "--justdb", "--nodeps"])
        .arg(&modular)
        .arg(&plain));
    let bytes = std::fs::read(db.join("rpmdb.sqlite")).unwrap();
    let mut pkgs = rpm::parse_rpmdb("/var/lib/rpm/rpmdb.sqlite", &bytes, None).unwrap();
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<(&str, Option<&str>)> = pkgs
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.metadata.get("modularity_label").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(got, [("nodejs", Some(LABEL)), ("plainpkg", None)]);
}
