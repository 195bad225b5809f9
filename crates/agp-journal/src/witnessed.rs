//! The `cosignatures` file: checkpoints cosigned by witnesses, kept next to the journal, and the
//! check `agp verify --witness` runs over it.
//!
//! Each record is a complete signed note: the checkpoint text, the log's signature and one
//! witness's cosignature lines, exactly what a witness's monitoring endpoint serves, so any
//! signed-note verifier given the log and witness keys opens it. Records are appended (one
//! `write` and an fsync each); `checkpoint`, `checkpoints` and `checkpoint.sig` are never
//! touched, so the journal's own verifier, its SSHSIG and `agp journal prove` see no change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::cosig::{signature_lines, CosignatureCheck, WitnessKey};
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::{VerifierKey, SIG_PREFIX};
use crate::{CHECKPOINT_FILE, COSIGNATURES_FILE, ENTRIES_FILE};

/// Largest record read (one is well under 1 KiB).
const MAX_RECORD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WitnessedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Appends one cosigned checkpoint note to `dir/cosignatures` and makes it durable.
pub fn append(dir: &Path, cosigned_note: &[u8]) -> Result<(), WitnessedError> {
    let path = dir.join(COSIGNATURES_FILE);
    let werr = |source| WitnessedError::Write {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(werr)?;
    // One write: concurrent appenders (O_APPEND) never interleave inside a record.
    f.write_all(cosigned_note).map_err(werr)?;
    f.sync_data().map_err(werr)
}

/// The records of `dir/cosignatures` (none when the file does not exist); a torn last record
/// (a crash mid-append) is dropped.
pub fn records(dir: &Path) -> Result<Vec<Vec<u8>>, WitnessedError> {
    let mut out = Vec::new();
    for_each_record(dir, |r| {
        if let Record::Note(n) = r {
            out.push(n.to_vec());
        }
    })?;
    Ok(out)
}

/// One record as [`for_each_record`] hands it on.
pub enum Record<'a> {
    Note(&'a [u8]),
    /// Longer than any cosigned checkpoint: skipped (the file was damaged or edited).
    Oversized,
}

/// Streams the records of `dir/cosignatures` (memory stays bounded by one record, whatever
/// the file's length); a torn last record is dropped.
pub fn for_each_record(dir: &Path, f: impl FnMut(Record<'_>)) -> Result<(), WitnessedError> {
    for_each_note_in(&dir.join(COSIGNATURES_FILE), f)
}

/// Streams the concatenated signed notes of the file at `path` (none when it does not exist).
pub(crate) fn for_each_note_in(
    path: &Path,
    mut f: impl FnMut(Record<'_>),
) -> Result<(), WitnessedError> {
    let path = path.to_path_buf();
    let rerr = |source| WitnessedError::Read {
        path: path.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(rerr(e)),
    };
    if !file.metadata().map_err(rerr)?.is_file() {
        return Err(WitnessedError::Invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    split_records(BufReader::with_capacity(64 * 1024, file), &mut f).map_err(rerr)
}

/// Splits concatenated notes: text lines up to a blank line, then signature lines.
fn split_records<R: BufRead>(mut r: R, f: &mut impl FnMut(Record<'_>)) -> std::io::Result<()> {
    let mut cur = Vec::new();
    let mut oversized = false;
    let mut in_sigs = false;
    let mut line = Vec::new();
    // In the middle of a line too long to hold: its rest is skipped.
    let mut skipping = false;
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_RECORD as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            if n > MAX_RECORD {
                oversized = true;
                skipping = true;
                continue;
            }
            break; // end of file, or a torn last line
        }
        if skipping {
            skipping = false;
            continue;
        }
        if in_sigs && !line.starts_with(SIG_PREFIX.as_bytes()) {
            f(if oversized {
                Record::Oversized
            } else {
                Record::Note(&cur)
            });
            cur.clear();
            oversized = false;
            in_sigs = false;
        }
        if cur.len() + line.len() > MAX_RECORD {
            oversized = true;
        } else {
            cur.extend_from_slice(&line);
        }
        if line == b"\n" && !in_sigs {
            in_sigs = true;
        }
    }
    if in_sigs && !cur.ends_with(b"\n\n") {
        f(if oversized {
            Record::Oversized
        } else {
            Record::Note(&cur)
        });
    }
    Ok(())
}

/// What one witness's cosignatures amount to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WitnessStatus {
    pub witness: String,
    pub key_id: String,
    /// `valid`, `missing` or `invalid`, for the latest checkpoint.
    pub status: &'static str,
    /// When it cosigned the latest checkpoint.
    pub timestamp: Option<u64>,
    /// The largest checkpoint it validly cosigned.
    pub last_cosigned_size: Option<u64>,
}

/// The result of checking witness cosignatures against the journal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WitnessReport {
    pub checkpoint_size: u64,
    pub required: usize,
    pub valid: usize,
    pub witnesses: Vec<WitnessStatus>,
    /// One line each: what is wrong and what to do.
    pub problems: Vec<String>,
    pub ok: bool,
}

/// Checks that the journal's latest checkpoint (opened with `log_key`) carries valid
/// cosignatures from at least `min` of `witnesses`, that no cosignature by those witnesses is
/// forged, and that every checkpoint they cosigned is still part of this journal (a journal
/// rewritten or cut back after a witness saw it is caught here even when re-signed).
pub fn check(
    dir: &Path,
    log_key: &VerifierKey,
    witnesses: &[WitnessKey],
    min: usize,
) -> Result<WitnessReport, WitnessedError> {
    // Read as `agp verify` reads it: never blocking on a planted FIFO, bounded, under the
    // shared lock a live writer respects.
    let cp_path = dir.join(CHECKPOINT_FILE);
    let latest_note = crate::pair::read_published(dir)
        .map_err(|source| WitnessedError::Read {
            path: cp_path.clone(),
            source,
        })?
        .checkpoint
        .ok_or_else(|| {
            WitnessedError::Invalid(format!(
                "{} is missing: the journal has no checkpoint (run `agp verify`)",
                cp_path.display()
            ))
        })?;
    let latest = Checkpoint::open(&latest_note, log_key).map_err(|e| {
        WitnessedError::Invalid(format!(
            "the latest checkpoint does not verify with the journal key: {e} (run `agp verify`)"
        ))
    })?;
    // The signed text as written (extension lines included): what cosignatures cover.
    let latest_text = crate::note::parse_note(&latest_note)
        .map_err(|e| WitnessedError::Invalid(e.to_string()))?
        .text
        .to_vec();
    let mut problems = Vec::new();
    let mut statuses: Vec<WitnessStatus> = witnesses
        .iter()
        .map(|w| WitnessStatus {
            witness: w.name().to_string(),
            key_id: w.id_hex(),
            status: "missing",
            timestamp: None,
            last_cosigned_size: None,
        })
        .collect();
    // Sizes whose root the entries must reproduce: every checkpoint a witness vouched for.
    let mut vouched: BTreeMap<u64, (Hash, BTreeSet<usize>)> = BTreeMap::new();
    let mut forged = vec![false; witnesses.len()];
    let mut n = 0usize;
    for_each_record(dir, |record| {
        n += 1;
        let record = match record {
            Record::Note(r) => r,
            Record::Oversized => {
                problems.push(format!(
                    "{COSIGNATURES_FILE} record {n} is larger than any cosigned checkpoint: the file was damaged or edited"
                ));
                return;
            }
        };
        let Ok((text, _)) = signature_lines(record) else {
            problems.push(format!(
                "{COSIGNATURES_FILE} record {n} is not a signed note: the file was damaged or edited"
            ));
            return;
        };
        let Ok(cp) = Checkpoint::parse_text(text) else {
            return;
        };
        if cp.origin != latest.origin {
            return;
        }
        for (i, w) in witnesses.iter().enumerate() {
            let Ok(found) = w.check(record) else { continue };
            match found {
                CosignatureCheck::Missing => {}
                CosignatureCheck::Invalid(why) => {
                    forged[i] = true;
                    problems.push(format!(
                        "witness {} (key id {}): a cosignature on the checkpoint of size {} in {COSIGNATURES_FILE} is forged or altered ({why})",
                        w.name(),
                        w.id_hex(),
                        cp.size
                    ));
                }
                CosignatureCheck::Valid(c) => {
                    let s = &mut statuses[i];
                    s.last_cosigned_size = s.last_cosigned_size.max(Some(cp.size));
                    if text == latest_text.as_slice() {
                        s.status = "valid";
                        s.timestamp = s.timestamp.max(Some(c.timestamp));
                    }
                    let entry = vouched.entry(cp.size).or_insert((cp.root, BTreeSet::new()));
                    if entry.0 == cp.root {
                        entry.1.insert(i);
                    } else {
                        problems.push(format!(
                            "witness {} cosigned two different roots at size {}: the log forked (split view)",
                            w.name(),
                            cp.size
                        ));
                    }
                }
            }
        }
    })?;
    for (s, forged) in statuses.iter_mut().zip(forged) {
        if forged && s.status != "valid" {
            s.status = "invalid";
        }
    }
    check_roots(dir, &vouched, witnesses, &mut problems)?;
    let valid = statuses.iter().filter(|s| s.status == "valid").count();
    if valid < min {
        let have: Vec<String> = statuses
            .iter()
            .map(|s| match s.last_cosigned_size {
                Some(n) if s.status != "valid" => format!("{} last cosigned size {n}", s.witness),
                Some(_) => format!("{} cosigned it", s.witness),
                None => format!("{} never cosigned this log", s.witness),
            })
            .collect();
        problems.push(format!(
            "the latest checkpoint (size {}) has {valid} valid witness cosignature{} of the {min} required ({}): the entries it adds were not witnessed (is the daemon's [[journal.witness]] reachable?)",
            latest.size,
            if valid == 1 { "" } else { "s" },
            have.join("; ")
        ));
    }
    Ok(WitnessReport {
        checkpoint_size: latest.size,
        required: min,
        valid,
        witnesses: statuses,
        ok: problems.is_empty(),
        problems,
    })
}

/// Compares the journal's root at each vouched size with the one the witnesses cosigned.
fn check_roots(
    dir: &Path,
    vouched: &BTreeMap<u64, (Hash, BTreeSet<usize>)>,
    witnesses: &[WitnessKey],
    problems: &mut Vec<String>,
) -> Result<(), WitnessedError> {
    let Some(&max) = vouched.keys().next_back() else {
        return Ok(());
    };
    let names = |set: &BTreeSet<usize>| {
        set.iter()
            .map(|&i| witnesses[i].name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sizes: BTreeSet<u64> = vouched.keys().copied().collect();
    let (roots, entries) = roots_at(dir, &sizes)?;
    for (size, (root, who)) in vouched {
        if roots.get(size).is_some_and(|r| r != root) {
            problems.push(format!(
                "the journal was rewritten after it was witnessed: at size {size} its root differs from the checkpoint {} cosigned",
                names(who)
            ));
        }
    }
    if entries < max {
        problems.push(format!(
            "the journal was cut back after it was witnessed: it has {entries} entries, but {} cosigned a checkpoint of size {max}",
            names(&vouched[&max].1)
        ));
    }
    Ok(())
}

/// The journal's RFC 6962 root at each of `sizes` it reaches, streaming `entries.jsonl` once
/// (memory O(log n)), and how many entries it read (at most the largest size).
pub fn roots_at(
    dir: &Path,
    sizes: &BTreeSet<u64>,
) -> Result<(BTreeMap<u64, Hash>, u64), WitnessedError> {
    let mut out = BTreeMap::new();
    let Some(&max) = sizes.iter().next_back() else {
        return Ok((out, 0));
    };
    let path = dir.join(ENTRIES_FILE);
    let rerr = |source| WitnessedError::Read {
        path: path.clone(),
        source,
    };
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(&path).map_err(rerr)?);
    let mut frontier = Frontier::new();
    let mut line = Vec::new();
    if sizes.contains(&0) {
        out.insert(0, frontier.root());
    }
    while frontier.size() < max {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(rerr)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        frontier.push(leaf_hash(&line[..n - 1]));
        if sizes.contains(&frontier.size()) {
            out.insert(frontier.size(), frontier.root());
        }
    }
    Ok((out, frontier.size()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosig::WitnessSigner;
    use crate::note::SignerKey;
    use crate::{JournalOptions, JournalWriter};
    use agp_contracts::Journal as _;
    use base64::{engine::general_purpose::STANDARD as B64, Engine as _};

    struct J {
        dir: tempfile::TempDir,
        log: SignerKey,
        w1: WitnessSigner,
        w2: WitnessSigner,
    }

    impl J {
        fn new(n: usize) -> Self {
            let j = J {
                dir: tempfile::tempdir().unwrap(),
                log: SignerKey::generate("agp.test/j").unwrap(),
                w1: WitnessSigner::generate("w1").unwrap(),
                w2: WitnessSigner::generate("w2").unwrap(),
            };
            j.append(n);
            j
        }
        fn append(&self, n: usize) {
            let w =
                JournalWriter::open(self.dir.path(), self.log.clone(), JournalOptions::default())
                    .unwrap();
            for i in 0..n {
                w.append("t", None, serde_json::json!({ "i": i })).unwrap();
            }
            w.close().unwrap();
        }
        fn latest(&self) -> Vec<u8> {
            std::fs::read(self.dir.path().join(CHECKPOINT_FILE)).unwrap()
        }
        /// Stores `w`'s cosignature on `note`.
        fn cosign(&self, w: &WitnessSigner, note: &[u8]) {
            let text = crate::note::parse_note(note).unwrap().text.to_vec();
            let mut rec = note.to_vec();
            rec.extend_from_slice(w.cosign(&text, 1_700_000_000).as_bytes());
            append(self.dir.path(), &rec).unwrap();
        }
        fn check(&self, min: usize) -> WitnessReport {
            check(
                self.dir.path(),
                self.log.verifier(),
                &[self.w1.verifier().clone(), self.w2.verifier().clone()],
                min,
            )
            .unwrap()
        }
    }

    #[test]
    fn counts_valid_cosignatures_of_the_latest_checkpoint() {
        let j = J::new(3);
        let r = j.check(1);
        assert!(!r.ok && r.valid == 0, "{r:?}");
        j.cosign(&j.w1, &j.latest());
        let r = j.check(1);
        assert!(r.ok && r.valid == 1, "{r:?}");
        assert_eq!(r.witnesses[0].status, "valid");
        assert_eq!(r.witnesses[1].status, "missing");
        assert!(!j.check(2).ok);
        j.cosign(&j.w2, &j.latest());
        assert!(j.check(2).ok);
        // The journal grows: the new latest checkpoint is not witnessed yet.
        j.append(2);
        let r = j.check(1);
        assert!(!r.ok, "{r:?}");
        assert_eq!(r.witnesses[0].last_cosigned_size, Some(4));
    }

    #[test]
    fn a_journal_rewritten_or_cut_back_after_it_was_witnessed_is_caught() {
        let j = J::new(6);
        let witnessed = j.latest();
        j.cosign(&j.w1, &witnessed);
        // Rewritten: same size, another line, re-signed with the log key.
        let entries = j.dir.path().join(ENTRIES_FILE);
        let text = std::fs::read_to_string(&entries).unwrap();
        let forged = text.replacen("{\"i\":2}", "{\"i\":9}", 1);
        assert_ne!(text, forged);
        std::fs::write(&entries, &forged).unwrap();
        let r = j.check(1);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("was rewritten after it was witnessed")),
            "{r:?}"
        );
        // Cut back below the witnessed size.
        let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(&entries, cut).unwrap();
        let r = j.check(1);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("was cut back after it was witnessed")),
            "{r:?}"
        );
    }

    #[test]
    fn forged_cosignatures_and_split_views_are_reported() {
        let j = J::new(2);
        let note = j.latest();
        let text = crate::note::parse_note(&note).unwrap().text.to_vec();
        // A cosignature whose signature bytes were altered.
        let line = j.w1.cosign(&text, 1_700_000_000);
        let (head, b64) = line.trim_end().rsplit_once(' ').unwrap();
        let mut raw = B64.decode(b64).unwrap();
        raw[20] ^= 1;
        let mut rec = note.clone();
        rec.extend_from_slice(format!("{head} {}\n", B64.encode(raw)).as_bytes());
        append(j.dir.path(), &rec).unwrap();
        let r = j.check(1);
        assert!(!r.ok);
        assert_eq!(r.witnesses[0].status, "invalid");
        assert!(
            r.problems.iter().any(|p| p.contains("forged or altered")),
            "{r:?}"
        );
        // The same witness cosigning another root at the same size: a split view.
        let j = J::new(2);
        let cp =
            Checkpoint::parse_text(crate::note::parse_note(&j.latest()).unwrap().text).unwrap();
        let other = Checkpoint {
            root: [7; 32],
            ..cp
        }
        .sign(&j.log)
        .unwrap();
        j.cosign(&j.w1, &j.latest());
        j.cosign(&j.w1, other.as_bytes());
        let r = j.check(1);
        assert!(r.problems.iter().any(|p| p.contains("split view")), "{r:?}");
    }

    fn split_notes(data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        split_records(std::io::Cursor::new(data), &mut |r| match r {
            Record::Note(n) => out.push(n.to_vec()),
            Record::Oversized => out.push(b"<oversized>".to_vec()),
        })
        .unwrap();
        out
    }

    #[test]
    fn split_notes_keeps_whole_records_and_drops_a_torn_one() {
        let a = "o\n1\nAA==\n\n\u{2014} o abc\n\u{2014} w def\n";
        let b = "o\n2\nAA==\n\n\u{2014} o abc\n";
        assert_eq!(
            split_notes(format!("{a}{b}").as_bytes()),
            vec![a.as_bytes().to_vec(), b.as_bytes().to_vec()]
        );
        assert_eq!(
            split_notes(format!("{a}{b}o\n3\nAA==\n\n\u{2014} o ab").as_bytes()),
            vec![a.as_bytes().to_vec(), b.as_bytes().to_vec()]
        );
        assert_eq!(
            split_notes(format!("{a}o\n3\nAA==\n\n").as_bytes()),
            vec![a.as_bytes().to_vec()]
        );
        // A record too long to hold is reported as such, and the next one still read.
        let big = format!(
            "o\n9\nAA==\n\n\u{2014} o {}\n",
            "x".repeat(MAX_RECORD + 5000)
        );
        assert_eq!(
            split_notes(format!("{big}{a}{b}").as_bytes()),
            vec![
                b"<oversized>".to_vec(),
                a.as_bytes().to_vec(),
                b.as_bytes().to_vec()
            ]
        );
    }
}
