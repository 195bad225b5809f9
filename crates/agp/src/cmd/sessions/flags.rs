//! What a session's summary must flag, read through the typed bodies of `session.integrity`
//! and `tool_call.result_mismatch`. A body that does not read is flagged as it is: a finding
//! must never disappear because this agp cannot read its report.

use agp_contracts::events::{Event, SessionIntegrity, ToolCallResultMismatch};
use agp_contracts::integrity::{Action, Origin, Report};
use serde_json::Value;

/// What a session's summary must flag, from its journal entries: the integrity report (each
/// finding and what was done about it) and results not linked to their approved call.
pub fn flagged(entries: &[Value]) -> Vec<String> {
    let mut lines = Vec::new();
    for e in entries {
        let body = &e["body"];
        match e["kind"].as_str() {
            Some(kind @ ToolCallResultMismatch::KIND) => {
                match ToolCallResultMismatch::from_body(body) {
                    Ok(m) => lines.push(format!(
                        "✗ the result reported for {} ran with another input than the approved \
                         one; journaled as a mismatch, not linked to the call",
                        m.call_id
                    )),
                    Err(err) => lines.push(unreadable(kind, &err, body)),
                }
            }
            Some(kind @ SessionIntegrity::KIND) => match SessionIntegrity::from_body(body) {
                Ok(i) => integrity_lines(&i.report, &mut lines),
                Err(err) => lines.push(unreadable(kind, &err, body)),
            },
            _ => {}
        }
    }
    lines
}

fn unreadable(kind: &str, err: &serde_json::Error, body: &Value) -> String {
    format!("✗ a {kind} entry this agp cannot read ({err}); review it: {body}")
}

fn integrity_lines(report: &Report, lines: &mut Vec<String>) {
    if !report.complete {
        lines.push(format!(
            "✗ repository integrity scan incomplete: {}",
            report.incomplete.join("; ")
        ));
    }
    for f in &report.findings {
        let done = match &f.action {
            Action::Quarantined { to } => format!("moved to {to}"),
            Action::Kept => "kept (already there when the session started)".into(),
            Action::Reported => "left in place: review it".into(),
            Action::BitsCleared => "setuid/setgid bits cleared".into(),
            Action::CapabilityRemoved => "file capabilities removed".into(),
            Action::Removed { why } => format!("deleted ({why})"),
            Action::NotNeutralized { error } => format!("NOT NEUTRALIZED: {error}"),
        };
        let mark = if f.origin == Origin::PreExisting {
            "!"
        } else {
            "✗"
        };
        lines.push(format!(
            "{mark} repository: {} — {}: {done}",
            f.path, f.detail
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::events::{SESSION_INTEGRITY, TOOL_CALL_RESULT, TOOL_CALL_RESULT_MISMATCH};
    use agp_contracts::Tool;
    use serde_json::json;

    use crate::cmd::sessions::describe;

    fn mismatch(call_id: &str) -> Value {
        ToolCallResultMismatch {
            call_id: call_id.into(),
            tool: Tool::Bash,
            approved_input_sha256: "ab".into(),
            reported_input_sha256: Some("cd".into()),
            reason: "the reported input is not the approved one".into(),
            ok: true,
            output: String::new(),
            truncated: false,
            output_sha256: "ef".into(),
            reported_by: "agent".into(),
        }
        .to_body()
    }

    #[test]
    fn the_summary_flags_every_finding_an_incomplete_scan_and_unlinked_results() {
        // A body as journaled, read through the typed report.
        let integrity = json!({
            "session": "s", "findings_total": 3, "by_session": 2, "not_neutralized": 1,
            "quarantine": "/h/quarantine/s",
            "report": {
                "root": "/r", "complete": false,
                "incomplete": ["scan stopped after 5 entries (limit)"],
                "entries_scanned": 5, "elapsed_ms": 1, "baseline": true,
                "findings": [
                    {"path": "p", "kind": "fifo", "detail": "a fifo", "origin": "new",
                     "action": "quarantined", "to": "/h/quarantine/s/p"},
                    {"path": "old", "kind": "fifo", "detail": "a fifo", "origin": "pre_existing",
                     "action": "kept"},
                    {"path": "x", "kind": "setuid", "detail": "setuid", "origin": "new",
                     "action": "not_neutralized", "error": "EPERM"}]}});
        let entries = vec![
            json!({"kind": TOOL_CALL_RESULT, "body": {"call_id": "c1"}}),
            json!({"kind": TOOL_CALL_RESULT_MISMATCH, "body": mismatch("c2")}),
            json!({"kind": SESSION_INTEGRITY, "body": integrity}),
        ];
        let lines = flagged(&entries);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(lines[0].contains("c2") && lines[0].contains("not linked"));
        assert!(lines[1].contains("incomplete") && lines[1].contains("5 entries"));
        assert!(lines[2].starts_with('✗') && lines[2].contains("moved to /h/quarantine/s/p"));
        assert!(lines[3].starts_with('!') && lines[3].contains("kept"));
        assert!(lines[4].contains("NOT NEUTRALIZED: EPERM"));
        let shown = describe(SESSION_INTEGRITY, &entries[2]["body"]);
        assert_eq!(
            shown,
            "3 finding(s), 2 by the session, 1 not neutralized, scan INCOMPLETE"
        );
    }

    #[test]
    fn a_failed_check_reads_as_an_incomplete_scan() {
        // What the daemon journals when the check itself could not run.
        let failed = json!({"session": "s", "report": {"complete": false,
            "incomplete": ["the check failed: panicked"], "findings": []}});
        let entries = vec![json!({"kind": SESSION_INTEGRITY, "body": failed})];
        assert_eq!(
            flagged(&entries),
            ["✗ repository integrity scan incomplete: the check failed: panicked"]
        );
        assert_eq!(
            describe(SESSION_INTEGRITY, &entries[0]["body"]),
            "0 finding(s), 0 by the session, 0 not neutralized, scan INCOMPLETE"
        );
    }

    #[test]
    fn an_unreadable_report_is_flagged_not_dropped() {
        let newer = json!({"session": "s", "report": {"complete": true, "findings": [
            {"path": "p", "kind": "a_kind_from_a_newer_agp", "detail": "d", "origin": "new",
             "action": "kept"}]}});
        let entries = vec![
            json!({"kind": SESSION_INTEGRITY, "body": newer}),
            json!({"kind": TOOL_CALL_RESULT_MISMATCH, "body": {"call_id": "c2"}}),
        ];
        let lines = flagged(&entries);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("✗ a session.integrity entry this agp cannot read")
                && lines[0].contains("a_kind_from_a_newer_agp"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("✗ a tool_call.result_mismatch entry this agp cannot read")
                && lines[1].contains("c2"),
            "{}",
            lines[1]
        );
    }
}
