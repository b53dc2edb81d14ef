//! Squash, distro detection and parsers on hand-built layer indexes.

use vigil_analyze::{
    analyze_at, detect_distro, parse_apk, parse_dpkg, squash, Resolved, CATALOGERS,
};
use vigil_contracts::{
    Compression, EntryKind, FileEntry, ImageConfig, ImageDescriptor, ImageRef, KeptFile,
    LayerIndex, PackageType, SourceKind,
};

fn e(path: &str, kind: EntryKind, link: Option<&str>) -> FileEntry {
    FileEntry {
        path: path.into(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 1,
        link: link.map(str::to_string),
        sha256: None,
        md5: None,
        sha1: None,
    }
}
fn f(path: &str) -> FileEntry {
    e(path, EntryKind::File, None)
}
fn d(path: &str) -> FileEntry {
    e(path, EntryKind::Dir, None)
}

fn layer(entries: Vec<FileEntry>, kept: &[(&str, &str)]) -> LayerIndex {
    LayerIndex {
        layer_digest: "sha256:l".into(),
        entries,
        kept: kept
            .iter()
            .map(|(p, c)| KeptFile {
                path: p.to_string(),
                content: c.as_bytes().to_vec(),
                truncated: false,
            })
            .collect(),
        uncompressed_size: 10,
        extractor_version: 1,
        warnings: vec![],
        secrets: Vec::new(),
        packages: Vec::new(),
        content_matches: Vec::new(),
    }
}

fn paths(fs: &vigil_analyze::SquashedFs) -> Vec<&str> {
    fs.entries.keys().map(String::as_str).collect()
}

#[test]
fn whiteouts_remove_the_path_and_its_subtree_from_lower_layers() {
    let l1 = layer(
        vec![
            d("/opt"),
            d("/opt/app"),
            f("/opt/app/secret.txt"),
            f("/opt/app/keep.txt"),
            d("/usr/lib/pkg"),
            f("/usr/lib/pkg/a.py"),
            f("/usr/lib/pkg2"),
            f("/etc/passwd"),
        ],
        &[("/etc/passwd", "root:x:0:0::/root:/bin/sh\n")],
    );
    let l2 = layer(
        vec![
            e("/opt/app/secret.txt", EntryKind::Whiteout, None),
            e("/usr/lib/pkg", EntryKind::Whiteout, None),
            e("/etc/passwd", EntryKind::Whiteout, None),
        ],
        &[],
    );
    let fs = squash(&[l1, l2]);
    assert_eq!(
        paths(&fs),
        ["/opt", "/opt/app", "/opt/app/keep.txt", "/usr/lib/pkg2"]
    );
    assert!(fs.files.is_empty(), "a whiteout removes kept bytes too");
}

#[test]
fn opaque_dirs_hide_lower_children_but_keep_their_own_layer() {
    let l1 = layer(
        vec![
            d("/opt/app/cache"),
            f("/opt/app/cache/a.txt"),
            f("/opt/app/cache/b.txt"),
            f("/opt/app/cachefile"),
        ],
        &[],
    );
    let l2 = layer(
        vec![
            d("/opt/app/cache"),
            e("/opt/app/cache", EntryKind::Opaque, None),
            f("/opt/app/cache/c.txt"),
        ],
        &[],
    );
    let fs = squash(&[l1.clone(), l2.clone()]);
    assert_eq!(
        paths(&fs),
        [
            "/opt/app/cache",
            "/opt/app/cache/c.txt",
            "/opt/app/cachefile"
        ]
    );
    // Order inside the layer does not matter: the marker after the new entry.
    let mut l2b = l2;
    l2b.entries.rotate_left(2);
    assert_eq!(paths(&squash(&[l1, l2b])), paths(&fs));
}

#[test]
fn later_layers_override_and_kept_files_squash_the_same_way() {
    let status1 = "Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: install ok installed\nVersion: 2\n";
    let status2 = "Package: a\nStatus: install ok installed\nVersion: 1.1\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n";
    let l1 = layer(
        vec![f("/var/lib/dpkg/status"), d("/x"), f("/x/y")],
        &[("/var/lib/dpkg/status", status1)],
    );
    let l2 = layer(
        vec![
            f("/var/lib/dpkg/status"),
            e("/x", EntryKind::Symlink, Some("/z")),
        ],
        &[("/var/lib/dpkg/status", status2)],
    );
    let fs = squash(&[l1, l2]);
    assert_eq!(
        fs.entries["/x"].kind,
        EntryKind::Symlink,
        "a file replaces a lower directory"
    );
    assert!(!fs.entries.contains_key("/x/y"));
    let p = parse_dpkg(
        "/var/lib/dpkg/status",
        fs.read("/var/lib/dpkg/status").unwrap(),
        None,
    );
    assert_eq!(p.len(), 1, "config-files only is not installed");
    assert_eq!((p[0].name.as_str(), p[0].version.as_str()), ("a", "1.1"));
}

#[test]
fn os_release_through_a_relative_symlink_and_a_symlinked_directory() {
    let l = layer(
        vec![
            e("/etc/os-release", EntryKind::Symlink, Some("../usr/lib/os-release")),
            f("/usr/lib/os-release"),
            e("/lib", EntryKind::Symlink, Some("usr/lib")),
        ],
        &[(
            "/usr/lib/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        )],
    );
    let fs = squash(&[l]);
    assert_eq!(
        fs.resolve("/etc/os-release"),
        Resolved::Path("/usr/lib/os-release".into())
    );
    assert_eq!(
        fs.resolve("/lib/os-release"),
        Resolved::Path("/usr/lib/os-release".into())
    );
    let mut w = vec![];
    let d = detect_distro(&fs, &mut w).unwrap();
    assert_eq!(
        (
            d.id.as_str(),
            d.version_id.as_deref(),
            d.codename.as_deref()
        ),
        ("debian", Some("12"), Some("bookworm"))
    );
    assert!(w.is_empty());
}

#[test]
fn a_symlink_loop_ends_with_a_warning() {
    let l = layer(
        vec![
            e("/etc/os-release", EntryKind::Symlink, Some("/etc/a")),
            e("/etc/a", EntryKind::Symlink, Some("b")),
            e("/etc/b", EntryKind::Symlink, Some("./a")),
            e(
                "/usr/lib/os-release",
                EntryKind::Symlink,
                Some("../lib/os-release"),
            ),
        ],
        &[("/etc/debian_version", "12.7\n")],
    );
    let fs = squash(&[l]);
    assert_eq!(fs.resolve("/etc/os-release"), Resolved::Loop);
    let mut w = vec![];
    let d = detect_distro(&fs, &mut w).unwrap();
    assert_eq!(
        (d.id.as_str(), d.version_id.as_deref()),
        ("debian", Some("12")),
        "falls back"
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("/etc/os-release"));
}

#[test]
fn no_distro_without_release_files() {
    let fs = squash(&[layer(vec![f("/usr/local/bin/app")], &[])]);
    assert!(detect_distro(&fs, &mut vec![]).is_none());
    assert!(detect_distro(&squash(&[]), &mut vec![]).is_none());
}

#[test]
fn fallback_release_files() {
    for (path, text, id, ver) in [
        ("/etc/alpine-release", "3.19.1\n", "alpine", "3.19.1"),
        (
            "/etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
            "centos",
            "7",
        ),
        (
            "/etc/system-release",
            "Amazon Linux release 2023 (Amazon Linux)\n",
            "amzn",
            "2023",
        ),
        (
            "/etc/lsb-release",
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\n",
            "ubuntu",
            "22.04",
        ),
    ] {
        let fs = squash(&[layer(vec![f(path)], &[(path, text)])]);
        let d = detect_distro(&fs, &mut vec![]).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(
            (d.id.as_str(), d.version_id.as_deref()),
            (id, Some(ver)),
            "{path}"
        );
    }
}

const APK: &str = "C:Q1Ksd9rk3xf+F6yv6Y9pXFBVzG4a0=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:407278\nI:667648\nT:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\nm:Timo Teräs <timo.teras@iki.fi>\nt:1712586389\nc:b8a8b1f0a63e9c2b5c7a9fcf5a6d3c1e1c3a5d4f\nF:lib\nR:ld-musl-x86_64.so.1\na:0:0:755\nZ:Q1iUaq6nF5zXb8AR3LfTDvCH+hHwQ=\n\nC:Q1pGs+oLn6U=\nP:busybox-binsh\nV:1.36.1-r15\nA:x86_64\nS:1545\nI:1\nT:busybox ash /bin/sh\nU:https://busybox.net/\nL:GPL-2.0-only\no:busybox\nm:Sören Tempel <soeren+alpine@soeren-tempel.net>\nt:1707764040\nc:f0e4d1c0c0b1b3f4b8ea5f9b7e2b1d5b0a2c3d4e\nD:busybox=1.36.1-r15\np:cmd:sh=1.36.1-r15 /bin/sh\nF:bin\nR:sh\na:0:0:777\nZ:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\n\nC:Q1Fg+vuAZ5XzHa/uk0bGZ0TtLyJ=\nP:ca-certificates-bundle\nV:20240226-r0\nA:x86_64\nS:125207\nI:237568\nT:Pre generated bundle of Mozilla certificates\nU:https://www.mozilla.org/en-US/about/governance/policies/security-group/certs/\nL:MPL-2.0 AND MIT\no:ca-certificates\nm:Natanael Copa <ncopa@alpinelinux.org>\nt:1709061394\nc:5e8bf4dbe2d8f2b93f0e4e8e6c7f5b0e8f0a1b2c\np:ca-certificates-cacert=20240226-r0\nF:etc\nF:etc/ssl\nF:etc/ssl/certs\nR:ca-certificates.crt\na:0:0:644\nZ:Q1pIRNFD1kKoGp6lBD6JAU9NbcgTQ=\n\n";

#[test]
fn apk_database() {
    let distro = vigil_contracts::Distro {
        id: "alpine".into(),
        version_id: Some("3.19.1".into()),
        ..Default::default()
    };
    let p = parse_apk("/lib/apk/db/installed", APK.as_bytes(), Some(&distro));
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].name, "musl");
    assert_eq!(p[0].version, "1.2.4_git20230717-r4");
    assert_eq!(p[0].arch.as_deref(), Some("x86_64"));
    assert_eq!(p[0].kind, PackageType::Apk);
    assert_eq!(p[0].licenses, ["MIT"]);
    assert_eq!(
        p[0].purl.as_deref(),
        Some("pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1")
    );
    assert_eq!(p[1].source_name.as_deref(), Some("busybox"));
    assert_eq!(
        p[1].purl.as_deref(),
        Some("pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1&upstream=busybox")
    );
    assert_eq!(p[2].licenses, ["MPL-2.0 AND MIT"]);
    assert_eq!(p[2].locations, ["/lib/apk/db/installed"]);
}

#[test]
fn distroless_status_d() {
    let l = layer(
        vec![
            f("/var/lib/dpkg/status.d/tzdata"),
            f("/var/lib/dpkg/status.d/tzdata.md5sums"),
            f("/var/lib/dpkg/status.d/libc6"),
            f("/etc/os-release"),
        ],
        &[
            ("/var/lib/dpkg/status.d/tzdata", "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\nMaintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\nDescription: time zone and daylight-saving time data\n This package contains data required for the implementation of\n standard local time for many representative locations around the\n globe.\n"),
            ("/var/lib/dpkg/status.d/tzdata.md5sums", "0123  usr/share/zoneinfo/UTC\n"),
            ("/var/lib/dpkg/status.d/libc6", "Package: libc6\nSource: glibc (2.36-9+deb12u4)\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\n"),
            ("/etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        ],
    );
    let a = analyze_at(&descriptor(), &[l], 7);
    let names: Vec<&str> = a.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["libc6", "tzdata"]);
    let libc = &a.packages[0];
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.source_version.as_deref(), Some("2.36-9+deb12u4"));
    assert_eq!(libc.locations, ["/var/lib/dpkg/status.d/libc6"]);
    assert_eq!(
        libc.purl.as_deref(),
        Some("pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc")
    );
    assert_eq!(a.packages[1].source_name, None);
    assert_eq!(a.packages[1].files, ["/usr/share/zoneinfo/UTC"]);
    assert_eq!((a.analyzed_at, a.file_count, a.image_size), (7, 4, 10));
}

#[test]
fn dpkg_source_without_version_and_hold() {
    let s = "Package: libfoo1\nStatus: hold ok installed\nSource: foo\nVersion: 1.0-1\nArchitecture: amd64\n\nPackage: gone\nStatus: purge ok not-installed\nVersion: 1\n\nPackage: half\nStatus: install ok half-installed\nVersion: 1\n";
    let p = parse_dpkg("/var/lib/dpkg/status", s.as_bytes(), None);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].source_name.as_deref(), Some("foo"));
    assert_eq!(p[0].source_version.as_deref(), Some("1.0-1"));
    assert_eq!(
        p[0].purl.as_deref(),
        Some("pkg:deb/debian/libfoo1@1.0-1?arch=amd64&upstream=foo")
    );
}

