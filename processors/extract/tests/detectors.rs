//! Each stream-time detector on real inputs built here: a Go binary from `go build`, a
//! cargo-auditable section added with `objcopy`, jars written with the `zip` crate, the
//! arm64 BusyBox of the multiarch testbed image, and layers carrying them.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use sha2::Digest;
use vigil_contracts::{LayerIndex, PackageType};
use vigil_extract::detect::{golang, java, runtime, rust_audit, secrets};
use vigil_extract::{index_layer, ExtractError, ExtractLimits, SecretRule};
use vigil_testkit::{tar_of, testbed};

fn index(files: &[(&str, &[u8])], limits: &ExtractLimits) -> LayerIndex {
    index_layer(&tar_of(files)[..], "sha256:t", limits).unwrap()
}

// ---------------------------------------------------------------- secrets

#[test]
fn secrets_report_rule_and_line_never_the_text() {
    let key = format!("AKIA{}", "Q2W3E4R5T6Y7U8I9");
    let secret = format!("{}{}", "q8Xv2Lr0aB1cD2eF3gH4", "iJ5kL6mN7oP8qR9sT0uV");
    let gh = format!("ghp_{}", "R4nDoM0123456789abcdefghijklmnopqrst");
    let text = format!(
        "# config\n[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\
         token: {gh}\n-----BEGIN OPENSSH PRIVATE KEY-----\n{{\"auths\": {{\"x\": {{\"auth\": \"dXNlcjpwYXNz\"}}}}}}\n\
         API_KEY=ABCDEFGHIJKLMNOPQRSTUVWX12\nexample = AKIAIOSFODNN7EXAMPLE\n"
    );
    let s = secrets::SecretScanner::default_rules();
    let hits = s.scan(text.as_bytes());
    let want = [
        ("AWS_ACCESS_KEY", 3),
        ("AWS_SECRET_KEY", 4),
        ("GITHUB_TOKEN", 5),
        ("PRIV_KEY", 6),
        ("DOCKER_AUTH", 7),
        ("API_KEY", 8),
    ];
    for (rule, line) in want {
        assert!(
            hits.iter().any(|(r, l)| r == rule && *l == line),
            "{rule}@{line}: {hits:?}"
        );
    }
    // The documentation example on line 9 is allow-listed.
    assert!(!hits.iter().any(|(_, l)| *l == 9), "{hits:?}");
    assert_eq!(hits.len(), want.len(), "{hits:?}");

    // Through the stream: path and line; the index holds no secret text.
    let idx = index(
        &[("opt/app/settings.ini", text.as_bytes())],
        &ExtractLimits::default(),
    );
    assert!(idx
        .secrets
        .iter()
        .any(|h| h.path == "/opt/app/settings.ini" && h.rule == "AWS_ACCESS_KEY" && h.line == 3));
    let json = serde_json::to_string(&idx).unwrap();
    assert!(!json.contains(&key) && !json.contains(&secret) && !json.contains(&gh));
}

