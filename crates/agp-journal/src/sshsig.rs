//! OpenSSH `SSHSIG` detached signatures (PROTOCOL.sshsig), Ed25519 only.
//!
//! Written by hand instead of pulling in the `ssh-key` crate: the format is a few length-prefixed
//! strings, and agp needs exactly one key type and one hash. `ssh-keygen -Y verify` is the
//! reference the interop test checks against.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

use crate::note::{SignerKey, VerifierKey};

const MAGIC: &[u8; 6] = b"SSHSIG";
const VERSION: u32 = 1;
const HASH_ALG: &str = "sha512";
const KEY_TYPE: &str = "ssh-ed25519";
const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

/// The SSHSIG namespace agp signs checkpoints under (`ssh-keygen -Y verify -n`).
pub const CHECKPOINT_NAMESPACE: &str = "agp-journal-checkpoint";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshSigError {
    #[error("malformed SSH signature: {0}")]
    Malformed(String),
    #[error("SSH signature is by another key")]
    WrongKey,
    #[error("SSH signature namespace is {0:?}, expected {1:?}")]
    WrongNamespace(String, String),
    #[error("SSH signature does not verify")]
    Invalid,
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The OpenSSH wire encoding of an Ed25519 public key.
pub fn public_key_blob(key: &VerifyingKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(51);
    put_string(&mut out, KEY_TYPE.as_bytes());
    put_string(&mut out, key.as_bytes());
    out
}

/// `ssh-ed25519 <base64 blob>`: the public key as OpenSSH writes it.
pub fn openssh_public_key(key: &VerifyingKey) -> String {
    format!("{KEY_TYPE} {}", B64.encode(public_key_blob(key)))
}

/// An `allowed_signers` line restricting the key to agp's checkpoint namespace.
pub fn allowed_signers_line(identity: &str, key: &VerifyingKey) -> String {
    format!(
        "{identity} namespaces=\"{CHECKPOINT_NAMESPACE}\" {}",
        openssh_public_key(key)
    )
}

fn signed_data(namespace: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    put_string(&mut out, namespace.as_bytes());
    put_string(&mut out, b"");
    put_string(&mut out, HASH_ALG.as_bytes());
    put_string(&mut out, &Sha512::digest(message));
    out
}

/// An armored SSHSIG over `message`.
pub fn sign(key: &SignerKey, namespace: &str, message: &[u8]) -> String {
    let sig = key.sign_raw(&signed_data(namespace, message));
    let mut sig_blob = Vec::with_capacity(83);
    put_string(&mut sig_blob, KEY_TYPE.as_bytes());
    put_string(&mut sig_blob, &sig);
    let mut blob = Vec::with_capacity(200);
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&VERSION.to_be_bytes());
    put_string(&mut blob, &public_key_blob(key.verifier().key()));
    put_string(&mut blob, namespace.as_bytes());
    put_string(&mut blob, b"");
    put_string(&mut blob, HASH_ALG.as_bytes());
    put_string(&mut blob, &sig_blob);
    let b64 = B64.encode(blob);
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str(BEGIN);
    out.push('\n');
    // Lines of 70 characters, as ssh-keygen wraps them.
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 70 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push('\n');
    out.push_str(END);
    out.push('\n');
    out
}

