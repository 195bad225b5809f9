//! The shared secret, which must never reach a log, the journal or an error message.

use std::fmt;

/// The HMAC key shared with the receiver. `Debug` and `Display` print a placeholder, so a
/// secret inside a config struct cannot leak through `{:?}` or a tracing field.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Fewer bytes than this is refused: a short shared secret can be brute-forced from one signed
/// request (the body and its signature are both seen by the receiver and anything on its path).
pub const MIN_SECRET_BYTES: usize = 32;

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Secret(value.into())
    }

    /// The raw key, for the HMAC only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = Secret::new("the-shared-secret-value");
        assert!(!format!("{s:?}").contains("secret-value"));
        assert!(!format!("{s}").contains("secret-value"));
        assert_eq!(s.expose(), b"the-shared-secret-value");
    }
}