#[test]
fn literal_prefilter_never_changes_an_answer() {
    // The scanner runs only the rules whose necessary literals occur in a text; the same
    // rules without that prefilter must give the same hits on every kind of text: hits
    // of each rule, near misses, overlapping literals, a case-folded Kelvin sign (which
    // `(?i)k` matches), and text with none of the literals.
    let fast = secrets::SecretScanner::default_rules();
    let plain = secrets::SecretScanner::default_rules().without_prefilter();
    let long = "Zq8Xv2Lr0aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV";
    let texts = [
        format!("aws_access_key_id = AKIAQ2W3E4R5T6Y7U8I9\nSECRET_KEY = '{long}'\n"),
        format!("client_secret: {long}\nauthtoken={long}\napi-key = ABCDEFGHIJKLMNOPQRSTUVWX12\n"),
        format!("private_\u{212A}ey = \"{long}\"\n"),
        format!("access_secretkey: {long}\n"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n\"auth\": \"x\"\n".to_string(),
        "def get(self, key):\n    return self.tokens[key]  # secret sauce\n".to_string(),
        "nothing to see here\n".repeat(100),
        format!("token = \"ghp_{}\"\nthrough the night\n", "a1".repeat(18)),
        format!("a\u{17F}ecret_key = {long}\n"),
        format!("ünïcödé, then aws_secret_access_key = {long}\n"),
    ];
    for t in &texts {
        assert_eq!(fast.scan(t.as_bytes()), plain.scan(t.as_bytes()), "{t:?}");
    }
    // And the texts with secrets do have hits (the comparison is not between empties).
    assert!(!fast.scan(texts[0].as_bytes()).is_empty());
    assert!(!fast.scan(texts[2].as_bytes()).is_empty());
    assert!(!fast.scan(texts[3].as_bytes()).is_empty());
    assert!(!fast.scan(texts[7].as_bytes()).is_empty());
    assert!(!fast.scan(texts[9].as_bytes()).is_empty());
}

#[test]
fn a_large_literal_set_is_searched_as_well() {
    // Configured rules with more literals than the SIMD search takes (128) fall back to
    // an automaton; the answers stay those of the rules alone.
    let words = |prefix: &str| {
        (0..60)
            .map(|i| format!("{prefix}{i:02}word"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let rules: Vec<secrets::SecretRule> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|p| secrets::SecretRule {
            name: format!("RULE_{p}"),
            regex: format!("(?i)(?:{})=[0-9]+", words(p)),
        })
        .collect();
    let fast = secrets::SecretScanner::new(&rules, &[]).unwrap();
    let plain = secrets::SecretScanner::new(&rules, &[])
        .unwrap()
        .without_prefilter();
    let text = "x\nBETA07WORD=12\ngamma59word=3 alpha00word=\nalpha61word=1\n";
    let hits = fast.scan(text.as_bytes());
    assert_eq!(hits, plain.scan(text.as_bytes()));
    assert_eq!(
        hits,
        vec![("RULE_beta".to_string(), 2), ("RULE_gamma".to_string(), 3)]
    );
}

#[test]
fn secrets_skip_binaries_and_files_over_the_cap_and_rules_are_configurable() {
    let key = format!("AKIA{}", "Q2W3E4R5T6Y7U8I9");
    let mut binary = vec![0u8; 16];
    binary.extend_from_slice(format!("aws_access_key_id={key}\n").as_bytes());
    let mut big = vec![b'x'; 2 << 20];
    big.extend_from_slice(format!("\naws_access_key_id={key}\n").as_bytes());
    let small = format!("password\ncorp-token: CORP-{}\n", "12345678");
    let files: [(&str, &[u8]); 3] = [
        ("bin/blob", &binary),
        ("big.txt", &big),
        ("etc/app.conf", small.as_bytes()),
    ];
    let idx = index(&files, &ExtractLimits::default());
    assert!(idx.secrets.is_empty(), "{:?}", idx.secrets);

    let limits = ExtractLimits {
        secret_rules: vec![SecretRule {
            name: "CORP_TOKEN".into(),
            regex: r"CORP-[0-9]{8}".into(),
        }],
        secret_max_file_bytes: 4 << 20,
        ..Default::default()
    };
    let idx = index(&files, &limits);
    let got: Vec<_> = idx
        .secrets
        .iter()
        .map(|h| (h.path.as_str(), h.rule.as_str(), h.line))
        .collect();
    assert_eq!(got, vec![("/etc/app.conf", "CORP_TOKEN", 2)]);

    let off = ExtractLimits {
        secret_scan: false,
        ..Default::default()
    };
    assert!(index(&files, &off).secrets.is_empty());

    let bad = ExtractLimits {
        secret_rules: vec![SecretRule {
            name: "BROKEN".into(),
            regex: "(".into(),
        }],
        ..Default::default()
    };
    let e = index_layer(&tar_of(&files)[..], "sha256:t", &bad).unwrap_err();
    assert!(
        matches!(e, ExtractError::Config(ref m) if m.contains("BROKEN")),
        "{e}"
    );
}

// ---------------------------------------------------------------- Go

/// A Go program with a dependency replaced by a local directory, built once.
fn go_binary() -> &'static [u8] {
    static BIN: OnceLock<Vec<u8>> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let w = |p: &str, s: &str| {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(
            "go.mod",
            "module example.com/vigiltest\n\ngo 1.19\n\nrequire example.com/greet v1.2.3\n\nreplace example.com/greet v1.2.3 => ./greet\n",
        );
        w(
            "main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"example.com/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n",
        );
        w("greet/go.mod", "module example.com/greet\n\ngo 1.19\n");
        w(
            "greet/greet.go",
            "package greet\n\nfunc Hello() string { return \"hi\" }\n",
        );
        let out = d.join("vigiltest");
        let st = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(d)
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", std::env::temp_dir().join("vigil-extract-gocache"))
            .status()
            .expect("go is installed");
        assert!(st.success());
        std::fs::read(out).unwrap()
    })
}

fn go_version() -> String {
    let out = Command::new("go").arg("version").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string()
}

#[test]
fn go_build_info_of_a_real_binary() {
    let bin = go_binary();
    let info = golang::from_elf(bin).unwrap().expect("a Go binary");
    assert_eq!(info.go_version, go_version());
    assert_eq!(info.path, "example.com/vigiltest");
    let main = info.main.as_ref().unwrap();
    assert_eq!(
        (main.path.as_str(), main.version.as_str()),
        ("example.com/vigiltest", "(devel)")
    );
    assert_eq!(info.deps.len(), 1);
    assert_eq!(info.deps[0].path, "example.com/greet");
    assert_eq!(info.deps[0].version, "v1.2.3");
    assert_eq!(info.deps[0].replace.as_ref().unwrap().path, "./greet");
    assert_eq!(
        info.settings.get("CGO_ENABLED").map(String::as_str),
        Some("0")
    );

    let pkgs = golang::packages(&info, "/app/vigiltest");
    let names: Vec<_> = pkgs
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("example.com/vigiltest", "(devel)"),
            // Go records a directory replacement as `(devel)`.
            ("./greet", "(devel)"),
            ("stdlib", go_version().as_str())
        ]
    );
    assert_eq!(
        pkgs[1].metadata.get("replaces").map(String::as_str),
        Some("example.com/greet v1.2.3")
    );
    for p in &pkgs {
        assert_eq!(p.kind, PackageType::GoModule);
        assert_eq!(p.locations, vec!["/app/vigiltest".to_string()]);
        assert_eq!(p.found_by.as_deref(), Some("go-binary"));
        assert_eq!(p.metadata["main_module"], "example.com/vigiltest");
        assert_eq!(p.metadata["go_toolchain"], go_version());
    }
    assert_eq!(
        pkgs[2].purl.as_deref(),
        Some(
            format!(
                "pkg:golang/stdlib@{}",
                go_version().trim_start_matches("go")
            )
            .as_str()
        )
    );
    assert_eq!(
        pkgs[0].purl.as_deref(),
        Some("pkg:golang/example.com/vigiltest")
    );
}

