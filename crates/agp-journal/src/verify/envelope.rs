//! The fields every entry has, and their syntax checks.

use super::*;

/// The fields every event has, borrowed from the line.
#[derive(serde::Deserialize)]
pub(super) struct Envelope<'a> {
    pub(super) v: u64,
    pub(super) seq: u64,
    #[serde(borrow)]
    pub(super) ts: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) session: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) prev: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) key_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) body: &'a serde_json::value::RawValue,
}

impl Envelope<'_> {
    /// Checks the fields and returns `prev` decoded.
    pub(super) fn validate(&self) -> Result<Hash, String> {
        if self.v != event::VERSION {
            return Err(format!("unsupported version v={}", self.v));
        }
        if !event::is_rfc3339_utc(&self.ts) {
            return Err(format!("ts {:?} is not an RFC 3339 UTC timestamp", self.ts));
        }
        event::check_kind(&self.kind).map_err(|e| e.to_string())?;
        if let Some(s) = &self.session {
            event::check_session(s).map_err(|e| e.to_string())?;
        }
        let prev = decode_hex32(&self.prev).ok_or("prev is not 64 lowercase hex digits")?;
        if self.key_id.len() != 8 || !is_lower_hex(&self.key_id) {
            return Err("key_id is not 8 lowercase hex digits".into());
        }
        if !self.body.get().starts_with('{') {
            return Err("body is not an object".into());
        }
        Ok(prev)
    }

    /// The body read as the typed event of its kind (members it does not know are ignored).
    pub(super) fn body_as<T: Event>(&self) -> Result<T, String> {
        serde_json::from_str(self.body.get()).map_err(|e| format!("body: {e}"))
    }
}

pub(super) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex of exactly 32 bytes.
pub(super) fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    // 0xff marks a byte that is not a lowercase hex digit.
    const LUT: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (LUT[pair[0] as usize], LUT[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_accepts_only_lowercase_hex_of_32_bytes() {
        let h = [0xabu8; 32];
        assert_eq!(decode_hex32(&hex::encode(h)), Some(h));
        assert_eq!(decode_hex32(&hex::encode(h).to_uppercase()), None);
        assert_eq!(decode_hex32(&"0g".repeat(32)), None);
        assert_eq!(decode_hex32("00"), None);
        assert_eq!(decode_hex32(crate::event::GENESIS_PREV), Some([0; 32]));
    }
}
