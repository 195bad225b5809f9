//! The gateway of a real `agp daemon` process fed garbage, oversize frames, wrong tokens,
//! replayed ids and unknown messages: each is refused with an error frame, journaled as
//! `gateway.rejected`, and the daemon keeps serving.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use agp_gateway::{Client, ClientError, ErrorCode, SessionMode, ToolCallRequest};
use serde_json::Value;

use support_loop::{
    agp_ok, journal, open_gate_session, policy_world, start_daemon, Daemon, PolicyWorld,
};

use super::support::looping as support_loop;

/// SIGTERM and wait: an orderly stop (sessions ended, socket removed).
fn stop(mut daemon: Daemon) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(daemon.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            assert!(status.success(), "daemon exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("daemon did not stop on SIGTERM");
}

fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon may close before reading everything (oversize): a broken pipe is expected.
    let _ = s.write_all(bytes);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn bash(id: &str, repo: &Path) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: Some(format!("toolu_{id}")),
        tool: "Bash".into(),
        input: serde_json::json!({"command": "ls"}),
        cwd: repo.display().to_string(),
    }
}

#[test]
fn hostile_clients_are_refused_journaled_and_the_daemon_keeps_serving() {
    let PolicyWorld {
        dir: _dir,
        home,
        repo,
        policy,
    } = policy_world(
        "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"ls\"\neffect = \"allow\"\nmatch = [\"Bash(ls)\"]\n",
    );
    let daemon = start_daemon(&home, [OsStr::new("--policy"), policy.as_os_str()]);
    let socket = home.join("run/gateway.sock");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.join("run")), 0o700);
    assert_eq!(mode(&socket), 0o600);

    let token = open_gate_session(&home, &repo);

    let mut c = Client::connect(&socket, Duration::from_secs(10)).unwrap();
    c.hello(&token).unwrap();
    assert!(c.request(&bash("c1", &repo)).unwrap().is_allow());
    // Replayed id: refused, on this connection and on a new one.
    assert_eq!(
        refused(c.request(&bash("c1", &repo))),
        ErrorCode::ReplayedId
    );
    let mut c2 = Client::connect(&socket, Duration::from_secs(10)).unwrap();
    c2.hello(&token).unwrap();
    assert_eq!(
        refused(c2.request(&bash("c1", &repo))),
        ErrorCode::ReplayedId
    );

    // Wrong session token, wrong admin token.
    let mut w = Client::connect(&socket, Duration::from_secs(10)).unwrap();
    assert_eq!(refused(w.hello(&"0".repeat(64))), ErrorCode::BadToken);
    let mut w = Client::connect(&socket, Duration::from_secs(10)).unwrap();
    assert_eq!(
        refused(w.open_session("nope", "x", repo.to_str().unwrap(), "", SessionMode::Gate)),
        ErrorCode::BadToken
    );

    // Garbage, unknown messages, calls before hello, oversize frames.
    assert!(raw_exchange(&socket, b"\x00\xff garbage\n").contains("\"malformed\""));
    assert!(raw_exchange(&socket, b"[1,2,3]\n").contains("\"malformed\""));
    assert!(
        raw_exchange(&socket, b"{\"type\":\"run_shell\",\"cmd\":\"id\"}\n")
            .contains("\"unknown_message\"")
    );
    let early = format!(
        "{}\n",
        serde_json::json!({"type": "tool_call_request", "id": "x", "tool": "Bash",
                           "input": {"command": "ls"}, "cwd": "/"})
    );
    assert!(raw_exchange(&socket, early.as_bytes()).contains("\"unauthenticated\""));
    let mut huge = b"{\"type\":\"hello\",\"protocol\":1,\"token\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    huge.extend_from_slice(b"\"}\n");
    assert!(raw_exchange(&socket, &huge).contains("\"frame_too_large\""));

    // Still serving the legitimate session.
    let mut c3 = Client::connect(&socket, Duration::from_secs(10)).unwrap();
    c3.hello(&token).unwrap();
    assert!(c3.request(&bash("c2", &repo)).unwrap().is_allow());
    c3.end_session(Some("completed")).unwrap();
    stop(daemon);

    let entries: Vec<Value> = journal(&home);
    let codes: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "gateway.rejected")
        .map(|e| e["body"]["code"].as_str().unwrap())
        .collect();
    for code in [
        "replayed_id",
        "bad_token",
        "malformed",
        "unknown_message",
        "unauthenticated",
        "frame_too_large",
    ] {
        assert!(codes.contains(&code), "{code} not journaled: {codes:?}");
    }
    // The rejected frames' contents never reach the journal.
    let text = std::fs::read_to_string(home.join("journal/entries.jsonl")).unwrap();
    assert!(!text.contains("run_shell") && !text.contains("aaaaaaaaaaaaaaaa"));
    agp_ok(&home, None, &["verify"]);
}
