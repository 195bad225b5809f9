//! Inclusion receipts in the C2SP tlog-proof format (<https://c2sp.org/tlog-proof>) and
//! consistency between two checkpoints.

use std::io::{BufRead, BufReader};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::checkpoint::Checkpoint;
use crate::merkle::{self, leaf_hash, Hash};
use crate::note::VerifierKey;
use crate::{CHECKPOINT_FILE, ENTRIES_FILE};

pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("entry seq {seq} is not covered by the latest checkpoint (size {size}); wait for the next checkpoint")]
    NotSealed { seq: u64, size: u64 },
    #[error(
        "the journal has {have} entries, fewer than the checkpoint's {want}: it was truncated"
    )]
    Truncated { have: u64, want: u64 },
    #[error("the proof does not hold: {0}")]
    Invalid(String),
}

/// Leaf hashes of the first `limit` complete lines of `entries.jsonl` in `dir`.
pub fn leaf_hashes(dir: &Path, limit: u64) -> Result<Vec<Hash>, ProofError> {
    let path = dir.join(ENTRIES_FILE);
    let io = |source| ProofError::Io {
        path: path.clone(),
        source,
    };
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(&path).map_err(io)?);
    let mut out = Vec::new();
    let mut line = Vec::new();
    while (out.len() as u64) < limit {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        out.push(leaf_hash(&line[..n - 1]));
    }
    Ok(out)
}

/// Reads and verifies the latest checkpoint in `dir` with `key`.
pub fn latest_checkpoint(
    dir: &Path,
    key: &VerifierKey,
) -> Result<(Checkpoint, Vec<u8>), ProofError> {
    let path = dir.join(CHECKPOINT_FILE);
    let note = std::fs::read(&path).map_err(|source| ProofError::Io { path, source })?;
    let cp = Checkpoint::open(&note, key).map_err(|e| ProofError::Checkpoint(e.to_string()))?;
    Ok((cp, note))
}

/// The leaf hashes of the entries the latest checkpoint `cp` seals, checked against its root.
fn sealed_leaves(dir: &Path, cp: &Checkpoint) -> Result<Vec<Hash>, ProofError> {
    let leaves = leaf_hashes(dir, cp.size)?;
    if (leaves.len() as u64) < cp.size {
        return Err(ProofError::Truncated {
            have: leaves.len() as u64,
            want: cp.size,
        });
    }
    if merkle::root_of(&leaves) != cp.root {
        return Err(ProofError::Invalid(
            "the entries do not match the latest checkpoint (run `agp verify`)".into(),
        ));
    }
    Ok(leaves)
}

/// A tlog-proof for entry `seq` against the latest checkpoint (verified with `key` first).
pub fn build_inclusion(dir: &Path, seq: u64, key: &VerifierKey) -> Result<String, ProofError> {
    let (cp, note) = latest_checkpoint(dir, key)?;
    if seq >= cp.size {
        return Err(ProofError::NotSealed { seq, size: cp.size });
    }
    let leaves = sealed_leaves(dir, &cp)?;
    let path =
        merkle::inclusion_proof(&leaves, seq).map_err(|e| ProofError::Invalid(e.to_string()))?;
    let mut out = format!("{TLOG_PROOF_HEADER}\nindex {seq}\n");
    for h in path {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(
        std::str::from_utf8(&note).map_err(|_| ProofError::Checkpoint("not UTF-8".into()))?,
    );
    Ok(out)
}

/// A parsed, verified inclusion receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    pub index: u64,
    pub checkpoint: Checkpoint,
}

/// Checks a tlog-proof for `entry_line` (the exact line, with or without its newline) offline.
pub fn verify_inclusion(
    proof: &str,
    entry_line: &[u8],
    key: &VerifierKey,
) -> Result<Inclusion, ProofError> {
    let bad = |m: &str| ProofError::Malformed(m.to_string());
    let (head, note) = proof
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the checkpoint"))?;
    let mut lines = head.split('\n');
    if lines.next() != Some(TLOG_PROOF_HEADER) {
        return Err(bad("first line is not c2sp.org/tlog-proof@v1"));
    }
    let mut next = lines.next().ok_or_else(|| bad("no index line"))?;
    if next.starts_with("extra ") {
        next = lines.next().ok_or_else(|| bad("no index line"))?;
    }
    let index: u64 = next
        .strip_prefix("index ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("malformed index line"))?;
    let mut hashes = Vec::new();
    for l in lines {
        let h: Hash = B64
            .decode(l)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("proof line is not base64 of 32 bytes"))?;
        hashes.push(h);
    }
    let cp = Checkpoint::open(note.as_bytes(), key)
        .map_err(|e| ProofError::Checkpoint(e.to_string()))?;
    let line = entry_line.strip_suffix(b"\n").unwrap_or(entry_line);
    // The entry must claim the index it is proven at.
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| ProofError::Invalid(format!("entry is not JSON: {e}")))?;
    if value.get("seq").and_then(serde_json::Value::as_u64) != Some(index) {
        return Err(ProofError::Invalid(format!(
            "the entry's seq is not {index}"
        )));
    }
    merkle::verify_inclusion(&leaf_hash(line), index, cp.size, &hashes, &cp.root)
        .map_err(|e| ProofError::Invalid(e.to_string()))?;
    Ok(Inclusion {
        index,
        checkpoint: cp,
    })
}

/// Result of checking that the journal extends an older checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    pub old: Checkpoint,
    pub new: Checkpoint,
    pub proof: Vec<Hash>,
}

/// Proves that the journal's latest checkpoint extends `old_note` (both verified with `key`),
/// and checks the proof.
///
/// The old checkpoint may be signed by `key` or by one of `earlier_keys` (keys the journal
/// rotated away from, as a verified report lists them).
pub fn consistency(
    dir: &Path,
    old_note: &[u8],
    key: &VerifierKey,
    earlier_keys: &[VerifierKey],
) -> Result<Consistency, ProofError> {
    let old = match std::iter::once(key)
        .chain(earlier_keys)
        .find_map(|k| Checkpoint::open(old_note, k).ok())
    {
        Some(cp) => cp,
        None => Checkpoint::open(old_note, key)
            .map_err(|e| ProofError::Checkpoint(format!("old checkpoint: {e}")))?,
    };
    let (new, _) = latest_checkpoint(dir, key)?;
    if old.size > new.size {
        return Err(ProofError::Truncated {
            have: new.size,
            want: old.size,
        });
    }
    let leaves = sealed_leaves(dir, &new)?;
    let proof = merkle::consistency_proof(&leaves, old.size)
        .map_err(|e| ProofError::Invalid(e.to_string()))?;
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(|_| {
        ProofError::Invalid(format!(
            "the journal does not extend the old checkpoint: at size {} its root differs (the history was rewritten)",
            old.size
        ))
    })?;
    Ok(Consistency { old, new, proof })
}
