//! The witness against adversarial submissions: forks, rollbacks, forged proofs and
//! signatures, unknown logs, racing requests.

use std::sync::Arc;

use agp_journal::checkpoint::Checkpoint;
use agp_journal::cosig::{CosignatureCheck, WitnessSigner};
use agp_journal::merkle::{self, leaf_hash, Hash};
use agp_journal::note::SignerKey;

use crate::request::build;
use crate::state::FileStore;
use crate::{AddError, Witness};

const ORIGIN: &str = "agp.test/journal";

fn leaves(tag: &str, n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("{tag}{i}").as_bytes()))
        .collect()
}

fn note(log: &SignerKey, leaves: &[Hash]) -> String {
    Checkpoint {
        origin: log.name().to_string(),
        size: leaves.len() as u64,
        root: merkle::root_of(leaves),
    }
    .sign(log)
    .unwrap()
}

fn body(log: &SignerKey, tree: &[Hash], old: usize) -> Vec<u8> {
    let proof = merkle::consistency_proof(tree, old as u64).unwrap();
    build(old as u64, &proof, note(log, tree).as_bytes())
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: SignerKey,
    signer: WitnessSigner,
    witness: Arc<Witness>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = SignerKey::generate(ORIGIN).unwrap();
    let signer = WitnessSigner::generate("witness.test/w1").unwrap();
    let store = FileStore::open(&dir.path().join("state")).unwrap();
    let witness = Witness::new(
        signer.clone(),
        std::slice::from_ref(log.verifier()),
        Box::new(store),
    )
    .with_clock(|| 1_700_000_000);
    Fixture {
        _dir: dir,
        log,
        signer,
        witness: Arc::new(witness),
    }
}

#[test]
fn cosigns_a_growing_log_and_the_cosignature_verifies() {
    let f = fixture();
    let tree = leaves("a", 9);
    let line = f
        .witness
        .add_checkpoint(&body(&f.log, &tree[..3], 0))
        .unwrap();
    let cosigned = format!("{}{line}", note(&f.log, &tree[..3]));
    assert!(matches!(
        f.signer.verifier().check(cosigned.as_bytes()).unwrap(),
        CosignatureCheck::Valid(c) if c.timestamp == 1_700_000_000
    ));
    f.witness
        .add_checkpoint(&body(&f.log, &tree[..7], 3))
        .unwrap();
    f.witness.add_checkpoint(&body(&f.log, &tree, 7)).unwrap();
    // The same checkpoint again is cosigned again (the record stays).
    f.witness.add_checkpoint(&body(&f.log, &tree, 9)).unwrap();
    let stored = f.witness.latest(ORIGIN).unwrap().unwrap();
    assert!(stored.starts_with(note(&f.log, &tree).as_bytes()));
    assert!(matches!(
        f.signer.verifier().check(&stored).unwrap(),
        CosignatureCheck::Valid(_)
    ));
}

#[test]
fn a_stale_old_size_gets_409_with_the_witness_size() {
    let f = fixture();
    let tree = leaves("a", 8);
    f.witness
        .add_checkpoint(&body(&f.log, &tree[..5], 0))
        .unwrap();
    for old in [0, 3, 6] {
        let err = f
            .witness
            .add_checkpoint(&body(&f.log, &tree, old))
            .unwrap_err();
        assert!(matches!(err, AddError::Conflict(5)), "{old}: {err}");
        assert_eq!(err.status(), 409);
    }
}

#[test]
fn a_journal_cut_back_and_regrown_is_refused() {
    let f = fixture();
    let honest = leaves("a", 6);
    f.witness.add_checkpoint(&body(&f.log, &honest, 0)).unwrap();
    // The log rewrites history from entry 4 on and grows past where it was: whatever proof
    // it builds from its new tree does not lead from the cosigned root.
    let mut forked = honest[..4].to_vec();
    forked.extend(leaves("evil", 5));
    let err = f
        .witness
        .add_checkpoint(&body(&f.log, &forked, 6))
        .unwrap_err();
    assert_eq!(err.status(), 422, "{err}");
    // Same size, another root.
    let mut same_size = honest[..5].to_vec();
    same_size.push(leaf_hash(b"other"));
    let err = f
        .witness
        .add_checkpoint(&body(&f.log, &same_size, 6))
        .unwrap_err();
    assert_eq!(err.status(), 422, "{err}");
    // Cut back (a smaller tree): the old size cannot exceed the checkpoint's.
    let err = f
        .witness
        .add_checkpoint(&build(6, &[], note(&f.log, &honest[..4]).as_bytes()))
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    // ... and claiming the smaller tree from size 0 is a conflict, never a rollback.
    let err = f
        .witness
        .add_checkpoint(&body(&f.log, &honest[..4], 0))
        .unwrap_err();
    assert!(matches!(err, AddError::Conflict(6)), "{err}");
    // The witness still stands where it was, and the honest log can go on.
    let mut grown = honest.clone();
    grown.extend(leaves("b", 3));
    f.witness.add_checkpoint(&body(&f.log, &grown, 6)).unwrap();
}

