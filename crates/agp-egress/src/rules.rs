//! Per-request rules for inspected hosts, the judge asked when a rule says `require`, and the
//! header injections (credentials) applied to allowed requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a rule does with the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    /// Asks the [`RequestJudge`].
    Require,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Require => "require",
            Effect::Deny => "deny",
        }
    }
}

/// One rule: methods (empty: any) and path prefixes (empty: any). Paths are compared after
/// normalization ([`normalize_path`]) and without the query; a prefix is a plain string prefix,
/// so write `/v1/` to mean the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub methods: Vec<String>,
    pub paths: Vec<String>,
    pub effect: Effect,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str())))
    }

    /// How the rule is named in reports.
    pub fn describe(&self, index: usize) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "*".to_owned()
            } else {
                v.join(",")
            }
        };
        format!(
            "rule {} ({} {} {})",
            index + 1,
            self.effect.as_str(),
            list(&self.methods),
            list(&self.paths)
        )
    }
}

/// Supplies a header value at request time (the secrets store, later). Its value is never
/// reported anywhere; only the injection's credential name is.
pub trait CredentialProvider: Send + Sync {
    fn value(&self) -> Result<String, String>;
}

/// A header set on every allowed request to a host, replacing any the client sent.
#[derive(Clone)]
pub struct Injection {
    pub header: String,
    /// The credential's name, for reports.
    pub credential: String,
    pub provider: Arc<dyn CredentialProvider>,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injection")
            .field("header", &self.header)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// A host whose TLS the proxy terminates, so its requests are judged one by one.
#[derive(Debug, Clone)]
pub struct InspectHost {
    /// Normalized host name or IP literal.
    pub host: String,
    pub port: u16,
    /// First match wins; no match means `require`.
    pub rules: Vec<Rule>,
    pub inject: Vec<Injection>,
    /// May the name resolve to private, loopback or link-local addresses (an internal service).
    pub allow_private: bool,
}

impl InspectHost {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            rules: Vec::new(),
            inject: Vec::new(),
            allow_private: false,
        }
    }

    /// The effect for a request and the name of what decided it.
    pub fn decide(&self, method: &str, path: &str) -> (Effect, String) {
        for (i, r) in self.rules.iter().enumerate() {
            if r.matches(method, path) {
                return (r.effect, r.describe(i));
            }
        }
        (Effect::Require, "no rule matched (default: require)".into())
    }
}

/// A request the rules sent to the judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub host: String,
    pub port: u16,
    pub method: String,
    /// Normalized path, without the query.
    pub path: String,
    pub rule: String,
    pub peer_pid: Option<i32>,
}

/// The judge's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(String),
    Deny(String),
}

pub type VerdictFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// Answers `require` (the daemon asks a human through the session's channel). The request waits
/// on the future; the proxy bounds the wait and refuses when it ends without an answer.
pub trait RequestJudge: Send + Sync {
    fn judge(&self, request: RequestView) -> VerdictFuture;
}

/// The default judge: nobody to ask, so every `require` is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyJudge;

impl RequestJudge for DenyJudge {
    fn judge(&self, request: RequestView) -> VerdictFuture {
        let why = format!(
            "{} {}{} needs approval and no approver is connected",
            request.method, request.host, request.path
        );
        Box::pin(async move { Verdict::Deny(why) })
    }
}

/// Normalizes a request path for matching and forwarding, or says why it is refused.
///
/// The rules compare strings, while the upstream will interpret the path: the two must agree.
/// So percent-encoded unreserved characters are decoded (RFC 3986 says they are equivalent;
/// `/%61dmin` is `/admin`), other escapes are upper-cased, and paths an upstream could resolve
/// to something else are refused: dot segments (also encoded), empty segments (`//`), encoded
/// slashes and backslashes. The normalized path is what is forwarded.
pub fn normalize_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with '/'"));
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| "malformed percent-escape in the path".to_owned())?;
            let v = u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else if matches!(v, b'/' | b'\\') || v < 0x20 || v == 0x7f {
                return Err("encoded slash, backslash or control character in the path".into());
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        if b == b'\\' || !(0x21..0x7f).contains(&b) {
            return Err("backslash, space, control or non-ASCII byte in the path".into());
        }
        out.push(b as char);
        i += 1;
    }
    for seg in out.split('/').skip(1) {
        if seg == "." || seg == ".." {
            return Err("dot segment in the path".into());
        }
    }
    if out.contains("//") {
        return Err("empty segment ('//') in the path".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(effect: Effect, methods: &[&str], paths: &[&str]) -> Rule {
        Rule {
            methods: methods.iter().map(ToString::to_string).collect(),
            paths: paths.iter().map(ToString::to_string).collect(),
            effect,
        }
    }

    #[test]
    fn first_match_wins_and_the_default_is_require() {
        let mut h = InspectHost::new("api.example.com", 443);
        h.rules = vec![
            rule(Effect::Deny, &["DELETE"], &[]),
            rule(Effect::Allow, &["GET", "post"], &["/v1/"]),
            rule(Effect::Deny, &[], &["/v1/admin"]),
        ];
        assert_eq!(h.decide("GET", "/v1/models").0, Effect::Allow);
        assert_eq!(h.decide("POST", "/v1/admin").0, Effect::Allow);
        assert_eq!(h.decide("DELETE", "/v1/models").0, Effect::Deny);
        let (e, why) = h.decide("PUT", "/v1/admin");
        assert_eq!(
            (e, why.as_str()),
            (Effect::Deny, "rule 3 (deny * /v1/admin)")
        );
        assert_eq!(h.decide("GET", "/v2").0, Effect::Require);
    }

    #[test]
    fn paths_are_normalized_or_refused() {
        assert_eq!(normalize_path("/%61dmin/%7e%2a").unwrap(), "/admin/~%2A");
        assert_eq!(normalize_path("/v1/models").unwrap(), "/v1/models");
        for bad in [
            "/v1/../admin",
            "/v1/%2e%2E/admin",
            "/v1/./x",
            "/v1/%2fadmin",
            "/v1\\admin",
            "//admin",
            "/a%2",
            "/a%zz",
            "relative",
            "/a b",
            "/v1/%00",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_judge_refuses() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = rt.block_on(DenyJudge.judge(RequestView {
            host: "h".into(),
            port: 443,
            method: "GET".into(),
            path: "/".into(),
            rule: "r".into(),
            peer_pid: None,
        }));
        assert!(matches!(v, Verdict::Deny(_)));
    }
}
