//! The end of the stream: settling what only the whole journal can decide.

use super::*;

impl Verifier {
    pub(super) fn finish(mut self) -> Result<Report, VerifyError> {
        if self.chain.gap.is_some() {
            self.resolve_gap(None, self.frontier.size());
        }
        let size = self.frontier.size();
        if self.tail.torn_len > 0 {
            self.report(
                Code::TornTail,
                Some(size),
                Some(size + 1),
                None,
                None,
                format!(
                    "the last line is incomplete ({} bytes, no newline): a crash interrupted a write; nothing acknowledged is lost (the next open moves it aside: `agp journal recover`)",
                    self.tail.torn_len
                ),
            );
        }
        // Checkpoints beyond the end of the journal: check who signed them, then call it truncation.
        let mut beyond: Vec<Pending> = Vec::new();
        while let Some(p) = self.stored.next_stored.take() {
            beyond.push(p);
            self.load_next_stored()?;
        }
        if let Some(p) = self.published.latest.take() {
            if p.cp.size > size {
                beyond.push(p);
            }
        }
        for p in beyond {
            if self.check_signed(&p, false).is_some() && !self.truncated_reported {
                self.truncated_reported = true;
                self.report(
                    Code::Truncated,
                    None,
                    None,
                    Some(&p.label),
                    Some(p.cp.size),
                    format!(
                        "a validly signed checkpoint covers {} entries but the journal has {size}: entries were deleted from the end",
                        p.cp.size
                    ),
                );
            }
        }
        if let Some((t, unverified)) = self.trusted_cp.take() {
            if !self.trusted_signature_ok(&t, unverified) {
                return Ok(self.finish_report(size));
            }
            self.report(
                Code::Truncated,
                None,
                None,
                Some("trusted checkpoint"),
                Some(t.size),
                format!("the trusted checkpoint covers {} entries but the journal has {size}: entries were deleted", t.size),
            );
        }
        Ok(self.finish_report(size))
    }

    pub(super) fn finish_report(mut self, size: u64) -> Report {
        self.settle_sshsig();
        if self.published.latest_missing && size > 0 {
            self.report(
                Code::StaleCheckpoint,
                None,
                None,
                Some(CHECKPOINT_FILE),
                None,
                "journal/checkpoint is missing".into(),
            );
        }
        if size > 0 && self.sealed_size == 0 {
            self.report(
                Code::NoCheckpoint,
                None,
                None,
                None,
                None,
                format!("no valid checkpoint covers any of the {size} entries: nothing here is authenticated"),
            );
        } else if size > self.sealed_size {
            self.report(
                Code::UnsealedTail,
                Some(self.sealed_size),
                Some(self.sealed_size + 1),
                None,
                None,
                format!(
                    "{} entr{} after the last checkpoint (seq {} to {}) are not covered by a signature yet",
                    size - self.sealed_size,
                    if size - self.sealed_size == 1 { "y" } else { "ies" },
                    self.sealed_size,
                    size - 1
                ),
            );
        }
        self.check_trust(size);
        Report {
            intact: !self.findings.iter().any(|f| f.severity == Severity::Error),
            entries: size,
            sealed_size: self.sealed_size,
            checkpoints: self.stored.stored_count,
            root: hex::encode(self.frontier.root()),
            keys: self.keys,
            findings: self.findings,
            more_findings: self.more_findings,
            tail: Tail {
                frontier: self.frontier,
                ..self.tail
            },
        }
    }

    /// Whether the trusted checkpoint is signed by a key valid for its size (reporting if not).
    pub(super) fn trusted_signature_ok(
        &mut self,
        t: &Checkpoint,
        unverified: Option<Vec<u8>>,
    ) -> bool {
        match unverified {
            None => true,
            Some(note) => {
                let p = Pending {
                    label: "trusted checkpoint".into(),
                    note,
                    cp: t.clone(),
                };
                self.check_signature(&p).is_some()
            }
        }
    }

    pub(super) fn check_trust(&mut self, size: u64) {
        if self.keys.is_empty() {
            return; // BAD_GENESIS already says why; checkpoints were checked with the trusted key.
        }
        let position = self.keys.iter().position(|k| {
            k.verifier().id() == self.trusted_key.id() && k.verifier() == &self.trusted_key
        });
        let problem = match position {
            None => {
                let ids: Vec<&str> = self.keys.iter().map(|k| k.key_id.as_str()).collect();
                format!(
                    "the key you trust ({}) never signed this journal (its keys: {})",
                    self.trusted_key.id_hex(),
                    ids.join(", ")
                )
            }
            Some(t) if size > 0 && self.sealed_key.is_some_and(|s| s < t) => format!(
                "no checkpoint is signed by the key you trust ({}) or a later one",
                self.trusted_key.id_hex()
            ),
            Some(_) => return,
        };
        self.report(Code::UntrustedKey, None, None, None, None, problem);
    }
}
