//! The signature scheme of both directions: `X-Agp-Timestamp: <unix seconds>` and
//! `X-Agp-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` under the shared secret.
//!
//! The timestamp is inside the signed bytes, so a captured message cannot be re-dated; a
//! message older (or newer) than [`WINDOW_SECS`] is refused, which bounds how long a captured
//! callback is worth anything even before its nonce is burned.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

pub const TIMESTAMP_HEADER: &str = "x-agp-timestamp";
pub const SIGNATURE_HEADER: &str = "x-agp-signature";
/// The version prefix of the signature header's value.
pub const SCHEME: &str = "v1=";
/// How far a message's timestamp may be from this machine's clock, either way.
pub const WINDOW_SECS: u64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a message's signature was not accepted. The string forms are what the journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("no X-Agp-Timestamp or X-Agp-Signature header")]
    Missing,
    #[error("the timestamp or signature header is malformed")]
    Malformed,
    #[error("the timestamp is more than {WINDOW_SECS} s from agp's clock")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SigError {
    pub fn as_str(self) -> &'static str {
        match self {
            SigError::Missing => "missing_signature",
            SigError::Malformed | SigError::Mismatch => "bad_signature",
            SigError::Stale => "stale_timestamp",
        }
    }
}

/// HMAC takes a key of any length, so this never fails in practice; a failure is treated as
/// a signature that does not match rather than a panic.
fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> Result<HmacSha256, SigError> {
    let mut m = HmacSha256::new_from_slice(secret.expose()).map_err(|_| SigError::Mismatch)?;
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    Ok(m)
}

/// The signature header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &Secret, timestamp: u64, body: &[u8]) -> Result<String, SigError> {
    let tag = mac(secret, &timestamp.to_string(), body)?
        .finalize()
        .into_bytes();
    Ok(format!("{SCHEME}{}", hex::encode(tag)))
}

/// Checks a message's headers against its exact body bytes at `now_secs`. The tag is compared
/// in constant time (`Mac::verify_slice`), so a forger learns nothing from how long a refusal
/// takes.
pub fn verify(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: u64,
) -> Result<(), SigError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(SigError::Missing);
    };
    let ts = ts.trim();
    // Digits only: "+5" or " 5" would parse but sign differently from what the sender meant.
    if ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigError::Malformed);
    }
    let when: u64 = ts.parse().map_err(|_| SigError::Malformed)?;
    let tag = sig
        .trim()
        .strip_prefix(SCHEME)
        .and_then(|h| hex::decode(h).ok())
        .filter(|t| t.len() == 32)
        .ok_or(SigError::Malformed)?;
    // The MAC is checked before the clock: a forger must not learn whether a guess was only
    // late.
    mac(secret, ts, body)?
        .verify_slice(&tag)
        .map_err(|_| SigError::Mismatch)?;
    if when.abs_diff(now_secs) > WINDOW_SECS {
        return Err(SigError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("k".repeat(32))
    }

    #[test]
    fn a_signature_verifies_and_matches_a_known_vector() {
        let body = br#"{"a":1}"#;
        let sig = sign(&key(), 1_700_000_000, body).unwrap();
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert_eq!(
            verify(&key(), Some("1700000000"), Some(&sig), body, 1_700_000_010),
            Ok(())
        );
        // Independent vector: HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog")
        // from RFC 4231's style examples (Wikipedia's HMAC page).
        let mut m = HmacSha256::new_from_slice(b"key").unwrap();
        m.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        // The signed string is "<ts>.<body>".
        let secret = Secret::new("key");
        let sig = sign(&secret, 7, b"x").unwrap();
        let mut m = HmacSha256::new_from_slice(b"key").unwrap();
        m.update(b"7.x");
        assert_eq!(
            sig,
            format!("v1={}", hex::encode(m.finalize().into_bytes()))
        );
    }

    #[test]
    fn tampering_with_body_time_key_or_header_is_refused() {
        let body = b"{\"decision\":\"allow\"}";
        let sig = sign(&key(), 1000, body).unwrap();
        let now = 1000;
        let v = |ts: Option<&str>, s: Option<&str>, b: &[u8]| verify(&key(), ts, s, b, now);
        assert_eq!(
            v(Some("1000"), Some(&sig), b"{\"decision\":\"deny\"}"),
            Err(SigError::Mismatch)
        );
        assert_eq!(v(Some("1001"), Some(&sig), body), Err(SigError::Mismatch));
        assert_eq!(v(None, Some(&sig), body), Err(SigError::Missing));
        assert_eq!(v(Some("1000"), None, body), Err(SigError::Missing));
        assert_eq!(v(Some("+1000"), Some(&sig), body), Err(SigError::Malformed));
        assert_eq!(
            v(Some("1000"), Some(&sig[3..]), body),
            Err(SigError::Malformed)
        );
        assert_eq!(
            v(Some("1000"), Some("v1=zz"), body),
            Err(SigError::Malformed)
        );
        assert_eq!(
            v(Some("1000"), Some(&sig[..40]), body),
            Err(SigError::Malformed)
        );
        let other = Secret::new("o".repeat(32));
        assert_eq!(
            verify(&other, Some("1000"), Some(&sig), body, now),
            Err(SigError::Mismatch)
        );
    }

    #[test]
    fn a_timestamp_outside_the_window_is_stale_either_way() {
        let body = b"{}";
        for (ts, now, ok) in [
            (1000, 1000 + WINDOW_SECS, true),
            (1000, 1001 + WINDOW_SECS, false),
            (1000 + WINDOW_SECS, 1000, true),
            (1001 + WINDOW_SECS, 1000, false),
        ] {
            let sig = sign(&key(), ts, body).unwrap();
            let got = verify(&key(), Some(&ts.to_string()), Some(&sig), body, now);
            assert_eq!(got.is_ok(), ok, "ts {ts} now {now}: {got:?}");
            if !ok {
                assert_eq!(got, Err(SigError::Stale));
            }
        }
    }
}
