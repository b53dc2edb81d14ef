//! The streaming core on real tar/gzip/zstd data built here.

use std::io::Write;

use vigil_contracts::{EntryKind, FileEntry, LayerIndex};
use vigil_extract::{index_layer, ExtractError, ExtractLimits};

enum E<'a> {
    File(&'a str, &'a [u8]),
    /// A raw name written into the header, as a hostile layer would (the builder refuses `..`).
    RawFile(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str),
    Block(&'a str),
    Fifo(&'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(1000);
        h.set_gid(100);
        h.set_size(0);
        // Names are written raw, as a layer may have them (`./`, `//`, `..`): the
        // builder's own path setter would refuse or clean them.
        let (name, data): (&str, &[u8]) = match e {
            E::File(p, d) | E::RawFile(p, d) => {
                h.set_size(d.len() as u64);
                (p, d)
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, &[])
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                (p, &[])
            }
            E::Char(p) | E::Block(p) | E::Fifo(p) => {
                h.set_entry_type(match e {
                    E::Char(_) => tar::EntryType::Char,
                    E::Block(_) => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                (p, &[])
            }
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zst(b: &[u8]) -> Vec<u8> {
    zstd::encode_all(b, 3).unwrap()
}

fn entry<'a>(idx: &'a LayerIndex, path: &str) -> &'a FileEntry {
    idx.entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} not indexed: {:?}", idx.entries))
}

fn sample() -> Vec<u8> {
    tar_of(&[
        E::Dir("./"),
        E::Dir("./etc/"),
        E::File("./etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        E::File("etc/group", b"root:x:0:\n"),
        E::File("usr/lib/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        E::Symlink("etc/os-release", "../usr/lib/os-release"),
        E::Hardlink("usr/bin/perl5", "./usr/bin/perl"),
        E::Char("dev/null"),
        E::Block("dev/sda"),
        E::Fifo("run/initctl"),
        E::File(
            "var/lib/dpkg/status",
            b"Package: a\nStatus: install ok installed\n",
        ),
        E::File("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\n"),
        E::File("var/lib/dpkg/status.d/tzdata.md5sums", b"x  y\n"),
        E::File("var/lib/dpkg/status.d/sub/deeper", b"no\n"),
        E::File("etc/shadow", b"root:*:1::::::\n"),
        E::File("opt/app/.wh.secret.txt", b""),
        E::File(".wh.toplevel", b""),
        E::File("opt/cache/.wh..wh..opq", b""),
        E::File("usr//share/./doc/x", b"doc"),
    ])
}

#[test]
fn every_kind_whiteouts_and_kept_files_in_each_compression() {
    let t = sample();
    for (name, data) in [("tar", t.clone()), ("gzip", gz(&t)), ("zstd", zst(&t))] {
        let idx = index_layer(&data[..], "sha256:l", &ExtractLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(idx.layer_digest, "sha256:l");
        assert_eq!(idx.extractor_version, vigil_extract::EXTRACTOR_VERSION);
        assert_eq!(idx.uncompressed_size, t.len() as u64, "{name}");
        assert!(idx.warnings.is_empty(), "{name}: {:?}", idx.warnings);

        assert_eq!(entry(&idx, "/").kind, EntryKind::Dir);
        let etc = entry(&idx, "/etc");
        assert_eq!((etc.kind, etc.mode), (EntryKind::Dir, 0o755));
        let p = entry(&idx, "/etc/passwd");
        assert_eq!(
            (p.kind, p.uid, p.gid, p.size),
            (EntryKind::File, 1000, 100, 30)
        );
        let l = entry(&idx, "/etc/os-release");
        assert_eq!(l.kind, EntryKind::Symlink);
        assert_eq!(l.link.as_deref(), Some("../usr/lib/os-release"));
        let h = entry(&idx, "/usr/bin/perl5");
        assert_eq!(h.kind, EntryKind::Hardlink);
        assert_eq!(h.link.as_deref(), Some("/usr/bin/perl"));
        assert_eq!(entry(&idx, "/dev/null").kind, EntryKind::Char);
        assert_eq!(entry(&idx, "/dev/sda").kind, EntryKind::Block);
        assert_eq!(entry(&idx, "/run/initctl").kind, EntryKind::Fifo);
        assert_eq!(entry(&idx, "/opt/app/secret.txt").kind, EntryKind::Whiteout);
        assert_eq!(entry(&idx, "/toplevel").kind, EntryKind::Whiteout);
        assert_eq!(entry(&idx, "/opt/cache").kind, EntryKind::Opaque);
        entry(&idx, "/usr/share/doc/x");
        assert_eq!(idx.entries.len(), 19);

        let kept: Vec<&str> = idx.kept.iter().map(|k| k.path.as_str()).collect();
        assert_eq!(
            kept,
            [
                "/etc/passwd",
                "/etc/group",
                "/usr/lib/os-release",
                "/var/lib/dpkg/status",
                "/var/lib/dpkg/status.d/tzdata",
                "/var/lib/dpkg/status.d/tzdata.md5sums",
            ],
            "{name}"
        );
        assert_eq!(idx.kept[2].content, b"ID=debian\nVERSION_ID=\"12\"\n");
        assert!(idx.kept.iter().all(|k| !k.truncated));
    }
}

#[test]
fn climbing_paths_are_clamped_at_root_with_a_warning() {
    let t = tar_of(&[
        E::RawFile("../../etc/passwd", b"evil:x:0:0::/:/bin/sh\n"),
        E::RawFile("a/../../../x", b"x"),
    ]);
    let idx = index_layer(&t[..], "sha256:l", &ExtractLimits::default()).unwrap();
    let paths: Vec<&str> = idx.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/etc/passwd", "/x"]);
    assert_eq!(idx.warnings.len(), 2, "{:?}", idx.warnings);
    assert!(idx.warnings[0].contains("../../etc/passwd"));
    assert_eq!(idx.kept[0].content, b"evil:x:0:0::/:/bin/sh\n");
}

#[test]
fn kept_files_are_capped_and_marked_truncated() {
    let big = vec![b'x'; 10_000];
    let t = tar_of(&[
        E::File("var/lib/dpkg/status", &big),
        E::File("etc/group", b"g\n"),
    ]);
    let l = ExtractLimits {
        max_kept_file_bytes: 100,
        ..Default::default()
    };
    let idx = index_layer(&gz(&t)[..], "d", &l).unwrap();
    assert_eq!(idx.kept[0].content.len(), 100);
    assert!(idx.kept[0].truncated);
    assert_eq!(entry(&idx, "/var/lib/dpkg/status").size, 10_000);
    assert_eq!(
        (idx.kept[1].content.as_slice(), idx.kept[1].truncated),
        (&b"g\n"[..], false)
    );
    assert_eq!(idx.warnings.len(), 1);
}

#[test]
fn entry_over_the_limit_is_a_limit_error() {
    let t = tar_of(&[E::File("small", b"x"), E::File("big", &[0u8; 5000])]);
    let l = ExtractLimits {
        max_entry_bytes: 1000,
        ..Default::default()
    };
    let e = index_layer(&gz(&t)[..], "sha256:big", &l).unwrap_err();
    assert_eq!(
        e,
        ExtractError::EntryTooLarge {
            layer: "sha256:big".into(),
            path: "/big".into(),
            size: 5000,
            limit: 1000
        }
    );
    assert_eq!(e.kind(), vigil_contracts::FailureKind::LimitExceeded);
}

#[test]
fn too_many_entries_and_too_many_bytes() {
    let files: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let es: Vec<E> = files.iter().map(|f| E::File(f, b"data")).collect();
    let t = tar_of(&es);
    let l = ExtractLimits {
        max_entries: 10,
        ..Default::default()
    };
    assert!(matches!(
        index_layer(&t[..], "d", &l),
        Err(ExtractError::TooManyEntries { limit: 10, .. })
    ));
    let l = ExtractLimits {
        max_total_bytes: 4096,
        ..Default::default()
    };
    let e = index_layer(&zst(&t)[..], "d", &l).unwrap_err();
    assert!(
        matches!(e, ExtractError::TotalTooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert_eq!(e.kind(), vigil_contracts::FailureKind::LimitExceeded);
}

#[test]
fn truncated_gzip_is_corrupt() {
    let g = gz(&sample());
    for cut in [g.len() / 2, g.len() - 4] {
        let e = index_layer(&g[..cut], "sha256:cut", &ExtractLimits::default()).unwrap_err();
        match &e {
            ExtractError::Corrupt { layer, .. } => assert_eq!(layer, "sha256:cut"),
            other => panic!("{other}"),
        }
        assert_eq!(e.kind(), vigil_contracts::FailureKind::MalformedImage);
    }
}

#[test]
fn corrupt_gzip_is_corrupt() {
    let mut g = gz(&sample());
    // Flip bytes in the deflate body (the header stays valid, so detection says gzip).
    let mid = g.len() / 2;
    for b in &mut g[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let e = index_layer(&g[..], "sha256:bad", &ExtractLimits::default()).unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("sha256:bad"), "{e}");
}

#[test]
fn truncated_tar_is_corrupt() {
    let t = tar_of(&[E::File("a", &[1u8; 3000]), E::File("b", b"x")]);
    // Cut inside the data of the first entry, and inside the second header.
    for cut in [1000, 512 + 3072 + 100] {
        let e = index_layer(&t[..cut], "d", &ExtractLimits::default()).unwrap_err();
        assert!(matches!(e, ExtractError::Corrupt { .. }), "cut {cut}: {e}");
    }
}

#[test]
fn concatenated_gzip_members_are_one_stream() {
    // Some tools write a layer as several gzip members; MultiGzDecoder reads them all.
    let t = sample();
    let (a, b) = t.split_at(2048);
    let mut g = gz(a);
    g.extend(gz(b));
    let idx = index_layer(&g[..], "d", &ExtractLimits::default()).unwrap();
    assert_eq!(idx.entries.len(), 19);
}

#[test]
fn empty_layer_is_an_empty_index() {
    let t = tar_of(&[]);
    let idx = index_layer(&gz(&t)[..], "d", &ExtractLimits::default()).unwrap();
    assert!(idx.entries.is_empty() && idx.kept.is_empty());
}
