//! The OCSF mapping of single entries.

use super::*;
use crate::cmd::journal::source::CheckpointInfo;
use std::sync::Arc;

fn entry(seq: u64, kind: &str, session: Option<&str>, body: Value) -> Entry {
    let mut event = json!({"kind": kind, "seq": seq, "session": session,
                           "ts": "2026-03-01T12:00:00.250000Z", "v": 1});
    event["body"] = body;
    Entry {
        seq,
        kind: kind.to_string(),
        session: session.map(str::to_string),
        time_nanos: 1_772_366_400_250_000_000,
        line: event.to_string().into_bytes(),
        event,
        leaf_hash: "ab".repeat(32),
        checkpoint: Arc::new(CheckpointInfo {
            origin: "agp.local/journal/t".into(),
            size: 100,
            root: [7; 32],
            note: "agp.local/journal/t\n100\n...\n".into(),
        }),
    }
}

#[test]
fn a_kind_this_agp_does_not_know_is_a_base_event_named_after_it() {
    let mut m = Mapper::default();
    let o = m.map(&entry(
        3,
        "policy.reloaded",
        None,
        json!({"old": "a", "new": "b"}),
    ));
    assert_eq!(o["class_uid"], 0);
    assert_eq!(o["type_uid"], 99);
    assert_eq!(o["activity_name"], "policy.reloaded");
    assert_eq!(o["type_name"], "Base Event: Other");
    assert_eq!(o["time"], 1_772_366_400_250_i64);
    assert_eq!(o["metadata"]["sequence"], 3);
    assert_eq!(o["unmapped"]["agp"]["evidence"]["checkpoint"]["size"], 100);
    assert_eq!(m.counts.get("Base Event"), Some(&1));
}

#[test]
fn tools_map_to_crud_activities_and_unknown_tools_to_other_named_after_them() {
    let mut m = Mapper::default();
    for (tool, id, name) in [
        ("Read", 2, "Read"),
        ("Grep", 2, "Read"),
        ("Write", 1, "Create"),
        ("Edit", 3, "Update"),
        ("Bash", 99, "Bash"),
        ("mcp__github__create_issue", 99, "mcp__github__create_issue"),
    ] {
        let o = m.map(&entry(
            1,
            "tool_call.requested",
            Some("s-1"),
            json!({"call_id": "call-1", "tool": tool, "input": {}}),
        ));
        assert_eq!(
            (o["activity_id"].clone(), o["activity_name"].clone()),
            (json!(id), json!(name)),
            "{tool}"
        );
        assert_eq!(o["type_uid"], 600_300 + id, "{tool}");
        assert_eq!(o["api"]["operation"], tool);
    }
}

#[test]
fn a_shell_result_is_a_launched_process_with_the_command_of_its_request() {
    let mut m = Mapper::default();
    m.map(&entry(
        1,
        "session.started",
        Some("s-1"),
        json!({"intendant": "claude-code"}),
    ));
    m.map(&entry(
        2,
        "tool_call.requested",
        Some("s-1"),
        json!({"call_id": "call-7", "tool": "Bash", "input": {"command": "cargo test -q"}}),
    ));
    let o = m.map(&entry(
        4,
        "tool_call.result",
        Some("s-1"),
        json!({"call_id": "call-7", "tool": "Bash", "ok": false, "exit_code": 101, "timed_out": false}),
    ));
    assert_eq!(o["class_uid"], 1007);
    assert_eq!(o["type_uid"], 100_701);
    assert_eq!(
        o["process"],
        json!({"cmd_line": "cargo test -q", "name": "cargo"})
    );
    assert_eq!(o["exit_code"], 101);
    assert_eq!(
        (o["status_id"].clone(), o["severity_id"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(o["actor"]["app_name"], "claude-code");
    // A result whose request came before what was read (e.g. before --since) still maps.
    let o = m.map(&entry(
        9,
        "tool_call.result",
        Some("s-1"),
        json!({"call_id": "call-unknown", "tool": "Bash", "ok": true, "timed_out": true}),
    ));
    assert_eq!(o["process"], json!({"name": "Bash"}));
    assert_eq!(o["status_detail"], "timed out");
}

#[test]
fn a_vote_names_its_voter_and_decides_nothing_a_remembered_answer_allows() {
    let mut m = Mapper::default();
    let alice = json!({"id": "U1", "name": "alice", "via": "slack"});
    let vote = m.map(&entry(
        4,
        "approval.vote",
        Some("s-1"),
        json!({"call_id": "c-1", "input_sha256": "00", "by": alice, "vote": "allow",
               "channel": "slack", "have": 1, "need": 2}),
    ));
    assert_eq!(vote["class_uid"], 6003);
    assert_eq!(vote["actor"]["user"]["uid"], "U1");
    assert_eq!(
        vote["action_id"], 99,
        "a vote alone neither allows nor denies"
    );
    assert!(vote["message"].as_str().unwrap().contains(": allow"));
    let remembered = m.map(&entry(
        5,
        "approval.remembered",
        Some("s-1"),
        json!({"call_id": "c-1", "tool": "Bash", "cwd": "/r", "by": [alice],
               "channel": "slack", "expires_at_ms": 1}),
    ));
    assert_eq!(remembered["class_uid"], 6003);
    assert_eq!(remembered["actor"]["user"]["uid"], "U1");
    assert_eq!(remembered["action_id"], 1);
}

#[test]
fn a_shadow_verdict_raises_the_severity_of_a_call_that_ran() {
    let mut m = Mapper::default();
    let body = |shadow: Option<&str>| {
        let mut b = json!({"call_id": "c-1", "tool": "Bash", "decision": "allow",
                           "rule_id": "deny-all", "reason": "nothing runs"});
        if let Some(v) = shadow {
            b["mode"] = "shadow".into();
            b["shadow_verdict"] = v.into();
        }
        b
    };
    let enforced = m.map(&entry(6, "policy.decided", Some("s-1"), body(None)));
    let would_deny = m.map(&entry(
        7,
        "policy.decided",
        Some("s-1"),
        body(Some("would_deny")),
    ));
    let would_ask = m.map(&entry(
        8,
        "policy.decided",
        Some("s-1"),
        body(Some("would_require")),
    ));
    assert!(would_deny["severity_id"].as_u64() > would_ask["severity_id"].as_u64());
    assert!(would_ask["severity_id"].as_u64() > enforced["severity_id"].as_u64());
    assert_eq!(would_deny["action_id"], 1, "what agp did: the call ran");
    assert!(would_deny["message"]
        .as_str()
        .unwrap()
        .contains("shadow: would_deny, not enforced"));
}
