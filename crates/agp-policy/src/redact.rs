//! Secret detection and THE redaction function.
//!
//! Every place where a tool input leaves the daemon (journal, Slack, terminal) passes it through
//! [`redact_value`] / [`redact_str`], so no secret value is ever stored or shown. The same
//! detectors drive the `secrets` guard, which refuses calls that carry a secret.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// One secret-shaped value found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMatch {
    /// Detector id, e.g. `aws-access-key`.
    pub kind: &'static str,
    /// Byte range of the secret value itself (not of its surrounding assignment).
    pub start: usize,
    pub end: usize,
}

struct Detector {
    kind: &'static str,
    re: Regex,
    /// Capture group holding the secret (0 = whole match).
    group: usize,
    /// Also require this much Shannon entropy (bits per char) in the value.
    min_entropy: f64,
}

/// Every detector needs one of these fragments (case-insensitively) in the text: one
/// Aho-Corasick pass rules out nearly every text before any regex runs.
const NEEDLES: &[&str] = &[
    "-----begin",
    "akia",
    "asia",
    "abia",
    "acca",
    "agpa",
    "aida",
    "aroa",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "hooks.slack.com",
    "sk-",
    "aiza",
    "_live_",
    "npm_",
    "eyj",
    "://",
    "secret",
    "token",
    "pass",
    "key",
    "credential",
    "auth",
];

// Built from constant patterns; the unit test `patterns_compile` builds it, so this `expect`
// cannot fire in a build whose tests passed.
#[allow(clippy::expect_used)]
fn needles() -> &'static aho_corasick::AhoCorasick {
    static AC: OnceLock<aho_corasick::AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(NEEDLES)
            .expect("secret needles")
    })
}

/// One pass over the text tells which detectors can match at all; most texts have none.
// Built from constant patterns; the unit test `patterns_compile` builds it, so this `expect`
// cannot fire in a build whose tests passed.
#[allow(clippy::expect_used)]
fn prefilter() -> &'static regex::RegexSet {
    static SET: OnceLock<regex::RegexSet> = OnceLock::new();
    SET.get_or_init(|| {
        regex::RegexSet::new(detectors().iter().map(|d| d.re.as_str())).expect("secret prefilter")
    })
}

/// Token formats recognised by their shape alone: the whole match is the secret.
const TOKEN_SHAPES: &[(&str, &str)] = &[
    (
        "private-key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
    ),
    (
        "aws-access-key",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
    ),
    ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),
    ("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,250}"),
    (
        "slack-webhook",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}",
    ),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    (
        "openai-key",
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}",
    ),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("stripe-key", r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}\b"),
    ("npm-token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
];

/// Secrets found by where they stand: capture group 1 is the value, which must also look
/// random (at least this many bits of entropy per character).
const VALUE_SHAPES: &[(&str, &str, f64)] = &[
    (
        "password-in-url",
        r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s:@]{6,})@",
        2.5,
    ),
    // `API_TOKEN=…`, `"secret": "…"`, `password: …` with a random-looking value.
    (
        "secret-assignment",
        r#"(?i)[a-z0-9_.-]*(?:secret|token|passw(?:or)?d|passwd|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|auth)[a-z0-9_.-]*["']?\s*[:=]\s*["']?([A-Za-z0-9+/_.~!@#%^&*=-]{16,})"#,
        3.5,
    ),
];

// Built from constant patterns; the unit test `patterns_compile` builds it, so this `expect`
// cannot fire in a build whose tests passed.
#[allow(clippy::expect_used)]
fn detectors() -> &'static [Detector] {
    static DETECTORS: OnceLock<Vec<Detector>> = OnceLock::new();
    DETECTORS.get_or_init(|| {
        let d = |kind, pattern: &str, group, min_entropy| Detector {
            kind,
            re: Regex::new(pattern).expect("secret detector pattern"),
            group,
            min_entropy,
        };
        let tokens = TOKEN_SHAPES.iter().map(|&(k, p)| d(k, p, 0, 0.0));
        let values = VALUE_SHAPES.iter().map(|&(k, p, e)| d(k, p, 1, e));
        tokens.chain(values).collect()
    })
}

fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Values that name a secret instead of containing one (`$TOKEN`, `${{ secrets.X }}`), and
/// paths, URLs and dotted names that merely sit next to a secret-sounding key
/// (`TOKEN_FILE=/run/secrets/token`, `auth_host=login.example.com`).
fn is_reference(value: &str) -> bool {
    value.starts_with('$')
        || value.starts_with("agp:")
        || value.contains("{{")
        || value.starts_with(['/', '~', '.'])
        || value.contains("://")
        || (value.contains('.')
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)))
}

