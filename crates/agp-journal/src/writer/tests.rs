use super::*;
use crate::verify::verify_dir;
use serde_json::json;

fn opts(key: &SignerKey) -> VerifyOptions {
    VerifyOptions {
        trusted_key: key.verifier().clone(),
        trusted_checkpoint: None,
    }
}

/// An empty folder for a journal, and a key for it.
fn fresh() -> (tempfile::TempDir, SignerKey) {
    let dir = tempfile::tempdir().unwrap();
    (dir, SignerKey::generate("agp.test/log").unwrap())
}

/// Opens the journal in `dir` with `key` and the default options.
fn reopen(dir: &Path, key: &SignerKey) -> Result<JournalWriter, JournalError> {
    JournalWriter::open(dir, key.clone(), JournalOptions::default())
}

/// Opens the journal in `dir` (creating or recovering it) and closes it again.
fn open_and_close(dir: &Path, key: &SignerKey) {
    reopen(dir, key).unwrap().close().unwrap();
}

/// The verify report of the journal in `dir` under `key`, which must have no findings.
fn verified_clean(dir: &Path, key: &SignerKey) -> crate::verify::Report {
    let report = verify_dir(dir, &opts(key)).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    report
}

/// Checks the appends got exactly the seqs 1 to `n`, closes `w`, and checks the journal verifies
/// clean with those `n` entries after the genesis.
fn closed_with_every_seq(seqs: &[u64], n: u64, w: &JournalWriter, dir: &Path, key: &SignerKey) {
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    w.close().unwrap();
    let report = verified_clean(dir, key);
    assert_eq!(report.entries, n + 1);
}

/// Runs `work(t)` on `threads` threads at once; every sequence number they return, sorted.
fn seqs_from_threads<F>(threads: u64, work: F) -> Vec<u64>
where
    F: Fn(u64) -> Vec<u64> + Send + Sync + Clone + 'static,
{
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let work = work.clone();
            std::thread::spawn(move || work(t))
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn writer_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JournalWriter>();
    assert_send_sync::<Arc<dyn Journal>>();
}

#[test]
fn appends_verify_and_reopen_continues_the_chain() {
    let (dir, key) = fresh();
    let w = reopen(dir.path(), &key).unwrap();
    assert!(w.open_summary().created);
    for i in 0..10 {
        let r = w
            .append("tool_call.requested", Some("s1"), json!({"i": i}))
            .unwrap();
        assert_eq!(r.seq, i + 1);
    }
    w.close().unwrap();
    drop(w);
    let report = verified_clean(dir.path(), &key);
    assert_eq!((report.entries, report.sealed_size), (11, 11));

    let w = reopen(dir.path(), &key).unwrap();
    assert_eq!(w.append("session.ended", None, json!({})).unwrap().seq, 11);
    w.close().unwrap();
    verified_clean(dir.path(), &key);
}

#[test]
fn concurrent_entry_appends_are_all_durable_and_verify() {
    concurrent_appends(Durability::Entry);
}

#[test]
fn concurrent_group_appends_are_all_durable_and_verify() {
    concurrent_appends(Durability::Group);
}

fn concurrent_appends(durability: Durability) {
    let (dir, key) = fresh();
    let w = Arc::new(
        JournalWriter::open(
            dir.path(),
            key.clone(),
            JournalOptions::with_durability(durability),
        )
        .unwrap(),
    );
    let writer = w.clone();
    let seqs = seqs_from_threads(8, move |t| {
        (0..50)
            .map(|i| {
                writer
                    .append("egress.allowed", Some("s"), json!({"t": t, "i": i}))
                    .unwrap()
                    .seq
            })
            .collect()
    });
    closed_with_every_seq(&seqs, 400, &w, dir.path(), &key);
}

#[test]
fn small_groups_cut_at_their_bound_and_every_checkpoint_verifies() {
    // Groups of 3 with batches of 2 from 12 threads: commits are cut mid-queue and batches
    // straddle the cuts; a checkpoint after every commit checks each cut's root.
    let (dir, key) = fresh();
    let jopts = JournalOptions {
        group_max_entries: 3,
        checkpoint_interval: Duration::ZERO,
        ..JournalOptions::with_durability(Durability::Group)
    };
    let w = Arc::new(JournalWriter::open(dir.path(), key.clone(), jopts).unwrap());
    let writer = w.clone();
    let seqs = seqs_from_threads(12, move |t| {
        let mut seqs = Vec::new();
        for i in 0..20 {
            let events = [
                ("tool_call.requested", Some("s"), json!({"t": t, "i": i})),
                ("policy.decided", Some("s"), json!({"t": t, "i": i})),
            ];
            let r = writer.append_batch(&events).unwrap();
            assert_eq!(r[1].seq, r[0].seq + 1, "a batch is consecutive");
            seqs.extend(r.iter().map(|r| r.seq));
        }
        seqs
    });
    closed_with_every_seq(&seqs, 480, &w, dir.path(), &key);
}

