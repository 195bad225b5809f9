//! The witness: checks an add-checkpoint request as c2sp.org/tlog-witness requires and cosigns.

use std::collections::HashMap;

use agp_journal::checkpoint::Checkpoint;
use agp_journal::cosig::WitnessSigner;
use agp_journal::merkle::{self, empty_root};
use agp_journal::note::{parse_note, VerifierKey};

use crate::state::{StateError, StateStore};
use crate::{request, AddError};

/// A witness for a fixed set of logs.
pub struct Witness {
    signer: WitnessSigner,
    /// Trusted keys per log origin.
    logs: HashMap<String, Vec<VerifierKey>>,
    store: Box<dyn StateStore>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// A witness signing with `signer` for the logs whose keys are given (a log's origin is its
    /// key's name), keeping its state in `store`.
    pub fn new(signer: WitnessSigner, logs: &[VerifierKey], store: Box<dyn StateStore>) -> Self {
        let mut map: HashMap<String, Vec<VerifierKey>> = HashMap::new();
        for k in logs {
            map.entry(k.name().to_string()).or_default().push(k.clone());
        }
        Self {
            signer,
            logs: map,
            store,
            clock: Box::new(unix_now),
        }
    }

    /// Replaces the clock (POSIX seconds), for tests.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn signer(&self) -> &WitnessSigner {
        &self.signer
    }

    /// The origins of the logs this witness knows.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// The latest checkpoint this witness cosigned for `origin`, with its cosignature.
    pub fn latest(&self, origin: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.store.latest(origin)
    }

    /// Handles one add-checkpoint request body; on success, the cosignature lines to return.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, AddError> {
        let req = request::parse(body).map_err(AddError::BadRequest)?;
        let parsed = parse_note(req.note)
            .map_err(|e| AddError::BadRequest(format!("the checkpoint: {e}")))?;
        let cp = Checkpoint::parse_text(parsed.text)
            .map_err(|e| AddError::BadRequest(format!("the checkpoint: {e}")))?;
        let keys = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| AddError::UnknownLog(cp.origin.clone()))?;
        check_log_signature(keys, parsed.text, &parsed.signatures)?;
        if req.old_size > cp.size {
            return Err(AddError::BadRequest(format!(
                "old size {} is larger than the checkpoint's size {}",
                req.old_size, cp.size
            )));
        }
        if cp.size == 0 && cp.root != empty_root() {
            return Err(AddError::Unprocessable(
                "a checkpoint of size 0 must have the empty tree's root".into(),
            ));
        }
        let text = parsed.text;
        let mut line = String::new();
        self.store.update(&cp.origin, &mut |current| {
            let (stored_size, stored_root) = match current {
                None => (0, empty_root()),
                Some(note) => {
                    let p = parse_note(note).map_err(|e| {
                        AddError::Internal(format!("the stored checkpoint is unreadable: {e}"))
                    })?;
                    let c = Checkpoint::parse_text(p.text).map_err(|e| {
                        AddError::Internal(format!("the stored checkpoint is unreadable: {e}"))
                    })?;
                    (c.size, c.root)
                }
            };
            if req.old_size != stored_size {
                return Err(AddError::Conflict(stored_size));
            }
            merkle::verify_consistency(
                stored_size,
                cp.size,
                &stored_root,
                &cp.root,
                &req.proof,
            )
            .map_err(|e| {
                AddError::Unprocessable(format!(
                    "the checkpoint of size {} is not consistent with the one cosigned at size {stored_size}: {e}",
                    cp.size
                ))
            })?;
            let ts = (self.clock)();
            line = self.signer.cosign(text, ts);
            // What the monitoring endpoint serves: the checkpoint with the log signatures it
            // was verified with, and this witness's cosignature.
            let mut stored = req.note.to_vec();
            stored.extend_from_slice(line.as_bytes());
            Ok(Some(stored))
        })?;
        Ok(line)
    }
}

/// 403 unless a trusted key signed the text; also 403 when a line that names a trusted key
/// (name and key id) does not verify (the note is malformed, per signed-note).
fn check_log_signature(
    keys: &[VerifierKey],
    text: &[u8],
    sigs: &[agp_journal::note::NoteSignature],
) -> Result<(), AddError> {
    let mut ok = false;
    for s in sigs {
        for k in keys {
            if s.name == k.name() && s.id == k.id() {
                if k.verify_raw(text, &s.sig) {
                    ok = true;
                } else {
                    return Err(AddError::Forbidden(format!(
                        "the signature by {} (key id {}) does not verify",
                        k.name(),
                        k.id_hex()
                    )));
                }
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(AddError::Forbidden(
            "no signature by a key this witness trusts for the log".into(),
        ))
    }
}
