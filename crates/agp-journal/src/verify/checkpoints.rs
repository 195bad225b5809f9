//! Checking stored, latest and trusted checkpoints as the stream reaches their sizes.

use super::*;

impl Verifier {
    pub(super) fn new(
        trusted_key: VerifierKey,
        trusted_cp: Option<(Checkpoint, Option<Vec<u8>>)>,
    ) -> Self {
        Self {
            trusted_key,
            trusted_cp,
            frontier: Frontier::new(),
            chain: Chain::default(),
            keys: Vec::new(),
            active_id_hex: String::new(),
            findings: Vec::new(),
            more_findings: 0,
            root_mismatch_reported: false,
            truncated_reported: false,
            stored: Stored::default(),
            published: Published::default(),
            next_check: 0,
            sealed_size: 0,
            sealed_key: None,
            tail: Tail::default(),
        }
    }

    pub(super) fn report(
        &mut self,
        code: Code,
        seq: Option<u64>,
        line: Option<u64>,
        checkpoint: Option<&str>,
        size: Option<u64>,
        message: String,
    ) {
        if self.findings.len() >= MAX_FINDINGS {
            self.more_findings += 1;
            return;
        }
        self.findings.push(Finding {
            code,
            severity: code.severity(),
            seq,
            line,
            checkpoint: checkpoint.map(str::to_string),
            size,
            message,
        });
    }

    pub(super) fn entry_finding(&mut self, code: Code, pos: u64, message: String) {
        self.report(code, Some(pos), Some(pos + 1), None, None, message);
    }

    pub(super) fn set_latest(&mut self, latest: Option<Vec<u8>>, sig: Option<Vec<u8>>) {
        self.published.latest_sig = sig;
        match latest {
            None => self.published.latest_missing = true,
            Some(note) => match parse_checkpoint_unverified(&note) {
                Ok(cp) => {
                    self.published.latest = Some(Pending {
                        label: CHECKPOINT_FILE.to_string(),
                        note,
                        cp,
                    });
                }
                Err(msg) => self.report(
                    Code::CheckpointMalformed,
                    None,
                    None,
                    Some(CHECKPOINT_FILE),
                    None,
                    msg,
                ),
            },
        }
        self.recompute_next_check();
    }

    pub(super) fn load_next_stored(&mut self) -> Result<(), VerifyError> {
        self.stored.next_stored = None;
        while let Some(reader) = self.stored.notes.as_mut() {
            let item = reader.next_note().map_err(|source| VerifyError::Io {
                path: PathBuf::from(CHECKPOINTS_FILE),
                source,
            })?;
            match item {
                None => {
                    self.tail.checkpoints_good_len = reader.good_len;
                    self.stored.notes = None;
                }
                Some(NoteItem::Torn(bytes)) => {
                    self.tail.checkpoints_good_len = reader.good_len;
                    self.tail.checkpoints_torn = true;
                    self.stored.notes = None;
                    self.report(
                        Code::TornCheckpoint,
                        None,
                        None,
                        Some(&format!("checkpoints#{}", self.stored.stored_count + 1)),
                        None,
                        format!(
                            "the last stored checkpoint is incomplete ({} bytes): a crash interrupted its write",
                            bytes.len()
                        ),
                    );
                }
                Some(NoteItem::Note(note)) => {
                    self.stored.stored_count += 1;
                    let label = format!("checkpoints#{}", self.stored.stored_count);
                    match parse_checkpoint_unverified(&note) {
                        Err(msg) => self.report(
                            Code::CheckpointMalformed,
                            None,
                            None,
                            Some(&label),
                            None,
                            msg,
                        ),
                        Ok(cp) => {
                            self.tail.max_checkpoint_size =
                                self.tail.max_checkpoint_size.max(cp.size);
                            if let Some(last) = self.stored.last_stored_size {
                                if cp.size < last {
                                    self.report(
                                        Code::SizeDecreased,
                                        None,
                                        None,
                                        Some(&label),
                                        Some(cp.size),
                                        format!("tree size {} is smaller than the previous checkpoint's {last}", cp.size),
                                    );
                                    continue;
                                }
                            }
                            if cp.size < self.frontier.size() {
                                // Only reachable after a size decrease was skipped.
                                continue;
                            }
                            self.stored.last_stored_size = Some(cp.size);
                            self.stored.next_stored = Some(Pending { label, note, cp });
                            break;
                        }
                    }
                }
            }
        }
        self.recompute_next_check();
        Ok(())
    }

