//! Small helpers shared by the daemon's modules.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `n` random bytes as lowercase hex, from the OS CSPRNG.
pub fn random_hex(n: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
pub fn truncate_utf8(text: &str, limit: usize) -> (&str, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("abc", 5), ("abc", false));
        assert_eq!(truncate_utf8("aé", 2), ("a", true));
        assert_eq!(random_hex(16).unwrap().len(), 32);
    }
}
