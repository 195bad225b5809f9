//! The journal as a stream of verified, sealed entries: what `agp journal export` hands out.
//!
//! `agp_journal::verify_dir` checks the whole journal first (canonical lines, the hash chain,
//! every stored checkpoint, key rotations). This reader then goes over the lines again,
//! recomputing the Merkle tree itself, and hands out an entry only once the latest signed
//! checkpoint covers it and that checkpoint's root equals the recomputed one. So what is
//! exported is exactly what a key of the journal signed, even if the file changed between the
//! two passes; a live writer's newest lines wait until it seals them (its sealer signs a
//! checkpoint within milliseconds of each commit). Only whole lines are read: a writer may be
//! mid-append.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agp_journal::merkle::{leaf_hash, to_base64, Frontier, Hash};
use agp_journal::verify::KeyRange;
use agp_journal::{Checkpoint, Report, VerifierKey, VerifyOptions};
use anyhow::{Context, Result};
use serde::Deserialize;

/// The journal does not hold what its signatures say: exported nothing past this point. The
/// command exits 1 (the thing checked is bad) on it, not 2.
#[derive(Debug)]
pub struct Tampered(pub String);

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Tampered {}

fn tampered(message: impl Into<String>) -> anyhow::Error {
    Tampered(message.into()).into()
}

/// A signed checkpoint that verified and whose root matches the entries.
#[derive(Debug)]
pub struct CheckpointInfo {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The signed note, as published: enough to check the signature offline.
    pub note: String,
}

impl CheckpointInfo {
    pub fn root_base64(&self) -> String {
        to_base64(&self.root)
    }
}

/// One entry, covered by `checkpoint`.
#[derive(Debug)]
pub struct Sealed {
    pub seq: u64,
    /// The exact journal line, without its newline: its RFC 6962 leaf hash is `leaf`.
    pub line: Vec<u8>,
    pub leaf: Hash,
    pub checkpoint: Arc<CheckpointInfo>,
}

/// A line read and chained but not yet covered by a checkpoint. The bytes are read again when
/// handed out (and checked against `leaf`), so memory stays small however long the journal.
struct Pending {
    seq: u64,
    offset: u64,
    len: usize,
    leaf: Hash,
    /// Root of the tree ending with this entry, kept where a later checkpoint may end here.
    root_after: Option<Hash>,
}

/// Most entries one [`Source::poll`] hands out.
pub const HAND_OUT: usize = 1024;

/// What a line must carry for the chain check; the rest was checked by the verifier.
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    prev: String,
}

pub struct Source {
    dir: PathBuf,
    trusted: VerifierKey,
    /// The journal's keys and the tree sizes each may sign (a retired key signs nothing new).
    keys: Vec<KeyRange>,
    entries: File,
    reread: File,
    reread_pos: u64,
    /// Bytes of whole lines read so far.
    read_offset: u64,
    frontier: Frontier,
    prev_leaf: Option<Hash>,
    pending: VecDeque<Pending>,
    sealed: Option<Arc<CheckpointInfo>>,
    last_note: Vec<u8>,
    /// What the verifier saw: the tree over its complete lines must be the one recomputed here.
    verified_entries: u64,
    verified_root: String,
}

/// The verifier's report must be intact; a one-line reason otherwise.
pub fn verify(dir: &Path, trusted: &VerifierKey) -> Result<Report> {
    let report = agp_journal::verify_dir(
        dir,
        &VerifyOptions {
            trusted_key: trusted.clone(),
            trusted_checkpoint: None,
        },
    )
    .map_err(|e| match e {
        agp_journal::VerifyError::MissingEntries(_) => anyhow::anyhow!(e).context(
            "nothing to export (run `agp keygen` to start the journal, or pass --journal)",
        ),
        other => other.into(),
    })?;
    if !report.intact {
        let errors = report.errors().count();
        let first = report
            .errors()
            .next()
            .map_or_else(String::new, |f| format!(" (first: {f})"));
        return Err(tampered(format!(
            "the journal in {} fails verification with {errors} error{}{first}; nothing was \
             exported: `agp verify --journal {}` lists the findings",
            dir.display(),
            if errors == 1 { "" } else { "s" },
            dir.display()
        )));
    }
    Ok(report)
}