/// Every secret-shaped value in `text`, in order, without overlaps.
pub fn find_secrets(text: &str) -> Vec<SecretMatch> {
    let mut found: Vec<SecretMatch> = Vec::new();
    if !needles().is_match(text) {
        return found;
    }
    let candidates = prefilter().matches(text);
    if !candidates.matched_any() {
        return found;
    }
    for (i, det) in detectors().iter().enumerate() {
        if !candidates.matched(i) {
            continue;
        }
        for caps in det.re.captures_iter(text) {
            let Some(m) = caps.get(det.group) else {
                continue;
            };
            if det.min_entropy > 0.0
                && (entropy(m.as_str()) < det.min_entropy || is_reference(m.as_str()))
            {
                continue;
            }
            if found.iter().any(|f| m.start() < f.end && f.start < m.end()) {
                continue;
            }
            found.push(SecretMatch {
                kind: det.kind,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    found.sort_by_key(|m| m.start);
    found
}

/// `text` with every secret-shaped value replaced by `[REDACTED:<kind>]`.
pub fn redact_str(text: &str) -> String {
    let found = find_secrets(text);
    if found.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in found {
        out.push_str(&text[last..m.start]);
        out.push_str("[REDACTED:");
        out.push_str(m.kind);
        out.push(']');
        last = m.end;
    }
    out.push_str(&text[last..]);
    out
}

/// A JSON value with every string (values and object keys) redacted.
pub fn redact_value(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (redact_str(k), redact_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every secret in any string of a JSON value (keys included).
pub fn find_secrets_in_value(value: &Value) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    visit_strings(value, &mut |s| {
        for m in find_secrets(s) {
            if !kinds.contains(&m.kind) {
                kinds.push(m.kind);
            }
        }
    });
    kinds
}

fn visit_strings(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(map) => {
            for (k, v) in map {
                f(k);
                visit_strings(v, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Test fixtures are assembled at run time so that secret scanners do not flag this file.
    fn fake(prefix: &str, body: &str) -> String {
        format!("{prefix}{body}")
    }

    #[test]
    fn patterns_compile() {
        assert!(!detectors().is_empty());
        assert_eq!(prefilter().len(), detectors().len());
        assert_eq!(needles().patterns_len(), NEEDLES.len());
    }

    #[test]
    fn detects_each_kind() {
        let cases = [
            (fake("AKIA", "IOSFODNN7EXAMPLE"), "aws-access-key"),
            (fake("ghp_", &"a1B2".repeat(9)), "github-token"),
            (fake("xoxb-", "1234567890-abcdefghij"), "slack-token"),
            (
                fake("sk-ant-", "api03-abcdefghijklmnopqrstuv"),
                "anthropic-key",
            ),
            (fake("sk-proj-", &"Ab3x".repeat(10)), "openai-key"),
            (
                fake(
                    "eyJhbGciOiJIUzI1NiJ9.",
                    "eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                ),
                "jwt",
            ),
            (
                fake(
                    "-----BEGIN RSA PRIVATE",
                    " KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                ),
                "private-key",
            ),
            (
                fake("API_TOKEN=", "q8Zr3xK9vLm2Pw7Tn4Yb"),
                "secret-assignment",
            ),
            (
                fake("postgres://admin:", "S3cr3tPassw0rd@db"),
                "password-in-url",
            ),
        ];
        for (text, kind) in cases {
            let found = find_secrets(&format!("echo {text} done"));
            assert_eq!(found.len(), 1, "{text}: {found:?}");
            assert_eq!(found[0].kind, kind, "{text}");
            let red = redact_str(&format!("x {text} y"));
            assert!(red.contains(&format!("[REDACTED:{kind}]")), "{red}");
            assert!(!red.contains(&text[text.len() - 6..]), "{red}");
        }
    }

    #[test]
    fn ignores_ordinary_text_and_references() {
        for text in [
            "git commit -m 'fix token refresh'",
            "export API_TOKEN=$API_TOKEN",
            "password = \"changeme\"",
            "TOKEN_COUNT=aaaaaaaaaaaaaaaaaaaaaa",
            "cargo test --workspace",
            "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "export GITHUB_TOKEN_FILE=/home/dev/.config/gh/token.txt",
            "AUTH_SERVER=login.internal.example.com",
            "SECRET_REF=agp:vault/prod/db-password",
        ] {
            assert!(
                find_secrets(text).is_empty(),
                "{text}: {:?}",
                find_secrets(text)
            );
        }
    }

    #[test]
    fn redacts_nested_json() {
        let key = fake("AKIA", "IOSFODNN7EXAMPLE");
        let v = json!({"command": format!("aws --key {key}"), "list": [key.clone()], "n": 1});
        let r = redact_value(&v);
        assert_eq!(r["command"], "aws --key [REDACTED:aws-access-key]");
        assert_eq!(r["list"][0], "[REDACTED:aws-access-key]");
        assert_eq!(r["n"], 1);
        assert_eq!(find_secrets_in_value(&v), ["aws-access-key"]);
    }
}