#[test]
fn a_lone_group_append_does_not_wait_for_the_group_to_fill() {
    // With an hour's bound, an append that waited for company would never return.
    let (dir, key) = fresh();
    let jopts = JournalOptions {
        group_max_wait: Duration::from_secs(3600),
        ..JournalOptions::with_durability(Durability::Group)
    };
    let w = JournalWriter::open(dir.path(), key.clone(), jopts).unwrap();
    for i in 0..20 {
        assert_eq!(w.append("a.b", None, json!({"i": i})).unwrap().seq, i + 1);
        // Each append is durable when it returns, before the next one starts.
        assert_eq!(w.len(), i + 2);
    }
    let r = w
        .append_batch(&[("a.b", None, json!({})), ("a.c", Some("s"), json!({}))])
        .unwrap();
    assert_eq!((r[0].seq, r[1].seq), (21, 22));
    w.close().unwrap();
    verified_clean(dir.path(), &key);
}

#[test]
fn a_batch_with_a_refused_event_appends_nothing() {
    for durability in [Durability::Entry, Durability::Group] {
        let (dir, key) = fresh();
        let w = JournalWriter::open(
            dir.path(),
            key.clone(),
            JournalOptions::with_durability(durability),
        )
        .unwrap();
        let events = [
            ("tool_call.requested", Some("s"), json!({"ok": 1})),
            ("policy.decided", Some("s"), json!({"f": 0.5})),
        ];
        assert!(matches!(
            w.append_batch(&events),
            Err(JournalError::Refused(_))
        ));
        assert_eq!(w.len(), 1);
        assert!(w.append_batch(&[]).unwrap().is_empty());
        // Through the trait too (the daemon holds a `dyn Journal`).
        let dynw: &dyn Journal = &w;
        let r = dynw
            .append_batch(&[("a.b", None, json!({})), ("a.c", None, json!({}))])
            .unwrap();
        assert_eq!((r[0].seq, r[1].seq), (1, 2));
        w.close().unwrap();
        let text = std::fs::read_to_string(dir.path().join(ENTRIES_FILE)).unwrap();
        assert!(
            !text.contains("tool_call.requested"),
            "nothing of the refused batch"
        );
        let report = verified_clean(dir.path(), &key);
        assert_eq!(report.entries, 3);
    }
}

#[test]
fn refuses_floats_second_writer_and_foreign_key() {
    let (dir, key) = fresh();
    let w = reopen(dir.path(), &key).unwrap();
    assert!(matches!(
        w.append("x.y", None, json!({"f": 0.5})),
        Err(JournalError::Refused(_))
    ));
    assert!(matches!(
        reopen(dir.path(), &key),
        Err(JournalError::Unavailable(_))
    ));
    w.close().unwrap();
    drop(w);
    let other = SignerKey::generate("agp.test/log").unwrap();
    assert!(JournalWriter::open(dir.path(), other, JournalOptions::default()).is_err());
}

#[test]
fn torn_tail_is_moved_aside_and_recorded() {
    let (dir, key) = fresh();
    let w = reopen(dir.path(), &key).unwrap();
    w.append("a.b", None, json!({})).unwrap();
    w.close().unwrap();
    drop(w);
    let entries = dir.path().join(ENTRIES_FILE);
    let mut f = OpenOptions::new().append(true).open(&entries).unwrap();
    f.write_all(b"{\"body\":{\"half").unwrap();
    let report = verify_dir(dir.path(), &opts(&key)).unwrap();
    assert!(report.intact);
    assert!(report.has(Code::TornTail));

    let w = reopen(dir.path(), &key).unwrap();
    let s = w.open_summary().clone();
    assert_eq!(s.torn_bytes, 14);
    assert_eq!(
        std::fs::read(s.torn_file.unwrap()).unwrap(),
        b"{\"body\":{\"half"
    );
    assert_eq!(s.recovered_seq, Some(2));
    w.close().unwrap();
    verified_clean(dir.path(), &key);
}