struct Reader<'a>(&'a [u8]);
impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SshSigError> {
        if self.0.len() < n {
            return Err(SshSigError::Malformed("truncated".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, SshSigError> {
        let [a, b, c, d] = *self.take(4)? else {
            return Err(SshSigError::Malformed("truncated".into()));
        };
        Ok(u32::from_be_bytes([a, b, c, d]))
    }
    fn string(&mut self) -> Result<&'a [u8], SshSigError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Verifies an armored SSHSIG over `message` by `key` in `namespace`.
pub fn verify(
    armored: &str,
    key: &VerifierKey,
    namespace: &str,
    message: &[u8],
) -> Result<(), SshSigError> {
    let bad = |m: &str| SshSigError::Malformed(m.to_string());
    let inner = armored
        .trim()
        .strip_prefix(BEGIN)
        .and_then(|s| s.strip_suffix(END))
        .ok_or_else(|| bad("missing armor"))?;
    let b64: String = inner.split_whitespace().collect();
    let blob = B64.decode(b64).map_err(|_| bad("invalid base64"))?;
    let mut r = Reader(&blob);
    if r.take(6)? != MAGIC || r.u32()? != VERSION {
        return Err(bad("not an SSHSIG version 1 blob"));
    }
    if r.string()? != public_key_blob(key.key()).as_slice() {
        return Err(SshSigError::WrongKey);
    }
    let ns = r.string()?;
    if ns != namespace.as_bytes() {
        return Err(SshSigError::WrongNamespace(
            String::from_utf8_lossy(ns).into_owned(),
            namespace.to_string(),
        ));
    }
    let _reserved = r.string()?;
    if r.string()? != HASH_ALG.as_bytes() {
        return Err(bad("hash algorithm is not sha512"));
    }
    let mut s = Reader(r.string()?);
    if !r.0.is_empty() {
        return Err(bad("trailing data"));
    }
    if s.string()? != KEY_TYPE.as_bytes() {
        return Err(bad("signature is not ssh-ed25519"));
    }
    let sig: [u8; 64] = s
        .string()?
        .try_into()
        .map_err(|_| bad("Ed25519 signature is not 64 bytes"))?;
    if !s.0.is_empty() {
        return Err(bad("trailing signature data"));
    }
    if key.verify_raw(&signed_data(namespace, message), &sig) {
        Ok(())
    } else {
        Err(SshSigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_rejections() {
        let key = SignerKey::generate("agp.test/log").unwrap();
        let sig = sign(&key, CHECKPOINT_NAMESPACE, b"hello\n");
        verify(&sig, key.verifier(), CHECKPOINT_NAMESPACE, b"hello\n").unwrap();
        assert_eq!(
            verify(&sig, key.verifier(), CHECKPOINT_NAMESPACE, b"hellO\n"),
            Err(SshSigError::Invalid)
        );
        assert!(matches!(
            verify(&sig, key.verifier(), "file", b"hello\n"),
            Err(SshSigError::WrongNamespace(..))
        ));
        let other = SignerKey::generate("agp.test/log").unwrap();
        assert_eq!(
            verify(&sig, other.verifier(), CHECKPOINT_NAMESPACE, b"hello\n"),
            Err(SshSigError::WrongKey)
        );
    }

    #[test]
    fn a_truncated_or_lengthened_blob_is_malformed_not_a_panic() {
        let key = SignerKey::generate("agp.test/log").unwrap();
        let sig = sign(&key, CHECKPOINT_NAMESPACE, b"hello\n");
        let inner: String = sig
            .trim()
            .strip_prefix(BEGIN)
            .and_then(|s| s.strip_suffix(END))
            .unwrap()
            .split_whitespace()
            .collect();
        let blob = B64.decode(inner).unwrap();
        let armor = |b: &[u8]| format!("{BEGIN}\n{}\n{END}\n", B64.encode(b));
        for cut in 0..blob.len() {
            let res = verify(
                &armor(&blob[..cut]),
                key.verifier(),
                CHECKPOINT_NAMESPACE,
                b"hello\n",
            );
            assert!(res.is_err(), "a blob cut to {cut} bytes verified");
        }
        // Length prefixes claiming more than is there, at every 4-byte boundary.
        for at in (6..blob.len().saturating_sub(4)).step_by(4) {
            let mut b = blob.clone();
            b[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
            let res = verify(&armor(&b), key.verifier(), CHECKPOINT_NAMESPACE, b"hello\n");
            assert!(res.is_err(), "a length of 2^32-1 at byte {at} verified");
        }
        let mut longer = blob;
        longer.push(0);
        assert_eq!(
            verify(
                &armor(&longer),
                key.verifier(),
                CHECKPOINT_NAMESPACE,
                b"hello\n"
            ),
            Err(SshSigError::Malformed("trailing data".into()))
        );
    }

    #[test]
    fn the_armor_wraps_at_70_columns() {
        let key = SignerKey::generate("agp.test/log").unwrap();
        let sig = sign(&key, CHECKPOINT_NAMESPACE, b"hello\n");
        let lines: Vec<&str> = sig.lines().collect();
        assert_eq!(lines.first(), Some(&BEGIN));
        assert_eq!(lines.last(), Some(&END));
        let body = &lines[1..lines.len() - 1];
        assert!(body.len() > 1);
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 70));
        assert!((1..=70).contains(&body[body.len() - 1].len()));
    }
}
