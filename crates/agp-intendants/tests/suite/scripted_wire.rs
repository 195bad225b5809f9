//! The scripted intendant on the real gateway wire (agp-gateway's client, framing and messages,
//! over a real Unix socket). The peer is a small scripted daemon that checks exactly what the
//! intendant sends and answers with fixed verdicts; the full loop with the real daemon, policy,
//! journal and sandbox is exercised through `agp run` in the agp crate's integration tests.

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use agp_gateway::client::Client;
use agp_gateway::frame::{write_frame, FrameReader};
use agp_gateway::protocol::{
    ClientMessage, ErrorCode, ExecResult, ServerMessage, SessionMode, ToolCallRequest,
    VerdictMessage, PROTOCOL_VERSION,
};
use agp_intendants::{CallOutcome, Expect, Script, ScriptedIntendant};
use serde_json::json;

const SCRIPT: &str = r#"
calls:
  - tool: Bash
    input: {command: ls}
    expect: allow
  - tool: Write
    input: {file_path: notes/../NOTES.md, content: "hi\n"}
    expect: approved
  - tool: Read
    input: {file_path: "~/.ssh/id_ed25519"}
    expect: deny
  - tool: Bash
    input: {command: "git status"}
    expect: allow        # the peer answers this one with an allow: a mismatch is reported
  - tool: Bash
    input: {command: "echo never sent"}
"#;

fn verdict(id: &str, decision: &str, approved_by: Option<&str>) -> ServerMessage {
    ServerMessage::Verdict(VerdictMessage {
        id: id.into(),
        decision: decision.parse().unwrap(),
        reason: format!("{decision} for the test"),
        rule_id: Some(format!("rule.{id}")),
        approved_by: approved_by.map(str::to_owned),
        updated_input: None,
        input_sha256: "0".repeat(64),
    })
}

fn exec_result(id: &str, code: i32) -> ServerMessage {
    ServerMessage::ExecResult(ExecResult {
        id: id.into(),
        ok: code == 0,
        exit_code: Some(code),
        timed_out: false,
        output: "out".into(),
        truncated: false,
        output_sha256: "1".repeat(64),
    })
}

/// A daemon stand-in: hello, then fixed answers; refuses call-4 and closes, as the daemon does.
fn serve(listener: &UnixListener) -> Vec<ToolCallRequest> {
    let (stream, _) = listener.accept().unwrap();
    let mut reader = FrameReader::new(BufReader::new(stream.try_clone().unwrap()));
    let mut writer = BufWriter::new(stream);
    let mut seen = Vec::new();
    while let Some(message) = reader.read_message::<ClientMessage>().unwrap() {
        let replies = match message {
            ClientMessage::Hello { protocol, token } => {
                assert_eq!((protocol, token.as_str()), (PROTOCOL_VERSION, "tok"));
                vec![ServerMessage::Welcome {
                    protocol: PROTOCOL_VERSION,
                    session: "sess-1".into(),
                    mode: SessionMode::ProxyExec,
                }]
            }
            ClientMessage::ToolCallRequest(req) => {
                let id = req.id.clone();
                seen.push(req);
                match id.as_str() {
                    "call-1" => vec![verdict(&id, "allow", None), exec_result(&id, 0)],
                    "call-2" => vec![
                        verdict(&id, "allow", Some("tty:alice")),
                        exec_result(&id, 0),
                    ],
                    "call-3" => vec![verdict(&id, "deny", None)],
                    _ => vec![ServerMessage::Error {
                        code: ErrorCode::Internal,
                        message: "journal unavailable".into(),
                        id: Some(id),
                    }],
                }
            }
            other => panic!("unexpected {other:?}"),
        };
        let close = replies
            .iter()
            .any(|r| matches!(r, ServerMessage::Error { .. }));
        for r in &replies {
            write_frame(&mut writer, r).unwrap();
        }
        if close {
            break;
        }
    }
    seen
}

#[test]
fn sends_claude_code_shaped_calls_and_reports_each_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gateway.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || serve(&listener));

    let script = Script::parse(Path::new("wire.yaml"), SCRIPT).unwrap();
    let intendant = ScriptedIntendant::new(script, "/home/alice".into());
    let mut client = Client::connect(&socket, Duration::from_secs(10)).unwrap();
    client.hello("tok").unwrap();
    let mut lines = Vec::new();
    let report = intendant.run(&mut client, Path::new("/work/repo"), |c| {
        lines.push(c.line());
    });
    let seen = server.join().unwrap();

    // What went over the wire is what Claude Code would have sent.
    assert_eq!(seen.len(), 4, "the run stops at the gateway failure");
    assert_eq!(seen[0].tool, "Bash");
    assert_eq!(seen[0].input, json!({"command": "ls"}));
    assert_eq!(seen[0].cwd, "/work/repo");
    assert_eq!(seen[0].tool_use_id.as_deref(), Some("toolu_scripted_0001"));
    assert_eq!(
        seen[1].input,
        json!({"file_path": "/work/repo/NOTES.md", "content": "hi\n"})
    );
    assert_eq!(
        seen[2].input,
        json!({"file_path": "/home/alice/.ssh/id_ed25519"})
    );
    let ids: Vec<_> = seen.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["call-1", "call-2", "call-3", "call-4"]);

    // What the intendant made of the answers.
    assert_eq!(report.calls.len(), 4);
    assert_eq!(report.not_run, 1);
    let observed: Vec<_> = report
        .calls
        .iter()
        .map(agp_intendants::CallReport::observed)
        .collect();
    assert_eq!(
        observed,
        [Expect::Allow, Expect::Approved, Expect::Deny, Expect::Deny]
    );
    assert!(matches!(
        &report.calls[3].outcome,
        CallOutcome::Failed { error } if error.contains("journal unavailable")
    ));
    assert_eq!(
        report.failure(),
        Some("the agp daemon refused: internal: journal unavailable")
    );
    assert_eq!(report.allowed(), 2);
    assert_eq!(report.denied(), 2);
    let mismatched: Vec<_> = report.mismatches().iter().map(|c| c.index).collect();
    assert_eq!(mismatched, [4]);

    assert_eq!(lines.len(), 4);
    assert!(
        lines[0].contains("allow [rule.call-1], exit 0  ✓"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("allow, approved by tty:alice"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("DENY [rule.call-3]: deny for the test  ✓"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("gateway failed") && lines[3].contains("✗ expected allow"));
}
