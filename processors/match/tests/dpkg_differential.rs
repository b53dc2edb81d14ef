//! Differential test: our dpkg ordering against the real `dpkg --compare-versions`.

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use vigil_match::version::dpkg;

/// xorshift64*: deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn number(r: &mut Rng) -> String {
    let n = r.below(25);
    if r.chance(10) {
        format!("0{n}")
    } else {
        n.to_string()
    }
}

fn letters(r: &mut Rng) -> String {
    let alphabet = b"abcdeprzABZ";
    (0..1 + r.below(3))
        .map(|_| alphabet[r.below(alphabet.len() as u64) as usize] as char)
        .collect()
}

fn upstream(r: &mut Rng) -> String {
    let mut s = number(r);
    for _ in 0..r.below(5) {
        match r.below(10) {
            0..=3 => {
                s.push('.');
                s.push_str(&number(r));
            }
            4 => s.push_str(&letters(r)),
            5 => {
                s.push('~');
                s.push_str(r.pick(&["rc", "beta", "", "dfsg", "1"]));
            }
            6 => {
                s.push('+');
                s.push_str(r.pick(&["dfsg", "ds", "git20230101", "really", "b1"]));
            }
            7 => s.push_str(&number(r)),
            8 => {
                s.push('.');
                s.push_str(&letters(r));
            }
            _ => s.push('~'),
        }
    }
    s
}

fn revision(r: &mut Rng) -> String {
    let mut s = number(r);
    for _ in 0..r.below(3) {
        match r.below(6) {
            0 => {
                s.push_str("+deb");
                s.push_str(&r.below(14).to_string());
                s.push('u');
                s.push_str(&r.below(12).to_string());
            }
            1 => {
                s.push_str("~bpo");
                s.push_str(&r.below(13).to_string());
                s.push_str("+1");
            }
            2 => {
                s.push('.');
                s.push_str(&number(r));
            }
            3 => s.push_str(&letters(r)),
            4 => s.push('~'),
            _ => {
                s.push('+');
                s.push_str(&letters(r));
            }
        }
    }
    s
}

fn version(r: &mut Rng) -> String {
    let mut s = String::new();
    if r.chance(20) {
        s.push_str(&format!("{}:", r.below(3)));
    }
    s.push_str(&upstream(r));
    if r.chance(70) {
        s.push('-');
        s.push_str(&revision(r));
    }
    s
}

/// A version close to `a`, so that equal and near-equal pairs are common.
fn mutate(r: &mut Rng, a: &str) -> String {
    match r.below(8) {
        0 => a.to_string(),
        1 => format!("{a}~{}", r.pick(&["", "1", "rc1"])),
        2 => format!("{a}{}", r.pick(&["+deb12u1", "a", "0", ".0", "+b1", "~"])),
        3 => format!("0:{}", a.split_once(':').map(|x| x.1).unwrap_or(a)),
        4 => {
            // Change one digit.
            let mut b: Vec<char> = a.chars().collect();
            let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
            if let Some(&i) = digits.get(r.below(digits.len().max(1) as u64) as usize) {
                b[i] = char::from(b'0' + r.below(10) as u8);
            }
            b.into_iter().collect()
        }
        5 => {
            let mut s = a.to_string();
            s.pop();
            if s.is_empty() || s.ends_with('-') || s.ends_with(':') {
                a.to_string()
            } else {
                s
            }
        }
        6 if !a.contains('-') => format!("{a}-0"),
        _ => version(r),
    }
}

fn dpkg_compare(pairs: &[(String, String)]) -> Vec<Ordering> {
    let script = r#"while read -r a b; do
if dpkg --compare-versions "$a" lt "$b" 2>/dev/null; then echo lt;
elif dpkg --compare-versions "$a" eq "$b" 2>/dev/null; then echo eq;
else echo gt; fi; done"#;
    let chunks: Vec<&[(String, String)]> = pairs.chunks(pairs.len().div_ceil(8)).collect();
    let children: Vec<_> = chunks
        .iter()
        .map(|chunk| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run sh");
            let mut input = String::new();
            for (a, b) in chunk.iter() {
                input.push_str(&format!("{a} {b}\n"));
            }
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child
        })
        .collect();
    let mut out = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success());
        for line in String::from_utf8(o.stdout).unwrap().lines() {
            out.push(match line {
                "lt" => Ordering::Less,
                "eq" => Ordering::Equal,
                _ => Ordering::Greater,
            });
        }
    }
    out
}

#[test]
fn dpkg_ordering_matches_real_dpkg() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        panic!("dpkg is required for this test");
    }
    let mut r = Rng(0x5EED_1234_ABCD_0001);
    let mut pairs = Vec::new();
    while pairs.len() < 4000 {
        let a = version(&mut r);
        let b = if r.chance(50) {
            mutate(&mut r, &a)
        } else {
            version(&mut r)
        };
        pairs.push((a, b));
    }
    let want = dpkg_compare(&pairs);
    assert_eq!(want.len(), pairs.len());
    let eq = want.iter().filter(|o| **o == Ordering::Equal).count();
    assert!(eq > 100, "too few equal pairs generated: {eq}");
    let mut bad = Vec::new();
    for ((a, b), w) in pairs.iter().zip(&want) {
        let got = dpkg::compare(a, b);
        if got != *w {
            bad.push(format!("{a} vs {b}: dpkg {w:?}, ours {got:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
}
