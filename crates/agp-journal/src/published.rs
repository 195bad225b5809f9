//! Checkpoints team members published, and the check `agp verify --team` runs with them: does
//! a member's journal still extend every checkpoint it published?
//!
//! In team mode each daemon keeps its own signed journal and publishes every checkpoint to a
//! shared place. A member that later cuts back or rewrites its journal (even re-signing it with
//! its own key) no longer reproduces the roots it published. Where the checkpoints are
//! published is behind [`CheckpointLedger`]; [`DirLedger`] keeps them in a folder (one
//! append-only file of notes per origin), and a shared database implements the same trait.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::Checkpoint;
use crate::merkle::Hash;
use crate::note::{parse_note, VerifierKey};
use crate::witnessed::{roots_at, Record, WitnessedError};

/// One published checkpoint: its signed note and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub note: Vec<u8>,
}

impl Published {
    /// Parses a signed checkpoint note (its signatures are checked by [`check_member`], with
    /// a key the auditor trusts, never at publication).
    pub fn parse(note: &[u8]) -> Result<Self, WitnessedError> {
        let p = parse_note(note).map_err(|e| WitnessedError::Invalid(e.to_string()))?;
        let cp =
            Checkpoint::parse_text(p.text).map_err(|e| WitnessedError::Invalid(e.to_string()))?;
        Ok(Self {
            origin: cp.origin,
            size: cp.size,
            root: cp.root,
            note: note.to_vec(),
        })
    }
}

/// Where members publish their checkpoints.
pub trait CheckpointLedger {
    /// Records a member's signed checkpoint.
    fn publish(&self, note: &[u8]) -> Result<(), WitnessedError>;
    /// The origins (members) that published anything.
    fn origins(&self) -> Result<Vec<String>, WitnessedError>;
    /// Everything `origin` published, in publication order.
    fn published(&self, origin: &str) -> Result<Vec<Published>, WitnessedError>;
}

/// A ledger in a folder: `<dir>/<sha256(origin) hex>.checkpoints` holds that member's notes,
/// appended (one write and an fsync each), `<dir>/<sha256(origin) hex>.origin` its origin.
#[derive(Debug, Clone)]
pub struct DirLedger {
    dir: PathBuf,
}

impl DirLedger {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn stem(origin: &str) -> String {
        hex::encode(Sha256::digest(origin.as_bytes()))
    }
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> WitnessedError + '_ {
    move |source| WitnessedError::Write {
        path: path.to_path_buf(),
        source,
    }
}