#[test]
fn every_cataloger_path_is_kept_by_extract() {
    for c in CATALOGERS {
        for g in c.globs {
            let sample = g.replace('*', "x");
            assert!(
                vigil_extract::wanted(&sample),
                "{}: {g} is not in vigil_extract::KEEP_RULES",
                c.name
            );
        }
    }
}

fn descriptor() -> ImageDescriptor {
    ImageDescriptor {
        image: ImageRef {
            source_kind: SourceKind::Dir,
            name: "t".into(),
            tag: None,
            digest: "sha256:i".into(),
            index_digest: None,
            config_digest: "sha256:c".into(),
            platform: "linux/amd64".into(),
        },
        config: ImageConfig::default(),
        layers: vec![vigil_contracts::LayerRef {
            digest: "sha256:l".into(),
            diff_id: None,
            media_type: "x".into(),
            size: 1,
            compression: Compression::Gzip,
        }],
    }
}

fn stream_pkg(name: &str, path: &str) -> vigil_contracts::Package {
    let mut p = vigil_contracts::Package::new(name, "1.0.0", PackageType::GoModule);
    p.locations = vec![path.into()];
    p.found_by = Some("go-binary".into());
    p
}

fn secret(path: &str, rule: &str) -> vigil_contracts::SecretHit {
    vigil_contracts::SecretHit {
        path: path.into(),
        rule: rule.into(),
        line: 1,
    }
}

