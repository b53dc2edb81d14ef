//! Helpers shared by the differential tests: a deterministic generator, the
//! skip rule, and a runner that feeds all pairs to one reference process.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

/// xorshift64*: deterministic pseudo-random numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    pub fn num(&mut self, max: u64) -> String {
        self.below(max).to_string()
    }
}

/// Call when the reference implementation is absent: fails the test unless
/// `VIGIL_SKIP_DIFFERENTIAL=1`, in which case the caller returns early.
pub fn reference_absent(what: &str, install: &str) -> bool {
    if std::env::var("VIGIL_SKIP_DIFFERENTIAL").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {what} is not available (VIGIL_SKIP_DIFFERENTIAL=1)");
        return true;
    }
    panic!("{what} is required for this differential test; install it with: {install} (or set VIGIL_SKIP_DIFFERENTIAL=1)");
}

/// Run `cmd` once with every line of `input` on stdin; returns its stdout lines.
pub fn run_batch(cmd: &mut Command, input: &str) -> Vec<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the reference process");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_string();
    let writer = std::thread::spawn(move || {
        // A reference that dies early closes the pipe; its status and stderr tell why.
        let _ = stdin.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "reference process failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn sign(s: &str) -> Ordering {
    match s.trim() {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        other => panic!("unexpected reference output {other:?}"),
    }
}

/// Compare ours against the reference's answers; fail listing the first mismatches.
/// The pairs the reference answered for (not `invalid`) and its answers.
pub fn valid_only(
    pairs: &[(String, String)],
    got: &[String],
) -> (Vec<(String, String)>, Vec<Ordering>) {
    pairs
        .iter()
        .zip(got)
        .filter(|(_, g)| *g != "invalid")
        .map(|(p, g)| (p.clone(), sign(g)))
        .unzip()
}

pub fn check(
    what: &str,
    pairs: &[(String, String)],
    want: &[Ordering],
    ours: impl Fn(&str, &str) -> Ordering,
) {
    assert_eq!(
        want.len(),
        pairs.len(),
        "{what}: reference answered {} of {} pairs",
        want.len(),
        pairs.len()
    );
    let mut bad = Vec::new();
    for ((a, b), w) in pairs.iter().zip(want) {
        let got = ours(a, b);
        if got != *w {
            bad.push(format!("{a:?} vs {b:?}: ours {got:?}, reference {w:?}"));
        }
    }
    let distinct: std::collections::BTreeSet<_> = want.iter().collect();
    assert!(
        distinct.len() == 3,
        "{what}: generator too narrow, outcomes {distinct:?}"
    );
    assert!(
        bad.is_empty(),
        "{what}: {} of {} pairs disagree; first:\n{}",
        bad.len(),
        pairs.len(),
        bad.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("{what}: {} pairs agree with the reference", pairs.len());
}

/// A pair generator: half the time `b` is a mutation of `a`, so equal and near pairs
/// are common.
pub fn pairs(
    seed: u64,
    n: usize,
    mut gen: impl FnMut(&mut Rng) -> String,
    mut mutate: impl FnMut(&mut Rng, &str) -> String,
) -> Vec<(String, String)> {
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let a = gen(&mut r);
        let b = if r.chance(50) {
            mutate(&mut r, &a)
        } else {
            gen(&mut r)
        };
        out.push((a, b));
    }
    out
}