#[test]
fn refuses_to_extend_a_truncated_or_tampered_journal() {
    let (dir, key) = fresh();
    let w = reopen(dir.path(), &key).unwrap();
    for i in 0..5 {
        w.append("a.b", None, json!({"i": i})).unwrap();
    }
    w.close().unwrap();
    drop(w);
    let entries = dir.path().join(ENTRIES_FILE);
    let text = std::fs::read_to_string(&entries).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // Shorter than its last checkpoint.
    std::fs::write(&entries, format!("{}\n", lines[..4].join("\n"))).unwrap();
    let err = reopen(dir.path(), &key).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // An altered entry must not be laundered by a fresh signature.
    let altered = text.replace("{\"i\":2}", "{\"i\":7}");
    std::fs::write(&entries, altered).unwrap();
    let err = reopen(dir.path(), &key).unwrap_err();
    assert!(err.to_string().contains("fails verification"), "{err}");
    std::fs::write(&entries, &text).unwrap();
    open_and_close(dir.path(), &key);
}

#[test]
fn a_damaged_latest_checkpoint_is_rewritten_on_open() {
    let (dir, key) = fresh();
    open_and_close(dir.path(), &key);
    // Power loss after renaming an unsynced file: an empty checkpoint.
    std::fs::write(dir.path().join(CHECKPOINT_FILE), b"").unwrap();
    assert!(!verify_dir(dir.path(), &opts(&key)).unwrap().intact);
    open_and_close(dir.path(), &key);
    verified_clean(dir.path(), &key);
}

#[test]
fn torn_checkpoint_is_moved_aside() {
    let (dir, key) = fresh();
    open_and_close(dir.path(), &key);
    let cps = dir.path().join(CHECKPOINTS_FILE);
    let mut f = OpenOptions::new().append(true).open(&cps).unwrap();
    f.write_all(b"agp.test/log\n9\n").unwrap();
    let report = verify_dir(dir.path(), &opts(&key)).unwrap();
    assert!(report.intact && report.has(Code::TornCheckpoint));
    open_and_close(dir.path(), &key);
    assert_eq!(
        std::fs::read(dir.path().join("checkpoints.torn")).unwrap(),
        b"agp.test/log\n9\n"
    );
    verified_clean(dir.path(), &key);
}

#[test]
fn a_torn_tail_moved_aside_but_never_journaled_is_journaled_on_the_next_open() {
    let (dir, key) = fresh();
    open_and_close(dir.path(), &key);
    // As if an open had moved a torn line aside and crashed before journaling it.
    std::fs::write(dir.path().join("entries.jsonl.torn"), b"{\"half").unwrap();
    let w = reopen(dir.path(), &key).unwrap();
    assert_eq!(w.open_summary().recovered_seq, Some(1));
    w.close().unwrap();
    drop(w);
    let text = std::fs::read_to_string(dir.path().join(ENTRIES_FILE)).unwrap();
    let rec: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(rec["body"]["earlier_torn"][0]["bytes"], 6);
    // Recorded now: the next open has nothing to add.
    let w = reopen(dir.path(), &key).unwrap();
    assert_eq!(w.open_summary().recovered_seq, None);
}

#[test]
fn rotation_hands_over_to_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = SignerKey::generate("agp.test/log").unwrap();
    let k2 = SignerKey::generate("agp.test/log").unwrap();
    let w = JournalWriter::open(dir.path(), k1.clone(), JournalOptions::default()).unwrap();
    w.append("a.b", None, json!({})).unwrap();
    assert_eq!(w.rotate(k2.clone()).unwrap().seq, 2);
    w.append("a.b", None, json!({})).unwrap();
    w.close().unwrap();
    drop(w);
    for trusted in [&k1, &k2] {
        let report = verified_clean(dir.path(), trusted);
        assert_eq!(report.keys.len(), 2);
        assert_eq!(report.keys[0].to_size, Some(3));
    }
    // The old key can no longer open the journal for writing.
    assert!(JournalWriter::open(dir.path(), k1, JournalOptions::default()).is_err());
    let w = JournalWriter::open(dir.path(), k2, JournalOptions::default()).unwrap();
    w.close().unwrap();
}
