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
