//! The gateway's decisions, one row per case: every refusal, every kind of work, every answer.

use agp_gateway::{ExecResult, VerdictMessage};
use serde_json::json;

use super::*;

const ADMIN_TOKEN: &str = "admin-secret";

#[derive(Debug, Clone, PartialEq)]
struct Bound(&'static str);

impl BoundSession for Bound {
    fn id(&self) -> &str {
        self.0
    }

    fn mode(&self) -> SessionMode {
        SessionMode::Gate
    }
}

fn refused(code: ErrorCode, message: &str) -> Step<Bound> {
    Step::Now(Next::Reject(Refusal::new(code, message)))
}

fn request(id: &str) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: None,
        tool: "Bash".into(),
        input: json!({"command": "ls"}),
        cwd: "/repo".into(),
    }
}

fn result(id: &str) -> ToolCallResult {
    ToolCallResult {
        id: id.into(),
        ok: true,
        output: "done".into(),
        output_sha256: "ab".repeat(32),
        input_sha256: None,
    }
}

fn frame(message: &ClientMessage) -> Vec<u8> {
    serde_json::to_vec(message).unwrap()
}

fn hello(protocol: u32) -> Vec<u8> {
    frame(&ClientMessage::Hello {
        protocol,
        token: "t0k".into(),
    })
}

fn open(protocol: u32, admin_token: &str) -> Vec<u8> {
    frame(&ClientMessage::OpenSession {
        protocol,
        admin_token: admin_token.into(),
        intendant: "claude-code".into(),
        repo: "/repo".into(),
        task: "fix it".into(),
        mode: SessionMode::ProxyExec,
    })
}

fn end(status: Option<String>) -> Vec<u8> {
    frame(&ClientMessage::EndSession { status })
}

