//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, and the key encodings
//! golang.org/x/mod/sumdb/note uses: verifier keys `<name>+<hex keyid>+<base64(0x01||pk)>` and
//! signer keys `PRIVATE+KEY+<name>+<hex keyid>+<base64(0x01||seed)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature algorithm byte for Ed25519 in C2SP signed notes.
pub const ALG_ED25519: u8 = 0x01;
/// The signature line prefix: U+2014 EM DASH and a space.
pub const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("invalid key name {0:?}: it must be non-empty and contain no '+', whitespace or control characters")]
    BadName(String),
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(String),
    #[error("malformed signer key: {0}")]
    BadSignerKey(String),
    #[error("malformed signed note: {0}")]
    Malformed(String),
    #[error("note has no valid signature by {name} (key id {key_id})")]
    NoValidSignature { name: String, key_id: String },
}

/// A C2SP key name: non-empty, no `+`, no whitespace, no control characters.
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::BadName(name.to_string()));
    }
    Ok(())
}

/// Key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key).
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A public key that can check note signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Parses `<name>+<hex keyid>+<base64(0x01||pk)>`, checking that the key id matches.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::BadVerifierKey(m.to_string());
        // Names and key ids contain no '+', base64 may: split off the first two fields only.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <name>+<hex key id>+<base64 key>"));
        };
        check_name(name)?;
        let id =
            decode_key_id(id_hex).ok_or_else(|| bad("key id is not 8 lowercase hex digits"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("key is not valid base64"))?;
        let Some((&ALG_ED25519, pk)) = raw.split_first() else {
            return Err(bad("key is not an Ed25519 (0x01) key of 32 bytes"));
        };
        let pk: [u8; 32] = pk
            .try_into()
            .map_err(|_| bad("key is not an Ed25519 (0x01) key of 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| bad("not a valid Ed25519 point"))?;
        let me = Self::new(name, key)?;
        if me.id != id {
            return Err(bad("key id does not match the name and key"));
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
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks a raw Ed25519 signature made by this key (strict verification: no malleability).
    pub fn verify_raw(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }

    /// Verifies `note` and returns its text when it carries a valid signature by this key.
    /// Signatures by other keys are ignored, as C2SP requires.
    pub fn open<'a>(&self, note: &'a [u8]) -> Result<&'a [u8], NoteError> {
        let parsed = parse_note(note)?;
        for sig in &parsed.signatures {
            if sig.name == self.name && sig.id == self.id && self.verify_raw(parsed.text, &sig.sig)
            {
                return Ok(parsed.text);
            }
        }
        Err(NoteError::NoValidSignature {
            name: self.name.clone(),
            key_id: self.id_hex(),
        })
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, self.id_hex(), B64.encode(raw))
    }
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

/// A private key that signs notes.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    key: SigningKey,
    verifier: VerifierKey,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private half.
        f.debug_struct("SignerKey")
            .field("verifier", &self.verifier.to_string())
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        let verifier = VerifierKey::new(name, key.verifying_key())?;
        Ok(Self {
            name: name.to_string(),
            key,
            verifier,
        })
    }

    /// A fresh key from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = zeroize_on_drop([0u8; 32]);
        getrandom::getrandom(&mut seed.0).map_err(|e| {
            NoteError::BadSignerKey(format!("OS random number generator failed: {e}"))
        })?;
        Self::new(name, SigningKey::from_bytes(&seed.0))
    }

    /// Parses `PRIVATE+KEY+<name>+<hex keyid>+<base64(0x01||seed)>`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::BadSignerKey(m.to_string());
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("expected PRIVATE+KEY+<name>+<hex key id>+<base64 key>"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected PRIVATE+KEY+<name>+<hex key id>+<base64 key>"));
        };
        let id =
            decode_key_id(id_hex).ok_or_else(|| bad("key id is not 8 lowercase hex digits"))?;
        let raw = zeroize_on_drop(
            B64.decode(b64)
                .map_err(|_| bad("key is not valid base64"))?,
        );
        let Some((&ALG_ED25519, seed)) = raw.0.split_first() else {
            return Err(bad("key is not an Ed25519 (0x01) seed of 32 bytes"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("key is not an Ed25519 (0x01) seed of 32 bytes"))?;
        let me = Self::new(name, SigningKey::from_bytes(&seed))?;
        if me.verifier.id() != id {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(me)
    }

    /// The signer key string. Secret: write it only to a 0600 file.
    pub fn to_secret_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        let s = format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            self.verifier.id_hex(),
            B64.encode(&raw)
        );
        raw.iter_mut().for_each(|b| *b = 0);
        s
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The signature line for `text`: `— <name> <base64(keyid||sig)>\n`.
    pub fn signature_line(&self, text: &[u8]) -> String {
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.verifier.id());
        raw.extend_from_slice(&self.sign_raw(text));
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// A signed note: `text`, a blank line, one signature line. `text` must end with a newline.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        check_text(text.as_bytes())?;
        Ok(format!("{text}\n{}", self.signature_line(text.as_bytes())))
    }
}

struct ZeroOnDrop<T: AsMut<[u8]>>(T);
impl<T: AsMut<[u8]>> Drop for ZeroOnDrop<T> {
    fn drop(&mut self) {
        self.0.as_mut().iter_mut().for_each(|b| *b = 0);
    }
}
fn zeroize_on_drop<T: AsMut<[u8]>>(t: T) -> ZeroOnDrop<T> {
    ZeroOnDrop(t)
}