#[test]
fn stream_packages_and_secrets_live_only_where_their_file_does() {
    let mut l1 = layer(
        vec![
            d("/usr"),
            f("/usr/bin/a"),
            f("/usr/bin/b"),
            f("/opt/s"),
            f("/opt/c/x"),
        ],
        &[],
    );
    l1.packages = vec![
        stream_pkg("example.com/a", "/usr/bin/a"),
        stream_pkg("example.com/b", "/usr/bin/b"),
        stream_pkg("example.com/x", "/opt/c/x"),
    ];
    l1.secrets = vec![
        secret("/opt/s", "aws-access-key-id"),
        secret("/usr/bin/b", "private-key"),
    ];
    let mut l2 = layer(
        vec![
            e("/usr/bin/b", EntryKind::Whiteout, None),
            f("/usr/bin/a"),
            e("/opt/c", EntryKind::Opaque, None),
        ],
        &[],
    );
    // The upper layer's own record of /usr/bin/a wins; a record for a path no layer
    // has is dropped.
    l2.packages = vec![
        stream_pkg("example.com/a2", "/usr/bin/a"),
        stream_pkg("ghost", "/nowhere"),
    ];
    let fs = squash(&[l1, l2]);
    let names: Vec<_> = fs.stream_packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["example.com/a2"]);
    assert_eq!(fs.secrets, [secret("/opt/s", "aws-access-key-id")]);
    let a = analyze_at(
        &descriptor(),
        &[layer(vec![f("/usr/bin/a")], &[]), {
            let mut l = layer(vec![f("/usr/bin/a")], &[]);
            l.packages = vec![stream_pkg("github.com/evanw/esbuild", "/usr/bin/a")];
            l.secrets = vec![secret("/usr/bin/a", "github-pat")];
            l
        }],
        1,
    );
    assert_eq!(a.packages.len(), 1);
    assert_eq!(a.packages[0].found_by.as_deref(), Some("go-binary"));
    assert_eq!(
        a.packages[0].purl.as_deref(),
        Some("pkg:golang/github.com/evanw/esbuild@1.0.0")
    );
    assert_eq!(
        a.packages[0].cpes[0],
        "cpe:2.3:a:evanw:esbuild:1.0.0:*:*:*:*:*:*:*"
    );
    assert_eq!(a.secrets.len(), 1);
}

