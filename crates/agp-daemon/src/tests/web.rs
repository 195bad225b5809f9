//! Approvals from the web console over the admin channel: listed with a fresh nonce, decided as
//! the connecting OS user, journaled `via: "web"`; every forged, replayed, late or unauthorized
//! decision refused and journaled as `approval.rejected`.

use agp_gateway::{ApprovalList, PendingApproval, WebDecision};

use super::*;

fn admin_token(f: &Fixture) -> String {
    std::fs::read_to_string(f.config.admin_token_path()).unwrap()
}

fn admin(f: &Fixture) -> Client {
    Client::connect(&f.config.socket_path(), Duration::from_secs(20)).unwrap()
}

fn list(f: &Fixture) -> ApprovalList {
    admin(f).list_approvals(&admin_token(f)).unwrap()
}

/// The listing once it shows `n` approvals.
fn listed(f: &Fixture, n: usize) -> ApprovalList {
    let got = std::cell::RefCell::new(list(f));
    eventually(
        || format!("{:?}", got.borrow()),
        || {
            *got.borrow_mut() = list(f);
            got.borrow().approvals.len() == n
        },
    );
    got.into_inner()
}

fn decide(
    f: &Fixture,
    p: &PendingApproval,
    d: WebDecision,
) -> Result<agp_gateway::DecisionApplied, ClientError> {
    admin(f).decide_approval(&admin_token(f), p, d, Some("looked at it"))
}

/// The refusal reason code of a refused decision.
fn refusal(r: Result<agp_gateway::DecisionApplied, ClientError>) -> String {
    match r {
        Err(ClientError::Refused {
            code: ErrorCode::ApprovalRefused,
            message,
        }) => message.split(':').next().unwrap().to_owned(),
        other => panic!("not refused as an approval: {other:?}"),
    }
}

/// The local account's approver id, as the terminal channel names it.
fn me() -> agp_contracts::Approver {
    use std::os::unix::fs::MetadataExt;
    crate::mediate::web_approver(std::fs::metadata("/proc/self").unwrap().uid())
}

