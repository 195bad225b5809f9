//! One call through the loop: allow, deny, approvals, quorum, remembered approvals, journal and
//! sandbox failures.

use super::*;

#[test]
fn allow_runs_in_the_sandbox_and_journals_request_decision_result_in_order() {
    let f = Fixture::new(Duration::from_secs(5));
    let mut c = f.connect(SessionMode::ProxyExec);
    let reply = c.request_exec(&bash("c1", "echo hi sk-SECRET")).unwrap();
    assert!(reply.verdict.is_allow());
    let result = reply.result.unwrap();
    assert!(result.ok);
    assert_eq!(result.output, "hi [REDACTED]\n");
    // The hash covers the real output, not the redacted one.
    assert_eq!(
        result.output_sha256,
        agp_contracts::canonical::sha256_hex(b"hi sk-SECRET\n")
    );
    let kinds = f.journal.kinds();
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "tool_call.requested")
        .collect();
    assert_eq!(
        tail,
        ["tool_call.requested", "policy.decided", "tool_call.result"]
    );
    assert!(kinds.starts_with(&["sandbox.preflight".to_owned(), "session.started".to_owned()]));
    assert!(
        !f.journal.dump().contains("sk-SECRET"),
        "secret leaked: {}",
        f.journal.dump()
    );
    let stored = crate::store::Store::open_existing(&f.config.state_db)
        .unwrap()
        .sessions()
        .unwrap();
    assert!(
        stored.iter().all(|r| r.task == "t [REDACTED]"),
        "{stored:?}"
    );
    let decided = &f.journal.of("policy.decided")[0];
    assert_eq!(decided["rule_id"], "default-allow");
    assert_eq!(decided["policy_sha256"], "p0");
    assert_eq!(
        decided["input_sha256"],
        f.journal.of("tool_call.requested")[0]["input_sha256"]
    );
}

#[test]
fn deny_never_executes() {
    let f = Fixture::new(Duration::from_secs(5));
    let mut c = f.connect(SessionMode::ProxyExec);
    let marker = f.repo.join("marker");
    std::fs::write(&marker, "x").unwrap();
    let reply = c
        .request_exec(&bash("c1", &format!("rm {}", marker.display())))
        .unwrap();
    assert_eq!(reply.verdict.decision, agp_contracts::Decision::Deny);
    assert_eq!(reply.verdict.rule_id.as_deref(), Some("no-rm"));
    assert!(reply.result.is_none());
    assert!(marker.exists());
    assert!(f.journal.of("tool_call.result").is_empty());
}

#[test]
fn require_granted_runs_and_journals_who() {
    let f = Fixture::new(Duration::from_secs(5));
    f.channel.grant_by(&["alice"]);
    let mut c = f.connect(SessionMode::ProxyExec);
    let reply = c.request_exec(&write("c1", "out.txt")).unwrap();
    assert!(reply.verdict.is_allow(), "{reply:?}");
    assert_eq!(reply.verdict.approved_by.as_deref(), Some("alice"));
    assert!(f.repo.join("out.txt").is_file());
    let granted = &f.journal.of("approval.granted")[0];
    assert_eq!(granted["by"][0]["id"], "alice");
    let kinds = f.journal.kinds();
    let i = kinds
        .iter()
        .position(|k| k == "approval.requested")
        .unwrap();
    assert_eq!(
        &kinds[i..],
        ["approval.requested", "approval.granted", "tool_call.result"]
    );
}

#[test]
fn human_deny_timeout_and_no_approver_are_distinct_denials() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel.answer(ApprovalOutcome::Denied {
        by: human("bob"),
        reason: Some("no".into()),
    });
    f.channel.answer(ApprovalOutcome::Unavailable {
        reason: "no terminal".into(),
    });
    let mut c = f.connect(SessionMode::ProxyExec);
    let r1 = c.request_exec(&write("c1", "a")).unwrap();
    assert_eq!(r1.verdict.decision, agp_contracts::Decision::Deny);
    assert!(r1.verdict.reason.contains("bob"));
    let r2 = c.request_exec(&write("c2", "b")).unwrap();
    assert!(
        r2.verdict.reason.contains("no approver available"),
        "{}",
        r2.verdict.reason
    );
    // Queue empty: the channel never answers → timeout.
    let r3 = c.request_exec(&write("c3", "c")).unwrap();
    assert_eq!(r3.verdict.decision, agp_contracts::Decision::Deny);
    assert!(r3.verdict.reason.contains("timed out"));
    assert_eq!(f.journal.of("approval.denied").len(), 2);
    assert_eq!(f.journal.of("approval.timeout").len(), 1);
    assert!(f.journal.of("tool_call.result").is_empty());
    assert!(!f.repo.join("a").exists() && !f.repo.join("c").exists());
}

