//! Rows and pending approvals the handler tests share.

use agp_console::data::{ApprovalInfo, CallRow, EventRow, ResultInfo, SessionRow};

use super::{pending, Recorder, Rows};

pub fn session(id: &str) -> SessionRow {
    SessionRow {
        id: id.into(),
        agent: "scripted".into(),
        repo: "/src/repo".into(),
        task: "fix the build".into(),
        operator: "alice".into(),
        mode: "enforce".into(),
        allowed: 4,
        denied: 1,
        approved: 2,
        pending: 1,
        state: "live".into(),
        started: "2026-12-06T13:00:00Z".into(),
        ended: None,
    }
}

pub fn rows() -> Rows {
    Rows {
        sessions: vec![session("s-1")],
        calls: vec![
            CallRow {
                seq: 1,
                call_id: "c-1".into(),
                tool: "Bash".into(),
                input: "{\"command\":\"ls\"}".into(),
                verdict: "allow".into(),
                rule: Some("ls".into()),
                reason: "listing is fine".into(),
                approval: None,
                result: Some(ResultInfo {
                    exit_status: Some(0),
                    output_sha256: Some("cd".repeat(32)),
                    status: "ok".into(),
                }),
                egress: 2,
                outcome: "allowed".into(),
                covered: true,
            },
            CallRow {
                seq: 2,
                call_id: "c-2".into(),
                tool: "Bash".into(),
                input: "{\"command\":\"git push\"}".into(),
                verdict: "require".into(),
                rule: Some("push".into()),
                reason: "needs a human".into(),
                approval: Some(ApprovalInfo {
                    decision: "allow".into(),
                    by: "bob".into(),
                    via: "web".into(),
                }),
                result: None,
                egress: 0,
                outcome: "approved".into(),
                covered: false,
            },
        ],
        events: vec![EventRow {
            seq: 2,
            kind: "integrity.report".into(),
            summary: "3 files changed".into(),
            covered: true,
        }],
    }
}

pub fn recorder() -> Recorder {
    Recorder {
        pending: vec![pending("c-9")],
        ..Recorder::default()
    }
}
