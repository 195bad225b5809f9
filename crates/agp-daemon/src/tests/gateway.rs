//! The gateway socket: refused frames and tokens, gate-mode results, concurrency, permissions.

use super::*;

fn expect_refused(r: Result<impl std::fmt::Debug, ClientError>, code: ErrorCode) {
    match r {
        Err(ClientError::Refused { code: c, .. }) if c == code => {}
        other => panic!("expected {code}, got {other:?}"),
    }
}

#[test]
fn replayed_ids_wrong_tokens_and_garbage_are_rejected_journaled_and_the_daemon_keeps_serving() {
    use std::io::{Read, Write};
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    c.request_exec(&bash("c1", "true")).unwrap();
    expect_refused(c.request_exec(&bash("c1", "true")), ErrorCode::ReplayedId);
    // Replays are refused on a fresh connection too.
    expect_refused(
        f.client(&token).request_exec(&bash("c1", "true")),
        ErrorCode::ReplayedId,
    );

    let sock = f.config.socket_path();
    let mut bad = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    expect_refused(bad.hello("not-a-token"), ErrorCode::BadToken);

    let raw = |bytes: &[u8]| -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(raw(b"garbage\n").contains("\"malformed\""));
    assert!(raw(b"{\"type\":\"exec_shell\"}\n").contains("\"unknown_message\""));
    assert!(
        raw(b"{\"type\":\"hello\",\"protocol\":99,\"token\":\"x\"}\n")
            .contains("\"protocol_version\"")
    );
    assert!(raw(b"{\"type\":\"tool_call_request\",\"id\":\"x\",\"tool\":\"Bash\",\"input\":{},\"cwd\":\"\"}\n").contains("\"unauthenticated\""));
    let mut huge = vec![b'{'; agp_gateway::MAX_FRAME_BYTES + 100];
    huge.push(b'\n');
    assert!(raw(&huge).contains("\"frame_too_large\""));
    expect_refused(
        Client::connect(&sock, Duration::from_secs(5))
            .unwrap()
            .open_session(
                "wrong",
                "x",
                f.repo.to_str().unwrap(),
                "",
                SessionMode::Gate,
            ),
        ErrorCode::BadToken,
    );

    let rejected: Vec<String> = f
        .journal
        .of("gateway.rejected")
        .iter()
        .map(|b| b["code"].as_str().unwrap().to_owned())
        .collect();
    for code in [
        "replayed_id",
        "bad_token",
        "malformed",
        "unknown_message",
        "protocol_version",
        "unauthenticated",
        "frame_too_large",
    ] {
        assert!(
            rejected.iter().any(|c| c == code),
            "{code} not journaled: {rejected:?}"
        );
    }
    // Still serving.
    assert!(f
        .client(&token)
        .request_exec(&bash("c2", "true"))
        .unwrap()
        .verdict
        .is_allow());
}

/// A gate-mode session (its token and client) whose call `id` (`ls`) was allowed, and the result
/// an agent would report for it: ok, with `output` and the approved input's hash.
fn allowed_gate_call(f: &Fixture, id: &str, output: &str) -> (String, Client, ToolCallResult) {
    let token = f.session(SessionMode::Gate);
    let mut c = f.client(&token);
    let v = c.request(&bash(id, "ls")).unwrap();
    assert!(v.is_allow(), "{v:?}");
    let result = ToolCallResult {
        id: id.into(),
        ok: true,
        output: output.into(),
        output_sha256: "a".repeat(64),
        input_sha256: Some(v.input_sha256),
    };
    (token, c, result)
}

#[test]
fn gate_mode_replies_verdict_and_journals_reported_result_once() {
    let f = Fixture::new(Duration::from_secs(5));
    let (token, mut c, result) = allowed_gate_call(&f, "g1", "file sk-SECRET");
    c.report_result(&result).unwrap();
    let journaled = &f.journal.of("tool_call.result")[0];
    assert_eq!(journaled["output"], "file [REDACTED]");
    assert_eq!(journaled["reported_by"], "agent");
    // A harness that reports the same call again (Claude Code fires PostToolUseFailure and
    // then PostToolUse for a failed call) is acknowledged; the first result stands, alone.
    let mut c2 = f.client(&token);
    c2.report_result(&ToolCallResult {
        ok: false,
        output: "a different story".into(),
        ..result.clone()
    })
    .unwrap();
    let results = f.journal.of("tool_call.result");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["output"], "file [REDACTED]");
    assert_eq!(results[0]["ok"], true);
    // A call that was never allowed has no result to report.
    let mut c4 = f.client(&token);
    expect_refused(
        c4.report_result(&ToolCallResult {
            id: "never-requested".into(),
            ..result.clone()
        }),
        ErrorCode::UnknownCall,
    );
    // A denied call has no result to report.
    let mut c3 = f.client(&token);
    assert_eq!(
        c3.request(&bash("g2", "rm x")).unwrap().decision,
        agp_contracts::Decision::Deny
    );
    expect_refused(
        c3.report_result(&ToolCallResult {
            id: "g2".into(),
            ..result
        }),
        ErrorCode::UnknownCall,
    );
}

