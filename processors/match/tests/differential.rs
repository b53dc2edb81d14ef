//! Differential tests: our orderings against the reference implementations that run on
//! this machine — rpm (`rpm.labelCompare` from Debian's python3-rpm), PEP 440 (Python
//! `packaging`), npm (the `semver` npm package under node) and Maven (`ComparableVersion`
//! from Debian's maven-artifact jar), RubyGems (`Gem::Version` under Debian's ruby) and
//! Go modules (`golang.org/x/mod/semver` from Debian's golang-golang-x-mod-dev),
//! Composer (`Composer\Semver` from Debian's php-composer-semver under php-cli) and Hex
//! (Elixir's `Version.compare` from Debian's elixir).
//! Each batches all pairs into one process.
//! A missing reference fails the test unless `VIGIL_SKIP_DIFFERENTIAL=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{check, pairs, reference_absent, run_batch, sign, valid_only, Rng};
use vigil_match::version::{composer, gem, golang, maven, pep440, rpm, semver};

const N: usize = 5000;

// ---------------------------------------------------------------- rpm

fn rpm_part(r: &mut Rng) -> String {
    let mut s = r.num(20);
    for _ in 0..r.below(5) {
        match r.below(9) {
            0..=2 => {
                s.push('.');
                s.push_str(&r.num(30));
            }
            3 => s.push_str(r.pick(&["a", "b", "rc", "el", "beta", "Z"])),
            4 => {
                s.push('~');
                s.push_str(r.pick(&["", "rc1", "1", "beta"]));
            }
            5 => {
                s.push('^');
                s.push_str(r.pick(&["", "git1", "20230101", "1"]));
            }
            6 => s.push_str(r.pick(&["_", "+", ".", "_1", "+b"])),
            7 => s.push_str(&format!("0{}", r.num(5))),
            _ => s.push_str(&r.num(12)),
        }
    }
    s
}

fn rpm_evr(r: &mut Rng) -> String {
    let epoch = if r.chance(20) {
        format!("{}:", r.below(3))
    } else {
        String::new()
    };
    let release = if r.chance(50) {
        format!("{}.el{}_{}", r.num(60), 7 + r.below(3), r.num(4))
    } else {
        rpm_part(r)
    };
    format!("{epoch}{}-{release}", rpm_part(r))
}

fn rpm_mutate(r: &mut Rng, a: &str) -> String {
    let (vr, rel) = a.rsplit_once('-').unwrap();
    match r.below(7) {
        0 => a.to_string(),
        1 => format!(
            "{vr}-{rel}{}",
            r.pick(&[".1", "~rc", "^1", "a", ".0", "_1"])
        ),
        2 => format!(
            "{vr}{}-{rel}",
            r.pick(&["~rc1", "^git", ".0", "a", "~", "^"])
        ),
        3 => format!("1:{}", vr.split_once(':').map_or(vr, |x| x.1)) + "-" + rel,
        4 => format!("{vr}-{}", rel.replace('1', "2")),
        5 => format!("{}-{rel}", vr.replace('.', "_")),
        _ => rpm_evr(r),
    }
}