#[test]
fn go_binary_in_a_layer_read_whole_or_streamed_past_the_cap() {
    let bin = go_binary();
    let whole = index(&[("app/vigiltest", bin)], &ExtractLimits::default());
    // Over the buffer cap: only the streaming search for the inline build info runs.
    let small = ExtractLimits {
        max_binary_bytes: 4096,
        ..Default::default()
    };
    let streamed = index(&[("app/vigiltest", bin)], &small);
    let key = |i: &LayerIndex| {
        i.packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone(), p.locations.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&whole).len(), 3, "{:?}", whole.packages);
    assert_eq!(key(&whole), key(&streamed));
    assert!(whole.warnings.is_empty(), "{:?}", whole.warnings);
    // The stream scanner also works when the magic straddles chunk edges.
    let pos = memchr::memmem::find(bin, golang::MAGIC).unwrap();
    let mut s = golang::StreamScan::new(1 << 20);
    s.feed(&bin[..pos + 5]);
    s.feed(&bin[pos + 5..pos + 9]);
    s.feed(&bin[pos + 9..]);
    let info = golang::from_window(&s.finish().unwrap()).unwrap();
    assert_eq!(info.go_version, go_version());
}

#[test]
fn malformed_go_build_info_is_a_warning_not_a_panic() {
    let mut bin = go_binary().to_vec();
    let pos = memchr::memmem::find(&bin, golang::MAGIC).unwrap();
    // An absurd varint length for the version string.
    for b in &mut bin[pos + 32..pos + 42] {
        *b = 0xff;
    }
    assert!(golang::from_elf(&bin).is_err());
    let idx = index(&[("app/broken", &bin)], &ExtractLimits::default());
    assert!(idx.packages.is_empty());
    assert!(
        idx.warnings
            .iter()
            .any(|w| w.contains("/app/broken") && w.contains("Go build info")),
        "{:?}",
        idx.warnings
    );
    // Truncated binaries and garbage never panic.
    for cut in [10, 64, 1000, pos + 20, pos + 40, bin.len() / 2] {
        let _ = golang::from_elf(&go_binary()[..cut]);
    }
    assert!(golang::from_elf(b"\x7fELF\x02\x01garbage")
        .unwrap()
        .is_none());
    // Header, program and section tables overwritten field by field: never a panic.
    let orig = go_binary();
    let shoff = u64::from_le_bytes(orig[0x28..0x30].try_into().unwrap()) as usize;
    let spots: Vec<usize> = (0..0x40)
        .chain((0x40..0x200).step_by(5))
        .chain((shoff..orig.len()).step_by(23))
        .collect();
    let mut b = orig.to_vec();
    for (i, &at) in spots.iter().enumerate() {
        let end = (at + 8).min(b.len());
        let saved = b[at..end].to_vec();
        for (k, v) in b[at..end].iter_mut().enumerate() {
            *v = if (i + k) % 2 == 0 { 0xff } else { 0x7f };
        }
        let _ = golang::from_elf(&b);
        let _ = rust_audit::from_elf(&b, "/x");
        b[at..end].copy_from_slice(&saved);
    }
}

/// A minimal little-endian ELF64 with one PT_LOAD segment (vaddr 0x400000 = offset 0)
/// holding a pre-1.18 build-info blob: pointers to Go string headers, which point to
/// the version and the module info (with its 16-byte sentinels).
fn pointer_format_elf(modinfo: &str) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELF64
    f[5] = 1; // little endian
    f[6] = 1;
    f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f[ph + 8..ph + 16].copy_from_slice(&0u64.to_le_bytes()); // p_offset
    f[ph + 16..ph + 24].copy_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f[ph + 32..ph + 40].copy_from_slice(&0x1000u64.to_le_bytes()); // p_filesz
    let blob = 0x100;
    f[blob..blob + 14].copy_from_slice(golang::MAGIC);
    f[blob + 14] = 8; // pointer size
    f[blob + 15] = 0; // little endian, pointer format
    f[blob + 16..blob + 24].copy_from_slice(&(BASE + 0x200).to_le_bytes());
    f[blob + 24..blob + 32].copy_from_slice(&(BASE + 0x210).to_le_bytes());
    let vers = b"go1.16.15";
    let mut info = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    info.extend_from_slice(modinfo.as_bytes());
    info.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
    let hdr = |f: &mut Vec<u8>, at: usize, data: u64, len: usize| {
        f[at..at + 8].copy_from_slice(&data.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&(len as u64).to_le_bytes());
    };
    hdr(&mut f, 0x200, BASE + 0x300, vers.len());
    hdr(&mut f, 0x210, BASE + 0x400, info.len());
    f[0x300..0x300 + vers.len()].copy_from_slice(vers);
    f[0x400..0x400 + info.len()].copy_from_slice(&info);
    f
}