#[test]
fn quorum_is_checked_by_the_daemon_too() {
    let f = Fixture::new(Duration::from_secs(5));
    // Edit needs 2 distinct approvers; the same person twice is one.
    f.channel.grant_by(&["alice", "alice"]);
    let mut c = f.connect(SessionMode::ProxyExec);
    let req = call(
        "e1",
        "Edit",
        json!({"file_path": "x", "old_string": "a", "new_string": "b"}),
    );
    let r = c.request_exec(&req).unwrap();
    assert_eq!(r.verdict.decision, agp_contracts::Decision::Deny);
    assert!(r.verdict.reason.contains("quorum"));
}

#[test]
fn remembered_approval_is_not_asked_again_and_is_journaled_as_remembered() {
    let f = Fixture::new(Duration::from_secs(5));
    f.channel.grant_for_session_by(&["alice"]);
    let mut c = f.connect(SessionMode::ProxyExec);
    assert!(c
        .request_exec(&write("c1", "remember.txt"))
        .unwrap()
        .verdict
        .is_allow());
    let second = c.request_exec(&write("c2", "remember.txt")).unwrap();
    assert!(second.verdict.is_allow());
    assert_eq!(
        second.verdict.approved_by.as_deref(),
        Some("remembered:alice")
    );
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 1);
    let grants = f.journal.of("approval.granted");
    assert_eq!(grants[1]["remembered"], true);
    // A different input is asked again (and, with nobody answering, times out).
}

#[test]
fn journal_failure_denies_and_executes_nothing() {
    let f = Fixture::new(Duration::from_secs(5));
    let mut c = f.connect(SessionMode::ProxyExec);
    f.journal.set_broken(true);
    let reply = c.request_exec(&bash("c1", "touch made")).unwrap();
    assert_eq!(reply.verdict.decision, agp_contracts::Decision::Deny);
    assert!(reply.verdict.reason.contains("journal"));
    assert!(!f.repo.join("made").exists());
}

#[test]
fn float_input_cannot_be_bound_and_is_denied() {
    let f = Fixture::new(Duration::from_secs(5));
    let mut c = f.connect(SessionMode::ProxyExec);
    let req = call("f1", "Bash", json!({"command": "true", "timeout": 1.5}));
    let reply = c.request_exec(&req).unwrap();
    assert_eq!(reply.verdict.decision, agp_contracts::Decision::Deny);
    assert_eq!(reply.verdict.rule_id.as_deref(), Some("agp.invalid-input"));
}

#[test]
fn a_remembered_approval_covers_only_the_same_tool_cwd_and_input() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel.grant_for_session_by(&["alice"]);
    let mut c = f.connect(SessionMode::Gate);
    assert!(c.request(&write("c1", "remember.txt")).unwrap().is_allow());
    assert!(c.request(&write("c2", "remember.txt")).unwrap().is_allow());
    // Same input, another working directory: asked again (nobody answers → timeout → deny).
    let mut elsewhere = write("c3", "remember.txt");
    elsewhere.cwd = "/somewhere/else".into();
    assert_eq!(
        c.request(&elsewhere).unwrap().decision,
        agp_contracts::Decision::Deny
    );
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 2);
}

/// A sandbox that proves itself but then fails every command.
struct FailingProvider;
impl SandboxProvider for FailingProvider {
    type Session = ();
    fn spawn(&self, _spec: &SandboxSpec) -> Result<(), SandboxError> {
        Ok(())
    }
    fn exec(&self, _s: &(), _r: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        Err(SandboxError::Refused("namespace creation failed".into()))
    }
    fn teardown(&self, _s: ()) -> Result<(), SandboxError> {
        Ok(())
    }
    fn isolation(&self) -> Isolation {
        HostProvider.isolation()
    }
    fn preflight(&self, _s: &()) -> Result<PreflightReport, SandboxError> {
        HostProvider.preflight(&PathBuf::new())
    }
}

#[test]
fn a_sandbox_failure_is_journaled_as_an_error_result_never_as_success() {
    let (_dir, repo, config) = world();
    let journal = Arc::new(MemJournal::default());
    let mut p = parts(&journal, &Arc::new(QueueChannel::default()));
    p.sandbox = Some(Arc::new(Provider(Arc::new(FailingProvider))));
    let (rt, _daemon, token) = serving(&config, p, &repo, SessionMode::ProxyExec);
    let mut c = connect(&config.socket_path(), &token);
    let reply = c.request_exec(&bash("x1", "echo hi")).unwrap();
    let result = reply.result.unwrap();
    assert!(!result.ok);
    assert!(
        result.output.contains("namespace creation failed"),
        "{result:?}"
    );
    let journaled = &journal.of("tool_call.result")[0];
    assert_eq!(journaled["ok"], false);
    assert!(journaled["error"]
        .as_str()
        .unwrap()
        .contains("namespace creation failed"));
    rt.shutdown_background();
}
