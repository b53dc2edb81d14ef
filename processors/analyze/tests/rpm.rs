//! rpm databases with real bytes: rpm itself builds a package and installs it into a
//! SQLite rpmdb (`rpmbuild`, `rpm --initdb`, `rpm -i --justdb`); BerkeleyDB's own
//! `db5.3_load` writes a real hash database with those header blobs; the ndb layout is
//! built here from the same blobs (Debian's rpm has no ndb or bdb writer).
//! Needs the Debian packages `rpm` and `db5.3-util`: without them the test says so and
//! passes, except under CI (`CI` set), where it fails.

use std::path::Path;
use std::process::Command;

use vigil_analyze::rpm::{self, header, RpmHeader};
use vigil_contracts::PackageType;

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing: CI must install the Debian packages rpm and db5.3-util"
        );
        eprintln!("skipping: {tool} not installed (apt-get install rpm db5.3-util)");
    }
    ok
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SPEC: &str = "Name: vigiltest\nVersion: 1.2.3\nRelease: 4.el9\nEpoch: 2\nSummary: t\nLicense: MIT and GPLv2+\nBuildArch: noarch\n%description\nt\n%install\nmkdir -p %{buildroot}/usr/bin %{buildroot}/etc/vigil\necho hi > %{buildroot}/usr/bin/vigiltest\necho x > %{buildroot}/etc/vigil/conf\n%files\n/usr/bin/vigiltest\n/etc/vigil/conf\n";

/// A real rpmdb.sqlite with one package, made by rpm.
fn sqlite_rpmdb(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("t.spec"), SPEC).unwrap();
    let top = dir.join("top");
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(dir.join("t.spec")));
    let rpm_file = top.join("RPMS/noarch/vigiltest-1.2.3-4.el9.noarch.rpm");
    let db = dir.join("db");
    for args in [vec!["--initdb"], vec!["-i", "--justdb", "--nodeps"]] {
        let mut c = Command::new("rpm");
        c.args(&args)
            .arg("--dbpath")
            .arg(&db)
            .args(["--define", "_db_backend sqlite"]);
        if args[0] == "-i" {
            c.arg(&rpm_file);
        }
        run(&mut c);
    }
    std::fs::read(db.join("rpmdb.sqlite")).unwrap()
}

fn check_vigiltest(p: &vigil_contracts::Package, location: &str) {
    assert_eq!(p.name, "vigiltest");
    assert_eq!(
        p.version, "2:1.2.3-4.el9",
        "rpm prints [epoch:]version-release"
    );
    assert_eq!(p.kind, PackageType::Rpm);
    assert_eq!(p.arch.as_deref(), Some("noarch"));
    assert_eq!(p.licenses, ["MIT and GPLv2+"]);
    assert_eq!(p.source_name.as_deref(), Some("vigiltest"));
    assert_eq!(p.source_version.as_deref(), Some("1.2.3-4.el9"));
    assert_eq!(p.metadata["source_rpm"], "vigiltest-1.2.3-4.el9.src.rpm");
    assert_eq!(p.metadata["epoch"], "2");
    assert_eq!(p.files, ["/etc/vigil/conf", "/usr/bin/vigiltest"]);
    assert_eq!(p.locations, [location]);
    assert_eq!(
        p.purl.as_deref(),
        Some("pkg:rpm/rhel/vigiltest@1.2.3-4.el9?arch=noarch&distro=rhel-9&epoch=2&upstream=vigiltest-1.2.3-4.el9.src.rpm")
    );
}

fn rhel() -> vigil_contracts::Distro {
    vigil_contracts::Distro {
        id: "rhel".into(),
        version_id: Some("9".into()),
        ..Default::default()
    }
}

/// db_dump's text format, bytevalue: keys and values in hex.
fn db_load_input(blobs: &[Vec<u8>]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut s =
        String::from("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=4096\nHEADER=END\n");
    for (i, b) in blobs.iter().enumerate() {
        s += &format!(" {}\n {}\n", hex(&(i as u32 + 1).to_le_bytes()), hex(b));
    }
    s + "DATA=END\n"
}

