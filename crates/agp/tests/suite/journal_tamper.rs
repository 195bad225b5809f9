//! The tamper matrix: each case edits a real journal written by the real writer, then runs the
//! real `agp verify` and checks the exact finding and the exit code.

use super::support::journal as common_journal;

use common_journal::{copy_dir, error_codes, finding, reorder_keys, run, text, Home};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Rewrites the journal's lines with `f`.
fn edit_lines(h: &Home, f: impl FnOnce(&mut Vec<String>)) {
    let mut lines = h.lines();
    f(&mut lines);
    h.write_lines(&lines);
}

fn set_line(h: &Home, seq: usize, f: impl FnOnce(&str) -> String) {
    edit_lines(h, |lines| lines[seq] = f(&lines[seq]));
}

#[test]
fn untouched_journal_is_intact() {
    let h = Home::with_20_entries();
    let (code, r) = h.verify(&[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["findings"], Value::Array(vec![]));
    assert_eq!(r["entries"], 20);
    assert_eq!(r["sealed_size"], 20);
}

/// One tamper case: an edit of a freshly written 20-entry journal, and what `agp verify` must
/// say about it.
struct Case {
    name: &'static str,
    tamper: fn(&Home),
    /// The exit code of `agp verify`, when the case checks it.
    exit: Option<i32>,
    /// Every error code, sorted, when the case checks them.
    errors: Option<&'static [&'static str]>,
    /// A finding by code, and fields it must carry (a JSON object).
    finding: (&'static str, &'static str),
}

