//! Opening a journal: locking, verifying what is there, recovering a torn tail, and
//! continuing the chain.

use super::*;

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
            .map_err(|e| io_err("cannot create journal folder", dir, &e))?;
        let entries_path = dir.join(ENTRIES_FILE);
        let entries = open_private_log(&entries_path)?;
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
        let checkpoints = open_private_log(&cps_path)?;
        if report.tail.checkpoints_torn {
            let torn_path = free_name(dir, &format!("{CHECKPOINTS_FILE}.torn"));
            move_tail_aside(&checkpoints, report.tail.checkpoints_good_len, &torn_path)?;
        }
        summary.unsealed = report.entries - report.sealed_size.min(report.entries);

        let key_id = key.verifier().id_hex();
        let state = State {
            chain: Chain {
                next_seq: report.entries,
                prev: report.tail.last_leaf.unwrap_or([0; 32]),
                frontier: report.tail.frontier.clone(),
                key_id,
            },
            queue: Queue {
                buf: Vec::with_capacity(64 * 1024),
                buf_entries: 0,
                buf_since: None,
                spare: Vec::with_capacity(64 * 1024),
                marks: VecDeque::new(),
            },
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
            .map_err(|e| io_err("cannot open", &entries_path, &e))?;
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
                .spawn(move || sealer(&shared, &cps))
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
            let created = JournalCreated {
                origin: signer.name().to_owned(),
                key: signer.verifier().to_string(),
            };
            me.append_inner(JournalCreated::KIND, None, &created.to_body())?;
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

    pub(super) fn journal_recovery(
        &self,
        unsealed_from: u64,
        orphans: Vec<TornTail>,
    ) -> Result<AppendReceipt, JournalError> {
        {
            let mut body = JournalRecovered {
                unsealed_from,
                unsealed_entries: self.summary.unsealed,
                torn_bytes: self.summary.torn_bytes,
                earlier_torn: (!orphans.is_empty()).then_some(orphans),
                torn_file: None,
                torn_sha256: None,
            };
            if let Some(p) = &self.summary.torn_file {
                let torn = std::fs::read(p).map_err(|e| io_err("cannot read", p, &e))?;
                body.torn_file = Some(p.file_name().map(|n| n.to_string_lossy().into_owned()));
                body.torn_sha256 = Some(agp_contracts::canonical::sha256_hex(&torn));
            }
            self.append_inner(JournalRecovered::KIND, None, &body.to_body())
        }
    }
}

/// How long `open` keeps retrying a held lock. A lock held by a live writer (the daemon) is held
/// for its whole life; this only rides out a just-closed writer of this very process whose
/// descriptor a concurrently forked child still holds until it execs (flock locks belong to the
/// open file description, which fork shares).
/// An append-only journal file, created readable by its owner only.
fn open_private_log(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("cannot open", path, &e))
}

pub(super) const LOCK_RETRY_FOR: Duration = Duration::from_millis(1500);

/// Takes the exclusive single-writer lock on `entries.jsonl`, or says who holds it.
pub(super) fn lock_single_writer(entries: &File, path: &Path) -> Result<(), JournalError> {
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
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", path, &e)),
        }
    }
}

/// `entries.jsonl.torn*` files in `dir` (other than `current`) whose content no
/// `journal.recovered` entry records, as `{file, bytes, sha256}`.
pub(super) fn unrecorded_torn_files(
    dir: &Path,
    recorded: &[String],
    current: Option<&Path>,
) -> Result<Vec<TornTail>, JournalError> {
    let prefix = format!("{ENTRIES_FILE}.torn");
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err("cannot list", dir, &e))?
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
        let data = std::fs::read(&p).map_err(|e| io_err("cannot read", &p, &e))?;
        let sha = agp_contracts::canonical::sha256_hex(&data);
        if !recorded.contains(&sha) {
            out.push(TornTail {
                file: p.file_name().map(|n| n.to_string_lossy().into_owned()),
                bytes: data.len() as u64,
                sha256: sha,
            });
        }
    }
    Ok(out)
}

/// `base`, or `base.1`, `base.2`, ...: the first name not taken in `dir`.
pub(super) fn free_name(dir: &Path, base: &str) -> PathBuf {
    let first = dir.join(base);
    if !first.exists() {
        return first;
    }
    let mut n = 1u64;
    loop {
        let p = dir.join(format!("{base}.{n}"));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// Copies the bytes of `file` after `good_len` to a new file at `to` (fsynced), then truncates
/// `file` to `good_len` (fsynced).
pub(super) fn move_tail_aside(file: &File, good_len: u64, to: &Path) -> Result<(), JournalError> {
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
        .map_err(|e| io_err("cannot create", to, &e))?;
    out.write_all(&tail)
        .and_then(|()| out.sync_all())
        .map_err(|e| io_err("cannot write", to, &e))?;
    file.set_len(good_len)
        .and_then(|()| file.sync_all())
        .map_err(JournalError::Io)?;
    if let Some(dir) = to.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot sync", dir, &e))?;
    }
    Ok(())
}
