//! `agp hook` as the harness runs it: every failure is a deny on stdout with exit code 2, never
//! another code (Claude Code and Codex read any other non-zero exit as "non-blocking" and would
//! run the tool).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::Output;

use serde_json::{json, Value};

use super::support::hook::hook;

fn pre_tool_use() -> Vec<u8> {
    json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "cwd": "/",
           "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1"})
    .to_string()
    .into_bytes()
}

fn assert_denied(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
    let stdout: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {out:?}"));
    let decision = &stdout["hookSpecificOutput"];
    assert!(
        decision["permissionDecision"] == "deny"
            || decision["decision"]["behavior"] == "deny"
            || stdout["decision"] == "block",
        "{what}: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("denied"), "{what}: {stderr}");
}

#[test]
fn bad_input_is_denied_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let env = [
        ("AGP_GATEWAY_SOCKET", sock.to_str().unwrap()),
        ("AGP_SESSION_TOKEN", "t"),
    ];
    let big = vec![b' '; 5 << 20];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty stdin", Vec::new()),
        ("not JSON", b"{nope".to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, 0x00]),
        ("a JSON array", b"[]".to_vec()),
        (
            "unknown event",
            br#"{"hook_event_name":"SessionStart"}"#.to_vec(),
        ),
        (
            "no tool name",
            br#"{"hook_event_name":"PreToolUse","tool_input":{}}"#.to_vec(),
        ),
        ("oversize stdin", big),
        ("daemon not running", pre_tool_use()),
    ];
    for (what, stdin) in cases {
        for harness in ["claude-code", "codex"] {
            assert_denied(&hook(&["--harness", harness], &env, &stdin), what);
        }
    }
    let post = json!({"hook_event_name": "PostToolUse", "tool_name": "Bash",
                      "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1",
                      "tool_response": {"stdout": ""}});
    assert_denied(
        &hook(&[], &env, post.to_string().as_bytes()),
        "PostToolUse without daemon",
    );
    assert_denied(&hook(&[], &[], &pre_tool_use()), "no environment at all");
    assert_denied(
        &hook(&[], &[("AGP_HOOK_TIMEOUT_SECS", "soon")], &pre_tool_use()),
        "bad timeout",
    );
    // A usage error is clap's exit 2 as well, never 1.
    assert_eq!(hook(&["--bogus"], &env, b"").status.code(), Some(2));
}

/// A peer that accepts, reads the frames and sends back `reply` (garbage, or nothing at all).
fn fake_daemon(reply: Option<&'static [u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(s) = conn else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            if let Some(reply) = reply {
                let _ = w.write_all(reply);
            }
            // Hold the connection open without answering further.
            let mut rest = String::new();
            while r.read_line(&mut rest).is_ok_and(|n| n > 0) {}
        }
    });
    (dir, path)
}

#[test]
fn bad_daemons_are_denied_with_exit_2() {
    for (what, reply) in [
        ("garbage frame", Some(&b"\x00garbage\n"[..])),
        ("oversize frame", None),
        (
            "wrong protocol",
            Some(
                &b"{\"type\":\"welcome\",\"protocol\":99,\"session\":\"s\",\"mode\":\"gate\"}\n"[..],
            ),
        ),
        (
            "refusal",
            Some(&b"{\"type\":\"error\",\"code\":\"bad_token\",\"message\":\"no\"}\n"[..]),
        ),
        ("silent daemon (timeout)", Some(&b""[..])),
    ] {
        let (_d, path) = if what == "oversize frame" {
            // More than the 1 MiB frame cap without a newline.
            let big: &'static [u8] = Box::leak(vec![b'x'; (1 << 20) + 10].into_boxed_slice());
            fake_daemon(Some(big))
        } else {
            fake_daemon(reply)
        };
        let out = hook(
            &[],
            &[
                ("AGP_GATEWAY_SOCKET", path.to_str().unwrap()),
                ("AGP_SESSION_TOKEN", "t"),
                ("AGP_HOOK_TIMEOUT_SECS", "1"),
            ],
            &pre_tool_use(),
        );
        assert_denied(&out, what);
    }
}