const METADATA: &str = "Metadata-Version: 2.1\nName: Six\nVersion: 1.16.0\nLicense: MIT\nClassifier: License :: OSI Approved :: MIT License\n\nSix is a Python 2 and 3 compatibility library.\nName: not-a-header\n";

#[test]
fn python_dist_info_egg_info_and_ownership_by_dpkg() {
    let site = "/usr/local/lib/python3.11/site-packages";
    let dist = "/usr/lib/python3/dist-packages";
    let record = "six.py,sha256=abc,100\nsix-1.16.0.dist-info/METADATA,,\n\"six-1.16.0.dist-info/RE,CORD\",,\n../../../bin/six-tool,sha256=x,1\n";
    let status = "Package: python3-six\nStatus: install ok installed\nVersion: 1.16.0-4\nArchitecture: all\n\n";
    let list = format!("/.\n/usr\n/usr/lib/python3/dist-packages/six-1.16.0.egg-info\n{dist}/six-1.16.0.egg-info/PKG-INFO\n{dist}/six-1.16.0.egg-info/top_level.txt\n{dist}/six.py\n");
    let egg_file = "Metadata-Version: 1.0\nName: legacy\nVersion: 0.1\n";
    let l = layer(
        vec![
            d(&format!("{site}/six-1.16.0.dist-info")),
            f(&format!("{site}/six-1.16.0.dist-info/METADATA")),
            f(&format!("{site}/six-1.16.0.dist-info/RECORD")),
            d("/usr/lib/python3/dist-packages/six-1.16.0.egg-info"),
            f(&format!("{dist}/six-1.16.0.egg-info/PKG-INFO")),
            f(&format!("{dist}/six-1.16.0.egg-info/top_level.txt")),
            f(&format!("{dist}/legacy-0.1.egg-info")),
            f("/var/lib/dpkg/status"),
            f("/var/lib/dpkg/info/python3-six.list"),
        ],
        &[
            (&format!("{site}/six-1.16.0.dist-info/METADATA"), METADATA),
            (&format!("{site}/six-1.16.0.dist-info/RECORD"), record),
            (&format!("{dist}/six-1.16.0.egg-info/PKG-INFO"), METADATA),
            (
                &format!("{dist}/six-1.16.0.egg-info/top_level.txt"),
                "six\n",
            ),
            (&format!("{dist}/legacy-0.1.egg-info"), egg_file),
            ("/var/lib/dpkg/status", status),
            ("/var/lib/dpkg/info/python3-six.list", &list),
        ],
    );
    for (p, _) in l.kept.iter().map(|k| (&k.path, ())) {
        assert!(vigil_extract::wanted(p), "{p} is not kept by extract");
    }
    let a = analyze_at(&descriptor(), &[l], 1);
    let py: Vec<_> = a
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Python)
        .map(|p| (p.name.as_str(), p.version.as_str(), p.locations[0].as_str()))
        .collect();
    // The dist-packages egg-info belongs to python3-six: reported once, as the deb.
    assert_eq!(
        py,
        [
            (
                "Six",
                "1.16.0",
                "/usr/local/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA"
            ),
            (
                "legacy",
                "0.1",
                "/usr/lib/python3/dist-packages/legacy-0.1.egg-info"
            ),
        ]
    );
    let six = a.packages.iter().find(|p| p.name == "Six").unwrap();
    assert_eq!(six.licenses, ["MIT"]);
    assert_eq!(six.purl.as_deref(), Some("pkg:pypi/six@1.16.0"));
    assert_eq!(
        six.files,
        [
            "/usr/local/bin/six-tool",
            "/usr/local/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA",
            "/usr/local/lib/python3.11/site-packages/six-1.16.0.dist-info/RE,CORD",
            "/usr/local/lib/python3.11/site-packages/six.py",
        ]
    );
    let deb = a.packages.iter().find(|p| p.name == "python3-six").unwrap();
    assert_eq!(
        deb.files.len(),
        3,
        "directories are left out: {:?}",
        deb.files
    );
}

