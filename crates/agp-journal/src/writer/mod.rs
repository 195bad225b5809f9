//! The single journal writer of an agp home.
//!
//! Appenders compose their lines under one short lock (seq, prev, Merkle frontier) and queue
//! them. Commits are leader/follower: an appender that finds no commit running becomes the
//! leader and at once writes what is queued in one `write` on an `O_APPEND` file and makes it
//! durable with one `fdatasync`; appends that arrive meanwhile queue up and form the next
//! commit, led by one of them. An append returns only once a commit covered it. So a lone
//! appender pays one `fdatasync` and no thread hand-off, and batches grow only with concurrency.
//!
//! `group` durability bounds a commit to `group_max_entries` (64) entries and lets a leader
//! linger for appends that are already being composed by other threads (never for appends that
//! have not started), at most `group_max_wait` (2 ms) after the oldest queued entry; `entry`
//! durability never lingers and commits everything queued. A sealer thread signs a checkpoint
//! for the latest durable size after commits (at most one per `checkpoint_interval`, coalescing
//! when it falls behind), so signing never sits between an append and its fsync. A checkpoint
//! is only ever written for entries that are already durable.

mod append;
mod open;
mod seal;
#[cfg(test)]
mod tests;

use append::{check_event, check_open};
use seal::{sealer, CheckpointSink};

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agp_contracts::events::{Event, JournalCreated, JournalRecovered, KeyRotated, TornTail};
use agp_contracts::{AppendReceipt, Journal, JournalError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::event::{self, GENESIS_PREV, KEY_ROTATED};
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::SignerKey;
use crate::sshsig;
use crate::verify::{self, Code, Severity, VerifyOptions};
use crate::{CHECKPOINTS_FILE, CHECKPOINT_FILE, ENTRIES_FILE};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fdatasync before each append returns; appends that arrive while a commit runs share the
    /// next fdatasync, however many they are.
    #[default]
    Entry,
    /// Group commit: at most `group_max_entries` per fdatasync; a commit starts at once when
    /// none is running, and lingers only for appends already being composed by other threads,
    /// at most `group_max_wait` after its oldest entry was queued.
    Group,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "entry" => Ok(Durability::Entry),
            "group" => Ok(Durability::Group),
            other => Err(format!(
                "unknown durability {other:?} (expected entry or group)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub durability: Durability,
    /// Group durability: most entries one fdatasync covers; more queued wait for the next.
    pub group_max_entries: usize,
    /// Group durability: longest a commit may wait, counted from its oldest entry, for appends
    /// that other threads are composing. Never spent when nobody is composing.
    pub group_max_wait: Duration,
    /// Least time between two background checkpoints. Each checkpoint costs every verifier a
    /// signature check, so under load they are coalesced to at most one per interval; close,
    /// open and rotation always write one.
    pub checkpoint_interval: Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Entry,
            group_max_entries: 64,
            group_max_wait: Duration::from_millis(2),
            checkpoint_interval: Duration::from_millis(20),
        }
    }
}

impl JournalOptions {
    pub fn with_durability(durability: Durability) -> Self {
        Self {
            durability,
            ..Self::default()
        }
    }
}

/// What opening found and did, for logs and `agp journal recover`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenSummary {
    /// The journal was empty and a `journal.created` entry was written.
    pub created: bool,
    /// Entries present when opened.
    pub entries: u64,
    /// Bytes of a torn last line moved aside, and where to.
    pub torn_bytes: u64,
    pub torn_file: Option<PathBuf>,
    /// Entries that were after the last checkpoint when opened (now sealed).
    pub unsealed: u64,
    /// Seq of the `journal.recovered` entry, when one was written.
    pub recovered_seq: Option<u64>,
    /// A crash had interrupted publishing a checkpoint (`UNFINISHED_CHECKPOINT`); opening
    /// published a fresh one and removed what was left.
    pub unfinished_checkpoint: bool,
}

struct State {
    chain: Chain,
    queue: Queue,
    durable: u64,
    /// Appenders waiting for their entries (up to the seq given) to become durable, woken with
    /// `unpark` one by one, so a commit does not make all of them fight for this lock.
    waiters: Vec<(u64, std::thread::Thread)>,
    /// An appender is writing and syncing (the leader of the current commit).
    committing: bool,
    /// The leader waits on `Shared::work` for appends being composed.
    lingering: bool,
    /// Latest durable (size, root), for the sealer.
    to_seal: (u64, Hash),
    sealed: u64,
    failed: Option<String>,
    closing: bool,
    sealer_idle: bool,
}

/// The end of the chain the next entry extends.
struct Chain {
    next_seq: u64,
    prev: Hash,
    frontier: Frontier,
    key_id: String,
}

/// The lines waiting for a commit, and where group durability may cut them.
struct Queue {
    /// Lines composed and not yet taken by a commit.
    buf: Vec<u8>,
    buf_entries: usize,
    /// When the oldest line in `buf` was queued.
    buf_since: Option<Instant>,
    /// A drained buffer kept for reuse.
    spare: Vec<u8>,
    /// Group durability: where `buf` can be cut after every `group_max_entries` lines.
    marks: VecDeque<Mark>,
}

/// A cut point in `State::buf`: the first `bytes` bytes hold the entries below `end`, whose
/// tree has this frontier (a commit of just those entries can then name its root).
struct Mark {
    end: u64,
    bytes: usize,
    frontier: Frontier,
}

struct Shared {
    state: Mutex<State>,
    /// A lingering leader waits here for appends being composed.
    work: Condvar,
    /// Appenders between entering `append` and queueing their lines (group durability only).
    arriving: AtomicUsize,
    seal_cv: Condvar,
    opts: JournalOptions,
    /// The O_APPEND handle lines are written through (by one commit leader at a time).
    file: Mutex<File>,
    dir: PathBuf,
    key: Mutex<Arc<SignerKey>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state unknown: refuse further work.
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                g.failed
                    .get_or_insert_with(|| "a journal thread panicked".into());
                g
            }
        }
    }
    /// Waits until the sealer is idle; the caller claims it by clearing `sealer_idle`.
    fn sealer_idle<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        while !st.sealer_idle {
            st = self
                .seal_cv
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st
    }
    fn signer(&self) -> Arc<SignerKey> {
        self.key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The journal writer. `Send + Sync`: share it (e.g. in an `Arc`) between threads.
pub struct JournalWriter {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    checkpoints: Arc<Mutex<CheckpointSink>>,
    summary: OpenSummary,
    // Holds the exclusive lock for the writer's lifetime.
    _entries_lock: File,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// An I/O error that names what was being done to which path.
pub(crate) fn io_err(what: &str, path: &Path, e: &std::io::Error) -> JournalError {
    JournalError::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}