impl CheckpointLedger for DirLedger {
    fn publish(&self, note: &[u8]) -> Result<(), WitnessedError> {
        let p = Published::parse(note)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(write_err(&self.dir))?;
        let stem = Self::stem(&p.origin);
        let name = self.dir.join(format!("{stem}.origin"));
        if !name.exists() {
            std::fs::write(&name, format!("{}\n", p.origin)).map_err(write_err(&name))?;
        }
        let path = self.dir.join(format!("{stem}.checkpoints"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(write_err(&path))?;
        f.write_all(note).map_err(write_err(&path))?;
        f.sync_data().map_err(write_err(&path))
    }

    fn origins(&self) -> Result<Vec<String>, WitnessedError> {
        let list = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(WitnessedError::Read {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut out = BTreeSet::new();
        for e in list.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "origin") {
                if let Ok(o) = std::fs::read_to_string(&path) {
                    let o = o.trim_end_matches('\n');
                    // The file name must be this origin's: a renamed file is not trusted.
                    if path.file_stem().and_then(|s| s.to_str()) == Some(&Self::stem(o)) {
                        out.insert(o.to_string());
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn published(&self, origin: &str) -> Result<Vec<Published>, WitnessedError> {
        let path = self.dir.join(format!("{}.checkpoints", Self::stem(origin)));
        let mut out = Vec::new();
        let mut bad = None;
        crate::witnessed::for_each_note_in(&path, |rec| match rec {
            Record::Note(n) => match Published::parse(n) {
                Ok(p) if p.origin == origin => out.push(p),
                Ok(_) => bad = Some("a checkpoint of another origin".to_string()),
                Err(e) => bad = Some(e.to_string()),
            },
            Record::Oversized => bad = Some("an oversized record".into()),
        })?;
        match bad {
            Some(why) => Err(WitnessedError::Invalid(format!(
                "{} holds {why}: it was damaged or edited",
                path.display()
            ))),
            None => Ok(out),
        }
    }
}

/// The outcome for one member.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberReport {
    pub origin: String,
    /// Published checkpoints checked.
    pub published: usize,
    /// The largest published size.
    pub published_size: u64,
    /// Entries in the member's journal (read up to the largest published size).
    pub entries: u64,
    /// One line each: what is wrong.
    pub problems: Vec<String>,
    pub ok: bool,
}

/// Checks that the journal in `dir` (the member whose key is `key`) still extends every
/// checkpoint in `published`: each must be signed by `key` (or one of `earlier_keys`, before
/// a rotation), and the journal's root at its size must be the published root.
pub fn check_member(
    dir: &Path,
    key: &VerifierKey,
    earlier_keys: &[VerifierKey],
    published: &[Published],
) -> Result<MemberReport, WitnessedError> {
    let mut problems = Vec::new();
    let mut sizes = BTreeSet::new();
    let mut vouched = Vec::new();
    for p in published {
        let signed = std::iter::once(key)
            .chain(earlier_keys)
            .any(|k| Checkpoint::open(&p.note, k).is_ok());
        if !signed {
            problems.push(format!(
                "a checkpoint published as {} (size {}) is not signed by the member's key {}: it was forged, or the key given is not the member's",
                p.origin,
                p.size,
                key.id_hex()
            ));
            continue;
        }
        sizes.insert(p.size);
        vouched.push(p);
    }
    let (roots, entries) = roots_at(dir, &sizes)?;
    let published_size = vouched.iter().map(|p| p.size).max().unwrap_or(0);
    let mut reported = BTreeSet::new();
    for p in &vouched {
        if roots.get(&p.size).is_some_and(|r| *r != p.root) && reported.insert(p.size) {
            problems.push(format!(
                "{}: the journal no longer extends what it published: at size {} its root differs from the published checkpoint (rewritten after publishing)",
                key.name(),
                p.size
            ));
        }
    }
    if entries < published_size {
        problems.push(format!(
            "{}: the journal was cut back after publishing: it has {entries} entries, but it published a checkpoint of size {published_size}",
            key.name()
        ));
    }
    Ok(MemberReport {
        origin: key.name().to_string(),
        published: vouched.len(),
        published_size,
        entries,
        ok: problems.is_empty(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::SignerKey;
    use crate::{JournalOptions, JournalWriter, CHECKPOINT_FILE, ENTRIES_FILE};
    use agp_contracts::Journal as _;

    fn grow(dir: &Path, key: &SignerKey, n: usize, ledger: &DirLedger) {
        let w = JournalWriter::open(dir, key.clone(), JournalOptions::default()).unwrap();
        for i in 0..n {
            w.append("t", None, serde_json::json!({ "i": i })).unwrap();
        }
        w.close().unwrap();
        ledger
            .publish(&std::fs::read(dir.join(CHECKPOINT_FILE)).unwrap())
            .unwrap();
    }

    #[test]
    fn a_member_cut_back_or_rewritten_after_publishing_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = DirLedger::new(&tmp.path().join("ledger"));
        let (alice, bob) = (
            SignerKey::generate("team/alice").unwrap(),
            SignerKey::generate("team/bob").unwrap(),
        );
        let (ja, jb) = (tmp.path().join("alice"), tmp.path().join("bob"));
        grow(&ja, &alice, 3, &ledger);
        grow(&ja, &alice, 4, &ledger);
        grow(&jb, &bob, 2, &ledger);
        assert_eq!(ledger.origins().unwrap(), vec!["team/alice", "team/bob"]);
        let pa = ledger.published("team/alice").unwrap();
        assert_eq!(pa.len(), 2);
        let r = check_member(&ja, alice.verifier(), &[], &pa).unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!(r.published_size, 8);

        // Alice's machine cuts its journal back to 5 entries and regrows it: intact to its
        // own key, but it no longer reproduces what it published.
        let entries = ja.join(ENTRIES_FILE);
        let text = std::fs::read_to_string(&entries).unwrap();
        let cut: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
        std::fs::write(&entries, cut).unwrap();
        let r = check_member(&ja, alice.verifier(), &[], &pa).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("cut back after publishing")),
            "{r:?}"
        );
        std::fs::write(&entries, text.replacen("{\"i\":3}", "{\"i\":33}", 1)).unwrap();
        let r = check_member(&ja, alice.verifier(), &[], &pa).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("no longer extends what it published")),
            "{r:?}"
        );

        // Bob's checkpoints checked with Alice's key: not his.
        let pb = ledger.published("team/bob").unwrap();
        let r = check_member(&jb, alice.verifier(), &[], &pb).unwrap();
        assert!(!r.ok && r.published == 0, "{r:?}");
        let r = check_member(&jb, bob.verifier(), &[], &pb).unwrap();
        assert!(r.ok, "{r:?}");
    }
}
