//! Snapshots of what approvers read in Slack: the approval message, its final states, the
//! details view, the session root and a projected event. A change to any of them shows up as a
//! reviewable diff of the committed `.snap` file (`cargo insta review`), never silently.

use agp_contracts::{ApprovalOutcome, ApprovalRequest, Approver};
use agp_slack::blocks::{
    approval_blocks, decided_blocks, details_blocks, projection_blocks, session_root_blocks,
};
use serde_json::json;

/// 2026-01-02 03:04:05 UTC: fixed, so the rendered times are too.
const AT_MS: u64 = 1_767_323_045_000;

fn request() -> ApprovalRequest {
    ApprovalRequest {
        session: "s-7f3a".into(),
        call_id: "toolu_01".into(),
        tool: "Bash".into(),
        // An agent trying to ping the channel and format its way into the approver's trust.
        redacted_input: json!({"command": "git push origin main <!channel> *now*",
                               "env": {"TOKEN": "[REDACTED]"}}),
        input_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        rule_id: Some("push".into()),
        reason: "pushing needs a human".into(),
        approvers: vec!["UALICE".into(), "UBOB".into()],
        quorum: 2,
        expires_at_ms: AT_MS + 600_000,
        remember_secs: None,
    }
}

fn alice() -> Approver {
    Approver {
        id: "UALICE".into(),
        name: "Alice".into(),
        via: "slack".into(),
    }
}

#[test]
fn approval_message() {
    insta::assert_json_snapshot!(approval_blocks(&request(), "nonce-1", 400, &[]));
}

#[test]
fn approval_message_offering_allow_for_this_session() {
    let mut r = request();
    r.remember_secs = Some(1800);
    insta::assert_json_snapshot!(approval_blocks(&r, "nonce-1", 400, &[]));
    let granted = ApprovalOutcome::GrantedForSession { by: vec![alice()] };
    insta::assert_json_snapshot!(decided_blocks(&r, &granted, AT_MS, 400));
    let cancelled = ApprovalOutcome::Unavailable {
        reason: "cancelled: session stopped".into(),
    };
    insta::assert_json_snapshot!(decided_blocks(&r, &cancelled, AT_MS, 400));
}

#[test]
fn approval_message_with_a_vote_so_far() {
    insta::assert_json_snapshot!(approval_blocks(&request(), "nonce-1", 400, &[alice()]));
}

#[test]
fn decided_messages() {
    let outcomes = [
        ApprovalOutcome::Granted { by: vec![alice()] },
        ApprovalOutcome::Denied {
            by: alice(),
            reason: Some("not today".into()),
        },
        ApprovalOutcome::Timeout,
        ApprovalOutcome::Unavailable {
            reason: "Slack is down <@here>".into(),
        },
    ];
    let rendered: Vec<_> = outcomes
        .iter()
        .map(|o| decided_blocks(&request(), o, AT_MS, 400))
        .collect();
    insta::assert_json_snapshot!(rendered);
}

#[test]
fn details_view() {
    insta::assert_json_snapshot!(details_blocks(&request()));
}

#[test]
fn session_root_and_a_projected_event() {
    let root = session_root_blocks(
        "s-7f3a",
        &json!({"intendant": "claude-code", "repo": "/work/app", "task": "fix the build",
                "started_by": "alice"}),
    );
    let ended = projection_blocks(
        "session.ended",
        &json!({"reason": "agent exited", "calls": 12, "denied": 2}),
    );
    insta::assert_json_snapshot!(json!({"root": root, "ended": ended}));
}
