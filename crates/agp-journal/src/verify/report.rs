//! What verification found: findings, their codes and severities, and the report.

use super::*;

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
    pub verifier: VerifierKey,
}

impl KeyRange {
    pub(super) fn covers(&self, size: u64) -> bool {
        self.from_size <= size && self.to_size.is_none_or(|t| size <= t)
    }
    pub(super) fn verifier(&self) -> &VerifierKey {
        &self.verifier
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
        self.keys.last().map(|k| &k.verifier)
    }
}