impl Source {
    /// Starts at the first entry of a journal `report` (from [`verify`]) found intact.
    pub fn open(dir: &Path, trusted: &VerifierKey, report: &Report) -> Result<Self> {
        let path = dir.join(agp_journal::ENTRIES_FILE);
        let open = || File::open(&path).with_context(|| format!("cannot read {}", path.display()));
        Ok(Self {
            dir: dir.to_path_buf(),
            trusted: trusted.clone(),
            keys: report.keys.clone(),
            entries: open()?,
            reread: open()?,
            reread_pos: 0,
            read_offset: 0,
            frontier: Frontier::new(),
            prev_leaf: None,
            pending: VecDeque::new(),
            sealed: None,
            last_note: Vec::new(),
            verified_entries: report.entries,
            verified_root: report.root.clone(),
        })
    }

    /// The journal's origin (the log name its checkpoints carry).
    pub fn origin(&self) -> String {
        self.keys.first().map_or_else(
            || self.trusted.name().to_string(),
            |k| k.verifier.name().to_string(),
        )
    }

    /// Entries read but not covered by a checkpoint yet.
    pub fn unsealed(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Reads what was added since the last call and returns the entries the latest checkpoint
    /// newly covers, in order.
    /// At most [`HAND_OUT`] at a time, so memory does not grow with the journal: call again
    /// until it returns none.
    pub fn poll(&mut self) -> Result<Vec<Sealed>> {
        if !self.releasable() {
            // The checkpoint first: it is published only after the lines it covers were
            // written, so the lines read next include all of them.
            let cp = self.read_checkpoint()?;
            let known = cp.as_ref().map_or_else(|| self.sealed_size(), |c| c.size);
            self.read_lines(known)?;
            if let Some(cp) = cp {
                self.seal(cp)?;
            }
        }
        self.release()
    }

    fn releasable(&self) -> bool {
        let sealed = self.sealed_size();
        self.pending.front().is_some_and(|p| p.seq < sealed)
    }

    /// Hands out the next sealed entries.
    fn release(&mut self) -> Result<Vec<Sealed>> {
        let mut out = Vec::new();
        while out.len() < HAND_OUT && self.releasable() {
            let (Some(p), Some(cp)) = (self.pending.pop_front(), self.sealed.clone()) else {
                break;
            };
            let line = self.reread(&p)?;
            out.push(Sealed {
                seq: p.seq,
                line,
                leaf: p.leaf,
                checkpoint: cp,
            });
        }
        Ok(out)
    }

    fn sealed_size(&self) -> u64 {
        self.sealed.as_ref().map_or(0, |c| c.size)
    }

    /// The latest checkpoint when it changed since the last call, its signature checked.
    fn read_checkpoint(&mut self) -> Result<Option<CheckpointInfo>> {
        let path = self.dir.join(agp_journal::CHECKPOINT_FILE);
        let note = match std::fs::read(&path) {
            Ok(n) => n,
            // No checkpoint yet (a journal whose writer never sealed): nothing is sealed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if note == self.last_note {
            return Ok(None);
        }
        let cp = if let Some(cp) = self.open_note(&note) {
            cp
        } else {
            // A key rotated since we started: the verifier vouches for the new key.
            let report = verify(&self.dir, &self.trusted)?;
            self.keys = report.keys;
            self.open_note(&note).ok_or_else(|| {
                tampered(format!(
                    "{} is not signed by any key of this journal; nothing after seq {} was \
                     exported",
                    path.display(),
                    self.sealed_size()
                ))
            })?
        };
        self.last_note = note.clone();
        Ok(Some(CheckpointInfo {
            origin: cp.origin,
            size: cp.size,
            root: cp.root,
            note: String::from_utf8_lossy(&note).into_owned(),
        }))
    }

    /// The checkpoint in `note` when a key of the journal signed it and may sign its size.
    fn open_note(&self, note: &[u8]) -> Option<Checkpoint> {
        self.keys.iter().rev().find_map(|k| {
            Checkpoint::open(note, &k.verifier)
                .ok()
                .filter(|cp| k.from_size <= cp.size && k.to_size.is_none_or(|t| cp.size <= t))
        })
    }

    /// Reads the whole lines added since the last call and chains them.
    fn read_lines(&mut self, known_cp: u64) -> Result<()> {
        let path = self.dir.join(agp_journal::ENTRIES_FILE);
        let io = || format!("cannot read {}", path.display());
        let len = self.entries.metadata().with_context(io)?.len();
        if len < self.read_offset {
            return Err(tampered(format!(
                "{} shrank from {} to {len} bytes while being exported",
                path.display(),
                self.read_offset
            )));
        }
        self.entries
            .seek(SeekFrom::Start(self.read_offset))
            .with_context(io)?;
        let mut carry: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = self.entries.read(&mut chunk).with_context(io)?;
            if n == 0 {
                break;
            }
            carry.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(pos) = carry[start..].iter().position(|&b| b == b'\n') {
                let line = &carry[start..start + pos];
                self.chain(line, known_cp)?;
                self.read_offset += pos as u64 + 1;
                start += pos + 1;
            }
            carry.drain(..start);
            if carry.len() > agp_journal::verify::MAX_LINE {
                return Err(tampered(format!(
                    "{} holds a line longer than {} bytes at byte {}",
                    path.display(),
                    agp_journal::verify::MAX_LINE,
                    self.read_offset
                )));
            }
        }
        Ok(())
    }

