//! The pages over the real journal index (`agp-journal-index` on a journal written by
//! `agp_journal`'s writer, with the daemon's entry kinds): what the console ships with.

use std::sync::Arc;

use agp_console::index::IndexData;
use agp_console::ConsoleData as _;
use agp_contracts::Journal as _;
use axum::http::StatusCode;
use serde_json::json;

use super::support::*;

const EVIL: &str = "<script>alert(1)</script>\" onmouseover=\"x\u{202e}gpj.exe";

fn write(w: &agp_journal::JournalWriter) {
    let ap = |k: &str, b: serde_json::Value| w.append(k, Some("s-idx"), b).unwrap();
    ap(
        "session.started",
        json!({"session": "s-idx", "intendant": "scripted", "repo": "/src/app", "task": EVIL,
               "mode": "proxy-exec", "started_by": "alice", "policy_mode": "enforce"}),
    );
    let sha = "ab".repeat(32);
    ap(
        "tool_call.requested",
        json!({"call_id": "c-1", "tool": "Bash", "input": {"command": EVIL},
               "input_sha256": sha, "cwd": "/src/app", "mode": "proxy-exec"}),
    );
    ap(
        "policy.decided",
        json!({"call_id": "c-1", "tool": "Bash", "input_sha256": sha, "decision": "require",
               "reason": EVIL, "rule_id": "ask", "deciding_part": null,
               "policy_sha256": "cd".repeat(32)}),
    );
    ap(
        "approval.requested",
        json!({"call_id": "c-1", "tool": "Bash", "input_sha256": sha, "rule_id": "ask",
               "reason": "asks a human", "channel": "terminal", "approvers": [],
               "quorum": 1, "expires_at_ms": 1_900_000_000_000_i64}),
    );
    ap(
        "approval.granted",
        json!({"call_id": "c-1", "input_sha256": sha,
               "by": [{"id": "uid:1000", "name": "bob", "via": "web"}],
               "channel": "web", "waited_ms": 1200}),
    );
    ap(
        "tool_call.result",
        json!({"call_id": "c-1", "tool": "Bash", "input_sha256": sha, "ok": false,
               "exit_code": 3, "timed_out": false, "error": null, "output": "no",
               "truncated": false, "output_bytes": 2, "output_sha256": "ef".repeat(32),
               "reported_by": "sandbox"}),
    );
    ap(
        "session.ended",
        json!({"session": "s-idx", "status": "ok", "lease_held": true}),
    );
}

#[tokio::test]
async fn pages_over_the_real_index_show_the_journal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let key = agp_journal::SignerKey::generate("agp.local/journal/indexed").unwrap();
    let w = agp_journal::JournalWriter::open(
        &dir.path().join("journal"),
        key.clone(),
        agp_journal::JournalOptions::with_durability(agp_journal::Durability::Entry),
    )
    .unwrap();
    write(&w);
    w.close().unwrap();
    let data = IndexData::open(
        &dir.path().join("journal"),
        &dir.path().join("console/index.db"),
    )
    .unwrap();
    let entries = data.catch_up().unwrap();
    assert!(entries >= 8, "{entries}");
    let world = world_in(
        dir,
        key.verifier().clone(),
        Arc::new(data),
        Recorder::default(),
        false,
    );
    let cookie = world.login().await;

    let list = world.get(&cookie, "/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("data-session=\"s-idx\""),
        "{}",
        list.body
    );
    assert!(list.body.contains("data-testid=\"count-approved\">1<"));
    assert!(list.body.contains("alice"));
    assert!(list.body.contains("scripted"));

    let t = world.get(&cookie, "/sessions/s-idx").await.body;
    assert_eq!(t.matches("data-testid=\"call-row\"").count(), 1, "{t}");
    assert!(t.contains("data-verdict=\"require\""));
    assert!(t.contains("by bob via web"), "{t}");
    assert!(t.contains("exit 3"));
    assert!(t.contains(&"ef".repeat(32)));
    assert!(t.contains("data-kind=\"session.started\""));
    assert!(!t.contains("<script>alert"));
    assert!(!t.contains("\" onmouseover=\""));
    assert!(!t.contains('\u{202e}'));
    assert!(t.contains("\\u{202e}gpj.exe"));
    let only_deny = world
        .get(&cookie, "/sessions/s-idx?verdict=deny")
        .await
        .body;
    assert!(only_deny.contains("data-testid=\"no-calls\""));

    let j = world.get(&cookie, "/journal").await.body;
    assert!(
        j.contains(&format!("data-testid=\"journal-entries\">{entries}<")),
        "{j}"
    );
    assert!(j.contains(&key.verifier().id_hex()));
    let proof = world.get(&cookie, "/journal/proof?seq=2").await;
    assert_eq!(proof.status, StatusCode::OK, "{}", proof.body);
    // The entry page shows the exact line (escaped) and links its proof.
    let entry = world.get(&cookie, "/journal/entry?seq=2").await.body;
    assert!(entry.contains("tool_call.requested"), "{entry}");
    assert!(entry.contains("href=\"/journal/proof?seq=2\""));
    assert!(!entry.contains("<script>alert"));
    assert!(
        entry.contains("\\u202e") || entry.contains("\\u{202e}"),
        "{entry}"
    );
    let line = std::fs::read_to_string(world.dir.path().join("journal/entries.jsonl"))
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    agp_journal::proof::verify_inclusion(&proof.body, line.as_bytes(), &key.verifier().clone())
        .unwrap();
    let missing = world.get(&cookie, "/journal/entry?seq=999").await.body;
    assert!(missing.contains("data-testid=\"no-entry\""));
}