fn rejected(f: &Fixture) -> Vec<String> {
    f.journal
        .of("approval.rejected")
        .iter()
        .map(|e| {
            assert_eq!(e["channel"], "web", "{e}");
            assert_eq!(e["user"]["id"], me().id.as_str(), "{e}");
            e["reason"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// An agent waiting in its own thread on `req`.
fn waiting(
    f: &Fixture,
    req: ToolCallRequest,
) -> std::thread::JoinHandle<Result<agp_gateway::VerdictMessage, ClientError>> {
    let mut agent = f.connect(SessionMode::Gate);
    std::thread::spawn(move || agent.request(&req))
}

#[test]
fn an_allow_from_the_console_lets_the_call_run_and_is_journaled_as_the_os_user_via_web() {
    let f = Fixture::new(Duration::from_secs(60));
    let mut agent = f.connect(SessionMode::ProxyExec);
    let session = agent.session().unwrap().to_owned();
    let req = call(
        "w1",
        "Write",
        json!({"file_path": "out.txt", "content": "key sk-SECRET"}),
    );
    let waiter = std::thread::spawn(move || agent.request_exec(&req));

    let got = listed(&f, 1);
    assert_eq!(got.approver, me().id);
    assert!(!got.view_only);
    let p = &got.approvals[0];
    assert_eq!(
        (p.session.as_str(), p.call_id.as_str()),
        (session.as_str(), "w1")
    );
    assert_eq!(p.channel, "queue");
    assert!(p.web_can_approve && p.web_can_deny, "{p:?}");
    assert_eq!(p.nonce.len(), 64);
    // Never a secret: the input listed is the redacted one.
    let text = serde_json::to_string(&got).unwrap();
    assert!(
        !text.contains("sk-SECRET") && text.contains("[REDACTED]"),
        "{text}"
    );
    // Each listing issues new nonces.
    assert_ne!(list(&f).approvals[0].nonce, p.nonce);

    let applied = decide(&f, p, WebDecision::Allow).unwrap();
    assert!(applied.granted, "{applied:?}");
    assert_eq!(applied.call_id, "w1");
    let reply = waiter.join().unwrap().unwrap();
    assert!(reply.verdict.is_allow());
    assert_eq!(reply.verdict.approved_by.as_deref(), Some(me().id.as_str()));
    assert!(reply.result.unwrap().ok);

    let granted = f.journal.of("approval.granted");
    assert_eq!(granted.len(), 1, "{}", f.journal.dump());
    assert_eq!(granted[0]["channel"], "web");
    assert_eq!(granted[0]["by"][0]["via"], "web");
    assert_eq!(granted[0]["by"][0]["id"], me().id.as_str());
    let votes = f.journal.of("approval.vote");
    assert_eq!(votes.len(), 1);
    assert_eq!(
        (votes[0]["vote"].as_str(), votes[0]["channel"].as_str()),
        (Some("allow"), Some("web"))
    );
    // The configured channel's prompt was withdrawn, saying who decided.
    eventually(
        || format!("{:?}", f.channel.cancelled.lock().unwrap()),
        || !f.channel.cancelled.lock().unwrap().is_empty(),
    );
    let cancelled = f.channel.cancelled.lock().unwrap().clone();
    assert_eq!(cancelled[0].0, "w1");
    assert!(cancelled[0].1.contains("web console by"), "{cancelled:?}");
    // Settled: nothing is listed any more, and the nonce is spent.
    assert!(list(&f).approvals.is_empty());
    assert_eq!(refusal(decide(&f, p, WebDecision::Allow)), "replayed");
    assert_eq!(rejected(&f), ["replayed"]);
}

#[test]
fn forged_decisions_are_refused_journaled_and_leave_the_call_pending() {
    let f = Fixture::new(Duration::from_secs(60));
    let a = waiting(&f, write("a1", "x"));
    let b = waiting(&f, write("b1", "y"));
    let got = listed(&f, 2);
    let (pa, pb) = (&got.approvals[0], &got.approvals[1]);

    // A's nonce for B's call.
    let mut other = pb.clone();
    other.nonce = pa.nonce.clone();
    assert_eq!(
        refusal(decide(&f, &other, WebDecision::Allow)),
        "call_mismatch"
    );
    // B's call with another input's hash.
    let mut wrong = pb.clone();
    wrong.input_sha256 = "0".repeat(64);
    assert_eq!(
        refusal(decide(&f, &wrong, WebDecision::Allow)),
        "input_hash_mismatch"
    );
    // Both nonces were burned by their one use, whatever became of it.
    assert_eq!(refusal(decide(&f, pa, WebDecision::Allow)), "replayed");
    assert_eq!(refusal(decide(&f, pb, WebDecision::Allow)), "replayed");
    // Never issued.
    let mut invented = pa.clone();
    invented.nonce = "f".repeat(64);
    assert_eq!(
        refusal(decide(&f, &invented, WebDecision::Allow)),
        "unknown_nonce"
    );
    // "Allow for this session" is not offered by this rule.
    let fresh = list(&f);
    assert_eq!(
        refusal(decide(&f, &fresh.approvals[0], WebDecision::AllowSession)),
        "session_grant_not_offered"
    );
    assert_eq!(
        rejected(&f),
        [
            "call_mismatch",
            "input_hash_mismatch",
            "replayed",
            "replayed",
            "unknown_nonce",
            "session_grant_not_offered"
        ]
    );
    assert!(f.journal.of("approval.granted").is_empty());
    assert!(f.journal.of("approval.denied").is_empty());

    // The admin token is required: refused before anything is looked at.
    let bad = admin(&f).decide_approval(
        "not-the-token",
        &fresh.approvals[1],
        WebDecision::Allow,
        None,
    );
    assert!(
        matches!(
            bad,
            Err(ClientError::Refused {
                code: ErrorCode::BadToken,
                ..
            })
        ),
        "{bad:?}"
    );
    assert!(matches!(
        admin(&f).list_approvals(""),
        Err(ClientError::Refused {
            code: ErrorCode::BadToken,
            ..
        })
    ));

    // Both still wait; real decisions settle them.
    let now = list(&f);
    assert_eq!(now.approvals.len(), 2);
    let deny = now.approvals.iter().find(|p| p.call_id == "a1").unwrap();
    let applied = decide(&f, deny, WebDecision::Deny).unwrap();
    assert!(!applied.granted);
    let verdict = a.join().unwrap().unwrap();
    assert!(!verdict.is_allow());
    assert!(
        verdict.reason.contains("looked at it"),
        "{}",
        verdict.reason
    );
    let denied = f.journal.of("approval.denied");
    assert_eq!(denied[0]["channel"], "web");
    assert_eq!(denied[0]["by"]["via"], "web");
    let allow = now.approvals.iter().find(|p| p.call_id == "b1").unwrap();
    assert!(decide(&f, allow, WebDecision::Allow).unwrap().granted);
    assert!(b.join().unwrap().unwrap().is_allow());
}

#[test]
fn a_decision_after_the_channel_decided_is_refused_and_changes_nothing() {
    let f = Fixture::new(Duration::from_secs(60));
    let (tx, rx) = tokio::sync::oneshot::channel();
    *f.channel.later.lock().unwrap() = Some(rx);
    let a = waiting(&f, write("c1", "x"));
    let p = listed(&f, 1).approvals[0].clone();
    tx.send(ApprovalOutcome::Denied {
        by: human("tty:bob"),
        reason: Some("no".into()),
    })
    .unwrap();
    assert!(!a.join().unwrap().unwrap().is_allow());
    assert_eq!(
        refusal(decide(&f, &p, WebDecision::Allow)),
        "already_decided"
    );
    assert_eq!(rejected(&f), ["already_decided"]);
    assert!(f.journal.of("approval.granted").is_empty());
    let denied = f.journal.of("approval.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["channel"], "queue");
    assert!(f.channel.cancelled.lock().unwrap().is_empty());
}

#[test]
fn a_quorum_of_two_takes_only_a_deny_from_the_console() {
    let f = Fixture::new(Duration::from_secs(60));
    let a = waiting(&f, call("e1", "Edit", json!({"file_path": "x"})));
    let p = listed(&f, 1).approvals[0].clone();
    assert_eq!(p.quorum, 2);
    assert!(!p.web_can_approve && p.web_can_deny, "{p:?}");
    assert!(
        p.why_not
            .as_deref()
            .unwrap()
            .contains("2 distinct approvers"),
        "{p:?}"
    );
    assert_eq!(
        refusal(decide(&f, &p, WebDecision::Allow)),
        "quorum_needs_other_approvers"
    );
    let p = list(&f).approvals[0].clone();
    assert!(!decide(&f, &p, WebDecision::Deny).unwrap().granted);
    assert!(!a.join().unwrap().unwrap().is_allow());
    assert_eq!(rejected(&f), ["quorum_needs_other_approvers"]);
    assert!(f.journal.of("approval.granted").is_empty());
}

#[test]
fn a_view_only_daemon_lists_but_refuses_every_decision() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_secs(60);
    config.web_approvals = false;
    let f = Fixture::with(
        dir,
        repo,
        config,
        Arc::new(MemJournal::default()),
        Arc::new(QueueChannel::default()),
    );
    let mut agent = f.connect(SessionMode::Gate);
    let id = agent.session().unwrap().to_owned();
    let _a = std::thread::spawn(move || agent.request(&write("v1", "x")));
    let got = listed(&f, 1);
    assert!(got.view_only);
    let p = &got.approvals[0];
    assert!(!p.web_can_approve && !p.web_can_deny);
    assert!(p.why_not.as_deref().unwrap().contains("view-only"));
    assert_eq!(refusal(decide(&f, p, WebDecision::Allow)), "view_only");
    assert_eq!(refusal(decide(&f, p, WebDecision::Deny)), "view_only");
    assert_eq!(rejected(&f), ["view_only", "view_only"]);
    assert_eq!(list(&f).approvals.len(), 1, "still pending");
    admin(&f)
        .stop_session(&admin_token(&f), &id, "test", None)
        .unwrap();
}

#[test]
fn a_decision_for_a_stopped_session_is_refused() {
    let f = Fixture::new(Duration::from_secs(60));
    let mut agent = f.connect(SessionMode::Gate);
    let id = agent.session().unwrap().to_owned();
    let a = std::thread::spawn(move || agent.request(&write("s1", "x")));
    let p = listed(&f, 1).approvals[0].clone();
    let stopped = admin(&f)
        .stop_session(&admin_token(&f), &id, "alice", None)
        .unwrap();
    assert!(stopped.stopped);
    assert!(!a.join().unwrap().unwrap().is_allow());
    assert_eq!(refusal(decide(&f, &p, WebDecision::Allow)), "session_ended");
    assert_eq!(rejected(&f), ["session_ended"]);
    assert!(f.journal.of("approval.granted").is_empty());
}

#[test]
fn a_timed_out_request_cannot_be_decided_later() {
    let f = Fixture::new(Duration::from_secs(3));
    let a = waiting(&f, write("t1", "x"));
    let p = listed(&f, 1).approvals[0].clone();
    assert!(!a.join().unwrap().unwrap().is_allow());
    assert_eq!(f.journal.of("approval.timeout").len(), 1);
    assert_eq!(
        refusal(decide(&f, &p, WebDecision::Allow)),
        "already_decided"
    );
    assert!(f.journal.of("approval.granted").is_empty());
}

#[test]
fn allow_for_the_session_from_the_console_is_remembered() {
    let f = Fixture::new(Duration::from_secs(60));
    let mut agent = f.connect(SessionMode::Gate);
    let req = write("r1", "remember.txt");
    let again = ToolCallRequest {
        id: "r2".into(),
        ..req.clone()
    };
    let a = std::thread::spawn(move || {
        let first = agent.request(&req);
        (first, agent)
    });
    let p = listed(&f, 1).approvals[0].clone();
    assert_eq!(p.remember_secs, Some(60));
    assert!(decide(&f, &p, WebDecision::AllowSession).unwrap().granted);
    let (first, mut agent) = a.join().unwrap();
    assert!(first.unwrap().is_allow());
    let remembered = f.journal.of("approval.remembered");
    assert_eq!(remembered.len(), 1, "{}", f.journal.dump());
    assert_eq!(remembered[0]["channel"], "web");
    // The same call again is granted without asking anyone.
    let second = agent.request(&again).unwrap();
    assert!(second.is_allow());
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 1);
}

#[test]
fn a_channel_that_can_ask_nobody_leaves_the_request_to_a_watching_console() {
    let f = Fixture::new(Duration::from_secs(60));
    // Nobody watches yet: no terminal means deny at once, as before.
    f.channel.answer(ApprovalOutcome::Unavailable {
        reason: "no terminal".into(),
    });
    let mut agent = f.connect(SessionMode::Gate);
    assert!(!agent.request(&write("n1", "x")).unwrap().is_allow());
    // A console lists: the next such request waits for it.
    assert!(list(&f).approvals.is_empty());
    f.channel.answer(ApprovalOutcome::Unavailable {
        reason: "no terminal".into(),
    });
    let a = std::thread::spawn(move || agent.request(&write("n2", "x")));
    let p = listed(&f, 1).approvals[0].clone();
    assert_eq!(p.call_id, "n2");
    assert!(decide(&f, &p, WebDecision::Allow).unwrap().granted);
    assert!(a.join().unwrap().unwrap().is_allow());
}

#[test]
fn egress_destinations_are_decided_from_the_console_within_their_approver_list() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_secs(60);
    let f = Fixture::with(
        dir,
        repo,
        config,
        Arc::new(MemJournal::default()),
        Arc::new(QueueChannel::default()),
    );
    let mut agent = f.connect(SessionMode::Gate);
    let id = agent.session().unwrap().to_owned();
    let ask = crate::EgressAsk {
        method: "GET".into(),
        host: "example.com".into(),
        port: 443,
        path: Some("/x".into()),
        reason: "no rule covers example.com:443".into(),
    };
    let m = f.daemon.mediator.clone();
    let (sid, asked) = (id.clone(), ask.clone());
    let answer =
        f.rt.spawn(async move { m.approve_egress(&sid, asked).await });
    let p = listed(&f, 1).approvals[0].clone();
    assert_eq!(p.tool.name(), crate::EGRESS_TOOL);
    assert_eq!(p.redacted_input["egress"]["host"], "example.com");
    assert!(decide(&f, &p, WebDecision::Allow).unwrap().granted);
    let answer = f.rt.block_on(answer).unwrap();
    assert!(answer.allowed, "{answer:?}");
    assert!(answer.reason.contains(&me().id), "{answer:?}");
    let _ = agent.end_session(None);
}

#[test]
fn an_approver_list_without_this_user_refuses_both_answers() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_secs(60);
    config.egress_approvers = vec!["U-somebody-else".into()];
    let f = Fixture::with(
        dir,
        repo,
        config,
        Arc::new(MemJournal::default()),
        Arc::new(QueueChannel::default()),
    );
    let agent = f.connect(SessionMode::Gate);
    let id = agent.session().unwrap().to_owned();
    let ask = crate::EgressAsk {
        method: "GET".into(),
        host: "example.org".into(),
        port: 443,
        path: None,
        reason: "no rule covers example.org:443".into(),
    };
    let m = f.daemon.mediator.clone();
    let _answer = f.rt.spawn(async move { m.approve_egress(&id, ask).await });
    let p = listed(&f, 1).approvals[0].clone();
    assert!(!p.web_can_approve && !p.web_can_deny);
    assert!(p.why_not.as_deref().unwrap().contains("U-somebody-else"));
    assert_eq!(
        refusal(decide(&f, &p, WebDecision::Allow)),
        "not_an_approver"
    );
    let p = list(&f).approvals[0].clone();
    assert_eq!(
        refusal(decide(&f, &p, WebDecision::Deny)),
        "not_an_approver"
    );
    assert_eq!(rejected(&f), ["not_an_approver", "not_an_approver"]);
    assert_eq!(list(&f).approvals.len(), 1, "still pending");
}

#[test]
fn an_approval_reattached_after_a_restart_can_be_decided_from_the_console() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_secs(30);
    let journal = Arc::new(MemJournal::default());
    die_with_a_pending_approval(&config, &repo, &journal);
    let f = Fixture::after(dir, repo, config, &journal);
    let p = listed(&f, 1).approvals[0].clone();
    assert_eq!(p.call_id, "p1");
    let applied = decide(&f, &p, WebDecision::Allow).unwrap();
    // Granted and journaled; the agent that asked is gone, so nothing runs for it.
    assert!(applied.granted, "{applied:?}");
    f.rt.block_on(f.daemon.settle_recovered());
    let granted = journal.of("approval.granted");
    assert_eq!(granted.len(), 1, "{}", journal.dump());
    assert_eq!(granted[0]["channel"], "web");
}
