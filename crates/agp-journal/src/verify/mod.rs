//! The offline verifier. Streams the entries and the stored checkpoints side by side, so memory
//! stays O(log n) whatever the journal's length: one Merkle frontier, the previous leaf hash, the
//! key ranges, and the next checkpoint to compare.
//!
//! Findings are classified so an auditor can tell a crash from tampering:
//! errors (tampering, or data that cannot be authenticated) make the journal not intact;
//! warnings (a torn tail from a crash, entries after the last checkpoint) do not.

mod checkpoints;
mod entries;
mod envelope;
mod finish;
mod read;
mod report;
#[cfg(test)]
mod tests;

pub use entries::rotation_statement;
use envelope::Envelope;
pub use read::MAX_LINE;
use read::{parse_checkpoint_unverified, read_line, Line, NoteItem, NoteReader};
pub use report::{Code, Finding, KeyRange, Report, Severity, Tail};

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use agp_contracts::canonical::to_canonical_string;
use agp_contracts::events::{Event, JournalCreated, JournalRecovered, KeyRotated};
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
    v.stored.notes = checkpoints.map(NoteReader::new);
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
    chain: Chain,
    keys: Vec<KeyRange>,
    /// Hex id of the key in force (compared with every line's key_id).
    active_id_hex: String,
    findings: Vec<Finding>,
    more_findings: u64,
    root_mismatch_reported: bool,
    truncated_reported: bool,
    stored: Stored,
    published: Published,
    next_check: u64,
    sealed_size: u64,
    sealed_key: Option<usize>,
    tail: Tail,
}

/// Where the entry chain stands: the line before, the sequence number expected next.
#[derive(Default)]
struct Chain {
    prev_leaf: Option<Hash>,
    expected_seq: u64,
    quiet: u8,
    gap: Option<GapPending>,
}

/// The stored checkpoints (`checkpoints`), read one ahead as the entries stream by.
#[derive(Default)]
struct Stored {
    notes: Option<NoteReader<Box<dyn BufRead>>>,
    next_stored: Option<Pending>,
    stored_count: u64,
    last_stored_size: Option<u64>,
    /// The last stored checkpoint that verified, with its 1-based position in `checkpoints`.
    newest_valid_stored: Option<(u64, Pending)>,
}

/// The published pair: `checkpoint` and `checkpoint.sig`.
#[derive(Default)]
struct Published {
    latest: Option<Pending>,
    latest_sig: Option<Vec<u8>>,
    latest_missing: bool,
    /// `checkpoint.sig` did not verify over `checkpoint`: (the SSHSIG, `checkpoint`'s note and
    /// size, why). Settled at the end, once the newest stored checkpoint is known.
    sshsig_mismatch: Option<(Vec<u8>, Vec<u8>, u64, String)>,
}