const CASES: &[Case] = &[
    Case {
        name: "edited body breaks the chain at that entry",
        tamper: |h| set_line(h, 5, |l| l.replace("\"echo 4\"", "\"rm -rf /\"")),
        exit: Some(1),
        errors: Some(&["CHAIN_BROKEN", "ROOT_MISMATCH"]),
        finding: ("CHAIN_BROKEN", r#"{"seq": 5, "line": 6}"#),
    },
    Case {
        name: "edited timestamp breaks the chain at that entry",
        tamper: |h| {
            set_line(h, 7, |l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let ts = v["ts"].as_str().unwrap().to_string();
                let earlier = format!("2001{}", &ts[4..]);
                l.replace(&ts, &earlier)
            });
        },
        exit: Some(1),
        errors: Some(&["CHAIN_BROKEN", "ROOT_MISMATCH"]),
        finding: ("CHAIN_BROKEN", r#"{"seq": 7}"#),
    },
    Case {
        name: "deleted middle line is a seq gap",
        tamper: |h| {
            edit_lines(h, |lines| {
                lines.remove(5);
            });
        },
        exit: Some(1),
        errors: Some(&["ROOT_MISMATCH", "SEQ_GAP", "TRUNCATED"]),
        finding: ("SEQ_GAP", r#"{"seq": 5, "line": 6}"#),
    },
    Case {
        name: "deleted tail alone is caught by the stored checkpoints",
        tamper: |h| edit_lines(h, |lines| lines.truncate(18)),
        exit: Some(1),
        errors: Some(&["TRUNCATED"]),
        finding: ("TRUNCATED", "{}"),
    },
    Case {
        name: "swapped lines are reordered",
        tamper: |h| edit_lines(h, |lines| lines.swap(5, 6)),
        exit: Some(1),
        errors: Some(&["REORDERED", "ROOT_MISMATCH"]),
        finding: ("REORDERED", r#"{"seq": 5, "line": 7}"#),
    },
    Case {
        name: "inserted line repeats a seq",
        tamper: |h| {
            edit_lines(h, |lines| {
                // A forged entry that chains correctly to its predecessor and takes seq 5.
                let forged = lines[5].replace("\"echo 4\"", "\"echo forged\"");
                lines.insert(5, forged);
            });
        },
        exit: Some(1),
        errors: Some(&["ROOT_MISMATCH", "SEQ_REPEATED"]),
        finding: ("SEQ_REPEATED", r#"{"seq": 6, "line": 7}"#),
    },
    Case {
        name: "duplicated line is reported as such",
        tamper: |h| {
            edit_lines(h, |lines| {
                let dup = lines[5].clone();
                lines.insert(6, dup);
            });
        },
        exit: Some(1),
        errors: Some(&["DUPLICATE_LINE", "ROOT_MISMATCH"]),
        finding: ("DUPLICATE_LINE", r#"{"line": 7}"#),
    },
    Case {
        name: "reserialized line (keys reordered) is not canonical",
        tamper: |h| set_line(h, 5, reorder_keys),
        exit: Some(1),
        errors: Some(&["CHAIN_BROKEN", "NOT_CANONICAL", "ROOT_MISMATCH"]),
        finding: ("NOT_CANONICAL", r#"{"seq": 5}"#),
    },
    Case {
        name: "reserialized line (a space added) is not canonical",
        tamper: |h| set_line(h, 5, |l| l.replacen(",", ", ", 1)),
        exit: None,
        errors: None,
        finding: ("NOT_CANONICAL", r#"{"seq": 5}"#),
    },
    Case {
        name: "duplicate JSON key is reported",
        // serde_json keeps the last value: the duplicate must not slip through.
        tamper: |h| {
            set_line(h, 5, |l| {
                l.replacen("{\"body\":", "{\"kind\":\"approval.granted\",\"body\":", 1)
            });
        },
        exit: Some(1),
        errors: Some(&["CHAIN_BROKEN", "DUPLICATE_KEY", "ROOT_MISMATCH"]),
        finding: ("DUPLICATE_KEY", r#"{"seq": 5}"#),
    },
    Case {
        name: "flipped signature bit is a bad signature",
        tamper: |h| {
            let path = h.journal().join("checkpoints");
            let cps = std::fs::read_to_string(&path).unwrap();
            let mut notes = split_notes(&cps);
            notes[0] = flip_signature_bit(&notes[0]);
            std::fs::write(&path, notes.concat()).unwrap();
        },
        exit: Some(1),
        errors: Some(&["BAD_SIGNATURE"]),
        finding: ("BAD_SIGNATURE", r#"{"checkpoint": "checkpoints#1"}"#),
    },
];

#[test]
fn each_tamper_case_is_found_where_it_happened() {
    for case in CASES {
        let h = Home::with_20_entries();
        (case.tamper)(&h);
        let (code, r) = h.verify(&[]);
        let name = case.name;
        if let Some(exit) = case.exit {
            assert_eq!(code, exit, "{name}: {r:#}");
        }
        if let Some(errors) = case.errors {
            assert_eq!(error_codes(&r), errors, "{name}: {r:#}");
        }
        let (kind, fields) = case.finding;
        let f = finding(&r, kind);
        let fields: Value = serde_json::from_str(fields).unwrap();
        for (key, want) in fields.as_object().unwrap() {
            assert_eq!(&f[key], want, "{name}: {kind}.{key} in {r:#}");
        }
    }
}

#[test]
fn deleted_tail_with_cleaned_checkpoints_is_caught_by_a_trusted_checkpoint() {
    let h = Home::with_20_entries();
    let kept = h.keep_checkpoint("kept.checkpoint");
    // The attacker drops the last 3 entries and every checkpoint that mentions them.
    edit_lines(&h, |lines| lines.truncate(17));
    let cps = std::fs::read_to_string(h.journal().join("checkpoints")).unwrap();
    let notes = split_notes(&cps);
    let small: String = notes
        .iter()
        .filter(|n| note_size(n) <= 17)
        .cloned()
        .collect();
    std::fs::write(h.journal().join("checkpoints"), &small).unwrap();
    std::fs::write(
        h.journal().join("checkpoint"),
        notes.iter().rfind(|n| note_size(n) <= 17).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(h.journal().join("checkpoint.sig")).unwrap();

    // Without the auditor's checkpoint the loss is invisible (only warnings); with it, it is not.
    let (alone, r) = verify_alone_and_against(&h, &kept);
    assert!(error_codes(&alone).is_empty());
    assert_eq!(error_codes(&r), ["TRUNCATED"]);
    let f = finding(&r, "TRUNCATED");
    assert_eq!(f["checkpoint"], "trusted checkpoint");
    assert_eq!(f["size"], 20);
}

#[test]
fn checkpoints_resigned_by_another_key_are_rejected() {
    let h = Home::with_20_entries();
    let attacker = agp_journal::SignerKey::generate(h.key().name()).unwrap();
    let path = h.journal().join("checkpoints");
    let cps = std::fs::read_to_string(&path).unwrap();
    let resigned: Vec<String> = split_notes(&cps)
        .iter()
        .map(|n| {
            let text = &n[..=n.find("\n\n").unwrap()];
            attacker.sign_note(text).unwrap()
        })
        .collect();
    std::fs::write(&path, resigned.concat()).unwrap();
    std::fs::write(h.journal().join("checkpoint"), resigned.last().unwrap()).unwrap();
    let (code, r) = h.verify(&[]);
    assert_eq!(code, 1);
    assert_eq!(error_codes(&r), ["NO_CHECKPOINT", "WRONG_KEY"]);
    // Verifying with the attacker's key does not help: the journal names its own key.
    let o = run(&[
        "--home",
        h.home_arg(),
        "verify",
        "--key",
        &attacker.verifier().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("UNTRUSTED_KEY"), "{}", text(&o));
}

/// Appends 9 entries, snapshots the journal folder, appends 10 more and keeps that newer
/// checkpoint aside, then rolls the whole folder back to the older, self-consistent snapshot;
/// the kept checkpoint's path.
fn rolled_back_keeping_newer_checkpoint(h: &Home) -> PathBuf {
    h.append(9);
    let snapshot = h.tmp.path().join("snapshot");
    copy_dir(&h.journal(), &snapshot);
    h.append(10);
    let kept = h.keep_checkpoint("kept.checkpoint");
    std::fs::remove_dir_all(h.journal()).unwrap();
    copy_dir(&snapshot, &h.journal());
    kept
}

/// `agp verify` of the journal alone, which must pass, and against the trusted checkpoint
/// `kept`, which must fail: both reports.
fn verify_alone_and_against(h: &Home, kept: &Path) -> (Value, Value) {
    let (code, alone) = h.verify(&[]);
    assert_eq!(code, 0, "{alone:#}");
    let (code, against) = h.verify(&["--trusted-checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, 1, "{against:#}");
    (alone, against)
}

#[test]
fn rollback_to_an_older_checkpoint_is_caught_by_a_trusted_checkpoint() {
    let h = Home::new();
    let kept = rolled_back_keeping_newer_checkpoint(&h);
    // An older journal is self-consistent.
    let (_, r) = verify_alone_and_against(&h, &kept);
    assert_eq!(error_codes(&r), ["TRUNCATED"]);
}

#[test]
fn rewritten_history_is_forked() {
    let h = Home::new();
    let kept = rolled_back_keeping_newer_checkpoint(&h);
    // The key holder rewrites everything after size 10 and re-signs.
    let w = agp_journal::JournalWriter::open(&h.journal(), h.key(), Default::default()).unwrap();
    for i in 0..10 {
        agp_contracts::Journal::append(
            &w,
            "tool_call.requested",
            None,
            serde_json::json!({"other": i}),
        )
        .unwrap();
    }
    w.close().unwrap();
    let (_, r) = verify_alone_and_against(&h, &kept);
    assert_eq!(error_codes(&r), ["FORKED"]);
}

#[test]
fn torn_last_line_is_a_crash_and_recovers_on_next_open() {
    let h = Home::with_20_entries();
    let before = h.lines();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(h.entries())
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"body\":{\"tool\":\"Ba").unwrap();
    drop(f);
    let (code, r) = h.verify(&[]);
    assert_eq!(code, 0, "a crash is not tampering: {r:#}");
    assert!(error_codes(&r).is_empty());
    let f = finding(&r, "TORN_TAIL");
    assert_eq!(
        (f["severity"].as_str(), f["line"].as_u64()),
        (Some("warning"), Some(21))
    );

    let o = run(&["--home", h.home_arg(), "journal", "recover"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("journal.recovered at seq 20"),
        "{}",
        text(&o)
    );
    let torn = std::fs::read(h.journal().join("entries.jsonl.torn")).unwrap();
    assert_eq!(torn, b"{\"body\":{\"tool\":\"Ba");
    let after = h.lines();
    assert_eq!(&after[..20], &before[..], "nothing acknowledged was lost");
    let rec: Value = serde_json::from_str(&after[20]).unwrap();
    assert_eq!(rec["kind"], "journal.recovered");
    assert_eq!(rec["body"]["torn_bytes"], 19);
    let (code, r) = h.verify(&[]);
    assert_eq!(code, 0);
    assert_eq!(r["findings"], Value::Array(vec![]));
}

#[test]
fn wrong_or_unusable_key_and_missing_journal() {
    let h = Home::with_20_entries();
    let other = agp_journal::SignerKey::generate(h.key().name()).unwrap();
    let (code, r) = h.verify(&["--key", &other.verifier().to_string()]);
    assert_eq!(code, 1);
    assert!(
        error_codes(&r).contains(&"UNTRUSTED_KEY".to_string()),
        "{r:#}"
    );
    let o = run(&["--home", h.home_arg(), "verify", "--key", "not-a-key"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&[
        "--home",
        h.home_arg(),
        "verify",
        "--journal",
        "/nonexistent/journal",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).starts_with("agp: error:"), "{}", text(&o));
}

/// Splits a `checkpoints` file into its notes.
fn split_notes(cps: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut cur = String::new();
    let mut in_sigs = false;
    for line in cps.split_inclusive('\n') {
        if in_sigs && !line.starts_with('\u{2014}') {
            notes.push(std::mem::take(&mut cur));
            in_sigs = false;
        }
        if line == "\n" {
            in_sigs = true;
        }
        cur.push_str(line);
    }
    if !cur.is_empty() {
        notes.push(cur);
    }
    notes
}

fn note_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn flip_signature_bit(note: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (head, sig_line) = note.rsplit_once("\n\u{2014} ").unwrap();
    let (name, sig) = sig_line.trim_end().split_once(' ').unwrap();
    // Base64 character 30 encodes bits of bytes 22-23: inside the Ed25519 signature, past the
    // 4-byte key id. Toggling the low bit of its sextet flips exactly one signature bit.
    let mut sig = sig.as_bytes().to_vec();
    let i = ALPHABET.iter().position(|&c| c == sig[30]).unwrap();
    sig[30] = ALPHABET[i ^ 1];
    format!(
        "{head}\n\u{2014} {name} {}\n",
        String::from_utf8(sig).unwrap()
    )
}
