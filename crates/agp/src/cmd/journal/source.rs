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

/// What a line must carry for the chain check; the rest was checked by the verifier.
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    prev: String,
}

pub struct Source {
    dir: PathBuf,
    trusted: VerifierKey,
    keys: Vec<VerifierKey>,
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
        let mut keys: Vec<VerifierKey> = report.keys.iter().map(|k| k.verifier.clone()).collect();
        keys.reverse(); // the key in force first
        Ok(Self {
            dir: dir.to_path_buf(),
            trusted: trusted.clone(),
            keys,
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
        self.keys
            .first()
            .map_or_else(|| self.trusted.name().to_string(), |k| k.name().to_string())
    }

    /// Entries read but not covered by a checkpoint yet.
    pub fn unsealed(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Reads what was added since the last call and returns the entries the latest checkpoint
    /// newly covers, in order.
    pub fn poll(&mut self) -> Result<Vec<Sealed>> {
        // The checkpoint first: it is published only after the lines it covers were written,
        // so the lines read next include all of them.
        let cp = self.read_checkpoint()?;
        let known = cp.as_ref().map_or_else(|| self.sealed_size(), |c| c.size);
        self.read_lines(known)?;
        match cp {
            Some(cp) => self.seal(cp),
            None => Ok(Vec::new()),
        }
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
            self.keys = report.keys.iter().map(|k| k.verifier.clone()).collect();
            self.keys.reverse();
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

    fn open_note(&self, note: &[u8]) -> Option<Checkpoint> {
        self.keys
            .iter()
            .find_map(|k| Checkpoint::open(note, k).ok())
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
    fn seal(&mut self, cp: CheckpointInfo) -> Result<Vec<Sealed>> {
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
        let cp = Arc::new(cp);
        self.sealed = Some(cp.clone());
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|p| p.seq < cp.size) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let line = self.reread(&p)?;
            out.push(Sealed {
                seq: p.seq,
                line,
                leaf: p.leaf,
                checkpoint: cp.clone(),
            });
        }
        Ok(out)
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
