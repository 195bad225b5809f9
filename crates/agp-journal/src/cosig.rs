//! Witness cosignatures: C2SP tlog-cosignature v1 with Ed25519 (<https://c2sp.org/tlog-cosignature>).
//!
//! A cosignature is one more signature line on a checkpoint note:
//! `— <witness name> base64(key id || u64 big-endian timestamp || Ed25519 signature)`, the
//! signature being over `"cosignature/v1\ntime <timestamp>\n"` followed by the checkpoint text.
//! Key ids use the algorithm byte 0x04 (not the 0x01 of note signatures), so a cosignature can
//! never be mistaken for, or replayed as, a log signature by the same key.
//!
//! Key strings follow the signed-note forms with that byte: verifier keys
//! `<name>+<hex key id>+<base64(0x04 || public key)>` (the `vkey` witnesses publish) and signer
//! keys `PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 || seed)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::note::{check_name, parse_note, NoteError, SIG_PREFIX};

/// Signature type byte of Ed25519 cosignature/v1 keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Bytes of a cosignature after the key id: timestamp (8) and Ed25519 signature (64).
const TIMESTAMPED_LEN: usize = 8 + 64;

/// The message a cosignature signs.
pub fn message(checkpoint_text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text);
    m
}

/// Key id: the first 4 bytes of SHA-256(name || "\n" || 0x04 || public key).
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE_V1]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn decode_key_id(s: &str) -> Option<[u8; 4]> {
    if s.len() != 8
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

/// Splits `<name>+<hex id>+<base64(0x04 || 32 bytes)>` into its name, id and 32 key bytes.
fn split_key(s: &str, what: &str) -> Result<(String, [u8; 4], zeroed::Bytes32), String> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("expected <name>+<hex key id>+<base64 {what}>"));
    };
    check_name(name).map_err(|e| e.to_string())?;
    let id = decode_key_id(id_hex).ok_or("key id is not 8 lowercase hex digits")?;
    let raw = zeroed::Vec(
        B64.decode(b64)
            .map_err(|_| "key is not valid base64".to_string())?,
    );
    let Some((&ALG_COSIGNATURE_V1, bytes)) = raw.0.split_first() else {
        return Err(format!(
            "not a cosignature/v1 key: the {what} must be 0x04 followed by 32 bytes"
        ));
    };
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
        format!("not a cosignature/v1 key: the {what} must be 0x04 followed by 32 bytes")
    })?;
    Ok((name.to_string(), id, zeroed::Bytes32(bytes)))
}

/// Small owners that wipe secret bytes when dropped.
mod zeroed {
    pub struct Vec(pub std::vec::Vec<u8>);
    impl Drop for Vec {
        fn drop(&mut self) {
            self.0.iter_mut().for_each(|b| *b = 0);
        }
    }
    pub struct Bytes32(pub [u8; 32]);
    impl Drop for Bytes32 {
        fn drop(&mut self) {
            self.0.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// A witness's public key: checks its cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

/// One valid cosignature found on a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    /// When the witness signed (POSIX seconds).
    pub timestamp: u64,
}

/// What a note's lines by one witness key amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosignatureCheck {
    /// A valid cosignature (the newest, when there are several).
    Valid(Cosigned),
    /// No line carries this witness's name and key id.
    Missing,
    /// A line names this witness and key id but does not verify: forged or altered.
    Invalid(String),
}

impl WitnessKey {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Parses `<name>+<hex key id>+<base64(0x04 || public key)>`, checking the key id.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, pk) = split_key(s.trim(), "key").map_err(NoteError::BadVerifierKey)?;
        let key = VerifyingKey::from_bytes(&pk.0)
            .map_err(|_| NoteError::BadVerifierKey("not a valid Ed25519 point".into()))?;
        let me = Self::new(&name, key)?;
        if me.id != id {
            return Err(NoteError::BadVerifierKey(
                "key id does not match the name and key".into(),
            ));
        }
        Ok(me)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn id(&self) -> [u8; 4] {
        self.id
    }
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// Checks one cosignature's payload (`key id || timestamp || signature`) over
    /// `checkpoint_text`.
    pub fn verify_payload(
        &self,
        checkpoint_text: &[u8],
        payload: &[u8],
    ) -> Result<Cosigned, String> {
        if payload.len() != 4 + TIMESTAMPED_LEN {
            return Err(format!(
                "a cosignature/v1 signature is {} bytes, this one is {}",
                4 + TIMESTAMPED_LEN,
                payload.len()
            ));
        }
        if payload[..4] != self.id {
            return Err("key id differs".into());
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&payload[4..12]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp == 0 || timestamp > i64::MAX as u64 {
            return Err(format!("timestamp {timestamp} is out of range"));
        }
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&payload[12..]);
        self.key
            .verify_strict(
                &message(checkpoint_text, timestamp),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| "the signature does not verify".to_string())?;
        Ok(Cosigned { timestamp })
    }

