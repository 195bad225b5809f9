//! The journal commands end to end: keygen, key files, proofs, consistency, rotation, show.

use super::support::journal as common_journal;

use std::os::unix::fs::PermissionsExt as _;

use common_journal::{error_codes, json_ok, run, text, Home};

#[test]
fn readme_run_command_works_on_a_fresh_home() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("demo");
    let h = h.to_str().unwrap();
    for args in [vec!["init"], vec!["keygen"], vec!["verify"]] {
        let mut full = vec!["--home", h];
        full.extend(args);
        let o = run(&full);
        assert_eq!(o.status.code(), Some(0), "{full:?}: {}", text(&o));
    }
    let o = run(&["--home", h, "verify"]);
    assert!(text(&o).contains("journal intact: 1 entry"), "{}", text(&o));
}

#[test]
fn keygen_never_overwrites_and_key_files_are_private() {
    let h = Home::new();
    let key = h.root.join("keys/journal.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let o = run(&["--home", h.home_arg(), "keygen"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    // --force refuses to orphan a journal signed by the current key.
    let o = run(&["--home", h.home_arg(), "keygen", "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--rotate"), "{}", text(&o));
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let h = Home::new();
    let key = h.root.join("keys/journal.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["--home", h.home_arg(), "journal", "recover"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("too open"), "{}", text(&o));
    let o = run(&["--home", h.home_arg(), "keygen", "--rotate"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn inclusion_receipt_verifies_offline_and_rejects_another_entry() {
    let h = Home::with_20_entries();
    let o = run(&["--home", h.home_arg(), "journal", "proof", "--seq", "7"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let receipt = String::from_utf8(o.stdout).unwrap();
    assert!(
        receipt.starts_with("c2sp.org/tlog-proof@v1\nindex 7\n"),
        "{receipt}"
    );
    let dir = h.tmp.path();
    std::fs::write(dir.join("r.tlog-proof"), &receipt).unwrap();
    let lines = h.lines();
    std::fs::write(dir.join("e7"), format!("{}\n", lines[7])).unwrap();
    std::fs::write(dir.join("e8"), format!("{}\n", lines[8])).unwrap();
    let vkey = h.vkey_file();
    let check = |entry: &str, key: &str| {
        run(&[
            "--home",
            h.home_arg(),
            "journal",
            "verify-proof",
            dir.join("r.tlog-proof").to_str().unwrap(),
            "--entry",
            dir.join(entry).to_str().unwrap(),
            "--key",
            key,
        ])
    };
    let o = check("e7", vkey.to_str().unwrap());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("valid: the entry is seq 7"),
        "{}",
        text(&o)
    );
    let o = check("e8", vkey.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let other = agp_journal::SignerKey::generate(h.key().name()).unwrap();
    let o = check("e7", &other.verifier().to_string());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // A seq not covered by the latest checkpoint has no receipt yet.
    let o = run(&["--home", h.home_arg(), "journal", "proof", "--seq", "99"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn consistency_proves_append_only_growth_and_catches_a_fork() {
    let h = Home::new();
    h.append(4);
    let old = h.keep_checkpoint("old.checkpoint");
    h.append(7);
    let o = h.consistency(&old, &["--json"]);
    let v = json_ok(&o);
    assert_eq!(
        (v["old_size"].as_u64(), v["new_size"].as_u64()),
        (Some(5), Some(12))
    );
    assert!(!v["proof"].as_array().unwrap().is_empty());

    // Rewrite history from scratch with the same key: the old checkpoint no longer fits.
    std::fs::remove_dir_all(h.journal()).unwrap();
    h.append(11);
    let o = h.consistency(&old, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("does not extend"), "{}", text(&o));
}

#[test]
fn rotation_is_journaled_and_both_keys_verify() {
    let h = Home::with_20_entries();
    let old_vkey = std::fs::read_to_string(h.vkey_file()).unwrap();
    let old_cp = h.keep_checkpoint("old.checkpoint");
    let o = run(&["--home", h.home_arg(), "keygen", "--rotate"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("key.rotated at seq 20"), "{}", text(&o));
    let new_vkey = std::fs::read_to_string(h.vkey_file()).unwrap();
    assert_ne!(old_vkey, new_vkey);
    h.append(3);
    for key in [old_vkey.trim(), new_vkey.trim()] {
        let (code, r) = h.verify(&["--key", key]);
        assert_eq!(code, 0, "{r:#}");
        assert_eq!(r["keys"].as_array().unwrap().len(), 2);
        assert_eq!(r["keys"][0]["to_size"], 21);
        assert_eq!(r["keys"][1]["from_size"], 21);
    }
    // The auditor's checkpoint from before the rotation still anchors the history.
    let (code, r) = h.verify(&["--trusted-checkpoint", old_cp.to_str().unwrap()]);
    assert_eq!(code, 0, "{r:#}");
    let o = h.consistency(&old_cp, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A checkpoint signed by the retired key for a size past its range is refused.
    let retired = std::fs::read_dir(h.root.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("retired"))
        .unwrap();
    let old_key = agp_journal::keys::load_signer_key(&retired).unwrap();
    let (size, root) = {
        let cp = std::fs::read(h.journal().join("checkpoint")).unwrap();
        let parsed = agp_journal::note::parse_note(&cp).unwrap();
        let c = agp_journal::Checkpoint::parse_text(parsed.text).unwrap();
        (c.size, c.root)
    };
    let forged = agp_journal::Checkpoint {
        origin: old_key.name().to_string(),
        size,
        root,
    }
    .sign(&old_key)
    .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(h.journal().join("checkpoints"))
        .unwrap();
    std::io::Write::write_all(&mut f, forged.as_bytes()).unwrap();
    let (code, r) = h.verify(&[]);
    assert_eq!(code, 1);
    assert_eq!(error_codes(&r), ["WRONG_KEY"]);
}

#[test]
fn show_filters_by_kind_and_session() {
    let h = Home::with_20_entries();
    let o = run(&[
        "--home",
        h.home_arg(),
        "journal",
        "show",
        "--kind",
        "journal.created",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 1);
    assert_eq!(out.trim(), h.lines()[0]);
    let o = run(&[
        "--home",
        h.home_arg(),
        "journal",
        "show",
        "--session",
        "s-1",
    ]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 19, "{out}");
    assert!(
        out.lines().all(|l| l.contains("tool_call.requested")),
        "{out}"
    );
}

#[test]
fn keygen_refuses_to_orphan_a_journal_whose_key_is_missing() {
    let h = Home::with_20_entries();
    std::fs::remove_file(h.root.join("keys/journal.key")).unwrap();
    let o = run(&["--home", h.home_arg(), "keygen"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("restore that key"), "{}", text(&o));
    assert!(!h.root.join("keys/journal.key").exists());
}

#[test]
fn bench_out_folder_verifies_with_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench");
    let o = run(&[
        "bench",
        "journal",
        "--entries",
        "300",
        "--durability",
        "group",
        "--threads",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let v = json_ok(&o);
    assert_eq!(v["entries"], 300);
    assert!(v["entries_per_sec"].as_f64().unwrap() > 0.0);
    let key = out.join("journal.pub");
    let o = run(&[
        "verify",
        "--journal",
        out.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--json",
    ]);
    let r = json_ok(&o);
    assert_eq!(r["entries"], 301);
    assert_eq!(r["findings"], serde_json::Value::Array(vec![]));
}

#[test]
fn bench_console_builds_the_index_and_opens_it_again_without_rereading() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let bench = |j: &std::path::Path| {
        json_ok(&run(&[
            "bench",
            "console",
            "--entries",
            "3000",
            "--sessions",
            "5",
            "--runs",
            "2",
            "--journal",
            j.to_str().unwrap(),
            "--json",
        ]))
    };
    let v = bench(&journal);
    assert_eq!(v["journal_reused"], false);
    let entries = v["entries"].as_u64().unwrap();
    assert!((2990..=3000).contains(&entries), "{v:#}");
    let opened = &v["opened"];
    // Opening finds the index current: nothing re-read, nothing rebuilt, every line sealed.
    assert_eq!(opened["new_entries"], 0, "{v:#}");
    assert_eq!(opened["rebuilt"], serde_json::Value::Null);
    assert_eq!(opened["entries"], entries);
    assert_eq!(opened["covered"], entries);
    assert_eq!(opened["sessions"], 5);
    assert_eq!(opened["largest_session"], "s-bench00000");
    assert_eq!(opened["timeline_first_page"], 50);
    assert!(opened["timeline_deep_page"].as_u64().unwrap() > 0);
    assert!(opened["deep_page_first_seq"].as_u64().unwrap() > entries * 9 / 10);

    // The kept journal is reused as it is.
    let again = bench(&journal);
    assert_eq!(again["journal_reused"], true);
    assert_eq!(again["entries"], entries);
}
