//! The witness's private key file: written once with mode 0600, refused when group or others
//! can read it or when it is a link (the journal key's rules).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use agp_journal::cosig::WitnessSigner;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the witness key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the witness key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a regular file (links are not followed)")]
    NotAFile { path: PathBuf },
    #[error("permissions {mode:04o} for {path} are too open: the witness key must not be readable by group or others (chmod 600 {path})")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

pub fn load(path: &Path) -> Result<WitnessSigner, KeyFileError> {
    let read = |source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                KeyFileError::NotAFile {
                    path: path.to_path_buf(),
                }
            } else {
                read(e)
            }
        })?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::io::read_to_string(file).map_err(read)?;
    WitnessSigner::parse(text.trim_end()).map_err(|e| KeyFileError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a new key file (mode 0600); an existing file is never overwritten.
pub fn write_new(path: &Path, key: &WitnessSigner) -> Result<(), KeyFileError> {
    let write = |source| KeyFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write)?;
    let mut secret = key.to_secret_string().into_bytes();
    secret.push(b'\n');
    let res = f.write_all(&secret).and_then(|()| f.sync_all());
    secret.iter_mut().for_each(|b| *b = 0);
    res.map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn round_trips_and_refuses_open_modes_links_and_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.key");
        let key = WitnessSigner::generate("witness.test/w1").unwrap();
        write_new(&path, &key).unwrap();
        assert_eq!(load(&path).unwrap().verifier(), key.verifier());
        assert!(write_new(&path, &key).is_err());
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(load(&link), Err(KeyFileError::NotAFile { .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::TooOpen { .. })));
    }
}
