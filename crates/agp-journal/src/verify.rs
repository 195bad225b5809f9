//! The offline verifier. Streams the entries and the stored checkpoints side by side, so memory
//! stays O(log n) whatever the journal's length: one Merkle frontier, the previous leaf hash, the
//! key ranges, and the next checkpoint to compare.
//!
//! Findings are classified so an auditor can tell a crash from tampering:
//! errors (tampering, or data that cannot be authenticated) make the journal not intact;
//! warnings (a torn tail from a crash, entries after the last checkpoint) do not.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use agp_contracts::canonical::to_canonical_string;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use std::borrow::Cow;

use crate::checkpoint::Checkpoint;
use crate::event::{self, JOURNAL_CREATED, KEY_ROTATED};
use crate::jcs::{self, JcsError};
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::{parse_note, VerifierKey, SIG_PREFIX};
use crate::sshsig;
use crate::{CHECKPOINTS_FILE, CHECKPOINT_FILE, ENTRIES_FILE, SSHSIG_FILE};

/// At most this many findings are listed; the rest are counted.
const MAX_FINDINGS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The journal is not intact (tampering, or data nobody can authenticate).
    Error,
    /// Expected after a crash or while the writer runs; nothing acknowledged is lost.
    Warning,
}

/// What a finding is about. Stable names: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// The last line has no newline: a write was interrupted by a crash.
    TornTail,
    /// Entries after the last checkpoint: not covered by a signature yet.
    UnsealedTail,
    /// The last stored checkpoint is incomplete: a crash interrupted its write.
    TornCheckpoint,
    /// `journal/checkpoint` is older than the newest stored checkpoint, or missing.
    StaleCheckpoint,
    /// `journal/checkpoint.sig` is missing.
    MissingSshsig,
    /// A line is not JSON.
    MalformedEntry,
    /// A line is JSON but not its RFC 8785 canonical form (re-serialized, reordered keys).
    NotCanonical,
    /// A line carries the same member name twice.
    DuplicateKey,
    /// A line lacks a required field or has one of the wrong type.
    BadSchema,
    /// Entries are missing: a seq was skipped.
    SeqGap,
    /// Two adjacent entries are swapped.
    Reordered,
    /// A line is the exact copy of the line before it.
    DuplicateLine,
    /// A seq appears again: a line was inserted or replayed.
    SeqRepeated,
    /// An entry does not hash to the `prev` its successor recorded: it was altered.
    ChainBroken,
    /// An entry names a key id other than the key in force.
    KeyIdMismatch,
    /// Entry 0 is not a valid `journal.created` event.
    BadGenesis,
    /// A `key.rotated` event is malformed or not signed by the key it replaces.
    BadRotation,
    /// A stored checkpoint cannot be parsed.
    CheckpointMalformed,
    /// A checkpoint's signature by the expected key does not verify.
    BadSignature,
    /// A checkpoint carries no signature by a key valid for its tree size.
    WrongKey,
    /// A checkpoint names another log.
    OriginMismatch,
    /// A stored checkpoint is smaller than the one before it.
    SizeDecreased,
    /// A checkpoint's root differs from the root recomputed from the entries.
    RootMismatch,
    /// The journal has fewer entries than a checkpoint says it had.
    Truncated,
    /// The trusted checkpoint's root differs from the journal's at that size.
    Forked,
    /// Entries exist but no checkpoint covers any of them.
    NoCheckpoint,
    /// The key you trust never signed this journal, or signed none of its checkpoints.
    UntrustedKey,
    /// `journal/checkpoint.sig` does not verify over `journal/checkpoint`.
    SshsigInvalid,
    /// A crash interrupted publishing a checkpoint: a generation under `checkpoint.d` that was
    /// never published (or no longer is), or, in the earlier two-file layout, a
    /// `checkpoint.sig` that already signs the newest stored checkpoint while `checkpoint` is
    /// still the one before. The next open (`agp journal recover`) finishes it.
    UnfinishedCheckpoint,
}