#[test]
fn rpm_ordering_matches_rpm_label_compare() {
    let py = "/usr/bin/python3";
    let ok = Command::new(py)
        .args(["-c", "import rpm"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok
        && reference_absent(
            "python3-rpm (rpm.labelCompare)",
            "apt-get install -y python3-rpm",
        )
    {
        return;
    }
    let ps = pairs(0x000A_11CE_0001, N, rpm_evr, rpm_mutate);
    let script = r#"
import sys, rpm
def evr(s):
    e, _, rest = s.rpartition(':') if ':' in s else ('0', '', s)
    v, _, r = rest.rpartition('-')
    return (e or '0', v, r)
out = []
for line in sys.stdin:
    a, b = line.rstrip('\n').split('\t')
    out.append(str(rpm.labelCompare(evr(a), evr(b))))
print('\n'.join(out))
"#;
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let got = run_batch(Command::new(py).args(["-c", script]), &input);
    let want: Vec<_> = got.iter().map(|s| sign(s)).collect();
    check("rpm", &ps, &want, rpm::compare);
}

// ---------------------------------------------------------------- PEP 440

fn pep440_version(r: &mut Rng) -> String {
    let mut s = String::new();
    if r.chance(5) {
        s.push_str(r.pick(&["v", "V"]));
    }
    if r.chance(5) {
        s.push_str(&format!("{}!", r.below(3)));
    }
    s.push_str(&r.num(12));
    for _ in 0..r.below(4) {
        s.push('.');
        let m = if r.chance(10) { 200 } else { 12 };
        s.push_str(&r.num(m));
    }
    if r.chance(35) {
        s.push_str(r.pick(&[
            "a", "b", "rc", "c", "alpha", "beta", "pre", "preview", "A", "RC", ".a", "-b", "_rc",
        ]));
        if r.chance(85) {
            s.push_str(&r.num(5));
        }
    }
    if r.chance(20) {
        s.push_str(r.pick(&[".post", "post", "-", ".rev", ".r", "-post"]));
        s.push_str(&r.num(4));
    }
    if r.chance(20) {
        s.push_str(r.pick(&[".dev", "dev", "-dev", "_dev"]));
        if r.chance(80) {
            s.push_str(&r.num(4));
        }
    }
    if r.chance(10) {
        s.push('+');
        s.push_str(r.pick(&["ubuntu1", "1", "abc.5", "local.7.x", "0"]));
    }
    // `1.0-` would be an invalid post-release without a number: keep it valid.
    if s.ends_with('-') {
        s.push('1');
    }
    s
}

fn pep440_mutate(r: &mut Rng, a: &str) -> String {
    match r.below(7) {
        0 => a.to_string(),
        1 => format!("{a}.0").replace("+.0", "+0"),
        2 => {
            if a.contains('+') {
                a.split('+').next().unwrap().to_string()
            } else {
                format!("{a}+1")
            }
        }
        3 => a.to_ascii_uppercase(),
        4 => a.replacen(|c: char| c.is_ascii_digit(), &r.num(10), 1),
        5 => a.replace("c", "rc").replace("rrc", "rc"),
        _ => pep440_version(r),
    }
}

fn packaging_python() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import packaging.version"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn pep440_ordering_matches_python_packaging() {
    let Some(py) = packaging_python() else {
        if reference_absent("Python `packaging`", "pip install packaging") {
            return;
        }
        unreachable!()
    };
    let ps = pairs(0xBEEF_0440, N, pep440_version, pep440_mutate);
    let script = r#"
import sys
from packaging.version import Version, InvalidVersion
out = []
for line in sys.stdin:
    a, b = line.rstrip('\n').split('\t')
    try:
        x, y = Version(a), Version(b)
        out.append(str((x > y) - (x < y)))
    except InvalidVersion:
        out.append('invalid')
print('\n'.join(out))
"#;
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let got = run_batch(Command::new(py).args(["-c", script]), &input);
    // Keep only pairs that `packaging` accepts; the generator must mostly produce those.
    let mut kept = Vec::new();
    let mut want = Vec::new();
    for ((a, b), g) in ps.iter().zip(&got) {
        if g != "invalid" {
            kept.push((a.clone(), b.clone()));
            want.push(sign(g));
        } else {
            // What packaging rejects, pep440_rs must reject too (one side at least).
            assert!(
                pep440::parse(a).is_none() || pep440::parse(b).is_none(),
                "pep440_rs accepts {a:?} and {b:?}, packaging does not"
            );
        }
    }
    assert!(kept.len() > N * 9 / 10, "only {} valid pairs", kept.len());
    check("pep440", &kept, &want, pep440::compare);
}

// ---------------------------------------------------------------- npm

fn npm_version(r: &mut Rng) -> String {
    let mut s = format!("{}.{}.{}", r.num(6), r.num(12), r.num(25));
    if r.chance(35) {
        s.push('-');
        let n = 1 + r.below(3);
        let ids: Vec<String> = (0..n)
            .map(|_| {
                if r.chance(40) {
                    r.num(12)
                } else {
                    r.pick(&["alpha", "beta", "rc", "pre", "x", "Alpha", "0a", "b2"])
                        .to_string()
                }
            })
            .collect();
        s.push_str(&ids.join("."));
    }
    if r.chance(10) {
        s.push('+');
        s.push_str(r.pick(&["build.1", "sha.abc", "001", "x"]));
    }
    if r.chance(5) {
        s.insert(0, 'v');
    }
    s
}

fn npm_mutate(r: &mut Rng, a: &str) -> String {
    match r.below(6) {
        0 => a.to_string(),
        1 => format!("{}+meta", a.split('+').next().unwrap()),
        2 => a.replacen(|c: char| c.is_ascii_digit(), &r.num(10), 1),
        3 => {
            let core = a.split(['-', '+']).next().unwrap();
            format!(
                "{core}-{}",
                r.pick(&["alpha", "alpha.1", "0", "rc.1", "beta.11"])
            )
        }
        4 => a.split(['-', '+']).next().unwrap().to_string(),
        _ => npm_version(r),
    }
}

/// npm ranges of every form, ordered or not (empty sets included).
fn npm_range(r: &mut Rng) -> String {
    let simple = |r: &mut Rng| -> String {
        let v = npm_version(r)
            .trim_start_matches('v')
            .split('+')
            .next()
            .unwrap()
            .to_string();
        let w = npm_version(r)
            .trim_start_matches('v')
            .split('+')
            .next()
            .unwrap()
            .to_string();
        let (lo, hi) = if r.chance(70) && semver::compare_npm(&v, &w).is_gt() {
            (w, v.clone())
        } else {
            (v.clone(), w)
        };
        match r.below(14) {
            0 => format!("^{v}"),
            1 => format!("~{v}"),
            2 => format!(">={v}"),
            3 => format!("<{v}"),
            4 => format!(">={lo} <{hi}"),
            5 => format!("{}.x", r.num(6)),
            6 => {
                let major: u64 = hi.split('.').next().unwrap().parse().unwrap();
                format!("{} - {hi}", r.below(major + 2))
            }
            9 => format!("{}.{} - {}", r.num(5), r.num(10), r.num(6)),
            10 => format!("^{}.{}", r.num(2), r.num(4)),
            11 => format!("~{}", r.num(5)),
            12 => format!("{} {}.x", r.pick(&[">", "<", ">=", "<="]), r.num(5)),
            13 => format!("<={}.{}", r.num(5), r.num(10)),
            7 => format!("<={v}"),
            8 => format!(">{v}"),
            _ => v,
        }
    };
    let mut s = simple(r);
    if r.chance(25) {
        s = format!("{s} || {}", simple(r));
    }
    s
}

fn node_semver_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("VIGIL_NPM_MODULES") {
        candidates.push(p.into());
    }
    if let Ok(h) = std::env::var("HOME") {
        candidates.push(Path::new(&h).join(".cache/vigil-npm/node_modules"));
    }
    candidates.push("/usr/lib/node_modules".into());
    candidates.push("/usr/share/nodejs".into());
    candidates
        .into_iter()
        .find(|p| p.join("semver/package.json").exists())
}

