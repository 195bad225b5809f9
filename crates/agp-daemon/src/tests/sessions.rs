//! Session lifecycle: integrity check at the end, the admin channel, projections, hang-ups and
//! cancelled approvals.

use super::*;

/// Whatever a session leaves in its repository is checked when it ends: planted items are
/// neutralized and the report is journaled before `session.ended`; what was there before is
/// reported as pre-existing and kept.
#[test]
fn ending_a_session_journals_the_integrity_report_and_quarantines_what_it_left() {
    let mut f = Fixture::new(Duration::from_secs(5));
    std::os::unix::fs::symlink("/usr/share", f.repo.join("old-link")).unwrap();
    let mut c = f.connect(SessionMode::Gate);
    std::os::unix::fs::symlink("/root/.ssh", f.repo.join("ssh")).unwrap();
    let hooks = f.repo.join("sub/.git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::create_dir_all(f.repo.join("sub/.git/objects")).unwrap();
    std::fs::create_dir_all(f.repo.join("sub/.git/refs")).unwrap();
    std::fs::write(f.repo.join("sub/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\nid\n").unwrap();
    c.end_session(Some("completed")).unwrap();
    f.stop();

    let kinds = f.journal.kinds();
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(at("session.integrity") < at("session.ended"), "{kinds:?}");
    let body = &f.journal.of("session.integrity")[0];
    let findings = body["report"]["findings"].as_array().unwrap();
    let by_path = |p: &str| findings.iter().find(|x| x["path"] == p).unwrap().clone();
    let quarantine = f
        .config
        .agp_home
        .join("quarantine")
        .join(body["session"].as_str().unwrap());
    assert_eq!(by_path("ssh")["action"], "quarantined");
    assert_eq!(by_path("sub/.git")["action"], "quarantined");
    assert_eq!(by_path("old-link")["origin"], "pre_existing");
    assert_eq!(by_path("old-link")["action"], "kept");
    assert!(f.repo.join("old-link").symlink_metadata().is_ok());
    assert!(f.repo.join("ssh").symlink_metadata().is_err());
    assert!(quarantine.join("sub/.git/hooks/pre-commit").exists());
    assert_eq!(body["by_session"], 2);
    assert_eq!(body["not_neutralized"], 0);
}

#[test]
fn admin_channel_opens_a_session_and_ending_it_closes_the_token() {
    let f = Fixture::new(Duration::from_secs(5));
    let admin = std::fs::read_to_string(f.config.admin_token_path()).unwrap();
    let mut c = Client::connect(&f.config.socket_path(), Duration::from_secs(5)).unwrap();
    let opened = c
        .open_session(
            &admin,
            "claude-code",
            f.repo.to_str().unwrap(),
            "fix it",
            SessionMode::Gate,
        )
        .unwrap();
    let mut s = f.client(&opened.token);
    assert!(s.request(&bash("a1", "ls")).unwrap().is_allow());
    s.end_session(Some("completed")).unwrap();
    let mut again = Client::connect(&f.config.socket_path(), Duration::from_secs(5)).unwrap();
    assert!(again.hello(&opened.token).is_err());
    assert_eq!(f.journal.of("session.ended").len(), 1);
    // Projections reach the channel through the outbox.
    eventually(
        || "session.ended never projected".into(),
        || {
            let projected = f.channel.projected.lock().unwrap();
            projected.iter().any(|k| k == "session.ended")
        },
    );
}

#[test]
fn a_failing_projection_is_retried_with_backoff_and_never_blocks_calls() {
    let (_dir, repo, config) = world();
    let journal = Arc::new(MemJournal::default());
    let mut p = parts(&journal, &Arc::new(QueueChannel::default()));
    p.channel = Arc::new(QueueChannel {
        projections_fail: true,
        ..QueueChannel::default()
    });
    let (rt, _daemon, token) = serving(&config, p, &repo, SessionMode::Gate);
    let mut c = connect(&config.socket_path(), &token);
    // Calls go through while the channel is down (denials are queued too).
    assert_eq!(
        c.request(&bash("d1", "rm x")).unwrap().decision,
        agp_contracts::Decision::Deny
    );
    assert!(c.request(&bash("a1", "ls")).unwrap().is_allow());
    let store = crate::store::Store::open_existing(&config.state_db).unwrap();
    let due_later = || store.due_outbox(i64::MAX, 10).unwrap();
    eventually(
        || format!("projections were not attempted: {:?}", due_later()),
        || {
            let due = due_later();
            due.len() == 2 && due.iter().all(|r| r.attempts >= 1)
        },
    );
    // Failed attempts wait for their backoff instead of being retried at once.
    assert!(store
        .due_outbox(crate::util::now_ms(), 10)
        .unwrap()
        .is_empty());
    rt.shutdown_background();
}

/// A queued row that does not read as a projection (another version's, or damaged in
/// state.db) fails the same way on every attempt: it is dead-lettered at once, and the
/// channel is never handed a body unlike its type.
#[test]
fn an_unreadable_projection_is_dead_lettered_without_reaching_the_channel() {
    let f = Fixture::new(Duration::from_secs(5));
    let store = crate::store::Store::open_existing(&f.config.state_db).unwrap();
    let now = crate::util::now_ms();
    for (kind, body) in [
        ("session.ended", r#"{"status":1}"#),
        ("policy.decided", r#"{"decision":"allow"}"#),
        ("call.denied", "not json"),
    ] {
        store.enqueue_outbox(kind, Some("s-x"), body, now).unwrap();
    }
    eventually(
        || format!("rows: {:?}", store.outbox_counts()),
        || store.outbox_counts().unwrap() == (0, 0, 3),
    );
    assert!(f.channel.projected.lock().unwrap().is_empty());
}

#[test]
fn an_agent_that_hangs_up_during_an_approval_gets_its_approval_settled_and_nothing_runs() {
    use std::io::Write;
    let f = Fixture::new(Duration::from_secs(60));
    let token = f.session(SessionMode::ProxyExec);
    {
        let mut raw = std::os::unix::net::UnixStream::connect(f.config.socket_path()).unwrap();
        let hello = serde_json::json!({"type": "hello", "protocol": 1, "token": token});
        let call = serde_json::json!({"type": "tool_call_request", "id": "w1", "tool": "Write",
                                      "input": {"file_path": "gone.txt", "content": "x"}, "cwd": ""});
        raw.write_all(format!("{hello}\n{call}\n").as_bytes())
            .unwrap();
        eventually(
            || "no approval requested".into(),
            || !f.journal.of("approval.requested").is_empty(),
        );
    } // The agent hangs up while the approval is pending.
    eventually(
        || format!("abandoned approval never settled: {}", f.journal.dump()),
        || !f.journal.of("approval.denied").is_empty(),
    );
    let denied = &f.journal.of("approval.denied")[0];
    assert!(
        denied["reason"].as_str().unwrap().contains("disconnected"),
        "{denied}"
    );
    assert!(f.journal.of("tool_call.result").is_empty());
    assert!(!f.repo.join("gone.txt").exists());
    let store = crate::store::Store::open_existing(&f.config.state_db).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

#[test]
fn ending_a_session_cancels_its_pending_approval_before_it_ends() {
    let f = Fixture::new(Duration::from_secs(60));
    let session = open_session(&f.rt, &f.daemon, &f.repo, SessionMode::ProxyExec);
    let sock = f.config.socket_path();
    let token = session.token.clone();
    let waiter =
        std::thread::spawn(move || connect(&sock, &token).request(&write("w1", "late.txt")));
    eventually(
        || f.journal.dump(),
        || !f.journal.of("approval.requested").is_empty(),
    );
    f.rt.block_on(f.daemon.end_session(&session.id, "interrupted"))
        .unwrap();
    // The prompt is withdrawn and the agent is denied; nothing runs.
    let reply = waiter.join().unwrap().unwrap();
    assert_eq!(reply.decision, agp_contracts::Decision::Deny);
    assert!(!f.repo.join("late.txt").exists());
    let kinds: Vec<String> = f
        .journal
        .events()
        .iter()
        .map(|(k, _, _)| k.clone())
        .collect();
    let denied = kinds.iter().position(|k| k == "approval.denied").unwrap();
    let ended = kinds.iter().position(|k| k == "session.ended").unwrap();
    assert!(denied < ended, "{kinds:?}");
    let body = &f.journal.of("approval.denied")[0];
    assert_eq!(body["cancelled"], true);
    assert_eq!(body["call_id"], "w1");
    assert!(
        body["reason"].as_str().unwrap().contains("interrupted"),
        "{body}"
    );
    // Settled once: the withdrawn prompt's own conclusion found it resolved.
    assert_eq!(f.journal.of("approval.denied").len(), 1);
    assert_eq!(f.journal.of("session.ended")[0]["status"], "interrupted");
    let store = crate::store::Store::open_existing(&f.config.state_db).unwrap();
    assert!(store.pending().unwrap().is_empty());
}
