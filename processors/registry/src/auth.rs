//! Authentication header parsing (pure, no I/O): `WWW-Authenticate` challenges
//! (RFC 7235: several challenges in one header, quoted values with commas and escapes),
//! token-server answers, and the `Authorization` values sent.

use base64::Engine;

/// One challenge of a `WWW-Authenticate` header: its scheme and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// As sent (compare case-insensitively).
    pub scheme: String,
    /// `(name lowercased, value unquoted)`, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// A `Bearer` challenge of a registry: where to get a token and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// What a 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChallenge {
    Bearer(BearerChallenge),
    Basic,
    /// No challenge this client understands (none, or only other schemes).
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Eq,
    Comma,
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                chars.next();
            }
            ',' => {
                chars.next();
                out.push(Tok::Comma);
            }
            '=' => {
                chars.next();
                out.push(Tok::Eq);
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                v.push(e);
                            }
                        }
                        '"' => break,
                        c => v.push(c),
                    }
                }
                out.push(Tok::Quoted(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '\t' | '\r' | '\n' | ',' | '=' | '"') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    out
}

/// Every challenge of a `WWW-Authenticate` value, e.g.
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`
/// or `Basic realm="x", Bearer realm="y"`. Token68 credentials (`Negotiate abc==`) are kept
/// as a parameter named `""`.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let toks = lex(header);
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Word(w) if !matches!(toks.get(i + 1), Some(Tok::Eq)) => {
                // A new scheme.
                out.push(Challenge {
                    scheme: w.clone(),
                    params: Vec::new(),
                });
                i += 1;
                // token68: `Scheme abc==`
                if let Some(Tok::Word(t)) = toks.get(i) {
                    if !matches!(toks.get(i + 1), Some(Tok::Eq))
                        || matches!(toks.get(i + 2), None | Some(Tok::Eq) | Some(Tok::Comma))
                    {
                        let mut v = t.clone();
                        i += 1;
                        while let Some(Tok::Eq) = toks.get(i) {
                            v.push('=');
                            i += 1;
                        }
                        if let Some(c) = out.last_mut() {
                            c.params.push((String::new(), v));
                        }
                    }
                }
            }
            Tok::Word(name) => {
                // name = value
                let value = match toks.get(i + 2) {
                    Some(Tok::Word(v)) | Some(Tok::Quoted(v)) => {
                        i += 3;
                        v.clone()
                    }
                    _ => {
                        i += 2;
                        String::new()
                    }
                };
                if let Some(c) = out.last_mut() {
                    c.params.push((name.to_ascii_lowercase(), value));
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// What a registry's `WWW-Authenticate` asks for: `Bearer` (with a realm) is preferred
/// over `Basic`.
pub fn challenge_of(header: &str) -> AuthChallenge {
    let all = parse_challenges(header);
    for c in &all {
        if c.is("bearer") {
            if let Some(realm) = c.param("realm").filter(|r| !r.is_empty()) {
                return AuthChallenge::Bearer(BearerChallenge {
                    realm: realm.to_string(),
                    service: c.param("service").map(str::to_string),
                    scope: c.param("scope").map(str::to_string),
                });
            }
        }
    }
    if all.iter().any(|c| c.is("basic")) {
        AuthChallenge::Basic
    } else {
        AuthChallenge::Unsupported
    }
}

/// A token server's answer: the token and, when given, its lifetime in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAnswer {
    pub token: String,
    pub expires_in: Option<u64>,
}

/// Parse a token server's JSON answer: `token` or `access_token`, `expires_in`.
pub fn parse_token_answer(body: &[u8]) -> Result<TokenAnswer, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| format!("token answer: {e}"))?;
    let token = a
        .token
        .filter(|t| !t.is_empty())
        .or(a.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| "token answer without token or access_token".to_string())?;
    let expires_in = a.expires_in.and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    Ok(TokenAnswer { token, expires_in })
}

/// `Basic base64(user:password)`.
pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// `Bearer <token>`.
pub fn bearer_header(token: &str) -> String {
    format!("Bearer {token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_commas_in_quotes() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#;
        assert_eq!(
            challenge_of(h),
            AuthChallenge::Bearer(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
    }

    #[test]
    fn escapes_spaces_and_case() {
        let c = parse_challenges(r#"bEaReR  Realm = "http://x/t\"q" , scope="a b""#);
        assert_eq!(c.len(), 1);
        assert!(c[0].is("Bearer"));
        assert_eq!(c[0].param("realm"), Some(r#"http://x/t"q"#));
        assert_eq!(c[0].param("SCOPE"), Some("a b"));
    }

    #[test]
    fn several_challenges() {
        let c =
            parse_challenges(r#"Basic realm="reg, one", Bearer realm="http://t/token",service=s"#);
        assert_eq!(c.len(), 2);
        assert!(c[0].is("basic"));
        assert_eq!(c[0].param("realm"), Some("reg, one"));
        assert_eq!(c[1].param("service"), Some("s"));
        assert!(matches!(
            challenge_of(r#"Basic realm="reg, one", Bearer realm="http://t/token""#),
            AuthChallenge::Bearer(_)
        ));
    }

    #[test]
    fn basic_and_unsupported() {
        assert_eq!(
            challenge_of(r#"Basic realm="image-testbed""#),
            AuthChallenge::Basic
        );
        assert_eq!(challenge_of("Basic"), AuthChallenge::Basic);
        assert_eq!(challenge_of("Negotiate abc=="), AuthChallenge::Unsupported);
        assert_eq!(challenge_of(""), AuthChallenge::Unsupported);
        // A bearer challenge without realm is useless.
        assert_eq!(
            challenge_of(r#"Bearer service="x""#),
            AuthChallenge::Unsupported
        );
        let c = parse_challenges("Negotiate abc==, Basic realm=x");
        assert_eq!(c[0].params, vec![(String::new(), "abc==".to_string())]);
        assert!(c[1].is("basic"));
    }

    #[test]
    fn token_answers() {
        let a = parse_token_answer(br#"{"token":"t1","expires_in":300}"#).unwrap();
        assert_eq!(
            a,
            TokenAnswer {
                token: "t1".into(),
                expires_in: Some(300)
            }
        );
        let a = parse_token_answer(br#"{"access_token":"t2"}"#).unwrap();
        assert_eq!(
            a,
            TokenAnswer {
                token: "t2".into(),
                expires_in: None
            }
        );
        let a =
            parse_token_answer(br#"{"token":"","access_token":"t3","expires_in":"60"}"#).unwrap();
        assert_eq!(a.token, "t3");
        assert_eq!(a.expires_in, Some(60));
        assert!(parse_token_answer(br#"{"expires_in":1}"#).is_err());
        assert!(parse_token_answer(b"nope").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
        assert_eq!(bearer_header("t"), "Bearer t");
    }
}