/// A row: what it shows, the frame, the session the connection is bound to, the step.
type FrameRow = (&'static str, Vec<u8>, Option<Bound>, Step<Bound>);

#[test]
fn every_frame_on_an_unbound_and_a_bound_connection() {
    use ErrorCode::*;
    let s = || Some(Bound("s-1"));
    let already = "connection is already bound to a session";
    let first = "hello required first";
    let call = frame(&ClientMessage::ToolCallRequest(request("c1")));
    let report = frame(&ClientMessage::ToolCallResult(result("c1")));
    let table: Vec<FrameRow> = vec![
        (
            "hello",
            hello(PROTOCOL_VERSION),
            None,
            Step::Work(Work::Hello {
                token: "t0k".into(),
            }),
        ),
        (
            "hello in another protocol",
            hello(PROTOCOL_VERSION + 1),
            None,
            refused(
                ProtocolVersion,
                &format!(
                    "protocol {} not supported (this daemon speaks {PROTOCOL_VERSION})",
                    PROTOCOL_VERSION + 1
                ),
            ),
        ),
        (
            "hello twice",
            hello(PROTOCOL_VERSION),
            s(),
            refused(Unauthenticated, already),
        ),
        (
            "open_session",
            open(PROTOCOL_VERSION, ADMIN_TOKEN),
            None,
            Step::Work(Work::OpenSession(SessionParams {
                intendant: "claude-code".into(),
                repo: "/repo".into(),
                task: "fix it".into(),
                mode: SessionMode::ProxyExec,
            })),
        ),
        (
            "open_session with a wrong admin token",
            open(PROTOCOL_VERSION, "admin-secreT"),
            None,
            refused(BadToken, "wrong admin token"),
        ),
        (
            "open_session with the admin token's hash",
            open(PROTOCOL_VERSION, &sha256_hex(ADMIN_TOKEN.as_bytes())),
            None,
            refused(BadToken, "wrong admin token"),
        ),
        (
            "open_session in another protocol",
            open(0, ADMIN_TOKEN),
            None,
            refused(ProtocolVersion, "protocol 0 not supported"),
        ),
        (
            "open_session on a session connection",
            open(PROTOCOL_VERSION, ADMIN_TOKEN),
            s(),
            refused(Unauthenticated, already),
        ),
        (
            "tool call",
            call.clone(),
            s(),
            Step::Work(Work::Call {
                session: Bound("s-1"),
                request: request("c1"),
            }),
        ),
        (
            "tool call before hello",
            call,
            None,
            refused(Unauthenticated, first),
        ),
        (
            "result",
            report.clone(),
            s(),
            Step::Work(Work::Result {
                session: Bound("s-1"),
                result: result("c1"),
            }),
        ),
        (
            "result before hello",
            report,
            None,
            refused(Unauthenticated, first),
        ),
        (
            "end before hello",
            end(None),
            None,
            refused(Unauthenticated, first),
        ),
        (
            "end without a status",
            end(None),
            s(),
            Step::Work(Work::End {
                session: Bound("s-1"),
                status: "completed".into(),
            }),
        ),
        (
            "end with a status",
            end(Some("failed".into())),
            s(),
            Step::Work(Work::End {
                session: Bound("s-1"),
                status: "failed".into(),
            }),
        ),
        (
            "end with the longest status kept",
            end(Some("x".repeat(64))),
            s(),
            Step::Work(Work::End {
                session: Bound("s-1"),
                status: "x".repeat(64),
            }),
        ),
        (
            "end with an overlong status",
            end(Some("x".repeat(65))),
            s(),
            Step::Work(Work::End {
                session: Bound("s-1"),
                status: "completed".into(),
            }),
        ),
        (
            "unknown type",
            br#"{"type":"shutdown_daemon"}"#.to_vec(),
            None,
            refused(UnknownMessage, "unknown message type"),
        ),
        (
            "unknown type on a session",
            br#"{"type":"grant","id":"c1"}"#.to_vec(),
            s(),
            refused(UnknownMessage, "unknown message type"),
        ),
        (
            "type is not a string",
            br#"{"type":["hello"]}"#.to_vec(),
            None,
            refused(Malformed, "frame is not an object with a string `type`"),
        ),
        (
            "not an object",
            br#"["hello"]"#.to_vec(),
            s(),
            refused(Malformed, "frame is not an object with a string `type`"),
        ),
        (
            "known type, wrong fields",
            br#"{"type":"hello","protocol":"1","token":"t"}"#.to_vec(),
            None,
            refused(Malformed, "the fields do not form a valid `hello` message"),
        ),
        (
            "known type, missing fields",
            br#"{"type":"tool_call_request","id":"c1"}"#.to_vec(),
            s(),
            refused(
                Malformed,
                "the fields do not form a valid `tool_call_request` message",
            ),
        ),
    ];
    for (name, bytes, session, expect) in table {
        let got = decide(
            Read::Frame(&bytes),
            session,
            &sha256_hex(ADMIN_TOKEN.as_bytes()),
        );
        assert_eq!(got, expect, "{name}");
    }
}

#[test]
fn reads_that_are_not_frames() {
    use ErrorCode::*;
    let table: Vec<(&str, Read<'_>, Option<Bound>, Step<Bound>)> = vec![
        ("clean end", Read::End, None, Step::Now(Next::Close)),
        (
            "clean end of a session",
            Read::End,
            Some(Bound("s-1")),
            Step::Now(Next::Close),
        ),
        (
            "no hello in time",
            Read::HelloTimeout,
            None,
            refused(Unauthenticated, "no hello in time"),
        ),
        (
            "oversize",
            Read::TooLarge { limit: 1024 },
            Some(Bound("s-1")),
            refused(FrameTooLarge, "frame exceeds 1024 bytes"),
        ),
        (
            "closed mid-frame",
            Read::Truncated,
            None,
            refused(Malformed, "connection closed mid-frame"),
        ),
        (
            "framing error",
            Read::Malformed("bad byte".into()),
            None,
            refused(Malformed, "bad byte"),
        ),
    ];
    for (name, read, session, expect) in table {
        assert_eq!(decide(read, session, "h"), expect, "{name}");
    }
}

#[test]
fn the_reader_maps_to_reads_and_a_failing_socket_is_no_read() {
    assert_eq!(Read::of(Ok(Some(b"x"))).unwrap(), Read::Frame(b"x"));
    assert_eq!(Read::of(Ok(None)).unwrap(), Read::End);
    assert_eq!(
        Read::of(Err(FrameError::TooLarge { limit: 7 })).unwrap(),
        Read::TooLarge { limit: 7 }
    );
    assert_eq!(
        Read::of(Err(FrameError::Truncated)).unwrap(),
        Read::Truncated
    );
    assert_eq!(
        Read::of(Err(FrameError::Malformed("m".into()))).unwrap(),
        Read::Malformed("m".into())
    );
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    assert_eq!(
        Read::of(Err(FrameError::Io(io))).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[test]
fn refusals_never_quote_the_frame() {
    // Error texts are journaled; a frame may carry a secret in any field.
    let secret = "sk-live-0123456789";
    let frames = [
        format!(r#"{{"type":"hello","protocol":1,"token":"{secret}""#),
        format!(r#"{{"type":"{secret}"}}"#),
        format!(r#"{{"type":"hello","protocol":"{secret}","token":"t"}}"#),
        format!(r#"{{"type":"open_session","admin_token":"{secret}"}}"#),
        format!(
            r#"{{"type":"open_session","protocol":1,"admin_token":"{secret}","intendant":"a","repo":"/","mode":"gate"}}"#
        ),
        format!(r#"["{secret}"]"#),
    ];
    for f in frames {
        let Step::Now(Next::Reject(refusal)) =
            decide::<Bound>(Read::Frame(f.as_bytes()), None, "h")
        else {
            panic!("not refused: {f}")
        };
        assert!(!refusal.message.contains(secret), "{}", refusal.message);
        assert_eq!(refusal.id, None);
    }
}

fn verdict(id: &str) -> VerdictMessage {
    VerdictMessage {
        id: id.into(),
        decision: agp_contracts::Decision::Allow,
        reason: "read-only".into(),
        rule_id: Some("r1".into()),
        approved_by: None,
        updated_input: None,
        input_sha256: "ab".repeat(32),
    }
}

fn exec(id: &str) -> ExecResult {
    ExecResult {
        id: id.into(),
        ok: true,
        exit_code: Some(0),
        timed_out: false,
        output: "ok".into(),
        truncated: false,
        output_sha256: "cd".repeat(32),
    }
}

fn rejection(code: ErrorCode, message: &str) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

#[test]
fn every_answer_once_the_work_is_done() {
    use ErrorCode::*;
    let internal = |m: &str| ServerMessage::Error {
        code: Internal,
        message: m.into(),
        id: None,
    };
    let refusal = |code, m: &str, id: Option<&str>| {
        Next::Reject(Refusal {
            code,
            message: m.into(),
            id: id.map(str::to_owned),
        })
    };
    let table: Vec<(&str, Done<Bound>, Next<Bound>)> = vec![
        (
            "hello with a live session's token",
            Done::Hello(Ok(Bound("s-1"))),
            Next::Bind(
                Bound("s-1"),
                ServerMessage::Welcome {
                    protocol: PROTOCOL_VERSION,
                    session: "s-1".into(),
                    mode: SessionMode::Gate,
                },
            ),
        ),
        (
            "hello with a wrong token",
            Done::Hello(Err((BadToken, "unknown session token".into()))),
            refusal(BadToken, "unknown session token", None),
        ),
        (
            "hello for an ended session",
            Done::Hello(Err((SessionClosed, "the session has ended".into()))),
            refusal(SessionClosed, "the session has ended", None),
        ),
        (
            "session opened",
            Done::Opened(Ok(SessionInfo {
                id: "s-2".into(),
                token: "tok".into(),
                mode: SessionMode::ProxyExec,
                repo: "/repo".into(),
            })),
            Next::ReplyAndClose(ServerMessage::SessionOpened {
                session: "s-2".into(),
                token: "tok".into(),
                mode: SessionMode::ProxyExec,
            }),
        ),
        (
            "session not opened",
            Done::Opened(Err("sandbox preflight failed".into())),
            Next::ReplyAndClose(internal("sandbox preflight failed")),
        ),
        (
            "gate verdict",
            Done::Called {
                id: "c1".into(),
                reply: Some(Ok(Box::new(CallReply {
                    verdict: verdict("c1"),
                    result: None,
                }))),
            },
            Next::Reply(vec![ServerMessage::Verdict(verdict("c1"))]),
        ),
        (
            "proxy-exec verdict and output",
            Done::Called {
                id: "c1".into(),
                reply: Some(Ok(Box::new(CallReply {
                    verdict: verdict("c1"),
                    result: Some(exec("c1")),
                }))),
            },
            Next::Reply(vec![
                ServerMessage::Verdict(verdict("c1")),
                ServerMessage::ExecResult(exec("c1")),
            ]),
        ),
        (
            "replayed id",
            Done::Called {
                id: "c1".into(),
                reply: Some(Err(rejection(ReplayedId, "call id c1 was already used"))),
            },
            refusal(ReplayedId, "call id c1 was already used", Some("c1")),
        ),
        (
            "invalid call",
            Done::Called {
                id: "c\u{0}".into(),
                reply: Some(Err(rejection(InvalidCall, "bad id"))),
            },
            refusal(InvalidCall, "bad id", Some("c\u{0}")),
        ),
        (
            "caller hung up during mediation",
            Done::Called {
                id: "c1".into(),
                reply: None,
            },
            Next::Close,
        ),
        (
            "result recorded",
            Done::Recorded {
                id: "c1".into(),
                result: Ok(()),
            },
            Next::Reply(vec![ServerMessage::ResultRecorded { id: "c1".into() }]),
        ),
        (
            "result for an unknown call",
            Done::Recorded {
                id: "c9".into(),
                result: Err(rejection(UnknownCall, "no allowed call c9 awaits a result")),
            },
            refusal(
                UnknownCall,
                "no allowed call c9 awaits a result",
                Some("c9"),
            ),
        ),
        (
            "session ended",
            Done::Ended {
                session: Bound("s-1"),
                result: Ok(()),
            },
            Next::ReplyAndClose(ServerMessage::SessionEnded {
                session: "s-1".into(),
            }),
        ),
        (
            "session end failed",
            Done::Ended {
                session: Bound("s-1"),
                result: Err("journal: disk full".into()),
            },
            Next::ReplyAndClose(internal("journal: disk full")),
        ),
    ];
    for (name, done, expect) in table {
        assert_eq!(settle(done), expect, "{name}");
    }
}

/// The console's two admin messages: the admin token first, never on a session connection;
/// a refused decision is an `approval_refused` error frame (already journaled as
/// `approval.rejected`), not a gateway rejection.
#[test]
fn console_approvals_need_the_admin_token_and_no_session() {
    use agp_gateway::WebDecision;
    let decide_frame = |token: &str| {
        frame(&ClientMessage::DecideApproval {
            protocol: PROTOCOL_VERSION,
            admin_token: token.into(),
            call_id: "c1".into(),
            input_sha256: "ab".repeat(32),
            nonce: "n".into(),
            decision: WebDecision::Allow,
            reason: None,
        })
    };
    let list_frame = |token: &str| {
        frame(&ClientMessage::ListApprovals {
            protocol: PROTOCOL_VERSION,
            admin_token: token.into(),
        })
    };
    let step = |bytes: &[u8], session| {
        decide(
            Read::Frame(bytes),
            session,
            &sha256_hex(ADMIN_TOKEN.as_bytes()),
        )
    };
    assert_eq!(
        step(&list_frame(ADMIN_TOKEN), None),
        Step::Work(Work::ListApprovals)
    );
    assert_eq!(
        step(&decide_frame(ADMIN_TOKEN), None),
        Step::Work(Work::DecideApproval(WebDecide {
            call_id: "c1".into(),
            input_sha256: "ab".repeat(32),
            nonce: "n".into(),
            decision: WebDecision::Allow,
            reason: None,
        }))
    );
    for bytes in [
        list_frame("wrong"),
        decide_frame("wrong"),
        list_frame(""),
        decide_frame(""),
    ] {
        assert_eq!(
            step(&bytes, None),
            refused(ErrorCode::BadToken, "wrong admin token")
        );
    }
    for bytes in [list_frame(ADMIN_TOKEN), decide_frame(ADMIN_TOKEN)] {
        assert_eq!(
            step(&bytes, Some(Bound("s-1"))),
            refused(
                ErrorCode::Unauthenticated,
                "connection is already bound to a session"
            )
        );
    }
    let refused_decision: Next<Bound> = settle(Done::Decided(Err("replayed: used".into())));
    assert_eq!(
        refused_decision,
        Next::ReplyAndClose(ServerMessage::Error {
            code: ErrorCode::ApprovalRefused,
            message: "replayed: used".into(),
            id: None,
        })
    );
}
