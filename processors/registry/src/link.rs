//! `Link` header parsing (RFC 8288) for paginated catalog and tag lists: the registry
//! answers `Link: </v2/_catalog?last=b&n=100>; rel="next"`, and the next page is asked
//! for with that `last`. Pure: no I/O.

/// The URL of the `rel="next"` link of a `Link` header value, if any. Several links in
/// one value (comma-separated) and relation lists (`rel="prev next"`) are understood.
pub fn next_url(header: &str) -> Option<String> {
    for link in split_outside(header, ',') {
        let link = link.trim();
        let Some(rest) = link.strip_prefix('<') else {
            continue;
        };
        let Some(end) = rest.find('>') else {
            continue;
        };
        let url = rest[..end].trim();
        let params = &rest[end + 1..];
        let is_next = split_outside(params, ';').into_iter().any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && unquote(value.trim())
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(url.to_string());
        }
    }
    None
}

/// The `last` query parameter of the `rel="next"` link of a `Link` header value: the
/// `last` to ask for the next page with. `None` when there is no next link, or it has
/// no (or an empty) `last`.
pub fn next_last(header: &str) -> Option<String> {
    next_url(header)
        .and_then(|u| query_param(&u, "last"))
        .filter(|l| !l.is_empty())
}

/// The first value of query parameter `name` of an absolute or relative URL,
/// percent-decoded (`+` is a space).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decode `%XX` escapes and `+`; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                match (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Split on `sep` outside `<…>` and outside double quotes.
fn split_outside(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut in_angle, mut in_quote, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if in_quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            '<' => in_angle = true,
            '>' => in_angle = false,
            '"' if !in_angle => in_quote = true,
            c if c == sep && !in_angle => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_next() {
        let h = r#"</v2/_catalog?last=b&n=100>; rel="next""#;
        assert_eq!(next_url(h).as_deref(), Some("/v2/_catalog?last=b&n=100"));
        assert_eq!(next_last(h).as_deref(), Some("b"));
    }

    #[test]
    fn absolute_next_and_order_of_params() {
        let h = r#"<https://r.example/v2/team/app/tags/list?n=50&last=v1.2.3>; rel=next"#;
        assert_eq!(next_last(h).as_deref(), Some("v1.2.3"));
    }

    #[test]
    fn multiple_links_and_rel_lists() {
        let h = r#"</v2/_catalog?last=a&n=2>; rel="prev", </v2/_catalog?last=x%2Fy&n=2>; title="a, b"; rel="last next""#;
        assert_eq!(next_last(h).as_deref(), Some("x/y"));
        let h = r#"</v2/_catalog?last=a&n=2>; rel="prev""#;
        assert_eq!(next_last(h), None);
    }

    #[test]
    fn commas_inside_urls() {
        let h = r#"</v2/_catalog?last=a,b&n=2>; rel="next""#;
        assert_eq!(next_last(h).as_deref(), Some("a,b"));
    }

    #[test]
    fn no_last_or_garbage() {
        assert_eq!(next_last(r#"</v2/_catalog?n=2>; rel="next""#), None);
        assert_eq!(next_last(r#"</v2/_catalog?last=&n=2>; rel="next""#), None);
        assert_eq!(next_last("garbage"), None);
        assert_eq!(next_last(""), None);
        assert_eq!(next_last("<unterminated; rel=next"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(query_param("/x?a=1&b=2#frag", "b").as_deref(), Some("2"));
        assert_eq!(query_param("/x", "b"), None);
    }
}