#[test]
fn declared_catalogers_run_only_when_asked() {
    let l = layer(
        vec![
            f("/src/Cargo.lock"),
            f("/src/go.mod"),
            f("/src/poetry.lock"),
        ],
        &[
            (
                "/src/Cargo.lock",
                "version = 3\n[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\n",
            ),
            ("/src/go.mod", "module x\nrequire golang.org/x/net v0.7.0\n"),
            (
                "/src/poetry.lock",
                "[[package]]\nname = \"requests\"\nversion = \"2.31.0\"\n",
            ),
        ],
    );
    let mut desc = descriptor();
    desc.image.source_kind = SourceKind::OciDir;
    assert!(analyze_at(&desc, std::slice::from_ref(&l), 1)
        .packages
        .is_empty());
    desc.image.source_kind = SourceKind::Dir;
    let a = analyze_at(&desc, &[l], 1);
    let by: Vec<_> = a
        .packages
        .iter()
        .map(|p| (p.found_by.as_deref().unwrap(), p.purl.as_deref().unwrap()))
        .collect();
    assert_eq!(
        by,
        [
            ("python-lock", "pkg:pypi/requests@2.31.0"),
            ("go-mod-file", "pkg:golang/golang.org/x/net@v0.7.0"),
            ("rust-cargo-lock", "pkg:cargo/serde@1.0.0"),
        ]
    );
}