#[test]
fn pre_118_pointer_format_and_stripped_section_table() {
    let elf = pointer_format_elf(
        "path\tgithub.com/old/app\nmod\tgithub.com/old/app\tv1.4.0\th1:app=\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:err=\n",
    );
    let info = golang::from_elf(&elf).unwrap().unwrap();
    assert_eq!(info.go_version, "go1.16.15");
    let pkgs = golang::packages(&info, "/app");
    let got: Vec<_> = pkgs
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("github.com/old/app", "v1.4.0"),
            ("github.com/pkg/errors", "v0.9.1"),
            ("stdlib", "go1.16.15")
        ]
    );
    // Through a layer; over the buffer cap the pointer format cannot be read: a warning.
    let idx = index(&[("app", &elf)], &ExtractLimits::default());
    assert_eq!(idx.packages.len(), 3);
    let small = ExtractLimits {
        max_binary_bytes: 1024,
        ..Default::default()
    };
    let idx = index(&[("app", &elf)], &small);
    assert!(idx.packages.is_empty());
    assert!(
        idx.warnings.iter().any(|w| w.contains("whole binary")),
        "{:?}",
        idx.warnings
    );

    // A real Go binary whose section table is gone: found by the aligned magic.
    let mut bin = go_binary().to_vec();
    bin[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes()); // e_shnum = 0
    let info = golang::from_elf(&bin).unwrap().unwrap();
    assert_eq!(info.path, "example.com/vigiltest");
}

#[test]
fn modinfo_text_with_replacements_and_pseudo_version() {
    let modinfo = "path\tgithub.com/x/tool\nmod\tgithub.com/x/tool\t(devel)\t\n\
        dep\tgithub.com/a/b\tv1.0.0\th1:abc=\n=>\tgithub.com/fork/b\tv1.0.1\th1:def=\n\
        dep\tgolang.org/x/sys\tv0.1.0\th1:sys=\nbuild\tGOARCH=arm64\n\
        build\tvcs.revision=04ef75fd7ff534a636962f14e11d224c84aa2020\nbuild\tvcs.time=2022-08-08T14:19:30Z\n";
    let info = golang::parse(b"go1.17.13", modinfo.as_bytes());
    let pkgs = golang::packages(&info, "/bin/tool");
    let got: Vec<_> = pkgs
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.purl.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "github.com/x/tool",
                "v0.0.0-20220808141930-04ef75fd7ff5",
                "pkg:golang/github.com/x/tool@v0.0.0-20220808141930-04ef75fd7ff5"
            ),
            (
                "github.com/fork/b",
                "v1.0.1",
                "pkg:golang/github.com/fork/b@v1.0.1"
            ),
            (
                "golang.org/x/sys",
                "v0.1.0",
                "pkg:golang/golang.org/x/sys@v0.1.0"
            ),
            ("stdlib", "go1.17.13", "pkg:golang/stdlib@1.17.13"),
        ]
    );
    assert_eq!(pkgs[1].metadata["h1"], "h1:def=");
    assert_eq!(pkgs[1].metadata["replaces"], "github.com/a/b v1.0.0");
    assert_eq!(pkgs[0].arch.as_deref(), Some("arm64"));
}

// ---------------------------------------------------------------- Rust

#[test]
fn cargo_auditable_section_added_with_objcopy() {
    let json = br#"{"packages":[
        {"name":"myapp","version":"0.3.1","source":"local","dependencies":[1,2],"root":true},
        {"name":"serde","version":"1.0.200","source":"crates.io"},
        {"name":"cc","version":"1.0.90","source":"crates.io","kind":"build"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).unwrap();
    let compressed = z.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let section = dir.path().join("dep-v0");
    std::fs::write(&section, &compressed).unwrap();
    // A real ELF: the Go test binary (any ELF would do), with the section added.
    let src = dir.path().join("in");
    std::fs::write(&src, go_binary()).unwrap();
    let out = dir.path().join("out");
    objcopy_add(&src, &section, &out);
    let bin = std::fs::read(&out).unwrap();

    let pkgs = rust_audit::from_elf(&bin, "/usr/bin/myapp").unwrap();
    let got: Vec<_> = pkgs
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.purl.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("myapp", "0.3.1", "pkg:cargo/myapp@0.3.1"),
            ("serde", "1.0.200", "pkg:cargo/serde@1.0.200"),
            ("cc", "1.0.90", "pkg:cargo/cc@1.0.90"),
        ]
    );
    assert!(pkgs.iter().all(|p| p.kind == PackageType::RustCrate
        && p.found_by.as_deref() == Some("rust-auditable")
        && p.locations == ["/usr/bin/myapp"]));
    assert_eq!(pkgs[2].metadata["kind"], "build");

    // Through a layer: Go and Rust packages of the same file.
    let idx = index(&[("usr/bin/myapp", &bin)], &ExtractLimits::default());
    assert_eq!(
        idx.packages
            .iter()
            .filter(|p| p.kind == PackageType::RustCrate)
            .count(),
        3
    );

    // Corrupt section data: a warning.
    std::fs::write(&section, b"not zlib at all").unwrap();
    objcopy_add(&src, &section, &out);
    let bad = std::fs::read(&out).unwrap();
    assert!(rust_audit::from_elf(&bad, "/x").is_err());
    let idx = index(&[("usr/bin/bad", &bad)], &ExtractLimits::default());
    assert!(
        idx.warnings.iter().any(|w| w.contains("cargo-auditable")),
        "{:?}",
        idx.warnings
    );
}

