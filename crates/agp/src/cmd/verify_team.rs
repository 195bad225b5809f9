//! `agp verify --team`: every member's published checkpoints (team mode's shared database)
//! against the members' journals.
//!
//! For a member whose journal it can read (`--member-journal DIR`, default this home's), the
//! key is the one that journal names (its genesis entry and rotations), never the key column
//! of the published rows, which the publisher asserts itself: every published note must be
//! signed by that key, and the journal must still reproduce the published root at each
//! published size (its Merkle tree recomputed, so it extends every published checkpoint up to
//! its current root), else the member cut its journal back or rewrote it after publishing.
//! For a member whose journal it cannot read it says so and checks the published series
//! alone: each note signed by the key published with it, one key per member, and no two
//! different signed checkpoints of one size (a fork).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use agp_daemon::store::{PgLedger, PublishedRow};
use agp_journal::checkpoint::Checkpoint;
use agp_journal::merkle::Hash;
use agp_journal::published::Published;
use agp_journal::{verify_dir, VerifierKey, VerifyOptions, ENTRIES_FILE};
use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::exit::Exit;
use crate::home::Home;

/// One thing wrong, about one member's checkpoint (or its journal when `size` is `None`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The publishing members (`[state] member`) of the rows concerned.
    pub member: String,
    pub origin: String,
    pub size: Option<u64>,
    pub what: String,
}