#[test]
fn files_users_retrieved_and_the_actual_dockerfile() {
    let mut hashed = f("/etc/passwd");
    hashed.sha256 = Some("ab".repeat(32));
    let passwd = "root:x:0:0:root:/root:/bin/bash\n";
    let l = layer(
        vec![d("/etc"), hashed, f("/etc/group")],
        &[("/etc/passwd", passwd), ("/etc/group", "root:x:0:\n")],
    );
    let opts = vigil_analyze::AnalyzeOptions {
        retrieve_paths: vec![
            "/etc/passwd".into(),
            "/etc/group".into(),
            "/etc/shadow".into(),
        ],
        retrieve_max_bytes: 10,
        actual_dockerfile: Some("FROM scratch\nUSER 1000\n".into()),
        ..Default::default()
    };
    let mut desc = descriptor();
    desc.config.history = vec![vigil_contracts::HistoryEntry {
        created_by: Some("/bin/sh -c #(nop) CMD [\"sh\"]".into()),
        ..Default::default()
    }];
    let a = vigil_analyze::analyze_with(&desc, std::slice::from_ref(&l), &opts, 1);
    let files: Vec<_> = a.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, ["/etc", "/etc/group", "/etc/passwd"]);
    assert_eq!(a.files[2].sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert!(a.passwd_present);
    assert_eq!(a.users[0].name, "root");
    assert_eq!(a.groups[0].name, "root");
    assert_eq!(a.retrieved_files.len(), 2);
    assert_eq!(a.retrieved_files[0].content, b"root:x:0:0");
    assert!(a.retrieved_files[0].truncated);
    assert!(!a.retrieved_files[1].truncated);
    let d = a.dockerfile.unwrap();
    assert_eq!(d.mode, vigil_contracts::DockerfileMode::Actual);
    assert_eq!(d.instructions[1].instruction, "USER");
    // Without one supplied: guessed from the history.
    let g = analyze_at(&desc, &[l], 1).dockerfile.unwrap();
    assert_eq!(
        (g.mode, g.text.as_str()),
        (vigil_contracts::DockerfileMode::Guessed, "CMD [\"sh\"]\n")
    );
}

