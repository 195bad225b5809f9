use agp_contracts::Journal as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use crate::testutil::*;
use crate::*;

fn mixed_session(w: &agp_journal::JournalWriter, s: &str) {
    start_session(w, s, "fix the build");
    let mut c = Call::bash("c1", "cargo build", Fate::Allowed);
    c.egress = 2;
    write_call(w, s, &c);
    write_call(w, s, &Call::bash("c2", "git push --force", Fate::Denied));
    let mut c3 = Call::bash("c3", "curl https://api.example.com", Fate::Approved);
    c3.exit_code = 7;
    write_call(w, s, &c3);
    write_call(
        w,
        s,
        &Call::bash("c4", "curl https://evil.example", Fate::ApprovalDenied),
    );
    write_call(w, s, &Call::bash("c5", "ssh prod", Fate::TimedOut));
    write_call(w, s, &Call::bash("c6", "scp x prod:", Fate::Waiting));
}

fn all_calls(ix: &JournalIndex, s: &str, q: &TimelineQuery) -> Vec<CallRow> {
    let mut out = Vec::new();
    let mut q = q.clone();
    loop {
        let p = ix.timeline(s, &q).unwrap();
        out.extend(p.items);
        match p.next {
            Some(n) => q.after = Some(n),
            None => return out,
        }
    }
}

#[test]
fn folds_a_session_into_summary_and_call_rows() {
    let f = Fixture::new();
    let w = f.writer();
    mixed_session(&w, "s-1");
    end_session(&w, "s-1", "completed");
    w.close().unwrap();

    let ix = f.index();
    let c = ix.catch_up().unwrap();
    assert_eq!(c.rebuilt, None);
    assert_eq!(c.partial_tail_bytes, 0);
    assert_eq!(c.bytes, file_len(&f.entries_file()));

    let sessions = ix.sessions(&SessionQuery::default()).unwrap();
    assert_eq!(sessions.next, None);
    let [s] = &sessions.items[..] else {
        panic!("{sessions:?}")
    };
    assert_eq!(s.id, "s-1");
    assert_eq!(s.agent.as_deref(), Some("claude-code"));
    assert_eq!(s.operator.as_deref(), Some("alice"));
    assert_eq!(s.task.as_deref(), Some("fix the build"));
    assert_eq!(s.state, "ended");
    assert_eq!(s.end_status.as_deref(), Some("completed"));
    assert_eq!(
        (s.calls, s.allowed, s.denied, s.approved, s.pending, s.egress),
        (6, 1, 3, 1, 1, 2)
    );
    assert!(s.covered, "closed journal: sealed by the final checkpoint");

    let rows = all_calls(&ix, "s-1", &TimelineQuery::default());
    let ids: Vec<&str> = rows.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4", "c5", "c6"]);
    let c1 = &rows[0];
    assert_eq!(c1.tool.as_deref(), Some("Bash"));
    assert_eq!(c1.input_summary.as_deref(), Some("cargo build"));
    assert_eq!(c1.verdict.as_deref(), Some("allow"));
    assert_eq!(c1.rule_id.as_deref(), Some("safe-reads"));
    assert_eq!(c1.outcome.as_deref(), Some("allowed"));
    assert_eq!(c1.egress, 2);
    let r1 = c1.result.as_ref().unwrap();
    assert_eq!((r1.ok, r1.exit_code), (Some(true), Some(0)));
    assert_eq!(r1.output_sha256.as_deref(), Some("cd".repeat(32).as_str()));

    let c3 = &rows[2];
    assert_eq!(c3.verdict.as_deref(), Some("require"));
    assert_eq!(c3.approval.as_deref(), Some("granted"));
    assert_eq!(c3.outcome.as_deref(), Some("approved"));
    assert_eq!(
        c3.approvers,
        [Approver {
            id: "tty:bob".into(),
            name: "bob".into(),
            via: "terminal".into()
        }]
    );
    assert_eq!(c3.result.as_ref().unwrap().exit_code, Some(7));
    assert_eq!(c3.egress, 0);

    let c4 = &rows[3];
    assert_eq!(c4.approval.as_deref(), Some("denied"));
    assert_eq!(c4.approval_reason.as_deref(), Some("not today"));
    assert_eq!(c4.approvers[0].name, "carol");
    assert!(c4.result.is_none());
    assert_eq!(rows[4].approval.as_deref(), Some("timeout"));
    assert_eq!(rows[5].outcome.as_deref(), Some("pending"));
    assert_eq!(rows[5].approval.as_deref(), Some("requested"));
    assert!(rows.iter().all(|r| r.covered));

    let egress = ix
        .session_events(
            Some("s-1"),
            &EventQuery {
                kinds: vec!["egress.*".into()],
                ..EventQuery::default()
            },
        )
        .unwrap();
    assert_eq!(egress.items.len(), 2);
    assert!(egress.items.iter().all(|e| e.kind == "egress.request"));
    let lifecycle = ix
        .session_events(
            Some("s-1"),
            &EventQuery {
                kinds: vec!["session.started".into(), "session.ended".into()],
                ..EventQuery::default()
            },
        )
        .unwrap();
    let kinds: Vec<&str> = lifecycle.items.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["session.started", "session.ended"]);

    let journal_own = ix.session_events(None, &EventQuery::default()).unwrap();
    assert_eq!(journal_own.items[0].kind, "journal.created");

    let st = ix.stats().unwrap();
    assert_eq!(st.entries, c.entries);
    assert_eq!((st.sessions, st.calls), (1, 6));
    assert_eq!(st.origin.as_deref(), Some("agp.test/console"));
    assert_eq!(st.key_id, Some(f.key.verifier().id_hex()));
    let cp = st.checkpoint.unwrap();
    assert_eq!(cp.size, st.entries);
    assert!(cp.signature_ok);
    assert_eq!(cp.root_matches, Some(true));
    assert_eq!((st.covered, st.not_covered), (st.entries, 0));
}

