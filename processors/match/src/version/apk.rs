//! Alpine (apk-tools) version ordering.
//!
//! A version is `digits{.digits}[letter]{_suffix[digits]}[-rN]`. Pre-release suffixes
//! (`_alpha`, `_beta`, `_pre`, `_rc`) sort before the bare version, post-release ones
//! (`_cvs`, `_svn`, `_git`, `_hg`, `_p`) after it. This follows apk-tools' tokenizer.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    Invalid = -1,
    DigitOrZero = 0,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &[u8] {
        &self.s[self.pos..]
    }
}

/// Determine the type of the token starting at the cursor, consuming its separator.
fn next_token(t: &mut Tok, c: &mut Cursor<'_>) {
    let rest = c.rest();
    let mut n = Tok::Invalid;
    if rest.is_empty() || rest[0] == 0 {
        n = Tok::End;
    } else if matches!(*t, Tok::Digit | Tok::DigitOrZero) && rest[0].is_ascii_lowercase() {
        n = Tok::Letter;
    } else if *t == Tok::Letter && rest[0].is_ascii_digit() {
        n = Tok::Digit;
    } else if *t == Tok::Suffix && rest[0].is_ascii_digit() {
        n = Tok::SuffixNo;
    } else {
        match rest[0] {
            b'.' => n = Tok::DigitOrZero,
            b'_' => n = Tok::Suffix,
            b'-' if rest.len() > 1 && rest[1] == b'r' => {
                n = Tok::RevisionNo;
                c.pos += 1;
            }
            _ => {}
        }
        c.pos += 1;
    }
    if n < *t
        && !((n == Tok::DigitOrZero && *t == Tok::Digit)
            || (n == Tok::Suffix && *t == Tok::SuffixNo)
            || (n == Tok::Digit && *t == Tok::Letter))
    {
        n = Tok::Invalid;
    }
    *t = n;
}

/// Read the value of the token of type `t` and advance to the next token.
fn get_token(t: &mut Tok, c: &mut Cursor<'_>) -> i64 {
    let rest = c.rest();
    if rest.is_empty() {
        *t = Tok::End;
        return 0;
    }
    let mut i = 0usize;
    let mut v: i64 = 0;
    let mut nt = Tok::Invalid;
    let digits = |i: &mut usize, v: &mut i64| {
        while *i < rest.len() && rest[*i].is_ascii_digit() {
            *v = v
                .saturating_mul(10)
                .saturating_add((rest[*i] - b'0') as i64);
            *i += 1;
        }
    };
    match *t {
        // Leading zeros of a dotted part ("1.01") compare as a fraction; a lone "0" is a number.
        Tok::DigitOrZero if rest[0] == b'0' && rest.get(1).is_some_and(u8::is_ascii_digit) => {
            while i < rest.len() && rest[i] == b'0' {
                i += 1;
            }
            nt = Tok::Digit;
            v = -(i as i64);
        }
        Tok::DigitOrZero | Tok::Digit | Tok::SuffixNo | Tok::RevisionNo => digits(&mut i, &mut v),
        Tok::Letter => {
            v = rest[0] as i64;
            i = 1;
        }
        Tok::Suffix => {
            if let Some(k) = PRE_SUFFIXES
                .iter()
                .position(|s| rest.starts_with(s.as_bytes()))
            {
                i = PRE_SUFFIXES[k].len();
                v = k as i64 - PRE_SUFFIXES.len() as i64;
                nt = Tok::SuffixNo;
            } else if let Some(k) = POST_SUFFIXES
                .iter()
                .position(|s| rest.starts_with(s.as_bytes()))
            {
                i = POST_SUFFIXES[k].len();
                v = k as i64;
                nt = Tok::SuffixNo;
            } else {
                *t = Tok::Invalid;
                return -1;
            }
        }
        _ => {
            *t = Tok::Invalid;
            return -1;
        }
    }
    c.pos += i;
    if c.rest().is_empty() {
        *t = Tok::End;
    } else if nt != Tok::Invalid {
        *t = nt;
    } else {
        next_token(t, c);
    }
    v
}

/// Compare two apk versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut ca = Cursor {
        s: a.trim().as_bytes(),
        pos: 0,
    };
    let mut cb = Cursor {
        s: b.trim().as_bytes(),
        pos: 0,
    };
    let (mut at, mut bt) = (Tok::Digit, Tok::Digit);
    let (mut av, mut bv) = (0i64, 0i64);
    while at == bt && at != Tok::End && at != Tok::Invalid && av == bv {
        av = get_token(&mut at, &mut ca);
        bv = get_token(&mut bt, &mut cb);
    }
    if av != bv {
        return av.cmp(&bv);
    }
    if at == bt {
        return Ordering::Equal;
    }
    // Equal so far: the longer version is greater unless what follows is a pre-release suffix.
    let mut tt = at;
    if at == Tok::Suffix && get_token(&mut tt, &mut ca) < 0 {
        return Ordering::Less;
    }
    let mut tt = bt;
    if bt == Tok::Suffix && get_token(&mut tt, &mut cb) < 0 {
        return Ordering::Greater;
    }
    bt.cmp(&at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-r0", Less),
            ("1.0-r1", "1.0-r2", Less),
            ("1.0-r10", "1.0-r9", Greater),
            ("1.2.3", "1.2-r1", Greater),
            ("1.0_alpha", "1.0_beta", Less),
            ("1.0_beta", "1.0_pre", Less),
            ("1.0_pre", "1.0_rc", Less),
            ("1.0_rc1", "1.0", Less),
            ("1.01", "1.1", Less),
            ("1.001", "1.01", Less),
            ("1.0.0", "1.0", Greater),
            ("1.0_rc1", "1.0_rc2", Less),
            ("1.0", "1.0_p1", Less),
            ("1.0", "1.0_git20230717", Less),
            ("1.0_cvs", "1.0_svn", Less),
            ("1.0_svn", "1.0_git", Less),
            ("1.0_git", "1.0_hg", Less),
            ("1.0_hg", "1.0_p", Less),
            ("1.0a", "1.0b", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0.1", Less),
            ("1.10", "1.9", Greater),
            ("1.2.4_git20230717-r4", "1.2.4_git20230717-r5", Less),
            ("1.2.4_git20230717-r4", "1.2.4-r3", Greater),
            ("1.2.4-r0", "1.2.4-r3", Less),
            ("1.36.1-r15", "1.36.1-r16", Less),
            ("1.36.0-r9", "1.36.1-r1", Less),
            ("3.1.4-r1", "3.1.4-r3", Less),
            ("3.1.4-r1", "3.1.1-r3", Greater),
            ("1.35.0-r7", "1.36.1-r15", Less),
            ("2.14.0-r5", "2.12.6-r0", Greater),
            ("1.3-r2", "1.2.13-r1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
