use serde_json::json;

use super::*;

fn request(call_id: &str, quorum: u32, approvers: &[&str]) -> ApprovalRequest {
    ApprovalRequest {
        session: "s".into(),
        call_id: call_id.into(),
        tool: "Write".into(),
        redacted_input: json!({"file_path": "x"}),
        input_sha256: "h".repeat(64),
        rule_id: Some("r".into()),
        reason: "r".into(),
        approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
        quorum,
        expires_at_ms: 10_000,
        remember_secs: None,
    }
}

fn alice() -> Approver {
    Approver {
        id: "tty:alice".into(),
        name: "alice".into(),
        via: "web".into(),
    }
}

fn nonces() -> impl FnMut() -> Option<String> {
    let mut n = 0;
    move || {
        n += 1;
        Some(format!("n{n}"))
    }
}

fn doc(nonce: &str, call_id: &str, decision: WebDecision) -> WebDecide {
    WebDecide {
        call_id: call_id.into(),
        input_sha256: "h".repeat(64),
        nonce: nonce.into(),
        decision,
        reason: None,
    }
}

fn live(_: &str) -> bool {
    true
}

fn refusal<T>(r: &Result<T, (WebRefusal, Option<String>)>) -> WebRefusal {
    match r {
        Err((r, _)) => *r,
        Ok(_) => panic!("not refused"),
    }
}

#[test]
fn an_expired_request_is_neither_listed_nor_decided() {
    let q = WebQueue::default();
    let _reg = q.register(&request("c", 1, &[]), "terminal");
    let (listed, _) = q.list(9_000, 10, nonces());
    let nonce = listed[0].nonce.clone();
    assert!(q.list(10_000, 10, nonces()).0.is_empty());
    let d = doc(&nonce, "c", WebDecision::Allow);
    assert_eq!(
        refusal(&q.decide(&d, &alice(), 10_000, live)),
        WebRefusal::Expired
    );
}

#[test]
fn a_claimed_decision_wins_over_a_later_channel_answer_and_burns_every_nonce() {
    let q = WebQueue::default();
    let mut reg = q.register(&request("c", 1, &[]), "terminal");
    let first = q.list(1, 10, nonces()).0[0].nonce.clone();
    let second = q.list(2, 10, || Some("m".into())).0[0].nonce.clone();
    let d = doc(&first, "c", WebDecision::Allow);
    let (_applied, req) = q.decide(&d, &alice(), 3, live).unwrap();
    assert_eq!(req.call_id, "c");
    // Claimed: no longer listed, the other nonce reads as settled, the channel side sees the vote.
    assert!(q.list(4, 10, nonces()).0.is_empty());
    let other = doc(&second, "c", WebDecision::Allow);
    assert_eq!(
        refusal(&q.decide(&other, &alice(), 5, live)),
        WebRefusal::AlreadyDecided
    );
    assert_eq!(
        refusal(&q.decide(&d, &alice(), 5, live)),
        WebRefusal::Replayed
    );
    let vote = reg.close().expect("the console's claim");
    assert!(vote.outcome.is_granted());
}

#[test]
fn a_settled_request_refuses_its_nonces_and_a_dead_session_says_so() {
    let q = WebQueue::default();
    let reg = q.register(&request("c", 1, &[]), "terminal");
    let nonce = q.list(1, 10, nonces()).0[0].nonce.clone();
    drop(reg);
    let d = doc(&nonce, "c", WebDecision::Deny);
    assert_eq!(
        refusal(&q.decide(&d, &alice(), 2, live)),
        WebRefusal::AlreadyDecided
    );
    // Named a second time, it is a replay.
    assert_eq!(
        refusal(&q.decide(&d, &alice(), 2, live)),
        WebRefusal::Replayed
    );
    let q = WebQueue::default();
    let _reg = q.register(&request("c", 1, &[]), "terminal");
    let nonce = q.list(1, 10, nonces()).0[0].nonce.clone();
    let d = doc(&nonce, "c", WebDecision::Deny);
    assert_eq!(
        refusal(&q.decide(&d, &alice(), 2, |_| false)),
        WebRefusal::SessionEnded
    );
}

#[test]
fn nonces_per_request_are_bounded() {
    let q = WebQueue::default();
    let _reg = q.register(&request("c", 1, &[]), "terminal");
    let mut next = nonces();
    let first = q.list(1, 10, &mut next).0[0].nonce.clone();
    for _ in 0..NONCES_PER_REQUEST {
        q.list(1, 10, &mut next);
    }
    let d = doc(&first, "c", WebDecision::Allow);
    assert_eq!(
        refusal(&q.decide(&d, &alice(), 2, live)),
        WebRefusal::UnknownNonce
    );
    assert_eq!(q.lock().nonces.len(), NONCES_PER_REQUEST);
}

#[test]
fn rights_follow_the_allowlist_the_quorum_and_view_only() {
    let me = alice();
    let open = rights(&request("c", 1, &[]), &me, false, "slack");
    assert!(open.approve && open.deny && open.why_not.is_none());
    let listed = rights(&request("c", 1, &["tty:alice"]), &me, false, "slack");
    assert!(listed.approve && listed.deny);
    let other = rights(&request("c", 1, &["U1"]), &me, false, "slack");
    assert!(!other.approve && !other.deny);
    let quorum = rights(&request("c", 2, &[]), &me, false, "slack");
    assert!(!quorum.approve && quorum.deny);
    assert!(quorum.why_not.unwrap().contains("slack"));
    let view = rights(&request("c", 1, &[]), &me, true, "slack");
    assert!(!view.approve && !view.deny);
}

#[test]
fn a_console_reason_loses_control_and_bidi_characters() {
    assert_eq!(bounded("ok\u{202E}\u{1b}[31m\n"), "ok[31m");
    assert_eq!(
        bounded(&"x".repeat(MAX_REASON_CHARS * 2)).len(),
        MAX_REASON_CHARS
    );
}

#[test]
fn refusals_are_journaled_within_a_budget_per_minute() {
    let q = WebQueue::default();
    let minute = 7 * 60_000;
    let taken = (0..REJECTED_PER_MINUTE + 5)
        .filter(|_| q.take_budget(minute + 1))
        .count();
    assert_eq!(taken, REJECTED_PER_MINUTE as usize);
    assert!(q.take_budget(minute + 60_000), "a new minute, a new budget");
}