    /// This witness's cosignature on `note`, a checkpoint note with its signature lines. Lines
    /// by other keys are ignored, as C2SP requires.
    pub fn check(&self, note: &[u8]) -> Result<CosignatureCheck, NoteError> {
        let (text, lines) = signature_lines(note)?;
        let mut best: Option<Cosigned> = None;
        let mut bad = None;
        for (name, payload) in lines {
            if name != self.name || payload.len() < 4 || payload[..4] != self.id {
                continue;
            }
            match self.verify_payload(text, &payload) {
                Ok(c) => {
                    if best.is_none_or(|b| b.timestamp < c.timestamp) {
                        best = Some(c);
                    }
                }
                Err(e) => bad = Some(e),
            }
        }
        // One bad line by a trusted key makes the note malformed (signed-note), even beside a
        // good one: it is reported rather than hidden.
        Ok(match (bad, best) {
            (Some(e), _) => CosignatureCheck::Invalid(e),
            (None, Some(c)) => CosignatureCheck::Valid(c),
            (None, None) => CosignatureCheck::Missing,
        })
    }
}

impl std::fmt::Display for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, self.id_hex(), B64.encode(raw))
    }
}

/// A witness's private key: makes cosignatures.
#[derive(Clone)]
pub struct WitnessSigner {
    key: SigningKey,
    verifier: WitnessKey,
}

impl std::fmt::Debug for WitnessSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessSigner")
            .field("verifier", &self.verifier.to_string())
            .finish_non_exhaustive()
    }
}

