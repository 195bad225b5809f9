//! Journal key files: the private signer key (refused when group/other can read it, like
//! OpenSSH) and the public forms an auditor needs (C2SP verifier key, PEM SPKI, allowed_signers).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::note::{NoteError, SignerKey, VerifierKey};
use crate::sshsig;

/// File names inside `<home>/keys/`.
pub const SIGNER_FILE: &str = "journal.key";
pub const VERIFIER_FILE: &str = "journal.pub";
pub const PEM_FILE: &str = "journal.pub.pem";
pub const ALLOWED_SIGNERS_FILE: &str = "allowed_signers";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("permissions {mode:04o} for {path} are too open: the private key must not be readable by group or others (chmod 600 {path})")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: NoteError },
    #[error("not a verifier key and not a readable file: {0}")]
    BadVerifierArg(String),
}

/// Loads the signer key, refusing a file group or others can access.
pub fn load_signer_key(path: &Path) -> Result<SignerKey, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    // The checks must be about the file actually read: refuse a symlink, then make sure the file
    // opened is the one that was inspected.
    let link_meta = std::fs::symlink_metadata(path).map_err(read_err)?;
    if !link_meta.file_type().is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() || meta.ino() != link_meta.ino() || meta.dev() != link_meta.dev() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::io::read_to_string(file).map_err(read_err)?;
    SignerKey::parse(text.trim_end()).map_err(|source| KeyError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a new signer key file with mode 0600; an existing file is never overwritten.
pub fn write_signer_key_new(path: &Path, key: &SignerKey) -> Result<(), KeyError> {
    let write_err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    let mut secret = key.to_secret_string();
    secret.push('\n');
    let res = file
        .write_all(secret.as_bytes())
        .and_then(|()| file.sync_all());
    // Best effort: do not leave the secret lying around in freed memory.
    let zeros = "\0".repeat(secret.len());
    secret.replace_range(.., &zeros);
    res.map_err(write_err)
}

/// Parses a verifier key given as the key string itself or as a file holding it (the first
/// line that is neither blank nor a `#` comment).
pub fn load_verifier_key(arg: &str) -> Result<VerifierKey, KeyError> {
    let arg_trim = arg.trim();
    if arg_trim.contains('+') && !Path::new(arg_trim).exists() {
        return VerifierKey::parse(arg_trim).map_err(|source| KeyError::Parse {
            path: PathBuf::from("<argument>"),
            source,
        });
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| KeyError::BadVerifierArg(format!("{} holds no key", path.display())))?;
    VerifierKey::parse(line).map_err(|source| KeyError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// DER of the SubjectPublicKeyInfo of an Ed25519 key up to the key itself (RFC 8410 §4):
/// SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) <32 bytes> }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// PEM (SubjectPublicKeyInfo) form of the public key. The DER of an Ed25519 key has one fixed
/// shape, so it is spelled out rather than encoded by a call that could fail; a test holds it
/// to the `pkcs8` encoder.
pub fn public_key_pem(key: &VerifierKey) -> String {
    let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(key.key().as_bytes());
    // 44 bytes are 60 base64 characters: one line, under PEM's 64.
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// The identity an `allowed_signers` line names: the journal's origin (its key name).
pub fn ssh_identity(key: &VerifierKey) -> &str {
    key.name()
}

/// `allowed_signers` line for `ssh-keygen -Y verify -I <origin> -n agp-journal-checkpoint`.
pub fn allowed_signers_line(key: &VerifierKey) -> String {
    sshsig::allowed_signers_line(ssh_identity(key), key.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn signer_key_file_round_trips_and_open_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNER_FILE);
        let key = SignerKey::generate("agp.test/log").unwrap();
        write_signer_key_new(&path, &key).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(load_signer_key(&path).unwrap().verifier(), key.verifier());
        // create-new semantics
        assert!(write_signer_key_new(&path, &key).is_err());
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(
                load_signer_key(&path),
                Err(KeyError::TooOpen { .. })
            ));
        }
        // a symlink to the key is not followed
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(load_signer_key(&link).is_err());
    }

    #[test]
    fn verifier_key_loads_from_string_or_file_and_public_forms_render() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let vkey = key.verifier().to_string();
        assert_eq!(&load_verifier_key(&vkey).unwrap(), key.verifier());
        let path = dir.path().join(VERIFIER_FILE);
        std::fs::write(&path, format!("# comment\n\n{vkey}\n")).unwrap();
        assert_eq!(
            &load_verifier_key(path.to_str().unwrap()).unwrap(),
            key.verifier()
        );
        assert!(load_verifier_key("nonsense").is_err());
        assert!(public_key_pem(key.verifier()).starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(allowed_signers_line(key.verifier())
            .starts_with("agp.test/log namespaces=\"agp-journal-checkpoint\" ssh-ed25519 "));
    }

    #[test]
    fn the_spelled_out_pem_is_what_the_pkcs8_encoder_writes() {
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey as _};
        for name in ["a", "agp.test/log", "another"] {
            let key = SignerKey::generate(name).unwrap();
            let encoded = key
                .verifier()
                .key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            assert_eq!(public_key_pem(key.verifier()), encoded);
        }
    }
}