#[test]
fn capabilities_table_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("CATALOGERS.md");
    let want = vigil_analyze::catalog::capabilities_markdown();
    if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        have, want,
        "CATALOGERS.md is stale: rerun with VIGIL_UPDATE_GOLDEN=1"
    );
}

#[test]
fn hostile_inputs_never_panic_in_any_cataloger() {
    let deep_json = "[".repeat(200_000);
    let deep_toml = format!("[[package]]\nname = {}", "[".repeat(200_000));
    let big = format!(
        "{{\"name\":\"x\",\"version\":\"1\",\"description\":\"{}\"}}",
        "a".repeat(8 << 20)
    );
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff, 0xfe, 0x00, 0x80, b'\n', b':'],
        deep_json.into_bytes(),
        deep_toml.into_bytes(),
        big.into_bytes(),
        b"Name: \xff\xfe\nVersion: 1\n".to_vec(),
        b"P:\nV:\nF:../../..\nR:../../etc/passwd\n".to_vec(),
        b"  /a/:\n  '@':\n  /@/x:\npackages:\n  :\n  '':\n".to_vec(),
        b"GEM\n  specs:\n    (\n    x (\n".to_vec(),
        b"SQLite format 3\0garbage".to_vec(),
        [&0x061561u32.to_le_bytes()[..], &[0u8; 60][..]].concat(),
        b"RpmP\0\0\0\0\0\0\0\0\xff\xff\xff\xff".to_vec(),
    ];
    let fs = vigil_analyze::SquashedFs::default();
    let ctx = vigil_analyze::CatalogCtx {
        fs: &fs,
        distro: None,
    };
    for c in CATALOGERS {
        let path = c.globs[0].replace("**", "x").replace('*', "x");
        for i in &inputs {
            let _ = (c.parse)(&ctx, &path, i);
            for cut in [1, 7, i.len() / 2] {
                let _ = (c.parse)(&ctx, &path, &i[..cut.min(i.len())]);
            }
        }
    }
}

#[test]
fn resolving_a_plain_path_agrees_with_the_segment_walk() {
    // A normal path takes a shortcut when no component is a symlink; the same path
    // spelled with `.` segments takes the general walk. Both must agree, for files,
    // directories, symlinks (last or inner component), loops and missing paths.
    let l = layer(
        vec![
            d("/usr"),
            d("/usr/lib"),
            f("/usr/lib/os-release"),
            e("/lib", EntryKind::Symlink, Some("usr/lib")),
            e(
                "/etc/os-release",
                EntryKind::Symlink,
                Some("../usr/lib/os-release"),
            ),
            e("/etc/a", EntryKind::Symlink, Some("b")),
            e("/etc/b", EntryKind::Symlink, Some("a")),
            f("/opt/app/x"),
        ],
        &[("/usr/lib/os-release", "ID=debian\n"), ("/kept/only", "x")],
    );
    let fs = squash(&[l]);
    for p in [
        "/",
        "/usr",
        "/usr/lib/os-release",
        "/lib/os-release",
        "/etc/os-release",
        "/etc/a",
        "/etc/a/x",
        "/opt/app/x",
        "/opt/app",
        "/kept/only",
        "/missing",
        "/usr/lib/missing",
    ] {
        let walked = format!("/.{p}");
        assert_eq!(fs.resolve(p), fs.resolve(&walked), "{p}");
    }
    assert_eq!(fs.resolve("/usr/lib/missing"), Resolved::Missing);
    assert_eq!(fs.resolve("/etc/a/x"), Resolved::Loop);
    assert_eq!(
        fs.resolve("/lib/os-release"),
        Resolved::Path("/usr/lib/os-release".into())
    );
}
