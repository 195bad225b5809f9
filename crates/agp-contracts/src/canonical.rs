//! RFC 8785 (JCS) canonical JSON for the subset agp writes: objects, arrays, strings, booleans,
//! null and integers of magnitude below 2^53.
//!
//! Floats are refused rather than formatted: JCS number formatting is the one part of RFC 8785
//! that is easy to get subtly wrong, and nothing agp journals needs fractions. A tool input that
//! carries a float therefore cannot be hashed and is refused (fail closed) by the caller.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Largest integer magnitude JCS can carry without loss (IEEE-754 double precision).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("number {0} is not an integer; agp canonical JSON carries integers only")]
    NotAnInteger(String),
    #[error("integer {0} is outside the range JSON numbers can carry exactly (|n| < 2^53)")]
    IntegerOutOfRange(String),
}

/// The canonical (RFC 8785) serialization of `value`.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// The canonical (RFC 8785) serialization of the JSON string `s`, quotes included. Unlike
/// [`to_canonical_string`] it cannot fail: only numbers can be out of agp's subset.
pub fn canonical_string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_string(s, &mut out);
    out
}

/// SHA-256 (lowercase hex) of the canonical serialization of `value`.
pub fn sha256_of_value(value: &Value) -> Result<String, CanonicalError> {
    Ok(sha256_hex(to_canonical_string(value)?.as_bytes()))
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonicalError::IntegerOutOfRange(n.to_string()));
                }
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonicalError::IntegerOutOfRange(n.to_string()));
                }
                out.push_str(&u.to_string());
            } else {
                return Err(CanonicalError::NotAnInteger(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // RFC 8785 sorts member names by their UTF-16 code units, which differs from
            // byte order only for characters outside the Basic Multilingual Plane.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Copy runs of characters that need no escaping in one go; only '"', '\\' and control
    // characters are escaped (RFC 8785 leaves everything else, '/' and non-ASCII included, as is).
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x09 => Some("\\t"),
            0x0a => Some("\\n"),
            0x0c => Some("\\f"),
            0x0d => Some("\\r"),
            0x00..=0x1f => Some(""),
            _ => None,
        };
        if let Some(esc) = escape {
            // Control and escape bytes are ASCII, so `i` is a character boundary.
            out.push_str(&s[run_start..i]);
            if esc.is_empty() {
                out.push_str(&format!("\\u{b:04x}"));
            } else {
                out.push_str(esc);
            }
            run_start = i + 1;
        }
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": -3, "y": "é"}});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":"é","z":-3}}"#
        );
    }

    #[test]
    fn escapes_controls_as_rfc8785_requires() {
        let v = json!("a\"b\\c\u{1}\n\u{7f}/");
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "\"a\\\"b\\\\c\\u0001\\n\u{7f}/\""
        );
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FF61 in UTF-16 but after it in UTF-8.
        let v = json!({"\u{ff61}": 1, "\u{1f600}": 2});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "{\"\u{1f600}\":2,\"\u{ff61}\":1}"
        );
    }

    #[test]
    fn refuses_floats_and_unsafe_integers() {
        assert!(matches!(
            to_canonical_string(&json!(1.5)),
            Err(CanonicalError::NotAnInteger(_))
        ));
        assert!(matches!(
            to_canonical_string(&json!(1u64 << 53)),
            Err(CanonicalError::IntegerOutOfRange(_))
        ));
        assert!(to_canonical_string(&json!(-(MAX_SAFE_INTEGER as i64))).is_ok());
    }
}
