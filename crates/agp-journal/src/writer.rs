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

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agp_contracts::{AppendReceipt, Journal, JournalError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::checkpoint::Checkpoint;
use crate::event::{self, GENESIS_PREV, JOURNAL_CREATED, JOURNAL_RECOVERED, KEY_ROTATED};
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
    next_seq: u64,
    prev: Hash,
    frontier: Frontier,
    key_id: String,
    /// Lines composed and not yet taken by a commit.
    buf: Vec<u8>,
    buf_entries: usize,
    /// When the oldest line in `buf` was queued.
    buf_since: Option<Instant>,
    /// A drained buffer kept for reuse.
    spare: Vec<u8>,
    /// Group durability: where `buf` can be cut after every `group_max_entries` lines.
    marks: VecDeque<Mark>,
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
    fn signer(&self) -> Arc<SignerKey> {
        self.key.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

fn io_err(what: &str, path: &Path, e: std::io::Error) -> JournalError {
    JournalError::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

impl JournalWriter {
    /// Opens (or creates) the journal in `dir` for appending, signing with `key`.
    ///
    /// Takes an exclusive lock (a second writer gets `Unavailable`), verifies the existing
    /// journal against `key` and its stored checkpoints, and refuses to continue a journal that
    /// fails verification (other than a torn or unsealed tail), that is shorter than its last
    /// checkpoint, or whose key in force is not `key`. A torn last line is moved aside to
    /// `entries.jsonl.torn[.N]` and a `journal.recovered` entry records it.
    pub fn open(dir: &Path, key: SignerKey, opts: JournalOptions) -> Result<Self, JournalError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("cannot create journal folder", dir, e))?;
        let entries_path = dir.join(ENTRIES_FILE);
        let entries = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&entries_path)
            .map_err(|e| io_err("cannot open", &entries_path, e))?;
        lock_single_writer(&entries, &entries_path)?;

        let report = verify::verify_dir(
            dir,
            &VerifyOptions {
                trusted_key: key.verifier().clone(),
                trusted_checkpoint: None,
            },
        )
        .map_err(|e| JournalError::Unavailable(e.to_string()))?;
        // What a crash (or power loss: the sealer does not fsync) can leave, all of it rewritten
        // below. `journal/checkpoint` is a copy of the last stored checkpoint, so a damaged one
        // is replaced too; everything else refuses the open.
        let tolerated = |f: &crate::Finding| {
            matches!(
                f.code,
                Code::TornTail
                    | Code::UnsealedTail
                    | Code::TornCheckpoint
                    | Code::StaleCheckpoint
                    | Code::MissingSshsig
                    | Code::SshsigInvalid
            ) || (f.code == Code::CheckpointMalformed
                && f.checkpoint.as_deref() == Some(CHECKPOINT_FILE))
        };
        if report.has(Code::Truncated) {
            return Err(JournalError::Unavailable(format!(
                "the journal has {} entries, fewer than its last checkpoint ({}): refusing to write to a truncated journal",
                report.entries, report.tail.max_checkpoint_size
            )));
        }
        if report.entries > 0 {
            if let Some(active) = report.active_key() {
                if active != key.verifier() {
                    return Err(JournalError::Unavailable(format!(
                        "the journal's key in force is {} but this key is {}: refusing to sign with another key (rotate with `agp keygen --rotate`)",
                        active.id_hex(),
                        key.verifier().id_hex()
                    )));
                }
            }
        }
        if let Some(bad) = report
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error && !tolerated(f))
        {
            return Err(JournalError::Unavailable(format!(
                "the journal fails verification, refusing to extend it: {bad} (run `agp verify`)"
            )));
        }

        let mut summary = OpenSummary {
            entries: report.entries,
            unfinished_checkpoint: report.has(Code::UnfinishedCheckpoint),
            ..OpenSummary::default()
        };
        // Move a torn last line aside, never drop it.
        if report.tail.torn_len > 0 {
            let torn_path = free_name(dir, &format!("{ENTRIES_FILE}.torn"));
            move_tail_aside(&entries, report.tail.good_len, &torn_path)?;
            summary.torn_bytes = report.tail.torn_len;
            summary.torn_file = Some(torn_path);
        }
        let cps_path = dir.join(CHECKPOINTS_FILE);
        let checkpoints = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&cps_path)
            .map_err(|e| io_err("cannot open", &cps_path, e))?;
        if report.tail.checkpoints_torn {
            let torn_path = free_name(dir, &format!("{CHECKPOINTS_FILE}.torn"));
            move_tail_aside(&checkpoints, report.tail.checkpoints_good_len, &torn_path)?;
        }
        summary.unsealed = report.entries - report.sealed_size.min(report.entries);

        let key_id = key.verifier().id_hex();
        let state = State {
            next_seq: report.entries,
            prev: report.tail.last_leaf.unwrap_or([0; 32]),
            frontier: report.tail.frontier.clone(),
            key_id,
            buf: Vec::with_capacity(64 * 1024),
            buf_entries: 0,
            buf_since: None,
            spare: Vec::with_capacity(64 * 1024),
            marks: VecDeque::new(),
            durable: report.entries,
            waiters: Vec::new(),
            committing: false,
            lingering: false,
            to_seal: (report.entries, report.tail.frontier.root()),
            sealed: report.sealed_size,
            failed: None,
            closing: false,
            sealer_idle: true,
        };
        let writer_file = entries
            .try_clone()
            .map_err(|e| io_err("cannot open", &entries_path, e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            arriving: AtomicUsize::new(0),
            seal_cv: Condvar::new(),
            opts,
            file: Mutex::new(writer_file),
            dir: dir.to_path_buf(),
            key: Mutex::new(Arc::new(key)),
        });
        let checkpoints = Arc::new(Mutex::new(CheckpointSink {
            file: checkpoints,
            next_generation: crate::pair::next_generation(dir)?,
        }));
        let mut threads = Vec::new();
        let sealer = {
            let shared = shared.clone();
            let cps = checkpoints.clone();
            std::thread::Builder::new()
                .name("agp-journal-seal".into())
                .spawn(move || sealer(shared, cps))
                .map_err(JournalError::Io)?
        };
        threads.push(sealer);
        let mut me = Self {
            shared,
            threads: Mutex::new(threads),
            checkpoints,
            summary,
            _entries_lock: entries,
        };

        if report.entries == 0 {
            let signer = me.shared.signer();
            me.append_inner(
                JOURNAL_CREATED,
                None,
                &json!({"origin": signer.name(), "key": signer.verifier().to_string()}),
            )?;
            me.summary.created = true;
        } else {
            // Torn tails moved aside by an open that crashed before journaling them.
            let orphans = unrecorded_torn_files(
                dir,
                &report.tail.recorded_torn,
                me.summary.torn_file.as_deref(),
            )?;
            if me.summary.torn_bytes > 0 || me.summary.unsealed > 0 || !orphans.is_empty() {
                let r = me.journal_recovery(report.sealed_size, orphans)?;
                me.summary.recovered_seq = Some(r.seq);
            }
        }
        // A fresh checkpoint (and checkpoint.sig) for what is there now.
        me.seal_now(true)?;
        Ok(me)
    }

    fn journal_recovery(
        &self,
        unsealed_from: u64,
        orphans: Vec<Value>,
    ) -> Result<AppendReceipt, JournalError> {
        {
            let mut body = json!({
                "unsealed_from": unsealed_from,
                "unsealed_entries": self.summary.unsealed,
                "torn_bytes": self.summary.torn_bytes,
            });
            if !orphans.is_empty() {
                body["earlier_torn"] = Value::Array(orphans);
            }
            if let Some(p) = &self.summary.torn_file {
                let torn = std::fs::read(p).map_err(|e| io_err("cannot read", p, e))?;
                body["torn_file"] = json!(p.file_name().map(|n| n.to_string_lossy().into_owned()));
                body["torn_sha256"] = json!(agp_contracts::canonical::sha256_hex(&torn));
            }
            self.append_inner(JOURNAL_RECOVERED, None, &body)
        }
    }

    /// What opening found and did.
    pub fn open_summary(&self) -> &OpenSummary {
        &self.summary
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The verifier key in force.
    pub fn verifier_key(&self) -> crate::note::VerifierKey {
        self.shared.signer().verifier().clone()
    }

    /// Entries durably written so far.
    pub fn len(&self) -> u64 {
        self.shared.lock().durable
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append_inner(
        &self,
        kind: &str,
        session: Option<&str>,
        body: &Value,
    ) -> Result<AppendReceipt, JournalError> {
        let arrival = Arrival::new(&self.shared);
        let body = check_event(kind, session, body)?;
        let mut st = self.shared.lock();
        arrival.settle(&mut st);
        check_open(&st)?;
        let receipt = self.compose(&mut st, kind, session, &body);
        self.await_durable(st, receipt.seq)?;
        Ok(receipt)
    }

    /// Appends `events` as consecutive entries (no other append lands between them) and returns
    /// once all of them are durable under the journal's durability: one wait, usually one
    /// fdatasync, for the lot. Every event is checked before any is queued, so a refused event
    /// appends none of them. An error means none of them may be relied upon.
    pub fn append_batch(
        &self,
        events: &[(&str, Option<&str>, Value)],
    ) -> Result<Vec<AppendReceipt>, JournalError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let arrival = Arrival::new(&self.shared);
        let bodies = events
            .iter()
            .map(|(kind, session, body)| check_event(kind, *session, body))
            .collect::<Result<Vec<String>, JournalError>>()?;
        let mut st = self.shared.lock();
        arrival.settle(&mut st);
        check_open(&st)?;
        let receipts: Vec<AppendReceipt> = events
            .iter()
            .zip(&bodies)
            .map(|((kind, session, _), body)| self.compose(&mut st, kind, *session, body))
            .collect();
        let last = receipts.last().map_or(0, |r| r.seq);
        self.await_durable(st, last)?;
        Ok(receipts)
    }

    /// Waits (leading commits when none runs) until every entry up to `last` is durable.
    /// `st` must still be the guard under which those entries were queued.
    fn await_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        last: u64,
    ) -> Result<(), JournalError> {
        st.waiters.push((last, std::thread::current()));
        self.commit_or_follow(st, last)
    }

    /// Leader/follower commit, with no hand-off to another thread: the first waiting appender
    /// to find no commit running writes and syncs what is queued (its own lines and any that
    /// arrived meanwhile; in group durability at most `group_max_entries`), then releases the
    /// appenders that commit covered. When it is done itself and others still wait, it wakes one
    /// of them to lead the next commit; the rest stay parked until a commit covers them.
    fn commit_or_follow<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        last: u64,
    ) -> Result<(), JournalError> {
        let sh = &*self.shared;
        let group = sh.opts.durability == Durability::Group;
        let cap = sh.opts.group_max_entries.max(1);
        let me = std::thread::current().id();
        loop {
            if st.durable > last {
                return Ok(());
            }
            if let Some(f) = &st.failed {
                return Err(JournalError::Unavailable(f.clone()));
            }
            if st.committing {
                drop(st);
                std::thread::park();
                st = sh.lock();
                continue;
            }
            st.committing = true;
            if group {
                st = self.linger(st, cap);
            }
            let (mut buf, end, frontier) = if group && st.buf_entries > cap {
                let mark = st.marks.pop_front().expect("a full group has a mark");
                let rest = st.buf.split_off(mark.bytes);
                let head = std::mem::replace(&mut st.buf, rest);
                st.buf_entries -= cap;
                for m in st.marks.iter_mut() {
                    m.bytes -= mark.bytes;
                }
                // `buf_since` stays: the rest was queued later, so keeping the older time can
                // only shorten a later linger, never stretch it past `group_max_wait`.
                (head, mark.end, mark.frontier)
            } else {
                let spare = std::mem::take(&mut st.spare);
                let all = std::mem::replace(&mut st.buf, spare);
                st.buf_entries = 0;
                st.buf_since = None;
                st.marks.clear();
                (all, st.next_seq, st.frontier.clone())
            };
            drop(st);

            let res = {
                let mut file = sh.file.lock().unwrap_or_else(|p| p.into_inner());
                file.write_all(&buf).and_then(|()| file.sync_data())
            };
            let root = frontier.root();

            st = sh.lock();
            st.committing = false;
            match res {
                Ok(()) => {
                    st.durable = end;
                    st.to_seal = (end, root);
                    sh.seal_cv.notify_all();
                }
                Err(e) => {
                    // The in-memory chain is ahead of the file now: refuse everything until
                    // the journal is reopened.
                    st.failed = Some(format!("journal write failed: {e}; reopen the journal"));
                }
            }
            let failed = st.failed.is_some();
            let durable = st.durable;
            let mut released = Vec::new();
            st.waiters.retain(|(upto, t)| {
                let done = failed || *upto < durable;
                if done && t.id() != me {
                    released.push(t.clone());
                }
                !done
            });
            // The next leader is woken first, so its commit overlaps waking this one's batch.
            let mut wake = Vec::with_capacity(released.len() + 1);
            if failed || durable > last {
                if let Some((_, next)) = st.waiters.first() {
                    wake.push(next.clone());
                }
            }
            wake.append(&mut released);
            buf.clear();
            if buf.capacity() > st.spare.capacity() {
                st.spare = buf;
            }
            drop(st);
            for t in wake {
                t.unpark();
            }
            st = sh.lock();
        }
    }

    /// Group durability: the leader waits for appends that other threads are composing right
    /// now, so that they share this commit, while the commit has room and its oldest entry has
    /// been queued for less than `group_max_wait`. Nobody composing means no wait: a lone
    /// appender is never delayed.
    fn linger<'a>(&self, mut st: MutexGuard<'a, State>, cap: usize) -> MutexGuard<'a, State> {
        let sh = &*self.shared;
        while st.buf_entries < cap
            && sh.arriving.load(Ordering::Acquire) > 0
            && !st.closing
            && st.failed.is_none()
        {
            let Some(left) = st
                .buf_since
                .and_then(|since| sh.opts.group_max_wait.checked_sub(since.elapsed()))
                .filter(|left| !left.is_zero())
            else {
                break;
            };
            st.lingering = true;
            st = sh
                .work
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.lingering = false;
        }
        st
    }

    /// Composes the next line under the lock and queues it for a commit.
    fn compose(
        &self,
        st: &mut State,
        kind: &str,
        session: Option<&str>,
        body: &str,
    ) -> AppendReceipt {
        let seq = st.next_seq;
        let prev_hex = if seq == 0 {
            GENESIS_PREV.to_string()
        } else {
            hex::encode(st.prev)
        };
        let line = event::compose_line(
            seq,
            &event::now_rfc3339(),
            kind,
            session,
            &prev_hex,
            &st.key_id,
            body,
        );
        let leaf = leaf_hash(line.as_bytes());
        st.frontier.push(leaf);
        st.prev = leaf;
        st.next_seq += 1;
        st.buf.extend_from_slice(line.as_bytes());
        st.buf.push(b'\n');
        st.buf_entries += 1;
        if st.buf_since.is_none() {
            st.buf_since = Some(Instant::now());
        }
        let sh = &*self.shared;
        if sh.opts.durability == Durability::Group {
            let cap = sh.opts.group_max_entries.max(1);
            if st.buf_entries.is_multiple_of(cap) {
                let mark = Mark {
                    end: st.next_seq,
                    bytes: st.buf.len(),
                    frontier: st.frontier.clone(),
                };
                st.marks.push_back(mark);
                if st.lingering {
                    sh.work.notify_all();
                }
            }
        }
        AppendReceipt {
            seq,
            leaf_hash: leaf,
        }
    }

    /// Waits until the sealer is idle, then writes a checkpoint for the durable size
    /// synchronously (fsyncing the checkpoint files when `sync`).
    fn seal_now(&self, sync: bool) -> Result<(), JournalError> {
        let sh = &*self.shared;
        let (size, root) = {
            let mut st = sh.lock();
            while !st.sealer_idle {
                st = sh.seal_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if let Some(f) = &st.failed {
                return Err(JournalError::Unavailable(f.clone()));
            }
            st.sealer_idle = false;
            st.to_seal
        };
        let signer = sh.signer();
        let res = {
            let mut cps = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            write_checkpoint(&sh.dir, &mut cps, &[&signer], size, root, sync)
        };
        let mut st = sh.lock();
        st.sealer_idle = true;
        if res.is_ok() {
            st.sealed = st.sealed.max(size);
        }
        sh.seal_cv.notify_all();
        res
    }

    /// Rotates the signing key: appends a `key.rotated` entry naming `new_key`, signed by the
    /// current key, seals it with a checkpoint signed by both keys, and signs with `new_key`
    /// from then on. Returns the rotation entry's receipt.
    pub fn rotate(&self, new_key: SignerKey) -> Result<AppendReceipt, JournalError> {
        let old = self.shared.signer();
        if new_key.name() != old.name() {
            return Err(JournalError::Refused(format!(
                "the new key must keep the journal's name {:?}",
                old.name()
            )));
        }
        if new_key.verifier() == old.verifier() {
            return Err(JournalError::Refused(
                "the new key is the current key".into(),
            ));
        }
        let sh = &*self.shared;
        let new_key = Arc::new(new_key);
        let new_vkey = new_key.verifier().to_string();
        let mut st = sh.lock();
        // Keep the sealer out while the key changes hands.
        while !st.sealer_idle {
            st = sh.seal_cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.sealer_idle = false;
        // The statement names the entry's own seq, so it is composed under the same lock.
        let seq = st.next_seq;
        let statement = verify::rotation_statement(old.name(), seq, &new_vkey);
        let body = json!({
            "old_key": old.verifier().to_string(),
            "new_key": new_vkey,
            "signature": B64.encode(old.sign_raw(statement.as_bytes())),
        });
        let queued = check_event(KEY_ROTATED, None, &body).and_then(|body| {
            check_open(&st)?;
            Ok(self.compose(&mut st, KEY_ROTATED, None, &body))
        });
        let receipt = match queued {
            Ok(r) => r,
            Err(e) => {
                st.sealer_idle = true;
                sh.seal_cv.notify_all();
                return Err(e);
            }
        };
        // Entries after the rotation carry the new key id; checkpoints from here on are signed
        // by the new key (valid from size seq + 1).
        st.key_id = new_key.verifier().id_hex();
        *sh.key.lock().unwrap_or_else(|p| p.into_inner()) = new_key.clone();
        let waited = self.await_durable(st, receipt.seq).map(|()| receipt);
        let res = waited.and_then(|receipt| {
            let (size, root) = sh.lock().to_seal;
            let mut cps = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            write_checkpoint(&sh.dir, &mut cps, &[&old, &new_key], size, root, true)
                .map(|()| (receipt, size))
        });
        let mut st = sh.lock();
        st.sealer_idle = true;
        if let Ok((_, size)) = &res {
            st.sealed = st.sealed.max(*size);
        }
        sh.seal_cv.notify_all();
        res.map(|(receipt, _)| receipt)
    }

    /// Stops accepting appends, waits for pending ones, and writes the final checkpoint with
    /// everything fsynced. Idempotent.
    pub fn close(&self) -> Result<(), JournalError> {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            self.shared.work.notify_all();
            self.shared.seal_cv.notify_all();
        }
        let threads: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let was_running = !threads.is_empty();
        for t in threads {
            let _ = t.join();
        }
        if let Some(f) = &self.shared.lock().failed {
            return Err(JournalError::Unavailable(f.clone()));
        }
        if was_running {
            self.seal_now(true)?;
        }
        Ok(())
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Journal for JournalWriter {
    fn append(
        &self,
        kind: &str,
        session: Option<&str>,
        body: Value,
    ) -> Result<AppendReceipt, JournalError> {
        self.append_inner(kind, session, &body)
    }

    fn append_batch(
        &self,
        events: &[(&str, Option<&str>, Value)],
    ) -> Result<Vec<AppendReceipt>, JournalError> {
        JournalWriter::append_batch(self, events)
    }
}

/// How long `open` keeps retrying a held lock. A lock held by a live writer (the daemon) is held
/// for its whole life; this only rides out a just-closed writer of this very process whose
/// descriptor a concurrently forked child still holds until it execs (flock locks belong to the
/// open file description, which fork shares).
const LOCK_RETRY_FOR: Duration = Duration::from_millis(1500);

/// Takes the exclusive single-writer lock on `entries.jsonl`, or says who holds it.
fn lock_single_writer(entries: &File, path: &Path) -> Result<(), JournalError> {
    let deadline = Instant::now() + LOCK_RETRY_FOR;
    loop {
        match entries.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Unavailable(format!(
                    "{} is locked by another writer (is the agp daemon running?)",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", path, e)),
        }
    }
}

/// Checks an event and returns its canonical body.
fn check_event(kind: &str, session: Option<&str>, body: &Value) -> Result<String, JournalError> {
    event::check_kind(kind).map_err(|e| JournalError::Refused(e.to_string()))?;
    if let Some(s) = session {
        event::check_session(s).map_err(|e| JournalError::Refused(e.to_string()))?;
    }
    event::canonical_body(body).map_err(|e| JournalError::Refused(e.to_string()))
}

fn check_open(st: &State) -> Result<(), JournalError> {
    if let Some(f) = &st.failed {
        return Err(JournalError::Unavailable(f.clone()));
    }
    if st.closing {
        return Err(JournalError::Unavailable("the journal is closed".into()));
    }
    Ok(())
}

/// Counts an appender in `Shared::arriving` from the moment it enters `append` until its
/// lines are queued (or refused), so that a lingering group leader knows it is coming. Only
/// group durability lingers, so only it counts.
struct Arrival<'a> {
    sh: &'a Shared,
    counted: bool,
}

impl<'a> Arrival<'a> {
    fn new(sh: &'a Shared) -> Self {
        let counted = sh.opts.durability == Durability::Group;
        if counted {
            sh.arriving.fetch_add(1, Ordering::AcqRel);
        }
        Self { sh, counted }
    }

    /// Stops counting, under the state lock (so a lingering leader, which checks the count
    /// under that lock, cannot miss the wake-up). Call it before queueing under the same guard.
    fn settle(mut self, st: &mut State) {
        self.leave(st);
    }

    fn leave(&mut self, st: &State) {
        if std::mem::take(&mut self.counted) {
            let before = self.sh.arriving.fetch_sub(1, Ordering::AcqRel);
            if before == 1 && st.lingering {
                self.sh.work.notify_all();
            }
        }
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        // Refused before reaching the lock.
        if self.counted {
            let st = self.sh.lock();
            self.leave(&st);
        }
    }
}

fn sealer(sh: Arc<Shared>, checkpoints: Arc<Mutex<CheckpointSink>>) {
    let mut last_seal: Option<Instant> = None;
    let mut st = sh.lock();
    loop {
        if st.failed.is_some() {
            break;
        }
        let pending = st.to_seal.0 > st.sealed && st.sealer_idle;
        if pending && !st.closing {
            if let Some(wait) =
                last_seal.and_then(|t| sh.opts.checkpoint_interval.checked_sub(t.elapsed()))
            {
                if !wait.is_zero() {
                    st = sh
                        .seal_cv
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
            }
        }
        if !pending {
            if st.closing
                && (st.buf_entries == 0 || st.failed.is_some())
                && st.durable == st.next_seq
            {
                break;
            }
            st = sh.seal_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let (size, root) = st.to_seal;
        st.sealer_idle = false;
        drop(st);
        let signer = sh.signer();
        let res = {
            let mut cps = checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            write_checkpoint(&sh.dir, &mut cps, &[&signer], size, root, false)
        };
        last_seal = Some(Instant::now());
        st = sh.lock();
        st.sealer_idle = true;
        match res {
            Ok(()) => st.sealed = st.sealed.max(size),
            Err(e) => st.failed = Some(format!("writing a checkpoint failed: {e}")),
        }
        if st.failed.is_some() {
            for (_, t) in std::mem::take(&mut st.waiters) {
                t.unpark();
            }
        }
        sh.seal_cv.notify_all();
    }
}

/// Where checkpoints go: the `checkpoints` file and the number of the next generation of the
/// published pair (see [`crate::pair`]).
struct CheckpointSink {
    file: File,
    next_generation: u64,
}

/// Appends a signed checkpoint to `checkpoints` and publishes it with its SSHSIG as the new
/// `checkpoint` and `checkpoint.sig` (one atomic step, see [`crate::pair`]). The SSHSIG is made
/// by the last key in `keys`.
fn write_checkpoint(
    dir: &Path,
    sink: &mut CheckpointSink,
    keys: &[&SignerKey],
    size: u64,
    root: Hash,
    sync: bool,
) -> Result<(), JournalError> {
    let last = keys.last().expect("at least one key");
    let cp = Checkpoint {
        origin: last.name().to_string(),
        size,
        root,
    };
    let text = cp.to_text();
    let mut note = format!("{text}\n");
    for k in keys {
        note.push_str(&k.signature_line(text.as_bytes()));
    }
    let sig = sshsig::sign(last, sshsig::CHECKPOINT_NAMESPACE, note.as_bytes());
    let cps_path = dir.join(CHECKPOINTS_FILE);
    sink.file
        .write_all(note.as_bytes())
        .map_err(|e| io_err("cannot append to", &cps_path, e))?;
    if sync {
        sink.file
            .sync_data()
            .map_err(|e| io_err("cannot sync", &cps_path, e))?;
    }
    // Each attempt takes a fresh number, so a failed one never shares a name with a later one.
    let generation = sink.next_generation;
    sink.next_generation += 1;
    crate::pair::publish(dir, generation, note.as_bytes(), sig.as_bytes(), sync)
}

/// `entries.jsonl.torn*` files in `dir` (other than `current`) whose content no
/// `journal.recovered` entry records, as `{file, bytes, sha256}`.
fn unrecorded_torn_files(
    dir: &Path,
    recorded: &[String],
    current: Option<&Path>,
) -> Result<Vec<Value>, JournalError> {
    let prefix = format!("{ENTRIES_FILE}.torn");
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err("cannot list", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
                && Some(p.as_path()) != current
        })
        .collect();
    names.sort();
    for p in names {
        let data = std::fs::read(&p).map_err(|e| io_err("cannot read", &p, e))?;
        let sha = agp_contracts::canonical::sha256_hex(&data);
        if !recorded.contains(&sha) {
            out.push(json!({
                "file": p.file_name().map(|n| n.to_string_lossy().into_owned()),
                "bytes": data.len(),
                "sha256": sha,
            }));
        }
    }
    Ok(out)
}

/// `base`, or `base.1`, `base.2`, ...: the first name not taken in `dir`.
fn free_name(dir: &Path, base: &str) -> PathBuf {
    let first = dir.join(base);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{base}.{n}")))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

/// Copies the bytes of `file` after `good_len` to a new file at `to` (fsynced), then truncates
/// `file` to `good_len` (fsynced).
fn move_tail_aside(file: &File, good_len: u64, to: &Path) -> Result<(), JournalError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut reader = file.try_clone().map_err(JournalError::Io)?;
    reader
        .seek(SeekFrom::Start(good_len))
        .map_err(JournalError::Io)?;
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).map_err(JournalError::Io)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| io_err("cannot create", to, e))?;
    out.write_all(&tail)
        .and_then(|()| out.sync_all())
        .map_err(|e| io_err("cannot write", to, e))?;
    file.set_len(good_len)
        .and_then(|()| file.sync_all())
        .map_err(JournalError::Io)?;
    if let Some(dir) = to.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot sync", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verify_dir;

    fn opts(key: &SignerKey) -> VerifyOptions {
        VerifyOptions {
            trusted_key: key.verifier().clone(),
            trusted_checkpoint: None,
        }
    }

    #[test]
    fn writer_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JournalWriter>();
        assert_send_sync::<Arc<dyn Journal>>();
    }

    #[test]
    fn appends_verify_and_reopen_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        assert!(w.open_summary().created);
        for i in 0..10 {
            let r = w
                .append("tool_call.requested", Some("s1"), json!({"i": i}))
                .unwrap();
            assert_eq!(r.seq, i + 1);
        }
        w.close().unwrap();
        drop(w);
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!((report.entries, report.sealed_size), (11, 11));

        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        assert_eq!(w.append("session.ended", None, json!({})).unwrap().seq, 11);
        w.close().unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn concurrent_entry_appends_are_all_durable_and_verify() {
        concurrent_appends(Durability::Entry);
    }

    #[test]
    fn concurrent_group_appends_are_all_durable_and_verify() {
        concurrent_appends(Durability::Group);
    }

    fn concurrent_appends(durability: Durability) {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let w = Arc::new(
            JournalWriter::open(
                dir.path(),
                key.clone(),
                JournalOptions::with_durability(durability),
            )
            .unwrap(),
        );
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            w.append("egress.allowed", Some("s"), json!({"t": t, "i": i}))
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        w.close().unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.entries, 401);
    }

    #[test]
    fn small_groups_cut_at_their_bound_and_every_checkpoint_verifies() {
        // Groups of 3 with batches of 2 from 12 threads: commits are cut mid-queue and batches
        // straddle the cuts; a checkpoint after every commit checks each cut's root.
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let jopts = JournalOptions {
            group_max_entries: 3,
            checkpoint_interval: Duration::ZERO,
            ..JournalOptions::with_durability(Durability::Group)
        };
        let w = Arc::new(JournalWriter::open(dir.path(), key.clone(), jopts).unwrap());
        let handles: Vec<_> = (0..12)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..20 {
                        let events = [
                            ("tool_call.requested", Some("s"), json!({"t": t, "i": i})),
                            ("policy.decided", Some("s"), json!({"t": t, "i": i})),
                        ];
                        let r = w.append_batch(&events).unwrap();
                        assert_eq!(r[1].seq, r[0].seq + 1, "a batch is consecutive");
                        seqs.extend(r.iter().map(|r| r.seq));
                    }
                    seqs
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=480).collect::<Vec<_>>());
        w.close().unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.entries, 481);
    }

    #[test]
    fn a_lone_group_append_does_not_wait_for_the_group_to_fill() {
        // With an hour's bound, an append that waited for company would never return.
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let jopts = JournalOptions {
            group_max_wait: Duration::from_secs(3600),
            ..JournalOptions::with_durability(Durability::Group)
        };
        let w = JournalWriter::open(dir.path(), key.clone(), jopts).unwrap();
        for i in 0..20 {
            assert_eq!(w.append("a.b", None, json!({"i": i})).unwrap().seq, i + 1);
            // Each append is durable when it returns, before the next one starts.
            assert_eq!(w.len(), i + 2);
        }
        let r = w
            .append_batch(&[("a.b", None, json!({})), ("a.c", Some("s"), json!({}))])
            .unwrap();
        assert_eq!((r[0].seq, r[1].seq), (21, 22));
        w.close().unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn a_batch_with_a_refused_event_appends_nothing() {
        for durability in [Durability::Entry, Durability::Group] {
            let dir = tempfile::tempdir().unwrap();
            let key = SignerKey::generate("agp.test/log").unwrap();
            let w = JournalWriter::open(
                dir.path(),
                key.clone(),
                JournalOptions::with_durability(durability),
            )
            .unwrap();
            let events = [
                ("tool_call.requested", Some("s"), json!({"ok": 1})),
                ("policy.decided", Some("s"), json!({"f": 0.5})),
            ];
            assert!(matches!(
                w.append_batch(&events),
                Err(JournalError::Refused(_))
            ));
            assert_eq!(w.len(), 1);
            assert!(w.append_batch(&[]).unwrap().is_empty());
            // Through the trait too (the daemon holds a `dyn Journal`).
            let dynw: &dyn Journal = &w;
            let r = dynw
                .append_batch(&[("a.b", None, json!({})), ("a.c", None, json!({}))])
                .unwrap();
            assert_eq!((r[0].seq, r[1].seq), (1, 2));
            w.close().unwrap();
            let text = std::fs::read_to_string(dir.path().join(ENTRIES_FILE)).unwrap();
            assert!(
                !text.contains("tool_call.requested"),
                "nothing of the refused batch"
            );
            let report = verify_dir(dir.path(), &opts(&key)).unwrap();
            assert!(report.findings.is_empty(), "{:?}", report.findings);
            assert_eq!(report.entries, 3);
        }
    }

    #[test]
    fn refuses_floats_second_writer_and_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        assert!(matches!(
            w.append("x.y", None, json!({"f": 0.5})),
            Err(JournalError::Refused(_))
        ));
        assert!(matches!(
            JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()),
            Err(JournalError::Unavailable(_))
        ));
        w.close().unwrap();
        drop(w);
        let other = SignerKey::generate("agp.test/log").unwrap();
        assert!(JournalWriter::open(dir.path(), other, JournalOptions::default()).is_err());
    }

    #[test]
    fn torn_tail_is_moved_aside_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        w.append("a.b", None, json!({})).unwrap();
        w.close().unwrap();
        drop(w);
        let entries = dir.path().join(ENTRIES_FILE);
        let mut f = OpenOptions::new().append(true).open(&entries).unwrap();
        f.write_all(b"{\"body\":{\"half").unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.intact);
        assert!(report.has(Code::TornTail));

        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        let s = w.open_summary().clone();
        assert_eq!(s.torn_bytes, 14);
        assert_eq!(
            std::fs::read(s.torn_file.unwrap()).unwrap(),
            b"{\"body\":{\"half"
        );
        assert_eq!(s.recovered_seq, Some(2));
        w.close().unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn refuses_to_extend_a_truncated_or_tampered_journal() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        for i in 0..5 {
            w.append("a.b", None, json!({"i": i})).unwrap();
        }
        w.close().unwrap();
        drop(w);
        let entries = dir.path().join(ENTRIES_FILE);
        let text = std::fs::read_to_string(&entries).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        // Shorter than its last checkpoint.
        std::fs::write(&entries, format!("{}\n", lines[..4].join("\n"))).unwrap();
        let err =
            JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        // An altered entry must not be laundered by a fresh signature.
        let altered = text.replace("{\"i\":2}", "{\"i\":7}");
        std::fs::write(&entries, altered).unwrap();
        let err =
            JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap_err();
        assert!(err.to_string().contains("fails verification"), "{err}");
        std::fs::write(&entries, &text).unwrap();
        JournalWriter::open(dir.path(), key, JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
    }

    #[test]
    fn a_damaged_latest_checkpoint_is_rewritten_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        JournalWriter::open(dir.path(), key.clone(), JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
        // Power loss after renaming an unsynced file: an empty checkpoint.
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"").unwrap();
        assert!(!verify_dir(dir.path(), &opts(&key)).unwrap().intact);
        JournalWriter::open(dir.path(), key.clone(), JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn torn_checkpoint_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        JournalWriter::open(dir.path(), key.clone(), JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
        let cps = dir.path().join(CHECKPOINTS_FILE);
        let mut f = OpenOptions::new().append(true).open(&cps).unwrap();
        f.write_all(b"agp.test/log\n9\n").unwrap();
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.intact && report.has(Code::TornCheckpoint));
        JournalWriter::open(dir.path(), key.clone(), JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("checkpoints.torn")).unwrap(),
            b"agp.test/log\n9\n"
        );
        let report = verify_dir(dir.path(), &opts(&key)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn a_torn_tail_moved_aside_but_never_journaled_is_journaled_on_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/log").unwrap();
        JournalWriter::open(dir.path(), key.clone(), JournalOptions::default())
            .unwrap()
            .close()
            .unwrap();
        // As if an open had moved a torn line aside and crashed before journaling it.
        std::fs::write(dir.path().join("entries.jsonl.torn"), b"{\"half").unwrap();
        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        assert_eq!(w.open_summary().recovered_seq, Some(1));
        w.close().unwrap();
        drop(w);
        let text = std::fs::read_to_string(dir.path().join(ENTRIES_FILE)).unwrap();
        let rec: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(rec["body"]["earlier_torn"][0]["bytes"], 6);
        // Recorded now: the next open has nothing to add.
        let w = JournalWriter::open(dir.path(), key, JournalOptions::default()).unwrap();
        assert_eq!(w.open_summary().recovered_seq, None);
    }

    #[test]
    fn rotation_hands_over_to_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = SignerKey::generate("agp.test/log").unwrap();
        let k2 = SignerKey::generate("agp.test/log").unwrap();
        let w = JournalWriter::open(dir.path(), k1.clone(), JournalOptions::default()).unwrap();
        w.append("a.b", None, json!({})).unwrap();
        assert_eq!(w.rotate(k2.clone()).unwrap().seq, 2);
        w.append("a.b", None, json!({})).unwrap();
        w.close().unwrap();
        drop(w);
        for trusted in [&k1, &k2] {
            let report = verify_dir(dir.path(), &opts(trusted)).unwrap();
            assert!(report.findings.is_empty(), "{:?}", report.findings);
            assert_eq!(report.keys.len(), 2);
            assert_eq!(report.keys[0].to_size, Some(3));
        }
        // The old key can no longer open the journal for writing.
        assert!(JournalWriter::open(dir.path(), k1, JournalOptions::default()).is_err());
        let w = JournalWriter::open(dir.path(), k2, JournalOptions::default()).unwrap();
        w.close().unwrap();
    }
}
