//! A SQLite index of agp's journal, for the web console: sessions, one row per tool call, and
//! every other entry as an event, paged, built incrementally.
//!
//! The index is a cache. It decides nothing security-relevant and holds only what the journal
//! file holds (already redacted: never a secret), so it can be thrown away and rebuilt at any
//! time. It indexes lines no signed checkpoint covers yet too, and says so on every row
//! (`covered`), since such a line needs no key to forge; `agp verify` is the check of the
//! journal, not this index.
//!
//! ```text
//! JournalIndex::open(journal_dir, index_path)   // creates the index file (mode 0600) or reopens it
//! index.catch_up()                              // reads only what was appended since -> CatchUp
//! index.stats()                                 // entries, bytes, sessions, checkpoint, key id, origin
//! index.sessions(&SessionQuery)                 // Page<SessionSummary>, newest first
//! index.timeline(session, &TimelineQuery)       // Page<CallRow>, one row per call, by seq
//! index.session_events(Some(session), &EventQuery) // egress.*, session.*, sandbox.*, ... by seq
//! index.entry(seq)                              // the exact journal line, for agp_journal::proof
//! ```
//!
//! **Incremental.** The index remembers how far it read `entries.jsonl` (byte offset and seq),
//! the file's identity, the offset, length and leaf hash of the first and last lines it
//! indexed, and the Merkle frontier of the indexed lines. `catch_up` checks those against the
//! file and reads only the bytes after the offset, whole lines only (a line being written is
//! left for the next call), in batches of at most [`BATCH_LINES`] lines or [`BATCH_BYTES`]
//! bytes, each one SQLite transaction (WAL mode: pages are served while a batch is written).
//! A journal cut back (shorter than the offset), rewritten (first or last indexed line
//! differs), or replaced (another file) is indexed again from the start, and `CatchUp::rebuilt`
//! says why. Two processes may catch up the same index: each batch starts from the progress
//! recorded in the file, under SQLite's write lock.
//!
//! **Bounded memory.** Lines are streamed; a line is held only up to `agp_journal`'s
//! `MAX_LINE` (a longer one is hashed as it streams by and indexed as `unreadable`); pages are
//! at most [`MAX_PAGE`] rows.
//!
//! **Checkpoints.** After each catch-up the `checkpoint` file is read (small, not followed into
//! a FIFO) and opened with the key the journal names (its `journal.created` entry, or the last
//! `key.rotated`); its root is compared with the indexed tree when the index saw the tree at
//! that size. Rows are `covered` when their seq is below the size of a checkpoint that opened
//! and whose root did not differ.
//!
//! **Calls.** A call's row folds its `tool_call.requested`, `policy.decided`, `approval.*`
//! (`requested`, `granted`, `denied`, `timeout`) and `tool_call.result` entries, keyed by
//! session and call id. Egress entries name no call: a call's `egress` counts those journaled in
//! its session while it was let through and had no result yet. Every other entry (including
//! kinds this version does not know, and lines it cannot read) is an event row with its body
//! verbatim. All text is stored as the journal has it: escaping is the web layer's job.

mod checkpoint;
mod fold;
mod ingest;
mod query;
mod reader;
mod schema;
mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use types::*;

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

/// Most lines one catch-up transaction indexes.
pub const BATCH_LINES: u64 = 20_000;
/// Most line bytes one catch-up transaction reads.
pub const BATCH_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("index data: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    NotAJournal(String),
    /// The journal no longer holds the line the index recorded at this seq: catch up (which
    /// rebuilds) and ask again.
    #[error("entry {0} changed in the journal since it was indexed; catch up and retry")]
    Stale(u64),
    #[error("a thread using the index panicked")]
    Poisoned,
}

impl IndexError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        IndexError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The index of one journal folder. `Send + Sync`: share it between request handlers.
pub struct JournalIndex {
    journal_dir: PathBuf,
    entries_path: PathBuf,
    /// Catch-ups write through this connection, one at a time.
    writer: Mutex<Connection>,
    /// Pages read through this one (WAL: not blocked by a batch being written).
    reader: Mutex<Connection>,
}

impl JournalIndex {
    /// Opens (or creates) the index at `index_path` for the journal in `journal_dir`. Reads
    /// nothing from the journal: call [`JournalIndex::catch_up`].
    pub fn open(journal_dir: &Path, index_path: &Path) -> Result<Self, IndexError> {
        create_private(index_path)?;
        let writer = Connection::open(index_path)?;
        schema::prepare(&writer)?;
        let reader = Connection::open_with_flags(
            index_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(Self {
            journal_dir: journal_dir.to_path_buf(),
            entries_path: journal_dir.join(agp_journal::ENTRIES_FILE),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, IndexError> {
        self.writer.lock().map_err(|_| IndexError::Poisoned)
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>, IndexError> {
        self.reader.lock().map_err(|_| IndexError::Poisoned)
    }
}

/// Creates the index file readable by its owner only (the journal it mirrors holds paths and
/// commands, redacted but not public), or tightens an existing one; SQLite gives its `-wal` and
/// `-shm` files the same mode. A link is not followed.
fn create_private(path: &Path) -> Result<(), IndexError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| IndexError::io("cannot create", parent, e))?;
        }
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| IndexError::io("cannot open", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| IndexError::io("cannot stat", path, e))?;
    if !meta.is_file() {
        return Err(IndexError::NotAJournal(format!(
            "index {} is not a regular file",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| IndexError::io("cannot restrict", path, e))?;
    }
    Ok(())
}