fn objcopy_add(src: &Path, section: &Path, out: &Path) {
    let _ = std::fs::remove_file(out);
    let st = Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".dep-v0={}", section.display()))
        .arg(src)
        .arg(out)
        .status()
        .expect("objcopy");
    assert!(st.success());
}

// ---------------------------------------------------------------- Java

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn props(g: &str, a: &str, v: &str) -> Vec<u8> {
    format!("#Generated by Maven\ngroupId={g}\nartifactId={a}\nversion={v}\n").into_bytes()
}

fn jar(g: &str, a: &str, v: &str) -> Vec<u8> {
    zip_of(&[
        (
            "META-INF/MANIFEST.MF",
            format!("Manifest-Version: 1.0\r\nImplementation-Version: {v}\r\n\r\n").as_bytes(),
        ),
        (
            &format!("META-INF/maven/{g}/{a}/pom.properties"),
            &props(g, a, v),
        ),
        ("x/Y.class", b"\xca\xfe\xba\xbe"),
    ])
}

fn found(pkgs: &[vigil_contracts::Package]) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = pkgs
        .iter()
        .map(|p| {
            (
                p.locations[0].clone(),
                p.metadata.get("group_id").cloned().unwrap_or_default(),
                p.name.clone(),
                p.version.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn war_in_ear_nested_jars_shaded_and_manifest_only() {
    let inner = jar("org.example", "inner-lib", "1.2.3");
    let shaded = zip_of(&[
        (
            "META-INF/maven/com.acme/shaded-app/pom.properties",
            &props("com.acme", "shaded-app", "4.0"),
        ),
        (
            "META-INF/maven/com.google.guava/guava/pom.properties",
            &props("com.google.guava", "guava", "31.1-jre"),
        ),
    ]);
    let manifest_only = zip_of(&[(
        "META-INF/MANIFEST.MF",
        b"Manifest-Version: 1.0\nImplementation-Title: Plain\nImplementation-Version: 7.\n 1.0\nImplementation-Vendor-Id: org.plain\n\n",
    )]);
    let pom_xml_only = zip_of(&[(
        "META-INF/maven/org.x/from-xml/pom.xml",
        b"<?xml version=\"1.0\"?>\n<project><!-- c --><parent><groupId>org.parent</groupId><version>9.9</version></parent>\
          <artifactId>from-xml</artifactId><dependencies><dependency><groupId>no</groupId><artifactId>no</artifactId><version>0</version></dependency></dependencies></project>",
    )]);
    let war = zip_of(&[
        (
            "META-INF/maven/com.acme/web/pom.properties",
            &props("com.acme", "web", "2.0"),
        ),
        ("WEB-INF/lib/inner-lib-1.2.3.jar", &inner),
        ("WEB-INF/lib/shaded-app-4.0.jar", &shaded),
        ("WEB-INF/lib/plain.jar", &manifest_only),
        ("WEB-INF/lib/from-xml.jar", &pom_xml_only),
    ]);
    let ear = zip_of(&[
        ("web.war", &war),
        ("META-INF/application.xml", b"<application/>"),
    ]);

    let r = java::scan(&ear, "/srv/app.ear", &java::JavaLimits::default());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let s = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_string(), b.to_string(), c.to_string(), d.to_string())
    };
    assert_eq!(
        found(&r.packages),
        vec![
            // The ear has no metadata at all: named after its file.
            s("/srv/app.ear", "", "app", ""),
            s("/srv/app.ear:web.war", "com.acme", "web", "2.0"),
            s(
                "/srv/app.ear:web.war:WEB-INF/lib/from-xml.jar",
                "org.parent",
                "from-xml",
                "9.9"
            ),
            s(
                "/srv/app.ear:web.war:WEB-INF/lib/inner-lib-1.2.3.jar",
                "org.example",
                "inner-lib",
                "1.2.3"
            ),
            s(
                "/srv/app.ear:web.war:WEB-INF/lib/plain.jar",
                "org.plain",
                "plain",
                "7.1.0"
            ),
            s(
                "/srv/app.ear:web.war:WEB-INF/lib/shaded-app-4.0.jar",
                "com.acme",
                "shaded-app",
                "4.0"
            ),
            s(
                "/srv/app.ear:web.war:WEB-INF/lib/shaded-app-4.0.jar",
                "com.google.guava",
                "guava",
                "31.1-jre"
            ),
        ]
    );
    let inner_pkg = r.packages.iter().find(|p| p.name == "inner-lib").unwrap();
    assert_eq!(
        inner_pkg.purl.as_deref(),
        Some("pkg:maven/org.example/inner-lib@1.2.3")
    );
    assert_eq!(inner_pkg.metadata["artifact_id"], "inner-lib");
    assert_eq!(inner_pkg.found_by.as_deref(), Some("java-archive"));
    assert_eq!(inner_pkg.kind, PackageType::JavaArchive);

    // The same through a layer, with the other extensions recognised.
    let hpi = jar("org.jenkins-ci.plugins", "git", "5.0.0");
    let idx = index(
        &[
            ("srv/app.ear", &ear),
            ("var/jenkins/plugins/git.hpi", &hpi),
            ("a/not-a-zip.jar", b"plain text"),
        ],
        &ExtractLimits::default(),
    );
    assert_eq!(idx.packages.len(), 8, "{:?}", idx.packages);
    assert!(idx
        .packages
        .iter()
        .any(|p| p.name == "git" && p.locations[0] == "/var/jenkins/plugins/git.hpi"));
}

#[test]
fn nesting_deeper_than_the_limit_ends_in_a_warning() {
    // level1.jar contains level2.jar … level7.jar.
    let mut data = jar("g", "level7", "7");
    for i in (1..7).rev() {
        data = zip_of(&[
            (
                &format!("META-INF/maven/g/level{i}/pom.properties"),
                &props("g", &format!("level{i}"), &i.to_string()),
            ),
            (&format!("lib/level{}.jar", i + 1), &data),
        ]);
    }
    let r = java::scan(&data, "/level1.jar", &java::JavaLimits::default());
    let names: Vec<_> = r.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["level1", "level2", "level3", "level4", "level5"]);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("nested deeper than 5"),
        "{:?}",
        r.warnings
    );
    assert!(r.warnings[0].contains("lib/level6.jar"));
}