impl Code {
    pub fn severity(self) -> Severity {
        match self {
            Code::TornTail
            | Code::UnsealedTail
            | Code::TornCheckpoint
            | Code::StaleCheckpoint
            | Code::MissingSshsig
            | Code::UnfinishedCheckpoint => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The name scripts match on (`TORN_TAIL`, ...).
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// The entry's position (= the seq it should have), when the finding is about an entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// 1-based line number in entries.jsonl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Which checkpoint: `checkpoints#N` (1-based), `checkpoint`, or `trusted checkpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The tree size the finding is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.code.as_str())?;
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(cp) = &self.checkpoint {
            write!(f, " {cp}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A key and the tree sizes whose checkpoints it may sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRange {
    pub key: String,
    pub key_id: String,
    pub from_size: u64,
    /// `None`: still in force.
    pub to_size: Option<u64>,
    #[serde(skip)]
    pub verifier: Option<VerifierKey>,
}

impl KeyRange {
    fn covers(&self, size: u64) -> bool {
        self.from_size <= size && self.to_size.is_none_or(|t| size <= t)
    }
    fn verifier(&self) -> &VerifierKey {
        self.verifier
            .as_ref()
            .expect("ranges are built from parsed keys")
    }
}

/// Where verification stopped, for a writer that continues the journal.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// Bytes of entries.jsonl made of complete lines.
    pub good_len: u64,
    /// Bytes after that (a torn line).
    pub torn_len: u64,
    pub frontier: Frontier,
    /// Leaf hash of the last complete line.
    pub last_leaf: Option<Hash>,
    /// Bytes of the checkpoints file made of complete notes, and whether more follows.
    pub checkpoints_good_len: u64,
    pub checkpoints_torn: bool,
    /// Largest size any checkpoint (valid or not) claims.
    pub max_checkpoint_size: u64,
    /// SHA-256 (hex) of every torn tail a `journal.recovered` entry records.
    pub recorded_torn: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No error findings.
    pub intact: bool,
    /// Complete lines in entries.jsonl.
    pub entries: u64,
    /// Largest tree size covered by a valid checkpoint.
    pub sealed_size: u64,
    /// Stored checkpoints read (valid or not).
    pub checkpoints: u64,
    /// Hex root of the tree over all complete lines.
    pub root: String,
    pub keys: Vec<KeyRange>,
    pub findings: Vec<Finding>,
    /// Findings beyond the listed ones.
    pub more_findings: u64,
    #[serde(skip)]
    pub tail: Tail,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
    pub fn has(&self, code: Code) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
    /// The key in force after the last rotation.
    pub fn active_key(&self) -> Option<&VerifierKey> {
        self.keys.last().and_then(|k| k.verifier.as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no journal at {0} (entries.jsonl is missing)")]
    MissingEntries(PathBuf),
    #[error("the trusted checkpoint cannot be used: {0}")]
    BadTrustedCheckpoint(String),
}

/// What to verify against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The key the auditor trusts (from their own records, not from next to the journal).
    pub trusted_key: VerifierKey,
    /// A signed checkpoint the auditor kept: detects truncation and forks.
    pub trusted_checkpoint: Option<Vec<u8>>,
}

/// Verifies the journal folder `dir` (entries.jsonl, checkpoints, checkpoint, checkpoint.sig).
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Io { path, source }
    };
    let entries_path = dir.join(ENTRIES_FILE);
    let entries = match File::open(&entries_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::MissingEntries(dir.to_path_buf()))
        }
        Err(e) => return Err(io(&entries_path)(e)),
    };
    let cps_path = dir.join(CHECKPOINTS_FILE);
    let checkpoints = match File::open(&cps_path) {
        Ok(f) => Some(BufReader::with_capacity(64 * 1024, f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&cps_path)(e)),
    };
    let published = crate::pair::read_published(dir).map_err(io(dir))?;
    let mut report = verify_streams(
        BufReader::with_capacity(1 << 20, entries),
        checkpoints,
        published.checkpoint,
        published.sig,
        opts,
    )
    .map_err(|e| match e {
        VerifyError::Io { path, source } if path.as_os_str().is_empty() => VerifyError::Io {
            path: dir.to_path_buf(),
            source,
        },
        other => other,
    })?;
    if !published.unpublished.is_empty() {
        // Only the published pair is checked: a generation a crash left half-written proves
        // nothing either way, and the next write removes it.
        let n = published.unpublished.len();
        let shown: Vec<String> = published
            .unpublished
            .iter()
            .take(5)
            .map(|g| format!("{}/{g}", crate::pair::GENERATIONS_DIR))
            .collect();
        let finding = Finding {
            code: Code::UnfinishedCheckpoint,
            severity: Code::UnfinishedCheckpoint.severity(),
            seq: None,
            line: None,
            checkpoint: Some(crate::pair::GENERATIONS_DIR.to_string()),
            size: None,
            message: format!(
                "{n} checkpoint generation{} not published ({}{}): a crash interrupted writing or replacing a checkpoint; the published pair is checked, and the next open (`agp journal recover`) removes {}",
                if n == 1 { " is" } else { "s are" },
                shown.join(", "),
                if n > shown.len() { ", ..." } else { "" },
                if n == 1 { "it" } else { "them" },
            ),
        };
        if report.findings.len() < MAX_FINDINGS {
            report.findings.push(finding);
        } else {
            report.more_findings += 1;
        }
    }
    Ok(report)
}

