//! C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>): the signed tree head.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::merkle::Hash;
use crate::note::{NoteError, SignerKey, VerifierKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error(transparent)]
    Note(#[from] NoteError),
}

impl Checkpoint {
    /// The note text: origin, decimal size, base64 root, each followed by a newline.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses checkpoint note text (extension lines are allowed and ignored, as C2SP says).
    pub fn parse_text(text: &[u8]) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_s = lines.next().ok_or_else(|| bad("missing tree size"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(bad("tree size is not a canonical decimal number"));
        }
        let size: u64 = size_s.parse().map_err(|_| bad("tree size out of range"))?;
        let root_s = lines.next().ok_or_else(|| bad("missing root hash"))?;
        let root: Hash = B64
            .decode(root_s)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root hash is not base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// The signed note for this checkpoint.
    pub fn sign(&self, key: &SignerKey) -> Result<String, CheckpointError> {
        Ok(key.sign_note(&self.to_text())?)
    }

    /// Opens a signed checkpoint with `key`; the origin must be the key's name.
    pub fn open(note: &[u8], key: &VerifierKey) -> Result<Self, CheckpointError> {
        let text = key.open(note)?;
        let cp = Self::parse_text(text)?;
        if cp.origin != key.name() {
            return Err(CheckpointError::Malformed(format!(
                "origin {:?} is not the key's log {:?}",
                cp.origin,
                key.name()
            )));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_parser_is_strict() {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [9; 32],
        };
        let text = cp.to_text();
        assert_eq!(Checkpoint::parse_text(text.as_bytes()).unwrap(), cp);
        for bad in [
            "example.com/log\n042\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "example.com/log\n42\nCQkJ\n",
            "example.com/log\n42\n",
            "\n42\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "example.com/log\n-1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
        ] {
            assert!(Checkpoint::parse_text(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_checkpoint_opens_only_with_its_key_and_origin() {
        let key = SignerKey::generate("example.com/log").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 1,
            root: [1; 32],
        };
        let note = cp.sign(&key).unwrap();
        assert_eq!(
            Checkpoint::open(note.as_bytes(), key.verifier()).unwrap(),
            cp
        );
        let wrong_origin = Checkpoint {
            origin: "other".into(),
            ..cp
        }
        .sign(&key)
        .unwrap();
        assert!(Checkpoint::open(wrong_origin.as_bytes(), key.verifier()).is_err());
    }
}
