//! Named secrets and `{{secret:NAME}}` placeholders.
//!
//! A policy, a journal and an approver see only placeholders: a value is looked up after the
//! gate, where it is used (a proxy-executed command's environment, a header the egress proxy
//! adds), and output coming back is redacted of every value. Where values come from (agp's
//! environment, a 0600 file) is the binary's business; this holds them and never prints them.

use std::collections::BTreeMap;

/// Shorter values are refused: redacting a two-letter value would shred every output.
pub const MIN_SECRET_LEN: usize = 4;
/// A run of at least this many leading bytes of a value is redacted too: output cut by a
/// capture cap can end inside a value, and its start must not leak.
pub const PARTIAL_REDACT_LEN: usize = 8;

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("secret name {0:?} must be letters, digits and '_', not starting with a digit")]
    BadName(String),
    #[error("secret {0} is shorter than {MIN_SECRET_LEN} characters")]
    TooShort(String),
    #[error("secret {0} holds a NUL byte or a line break")]
    BadValue(String),
    #[error("placeholder {0:?} is not closed with }}}}")]
    Unclosed(String),
    #[error("secret {0} is not set")]
    Unknown(String),
}

/// Secret values by name. `Debug` shows names only.
#[derive(Default, Clone)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// Whether `name` can be a secret's name (it becomes part of an environment variable's name).
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a secret.
    pub fn insert(&mut self, name: &str, value: String) -> Result<(), SecretsError> {
        if !valid_name(name) {
            return Err(SecretsError::BadName(name.to_owned()));
        }
        if value.chars().count() < MIN_SECRET_LEN {
            return Err(SecretsError::TooShort(name.to_owned()));
        }
        // A header value or an environment variable cannot carry these.
        if value.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
            return Err(SecretsError::BadValue(name.to_owned()));
        }
        self.values.insert(name.to_owned(), value);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Result<&str, SecretsError> {
        self.values
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| SecretsError::Unknown(name.to_owned()))
    }

    /// `text` with each placeholder replaced by `with(name)`.
    pub fn substitute(
        text: &str,
        mut with: impl FnMut(&str) -> Result<String, SecretsError>,
    ) -> Result<String, SecretsError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(OPEN) {
            out.push_str(&rest[..at]);
            let after = &rest[at + OPEN.len()..];
            let Some(end) = after.find(CLOSE) else {
                return Err(SecretsError::Unclosed(truncate(&rest[at..], 40)));
            };
            let name = &after[..end];
            if !valid_name(name) {
                return Err(SecretsError::BadName(truncate(name, 40)));
            }
            out.push_str(&with(name)?);
            rest = &after[end + CLOSE.len()..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The distinct names `text`'s placeholders use, in order of first use.
    pub fn names_in(text: &str) -> Result<Vec<String>, SecretsError> {
        let mut names: Vec<String> = Vec::new();
        Self::substitute(text, |n| {
            if !names.iter().any(|m| m == n) {
                names.push(n.to_owned());
            }
            Ok(String::new())
        })?;
        Ok(names)
    }

    /// `template` with its placeholders replaced by the values.
    pub fn render(&self, template: &str) -> Result<String, SecretsError> {
        Self::substitute(template, |n| self.get(n).map(str::to_owned))
    }

    /// `bytes` with every secret's value replaced by `[secret:NAME]`; longer values first, so
    /// a value holding another is replaced whole. Then a run of a value's first
    /// [`PARTIAL_REDACT_LEN`] or more bytes (a value cut by a capture cap) becomes
    /// `[secret:NAME, cut]`.
    pub fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        let mut by_len: Vec<(&String, &String)> = self.values.iter().collect();
        by_len.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut out = bytes.to_vec();
        for (name, value) in &by_len {
            let with = format!("[secret:{name}]");
            out = replace_all(&out, value.as_bytes(), with.as_bytes());
        }
        for (name, value) in &by_len {
            let with = format!("[secret:{name}, cut]");
            out = redact_prefixes(&out, value.as_bytes(), with.as_bytes());
        }
        out
    }
}

/// Replaces each run of `value`'s leading bytes, [`PARTIAL_REDACT_LEN`] or longer, with `with`.
fn redact_prefixes(hay: &[u8], value: &[u8], with: &[u8]) -> Vec<u8> {
    if value.len() <= PARTIAL_REDACT_LEN {
        return hay.to_vec();
    }
    let start = &value[..PARTIAL_REDACT_LEN];
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(start) {
            let run = hay[i..]
                .iter()
                .zip(value)
                .take_while(|(a, b)| a == b)
                .count();
            out.extend_from_slice(with);
            i += run;
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || hay.len() < needle.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Secrets {
        let mut s = Secrets::new();
        s.insert("GITHUB_TOKEN", "ghp_value123".into()).unwrap();
        s.insert("LONG", "ghp_value123-and-more".into()).unwrap();
        s
    }

    #[test]
    fn placeholders_render_and_unknown_names_are_errors() {
        let s = store();
        assert_eq!(
            s.render("Bearer {{secret:GITHUB_TOKEN}}").unwrap(),
            "Bearer ghp_value123"
        );
        assert_eq!(
            s.render("{{secret:NOPE}}"),
            Err(SecretsError::Unknown("NOPE".into()))
        );
        assert_eq!(s.render("no placeholder").unwrap(), "no placeholder");
        assert_eq!(
            Secrets::names_in("a {{secret:B}} {{secret:C_1}} {{secret:B}}").unwrap(),
            ["B", "C_1"]
        );
    }

    #[test]
    fn malformed_placeholders_are_refused_not_passed_through() {
        for bad in [
            "{{secret:A",
            "{{secret:}}",
            "{{secret:A B}}",
            "{{secret:$(id)}}",
            "{{secret:1A}}",
            "{{secret:A}{{secret:B}}",
        ] {
            assert!(Secrets::names_in(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction_replaces_every_value_longest_first() {
        let s = store();
        let out = s.redact(b"x ghp_value123-and-more y ghp_value123ghp_value123");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x [secret:LONG] y [secret:GITHUB_TOKEN][secret:GITHUB_TOKEN]"
        );
    }

    #[test]
    fn a_value_cut_short_is_redacted_from_its_eighth_byte() {
        let mut s = Secrets::new();
        s.insert("GITHUB_TOKEN", "ghp_value123".into()).unwrap();
        // stdout cut inside the value, stderr after it; and the output's very end.
        let out = s.redact(b"a ghp_valu|err\nb ghp_value12");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a [secret:GITHUB_TOKEN, cut]|err\nb [secret:GITHUB_TOKEN, cut]"
        );
        // Fewer leading bytes are left: a common prefix (ghp_) is not a secret.
        assert_eq!(s.redact(b"ghp_val"), b"ghp_val");
    }

    #[test]
    fn bad_names_and_values_are_refused_and_debug_hides_values() {
        let mut s = Secrets::new();
        assert!(s.insert("A-B", "long enough".into()).is_err());
        assert!(s.insert("", "long enough".into()).is_err());
        assert!(s.insert("A", "abc".into()).is_err());
        assert!(s.insert("A", "two\nlines".into()).is_err());
        s.insert("A", "hidden-value".into()).unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains('A') && !shown.contains("hidden-value"),
            "{shown}"
        );
    }
}