#[test]
fn zip_bomb_is_stopped_by_the_decompressed_budget() {
    // 64 MiB of zeros deflate to ~64 KiB: a nested "jar" far over the budget.
    let zeros = vec![0u8; 64 << 20];
    let bomb = zip_of(&[
        (
            "META-INF/maven/g/bomb/pom.properties",
            &props("g", "bomb", "1"),
        ),
        ("lib/huge.jar", &zeros),
        ("lib/huge2.jar", &zeros),
    ]);
    assert!(bomb.len() < 1 << 20);
    let limits = java::JavaLimits {
        max_decompressed: 16 << 20,
        ..Default::default()
    };
    let r = java::scan(&bomb, "/bomb.jar", &limits);
    assert_eq!(r.packages.len(), 1);
    assert!(
        r.warnings.iter().any(|w| w.contains("budget")),
        "{:?}",
        r.warnings
    );
    // Per-entry cap: an entry over max_nested_bytes is skipped, the rest still read.
    let limits = java::JavaLimits {
        max_nested_bytes: 1 << 20,
        ..Default::default()
    };
    let r = java::scan(&bomb, "/bomb.jar", &limits);
    assert_eq!(r.packages.len(), 1);
    assert_eq!(
        r.warnings
            .iter()
            .filter(|w| w.contains("decompressed; not read"))
            .count(),
        2,
        "{:?}",
        r.warnings
    );
    // Garbage with a zip name: a warning.
    let r = java::scan(
        b"PK\x03\x04 nonsense",
        "/x.jar",
        &java::JavaLimits::default(),
    );
    assert!(r.packages.is_empty() && r.warnings.len() == 1);
}

// ---------------------------------------------------------------- runtimes

#[test]
fn busybox_of_the_multiarch_arm64_image() {
    let layout = testbed::oci_layout("multiarch");
    let layers = testbed::layers(&layout, Some("arm64"));
    let f = std::fs::File::open(testbed::blob_path(&layout, &layers[0])).unwrap();
    let idx = index_layer(f, &layers[0], &ExtractLimits::default()).unwrap();
    let bb: Vec<_> = idx
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Binary)
        .collect();
    assert_eq!(bb.len(), 1, "{:?}", idx.packages);
    assert_eq!(bb[0].name, "busybox");
    assert_eq!(bb[0].version, "1.35.0");
    assert_eq!(bb[0].locations, ["/bin/busybox"]);
    assert_eq!(bb[0].purl.as_deref(), Some("pkg:generic/busybox@1.35.0"));
    assert_eq!(bb[0].found_by.as_deref(), Some("binary-busybox"));
}