/// A PostToolUse forged (or changed by the harness) to report another input than the approved
/// one: journaled as a mismatch, never as the approved call's result.
#[test]
fn a_result_for_another_input_is_a_mismatch_never_linked_to_the_approved_call() {
    let f = Fixture::new(Duration::from_secs(5));
    let (token, mut c, honest) = allowed_gate_call(&f, "m1", "done");
    let approved_sha256 = honest.input_sha256.clone().unwrap();
    let other = agp_contracts::canonical::sha256_of_value(&json!({"command": "rm -rf ~"})).unwrap();
    let forged = ToolCallResult {
        input_sha256: Some(other.clone()),
        ..honest
    };
    c.report_result(&forged).unwrap();
    assert!(
        f.journal.of("tool_call.result").is_empty(),
        "{}",
        f.journal.dump()
    );
    let m = &f.journal.of("tool_call.result_mismatch")[0];
    assert_eq!(m["call_id"], "m1");
    assert_eq!(m["approved_input_sha256"], approved_sha256.as_str());
    assert_eq!(m["reported_input_sha256"], other.as_str());
    // The slot is used up: the real result cannot be slipped in afterwards either. A repeat
    // report is acknowledged (a harness may report one call twice) and journals nothing.
    let mut c2 = f.client(&token);
    c2.report_result(&ToolCallResult {
        input_sha256: Some(approved_sha256),
        ..forged.clone()
    })
    .unwrap();
    assert!(f.journal.of("tool_call.result").is_empty());
    assert_eq!(f.journal.of("tool_call.result_mismatch").len(), 1);
    // A result that names no input at all is not linked either.
    let mut c3 = f.client(&token);
    assert!(c3.request(&bash("m2", "ls")).unwrap().is_allow());
    c3.report_result(&ToolCallResult {
        id: "m2".into(),
        input_sha256: None,
        ..forged
    })
    .unwrap();
    let m = &f.journal.of("tool_call.result_mismatch")[1];
    assert_eq!(
        (m["call_id"].as_str(), &m["reported_input_sha256"]),
        (Some("m2"), &Value::Null)
    );
    assert!(f.journal.of("tool_call.result").is_empty());
}

#[test]
fn concurrent_sessions_are_served_at_once() {
    let f = Fixture::new(Duration::from_secs(2));
    // A require that never resolves must not hold up other sessions' calls.
    let slow_token = f.session(SessionMode::ProxyExec);
    let sock = f.config.socket_path();
    let slow = std::thread::spawn(move || {
        connect(&sock, &slow_token)
            .request_exec(&write("w1", "never"))
            .unwrap()
    });
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let token = f.session(SessionMode::ProxyExec);
            let sock = f.config.socket_path();
            std::thread::spawn(move || {
                let mut c = connect(&sock, &token);
                for j in 0..10 {
                    assert!(c
                        .request_exec(&bash(&format!("c{i}-{j}"), "true"))
                        .unwrap()
                        .verdict
                        .is_allow());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(f.journal.of("tool_call.result").len(), 80);
    // Eventually the slow one times out (2 s) and is denied, not left hanging.
    assert_eq!(
        slow.join().unwrap().verdict.decision,
        agp_contracts::Decision::Deny
    );
}

#[test]
fn socket_and_run_dir_are_private_and_a_second_daemon_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(Duration::from_secs(5));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.config.run_dir), 0o700);
    assert_eq!(mode(&f.config.socket_path()), 0o600);
    assert_eq!(mode(&f.config.admin_token_path()), 0o600);
    let again = f.rt.block_on(Daemon::start(
        f.config.clone(),
        parts(&f.journal, &f.channel),
    ));
    assert!(matches!(again, Err(crate::DaemonError::AlreadyRunning(_))));
}
