//! What the hook prints: the harness's decision shapes for a verdict, a deny for every failure,
//! and a deny even when the hook panics.

use std::io::Write;

use agp_gateway::VerdictMessage;
use serde_json::{json, Value};

use super::{Answer, Event, Harness};
use crate::exit::Exit;

pub(super) fn verdict_answer(event: Event, harness: Harness, v: &VerdictMessage) -> Answer {
    let rule = v
        .rule_id
        .as_deref()
        .map(|r| format!(" (rule {r})"))
        .unwrap_or_default();
    if v.is_allow() {
        let by = v
            .approved_by
            .as_deref()
            .map(|a| format!(", approved by {a}"))
            .unwrap_or_default();
        let reason = format!("agp allowed this call: {}{rule}{by}", v.reason);
        let stdout = match event {
            Event::PreToolUse if harness == Harness::Codex && v.updated_input.is_none() => {
                json!({})
            }
            Event::PermissionRequest => json!({"hookSpecificOutput": {
                "hookEventName": "PermissionRequest",
                "decision": {"behavior": "allow"}}}),
            _ => {
                let mut out = json!({"hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "allow",
                    "permissionDecisionReason": reason}});
                if let Some(updated) = &v.updated_input {
                    out["hookSpecificOutput"]["updatedInput"] = updated.clone();
                }
                out
            }
        };
        return Answer {
            stdout,
            stderr: None,
            exit: Exit::Ok,
        };
    }
    // Anything but an explicit allow is a deny, including a decision this build does not know.
    let reason = format!(
        "agp denied this call: {}{rule}. Do not retry it unchanged; take another approach or \
         ask the user.",
        v.reason
    );
    Answer {
        stdout: deny_json(Some(event), &reason),
        stderr: None,
        exit: Exit::Ok,
    }
}

fn deny_json(event: Option<Event>, reason: &str) -> Value {
    match event {
        Some(Event::PermissionRequest) => json!({"hookSpecificOutput": {
            "hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "message": reason}}}),
        Some(Event::PostToolUse | Event::PostToolUseFailure) => {
            json!({"decision": "block", "reason": reason})
        }
        _ => json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason}}),
    }
}

/// A failure: deny on stdout, the reason on stderr (what the harness shows on exit 2), exit 2.
pub fn failure(event: Option<Event>, why: &str) -> Answer {
    let reason = format!("agp could not check this call, so it is denied: {why}");
    Answer {
        stdout: deny_json(event, &reason),
        stderr: Some(reason),
        exit: Exit::CannotRun,
    }
}

pub(super) fn emit(answer: &Answer) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", answer.stdout);
    let _ = out.flush();
    if let Some(e) = &answer.stderr {
        eprintln!("{e}");
    }
}

/// Even a panic outside `catch_unwind` (or one that unwinding cannot catch) must not become an
/// exit code the harness reads as "non-blocking".
pub(super) fn install_panic_deny() {
    std::panic::set_hook(Box::new(|info| {
        let answer = failure(None, &format!("agp hook crashed: {info}"));
        emit(&answer);
        std::process::exit(Exit::CannotRun as i32);
    }));
}
