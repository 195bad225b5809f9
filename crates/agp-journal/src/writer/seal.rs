//! Sealing: signed checkpoints written by the sealer thread or on demand, key rotation and
//! close.

use super::*;

impl JournalWriter {
    /// Waits until the sealer is idle, then writes a checkpoint for the durable size
    /// synchronously (fsyncing the checkpoint files when `sync`).
    pub(super) fn seal_now(&self, sync: bool) -> Result<(), JournalError> {
        let sh = &*self.shared;
        let (size, root) = {
            let mut st = sh.sealer_idle(sh.lock());
            if let Some(f) = &st.failed {
                return Err(JournalError::Unavailable(f.clone()));
            }
            st.sealer_idle = false;
            st.to_seal
        };
        let signer = sh.signer();
        let res = {
            let mut cps = self
                .checkpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            write_checkpoint(&sh.dir, &mut cps, None, &signer, size, root, sync)
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
        // Keep the sealer out while the key changes hands.
        let mut st = sh.sealer_idle(sh.lock());
        st.sealer_idle = false;
        // The statement names the entry's own seq, so it is composed under the same lock.
        let seq = st.chain.next_seq;
        let statement = verify::rotation_statement(old.name(), seq, &new_vkey);
        let body = KeyRotated {
            old_key: old.verifier().to_string(),
            new_key: new_vkey,
            signature: B64.encode(old.sign_raw(statement.as_bytes())),
        }
        .to_body();
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
        st.chain.key_id = new_key.verifier().id_hex();
        *sh.key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new_key.clone();
        let waited = self.await_durable(st, receipt.seq).map(|()| receipt);
        let res = waited.and_then(|receipt| {
            let (size, root) = sh.lock().to_seal;
            let mut cps = self
                .checkpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            write_checkpoint(&sh.dir, &mut cps, Some(&old), &new_key, size, root, true)
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
        let threads: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
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

pub(super) fn sealer(sh: &Shared, checkpoints: &Mutex<CheckpointSink>) {
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
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                    continue;
                }
            }
        }
        if !pending {
            if st.closing
                && (st.queue.buf_entries == 0 || st.failed.is_some())
                && st.durable == st.chain.next_seq
            {
                break;
            }
            st = sh
                .seal_cv
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            continue;
        }
        let (size, root) = st.to_seal;
        st.sealer_idle = false;
        drop(st);
        let signer = sh.signer();
        let res = {
            let mut cps = checkpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            write_checkpoint(&sh.dir, &mut cps, None, &signer, size, root, false)
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
pub(super) struct CheckpointSink {
    pub(super) file: File,
    pub(super) next_generation: u64,
}

/// Appends a signed checkpoint to `checkpoints` and publishes it with its SSHSIG as the new
/// `checkpoint` and `checkpoint.sig` (one atomic step, see [`crate::pair`]). The note is signed
/// by `signer`, after `retiring` when a rotation has both sign; the SSHSIG by `signer` alone.
pub(super) fn write_checkpoint(
    dir: &Path,
    sink: &mut CheckpointSink,
    retiring: Option<&SignerKey>,
    signer: &SignerKey,
    size: u64,
    root: Hash,
    sync: bool,
) -> Result<(), JournalError> {
    let cp = Checkpoint {
        origin: signer.name().to_string(),
        size,
        root,
    };
    let text = cp.to_text();
    let mut note = format!("{text}\n");
    for k in retiring.into_iter().chain([signer]) {
        note.push_str(&k.signature_line(text.as_bytes()));
    }
    let sig = sshsig::sign(signer, sshsig::CHECKPOINT_NAMESPACE, note.as_bytes());
    let cps_path = dir.join(CHECKPOINTS_FILE);
    sink.file
        .write_all(note.as_bytes())
        .map_err(|e| io_err("cannot append to", &cps_path, &e))?;
    if sync {
        sink.file
            .sync_data()
            .map_err(|e| io_err("cannot sync", &cps_path, &e))?;
    }
    // Each attempt takes a fresh number, so a failed one never shares a name with a later one.
    let generation = sink.next_generation;
    sink.next_generation += 1;
    crate::pair::publish(dir, generation, note.as_bytes(), sig.as_bytes(), sync)
}