#[test]
fn python_node_and_java_runtimes_by_name_and_version_string() {
    let py = b"\x7fELF\0\0junk\0%s\0Python 3.11.2 (main, Mar 13 2023)\0";
    let p = runtime::detect("/usr/bin/python3.11", py).unwrap();
    assert_eq!((p.name.as_str(), p.version.as_str()), ("python", "3.11.2"));
    assert_eq!(p.found_by.as_deref(), Some("binary-python"));
    let p = runtime::detect(
        "/usr/lib/x86_64-linux-gnu/libpython3.9.so.1.0",
        b"GCC\x003.9.18\0",
    )
    .unwrap();
    assert_eq!(p.version, "3.9.18");
    // The name decides which files are read: a plain `python3` symlink target is not.
    assert!(runtime::candidate("/usr/bin/python3").is_none());

    let node = b"\0https://nodejs.org/download/release/v18.19.0/\0node.js/v18.19.0\0";
    let p = runtime::detect("/usr/local/bin/node", node).unwrap();
    assert_eq!((p.name.as_str(), p.version.as_str()), ("node", "18.19.0"));
    assert_eq!(p.purl.as_deref(), Some("pkg:generic/node@18.19.0"));

    let release = b"IMPLEMENTOR=\"Eclipse Adoptium\"\nJAVA_VERSION=\"17.0.9\"\nJAVA_VERSION_DATE=\"2023-10-17\"\n";
    let p = runtime::detect("/opt/java/openjdk/release", release).unwrap();
    assert_eq!((p.name.as_str(), p.version.as_str()), ("java", "17.0.9"));
    assert!(runtime::detect("/etc/release", release).is_none());
    let p = runtime::detect(
        "/usr/lib/jvm/java-17/bin/java",
        b"\0openjdk\0java\x0017\x0017.0.9+9-Debian-1deb12u1\0",
    )
    .unwrap();
    assert_eq!(p.version, "17.0.9+9-Debian-1deb12u1");

    // Split across stream chunks: still found.
    let mut s = runtime::Scanner::new(runtime::Candidate::Node);
    s.feed(b"xxxxnode.js/v2");
    s.feed(b"0.11.1\0");
    assert_eq!(s.finish("/n").unwrap().version, "20.11.1");

    // Through a layer.
    let idx = index(&[("usr/local/bin/node", node)], &ExtractLimits::default());
    assert_eq!(idx.packages.len(), 1);
}

// ---------------------------------------------------------------- files

