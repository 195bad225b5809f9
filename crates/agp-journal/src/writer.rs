//! The single journal writer of an agp home.
//!
//! Appenders compose their line under one short lock (seq, prev, Merkle frontier), hand it to
//! a committer thread and wait. The committer writes everything pending in one `write` on an
//! `O_APPEND` file and makes it durable with one `fdatasync`; in `group` mode it first waits
//! up to 2 ms or until 64 entries are pending. Only then are the appenders released. A sealer
//! thread signs a checkpoint for the latest durable size after each commit, coalescing when it
//! falls behind, so signing never sits between an append and its fsync. A checkpoint is only
//! ever written for entries that are already durable.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
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
use crate::{CHECKPOINTS_FILE, CHECKPOINT_FILE, ENTRIES_FILE, SSHSIG_FILE};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fdatasync before each append returns (concurrent appends may share one fdatasync).
    #[default]
    Entry,
    /// Batch up to `group_max_entries` or `group_max_wait`, then one fdatasync and one checkpoint.
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
    pub group_max_entries: usize,
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
}

struct State {
    next_seq: u64,
    prev: Hash,
    frontier: Frontier,
    key_id: String,
    /// Lines composed and not yet taken by the committer.
    buf: Vec<u8>,
    buf_entries: usize,
    buf_since: Option<Instant>,
    durable: u64,
    /// Appenders waiting for the lines in `buf` to become durable (woken one by one with
    /// `unpark`, so a commit does not make all of them fight for this lock).
    waiters: Vec<std::thread::Thread>,
    committer: CommitterState,
    /// Entry durability: an appender is writing and syncing (the leader of the current batch).
    committing: bool,
    /// Latest durable (size, root), for the sealer.
    to_seal: (u64, Hash),
    sealed: u64,
    failed: Option<String>,
    closing: bool,
    sealer_idle: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CommitterState {
    /// Waiting for a first entry.
    Idle,
    /// Group mode: waiting for the group to fill or its time to run out.
    Filling,
    /// Writing and syncing: it looks at the queue again when done.
    Busy,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Mirrors `State::durable` so waiting appenders can check it without the lock.
    durable: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicBool,
    seal_cv: Condvar,
    opts: JournalOptions,
    /// The O_APPEND handle lines are written through (one writer at a time: the committer
    /// thread in group mode, the leading appender in entry mode).
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
    checkpoints: Arc<Mutex<File>>,
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
        match entries.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Unavailable(format!(
                    "{} is locked by another writer (is the agp daemon running?)",
                    entries_path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err("cannot lock", &entries_path, e))
            }
        }

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
            durable: report.entries,
            waiters: Vec::new(),
            committer: CommitterState::Idle,
            committing: false,
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
            durable: std::sync::atomic::AtomicU64::new(report.entries),
            failed: std::sync::atomic::AtomicBool::new(false),
            seal_cv: Condvar::new(),
            opts,
            file: Mutex::new(writer_file),
            dir: dir.to_path_buf(),
            key: Mutex::new(Arc::new(key)),
        });
        let checkpoints = Arc::new(Mutex::new(checkpoints));
        let mut threads = Vec::new();
        if shared.opts.durability == Durability::Group {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("agp-journal-commit".into())
                    .spawn(move || committer(shared))
                    .map_err(JournalError::Io)?,
            );
        }
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
        event::check_kind(kind).map_err(|e| JournalError::Refused(e.to_string()))?;
        if let Some(s) = session {
            event::check_session(s).map_err(|e| JournalError::Refused(e.to_string()))?;
        }
        let body = event::canonical_body(body).map_err(|e| JournalError::Refused(e.to_string()))?;
        let st = self.shared.lock();
        let (st, receipt) = self.enqueue(st, kind, session, &body)?;
        self.await_durable(st, receipt)
    }

    fn await_durable<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        receipt: AppendReceipt,
    ) -> Result<AppendReceipt, JournalError> {
        if self.shared.opts.durability == Durability::Entry {
            self.commit_or_follow(st, receipt)
        } else {
            drop(st);
            self.wait_durable(receipt)
        }
    }

    /// Entry durability without a hand-off: the first appender to find no commit running
    /// writes and syncs everything queued (its own line and any that arrived meanwhile), then
    /// releases the others; they either find their line durable or lead the next commit. A
    /// single appender thus pays one fdatasync and no thread switches per entry.
    fn commit_or_follow<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        receipt: AppendReceipt,
    ) -> Result<AppendReceipt, JournalError> {
        use std::sync::atomic::Ordering;
        let sh = &*self.shared;
        loop {
            if st.durable > receipt.seq {
                return Ok(receipt);
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
            let buf = std::mem::take(&mut st.buf);
            let batch = std::mem::take(&mut st.waiters);
            st.buf_entries = 0;
            st.buf_since = None;
            let end = st.next_seq;
            let frontier = st.frontier.clone();
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
                    sh.durable.store(end, Ordering::Release);
                    st.to_seal = (end, root);
                    sh.seal_cv.notify_all();
                }
                Err(e) => {
                    st.failed = Some(format!("journal write failed: {e}; reopen the journal"));
                    sh.failed.store(true, Ordering::Release);
                }
            }
            // Release this batch, and wake those queued meanwhile so one of them leads the
            // next commit (they stay registered until a commit covers them).
            let me = std::thread::current().id();
            let wake: Vec<std::thread::Thread> = batch
                .into_iter()
                .chain(st.waiters.iter().cloned())
                .filter(|t| t.id() != me)
                .collect();
            drop(st);
            for t in wake {
                t.unpark();
            }
            st = sh.lock();
        }
    }

    /// Composes the next line under the lock and hands it to the committer.
    fn enqueue<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        kind: &str,
        session: Option<&str>,
        body: &str,
    ) -> Result<(MutexGuard<'a, State>, AppendReceipt), JournalError> {
        if let Some(f) = &st.failed {
            return Err(JournalError::Unavailable(f.clone()));
        }
        if st.closing {
            return Err(JournalError::Unavailable("the journal is closed".into()));
        }
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
        st.waiters.push(std::thread::current());
        // Wake the committer only when it waits for exactly this: every futex wake is a syscall
        // and often a context switch.
        let wake = match st.committer {
            // Entry durability has no committer thread: appenders commit themselves.
            _ if self.shared.opts.durability == Durability::Entry => false,
            CommitterState::Idle => true,
            CommitterState::Filling => st.buf_entries >= self.shared.opts.group_max_entries,
            CommitterState::Busy => false,
        };
        if wake {
            self.shared.work.notify_one();
        }
        Ok((
            st,
            AppendReceipt {
                seq,
                leaf_hash: leaf,
            },
        ))
    }

    fn wait_durable(&self, receipt: AppendReceipt) -> Result<AppendReceipt, JournalError> {
        use std::sync::atomic::Ordering;
        let sh = &*self.shared;
        loop {
            if sh.durable.load(Ordering::Acquire) > receipt.seq {
                return Ok(receipt);
            }
            if sh.failed.load(Ordering::Acquire) {
                let msg = sh.lock().failed.clone().unwrap_or_default();
                return Err(JournalError::Unavailable(msg));
            }
            // The committer unparks every waiter of a batch after its fdatasync; a stray
            // wake-up just loops.
            std::thread::park();
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
        let body =
            event::canonical_body(&body).map_err(|e| JournalError::Refused(e.to_string()))?;
        let enqueued = self.enqueue(st, KEY_ROTATED, None, &body);
        let (mut st, receipt) = match enqueued {
            Ok(x) => x,
            Err(e) => {
                let mut st = sh.lock();
                st.sealer_idle = true;
                sh.seal_cv.notify_all();
                return Err(e);
            }
        };
        // Entries after the rotation carry the new key id; checkpoints from here on are signed
        // by the new key (valid from size seq + 1).
        st.key_id = new_key.verifier().id_hex();
        *sh.key.lock().unwrap_or_else(|p| p.into_inner()) = new_key.clone();
        let waited = self.await_durable(st, receipt);
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
}

fn committer(sh: Arc<Shared>) {
    use std::sync::atomic::Ordering;
    let group = sh.opts.durability == Durability::Group;
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut st = sh.lock();
    loop {
        if st.failed.is_some() {
            break;
        }
        if st.buf_entries == 0 {
            if st.closing {
                break;
            }
            st.committer = CommitterState::Idle;
            st = sh.work.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        if group && !st.closing && st.buf_entries < sh.opts.group_max_entries {
            let since = st.buf_since.unwrap_or_else(Instant::now);
            let waited = since.elapsed();
            if waited < sh.opts.group_max_wait {
                st.committer = CommitterState::Filling;
                let (g, _) = sh
                    .work
                    .wait_timeout(st, sh.opts.group_max_wait - waited)
                    .unwrap_or_else(|p| p.into_inner());
                st = g;
                continue;
            }
        }
        st.committer = CommitterState::Busy;
        std::mem::swap(&mut st.buf, &mut spare);
        let waiters = std::mem::take(&mut st.waiters);
        st.buf_entries = 0;
        st.buf_since = None;
        let end = st.next_seq;
        let frontier = st.frontier.clone();
        drop(st);

        let res = {
            let mut file = sh.file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(&spare).and_then(|()| file.sync_data())
        };
        spare.clear();
        let root = frontier.root();

        st = sh.lock();
        match res {
            Ok(()) => {
                st.durable = end;
                sh.durable.store(end, Ordering::Release);
                st.to_seal = (end, root);
                sh.seal_cv.notify_all();
            }
            Err(e) => {
                // The in-memory chain is ahead of the file now: refuse everything until reopened.
                st.failed = Some(format!("journal write failed: {e}; reopen the journal"));
                sh.failed.store(true, Ordering::Release);
            }
        }
        drop(st);
        for t in waiters {
            t.unpark();
        }
        st = sh.lock();
    }
    // Nobody will commit what is still queued: release its appenders with the failure.
    if st.failed.is_none() && !st.waiters.is_empty() {
        st.failed = Some("the journal stopped before committing".into());
    }
    if st.failed.is_some() {
        sh.failed.store(true, Ordering::Release);
    }
    let waiters = std::mem::take(&mut st.waiters);
    drop(st);
    for t in waiters {
        t.unpark();
    }
    sh.seal_cv.notify_all();
}

fn sealer(sh: Arc<Shared>, checkpoints: Arc<Mutex<File>>) {
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
            sh.failed.store(true, std::sync::atomic::Ordering::Release);
            for t in std::mem::take(&mut st.waiters) {
                t.unpark();
            }
        }
        sh.seal_cv.notify_all();
    }
}

/// Appends a signed checkpoint to `checkpoints` and replaces `checkpoint` and `checkpoint.sig`.
/// The SSHSIG is made by the last key in `keys`.
fn write_checkpoint(
    dir: &Path,
    checkpoints: &mut File,
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
    checkpoints
        .write_all(note.as_bytes())
        .map_err(|e| io_err("cannot append to", &cps_path, e))?;
    if sync {
        checkpoints
            .sync_data()
            .map_err(|e| io_err("cannot sync", &cps_path, e))?;
    }
    replace_file(dir, SSHSIG_FILE, sig.as_bytes(), sync)?;
    replace_file(dir, CHECKPOINT_FILE, note.as_bytes(), sync)?;
    if sync {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot sync", dir, e))?;
    }
    Ok(())
}

fn replace_file(dir: &Path, name: &str, data: &[u8], sync: bool) -> Result<(), JournalError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err("cannot write", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        .map_err(|e| io_err("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err("cannot replace", &path, e))
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
