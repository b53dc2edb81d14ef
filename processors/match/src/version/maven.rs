//! Maven ordering: the rules of `org.apache.maven.artifact.versioning.ComparableVersion`
//! as shipped in Maven 3.8 (the reference the differential test runs against).
//!
//! A version is split on `.`, `-` and digit/letter transitions into a nested list (a `-`
//! or a transition opens a sub-list). Numbers compare numerically; qualifiers order
//! `alpha` < `beta` < `milestone` < `rc` = `cr` < `snapshot` < `""` = `ga` = `final` =
//! `release` < `sp` < any other qualifier (those alphabetically); `a1`/`b1`/`m1` mean
//! alpha/beta/milestone. Trailing zeros and empty qualifiers are dropped (`1.0` = `1`).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Digits without leading zeros (`"0"` for zero).
    Int(String),
    /// A qualifier, aliases resolved.
    Str(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

fn string_item(s: &str, followed_by_digit: bool) -> Item {
    let s = if followed_by_digit && s.len() == 1 {
        match s {
            "a" => "alpha",
            "b" => "beta",
            "m" => "milestone",
            other => other,
        }
    } else {
        s
    };
    let s = match s {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Str(s.to_string())
}

fn int_item(digits: &str) -> Item {
    let t = digits.trim_start_matches('0');
    Item::Int(if t.is_empty() { "0".into() } else { t.into() })
}

fn parse_item(is_digit: bool, s: &str) -> Item {
    if is_digit {
        int_item(s)
    } else {
        string_item(s, false)
    }
}

fn is_null(i: &Item) -> bool {
    match i {
        Item::Int(v) => v == "0",
        Item::Str(s) => s.is_empty(),
        Item::List(l) => l.is_empty(),
    }
}

fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if is_null(&list[i]) {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

fn parse(version: &str) -> Item {
    let v: Vec<char> = version.to_lowercase().chars().collect();
    let text = |a: usize, b: usize| v[a..b].iter().collect::<String>();
    // A chain of lists: each new list is the last item of the one before it.
    let mut levels: Vec<Vec<Item>> = vec![Vec::new()];
    let mut is_digit = false;
    let mut start = 0usize;
    for (i, &c) in v.iter().enumerate() {
        let cur = levels.len() - 1;
        if c == '.' || c == '-' {
            if i == start {
                levels[cur].push(Item::Int("0".into()));
            } else {
                levels[cur].push(parse_item(is_digit, &text(start, i)));
            }
            start = i + 1;
            if c == '-' {
                levels.push(Vec::new());
            }
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                // A qualifier followed by digits (`rc1`) starts a sub-list of its own
                // unless the current list is still empty.
                let cur = if levels[cur].is_empty() {
                    cur
                } else {
                    levels.push(Vec::new());
                    cur + 1
                };
                levels[cur].push(string_item(&text(start, i), true));
                start = i;
                levels.push(Vec::new());
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                levels[cur].push(parse_item(true, &text(start, i)));
                start = i;
                levels.push(Vec::new());
            }
            is_digit = false;
        }
    }
    if v.len() > start {
        // A trailing qualifier after `.` is treated as after `-`: `1.0.0.x` < `1.0.0-y`.
        if !is_digit && levels.last().is_some_and(|l| !l.is_empty()) {
            levels.push(Vec::new());
        }
        let cur = levels.len() - 1;
        levels[cur].push(parse_item(is_digit, &text(start, v.len())));
    }
    let mut child: Option<Vec<Item>> = None;
    while let Some(mut level) = levels.pop() {
        if let Some(c) = child.take() {
            level.push(Item::List(c));
        }
        normalize(&mut level);
        child = Some(level);
    }
    Item::List(child.unwrap_or_default())
}

fn comparable_qualifier(q: &str) -> String {
    match QUALIFIERS.iter().position(|x| *x == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn cmp_int(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_item(a: &Item, b: Option<&Item>) -> Ordering {
    use Ordering::*;
    match (a, b) {
        (Item::Int(x), None) => {
            if x == "0" {
                Equal
            } else {
                Greater
            }
        }
        (Item::Int(x), Some(Item::Int(y))) => cmp_int(x, y),
        (Item::Int(_), Some(_)) => Greater,
        (Item::Str(s), None) => comparable_qualifier(s).cmp(&comparable_qualifier("")),
        (Item::Str(_), Some(Item::Int(_))) => Less,
        (Item::Str(s), Some(Item::Str(t))) => comparable_qualifier(s).cmp(&comparable_qualifier(t)),
        (Item::Str(_), Some(Item::List(_))) => Less,
        (Item::List(l), None) => l
            .iter()
            .map(|i| cmp_item(i, None))
            .find(|o| *o != Equal)
            .unwrap_or(Equal),
        (Item::List(_), Some(Item::Int(_))) => Less,
        (Item::List(_), Some(Item::Str(_))) => Greater,
        (Item::List(l), Some(Item::List(m))) => {
            for k in 0..l.len().max(m.len()) {
                let o = match (l.get(k), m.get(k)) {
                    (None, None) => Equal,
                    (None, Some(r)) => cmp_item(r, None).reverse(),
                    (Some(x), r) => cmp_item(x, r),
                };
                if o != Equal {
                    return o;
                }
            }
            Equal
        }
    }
}

/// Compare two Maven versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    cmp_item(&parse(a.trim()), Some(&parse(b.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rules() {
        for (a, b, want) in [
            ("1", "1.0.0", Equal),
            ("1-alpha", "1-beta", Less),
            ("1-beta", "1-milestone", Less),
            ("1-milestone", "1-rc", Less),
            ("1-rc", "1-cr", Equal),
            ("1-rc", "1-snapshot", Less),
            ("1-snapshot", "1", Less),
            ("1", "1-ga", Equal),
            ("1-final", "1-release", Equal),
            ("1", "1-sp", Less),
            ("1-sp", "1-xyz", Less),
            ("1-a1", "1-alpha-1", Equal),
            ("1.0-alpha1", "1.0", Less),
            ("2.13.4.2", "2.13.4", Greater),
            ("2.14.1", "2.15.0", Less),
            ("2.15.0-rc1", "2.15.0", Less),
            ("1.9", "1.10.0", Less),
            ("1.0.0.RELEASE", "1.0.0", Equal),
            ("1-1", "1.1", Less),
            ("1.0-SNAPSHOT", "1.0", Less),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