#[test]
fn sha256_on_request_and_retrieved_files() {
    let files: [(&str, &[u8]); 3] = [
        ("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
        ("opt/app/config.yaml", b"listen: 8080\n"),
        ("opt/app/big.log", &[b'l'; 5000]),
    ];
    let idx = index(&files, &ExtractLimits::default());
    assert!(idx
        .entries
        .iter()
        .all(|e| e.sha256.is_none() && e.md5.is_none() && e.sha1.is_none()));
    assert!(idx.kept.iter().any(|k| k.path == "/etc/passwd"));
    assert!(!idx.kept.iter().any(|k| k.path.starts_with("/opt")));

    let limits = ExtractLimits {
        hash_files: true,
        retrieve_files: vec!["/opt/app/*.yaml".into(), "/opt/app/big.log".into()],
        retrieve_max_bytes: 1000,
        ..Default::default()
    };
    let idx = index(&files, &limits);
    for (path, data) in files {
        let e = idx
            .entries
            .iter()
            .find(|e| e.path == format!("/{path}"))
            .unwrap();
        assert_eq!(
            e.sha256.as_deref(),
            Some(hex::encode(sha2::Sha256::digest(data)).as_str())
        );
        // The digests package databases record: md5 (dpkg, rpm) and sha1 (apk).
        assert_eq!(
            e.md5.as_deref(),
            Some(hex::encode(md5::Md5::digest(data)).as_str())
        );
        assert_eq!(
            e.sha1.as_deref(),
            Some(hex::encode(sha1::Sha1::digest(data)).as_str())
        );
    }
    let cfg = idx
        .kept
        .iter()
        .find(|k| k.path == "/opt/app/config.yaml")
        .unwrap();
    assert_eq!(cfg.content, b"listen: 8080\n");
    let big = idx
        .kept
        .iter()
        .find(|k| k.path == "/opt/app/big.log")
        .unwrap();
    assert!(big.truncated && big.content.len() == 1000);
    // /etc/passwd is still kept (analysis needs it) though not in this retrieve list.
    assert!(idx.kept.iter().any(|k| k.path == "/etc/passwd"));
}

#[test]
fn config_section_deserialises_with_defaults() {
    let l: ExtractLimits =
        serde_json::from_str(r#"{"hash_files": true, "java_max_depth": 2}"#).unwrap();
    assert!(l.hash_files && l.secret_scan && l.binary_scan && l.java_scan);
    assert_eq!(l.java_max_depth, 2);
    assert_eq!(l.retrieve_files, ["/etc/passwd"]);
    assert!(l.secret_rules.iter().any(|r| r.name == "AWS_ACCESS_KEY"));
    assert_eq!(
        l.max_kept_file_bytes,
        ExtractLimits::default().max_kept_file_bytes
    );
}

// ---------------------------------------------------------------- content search

#[test]
fn content_search_reports_path_regex_and_line_separately_from_secrets() {
    let conf = b"# app\nlisten = 0.0.0.0\nadmin_password = hunter2\n";
    let files: [(&str, &[u8]); 2] = [
        ("etc/app.conf", conf),
        ("etc/other.conf", b"nothing to see\n"),
    ];
    // Off by default: nothing recorded.
    assert!(index(&files, &ExtractLimits::default())
        .content_matches
        .is_empty());
    let regex = r"(?i)password\s*=";
    let limits = ExtractLimits {
        content_search: vec![regex.to_string(), "no-such-text".to_string()],
        ..ExtractLimits::default()
    };
    let idx = index(&files, &limits);
    let got: Vec<(&str, &str, u64)> = idx
        .content_matches
        .iter()
        .map(|m| (m.path.as_str(), m.rule.as_str(), m.line))
        .collect();
    assert_eq!(got, vec![("/etc/app.conf", regex, 3)]);
    assert!(
        idx.secrets.iter().all(|s| s.rule != regex),
        "content matches are not secrets"
    );
    // A broken regex is a clear configuration error.
    let bad = ExtractLimits {
        content_search: vec!["(unclosed".to_string()],
        ..ExtractLimits::default()
    };
    assert!(index_layer(&tar_of(&files)[..], "sha256:t", &bad).is_err());
}

// ---------------------------------------------------------------- Python eggs

/// A real egg: `python3 setup.py bdist_egg` (setuptools) of a one-module project.
fn real_egg() -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("setup.py"),
        "from setuptools import setup\n\
         setup(name='Egg_Demo', version='1.2.3', py_modules=['eggdemo'], license='MIT',\n\
               author='A Person', description='demo egg')\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("eggdemo.py"), "X = 1\n").unwrap();
    let out = Command::new("python3")
        .args(["setup.py", "-q", "bdist_egg"])
        .current_dir(dir.path())
        .output()
        .expect("python3 (with setuptools) is needed to build an egg");
    assert!(
        out.status.success(),
        "bdist_egg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let egg = std::fs::read_dir(dir.path().join("dist"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "egg"))
        .expect("bdist_egg wrote an .egg");
    let name = egg.file_name().unwrap().to_string_lossy().into_owned();
    (name, std::fs::read(&egg).unwrap())
}

#[test]
fn zipped_egg_in_a_layer_is_a_python_package() {
    let (name, egg) = real_egg();
    assert!(egg.starts_with(b"PK"), "an egg is a zip file");
    let path = format!("usr/lib/python3.11/site-packages/{name}");
    let idx = index(&[(&path, &egg)], &ExtractLimits::default());
    let eggs: Vec<_> = idx
        .packages
        .iter()
        .filter(|p| p.kind == PackageType::Python)
        .collect();
    assert_eq!(eggs.len(), 1, "{:?} {:?}", idx.packages, idx.warnings);
    let p = eggs[0];
    assert_eq!(p.name, "Egg-Demo");
    assert_eq!(p.version, "1.2.3");
    assert_eq!(p.purl.as_deref(), Some("pkg:pypi/egg-demo@1.2.3"));
    assert_eq!(p.locations, [format!("/{path}")]);
    assert_eq!(p.found_by.as_deref(), Some("python-egg"));
    assert_eq!(p.licenses, ["MIT"]);
    assert_eq!(
        p.metadata.get("author").map(String::as_str),
        Some("A Person")
    );
    assert!(idx.warnings.is_empty(), "{:?}", idx.warnings);

    // Turned off, or over the size cap (a warning): no package.
    let off = ExtractLimits {
        egg_scan: false,
        ..Default::default()
    };
    assert!(index(&[(&path, &egg)], &off).packages.is_empty());
    let small = ExtractLimits {
        egg_max_archive_bytes: egg.len() as u64 - 1,
        ..Default::default()
    };
    let idx = index(&[(&path, &egg)], &small);
    assert!(idx.packages.is_empty());
    assert!(
        idx.warnings
            .iter()
            .any(|w| w.contains(&name) && w.contains("egg_max_archive_bytes")),
        "{:?}",
        idx.warnings
    );
}

#[test]
fn corrupt_or_bombed_eggs_are_warnings_not_panics() {
    let (name, egg) = real_egg();
    let dir = "usr/lib/python3/site-packages";
    // Cut short (the central directory is gone), garbage, and a PKG-INFO of 64 MiB
    // (deflates to ~64 KiB) over the decompressed cap; the good egg still counts.
    let cut = &egg[..egg.len() / 2];
    let mut bomb_info = b"Metadata-Version: 2.1\nName: bomb\nVersion: 1\n".to_vec();
    bomb_info.resize(64 << 20, b' ');
    let bomb = zip_of(&[("EGG-INFO/PKG-INFO", &bomb_info)]);
    assert!(bomb.len() < 1 << 20);
    let no_info = zip_of(&[("mod.py", b"X = 1\n")]);
    let files: Vec<(String, &[u8])> = vec![
        (format!("{dir}/cut-1.0-py3.11.egg"), cut),
        (format!("{dir}/junk-1.0-py3.11.egg"), b"not a zip at all"),
        (format!("{dir}/bomb-1.0-py3.11.egg"), &bomb),
        (format!("{dir}/noinfo-1.0-py3.11.egg"), &no_info),
        (format!("{dir}/{name}"), &egg),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let idx = index(&refs, &ExtractLimits::default());
    let names: Vec<&str> = idx.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Egg-Demo"], "{:?}", idx.warnings);
    for (egg, why) in [
        ("cut-1.0", "not a readable zip"),
        ("junk-1.0", "not a readable zip"),
        ("bomb-1.0", "decompressed"),
        ("noinfo-1.0", "no EGG-INFO/PKG-INFO"),
    ] {
        assert!(
            idx.warnings
                .iter()
                .any(|w| w.contains(egg) && w.contains(why)),
            "{egg}: {:?}",
            idx.warnings
        );
    }
    assert_eq!(idx.warnings.len(), 4, "{:?}", idx.warnings);
}