#[test]
fn forged_proofs_are_refused() {
    let f = fixture();
    let tree = leaves("a", 13);
    f.witness
        .add_checkpoint(&body(&f.log, &tree[..5], 0))
        .unwrap();
    let cp = note(&f.log, &tree);
    let good = merkle::consistency_proof(&tree, 5).unwrap();
    let mut cases: Vec<Vec<Hash>> = vec![
        Vec::new(),
        good[..good.len() - 1].to_vec(),
        [good.clone(), vec![[0; 32]]].concat(),
    ];
    for i in 0..good.len() {
        let mut p = good.clone();
        p[i][0] ^= 1;
        cases.push(p);
    }
    for p in cases {
        let err = f
            .witness
            .add_checkpoint(&build(5, &p, cp.as_bytes()))
            .unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
    }
    // From size 0 a proof must be empty; a size-0 checkpoint must have the empty root.
    let f = fixture();
    let cp = note(&f.log, &tree);
    let err = f
        .witness
        .add_checkpoint(&build(0, &good, cp.as_bytes()))
        .unwrap_err();
    assert_eq!(err.status(), 422, "{err}");
    let zero = Checkpoint {
        origin: ORIGIN.into(),
        size: 0,
        root: [1; 32],
    }
    .sign(&f.log)
    .unwrap();
    let err = f
        .witness
        .add_checkpoint(&build(0, &[], zero.as_bytes()))
        .unwrap_err();
    assert_eq!(err.status(), 422, "{err}");
    let err = f
        .witness
        .add_checkpoint(&build(5, &good, cp.as_bytes()))
        .unwrap_err();
    assert!(matches!(err, AddError::Conflict(0)), "{err}");
    f.witness.add_checkpoint(&body(&f.log, &tree, 0)).unwrap();
}

#[test]
fn bad_signatures_and_unknown_logs_are_refused() {
    let f = fixture();
    let tree = leaves("a", 4);
    // Signed by another key with the log's name: no trusted signature (403).
    let impostor = SignerKey::generate(ORIGIN).unwrap();
    let err = f
        .witness
        .add_checkpoint(&body(&impostor, &tree, 0))
        .unwrap_err();
    assert_eq!(err.status(), 403, "{err}");
    // A trusted key's line that does not verify (altered text) is 403 even beside nothing else.
    let good = note(&f.log, &tree);
    let altered = good.replacen("\n4\n", "\n5\n", 1);
    let err = f
        .witness
        .add_checkpoint(&build(0, &[], altered.as_bytes()))
        .unwrap_err();
    assert_eq!(err.status(), 403, "{err}");
    // A bad line by the trusted key beside a good one: still 403 (the note is malformed).
    let text_end = good.find("\n\n").unwrap() + 2;
    let good_line = &good[text_end..];
    let mut b64: Vec<char> = good_line
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap()
        .chars()
        .collect();
    let last = b64.len() - 3;
    b64[last] = if b64[last] == 'A' { 'B' } else { 'A' };
    let bad_line = format!(
        "\u{2014} {ORIGIN} {}\n",
        b64.into_iter().collect::<String>()
    );
    let both = format!("{good}{bad_line}");
    let err = f
        .witness
        .add_checkpoint(&build(0, &[], both.as_bytes()))
        .unwrap_err();
    assert_eq!(err.status(), 403, "{err}");
    // An unknown origin: 404.
    let other = SignerKey::generate("someone.else/log").unwrap();
    let err = f
        .witness
        .add_checkpoint(&body(&other, &tree, 0))
        .unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    // Garbage: 400.
    for junk in [&b""[..], b"old 0\n\nnot a note", b"\n\n"] {
        assert_eq!(f.witness.add_checkpoint(junk).unwrap_err().status(), 400);
    }
    // Extra signatures by unknown keys are ignored.
    let stranger = SignerKey::generate("stranger").unwrap();
    let text = &good[..text_end - 1];
    let with_stranger = format!("{good}{}", stranger.signature_line(text.as_bytes()));
    f.witness
        .add_checkpoint(&build(0, &[], with_stranger.as_bytes()))
        .unwrap();
}

#[test]
fn racing_requests_never_roll_the_witness_back() {
    let f = fixture();
    let tree = leaves("a", 40);
    f.witness
        .add_checkpoint(&body(&f.log, &tree[..2], 0))
        .unwrap();
    // Every thread proves from size 2 to a different size: exactly one can win, the others
    // must get 409 (never a cosignature that moves the record backwards).
    let handles: Vec<_> = (3..=40)
        .map(|n| {
            let w = f.witness.clone();
            let b = body(&f.log, &tree[..n], 2);
            std::thread::spawn(move || (n, w.add_checkpoint(&b)))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, AddError::Conflict(n) if *n as usize == winners[0]),
                "{e}"
            );
        }
    }
    let stored = f.witness.latest(ORIGIN).unwrap().unwrap();
    let parsed = agp_journal::note::parse_note(&stored).unwrap();
    let cp = Checkpoint::parse_text(parsed.text).unwrap();
    assert_eq!(cp.size as usize, winners[0]);
}

#[test]
fn two_witness_processes_on_one_state_folder_never_roll_it_back() {
    // Two stores opened separately on one folder lock each other out as two processes would
    // (the file lock is per open file, not per process).
    let dir = tempfile::tempdir().unwrap();
    let log = SignerKey::generate(ORIGIN).unwrap();
    let signer = WitnessSigner::generate("witness.test/w1").unwrap();
    let make = || {
        Arc::new(Witness::new(
            signer.clone(),
            std::slice::from_ref(log.verifier()),
            Box::new(FileStore::open(dir.path()).unwrap()),
        ))
    };
    let (a, b) = (make(), make());
    let tree = leaves("a", 30);
    a.add_checkpoint(&body(&log, &tree[..2], 0)).unwrap();
    let handles: Vec<_> = (3..=30)
        .map(|n| {
            let w = if n % 2 == 0 { a.clone() } else { b.clone() };
            let req = body(&log, &tree[..n], 2);
            std::thread::spawn(move || w.add_checkpoint(&req).is_ok())
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&ok| ok)
        .count();
    assert_eq!(wins, 1);
}