    fn chain(&mut self, line: &[u8], known_cp: u64) -> Result<()> {
        let index = self.frontier.size();
        let env: Envelope = serde_json::from_slice(line).map_err(|e| {
            tampered(format!(
                "entries.jsonl line {} is not a journal entry ({e})",
                index + 1
            ))
        })?;
        let expected_prev = self
            .prev_leaf
            .map_or_else(|| agp_journal::event::GENESIS_PREV.to_string(), hex::encode);
        if env.seq != index || env.prev != expected_prev {
            return Err(tampered(format!(
                "entries.jsonl line {} (seq {}) does not follow the line before it (expected \
                 seq {index} with prev {expected_prev}); the journal changed while being \
                 exported",
                index + 1,
                env.seq
            )));
        }
        let leaf = leaf_hash(line);
        self.frontier.push(leaf);
        self.prev_leaf = Some(leaf);
        let size = self.frontier.size();
        if size == self.verified_entries && hex::encode(self.frontier.root()) != self.verified_root
        {
            return Err(tampered(
                "entries.jsonl changed between its verification and its export",
            ));
        }
        self.pending.push_back(Pending {
            seq: index,
            offset: self.read_offset,
            len: line.len(),
            leaf,
            root_after: (size >= known_cp).then(|| self.frontier.root()),
        });
        Ok(())
    }

    /// Applies checkpoint `cp`: its root must be the recomputed one at its size.
    fn seal(&mut self, cp: CheckpointInfo) -> Result<()> {
        let before = self.sealed_size();
        if cp.size < before {
            return Err(tampered(format!(
                "the latest checkpoint went back from size {before} to {}",
                cp.size
            )));
        }
        let have = self.frontier.size();
        if cp.size > have {
            return Err(tampered(format!(
                "the latest checkpoint covers {} entries but entries.jsonl holds {have}: the \
                 journal was truncated",
                cp.size
            )));
        }
        let root = if cp.size == 0 {
            agp_journal::merkle::empty_root()
        } else if cp.size == before {
            self.sealed.as_ref().map_or([0; 32], |c| c.root)
        } else {
            self.pending
                .iter()
                .find(|p| p.seq + 1 == cp.size)
                .and_then(|p| p.root_after)
                .ok_or_else(|| {
                    anyhow::anyhow!("internal: no recomputed root kept for size {}", cp.size)
                })?
        };
        if root != cp.root {
            return Err(tampered(format!(
                "the signed checkpoint at size {} does not match the entries (root {} signed, {} \
                 recomputed); nothing after seq {before} was exported",
                cp.size,
                to_base64(&cp.root),
                to_base64(&root)
            )));
        }
        self.sealed = Some(Arc::new(cp));
        Ok(())
    }