#[test]
fn npm_ordering_and_ranges_match_npm_semver() {
    let dir = node_semver_dir();
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(dir) = dir.filter(|_| node_ok) else {
        if reference_absent(
            "node with the `semver` npm package",
            "npm install --prefix \"$HOME/.cache/vigil-npm\" semver",
        ) {
            return;
        }
        unreachable!()
    };
    let ps = pairs(0x0E0E_5E3E, N, npm_version, npm_mutate);
    let mut rr = Rng(0x4A4A_0007);
    let sats: Vec<(String, String)> = (0..3000)
        .map(|_| {
            let v = npm_version(&mut rr);
            (v, npm_range(&mut rr))
        })
        .collect();
    let script = r#"
const semver = require('semver');
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
const out = lines.map(l => {
  const [k, a, b] = l.split('\t');
  if (k === 'C') return String(semver.compare(a, b));
  return semver.satisfies(a, b) ? 'T' : 'F';
});
process.stdout.write(out.join('\n') + '\n');
"#;
    let mut input: String = ps.iter().map(|(a, b)| format!("C\t{a}\t{b}\n")).collect();
    input.extend(sats.iter().map(|(v, rg)| format!("S\t{v}\t{rg}\n")));
    let got = run_batch(
        Command::new("node")
            .args(["-e", script])
            .env("NODE_PATH", &dir),
        &input,
    );
    let (cmp_out, sat_out) = got.split_at(ps.len());
    let want: Vec<_> = cmp_out.iter().map(|s| sign(s)).collect();
    check("npm compare", &ps, &want, semver::compare_npm);
    let mut bad = Vec::new();
    let mut trues = 0;
    for ((v, rg), g) in sats.iter().zip(sat_out) {
        let w = g == "T";
        trues += w as usize;
        let ours = semver::npm_satisfies(v, rg);
        if ours != Some(w) {
            bad.push(format!("{v:?} in {rg:?}: ours {ours:?}, npm {w}"));
        }
    }
    assert!(
        trues > 300 && trues < sats.len() - 300,
        "range generator too narrow: {trues}"
    );
    assert!(
        bad.is_empty(),
        "npm satisfies: {} of {} disagree; first:\n{}",
        bad.len(),
        sats.len(),
        bad.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------- Maven

fn maven_version(r: &mut Rng) -> String {
    let mut s = r.num(15);
    for _ in 0..r.below(5) {
        match r.below(12) {
            0..=3 => {
                s.push('.');
                let m = if r.chance(5) { 100_000 } else { 15 };
                s.push_str(&r.num(m));
            }
            4..=5 => {
                s.push(if r.chance(50) { '-' } else { '.' });
                s.push_str(r.pick(&[
                    "alpha",
                    "beta",
                    "milestone",
                    "rc",
                    "cr",
                    "SNAPSHOT",
                    "ga",
                    "final",
                    "RELEASE",
                    "sp",
                    "Final",
                    "foo",
                    "jre",
                    "android",
                    "M",
                    "RC",
                    "GA",
                    "pre",
                ]));
            }
            6 => s.push_str(r.pick(&["a", "b", "m", "rc", "alpha", "beta", "sp", "x"])),
            7 => s.push_str(&r.num(5)),
            8 => s.push('-'),
            9 => s.push_str(&format!("-{}", r.num(4))),
            10 => s.push_str(&format!("0{}", r.num(3))),
            _ => s.push_str(".0"),
        }
    }
    s
}

fn maven_mutate(r: &mut Rng, a: &str) -> String {
    match r.below(7) {
        0 => a.to_string(),
        1 => format!(
            "{a}{}",
            r.pick(&[".0", "-0", "-ga", "-final", ".0.0", "-", "-SNAPSHOT", "-sp"])
        ),
        2 => a.replace('-', "."),
        3 => a.replace('.', "-"),
        4 => a.to_ascii_uppercase(),
        5 => a.replacen(|c: char| c.is_ascii_digit(), &r.num(10), 1),
        _ => maven_version(r),
    }
}

#[test]
fn maven_ordering_matches_maven_comparable_version() {
    let jar = [
        "/usr/share/maven/lib/maven-artifact-3.x.jar",
        "/usr/share/java/maven3-artifact.jar",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let javac_ok = Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(jar) = jar.filter(|_| javac_ok) else {
        if reference_absent(
            "Maven's maven-artifact jar with a JDK",
            "apt-get install -y maven default-jdk-headless",
        ) {
            return;
        }
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    let src = r#"
import java.io.*;
import org.apache.maven.artifact.versioning.ComparableVersion;
public class MavenCmp {
  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
    StringBuilder out = new StringBuilder();
    String line;
    while ((line = in.readLine()) != null) {
      int t = line.indexOf('\t');
      int c = new ComparableVersion(line.substring(0, t)).compareTo(new ComparableVersion(line.substring(t + 1)));
      out.append(Integer.signum(c)).append('\n');
    }
    System.out.print(out);
  }
}
"#;
    std::fs::write(dir.path().join("MavenCmp.java"), src).unwrap();
    let st = Command::new("javac")
        .args(["-cp", jar, "-d"])
        .arg(dir.path())
        .arg(dir.path().join("MavenCmp.java"))
        .status()
        .unwrap();
    assert!(st.success(), "javac failed");
    let ps = pairs(0x3A7E_4E00, N, maven_version, maven_mutate);
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let cp = format!("{}:{jar}", dir.path().display());
    let got = run_batch(Command::new("java").args(["-cp", &cp, "MavenCmp"]), &input);
    let want: Vec<_> = got.iter().map(|s| sign(s)).collect();
    check("maven", &ps, &want, maven::compare);
}

// ---------------------------------------------------------------- RubyGems

fn gem_version(r: &mut Rng) -> String {
    let mut s = r.num(12);
    for _ in 0..r.below(5) {
        match r.below(8) {
            0..=3 => {
                s.push('.');
                let m = if r.chance(10) { 300 } else { 12 };
                s.push_str(&r.num(m));
            }
            4 => {
                s.push('.');
                s.push_str(r.pick(&["a", "b", "pre", "rc", "beta", "alpha", "Z", "dev"]));
            }
            5 => s.push_str(r.pick(&["a", "rc", "b", "pre"])),
            6 => {
                s.push('-');
                s.push_str(r.pick(&["1", "rc1", "pre", "x.2"]));
            }
            _ => s.push_str(&format!(".0{}", r.num(3))),
        }
    }
    s
}

fn gem_mutate(r: &mut Rng, a: &str) -> String {
    match r.below(6) {
        0 => a.to_string(),
        1 => format!("{a}{}", r.pick(&[".0", ".0.0", ".a", ".1", "a"])),
        2 => a.replace('-', ".pre."),
        3 => a.replacen(|c: char| c.is_ascii_digit(), &r.num(10), 1),
        4 => a.trim_end_matches(".0").to_string(),
        _ => gem_version(r),
    }
}

#[test]
fn rubygems_ordering_matches_gem_version() {
    let ok = Command::new("ruby")
        .args(["-e", "Gem::Version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && reference_absent("ruby (Gem::Version)", "apt-get install -y ruby") {
        return;
    }
    let ps = pairs(0x0006_E36E_3001, N, gem_version, gem_mutate);
    let script = r#"
out = []
STDIN.each_line do |l|
  a, b = l.chomp.split("\t")
  begin
    out << (Gem::Version.new(a) <=> Gem::Version.new(b)).to_s
  rescue ArgumentError
    out << "invalid"
  end
end
puts out
"#;
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let got = run_batch(Command::new("ruby").args(["-e", script]), &input);
    let (kept, want) = valid_only(&ps, &got);
    assert!(kept.len() > N * 8 / 10, "only {} valid pairs", kept.len());
    check("rubygems", &kept, &want, gem::compare);
}

// ---------------------------------------------------------------- Go modules

fn go_version(r: &mut Rng) -> String {
    let mut s = format!("v{}", r.num(4));
    match r.below(10) {
        0 => {}
        1 => s.push_str(&format!(".{}", r.num(12))),
        _ => s.push_str(&format!(".{}.{}", r.num(12), r.num(20))),
    }
    match r.below(10) {
        0 => s.push_str(&format!(
            "-0.2019{:02}{:02}021931-daa7c04131f5",
            1 + r.below(12),
            1 + r.below(28)
        )),
        1 => s.push_str(&format!(
            "-{}.0.2020{:02}01000000-abcdefabcdef",
            r.pick(&["pre", "rc.1", "beta"]),
            1 + r.below(12)
        )),
        2 | 3 => {
            s.push('-');
            s.push_str(r.pick(&[
                "alpha", "beta.2", "rc.1", "rc.10", "0", "01", "x-y", "1.a", "",
            ]));
        }
        _ => {}
    }
    if r.chance(10) {
        s.push_str(r.pick(&["+incompatible", "+build.1", "+", "+a..b"]));
    }
    s
}

fn go_mutate(r: &mut Rng, a: &str) -> String {
    match r.below(6) {
        0 => a.to_string(),
        1 => format!("{}+incompatible", a.split('+').next().unwrap()),
        2 => a.split(['-', '+']).next().unwrap().to_string(),
        3 => a.replacen(|c: char| c.is_ascii_digit(), &r.num(10), 1),
        4 => a.trim_start_matches('v').to_string(),
        _ => go_version(r),
    }
}

#[test]
fn go_ordering_matches_x_mod_semver() {
    let gopath_src = Path::new("/usr/share/gocode/src/golang.org/x/mod/semver/semver.go");
    let go_ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(go_ok && gopath_src.exists())
        && reference_absent(
            "go with golang.org/x/mod/semver",
            "apt-get install -y golang-go golang-golang-x-mod-dev",
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/vigilgosv");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("main.go"),
        r#"package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/semver"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		p := strings.SplitN(in.Text(), "\t", 2)
		fmt.Fprintln(out, semver.Compare(p[0], p[1]))
	}
}
"#,
    )
    .unwrap();
    let bin = dir.path().join("gosv");
    let gopath = format!("{}:/usr/share/gocode", dir.path().display());
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOFLAGS", "")
        .status()
        .unwrap();
    assert!(st.success(), "go build failed");
    // x/mod requires the `v` prefix; ours also reads bare versions, so compare with `v`.
    let ps: Vec<(String, String)> = pairs(0x0060_5E3E_0001, N, go_version, go_mutate)
        .into_iter()
        .map(|(a, b)| {
            let v = |s: String| {
                if s.starts_with('v') {
                    s
                } else {
                    format!("v{s}")
                }
            };
            (v(a), v(b))
        })
        .collect();
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let got = run_batch(&mut Command::new(&bin), &input);
    let want: Vec<_> = got.iter().map(|s| sign(s)).collect();
    check("go", &ps, &want, golang::compare);
}

// ---------------------------------------------------------------- Composer

fn composer_version(r: &mut Rng) -> String {
    let parts = 1 + r.below(4);
    let mut s = (0..parts).map(|_| r.num(12)).collect::<Vec<_>>().join(".");
    if r.chance(40) {
        s.push_str(r.pick(&["-", "", ".", "_"]));
        s.push_str(r.pick(&[
            "alpha", "a", "beta", "b", "RC", "rc", "p", "pl", "patch", "stable", "dev",
        ]));
        if r.chance(60) {
            s.push_str(&r.num(5));
        }
    }
    if r.chance(10) {
        s.insert(0, 'v');
    }
    s
}

fn composer_mutate(r: &mut Rng, a: &str) -> String {
    match r.below(6) {
        0 => a.to_string(),
        1 => format!("{a}{}", r.pick(&[".0", "-dev", "-p1", "-RC2", ".1"])),
        2 => a.replacen(|c: char| c.is_ascii_digit(), &r.num(10), 1),
        3 => a.split(['-', '_']).next().unwrap().to_string(),
        4 => a.replace("beta", "b").replace("alpha", "a"),
        _ => composer_version(r),
    }
}

#[test]
fn composer_ordering_matches_composer_semver() {
    const AUTOLOAD: &str = "/usr/share/php/Composer/Semver/autoload.php";
    let ok = std::path::Path::new(AUTOLOAD).exists()
        && Command::new("php")
            .args(["-r", "echo 1;"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok
        && reference_absent(
            "php with Composer\\Semver",
            "apt-get install -y php-cli php-composer-semver",
        )
    {
        return;
    }
    let ps = pairs(0x0C0A_9053_0001, N, composer_version, composer_mutate);
    // Installed versions are normalised by Composer's VersionParser before they are
    // compared; the reference does the same.
    let script = format!(
        r#"require '{AUTOLOAD}';
$p = new Composer\Semver\VersionParser();
while (($l = fgets(STDIN)) !== false) {{
  [$a, $b] = explode("\t", rtrim($l, "\n"));
  try {{ $x = $p->normalize($a); $y = $p->normalize($b); }}
  catch (Exception $e) {{ echo "invalid\n"; continue; }}
  echo Composer\Semver\Comparator::lessThan($x, $y) ? "-1"
     : (Composer\Semver\Comparator::greaterThan($x, $y) ? "1" : "0"), "\n";
}}"#
    );
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let got = run_batch(Command::new("php").args(["-r", &script]), &input);
    let (kept, want) = valid_only(&ps, &got);
    assert!(kept.len() > N * 6 / 10, "only {} valid pairs", kept.len());
    check("composer", &kept, &want, composer::compare);
}

// ---------------------------------------------------------------- Hex

#[test]
fn hex_ordering_matches_elixir_version() {
    let ok = Command::new("elixir")
        .args(["-e", "Version.parse!(\"1.0.0\")"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && reference_absent("elixir (Version)", "apt-get install -y elixir") {
        return;
    }
    let ps = pairs(0x0E71_0001, N, npm_version, npm_mutate);
    let script = r#"
IO.stream(:stdio, :line)
|> Enum.each(fn l ->
  [a, b] = l |> String.trim_trailing("\n") |> String.split("\t")
  case {Version.parse(a), Version.parse(b)} do
    {{:ok, x}, {:ok, y}} ->
      IO.puts(case Version.compare(x, y) do :lt -> "-1"; :eq -> "0"; :gt -> "1" end)
    _ -> IO.puts("invalid")
  end
end)
"#;
    let input: String = ps.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let got = run_batch(Command::new("elixir").args(["-e", script]), &input);
    let (kept, want) = valid_only(&ps, &got);
    assert!(kept.len() > N / 2, "only {} valid pairs", kept.len());
    let hex = vigil_match::Comparator::Hex;
    check("hex", &kept, &want, |a, b| hex.compare(a, b));
}