fn check_text(text: &[u8]) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with(b"\n") {
        return Err(NoteError::Malformed(
            "note text must end with a newline".into(),
        ));
    }
    if std::str::from_utf8(text).is_err() {
        return Err(NoteError::Malformed("note text is not UTF-8".into()));
    }
    if text.iter().any(|&b| b < 0x20 && b != b'\n') {
        return Err(NoteError::Malformed(
            "note text contains control characters".into(),
        ));
    }
    Ok(())
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: [u8; 4],
    pub sig: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedNote<'a> {
    /// Everything before the blank line, including the text's final newline: the signed bytes.
    pub text: &'a [u8],
    /// Ed25519-sized signatures (other lengths belong to other algorithms and are skipped).
    pub signatures: Vec<NoteSignature>,
}

/// Splits a signed note into its text and signature lines (the last `\n\n` separates them).
pub fn parse_note(note: &[u8]) -> Result<ParsedNote<'_>, NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.to_string());
    let split = note
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let text = &note[..=split];
    check_text(text)?;
    let sigs =
        std::str::from_utf8(&note[split + 2..]).map_err(|_| bad("signatures are not UTF-8"))?;
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(bad(
            "signature block must be non-empty and end with a newline",
        ));
    }
    let mut signatures = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("signature line does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line has no key name"))?;
        check_name(name).map_err(|_| bad("signature line has an invalid key name"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("signature is not valid base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature is too short"));
        }
        // Other lengths are signatures of other algorithms, which a note may carry and this
        // reader skips (they are counted against the limit all the same).
        let (id, sig) = raw.split_at(4);
        if let (Ok(id), Ok(sig)) = (id.try_into(), sig.try_into()) {
            signatures.push(NoteSignature {
                name: name.to_string(),
                id,
                sig,
            });
        }
    }
    if signatures.len() > 100 {
        return Err(bad("too many signatures"));
    }
    Ok(ParsedNote { text, signatures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golang_sumdb_note_example_key_round_trips() {
        // The verifier key from golang.org/x/mod/sumdb/note's documentation example.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let v = VerifierKey::parse(vkey).unwrap();
        assert_eq!(v.to_string(), vkey);
        assert_eq!(v.name(), "PeterNeumann");
        // The signed note from the same documentation.
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let text = v.open(note.as_bytes()).unwrap();
        assert!(text.starts_with(b"If you think"));
        let tampered = note.replace("answer", "Answer");
        assert!(v.open(tampered.as_bytes()).is_err());
    }

    #[test]
    fn signing_reproduces_the_golang_known_answer_note() {
        // Ed25519 is deterministic, so the Go signer key must reproduce the published note.
        let s = SignerKey::parse(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .unwrap();
        assert_eq!(
            s.verifier().to_string(),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        let note = s
            .sign_note(
                "If you think cryptography is the answer to your problem,\n\
                 then you don't know what your problem is.\n",
            )
            .unwrap();
        assert!(note.ends_with(
            "\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ));
    }

    #[test]
    fn sign_and_open_round_trip_and_key_strings_parse() {
        let s = SignerKey::generate("agp.test/log").unwrap();
        let again = SignerKey::parse(&s.to_secret_string()).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        let v = VerifierKey::parse(&s.verifier().to_string()).unwrap();
        let note = s.sign_note("agp.test/log\n3\nAAAA\n").unwrap();
        assert_eq!(v.open(note.as_bytes()).unwrap(), b"agp.test/log\n3\nAAAA\n");
        let other = SignerKey::generate("agp.test/log").unwrap();
        assert!(other.verifier().open(note.as_bytes()).is_err());
        // A flipped bit anywhere in the signature is rejected.
        let mut bytes = note.into_bytes();
        let n = bytes.len();
        bytes[n - 10] ^= 1;
        assert!(v.open(&bytes).is_err());
    }

    #[test]
    fn rejects_bad_names_and_mismatched_key_ids() {
        assert!(check_name("a+b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        let v = SignerKey::generate("n").unwrap().verifier().to_string();
        let wrong = v.replacen('+', "+0", 1).replacen("+0", "+", 1);
        assert_eq!(wrong, v);
        let mut parts: Vec<&str> = v.split('+').collect();
        parts[1] = "00000000";
        assert!(VerifierKey::parse(&parts.join("+")).is_err());
    }

    #[test]
    fn key_strings_of_every_length_and_algorithm_are_refused_not_a_panic() {
        let s = SignerKey::generate("n").unwrap();
        let v = s.verifier();
        let id = hex::encode(v.id());
        for len in 0..70 {
            for alg in [ALG_ED25519, 0x02, 0x00] {
                let mut raw = vec![alg];
                raw.extend(std::iter::repeat_n(7u8, len));
                let b64 = B64.encode(&raw);
                if !(len == 32 && alg == ALG_ED25519) {
                    assert!(
                        VerifierKey::parse(&format!("n+{id}+{b64}")).is_err(),
                        "{len} {alg}"
                    );
                    assert!(SignerKey::parse(&format!("PRIVATE+KEY+n+{id}+{b64}")).is_err());
                }
            }
            let empty = B64.encode(b"");
            assert!(VerifierKey::parse(&format!("n+{id}+{empty}")).is_err());
        }
    }

    #[test]
    fn signature_lines_of_every_length_are_skipped_or_refused_not_a_panic() {
        let s = SignerKey::generate("n").unwrap();
        let text = "n\n1\nAAAA\n";
        for len in 0..100 {
            let sig = B64.encode(vec![0x5a; len]);
            let note = format!("{text}\n\u{2014} n {sig}\n");
            assert!(s.verifier().open(note.as_bytes()).is_err(), "{len} bytes");
        }
        // A foreign-length signature beside a good one is skipped, not fatal.
        let good = s.sign_note(text).unwrap();
        let foreign = format!("{good}\u{2014} n {}\n", B64.encode([1u8; 40]));
        assert_eq!(
            s.verifier().open(foreign.as_bytes()).unwrap(),
            text.as_bytes()
        );
    }
}