    pub(super) fn recompute_next_check(&mut self) {
        let mut next = u64::MAX;
        for p in [&self.stored.next_stored, &self.published.latest]
            .into_iter()
            .flatten()
        {
            next = next.min(p.cp.size);
        }
        if let Some((t, _)) = &self.trusted_cp {
            next = next.min(t.size);
        }
        self.next_check = next;
    }

    /// Runs every check due at the current tree size.
    pub(super) fn check_at_size(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        while let Some(p) = self.stored.next_stored.take_if(|p| p.cp.size == size) {
            if let Some(k) = self.check_signed(&p, true) {
                if size >= self.sealed_size {
                    self.sealed_size = size;
                    self.sealed_key = Some(self.sealed_key.map_or(k, |s| s.max(k)));
                }
                self.stored.newest_valid_stored = Some((self.stored.stored_count, p));
            }
            self.load_next_stored()?;
        }
        if let Some(p) = self.published.latest.take_if(|p| p.cp.size == size) {
            if let Some(k) = self.check_signed(&p, true) {
                if size >= self.sealed_size {
                    self.sealed_size = size;
                    self.sealed_key = Some(self.sealed_key.map_or(k, |s| s.max(k)));
                }
                self.check_sshsig(&p, k);
            }
            if let Some(last) = self.stored.last_stored_size {
                if p.cp.size < last {
                    self.report(
                        Code::StaleCheckpoint,
                        None,
                        None,
                        Some(CHECKPOINT_FILE),
                        Some(p.cp.size),
                        format!(
                            "it is for size {} but checkpoints holds one for {last}",
                            p.cp.size
                        ),
                    );
                }
            }
        }
        if let Some((t, unverified)) = self.trusted_cp.take_if(|(t, _)| t.size == size) {
            if !self.trusted_signature_ok(&t, unverified) {
                // check_signature reported why.
            } else if t.root != self.frontier.root() {
                self.report(
                    Code::Forked,
                    None,
                    None,
                    Some("trusted checkpoint"),
                    Some(size),
                    format!(
                        "at size {size} the journal's root is {} but the trusted checkpoint says {}: the history was rewritten",
                        B64.encode(self.frontier.root()),
                        B64.encode(t.root)
                    ),
                );
            }
        }
        self.recompute_next_check();
        Ok(())
    }

    /// Signature, origin and root of one checkpoint at the current size. Returns the index of
    /// the key range whose signature verified when everything holds.
    pub(super) fn check_signed(&mut self, p: &Pending, compare_root: bool) -> Option<usize> {
        let size = p.cp.size;
        let k = self.check_signature(p)?;
        if p.cp.origin != self.trusted_key.name() {
            self.report(
                Code::OriginMismatch,
                None,
                None,
                Some(&p.label),
                Some(size),
                format!(
                    "origin {:?} is not the trusted log {:?}",
                    p.cp.origin,
                    self.trusted_key.name()
                ),
            );
            return None;
        }
        if compare_root && p.cp.root != self.frontier.root() {
            if !self.root_mismatch_reported {
                self.root_mismatch_reported = true;
                self.report(
                    Code::RootMismatch,
                    None,
                    None,
                    Some(&p.label),
                    Some(size),
                    format!(
                        "the signed root for size {size} differs from the root of the first {size} entries: an entry below {size} was altered"
                    ),
                );
            }
            return None;
        }
        Some(k)
    }

