//! Where a witness keeps, for each log, the latest checkpoint it cosigned.
//!
//! The check of a request's old size against this record and the update to the new checkpoint
//! must be one atomic step (tlog-witness describes the rollback two racing requests cause
//! otherwise), so a store offers exactly that step: [`StateStore::update`]. The file store is
//! one file per log, replaced by write + fsync + rename, under an exclusive lock on that log's
//! lock file (which also keeps a second witness process on the same folder out); different logs
//! are updated in parallel. A shared database store implements the same trait.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("witness state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("witness state {0}")]
    Corrupt(String),
}

/// Given the stored note (if any), the note to store instead (`None`: keep it), or a refusal.
pub type Decide<'a> = dyn FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, crate::AddError> + 'a;

/// The latest cosigned checkpoint of each log, as its note (log signature and cosignature).
pub trait StateStore: Send + Sync {
    /// The note stored for `origin`, if any.
    fn latest(&self, origin: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Atomically: reads the note stored for `origin`, hands it to `decide`, and stores what
    /// `decide` returns (`Ok(Some(note))`) before returning. No other update of `origin` runs
    /// in between, in this process or another one sharing the store.
    fn update(&self, origin: &str, decide: &mut Decide<'_>) -> Result<(), crate::AddError>;
}

/// The state as files: `<dir>/<sha256(origin) in hex>` per log, and beside it
/// `<...>.lock`, locked for each update of that log (logs are updated in parallel).
pub struct FileStore {
    dir: PathBuf,
    /// One lock per log: serializes this process's updates of it; the file lock serializes
    /// processes.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Largest state file read (a note with a few signatures is well under 4 KiB).
const MAX_STATE: u64 = 1 << 20;

impl FileStore {
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, origin: &str) -> PathBuf {
        self.dir
            .join(hex::encode(Sha256::digest(origin.as_bytes())))
    }

    fn read(&self, origin: &str) -> Result<Option<Vec<u8>>, StateError> {
        use std::io::Read as _;
        let path = self.path(origin);
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let mut buf = Vec::new();
        f.take(MAX_STATE + 1)
            .read_to_end(&mut buf)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?;
        if buf.len() as u64 > MAX_STATE {
            return Err(StateError::Corrupt(format!(
                "{} is larger than any checkpoint",
                path.display()
            )));
        }
        Ok(Some(buf))
    }

    /// Replaces the file for `origin`: a temporary file written and fsynced, renamed over the
    /// old one, the folder fsynced. A crash leaves the old record or the new one.
    fn write(&self, origin: &str, note: &[u8]) -> Result<(), StateError> {
        let path = self.path(origin);
        let tmp = path.with_extension("tmp");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io { path: p, source }
        };
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(note).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

impl StateStore for FileStore {
    fn latest(&self, origin: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.read(origin)
    }

    fn update(&self, origin: &str, decide: &mut Decide<'_>) -> Result<(), crate::AddError> {
        let local = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(origin.to_string())
            .or_default()
            .clone();
        let _in_process = local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lock_path = self.path(origin).with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|source| StateError::Io {
                path: lock_path,
                source,
            })?;
        let res = (|| {
            let current = self.read(origin)?;
            if let Some(new) = decide(current.as_deref())? {
                self.write(origin, &new)?;
            }
            Ok(())
        })();
        let _ = lock.unlock();
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_replaces_records_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.latest("o").unwrap(), None);
        s.update("o", &mut |cur| {
            assert!(cur.is_none());
            Ok(Some(b"one".to_vec()))
        })
        .unwrap();
        s.update("o", &mut |cur| {
            assert_eq!(cur, Some(&b"one"[..]));
            Ok(Some(b"two".to_vec()))
        })
        .unwrap();
        // A refused update stores nothing.
        let refused = s.update("o", &mut |_| Err(crate::AddError::Conflict(9)));
        assert!(matches!(refused, Err(crate::AddError::Conflict(9))));
        drop(s);
        let s = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.latest("o").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(s.latest("other").unwrap(), None);
    }
}