/// Verifies from streams: `entries` (JSON lines), `checkpoints` (concatenated signed notes),
/// the latest checkpoint and its SSHSIG. Usable without files (e.g. a tarball or a network
/// stream).
pub fn verify_streams<E: BufRead, C: BufRead + 'static>(
    mut entries: E,
    checkpoints: Option<C>,
    latest: Option<Vec<u8>>,
    latest_sig: Option<Vec<u8>>,
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    // A trusted checkpoint signed by the trusted key is checked now; one signed by an earlier
    // key of the journal (before a rotation) is checked against the key ranges when the stream
    // reaches its size.
    let trusted = match &opts.trusted_checkpoint {
        None => None,
        Some(bytes) => match Checkpoint::open(bytes, &opts.trusted_key) {
            Ok(cp) => Some((cp, None)),
            Err(e) => {
                let cp = parse_checkpoint_unverified(bytes)
                    .map_err(|_| VerifyError::BadTrustedCheckpoint(e.to_string()))?;
                if cp.origin != opts.trusted_key.name() {
                    return Err(VerifyError::BadTrustedCheckpoint(format!(
                        "it is for log {:?}, not {:?}",
                        cp.origin,
                        opts.trusted_key.name()
                    )));
                }
                Some((cp, Some(bytes.clone())))
            }
        },
    };
    let mut v = Verifier::new(opts.trusted_key.clone(), trusted);
    v.notes = checkpoints.map(NoteReader::new);
    v.load_next_stored()?;
    v.set_latest(latest, latest_sig);
    v.check_at_size()?;

    let mut buf = Vec::with_capacity(4096);
    let mut offset = 0u64;
    loop {
        let line = read_line(&mut entries, &mut buf).map_err(|source| VerifyError::Io {
            path: PathBuf::new(),
            source,
        })?;
        match line {
            Line::Eof => break,
            Line::Torn(n) => {
                v.tail.torn_len = n;
                break;
            }
            Line::Complete => {
                offset += buf.len() as u64 + 1;
                v.entry(&buf);
            }
            Line::TooLong { len, leaf } => {
                offset += len + 1;
                v.oversized_entry(len, leaf);
            }
        }
        if v.frontier.size() == v.next_check {
            v.check_at_size()?;
        }
    }
    v.tail.good_len = offset;
    v.finish()
}

/// Longest line the verifier holds in memory (and the writer writes). Longer lines are hashed
/// as they stream by and reported, so a hostile file cannot make memory grow.
pub const MAX_LINE: usize = 16 << 20;

enum Line {
    Eof,
    /// `buf` holds a complete line (without its newline).
    Complete,
    /// A last line without a newline, of this many bytes.
    Torn(u64),
    /// A complete line longer than `MAX_LINE`: its length and leaf hash.
    TooLong {
        len: u64,
        leaf: Hash,
    },
}

fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    use sha2::{Digest, Sha256};
    buf.clear();
    let mut total: u64 = 0;
    let mut hasher: Option<Sha256> = None;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if total == 0 {
                Line::Eof
            } else {
                Line::Torn(total)
            });
        }
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        total += part.len() as u64;
        if hasher.is_none() && buf.len() + part.len() > MAX_LINE {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(&*buf);
            buf.clear();
            hasher = Some(h);
        }
        match &mut hasher {
            Some(h) => h.update(part),
            None => buf.extend_from_slice(part),
        }
        let used = done.unwrap_or(part.len());
        r.consume(used);
        if done.is_some() {
            return Ok(match hasher {
                None => Line::Complete,
                Some(h) => Line::TooLong {
                    len: total,
                    leaf: h.finalize().into(),
                },
            });
        }
    }
}

struct Pending {
    label: String,
    note: Vec<u8>,
    cp: Checkpoint,
}

struct GapPending {
    expected: u64,
    found: u64,
    line: u64,
}

struct Verifier {
    trusted_key: VerifierKey,
    /// The auditor's checkpoint, and its note when its signature is still to be checked.
    trusted_cp: Option<(Checkpoint, Option<Vec<u8>>)>,
    frontier: Frontier,
    prev_leaf: Option<Hash>,
    expected_seq: u64,
    quiet: u8,
    gap: Option<GapPending>,
    keys: Vec<KeyRange>,
    /// Hex id of the key in force (compared with every line's key_id).
    active_id_hex: String,
    findings: Vec<Finding>,
    more_findings: u64,
    root_mismatch_reported: bool,
    truncated_reported: bool,
    notes: Option<NoteReader<Box<dyn BufRead>>>,
    next_stored: Option<Pending>,
    stored_count: u64,
    last_stored_size: Option<u64>,
    latest: Option<Pending>,
    latest_sig: Option<Vec<u8>>,
    latest_missing: bool,
    /// The last stored checkpoint that verified, with its 1-based position in `checkpoints`.
    newest_valid_stored: Option<(u64, Pending)>,
    /// `checkpoint.sig` did not verify over `checkpoint`: (the SSHSIG, `checkpoint`'s note and
    /// size, why). Settled at the end, once the newest stored checkpoint is known.
    sshsig_mismatch: Option<(Vec<u8>, Vec<u8>, u64, String)>,
    next_check: u64,
    sealed_size: u64,
    sealed_key: Option<usize>,
    tail: Tail,
}

impl Verifier {
    fn new(trusted_key: VerifierKey, trusted_cp: Option<(Checkpoint, Option<Vec<u8>>)>) -> Self {
        Self {
            trusted_key,
            trusted_cp,
            frontier: Frontier::new(),
            prev_leaf: None,
            expected_seq: 0,
            quiet: 0,
            gap: None,
            keys: Vec::new(),
            active_id_hex: String::new(),
            findings: Vec::new(),
            more_findings: 0,
            root_mismatch_reported: false,
            truncated_reported: false,
            notes: None,
            next_stored: None,
            stored_count: 0,
            last_stored_size: None,
            latest: None,
            latest_sig: None,
            latest_missing: false,
            newest_valid_stored: None,
            sshsig_mismatch: None,
            next_check: 0,
            sealed_size: 0,
            sealed_key: None,
            tail: Tail::default(),
        }
    }

