//! The journal line: one RFC 8785 (JCS) canonical JSON object per event.
//!
//! ```text
//! {"body":{..},"key_id":"<8 hex>","kind":"<kind>","prev":"<64 hex>","seq":N,"session":null|"<id>","ts":"<RFC 3339 UTC>","v":1}
//! ```
//! Member names are in JCS order already, so a line is composed by concatenation from canonical
//! pieces; the body is checked to round-trip before it is accepted.

use agp_contracts::canonical::{canonical_string_literal, to_canonical_string};
use serde_json::Value;

/// Event schema version written in `v`.
pub const VERSION: u64 = 1;
/// `prev` of the first entry: 64 zeros (no leaf hashes to that).
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Kind of entry 0: names the journal's origin and first verifier key.
pub const JOURNAL_CREATED: &str = "journal.created";
/// Kind of a key rotation entry (same string as `agp_contracts::events::KEY_ROTATED`).
pub const KEY_ROTATED: &str = agp_contracts::events::KEY_ROTATED;
/// Kind of the entry written when opening found a torn or unsealed tail.
pub const JOURNAL_RECOVERED: &str = agp_contracts::events::JOURNAL_RECOVERED;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event kind {0:?} is not a dotted lowercase name (a-z, 0-9, '_', '-', '.'; 1 to 64 characters)")]
    BadKind(String),
    #[error("session id {0:?} must be 1 to 128 printable characters")]
    BadSession(String),
    #[error("event body must be a JSON object")]
    BodyNotObject,
    #[error("event body is not JCS-trivial: {0}")]
    NotCanonical(String),
    #[error("event body is {0} bytes, more than a journal line may hold")]
    TooLarge(usize),
}

pub fn check_kind(kind: &str) -> Result<(), EventError> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EventError::BadKind(kind.to_string()))
    }
}

pub fn check_session(session: &str) -> Result<(), EventError> {
    let ok = !session.is_empty()
        && session.chars().count() <= 128
        && !session.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(EventError::BadSession(session.to_string()))
    }
}

/// The canonical body, refused unless it is an object whose canonical form parses back to the
/// same canonical form (no floats, no integers beyond 2^53).
pub fn canonical_body(body: &Value) -> Result<String, EventError> {
    if !body.is_object() {
        return Err(EventError::BodyNotObject);
    }
    let text = to_canonical_string(body).map_err(|e| EventError::NotCanonical(e.to_string()))?;
    // Round trip: the bytes must be exactly the canonical form of what they parse to (the same
    // one-pass check the verifier applies to every line).
    crate::jcs::check_canonical_object(text.as_bytes())
        .map_err(|e| EventError::NotCanonical(format!("does not round-trip: {e}")))?;
    // Room for the envelope: the verifier holds at most MAX_LINE bytes of a line.
    if text.len() > crate::verify::MAX_LINE - 4096 {
        return Err(EventError::TooLarge(text.len()));
    }
    Ok(text)
}

/// Composes one line (without the newline) from already-validated pieces.
pub fn compose_line(
    seq: u64,
    ts: &str,
    kind: &str,
    session: Option<&str>,
    prev_hex: &str,
    key_id_hex: &str,
    canonical_body: &str,
) -> String {
    let session_json = match session {
        // Session ids may hold any printable character, so they go through the JCS escaper.
        Some(s) => canonical_string_literal(s),
        None => "null".to_string(),
    };
    // kind, prev, key_id and ts are checked ASCII without quotes or backslashes: no escaping.
    let mut line = String::with_capacity(canonical_body.len() + 200);
    line.push_str("{\"body\":");
    line.push_str(canonical_body);
    line.push_str(",\"key_id\":\"");
    line.push_str(key_id_hex);
    line.push_str("\",\"kind\":\"");
    line.push_str(kind);
    line.push_str("\",\"prev\":\"");
    line.push_str(prev_hex);
    line.push_str("\",\"seq\":");
    line.push_str(&seq.to_string());
    line.push_str(",\"session\":");
    line.push_str(&session_json);
    line.push_str(",\"ts\":\"");
    line.push_str(ts);
    line.push_str("\",\"v\":");
    line.push_str(&VERSION.to_string());
    line.push('}');
    line
}

/// Now as RFC 3339 UTC with microseconds: `2026-01-02T03:04:05.123456Z`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(d.as_secs(), d.subsec_micros())
}

/// Formats Unix seconds and microseconds as RFC 3339 UTC.
pub fn format_rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether `s` is an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with in-range
/// fields.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| -> u32 {
        b[r].iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
    };
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let frac = &b[19..b.len() - 1];
    if !frac.is_empty()
        && (frac[0] != b'.' || frac.len() < 2 || !frac[1..].iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 61
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn composed_line_is_exactly_canonical() {
        let body =
            canonical_body(&json!({"tool": "Bash", "n": 3, "input": {"command": "ls"}})).unwrap();
        let line = compose_line(
            7,
            "2026-01-02T03:04:05.000006Z",
            "tool_call.requested",
            Some("s-\"1\"\u{1}"),
            GENESIS_PREV,
            "abcd0123",
            &body,
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(to_canonical_string(&parsed).unwrap(), line);
        assert_eq!(parsed["session"], "s-\"1\"\u{1}");
    }

    #[test]
    fn refuses_floats_non_objects_and_bad_names() {
        assert!(canonical_body(&json!({"x": 1.5})).is_err());
        assert!(canonical_body(&json!({"x": 1u64 << 60})).is_err());
        assert!(canonical_body(&json!([1])).is_err());
        assert!(check_kind("Tool Call").is_err());
        assert!(check_kind("").is_err());
        assert!(check_kind("tool_call.requested").is_ok());
        assert!(check_session("").is_err());
        assert!(check_session("a\nb").is_err());
    }

    #[test]
    fn formats_and_checks_timestamps() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339(951_782_400, 5),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(
            format_rfc3339(1_798_761_599, 999_999),
            "2026-12-31T23:59:59.999999Z"
        );
        assert!(is_rfc3339_utc(&now_rfc3339()));
        assert!(is_rfc3339_utc("2026-01-02T03:04:05Z"));
        for bad in [
            "2026-01-02 03:04:05Z",
            "2026-13-02T03:04:05Z",
            "2026-01-02T03:04:05+01:00",
            "2026-01-02T03:04:05.Z",
        ] {
            assert!(!is_rfc3339_utc(bad), "{bad}");
        }
    }
}
