//! Checking each entry line: envelope, chain, sequence, keys and rotations.

use super::*;

impl Verifier {
    pub(super) fn oversized_entry(&mut self, len: u64, leaf: Hash) {
        let pos = self.frontier.size();
        self.resolve_gap(None, pos);
        self.entry_finding(
            Code::MalformedEntry,
            pos,
            format!("the line is {len} bytes, longer than any entry agp writes ({MAX_LINE})"),
        );
        self.chain.expected_seq += 1;
        self.chain.quiet = 1;
        self.frontier.push(leaf);
        self.chain.prev_leaf = Some(leaf);
        self.tail.last_leaf = Some(leaf);
    }

    pub(super) fn entry(&mut self, line: &[u8]) {
        let pos = self.frontier.size();
        let leaf = leaf_hash(line);
        self.check_entry(line, pos, &leaf);
        self.frontier.push(leaf);
        self.chain.prev_leaf = Some(leaf);
        self.tail.last_leaf = Some(leaf);
    }

    pub(super) fn check_entry(&mut self, line: &[u8], pos: u64, leaf: &Hash) {
        let quiet = self.chain.quiet > 0;
        self.chain.quiet = self.chain.quiet.saturating_sub(1);
        // Canonical form first: one pass over the bytes, no value built.
        let jcs = jcs::check_canonical_object(line);
        if let Err(JcsError::NotJson(m, at)) = &jcs {
            let msg = format!("not JSON: {m} at byte {at}");
            self.resolve_gap(None, pos);
            self.entry_finding(Code::MalformedEntry, pos, msg);
            self.chain.expected_seq += 1;
            return;
        }
        // Then the envelope, borrowing from the line. A line with a repeated member name is
        // read the way serde_json reads it (the last one wins) to keep checking the chain.
        let reparsed;
        let env = match serde_json::from_slice::<Envelope<'_>>(line) {
            Ok(e) => Ok(e),
            Err(e) if matches!(jcs, Err(JcsError::DuplicateKey(_))) => {
                reparsed = serde_json::from_slice::<Value>(line)
                    .ok()
                    .and_then(|v| to_canonical_string(&v).ok())
                    .unwrap_or_default();
                serde_json::from_str::<Envelope<'_>>(&reparsed).map_err(|_| e)
            }
            Err(e) => Err(e),
        };
        let validated = env
            .map_err(|e| e.to_string())
            .and_then(|e| e.validate().map(|prev| (e, prev)));
        let (env, prev) = match validated {
            Ok(x) => x,
            Err(msg) => {
                self.resolve_gap(None, pos);
                self.entry_finding(Code::BadSchema, pos, msg);
                self.chain.expected_seq += 1;
                return;
            }
        };
        if self.resolve_gap(Some(env.seq), pos) {
            return;
        }
        match jcs {
            Ok(()) => {}
            Err(JcsError::DuplicateKey(k)) => self.entry_finding(
                Code::DuplicateKey,
                pos,
                format!("member name {k:?} appears twice in one object"),
            ),
            Err(e) => self.entry_finding(
                Code::NotCanonical,
                pos,
                format!("the line is not the RFC 8785 canonical form of its JSON ({e})"),
            ),
        }
        let expected = self.chain.expected_seq;
        self.chain.expected_seq = expected.max(env.seq.saturating_add(1));
        if env.seq != expected {
            if !quiet {
                if env.seq > expected {
                    self.chain.gap = Some(GapPending {
                        expected,
                        found: env.seq,
                        line: pos + 1,
                    });
                } else if self.chain.prev_leaf.as_ref() == Some(leaf) {
                    self.entry_finding(
                        Code::DuplicateLine,
                        pos,
                        format!("line {} repeats line {} (seq {})", pos + 1, pos, env.seq),
                    );
                } else {
                    self.entry_finding(
                        Code::SeqRepeated,
                        pos,
                        format!(
                            "expected seq {expected}, found seq {} again: a line was inserted or replayed before line {}",
                            env.seq,
                            pos + 1
                        ),
                    );
                }
            }
            self.chain.quiet = 2;
        } else if !quiet {
            let want_prev = self.chain.prev_leaf.unwrap_or([0; 32]);
            if prev != want_prev {
                if pos == 0 {
                    self.entry_finding(
                        Code::BadGenesis,
                        0,
                        "entry 0's prev is not the genesis value".into(),
                    );
                } else {
                    self.report(
                        Code::ChainBroken,
                        Some(pos - 1),
                        Some(pos),
                        None,
                        None,
                        format!(
                            "seq {} (line {}) does not hash to the prev that seq {} (line {}) recorded: seq {} was altered (or seq {}'s prev was)",
                            pos - 1,
                            pos,
                            pos,
                            pos + 1,
                            pos - 1,
                            pos
                        ),
                    );
                }
            }
        }
        self.check_keys(&env, pos);
    }

    /// Settles a pending seq gap once the next line's seq is known. Returns true when the current
    /// line was consumed as the second half of a swap.
    pub(super) fn resolve_gap(&mut self, seq: Option<u64>, pos: u64) -> bool {
        let Some(g) = self.chain.gap.take() else {
            return false;
        };
        if seq == Some(g.expected) {
            self.report(
                Code::Reordered,
                Some(g.expected),
                Some(pos + 1),
                None,
                None,
                format!(
                    "seq {} (line {}) comes after seq {} (line {}): lines were reordered",
                    g.expected,
                    pos + 1,
                    g.found,
                    g.line
                ),
            );
            self.chain.quiet = 1;
            true
        } else {
            self.report(
                Code::SeqGap,
                Some(g.expected),
                Some(g.line),
                None,
                None,
                format!(
                    "expected seq {} at line {}, found seq {}: {} entr{} deleted",
                    g.expected,
                    g.line,
                    g.found,
                    g.found - g.expected,
                    if g.found - g.expected == 1 {
                        "y was"
                    } else {
                        "ies were"
                    }
                ),
            );
            false
        }
    }

    pub(super) fn check_keys(&mut self, f: &Envelope<'_>, pos: u64) {
        if pos == 0 {
            self.genesis(f);
            return;
        }
        if self.keys.is_empty() {
            return;
        }
        if f.key_id != self.active_id_hex {
            let msg = format!(
                "key_id {} is not the key in force ({})",
                f.key_id, self.active_id_hex
            );
            self.entry_finding(Code::KeyIdMismatch, pos, msg);
        }
        if f.kind == event::JOURNAL_RECOVERED {
            // A body that does not read as one records nothing: its torn files are then taken
            // as unrecorded and journaled again by the next open, which is the safe side.
            if let Ok(body) = f.body_as::<JournalRecovered>() {
                let earlier = body.earlier_torn.into_iter().flatten().map(|t| t.sha256);
                let shas = body.torn_sha256.into_iter().chain(earlier);
                self.tail.recorded_torn.extend(shas);
            }
        }
        if f.kind == KEY_ROTATED && f.seq == pos {
            let Some(last) = self.keys.last_mut() else {
                return;
            };
            match check_rotation(f, &last.verifier, pos) {
                Ok(new) => {
                    last.to_size = Some(pos + 1);
                    self.active_id_hex = new.id_hex();
                    self.keys.push(KeyRange {
                        key: new.to_string(),
                        key_id: new.id_hex(),
                        from_size: pos + 1,
                        to_size: None,
                        verifier: new,
                    });
                }
                Err(msg) => self.entry_finding(Code::BadRotation, pos, msg),
            }
        }
    }

    pub(super) fn genesis(&mut self, f: &Envelope<'_>) {
        let key = (|| {
            if f.kind != JOURNAL_CREATED {
                return Err(format!("entry 0 is {:?}, not {JOURNAL_CREATED:?}", f.kind));
            }
            let body = f.body_as::<JournalCreated>()?;
            let key = VerifierKey::parse(&body.key).map_err(|e| e.to_string())?;
            if body.origin != key.name() {
                return Err("body.origin is not the key's name".to_string());
            }
            if f.key_id != key.id_hex() {
                return Err("key_id is not the genesis key's id".to_string());
            }
            Ok(key)
        })();
        match key {
            Ok(key) => {
                self.active_id_hex = key.id_hex();
                self.keys.push(KeyRange {
                    key: key.to_string(),
                    key_id: key.id_hex(),
                    from_size: 0,
                    to_size: None,
                    verifier: key,
                });
            }
            Err(msg) => self.entry_finding(Code::BadGenesis, 0, msg),
        }
    }
}

/// The statement a `key.rotated` event's `signature` signs with the old key.
pub fn rotation_statement(origin: &str, seq: u64, new_key: &str) -> String {
    format!("agp key rotation\n{origin}\n{seq}\n{new_key}\n")
}

pub(super) fn check_rotation(
    f: &Envelope<'_>,
    active: &VerifierKey,
    pos: u64,
) -> Result<VerifierKey, String> {
    let body = f.body_as::<KeyRotated>()?;
    if body.old_key != active.to_string() {
        return Err("body.old_key is not the key in force".into());
    }
    let new = VerifierKey::parse(&body.new_key).map_err(|e| e.to_string())?;
    if new.name() != active.name() {
        return Err("the new key names another log".into());
    }
    let sig: [u8; 64] = B64
        .decode(&body.signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("body.signature is not base64 of 64 bytes")?;
    let statement = rotation_statement(active.name(), pos, &new.to_string());
    if !active.verify_raw(statement.as_bytes(), &sig) {
        return Err("the rotation is not signed by the key it replaces".into());
    }
    Ok(new)
}