impl WitnessSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        let verifier = WitnessKey::new(name, key.verifying_key())?;
        Ok(Self { key, verifier })
    }

    /// A fresh key from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = zeroed::Bytes32([0; 32]);
        getrandom::getrandom(&mut seed.0).map_err(|e| {
            NoteError::BadSignerKey(format!("OS random number generator failed: {e}"))
        })?;
        Self::new(name, SigningKey::from_bytes(&seed.0))
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 || seed)>`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let rest = s.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| {
            NoteError::BadSignerKey("expected PRIVATE+KEY+<name>+<hex key id>+<base64 key>".into())
        })?;
        let (name, id, seed) = split_key(rest, "seed").map_err(NoteError::BadSignerKey)?;
        let me = Self::new(&name, SigningKey::from_bytes(&seed.0))?;
        if me.verifier.id != id {
            return Err(NoteError::BadSignerKey(
                "key id does not match the name and key".into(),
            ));
        }
        Ok(me)
    }

    /// The signer key string. Secret: write it only to a 0600 file.
    pub fn to_secret_string(&self) -> String {
        let mut raw = zeroed::Vec(Vec::with_capacity(33));
        raw.0.push(ALG_COSIGNATURE_V1);
        raw.0.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.verifier.name,
            self.verifier.id_hex(),
            B64.encode(&raw.0)
        )
    }

    pub fn verifier(&self) -> &WitnessKey {
        &self.verifier
    }
    pub fn name(&self) -> &str {
        &self.verifier.name
    }

    /// The cosignature line (ending in a newline) over `checkpoint_text` at `timestamp`.
    pub fn cosign(&self, checkpoint_text: &[u8], timestamp: u64) -> String {
        let sig = self.key.sign(&message(checkpoint_text, timestamp));
        let mut raw = Vec::with_capacity(4 + TIMESTAMPED_LEN);
        raw.extend_from_slice(&self.verifier.id);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.verifier.name, B64.encode(raw))
    }
}

/// A signature line's key name and decoded bytes.
pub type SignatureLine = (String, Vec<u8>);

/// A note's text and every signature line, decoded (of any length: cosignatures are longer than
/// note signatures).
pub fn signature_lines(note: &[u8]) -> Result<(&[u8], Vec<SignatureLine>), NoteError> {
    let parsed = parse_note(note)?;
    let text = parsed.text;
    // parse_note checked every line's shape; only the decoding is repeated here.
    let sigs = std::str::from_utf8(&note[text.len() + 1..])
        .map_err(|_| NoteError::Malformed("signatures are not UTF-8".into()))?;
    let mut out = Vec::new();
    for line in sigs.lines() {
        let rest = line.strip_prefix(SIG_PREFIX).unwrap_or(line);
        if let Some((name, b64)) = rest.split_once(' ') {
            if let Ok(raw) = B64.decode(b64) {
                out.push((name.to_string(), raw));
            }
        }
    }
    Ok((text, out))
}

/// Parses a witness's add-checkpoint response body (one or more signature lines) and appends
/// the lines this witness signed validly over `checkpoint_text` to `note`. Returns the
/// cosignature, or why there is none.
pub fn accept_response(
    key: &WitnessKey,
    checkpoint_text: &[u8],
    body: &[u8],
) -> Result<(String, Cosigned), String> {
    let body = std::str::from_utf8(body).map_err(|_| "the response is not UTF-8".to_string())?;
    if body.is_empty() || !body.ends_with('\n') {
        return Err("the response is not newline-terminated signature lines".into());
    }
    let mut found = None;
    for line in body.lines() {
        let Some((name, b64)) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|rest| rest.split_once(' '))
        else {
            return Err("the response holds a line that is not a signature line".into());
        };
        if name != key.name {
            continue;
        }
        let Ok(raw) = B64.decode(b64) else {
            continue;
        };
        if raw.len() < 4 || raw[..4] != key.id {
            continue;
        }
        let c = key.verify_payload(checkpoint_text, &raw)?;
        found = Some((format!("{line}\n"), c));
    }
    found.ok_or_else(|| {
        format!(
            "the response has no cosignature by {} (key id {})",
            key.name,
            key.id_hex()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::note::SignerKey;

    fn checkpoint() -> (SignerKey, String) {
        let log = SignerKey::generate("example.com/log").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: [7; 32],
        };
        let note = cp.sign(&log).unwrap();
        (log, note)
    }

    #[test]
    fn message_is_the_spec_layout() {
        assert_eq!(
            message(b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", 1_679_315_147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn spec_example_line_decodes_to_its_key_id_and_timestamp() {
        // The cosignature in c2sp.org/tlog-cosignature's example: key id, then the timestamp
        // of the spec's example message (1679315147), then 64 signature bytes.
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let note = format!("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n{line}");
        let (_, lines) = signature_lines(note.as_bytes()).unwrap();
        let (name, raw) = &lines[0];
        assert_eq!(name, "witness.example.com/w1");
        assert_eq!(raw.len(), 76);
        assert_eq!(
            u64::from_be_bytes(raw[4..12].try_into().unwrap()),
            1_679_315_147
        );
    }

    #[test]
    fn cosign_then_check_round_trips_and_key_strings_parse() {
        let (_, note) = checkpoint();
        let w = WitnessSigner::generate("witness.test/w1").unwrap();
        let again = WitnessSigner::parse(&w.to_secret_string()).unwrap();
        assert_eq!(again.verifier(), w.verifier());
        let vkey = WitnessKey::parse(&w.verifier().to_string()).unwrap();
        assert_eq!(&vkey, w.verifier());
        let text = parse_note(note.as_bytes()).unwrap().text.to_vec();
        let line = w.cosign(&text, 1_700_000_000);
        let cosigned = format!("{note}{line}");
        assert_eq!(
            vkey.check(cosigned.as_bytes()).unwrap(),
            CosignatureCheck::Valid(Cosigned {
                timestamp: 1_700_000_000
            })
        );
        assert_eq!(
            vkey.check(note.as_bytes()).unwrap(),
            CosignatureCheck::Missing
        );
        // The log's own signature still opens the cosigned note (extra lines are allowed).
        let (log_text, _) = signature_lines(cosigned.as_bytes()).unwrap();
        assert_eq!(log_text, &text[..]);
        let (name, payload) = (w.name().to_string(), line.clone());
        let (got, c) = accept_response(&vkey, &text, payload.as_bytes()).unwrap();
        assert_eq!((got, c.timestamp), (line, 1_700_000_000));
        assert_eq!(name, "witness.test/w1");
    }

    #[test]
    fn forged_altered_and_foreign_cosignatures_are_told_apart() {
        let (_, note) = checkpoint();
        let text = parse_note(note.as_bytes()).unwrap().text.to_vec();
        let w = WitnessSigner::generate("witness.test/w1").unwrap();
        let other = WitnessSigner::generate("witness.test/w1").unwrap();
        // Another key under the same name: a different key id, ignored.
        let foreign = format!("{note}{}", other.cosign(&text, 5));
        assert_eq!(
            w.verifier().check(foreign.as_bytes()).unwrap(),
            CosignatureCheck::Missing
        );
        // A cosignature over another checkpoint moved onto this one.
        let other_text = b"example.com/log\n6\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let moved = format!("{note}{}", w.cosign(other_text, 5));
        assert!(matches!(
            w.verifier().check(moved.as_bytes()).unwrap(),
            CosignatureCheck::Invalid(_)
        ));
        // The timestamp changed after signing.
        let line = w.cosign(&text, 1_000);
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let mut raw = B64.decode(b64).unwrap();
        raw[11] ^= 1;
        let altered = format!("{note}\u{2014} witness.test/w1 {}\n", B64.encode(&raw));
        assert!(matches!(
            w.verifier().check(altered.as_bytes()).unwrap(),
            CosignatureCheck::Invalid(_)
        ));
        assert!(accept_response(w.verifier(), &text, &altered.as_bytes()[note.len()..]).is_err());
        // A zero timestamp is refused (the spec forbids omitting it).
        let zero = w.cosign(&text, 0);
        assert!(accept_response(w.verifier(), &text, zero.as_bytes()).is_err());
        // A log-style (0x01) signature by the witness key is not a cosignature.
        let as_log = SignerKey::new("witness.test/w1", w.key.clone()).unwrap();
        let replay = format!("{note}{}", as_log.signature_line(&text));
        assert_eq!(
            w.verifier().check(replay.as_bytes()).unwrap(),
            CosignatureCheck::Missing
        );
    }

    #[test]
    fn note_keys_are_not_witness_keys_and_bad_strings_are_refused() {
        let log = SignerKey::generate("n").unwrap();
        assert!(WitnessKey::parse(&log.verifier().to_string()).is_err());
        assert!(WitnessSigner::parse(&log.to_secret_string()).is_err());
        let w = WitnessSigner::generate("n").unwrap();
        let mut parts: Vec<String> = w
            .verifier()
            .to_string()
            .split('+')
            .map(String::from)
            .collect();
        parts[1] = "00000000".into();
        assert!(WitnessKey::parse(&parts.join("+")).is_err());
        assert!(WitnessKey::parse("n+00000000").is_err());
        assert!(WitnessKey::parse("").is_err());
    }
}