    fn report(
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

    fn entry_finding(&mut self, code: Code, pos: u64, message: String) {
        self.report(code, Some(pos), Some(pos + 1), None, None, message);
    }

    fn set_latest(&mut self, latest: Option<Vec<u8>>, sig: Option<Vec<u8>>) {
        self.latest_sig = sig;
        match latest {
            None => self.latest_missing = true,
            Some(note) => match parse_checkpoint_unverified(&note) {
                Ok(cp) => {
                    self.latest = Some(Pending {
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

    fn load_next_stored(&mut self) -> Result<(), VerifyError> {
        self.next_stored = None;
        while let Some(reader) = self.notes.as_mut() {
            let item = reader.next_note().map_err(|source| VerifyError::Io {
                path: PathBuf::from(CHECKPOINTS_FILE),
                source,
            })?;
            match item {
                None => {
                    self.tail.checkpoints_good_len = reader.good_len;
                    self.notes = None;
                }
                Some(NoteItem::Torn(bytes)) => {
                    self.tail.checkpoints_good_len = reader.good_len;
                    self.tail.checkpoints_torn = true;
                    self.notes = None;
                    self.report(
                        Code::TornCheckpoint,
                        None,
                        None,
                        Some(&format!("checkpoints#{}", self.stored_count + 1)),
                        None,
                        format!(
                            "the last stored checkpoint is incomplete ({} bytes): a crash interrupted its write",
                            bytes.len()
                        ),
                    );
                }
                Some(NoteItem::Note(note)) => {
                    self.stored_count += 1;
                    let label = format!("checkpoints#{}", self.stored_count);
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
                            if let Some(last) = self.last_stored_size {
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
                            self.last_stored_size = Some(cp.size);
                            self.next_stored = Some(Pending { label, note, cp });
                            break;
                        }
                    }
                }
            }
        }
        self.recompute_next_check();
        Ok(())
    }

    fn recompute_next_check(&mut self) {
        let mut next = u64::MAX;
        for p in [&self.next_stored, &self.latest].into_iter().flatten() {
            next = next.min(p.cp.size);
        }
        if let Some((t, _)) = &self.trusted_cp {
            next = next.min(t.size);
        }
        self.next_check = next;
    }

    /// Runs every check due at the current tree size.
    fn check_at_size(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        loop {
            let due = matches!(&self.next_stored, Some(p) if p.cp.size == size);
            if !due {
                break;
            }
            let p = self.next_stored.take().expect("checked");
            if let Some(k) = self.check_signed(&p, true) {
                if size >= self.sealed_size {
                    self.sealed_size = size;
                    self.sealed_key = Some(self.sealed_key.map_or(k, |s| s.max(k)));
                }
                self.newest_valid_stored = Some((self.stored_count, p));
            }
            self.load_next_stored()?;
        }
        if matches!(&self.latest, Some(p) if p.cp.size == size) {
            let p = self.latest.take().expect("checked");
            if let Some(k) = self.check_signed(&p, true) {
                if size >= self.sealed_size {
                    self.sealed_size = size;
                    self.sealed_key = Some(self.sealed_key.map_or(k, |s| s.max(k)));
                }
                self.check_sshsig(&p, k);
            }
            if let Some(last) = self.last_stored_size {
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
    fn check_signed(&mut self, p: &Pending, compare_root: bool) -> Option<usize> {
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

    fn check_signature(&mut self, p: &Pending) -> Option<usize> {
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

    fn check_sshsig(&mut self, p: &Pending, key_index: usize) {
        let Some(sig) = self.latest_sig.take() else {
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
            self.sshsig_mismatch = Some((sig, p.note.clone(), p.cp.size, e));
        }
    }

    /// A `checkpoint.sig` that does not match `checkpoint` is tampering, unless it is exactly
    /// what a writer of the earlier two-file layout leaves when killed between its two
    /// renames (the SSHSIG replaced first): a valid SSHSIG over the newest stored checkpoint,
    /// which is newer than `checkpoint`. That SSHSIG is authentic and hides nothing (every
    /// stored checkpoint is verified anyway), so it is reported as an unfinished replacement.
    fn settle_sshsig(&mut self) {
        let Some((sig, note, size, why)) = self.sshsig_mismatch.take() else {
            return;
        };
        let newest = self
            .newest_valid_stored
            .as_ref()
            .filter(|(pos, p)| *pos == self.stored_count && p.note != note && p.cp.size >= size)
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

    fn oversized_entry(&mut self, len: u64, leaf: Hash) {
        let pos = self.frontier.size();
        self.resolve_gap(None, pos);
        self.entry_finding(
            Code::MalformedEntry,
            pos,
            format!("the line is {len} bytes, longer than any entry agp writes ({MAX_LINE})"),
        );
        self.expected_seq += 1;
        self.quiet = 1;
        self.frontier.push(leaf);
        self.prev_leaf = Some(leaf);
        self.tail.last_leaf = Some(leaf);
    }

    fn entry(&mut self, line: &[u8]) {
        let pos = self.frontier.size();
        let leaf = leaf_hash(line);
        self.check_entry(line, pos, &leaf);
        self.frontier.push(leaf);
        self.prev_leaf = Some(leaf);
        self.tail.last_leaf = Some(leaf);
    }

    fn check_entry(&mut self, line: &[u8], pos: u64, leaf: &Hash) {
        let quiet = self.quiet > 0;
        self.quiet = self.quiet.saturating_sub(1);
        // Canonical form first: one pass over the bytes, no value built.
        let jcs = jcs::check_canonical_object(line);
        if let Err(JcsError::NotJson(m, at)) = &jcs {
            let msg = format!("not JSON: {m} at byte {at}");
            self.resolve_gap(None, pos);
            self.entry_finding(Code::MalformedEntry, pos, msg);
            self.expected_seq += 1;
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
                self.expected_seq += 1;
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
        let expected = self.expected_seq;
        self.expected_seq = expected.max(env.seq.saturating_add(1));
        if env.seq != expected {
            if !quiet {
                if env.seq > expected {
                    self.gap = Some(GapPending {
                        expected,
                        found: env.seq,
                        line: pos + 1,
                    });
                } else if self.prev_leaf.as_ref() == Some(leaf) {
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
            self.quiet = 2;
        } else if !quiet {
            let want_prev = self.prev_leaf.unwrap_or([0; 32]);
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
    fn resolve_gap(&mut self, seq: Option<u64>, pos: u64) -> bool {
        let Some(g) = self.gap.take() else {
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
            self.quiet = 1;
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

    fn check_keys(&mut self, f: &Envelope<'_>, pos: u64) {
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
            if let Ok(body) = f.body_map() {
                let shas = body
                    .get("torn_sha256")
                    .into_iter()
                    .chain(
                        body.get("earlier_torn")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.get("sha256")),
                    )
                    .filter_map(Value::as_str);
                self.tail.recorded_torn.extend(shas.map(str::to_string));
            }
        }
        if f.kind == KEY_ROTATED && f.seq == pos {
            let active = self.keys.last().expect("checked").verifier().clone();
            match check_rotation(f, &active, pos) {
                Ok(new) => {
                    let last = self.keys.last_mut().expect("checked");
                    last.to_size = Some(pos + 1);
                    self.active_id_hex = new.id_hex();
                    self.keys.push(KeyRange {
                        key: new.to_string(),
                        key_id: new.id_hex(),
                        from_size: pos + 1,
                        to_size: None,
                        verifier: Some(new),
                    });
                }
                Err(msg) => self.entry_finding(Code::BadRotation, pos, msg),
            }
        }
    }

    fn genesis(&mut self, f: &Envelope<'_>) {
        let key = (|| {
            if f.kind != JOURNAL_CREATED {
                return Err(format!("entry 0 is {:?}, not {JOURNAL_CREATED:?}", f.kind));
            }
            let body = f.body_map()?;
            let key_s = body
                .get("key")
                .and_then(Value::as_str)
                .ok_or("no body.key")?;
            let key = VerifierKey::parse(key_s).map_err(|e| e.to_string())?;
            if body.get("origin").and_then(Value::as_str) != Some(key.name()) {
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
                    verifier: Some(key),
                })
            }
            Err(msg) => self.entry_finding(Code::BadGenesis, 0, msg),
        }
    }

    fn finish(mut self) -> Result<Report, VerifyError> {
        if self.gap.is_some() {
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
        while let Some(p) = self.next_stored.take() {
            beyond.push(p);
            self.load_next_stored()?;
        }
        if let Some(p) = self.latest.take() {
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
                return self.finish_report(size);
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
        self.finish_report(size)
    }

    fn finish_report(mut self, size: u64) -> Result<Report, VerifyError> {
        self.settle_sshsig();
        if self.latest_missing && size > 0 {
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
        let report = Report {
            intact: !self.findings.iter().any(|f| f.severity == Severity::Error),
            entries: size,
            sealed_size: self.sealed_size,
            checkpoints: self.stored_count,
            root: hex::encode(self.frontier.root()),
            keys: self.keys,
            findings: self.findings,
            more_findings: self.more_findings,
            tail: Tail {
                frontier: self.frontier,
                ..self.tail
            },
        };
        Ok(report)
    }

    /// Whether the trusted checkpoint is signed by a key valid for its size (reporting if not).
    fn trusted_signature_ok(&mut self, t: &Checkpoint, unverified: Option<Vec<u8>>) -> bool {
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

    fn check_trust(&mut self, size: u64) {
        if self.keys.is_empty() {
            return; // BAD_GENESIS already says why; checkpoints were checked with the trusted key.
        }
        let position = self.keys.iter().position(|k| {
            k.verifier().id() == self.trusted_key.id() && k.verifier() == &self.trusted_key
        });
        match position {
            None => {
                let ids: Vec<&str> = self.keys.iter().map(|k| k.key_id.as_str()).collect();
                self.report(
                    Code::UntrustedKey,
                    None,
                    None,
                    None,
                    None,
                    format!(
                        "the key you trust ({}) never signed this journal (its keys: {})",
                        self.trusted_key.id_hex(),
                        ids.join(", ")
                    ),
                );
            }
            Some(t) if size > 0 && self.sealed_key.is_some_and(|s| s < t) => {
                self.report(
                    Code::UntrustedKey,
                    None,
                    None,
                    None,
                    None,
                    format!(
                        "no checkpoint is signed by the key you trust ({}) or a later one",
                        self.trusted_key.id_hex()
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

/// The statement a `key.rotated` event's `signature` signs with the old key.
pub fn rotation_statement(origin: &str, seq: u64, new_key: &str) -> String {
    format!("agp key rotation\n{origin}\n{seq}\n{new_key}\n")
}

fn check_rotation(f: &Envelope<'_>, active: &VerifierKey, pos: u64) -> Result<VerifierKey, String> {
    let body = f.body_map()?;
    let get = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .ok_or(format!("no body.{k}"))
    };
    if get("old_key")? != active.to_string() {
        return Err("body.old_key is not the key in force".into());
    }
    let new = VerifierKey::parse(get("new_key")?).map_err(|e| e.to_string())?;
    if new.name() != active.name() {
        return Err("the new key names another log".into());
    }
    let sig: [u8; 64] = B64
        .decode(get("signature")?)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("body.signature is not base64 of 64 bytes")?;
    let statement = rotation_statement(active.name(), pos, &new.to_string());
    if !active.verify_raw(statement.as_bytes(), &sig) {
        return Err("the rotation is not signed by the key it replaces".into());
    }
    Ok(new)
}

/// The fields every event has, borrowed from the line.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    v: u64,
    seq: u64,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    session: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

impl Envelope<'_> {
    /// Checks the fields and returns `prev` decoded.
    fn validate(&self) -> Result<Hash, String> {
        if self.v != event::VERSION {
            return Err(format!("unsupported version v={}", self.v));
        }
        if !event::is_rfc3339_utc(&self.ts) {
            return Err(format!("ts {:?} is not an RFC 3339 UTC timestamp", self.ts));
        }
        event::check_kind(&self.kind).map_err(|e| e.to_string())?;
        if let Some(s) = &self.session {
            event::check_session(s).map_err(|e| e.to_string())?;
        }
        let prev = decode_hex32(&self.prev).ok_or("prev is not 64 lowercase hex digits")?;
        if self.key_id.len() != 8 || !is_lower_hex(&self.key_id) {
            return Err("key_id is not 8 lowercase hex digits".into());
        }
        if !self.body.get().starts_with('{') {
            return Err("body is not an object".into());
        }
        Ok(prev)
    }

    fn body_map(&self) -> Result<serde_json::Map<String, Value>, String> {
        serde_json::from_str(self.body.get()).map_err(|e| format!("body: {e}"))
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex of exactly 32 bytes.
fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    // 0xff marks a byte that is not a lowercase hex digit.
    const LUT: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (LUT[pair[0] as usize], LUT[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

fn parse_checkpoint_unverified(note: &[u8]) -> Result<Checkpoint, String> {
    let parsed = parse_note(note).map_err(|e| e.to_string())?;
    Checkpoint::parse_text(parsed.text).map_err(|e| e.to_string())
}

enum NoteItem {
    Note(Vec<u8>),
    Torn(Vec<u8>),
}

/// Splits concatenated signed notes: text lines up to a blank line, then signature lines (each
/// starting with an em dash) up to the next line that does not.
struct NoteReader<R> {
    r: R,
    peeked: Option<Vec<u8>>,
    good_len: u64,
}

impl NoteReader<Box<dyn BufRead>> {
    fn new<C: BufRead + 'static>(r: C) -> Self {
        NoteReader {
            r: Box::new(r),
            peeked: None,
            good_len: 0,
        }
    }
}

impl<R: BufRead> NoteReader<R> {
    fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if let Some(l) = self.peeked.take() {
            return Ok(Some(l));
        }
        let mut l = Vec::new();
        if self.r.read_until(b'\n', &mut l)? == 0 {
            return Ok(None);
        }
        Ok(Some(l))
    }

    fn next_note(&mut self) -> std::io::Result<Option<NoteItem>> {
        let mut note = Vec::new();
        // Text lines, up to and including the blank separator line.
        loop {
            match self.line()? {
                None if note.is_empty() => return Ok(None),
                None => return Ok(Some(NoteItem::Torn(note))),
                Some(l) => {
                    let complete = l.ends_with(b"\n");
                    let blank = l == b"\n";
                    note.extend_from_slice(&l);
                    if !complete {
                        return Ok(Some(NoteItem::Torn(note)));
                    }
                    if blank {
                        break;
                    }
                }
            }
        }
        let mut sigs = 0;
        loop {
            match self.line()? {
                None => break,
                Some(l) if l.starts_with(SIG_PREFIX.as_bytes()) => {
                    let complete = l.ends_with(b"\n");
                    note.extend_from_slice(&l);
                    if !complete {
                        return Ok(Some(NoteItem::Torn(note)));
                    }
                    sigs += 1;
                }
                Some(l) => {
                    self.peeked = Some(l);
                    break;
                }
            }
        }
        // A text block with no signatures in the middle of the file is handed on as a note so
        // the parser reports it as malformed; at the end of the file it is a torn write.
        if sigs == 0 && self.peeked.is_none() {
            return Ok(Some(NoteItem::Torn(note)));
        }
        self.good_len += note.len() as u64;
        Ok(Some(NoteItem::Note(note)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_hashes_oversized_lines_without_holding_them() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut data = b"{}\n".to_vec();
        data.extend_from_slice(&long);
        data.extend_from_slice(b"\nab");
        let mut r = std::io::BufReader::with_capacity(4096, std::io::Cursor::new(data));
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut r, &mut buf).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"{}");
        match read_line(&mut r, &mut buf).unwrap() {
            Line::TooLong { len, leaf } => {
                assert_eq!(len as usize, long.len());
                assert_eq!(leaf, leaf_hash(&long));
            }
            _ => panic!("expected an oversized line"),
        }
        assert!(buf.capacity() <= 2 * MAX_LINE);
        assert!(matches!(
            read_line(&mut r, &mut buf).unwrap(),
            Line::Torn(2)
        ));
        assert!(matches!(read_line(&mut r, &mut buf).unwrap(), Line::Eof));
    }

    #[test]
    fn hex32_accepts_only_lowercase_hex_of_32_bytes() {
        let h = [0xabu8; 32];
        assert_eq!(decode_hex32(&hex::encode(h)), Some(h));
        assert_eq!(decode_hex32(&hex::encode(h).to_uppercase()), None);
        assert_eq!(decode_hex32(&"0g".repeat(32)), None);
        assert_eq!(decode_hex32("00"), None);
        assert_eq!(decode_hex32(crate::event::GENESIS_PREV), Some([0; 32]));
    }

    #[test]
    fn note_reader_splits_concatenated_notes_and_spots_a_torn_end() {
        let one = "o\n1\nAA==\n\n\u{2014} o abc\n";
        let two = "o\n2\nAA==\n\n\u{2014} o abc\n\u{2014} w def\n";
        let data = format!("{one}{two}o\n3\n");
        let mut r = NoteReader::new(std::io::Cursor::new(data.into_bytes()));
        assert!(matches!(r.next_note().unwrap(), Some(NoteItem::Note(n)) if n == one.as_bytes()));
        assert!(matches!(r.next_note().unwrap(), Some(NoteItem::Note(n)) if n == two.as_bytes()));
        assert_eq!(r.good_len as usize, one.len() + two.len());
        assert!(matches!(r.next_note().unwrap(), Some(NoteItem::Torn(_))));
        assert!(r.next_note().unwrap().is_none());
    }
}