#[test]
fn index_file_is_private() {
    let f = Fixture::new();
    f.writer().close().unwrap();
    let ix = f.index();
    ix.catch_up().unwrap();
    let mode = std::fs::metadata(f.index_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A file someone made readable to others is tightened on open.
    drop(ix);
    std::fs::set_permissions(f.index_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let _ix = f.index();
    let mode = std::fs::metadata(f.index_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn catch_up_reads_only_what_was_appended() {
    let f = Fixture::new();
    let w = f.writer();
    start_session(&w, "s-1", "t");
    write_call(&w, "s-1", &Call::bash("c1", "ls", Fate::Allowed));
    let ix = f.index();
    let first = ix.catch_up().unwrap();
    assert_eq!(first.new_entries, first.entries);

    write_call(&w, "s-1", &Call::bash("c2", "rm -rf /", Fate::Denied));
    write_call(&w, "s-1", &Call::bash("c3", "git push", Fate::Approved));
    let second = ix.catch_up().unwrap();
    assert_eq!(second.rebuilt, None);
    // c2: requested + decided; c3: requested, decided, asked, granted, result.
    assert_eq!(second.new_entries, 7);
    assert_eq!(second.entries, first.entries + 7);
    let again = ix.catch_up().unwrap();
    assert_eq!((again.new_entries, again.entries), (0, second.entries));

    let rows = all_calls(&ix, "s-1", &TimelineQuery::default());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].outcome.as_deref(), Some("approved"));
    let s = &ix.sessions(&SessionQuery::default()).unwrap().items[0];
    assert_eq!((s.calls, s.allowed, s.denied, s.approved), (3, 1, 1, 1));

    // A second process opening the same index file goes on from where it is.
    w.close().unwrap();
    let other = f.index();
    let c = other.catch_up().unwrap();
    assert_eq!(c.rebuilt, None);
    assert!(
        c.new_entries <= 1,
        "only the final checkpoint's entries, if any: {c:?}"
    );
    assert_eq!(other.stats().unwrap().calls, 3);
}

#[test]
fn only_whole_lines_are_indexed_and_unsealed_lines_are_marked() {
    let f = Fixture::new();
    let w = f.writer();
    start_session(&w, "s-1", "t");
    write_call(&w, "s-1", &Call::bash("c1", "ls", Fate::Allowed));
    w.close().unwrap();
    let ix = f.index();
    let sealed = ix.catch_up().unwrap().entries;

    // A line nobody signed (as a forger, or the writer before its next checkpoint, leaves it),
    // then half a line.
    let line = json!({"body": {"call_id": "c9", "tool": "Bash", "input": {"command": "echo forged"},
        "input_sha256": "00".repeat(32), "cwd": "/", "mode": "gate", "tool_use_id": null},
        "key_id": "00000000", "kind": "tool_call.requested", "prev": "00".repeat(32),
        "seq": sealed, "session": "s-1", "ts": "2026-01-01T00:00:00Z", "v": 1});
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(f.entries_file())
        .unwrap();
    writeln!(file, "{line}").unwrap();
    file.write_all(b"{\"body\":{\"call_id\":").unwrap();
    file.flush().unwrap();

    let c = ix.catch_up().unwrap();
    assert_eq!(c.new_entries, 1);
    assert_eq!(c.partial_tail_bytes, 19);
    let rows = all_calls(&ix, "s-1", &TimelineQuery::default());
    assert_eq!(rows.len(), 2);
    assert!(rows[0].covered);
    assert!(!rows[1].covered, "no checkpoint covers the appended line");
    assert_eq!(rows[1].input_summary.as_deref(), Some("echo forged"));
    let st = ix.stats().unwrap();
    assert_eq!((st.covered, st.not_covered), (sealed, 1));

    // The rest of the line arrives: indexed then, once.
    file.write_all(b"\"c10\"}}\n").unwrap();
    let c = ix.catch_up().unwrap();
    assert_eq!((c.new_entries, c.partial_tail_bytes), (1, 0));
}

#[test]
fn a_cut_back_journal_is_rebuilt_and_says_so() {
    let f = Fixture::new();
    let w = f.writer();
    start_session(&w, "s-1", "t");
    for i in 0..5 {
        write_call(
            &w,
            "s-1",
            &Call::bash(&format!("c{i}"), "ls", Fate::Allowed),
        );
    }
    w.close().unwrap();
    let ix = f.index();
    let before = ix.catch_up().unwrap();

    // Cut the file back to its first four lines.
    let text = std::fs::read(f.entries_file()).unwrap();
    let cut: usize = text
        .split_inclusive(|b| *b == b'\n')
        .take(4)
        .map(<[u8]>::len)
        .sum();
    std::fs::OpenOptions::new()
        .write(true)
        .open(f.entries_file())
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    let after = ix.catch_up().unwrap();
    let why = after.rebuilt.expect("a cut-back journal is rebuilt");
    assert!(why.contains("cut back"), "{why}");
    assert_eq!(after.entries, 4);
    assert!(before.entries > 4);
    assert_eq!(all_calls(&ix, "s-1", &TimelineQuery::default()).len(), 1);
    // The checkpoint now names more entries than the file holds: nothing is covered beyond it.
    assert_eq!(ix.stats().unwrap().covered, 4.min(after.entries));
}

#[test]
fn a_rewritten_or_replaced_journal_is_rebuilt() {
    let f = Fixture::new();
    let w = f.writer();
    start_session(&w, "s-1", "t");
    write_call(&w, "s-1", &Call::bash("c1", "ls -la", Fate::Allowed));
    w.close().unwrap();
    let ix = f.index();
    ix.catch_up().unwrap();
    let text = std::fs::read_to_string(f.entries_file()).unwrap();

    // Same length, one byte changed in the last line: what the index showed is not there.
    let last_start = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    let mut bytes = text.clone().into_bytes();
    let i = last_start + text[last_start..].find("seq").unwrap() - 3;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    std::fs::write(f.entries_file(), &bytes).unwrap();
    let c = ix.catch_up().unwrap();
    assert!(c.rebuilt.unwrap().contains("rewritten"));
    let e = ix.entry(c.entries - 1).unwrap().unwrap();
    assert_eq!(e.bytes, bytes[last_start..bytes.len() - 1]);

    // Another file under the same name.
    let tmp = f.dir.path().join("other.jsonl");
    std::fs::write(&tmp, text.as_bytes()).unwrap();
    std::fs::rename(&tmp, f.entries_file()).unwrap();
    let c = ix.catch_up().unwrap();
    assert!(c.rebuilt.unwrap().contains("replaced"));

    // A journal changed under an entry the console asks for is refused, not shown.
    let seq = c.entries - 1;
    let mut bytes = text.into_bytes();
    let n = bytes.len();
    bytes[n - 5] = b'9';
    std::fs::write(f.entries_file(), &bytes).unwrap();
    assert!(matches!(ix.entry(seq), Err(IndexError::Stale(s)) if s == seq));
}

#[test]
fn entry_is_the_exact_line_and_proves_inclusion() {
    let f = Fixture::new();
    let w = f.writer();
    mixed_session(&w, "s-1");
    w.close().unwrap();
    let ix = f.index();
    let c = ix.catch_up().unwrap();
    let text = std::fs::read(f.entries_file()).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len() as u64, c.entries);
    for seq in [0, 3, c.entries - 1] {
        let e = ix.entry(seq).unwrap().unwrap();
        assert_eq!(e.bytes, lines[seq as usize]);
        assert!(e.covered);
    }
    assert!(ix.entry(c.entries).unwrap().is_none());
    // The root the index recorded is the tree of exactly these lines.
    let leaves: Vec<_> = lines
        .iter()
        .map(|l| agp_journal::merkle::leaf_hash(l))
        .collect();
    let root = agp_journal::merkle::to_base64(&agp_journal::merkle::root_of(&leaves));
    assert_eq!(ix.stats().unwrap().checkpoint.unwrap().root, root);
}

#[test]
fn pages_and_filters_are_exact() {
    let f = Fixture::new();
    let w = f.writer();
    for s in 0..7 {
        start_session(&w, &format!("s-{s}"), &format!("task {s}"));
    }
    for i in 0..120 {
        let fate = match i % 3 {
            0 => Fate::Allowed,
            1 => Fate::Denied,
            _ => Fate::Approved,
        };
        let mut c = Call::bash(&format!("c{i}"), &format!("make target{i}"), fate);
        if i % 4 == 0 {
            c.tool = "Read";
            c.input = json!({"file_path": format!("src/f{i}.rs")});
        }
        write_call(&w, "s-3", &c);
    }
    end_session(&w, "s-5", "failed");
    w.close().unwrap();
    let ix = f.index();
    ix.catch_up().unwrap();

    let mut ids = Vec::new();
    let mut q = SessionQuery {
        limit: Some(3),
        ..SessionQuery::default()
    };
    loop {
        let p = ix.sessions(&q).unwrap();
        assert!(p.items.len() <= 3);
        ids.extend(p.items.into_iter().map(|s| s.id));
        match p.next {
            Some(n) => q.before = Some(n),
            None => break,
        }
    }
    assert_eq!(ids, ["s-6", "s-5", "s-4", "s-3", "s-2", "s-1", "s-0"]);
    let ended = ix
        .sessions(&SessionQuery {
            state: Some("ended".into()),
            ..SessionQuery::default()
        })
        .unwrap();
    assert_eq!(ended.items.len(), 1);
    assert_eq!(ended.items[0].id, "s-5");
    let by_text = ix
        .sessions(&SessionQuery {
            text: Some("TASK 4".into()),
            ..SessionQuery::default()
        })
        .unwrap();
    assert_eq!(by_text.items[0].id, "s-4");

    let q = TimelineQuery {
        limit: Some(50),
        ..TimelineQuery::default()
    };
    let p1 = ix.timeline("s-3", &q).unwrap();
    assert_eq!(p1.items.len(), 50);
    let all = all_calls(&ix, "s-3", &q);
    assert_eq!(all.len(), 120);
    let expect: Vec<String> = (0..120).map(|i| format!("c{i}")).collect();
    let got: Vec<String> = all.iter().map(|r| r.call_id.clone()).collect();
    assert_eq!(got, expect);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

    let denied = all_calls(
        &ix,
        "s-3",
        &TimelineQuery {
            verdict: Some("deny".into()),
            limit: Some(7),
            ..TimelineQuery::default()
        },
    );
    assert_eq!(denied.len(), 40);
    assert!(denied.iter().all(|r| r.verdict.as_deref() == Some("deny")));
    let reads = all_calls(
        &ix,
        "s-3",
        &TimelineQuery {
            tool: Some("Read".into()),
            ..TimelineQuery::default()
        },
    );
    assert_eq!(reads.len(), 30);
    let approved_reads = all_calls(
        &ix,
        "s-3",
        &TimelineQuery {
            tool: Some("Read".into()),
            outcome: Some("approved".into()),
            ..TimelineQuery::default()
        },
    );
    // i % 4 == 0 and i % 3 == 2: i = 8, 20, 32, ... (i % 12 == 8).
    assert_eq!(approved_reads.len(), 10);
    let text = all_calls(
        &ix,
        "s-3",
        &TimelineQuery {
            text: Some("TARGET11".into()),
            ..TimelineQuery::default()
        },
    );
    let ids: Vec<&str> = text.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(
        ids,
        ["c11", "c110", "c111", "c113", "c114", "c115", "c117", "c118", "c119"]
    );
    // LIKE wildcards are plain text here.
    let none = ix
        .timeline(
            "s-3",
            &TimelineQuery {
                text: Some("%".into()),
                ..TimelineQuery::default()
            },
        )
        .unwrap();
    assert!(none.items.is_empty());
    assert!(ix.timeline("no-such", &q).unwrap().items.is_empty());
}

#[test]
fn hostile_text_is_stored_verbatim() {
    let f = Fixture::new();
    let w = f.writer();
    let evil = "<script>alert('x')</script>\u{202e}gnp.exe \"; DROP TABLE calls; --";
    let s = "s-<img src=x onerror=alert(1)>";
    start_session(&w, s, evil);
    write_call(&w, s, &Call::bash("c'1", evil, Fate::Allowed));
    w.close().unwrap();
    let ix = f.index();
    ix.catch_up().unwrap();
    let sess = &ix.sessions(&SessionQuery::default()).unwrap().items[0];
    assert_eq!(sess.id, s);
    assert_eq!(sess.task.as_deref(), Some(evil));
    let rows = all_calls(&ix, s, &TimelineQuery::default());
    assert_eq!(rows[0].call_id, "c'1");
    assert_eq!(rows[0].input_summary.as_deref(), Some(evil));
    let found = all_calls(
        &ix,
        s,
        &TimelineQuery {
            text: Some("drop table".into()),
            ..TimelineQuery::default()
        },
    );
    assert_eq!(found.len(), 1);
    assert_eq!(ix.stats().unwrap().calls, 1);
}

#[test]
fn long_inputs_are_cut_on_a_character_boundary() {
    let long = "é".repeat(1000);
    let s = fold::summarize(&json!({ "command": long })).unwrap();
    assert_eq!(s.chars().count(), fold::SUMMARY_CHARS + 1);
    assert!(s.ends_with('…'));
    assert_eq!(
        fold::summarize(&json!({"a": 1})).as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(fold::summarize(&serde_json::Value::Null), None);
}

#[test]
fn unknown_kinds_and_unreadable_lines_are_events() {
    let f = Fixture::new();
    let w = f.writer();
    start_session(&w, "s-1", "t");
    w.append(
        "future.thing_happened",
        Some("s-1"),
        json!({"call_id": "c1", "detail": {"nested": [1, 2]}}),
    )
    .unwrap();
    // A known kind whose body is not what this version expects.
    w.append("tool_call.requested", Some("s-1"), json!({"call_id": 5}))
        .unwrap();
    w.close().unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(f.entries_file())
        .unwrap();
    file.write_all(b"not json at all\n[1,2]\n").unwrap();

    let ix = f.index();
    let c = ix.catch_up().unwrap();
    let ev = ix
        .session_events(
            Some("s-1"),
            &EventQuery {
                kinds: vec!["future.*".into(), "tool_call.requested".into()],
                ..EventQuery::default()
            },
        )
        .unwrap();
    assert_eq!(ev.items.len(), 2);
    assert_eq!(ev.items[0].kind, "future.thing_happened");
    assert_eq!(ev.items[0].call_id.as_deref(), Some("c1"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ev.items[0].body).unwrap(),
        json!({"call_id": "c1", "detail": {"nested": [1, 2]}})
    );
    assert_eq!(ev.items[1].kind, "tool_call.requested");
    let unreadable = ix
        .session_events(
            None,
            &EventQuery {
                kinds: vec!["unreadable".into()],
                ..EventQuery::default()
            },
        )
        .unwrap();
    let seqs: Vec<u64> = unreadable.items.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [c.entries - 2, c.entries - 1]);
    assert!(unreadable.items.iter().all(|e| !e.covered));
    // `_` in a family is a character, not a LIKE wildcard.
    let none = ix
        .session_events(
            Some("s-1"),
            &EventQuery {
                kinds: vec!["future_*".into()],
                ..EventQuery::default()
            },
        )
        .unwrap();
    assert!(none.items.is_empty());
}

#[test]
fn a_checkpoint_not_signed_by_the_journals_key_covers_nothing() {
    let f = Fixture::new();
    let w = f.writer();
    start_session(&w, "s-1", "t");
    w.close().unwrap();
    let ix = f.index();
    let c = ix.catch_up().unwrap();
    let st = ix.stats().unwrap();
    assert_eq!(st.covered, c.entries);
    let cp = st.checkpoint.unwrap();

    // Same tree, signed by someone else's key of the same name.
    let other = agp_journal::SignerKey::generate("agp.test/console").unwrap();
    let text = agp_journal::note::parse_note(cp.note.as_bytes())
        .unwrap()
        .text
        .to_vec();
    let forged = other
        .sign_note(std::str::from_utf8(&text).unwrap())
        .unwrap();
    let path = f.journal().join(agp_journal::CHECKPOINT_FILE);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, forged).unwrap();
    ix.catch_up().unwrap();
    let st = ix.stats().unwrap();
    let cp = st.checkpoint.unwrap();
    assert!(!cp.signature_ok);
    assert!(cp.problem.unwrap().contains("journal's key"));
    assert_eq!((st.covered, st.not_covered), (0, c.entries));
    assert!(!ix.sessions(&SessionQuery::default()).unwrap().items[0].covered);

    // A checkpoint signed by the right key over another root.
    let mut cp2 = agp_journal::Checkpoint::parse_text(&text).unwrap();
    cp2.root = [7; 32];
    std::fs::write(&path, cp2.sign(&f.key).unwrap()).unwrap();
    ix.catch_up().unwrap();
    let st = ix.stats().unwrap();
    let cp = st.checkpoint.unwrap();
    assert!(cp.signature_ok);
    assert_eq!(cp.root_matches, Some(false));
    assert_eq!(st.covered, 0);
}

#[test]
fn many_batches_and_a_missing_journal() {
    let f = Fixture::new();
    let ix = f.index();
    let c = ix.catch_up().unwrap();
    assert_eq!((c.entries, c.rebuilt), (0, None));
    let w = f.writer();
    start_session(&w, "s-1", "t");
    let events: Vec<(&str, Option<&str>, serde_json::Value)> = (0..(BATCH_LINES + 10))
        .map(|i| ("future.tick", Some("s-1"), json!({ "i": i })))
        .collect();
    w.append_batch(&events).unwrap();
    w.close().unwrap();
    let c = ix.catch_up().unwrap();
    assert_eq!(c.new_entries, BATCH_LINES + 12);
    assert_eq!(ix.stats().unwrap().covered, c.entries);
    std::fs::remove_file(f.entries_file()).unwrap();
    let c = ix.catch_up().unwrap();
    assert_eq!(c.entries, 0);
    assert!(c.rebuilt.unwrap().contains("gone"));
    assert_eq!(ix.stats().unwrap().sessions, 0);
}