/// What was checked for one origin (one member journal).
#[derive(Debug, Serialize)]
pub struct MemberSummary {
    pub origin: String,
    pub members: Vec<String>,
    pub hosts: Vec<String>,
    /// The journal read, when one was.
    pub journal: Option<PathBuf>,
    pub published: usize,
    pub published_size: u64,
    /// Entries of the journal read (None when none was).
    pub entries: Option<u64>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct TeamReport {
    pub ok: bool,
    pub members: Vec<MemberSummary>,
    pub problems: Vec<Problem>,
}

/// A readable member journal: where, and the keys it names (genesis first).
struct MemberJournal {
    dir: PathBuf,
    keys: Vec<VerifierKey>,
    intact: bool,
    errors: usize,
}

/// The key a journal's genesis entry (`journal.created`) names.
fn genesis_key(dir: &Path) -> Result<VerifierKey> {
    let path = dir.join(ENTRIES_FILE);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot read the member journal {}", path.display()))?;
    let mut first = String::new();
    // At most 64 KiB of the first line: a genesis entry is small.
    std::io::Read::take(std::io::BufReader::new(file), 64 * 1024)
        .read_line(&mut first)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(first.trim_end())
        .with_context(|| format!("{}: the first entry is not JSON", path.display()))?;
    if v["kind"] != agp_journal::event::JOURNAL_CREATED {
        bail!(
            "{}: the first entry is not {}",
            path.display(),
            agp_journal::event::JOURNAL_CREATED
        );
    }
    let key = v["body"]["key"]
        .as_str()
        .with_context(|| format!("{}: the genesis entry names no key", path.display()))?;
    VerifierKey::parse(key)
        .map_err(|e| anyhow::anyhow!("{}: the genesis key is not a key: {e}", path.display()))
}

fn open_member_journal(dir: &Path) -> Result<MemberJournal> {
    let genesis = genesis_key(dir)?;
    // The journal's own integrity, with the key it names (the keys in force come from its
    // genesis entry and its signed rotations).
    let report = verify_dir(
        dir,
        &VerifyOptions {
            trusted_key: genesis.clone(),
            trusted_checkpoint: None,
        },
    )
    .with_context(|| format!("cannot verify the member journal {}", dir.display()))?;
    let mut keys: Vec<VerifierKey> = report.keys.iter().map(|k| k.verifier.clone()).collect();
    if keys.is_empty() {
        keys.push(genesis);
    }
    Ok(MemberJournal {
        dir: dir.to_path_buf(),
        keys,
        intact: report.intact,
        errors: report.errors().count(),
    })
}

fn join_sorted(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Checks every origin's published rows, with its journal where one was read.
fn check(rows: &[PublishedRow], journals: &[MemberJournal]) -> Result<TeamReport> {
    let mut by_origin: BTreeMap<&str, Vec<&PublishedRow>> = BTreeMap::new();
    for r in rows {
        by_origin.entry(r.origin.as_str()).or_default().push(r);
    }
    let mut problems = Vec::new();
    let mut members = Vec::new();
    for j in journals {
        let origin = j.keys[0].name();
        if !by_origin.contains_key(origin) {
            members.push(MemberSummary {
                origin: origin.to_owned(),
                members: Vec::new(),
                hosts: Vec::new(),
                journal: Some(j.dir.clone()),
                published: 0,
                published_size: 0,
                entries: None,
                ok: true,
            });
        }
    }
    for (origin, rows) in by_origin {
        let journal = journals.iter().find(|j| j.keys[0].name() == origin);
        let names: BTreeSet<String> = rows.iter().map(|r| r.member.clone()).collect();
        let hosts: BTreeSet<String> = rows.iter().map(|r| r.host.clone()).collect();
        let before = problems.len();
        let mut problem = |rows: &[&PublishedRow], size: Option<u64>, what: String| {
            let who: BTreeSet<String> = rows.iter().map(|r| r.member.clone()).collect();
            problems.push(Problem {
                member: if who.is_empty() {
                    join_sorted(&names)
                } else {
                    join_sorted(&who)
                },
                origin: origin.to_owned(),
                size,
                what,
            });
        };
        // What each row's note says, and whether it says what the row's columns say.
        let mut signed: Vec<(&PublishedRow, Published)> = Vec::new();
        let keys: Vec<VerifierKey> = if let Some(j) = journal {
            j.keys.clone()
        } else {
            let published: BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
            if published.len() > 1 {
                problem(
                    &[],
                    None,
                    format!(
                        "published under {} different keys and its journal is not readable here to say which is its own (pass --member-journal)",
                        published.len()
                    ),
                );
            }
            Vec::new()
        };
        for r in &rows {
            let p = match Published::parse(r.note.as_bytes()) {
                Ok(p)
                    if p.origin == r.origin
                        && p.size == r.size
                        && hex::encode(p.root) == r.root =>
                {
                    p
                }
                Ok(_) => {
                    problem(&[r], Some(r.size), "the published note does not say what its row says (origin, size or root): the row was altered".into());
                    continue;
                }
                Err(e) => {
                    problem(
                        &[r],
                        Some(r.size),
                        format!("the published note is not a checkpoint: {e}"),
                    );
                    continue;
                }
            };
            let ok = if journal.is_some() {
                keys.iter()
                    .any(|k| Checkpoint::open(r.note.as_bytes(), k).is_ok())
            } else {
                VerifierKey::parse(&r.key).is_ok_and(|k| {
                    k.name() == origin && Checkpoint::open(r.note.as_bytes(), &k).is_ok()
                })
            };
            if !ok {
                problem(
                    &[r],
                    Some(r.size),
                    if journal.is_some() {
                        "the published checkpoint is not signed by the key the member's journal names: it was forged, or the journal was re-keyed after publishing".into()
                    } else {
                        "the published checkpoint is not signed by the key published with it: it was forged".into()
                    },
                );
                continue;
            }
            if let Some(j) = journal {
                if !j.keys.iter().any(|k| k.to_string() == r.key) {
                    problem(
                        &[r],
                        Some(r.size),
                        "published with a key the member's journal does not name".into(),
                    );
                }
            }
            signed.push((r, p));
        }
        // A fork: two different signed checkpoints of one size.
        let mut at: BTreeMap<u64, Vec<&(&PublishedRow, Published)>> = BTreeMap::new();
        for s in &signed {
            at.entry(s.1.size).or_default().push(s);
        }
        for (size, list) in &at {
            let roots: BTreeSet<Hash> = list.iter().map(|(_, p)| p.root).collect();
            if roots.len() > 1 {
                let rs: Vec<&PublishedRow> = list.iter().map(|(r, _)| *r).collect();
                problem(
                    &rs,
                    Some(*size),
                    format!(
                        "fork: {} different signed checkpoints of this size were published (roots {})",
                        roots.len(),
                        roots.iter().map(|r| hex::encode(&r[..6])).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        let published_size = signed.iter().map(|(_, p)| p.size).max().unwrap_or(0);
        let mut entries = None;
        if let Some(j) = journal {
            if !j.intact {
                problem(
                    &[],
                    None,
                    format!(
                        "the member's journal {} does not verify ({} error{}; run `agp verify --journal {}` for them)",
                        j.dir.display(),
                        j.errors,
                        if j.errors == 1 { "" } else { "s" },
                        j.dir.display()
                    ),
                );
            }
            let sizes: BTreeSet<u64> = at.keys().copied().collect();
            let (roots, n) = agp_journal::witnessed::roots_at(&j.dir, &sizes)
                .with_context(|| format!("cannot read the member journal {}", j.dir.display()))?;
            entries = Some(n);
            for (size, list) in &at {
                let rs: Vec<&PublishedRow> = list.iter().map(|(r, _)| *r).collect();
                match roots.get(size) {
                    None => problem(
                        &rs,
                        Some(*size),
                        format!("the journal was cut back after publishing: it has {n} entries, but this checkpoint of size {size} was published"),
                    ),
                    Some(root) => {
                        if list.iter().any(|(_, p)| p.root != *root) {
                            problem(
                                &rs,
                                Some(*size),
                                "the journal no longer extends this published checkpoint: its root at this size differs (cut back and regrown, or rewritten, after publishing)".into(),
                            );
                        }
                    }
                }
            }
        }
        members.push(MemberSummary {
            origin: origin.to_owned(),
            members: names.into_iter().collect(),
            hosts: hosts.into_iter().collect(),
            journal: journal.map(|j| j.dir.clone()),
            published: signed.len(),
            published_size,
            entries,
            ok: problems.len() == before,
        });
    }
    members.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(TeamReport {
        ok: problems.is_empty(),
        members,
        problems,
    })
}

/// Reads every published checkpoint from the shared database at `url`.
fn read_published(url: &str) -> Result<Vec<PublishedRow>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for the shared state")?;
    rt.block_on(async {
        let ledger = PgLedger::reader(url, "verify").context("cannot open the shared state")?;
        ledger.all().await.context(
            "cannot read the published checkpoints from the shared state (is the PostgreSQL \
                 at [state] url or --state-url up and at agp's schema?)",
        )
    })
}

pub fn run(home: &Home, state_url: Option<&str>, journals: &[PathBuf], json: bool) -> Result<Exit> {
    let url = match state_url {
        Some(u) => u.to_owned(),
        None => match crate::app::state::shared(home)? {
            Some((url, _)) => url,
            None => bail!(
                "no shared state to verify against: set [state] url in {} or pass --state-url postgres://…",
                home.config().display()
            ),
        },
    };
    let dirs: Vec<PathBuf> = if journals.is_empty() {
        let own = home.journal_dir();
        if own.join(ENTRIES_FILE).is_file() {
            vec![own]
        } else {
            Vec::new()
        }
    } else {
        journals.to_vec()
    };
    let journals = dirs
        .iter()
        .map(|d| open_member_journal(d))
        .collect::<Result<Vec<_>>>()?;
    let rows = read_published(&url)?;
    let report = check(&rows, &journals)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            println!(
                "NOT CONSISTENT: member {} (origin {}{}): {}",
                p.member,
                p.origin,
                p.size.map(|s| format!(", size {s}")).unwrap_or_default(),
                p.what
            );
        }
        for m in &report.members {
            let how = match (&m.journal, m.entries) {
                (Some(dir), Some(n)) => format!("journal {} ({n} entries) read", dir.display()),
                (Some(dir), None) => format!("journal {} read; it published nothing", dir.display()),
                (None, _) => "journal not readable here: the published series alone was checked (signatures, forks)".into(),
            };
            println!(
                "{} {} [{}]: {} published checkpoint{} up to size {}; {how}",
                if m.ok { "ok" } else { "BAD" },
                m.origin,
                if m.members.is_empty() {
                    "-".into()
                } else {
                    m.members.join(",")
                },
                m.published,
                if m.published == 1 { "" } else { "s" },
                m.published_size,
            );
        }
        if report.ok {
            println!(
                "team: {} member journal{} consistent with what they published",
                report.members.len(),
                if report.members.len() == 1 { "" } else { "s" }
            );
        } else {
            println!(
                "team: {} problem{}",
                report.problems.len(),
                if report.problems.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if report.ok { Exit::Ok } else { Exit::Bad })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::Journal as _;
    use agp_journal::{JournalOptions, JournalWriter, SignerKey, CHECKPOINT_FILE};

    /// A journal of `n` entries (`tag` makes their content differ) signed by `key`; its
    /// latest checkpoint as a published row of `member`.
    fn journal(dir: &Path, key: &SignerKey, n: usize, tag: &str, member: &str) -> PublishedRow {
        let w = JournalWriter::open(dir, key.clone(), JournalOptions::default()).unwrap();
        for i in 0..n {
            w.append("t", None, serde_json::json!({ "i": i, "tag": tag }))
                .unwrap();
        }
        w.close().unwrap();
        let note = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap();
        let p = Published::parse(note.as_bytes()).unwrap();
        PublishedRow {
            id: 0,
            member: member.into(),
            host: "h".into(),
            origin: p.origin,
            size: p.size,
            root: hex::encode(p.root),
            note,
            key: key.verifier().to_string(),
            published_at_ms: 0,
        }
    }

    fn whats(r: &TeamReport) -> Vec<(Option<u64>, String)> {
        r.problems
            .iter()
            .map(|p| (p.size, p.what.clone()))
            .collect()
    }

    #[test]
    fn two_signed_checkpoints_of_one_size_are_a_fork_with_or_without_the_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("team/alice").unwrap();
        // The same key signs two different histories of the same size (a member that forked
        // its journal and published both).
        let a = journal(&tmp.path().join("a"), &key, 3, "a", "alice");
        let b = journal(&tmp.path().join("b"), &key, 3, "b", "alice");
        assert_eq!(a.size, b.size);
        assert_ne!(a.root, b.root);
        let rows = [a.clone(), b];

        let alone = check(&rows, &[]).unwrap();
        assert!(!alone.ok);
        assert!(
            whats(&alone)
                .iter()
                .any(|(s, w)| *s == Some(a.size) && w.starts_with("fork: 2 different")),
            "{alone:?}"
        );
        let j = open_member_journal(&tmp.path().join("a")).unwrap();
        let with = check(&rows, &[j]).unwrap();
        let w = whats(&with);
        assert!(w.iter().any(|(_, w)| w.starts_with("fork")), "{with:?}");
        assert!(
            w.iter().any(|(_, w)| w.contains("no longer extends")),
            "{with:?}"
        );
        // The genuine row alone is consistent.
        let j = open_member_journal(&tmp.path().join("a")).unwrap();
        assert!(check(&[a], &[j]).unwrap().ok);
    }

    #[test]
    fn a_row_whose_columns_differ_from_its_note_or_whose_key_is_not_the_journals_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("team/bob").unwrap();
        let row = journal(&tmp.path().join("bob"), &key, 2, "x", "bob");
        let mut altered = row.clone();
        altered.root = "00".repeat(32);
        let r = check(&[altered], &[]).unwrap();
        assert!(
            whats(&r)
                .iter()
                .any(|(_, w)| w.contains("the row was altered")),
            "{r:?}"
        );

        // Another key claiming Bob's origin, published with its own (valid) signature: the
        // series alone sees two keys; Bob's journal says which one is his.
        let impostor = SignerKey::generate("team/bob").unwrap();
        let fake = journal(&tmp.path().join("fake"), &impostor, 5, "y", "bob");
        let rows = [row, fake.clone()];
        let r = check(&rows, &[]).unwrap();
        assert!(
            whats(&r)
                .iter()
                .any(|(_, w)| w.contains("2 different keys")),
            "{r:?}"
        );
        let j = open_member_journal(&tmp.path().join("bob")).unwrap();
        let r = check(&rows, &[j]).unwrap();
        assert!(
            whats(&r).iter().any(|(s, w)| *s == Some(fake.size)
                && w.contains("not signed by the key the member's journal names")),
            "{r:?}"
        );
    }
}