#[test]
fn sqlite_bdb_and_ndb_databases_from_real_header_blobs() {
    if !have("rpmbuild") || !have("rpm") || !have("db5.3_load") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = sqlite_rpmdb(tmp.path());
    let d = rhel();

    // SQLite, as rpm wrote it.
    let loc = "/var/lib/rpm/rpmdb.sqlite";
    let pk = rpm::parse_rpmdb(loc, &sqlite, Some(&d)).unwrap();
    assert_eq!(pk.len(), 1, "{pk:?}");
    check_vigiltest(&pk[0], loc);
    let real = rpm::sqlite::blobs(&sqlite).unwrap();

    // BerkeleyDB hash: the real blob (larger than a quarter page: off-page) and a small
    // hand-built one (stored inline on the hash page).
    let small = header::build(
        &[
            (header::tag::NAME, &["tiny"]),
            (header::tag::VERSION, &["1"]),
            (header::tag::RELEASE, &["1"]),
        ],
        &[],
    );
    assert!(real[0].len() > 1024 && small.len() < 512);
    let input = tmp.path().join("dump.txt");
    std::fs::write(&input, db_load_input(&[real[0].clone(), small])).unwrap();
    let bdb_path = tmp.path().join("Packages");
    run(Command::new("db5.3_load")
        .arg("-f")
        .arg(&input)
        .arg(&bdb_path));
    let bdb = std::fs::read(&bdb_path).unwrap();
    let loc = "/var/lib/rpm/Packages";
    let mut pk = rpm::parse_rpmdb(loc, &bdb, Some(&d)).unwrap();
    pk.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(pk.len(), 2, "{pk:?}");
    assert_eq!(
        (pk[0].name.as_str(), pk[0].version.as_str()),
        ("tiny", "1-1")
    );
    check_vigiltest(&pk[1], loc);

    // ndb, laid out as rpm's ndb backend does.
    let loc = "/usr/lib/sysimage/rpm/Packages.db";
    let ndb = rpm::ndb::build(&real);
    let pk = rpm::parse_rpmdb(loc, &ndb, Some(&d)).unwrap();
    check_vigiltest(&pk[0], loc);

    // Hostile versions of each: truncated at every 997th byte, garbage: errors or fewer
    // packages, never a panic.
    for db in [&sqlite, &bdb, &ndb] {
        for cut in (0..db.len()).step_by(997) {
            let _ = rpm::parse_rpmdb("/x", &db[..cut], None);
        }
        let mut bad = db.clone();
        for i in (64..bad.len()).step_by(61) {
            bad[i] ^= 0x5a;
        }
        let _ = rpm::parse_rpmdb("/x", &bad, None);
    }
    assert!(rpm::parse_rpmdb("/x", b"not a database at all, no magic", None).is_err());
}

#[test]
fn header_blob_round_trip_and_evr_forms() {
    let b = header::build(
        &[
            (header::tag::NAME, &["openssl-libs"]),
            (header::tag::VERSION, &["3.0.7"]),
            (header::tag::RELEASE, &["24.el9"]),
        ],
        &[],
    );
    let h = RpmHeader::parse(&b).unwrap();
    assert_eq!(rpm::evr(&h), "3.0.7-24.el9");
    assert_eq!(
        rpm::split_source_rpm("openssl-3.0.7-24.el9.src.rpm"),
        Some(("openssl".into(), "3.0.7-24.el9".into()))
    );
    // ndb built by hand round-trips.
    let n = rpm::ndb::build(&[b.clone(), b]);
    assert_eq!(rpm::ndb::blobs(&n).unwrap().len(), 2);
}

#[test]
fn file_digests_of_a_package_rpmbuild_made() {
    if !have("rpmbuild") || !have("rpm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = sqlite_rpmdb(tmp.path());
    let pk = rpm::parse_rpmdb("/var/lib/rpm/rpmdb.sqlite", &sqlite, Some(&rhel())).unwrap();
    // rpm records sha256 (FILEDIGESTALGO 8) of each file's content: `echo hi`, `echo x`.
    assert_eq!(
        pk[0]
            .file_digests
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                "/etc/vigil/conf",
                "sha256:73cb3858a687a8494ca3323053016282f3dad39d42cf62ca4e79dda2aac7d9ac"
            ),
            (
                "/usr/bin/vigiltest",
                "sha256:98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
            ),
        ]
    );
    // The same blob without FILEDIGESTALGO reads as md5 (rpm < 4.6 headers).
    let real = rpm::sqlite::blobs(&sqlite).unwrap();
    let mut h = RpmHeader::parse(&real[0]).unwrap();
    assert_eq!(h.file_digest_algo, Some(8));
    h.file_digest_algo = None;
    assert!(rpm::file_digests(&h)
        .values()
        .all(|d| d.starts_with("md5:")));
}
