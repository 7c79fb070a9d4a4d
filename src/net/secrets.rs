//! What must never reach an error message, a stack or `getStats()`: the API key, the
//! password of a URL (`http://user:pass@host`) and the `Basic` credentials made of it,
//! a credential in its query string (`?api_key=...`, `&sig=...`) and any bearer token. A hostile or careless server can echo the request's
//! `Authorization` header in a 401 body or a streamed error; everything a server says
//! passes through [`Secrets::scrub`] before it is shown.

use crate::error::OrionError;

/// What a secret is replaced with.
pub(crate) const MARKER: &str = "[redacted]";

/// Shorter keys are not searched for: replacing every two-letter run in a message
/// would make it unreadable, and such a key guards nothing.
const MIN_SECRET: usize = 4;

/// A bearer token found by its scheme (`Bearer xyz`) needs this many characters: real
/// tokens are far longer, and "bearer of" in prose stays readable.
const MIN_BEARER_TOKEN: usize = 8;

/// The secrets of one remote target, longest first (so that a secret holding another
/// is replaced whole).
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The API key and the credentials of `urls`, in every form they are sent or
    /// could be echoed in: as given, percent-decoded, as `Basic` base64, JSON-escaped.
    pub(crate) fn new(api_key: Option<&str>, urls: &[String]) -> Self {
        let mut found: Vec<String> = api_key.map(String::from).into_iter().collect();
        for u in urls {
            let Ok(p) = reqwest::Url::parse(u) else {
                continue;
            };
            for (name, value) in p.query_pairs() {
                if is_secret_param(&name) {
                    // Sent as written in the URL, and possibly echoed decoded.
                    found.push(value.to_string());
                    if let Some(raw) = raw_param(&p, &name) {
                        found.push(raw);
                    }
                }
            }
            if p.username().is_empty() && p.password().is_none() {
                continue;
            }
            let user = percent_decode(p.username());
            let password = p.password().map(percent_decode).unwrap_or_default();
            if let Some(raw) = p.password() {
                found.push(raw.to_string());
                found.push(password.clone());
            }
            // reqwest sends a URL's credentials as `Authorization: Basic`.
            found.push(base64(format!("{user}:{password}").as_bytes()));
        }
        let mut all = Vec::new();
        for s in found {
            let json = serde_json::to_string(&s).unwrap_or_default();
            let json = json.trim_matches('"').to_string();
            all.push(json.replace('/', "\\/"));
            all.push(json);
            all.push(s);
        }
        all.retain(|s| s.len() >= MIN_SECRET);
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Self(all)
    }

    /// `text` with every secret and bearer token replaced by [`MARKER`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MARKER);
            }
        }
        scrub_bearer(&out)
    }

    /// [`Self::scrub`], then at most `max` characters: scrubbed first, so that a cut
    /// never leaves the start of a secret behind.
    pub(crate) fn clip(&self, text: &str, max: usize) -> String {
        let s = self.scrub(text);
        if s.chars().count() <= max {
            return s;
        }
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }

    /// `e` with every text a server could have put in it scrubbed.
    pub(crate) fn error(&self, e: OrionError) -> OrionError {
        match e {
            OrionError::RemoteError {
                endpoint,
                status,
                message,
            } => OrionError::RemoteError {
                endpoint: self.scrub(&endpoint),
                status,
                message: self.scrub(&message),
            },
            OrionError::RemoteProtocol { endpoint, detail } => OrionError::RemoteProtocol {
                endpoint: self.scrub(&endpoint),
                detail: self.scrub(&detail),
            },
            OrionError::RemoteUnavailable { endpoints } => OrionError::RemoteUnavailable {
                endpoints: endpoints
                    .into_iter()
                    .map(|(u, m)| (self.scrub(&u), self.scrub(&m)))
                    .collect(),
            },
            OrionError::Internal(m) => OrionError::Internal(self.scrub(&m)),
            other => other,
        }
    }
}

/// Query parameters that carry a credential by their name: `key`, `api_key`,
/// `access_token`, `sig` (Azure SAS), `password`, `auth`... Other parameters
/// (`api-version=2024-02-01`) stay readable.
pub(crate) fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "auth",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// The value of query parameter `name` as written in `url` (still percent-encoded).
fn raw_param(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == name).then(|| v.to_string())
    })
}

/// `Bearer <token>` (any case) with the token replaced.
fn scrub_bearer(text: &str) -> String {
    const SCHEME: &[u8] = b"bearer";
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(rel) = lower[from..].find("bearer") {
        let at = from + rel;
        let mut i = at + SCHEME.len();
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b':' | b'=') {
            i += 1;
        }
        let start = i;
        // RFC 6750's b64token characters.
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric()
                || matches!(bytes[i], b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='))
        {
            i += 1;
        }
        if start > at + SCHEME.len() && i - start >= MIN_BEARER_TOKEN {
            out.push_str(&text[copied..start]);
            out.push_str(MARKER);
            copied = i;
        }
        from = i.max(at + SCHEME.len());
    }
    out.push_str(&text[copied..]);
    out
}

/// `%41` as `A`; invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding, as HTTP `Basic` credentials are sent.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, &b)| n | u32::from(b) << (16 - 8 * k));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn keys_passwords_and_bearer_tokens_are_replaced() {
        let s = Secrets::new(
            Some("sk-live-1234/abcd"),
            &[
                "http://alice:p%40ss-word@h:1".to_string(),
                "http://h:2".into(),
            ],
        );
        let echoed = format!(
            "bad key sk-live-1234/abcd, json \"sk-live-1234\\/abcd\", Basic {}, raw p%40ss-word, \
             decoded p@ss-word, other Authorization: Bearer eyJhbGciOi.J9x-y_z",
            base64(b"alice:p@ss-word")
        );
        let out = s.scrub(&echoed);
        for leak in ["sk-live", "1234", "p%40ss", "p@ss", "YWxpY2", "eyJhbGciOi"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(out.contains("bad key [redacted]"), "{out}");
        assert!(out.contains("Bearer [redacted]"), "{out}");
        // Prose stays readable.
        assert_eq!(s.scrub("the bearer of news"), "the bearer of news");
        assert_eq!(Secrets::new(Some("ab"), &[]).scrub("abc"), "abc");
    }

    #[test]
    fn a_clip_never_leaves_the_start_of_a_secret() {
        let s = Secrets::new(Some("secret-key-5678"), &[]);
        let text = format!("{}secret-key-5678", "x".repeat(10));
        let clipped = s.clip(&text, 14);
        assert!(!clipped.contains("secr"), "{clipped}");
        assert!(clipped.ends_with('…'));
        let e = s.error(OrionError::RemoteUnavailable {
            endpoints: vec![("http://h".into(), "said secret-key-5678".into())],
        });
        assert!(!e.to_string().contains("secret-key"), "{e}");
    }

    #[test]
    fn credentials_in_the_query_string_are_replaced_and_other_parameters_kept() {
        let s = Secrets::new(
            None,
            &["https://h/v1?api-version=2024-02-01&api_key=qk%2F9911&sig=SaS-7777".to_string()],
        );
        let out = s.scrub("echo: api_key=qk%2F9911 or qk/9911, sig SaS-7777, version 2024-02-01");
        for leak in ["qk%2F9911", "qk/9911", "SaS-7777"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(out.contains("2024-02-01"), "{out}");
        assert!(is_secret_param("access_token") && is_secret_param("X-Api-Key"));
        assert!(!is_secret_param("model") && !is_secret_param("api-version"));
    }

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
