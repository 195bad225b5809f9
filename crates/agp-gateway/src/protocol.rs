//! Messages exchanged on the gateway socket. Every message is a JSON object whose `type` field
//! names it; an unknown `type` is a protocol error (the daemon answers with an error frame and
//! closes the connection).

use agp_contracts::{Decision, Tool};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version spoken by this build. The daemon refuses a hello with any other version rather than
/// guessing at a peer's semantics.
pub const PROTOCOL_VERSION: u32 = 1;

/// How a session's tool calls are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// The agent executes tools itself; the daemon only rules and journals (live agents with hooks).
    Gate,
    /// The daemon runs allowed calls in the session's sandbox and returns their output (scripted
    /// intendant).
    ProxyExec,
}

impl SessionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Gate => "gate",
            SessionMode::ProxyExec => "proxy_exec",
        }
    }
}

/// One tool call as the agent's harness reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    /// Unique within the session; a repeated id is refused as a replay.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// Parsed from the harness's tool name; serialized back as exactly that name.
    pub tool: Tool,
    pub input: Value,
    pub cwd: String,
}

/// What the tool produced, reported by an agent that executed it itself (gate mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallResult {
    /// The id of the request this result belongs to.
    pub id: String,
    pub ok: bool,
    /// Output, already redacted and truncated by the sender; the daemon redacts again.
    pub output: String,
    /// SHA-256 (hex) of the full, unredacted output as the tool produced it.
    pub output_sha256: String,
    /// SHA-256 (hex) of the canonical JSON of the input the tool ran with, as the harness
    /// reports it. Unless it equals the approved call's `input_sha256` the result is journaled
    /// as a mismatch, never linked to the approved call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message of a session connection.
    Hello {
        protocol: u32,
        token: String,
    },
    /// Control: create a session on a running daemon. Authenticated by the daemon's admin token
    /// (a 0600 file next to the socket), never by a session token.
    OpenSession {
        protocol: u32,
        admin_token: String,
        intendant: String,
        repo: String,
        #[serde(default)]
        task: String,
        mode: SessionMode,
    },
    /// Control: stop a session (the kill switch): its agent or running command is ended, its
    /// pending approvals cancelled, the session ended as `stopped`. Authenticated by the admin
    /// token; `by` names the person asking (journaled with the socket peer's uid and pid).
    StopSession {
        protocol: u32,
        admin_token: String,
        session: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Control: the approvals waiting for a human, each with a fresh single-use nonce (a
    /// console). Authenticated by the admin token.
    ListApprovals {
        protocol: u32,
        admin_token: String,
    },
    /// Control: answer one approval from a console. The approver is the connecting process's OS
    /// user; the daemon refuses (and journals `approval.rejected`) a nonce that is unknown or
    /// used, names another call or input, has expired, or a user who may not decide.
    DecideApproval {
        protocol: u32,
        admin_token: String,
        call_id: String,
        input_sha256: String,
        nonce: String,
        decision: crate::approvals::WebDecision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ToolCallRequest(ToolCallRequest),
    ToolCallResult(ToolCallResult),
    /// The agent is done; the session is closed and `session.ended` journaled.
    EndSession {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
}

/// The daemon's answer to a tool call request.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictMessage {
    pub id: String,
    /// `allow` or `deny`: a `require` is resolved by an approver before the daemon answers. Any
    /// other word fails to parse, so a client treats the frame as malformed (and denies).
    pub decision: Decision,
    pub reason: String,
    pub rule_id: Option<String>,
    /// Who decided a `require` (`auto-approve`, `tty:alice`, ...), or `remembered:<who>`.
    pub approved_by: Option<String>,
    /// Input the agent must run instead of its own (none today; reserved for rewrites).
    pub updated_input: Option<Value>,
    pub input_sha256: String,
}

impl VerdictMessage {
    pub fn is_allow(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// Outcome of a call the daemon ran in the sandbox (proxy-exec mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub id: String,
    /// Exit code 0 and not timed out.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    /// Combined output, redacted and truncated.
    pub output: String,
    #[serde(default)]
    pub truncated: bool,
    /// SHA-256 (hex) of the full output before redaction.
    pub output_sha256: String,
}

/// Machine-readable error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    FrameTooLarge,
    Malformed,
    UnknownMessage,
    ProtocolVersion,
    Unauthenticated,
    BadToken,
    SessionClosed,
    ReplayedId,
    UnknownCall,
    InvalidCall,
    Internal,
    /// A control message named a session the daemon does not know.
    UnknownSession,
    /// The connecting process may not speak for the session: it is not the harness's hook
    /// (it descends from a tool call the agent made).
    PeerRefused,
    /// A console's approval decision was refused; the message starts with the reason
    /// (`replayed`, `expired`, `not_an_approver`, ...).
    ApprovalRefused,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::ProtocolVersion => "protocol_version",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::BadToken => "bad_token",
            ErrorCode::SessionClosed => "session_closed",
            ErrorCode::ReplayedId => "replayed_id",
            ErrorCode::UnknownCall => "unknown_call",
            ErrorCode::InvalidCall => "invalid_call",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::PeerRefused => "peer_refused",
            ErrorCode::ApprovalRefused => "approval_refused",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Messages the daemon sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        protocol: u32,
        session: String,
        mode: SessionMode,
    },
    SessionOpened {
        session: String,
        token: String,
        mode: SessionMode,
    },
    Verdict(VerdictMessage),
    ExecResult(ExecResult),
    /// A reported `tool_call_result` is journaled.
    ResultRecorded {
        id: String,
    },
    SessionEnded {
        session: String,
    },
    /// The answer to `stop_session`: `stopped` false when it had already ended (nothing was
    /// changed); `cancelled_approvals` the call ids whose approvals were cancelled.
    SessionStopped {
        session: String,
        stopped: bool,
        #[serde(default)]
        cancelled_approvals: Vec<String>,
    },
    /// The answer to `list_approvals`.
    Approvals(crate::approvals::ApprovalList),
    /// The answer to an accepted `decide_approval`.
    ApprovalDecided(crate::approvals::DecisionApplied),
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_carry_a_type_tag() {
        let m = ClientMessage::ToolCallRequest(ToolCallRequest {
            id: "c1".into(),
            tool_use_id: Some("toolu_1".into()),
            tool: "Bash".into(),
            input: json!({"command": "ls"}),
            cwd: "/repo".into(),
        });
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "tool_call_request");
        assert_eq!(v["tool_use_id"], "toolu_1");
        assert_eq!(serde_json::from_value::<ClientMessage>(v).unwrap(), m);

        let e = ServerMessage::Error {
            code: ErrorCode::ReplayedId,
            message: "seen".into(),
            id: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "code": "replayed_id", "message": "seen"})
        );
    }

    #[test]
    fn unknown_type_and_missing_fields_are_refused() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"shell","cmd":"x"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"hello","protocol":1}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"protocol":1,"token":"t"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r"[1,2]").is_err());
    }

    /// Frames as today's daemon and hooks write them: typing `decision` and `tool` must not
    /// change a byte on the wire.
    #[test]
    fn todays_frames_parse_and_serialize_byte_identically() {
        let server = [
            r#"{"type":"verdict","id":"c1","decision":"allow","reason":"read-only","rule_id":"r1","input_sha256":"ab"}"#,
            r#"{"type":"verdict","id":"c2","decision":"deny","reason":"rm is forbidden","input_sha256":"ab"}"#,
            r#"{"type":"verdict","id":"c3","decision":"allow","reason":"ok","approved_by":"tty:alice","input_sha256":"cd"}"#,
        ];
        for frame in server {
            let m: ServerMessage = serde_json::from_str(frame).unwrap();
            assert_eq!(serde_json::to_string(&m).unwrap(), frame);
        }
        let client = [
            r#"{"type":"tool_call_request","id":"c1","tool_use_id":"toolu_1","tool":"Bash","input":{"command":"ls"},"cwd":"/repo"}"#,
            r#"{"type":"tool_call_request","id":"c2","tool":"mcp__github__create_issue","input":{},"cwd":"/r"}"#,
            r#"{"type":"tool_call_request","id":"c3","tool":"SomethingNew","input":{},"cwd":"/r"}"#,
        ];
        for frame in client {
            let m: ClientMessage = serde_json::from_str(frame).unwrap();
            assert_eq!(serde_json::to_string(&m).unwrap(), frame);
        }
        let ServerMessage::Verdict(v) = serde_json::from_str(server[0]).unwrap() else {
            panic!("not a verdict")
        };
        assert!(v.is_allow());
        let ServerMessage::Verdict(v) = serde_json::from_str(server[1]).unwrap() else {
            panic!("not a verdict")
        };
        assert!(!v.is_allow());
    }

    #[test]
    fn a_decision_outside_the_vocabulary_is_a_malformed_frame() {
        for word in ["maybe", "Allow", "ALLOW", "", "allow "] {
            let frame = format!(
                r#"{{"type":"verdict","id":"c1","decision":"{word}","reason":"","input_sha256":""}}"#
            );
            assert!(
                serde_json::from_str::<ServerMessage>(&frame).is_err(),
                "{word:?}"
            );
        }
    }
}