    pub(super) fn check_signature(&mut self, p: &Pending) -> Option<usize> {
        let size = p.cp.size;
        let parsed = match parse_note(&p.note) {
            Ok(n) => n,
            Err(e) => {
                self.report(
                    Code::CheckpointMalformed,
                    None,
                    None,
                    Some(&p.label),
                    Some(size),
                    e.to_string(),
                );
                return None;
            }
        };
        let fallback;
        let ranges: Vec<(usize, &VerifierKey)> = if self.keys.is_empty() {
            fallback = [self.trusted_key.clone()];
            vec![(0, &fallback[0])]
        } else {
            self.keys
                .iter()
                .enumerate()
                .filter(|(_, r)| r.covers(size))
                .map(|(i, r)| (i, r.verifier()))
                .collect()
        };
        let mut matched = false;
        let mut best = None;
        for sig in &parsed.signatures {
            for (i, key) in &ranges {
                if sig.name == key.name() && sig.id == key.id() {
                    matched = true;
                    if key.verify_raw(parsed.text, &sig.sig) {
                        best = Some(best.map_or(*i, |b: usize| b.max(*i)));
                    }
                }
            }
        }
        if best.is_none() {
            let ids: Vec<String> = ranges.iter().map(|(_, k)| k.id_hex()).collect();
            let (code, msg) = if matched {
                (
                    Code::BadSignature,
                    format!("the signature by key {} does not verify", ids.join(", ")),
                )
            } else {
                (
                    Code::WrongKey,
                    format!(
                        "no signature by a key valid for size {size} (expected key id {})",
                        ids.join(" or ")
                    ),
                )
            };
            self.report(code, None, None, Some(&p.label), Some(size), msg);
        }
        best
    }

    pub(super) fn check_sshsig(&mut self, p: &Pending, key_index: usize) {
        let Some(sig) = self.published.latest_sig.take() else {
            self.report(
                Code::MissingSshsig,
                None,
                None,
                Some(SSHSIG_FILE),
                Some(p.cp.size),
                "checkpoint.sig is missing (auditors without agp use it)".into(),
            );
            return;
        };
        let key = if self.keys.is_empty() {
            self.trusted_key.clone()
        } else {
            self.keys[key_index].verifier().clone()
        };
        let res = std::str::from_utf8(&sig)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|s| {
                sshsig::verify(s, &key, sshsig::CHECKPOINT_NAMESPACE, &p.note)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = res {
            self.published.sshsig_mismatch = Some((sig, p.note.clone(), p.cp.size, e));
        }
    }

    /// A `checkpoint.sig` that does not match `checkpoint` is tampering, unless it is exactly
    /// what a writer of the earlier two-file layout leaves when killed between its two
    /// renames (the SSHSIG replaced first): a valid SSHSIG over the newest stored checkpoint,
    /// which is newer than `checkpoint`. That SSHSIG is authentic and hides nothing (every
    /// stored checkpoint is verified anyway), so it is reported as an unfinished replacement.
    pub(super) fn settle_sshsig(&mut self) {
        let Some((sig, note, size, why)) = self.published.sshsig_mismatch.take() else {
            return;
        };
        let newest = self
            .stored
            .newest_valid_stored
            .as_ref()
            .filter(|(pos, p)| {
                *pos == self.stored.stored_count && p.note != note && p.cp.size >= size
            })
            .map(|(_, p)| p);
        let signs_newest = newest.filter(|p| {
            let Ok(armored) = std::str::from_utf8(&sig) else {
                return false;
            };
            let fallback = [self.trusted_key.clone()];
            let keys: Vec<&VerifierKey> = if self.keys.is_empty() {
                fallback.iter().collect()
            } else {
                self.keys
                    .iter()
                    .filter(|r| r.covers(p.cp.size))
                    .map(KeyRange::verifier)
                    .collect()
            };
            keys.into_iter()
                .any(|k| sshsig::verify(armored, k, sshsig::CHECKPOINT_NAMESPACE, &p.note).is_ok())
        });
        let (code, newest_size) = match signs_newest {
            Some(p) => (Code::UnfinishedCheckpoint, Some(p.cp.size)),
            None => (Code::SshsigInvalid, None),
        };
        let message = match newest_size {
            Some(n) => format!(
                "checkpoint.sig already signs the newest stored checkpoint (size {n}) while journal/checkpoint is still the one before (size {size}): a crash interrupted replacing the pair; the next open (`agp journal recover`) finishes it"
            ),
            None => format!("{why} (over journal/checkpoint)"),
        };
        self.report(code, None, None, Some(SSHSIG_FILE), Some(size), message);
    }
}