    /// The bytes of a pending entry, which must still hash to the leaf that was sealed.
    fn reread(&mut self, p: &Pending) -> Result<Vec<u8>> {
        let io = || format!("cannot read {}", self.dir.display());
        if self.reread_pos != p.offset {
            self.reread
                .seek(SeekFrom::Start(p.offset))
                .with_context(io)?;
        }
        let mut line = vec![0u8; p.len + 1];
        self.reread.read_exact(&mut line).with_context(io)?;
        self.reread_pos = p.offset + p.len as u64 + 1;
        line.pop();
        if leaf_hash(&line) != p.leaf {
            return Err(tampered(format!(
                "entry seq {} changed while being exported",
                p.seq
            )));
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::Journal as _;
    use agp_journal::{JournalOptions, JournalWriter, SignerKey};
    use serde_json::json;

    fn append(dir: &Path, key: &SignerKey, n: u64) {
        let w = JournalWriter::open(dir, key.clone(), JournalOptions::default()).unwrap();
        for i in 0..n {
            w.append("tool_call.requested", Some("s-1"), json!({"n": i}))
                .unwrap();
        }
        w.close().unwrap();
    }

    /// A journal of `n` events after its journal.created entry, closed (so sealed).
    fn journal(n: u64, name: &str) -> (tempfile::TempDir, PathBuf, SignerKey) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let key = SignerKey::generate(name).unwrap();
        append(&dir, &key, n);
        (tmp, dir, key)
    }

    fn source(dir: &Path, key: &SignerKey) -> Source {
        let report = verify(dir, key.verifier()).unwrap();
        Source::open(dir, key.verifier(), &report).unwrap()
    }

    /// Everything sealed now, however many polls it takes.
    fn drain(src: &mut Source) -> Vec<Sealed> {
        let mut all = Vec::new();
        loop {
            let batch = src.poll().unwrap();
            if batch.is_empty() {
                return all;
            }
            assert!(batch.len() <= HAND_OUT);
            all.extend(batch);
        }
    }

    fn tampered_message(r: Result<Vec<Sealed>>) -> String {
        let e = r.expect_err("tampering was not noticed");
        assert!(e.downcast_ref::<Tampered>().is_some(), "{e:#}");
        format!("{e:#}")
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join(agp_journal::ENTRIES_FILE))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(dir: &Path, lines: &[String]) {
        std::fs::write(dir.join(agp_journal::ENTRIES_FILE), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn every_sealed_entry_comes_once_in_order_with_a_checkpoint_that_covers_it() {
        let (_t, dir, key) = journal(5, "agp.local/journal/a");
        let mut src = source(&dir, &key);
        let first = drain(&mut src);
        let journal = lines(&dir);
        assert_eq!(first.len(), journal.len());
        for (i, s) in first.iter().enumerate() {
            assert_eq!(s.seq, i as u64);
            assert_eq!(s.line, journal[i].as_bytes());
            assert_eq!(s.leaf, leaf_hash(journal[i].as_bytes()));
            assert_eq!(s.checkpoint.size, journal.len() as u64);
            assert_eq!(s.checkpoint.origin, "agp.local/journal/a");
        }
        assert!(src.poll().unwrap().is_empty(), "nothing new, nothing again");
        append(&dir, &key, 3);
        let next = drain(&mut src);
        let journal = lines(&dir);
        assert_eq!(
            next.iter().map(|s| s.seq).collect::<Vec<_>>(),
            (first.len() as u64..journal.len() as u64).collect::<Vec<_>>()
        );
        assert!(next
            .iter()
            .all(|s| s.checkpoint.size == journal.len() as u64));
    }

    #[test]
    fn a_long_journal_comes_in_bounded_batches() {
        let (_t, dir, key) = journal(0, "agp.local/journal/long");
        let w = JournalWriter::open(&dir, key.clone(), JournalOptions::default()).unwrap();
        let events: Vec<(&str, Option<&str>, serde_json::Value)> = (0..2 * HAND_OUT + 10)
            .map(|i| ("tool_call.requested", None, json!({"n": i})))
            .collect();
        w.append_batch(&events).unwrap();
        w.close().unwrap();
        let mut src = source(&dir, &key);
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let b = src.poll().unwrap();
            (!b.is_empty()).then_some(b.len())
        })
        .collect();
        assert_eq!(
            sizes,
            vec![HAND_OUT, HAND_OUT, lines(&dir).len() - 2 * HAND_OUT]
        );
    }

    #[test]
    fn a_live_writer_is_followed_to_its_last_entry_without_gaps() {
        let (_t, dir, key) = journal(0, "agp.local/journal/live");
        let mut src = source(&dir, &key);
        let writer = {
            let (dir, key) = (dir.clone(), key.clone());
            std::thread::spawn(move || append(&dir, &key, 300))
        };
        let mut seen = Vec::new();
        while !writer.is_finished() {
            seen.extend(src.poll().unwrap().into_iter().map(|s| s.seq));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        writer.join().unwrap();
        // Closing wrote the last checkpoint: one more look hands out the rest.
        seen.extend(drain(&mut src).into_iter().map(|s| s.seq));
        assert_eq!(seen, (0..lines(&dir).len() as u64).collect::<Vec<_>>());
        assert_eq!(src.unsealed(), 0);
    }

    #[test]
    fn a_line_changed_after_verification_is_not_handed_out() {
        let (_t, dir, key) = journal(4, "agp.local/journal/b");
        let mut src = source(&dir, &key);
        let mut l = lines(&dir);
        l[2] = l[2].replace("\"n\":1", "\"n\":7");
        write_lines(&dir, &l);
        let m = tampered_message(src.poll());
        assert!(m.contains("line 4 (seq 3) does not follow"), "{m}");
    }

    #[test]
    fn a_journal_swapped_for_another_after_verification_is_refused() {
        let (_t, dir, key) = journal(4, "agp.local/journal/c");
        let (_u, other, _other_key) = journal(4, "agp.local/journal/c");
        let mut src = source(&dir, &key);
        std::fs::remove_dir_all(&dir).unwrap();
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&other)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(copied.success());
        let m = tampered_message(src.poll());
        assert!(m.contains("fails verification"), "{m}");
    }

    #[test]
    fn a_journal_that_shrinks_while_followed_is_refused() {
        let (_t, dir, key) = journal(4, "agp.local/journal/d");
        let mut src = source(&dir, &key);
        assert_eq!(drain(&mut src).len(), 5);
        let l = lines(&dir);
        write_lines(&dir, &l[..3]);
        let m = tampered_message(src.poll());
        assert!(m.contains("shrank"), "{m}");
    }

    #[test]
    fn a_tampered_journal_fails_before_anything_is_read() {
        let (_t, dir, key) = journal(4, "agp.local/journal/e");
        let mut l = lines(&dir);
        l.swap(2, 3);
        write_lines(&dir, &l);
        let e = verify(&dir, key.verifier()).unwrap_err();
        assert!(e.downcast_ref::<Tampered>().is_some(), "{e:#}");
        assert!(format!("{e:#}").contains("nothing was exported"), "{e:#}");
    }
}
