//! The latest checkpoint, as the index reads it: which rows a signed checkpoint covers.

use std::path::Path;

use agp_journal::checkpoint::Checkpoint;
use agp_journal::merkle::to_base64;
use agp_journal::note::{parse_note, VerifierKey};
use rusqlite::{Connection, OptionalExtension as _};

use crate::{reader, schema, CheckpointInfo, IndexError};

/// A checkpoint note is a few hundred bytes; anything much larger is not one.
const MAX_NOTE: u64 = 64 << 10;

/// The size the checkpoint file names, unchecked (only to know which tree root to keep).
pub fn peek_size(dir: &Path) -> Option<u64> {
    let note = reader::read_small(&dir.join(agp_journal::CHECKPOINT_FILE), MAX_NOTE)
        .ok()
        .flatten()?;
    let parsed = parse_note(&note).ok()?;
    Checkpoint::parse_text(parsed.text).ok().map(|c| c.size)
}

/// Re-reads the checkpoint file and records what it covers of the `entries` indexed.
pub fn refresh(conn: &Connection, dir: &Path, entries: u64) -> Result<(), IndexError> {
    let note = match reader::read_small(&dir.join(agp_journal::CHECKPOINT_FILE), MAX_NOTE) {
        Ok(n) => n,
        // An unreadable checkpoint covers nothing; it is not a reason to stop indexing.
        Err(e) => Some(format!("unreadable: {e}").into_bytes()),
    };
    let previous: Option<CheckpointInfo> =
        schema::get::<String>(conn, "checkpoint")?.and_then(|s| serde_json::from_str(&s).ok());
    let info = note
        .map(|n| evaluate(conn, &n, previous.as_ref()))
        .transpose()?;
    let covered = match &info {
        Some(i) if i.signature_ok && i.root_matches != Some(false) => i.size.min(entries),
        _ => 0,
    };
    let stored: Option<i64> = schema::get(conn, "covered")?;
    if info == previous && stored == Some(covered as i64) {
        return Ok(());
    }
    if let Some(i) = &info {
        // Checkpoints only grow: roots of smaller trees will not be asked for again.
        conn.prepare_cached("DELETE FROM roots WHERE size < ?1")?
            .execute([i.size.min(entries) as i64])?;
    }
    schema::set(
        conn,
        "checkpoint",
        info.as_ref().map(serde_json::to_string).transpose()?,
    )?;
    schema::set(conn, "covered", covered as i64)?;
    Ok(())
}

fn evaluate(
    conn: &Connection,
    note: &[u8],
    previous: Option<&CheckpointInfo>,
) -> Result<CheckpointInfo, IndexError> {
    let text = String::from_utf8_lossy(note).into_owned();
    let bad = |problem: String| CheckpointInfo {
        size: 0,
        root: String::new(),
        note: text.clone(),
        signature_ok: false,
        root_matches: None,
        problem: Some(problem),
    };
    let cp = match parse_note(note).map(|p| Checkpoint::parse_text(p.text)) {
        Ok(Ok(cp)) => cp,
        Ok(Err(e)) => return Ok(bad(e.to_string())),
        Err(e) => return Ok(bad(e.to_string())),
    };
    let key: Option<String> = schema::get(conn, "key")?;
    let signature = match key.as_deref().map(VerifierKey::parse) {
        None => Err("the journal names no key (no journal.created entry indexed)".to_string()),
        Some(Err(e)) => Err(format!("the journal's key does not parse: {e}")),
        Some(Ok(k)) => Checkpoint::open(note, &k)
            .map(|_| ())
            .map_err(|e| format!("does not open with the journal's key {}: {e}", k.id_hex())),
    };
    let ours: Option<Vec<u8>> = conn
        .prepare_cached("SELECT root FROM roots WHERE size = ?1")?
        .query_row([cp.size as i64], |r| r.get(0))
        .optional()?;
    let mut root_matches = ours.map(|r| r == cp.root);
    if root_matches.is_none() {
        // Compared on an earlier catch-up (that root may have been pruned since).
        root_matches = previous
            .filter(|p| p.note == text)
            .and_then(|p| p.root_matches);
    }
    let problem = match (&signature, root_matches) {
        (Err(e), _) => Some(e.clone()),
        (Ok(()), Some(false)) => {
            Some("its root does not match the indexed lines: run `agp verify`".to_string())
        }
        _ => None,
    };
    Ok(CheckpointInfo {
        size: cp.size,
        root: to_base64(&cp.root),
        note: text,
        signature_ok: signature.is_ok(),
        root_matches,
        problem,
    })
}
