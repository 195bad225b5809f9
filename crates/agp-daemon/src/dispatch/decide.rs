//! What the gateway does with one frame, decided without I/O.
//!
//! [`decide`] reads a frame against the connection's state: it refuses what can be refused
//! at once, or names the [`Work`] that needs the daemon (the session store, mediation, the
//! journal). [`settle`] turns what that work gave into the answer. Both say whether the
//! connection stays open with a [`Next`], never a bare `bool`.

use agp_contracts::canonical::sha256_hex;
use agp_gateway::{
    ClientMessage, ErrorCode, FrameError, ServerMessage, SessionMode, ToolCallRequest,
    ToolCallResult, PROTOCOL_VERSION,
};
use serde_json::Value;

use agp_gateway::{ApprovalList, DecisionApplied};

use crate::mediate::{CallReply, Rejection, WebDecide};
use crate::session::{SessionInfo, SessionParams};

/// Longest `end_session` status kept; a longer one is recorded as `completed`.
const MAX_STATUS_LEN: usize = 64;
/// Longest session id or `by` a stop may name.
const MAX_STOP_FIELD: usize = 256;
/// Longest stop reason kept (longer ones are cut).
const MAX_STOP_REASON: usize = 1024;

/// The session a connection is bound to, as far as deciding needs it.
pub(crate) trait BoundSession: Clone {
    fn id(&self) -> &str;
    fn mode(&self) -> SessionMode;
}

/// One read from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read<'a> {
    Frame(&'a [u8]),
    /// The peer closed between frames.
    End,
    /// The connection is not bound and no hello came in time.
    HelloTimeout,
    TooLarge {
        limit: usize,
    },
    /// The peer closed in the middle of a frame.
    Truncated,
    Malformed(String),
}

impl<'a> Read<'a> {
    /// What the frame reader gave; a failing connection is no read at all.
    pub(crate) fn of(read: Result<Option<&'a [u8]>, FrameError>) -> std::io::Result<Self> {
        Ok(match read {
            Ok(Some(frame)) => Read::Frame(frame),
            Ok(None) => Read::End,
            Err(FrameError::TooLarge { limit }) => Read::TooLarge { limit },
            Err(FrameError::Truncated) => Read::Truncated,
            Err(FrameError::Malformed(m)) => Read::Malformed(m),
            Err(FrameError::Io(e)) => return Err(e),
        })
    }
}

/// A refusal: sent as an error frame and journaled as `gateway.rejected`, then the connection
/// closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// The call the refusal is about, as the client named it.
    pub id: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            id: None,
        }
    }
}

/// What happens to the connection next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next<S> {
    /// Send these, then read the next frame.
    Reply(Vec<ServerMessage>),
    /// Bind the connection to the session, send the welcome, read on.
    Bind(S, ServerMessage),
    /// Send this, then close: opening and ending a session are one-shot.
    ReplyAndClose(ServerMessage),
    /// Refuse and close.
    Reject(Refusal),
    /// Close without a word: the peer is gone.
    Close,
}

/// What answering a frame needs the daemon for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Work<S> {
    /// Find the session of this token (or take over one a previous daemon ran).
    Hello { token: String },
    /// Open a session; the admin token is already checked.
    OpenSession(SessionParams),
    /// Mediate a tool call, abandoning it if the peer hangs up.
    Call {
        session: S,
        request: ToolCallRequest,
    },
    /// Record what a call the agent ran itself produced.
    Result { session: S, result: ToolCallResult },
    /// End the session.
    End { session: S, status: String },
    /// Stop a session (the kill switch); the admin token is already checked.
    Stop {
        session: String,
        by: String,
        reason: Option<String>,
    },
    /// List the pending approvals for a console; the admin token is already checked.
    ListApprovals,
    /// Apply a console's decision; the admin token is already checked, nothing else is.
    DecideApproval(WebDecide),
}

/// What [`decide`] concluded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step<S> {
    Now(Next<S>),
    Work(Work<S>),
}

/// What the [`Work`] gave.
#[derive(Debug)]
pub(crate) enum Done<S> {
    Hello(Result<S, (ErrorCode, String)>),
    Opened(Result<SessionInfo, String>),
    /// `reply` is `None` when the peer hung up before the call was answered.
    Called {
        id: String,
        reply: Option<Result<Box<CallReply>, Rejection>>,
    },
    Recorded {
        id: String,
        result: Result<(), Rejection>,
    },
    Ended {
        session: S,
        result: Result<(), String>,
    },
    Stopped {
        session: String,
        result: Result<agp_contracts::StopOutcome, String>,
    },
    Listed(ApprovalList),
    /// `Err`: the refusal (already journaled), reason code first.
    Decided(Result<DecisionApplied, String>),
}

/// Decides what one read means on a connection bound to `session` (if any). The admin token
/// is compared by its hash, the only form the daemon keeps.
pub(crate) fn decide<S: BoundSession>(
    read: Read<'_>,
    session: Option<S>,
    admin_token_sha256: &str,
) -> Step<S> {
    let refuse = |code, message: String| Step::Now(Next::Reject(Refusal::new(code, message)));
    match read {
        Read::Frame(frame) => match parse(frame) {
            Ok(message) => route(message, session, admin_token_sha256),
            Err((code, message)) => refuse(code, message),
        },
        Read::End => Step::Now(Next::Close),
        Read::HelloTimeout => refuse(ErrorCode::Unauthenticated, "no hello in time".into()),
        Read::TooLarge { limit } => refuse(
            ErrorCode::FrameTooLarge,
            format!("frame exceeds {limit} bytes"),
        ),
        Read::Truncated => refuse(ErrorCode::Malformed, "connection closed mid-frame".into()),
        Read::Malformed(m) => refuse(ErrorCode::Malformed, m),
    }
}

/// Why an admin request (opening or stopping a session) is refused: a protocol this daemon
/// does not speak, or not the admin token (compared by its hash).
fn admin_refusal(protocol: u32, admin_token: &str, admin_token_sha256: &str) -> Option<Refusal> {
    if protocol != PROTOCOL_VERSION {
        return Some(Refusal::new(
            ErrorCode::ProtocolVersion,
            format!("protocol {protocol} not supported"),
        ));
    }
    if sha256_hex(admin_token.as_bytes()) != admin_token_sha256 {
        return Some(Refusal::new(ErrorCode::BadToken, "wrong admin token"));
    }
    None
}

/// A session's requests need a session; opening one (hello, open_session) needs none yet.
fn route<S: BoundSession>(
    message: ClientMessage,
    session: Option<S>,
    admin_token_sha256: &str,
) -> Step<S> {
    let refuse = |code, message: String| Step::Now(Next::Reject(Refusal::new(code, message)));
    match (message, session) {
        (ClientMessage::Hello { protocol, token }, None) => {
            if protocol != PROTOCOL_VERSION {
                return refuse(
                    ErrorCode::ProtocolVersion,
                    format!(
                        "protocol {protocol} not supported (this daemon speaks {PROTOCOL_VERSION})"
                    ),
                );
            }
            Step::Work(Work::Hello { token })
        }
        (
            ClientMessage::OpenSession {
                protocol,
                admin_token,
                intendant,
                repo,
                task,
                mode,
            },
            None,
        ) => {
            if let Some(refusal) = admin_refusal(protocol, &admin_token, admin_token_sha256) {
                return Step::Now(Next::Reject(refusal));
            }
            Step::Work(Work::OpenSession(SessionParams {
                intendant,
                repo: repo.into(),
                task,
                mode,
            }))
        }
        (
            ClientMessage::StopSession {
                protocol,
                admin_token,
                session,
                by,
                reason,
            },
            None,
        ) => {
            if let Some(refusal) = admin_refusal(protocol, &admin_token, admin_token_sha256) {
                return Step::Now(Next::Reject(refusal));
            }
            if session.is_empty() || session.len() > MAX_STOP_FIELD || by.len() > MAX_STOP_FIELD {
                return refuse(
                    ErrorCode::Malformed,
                    format!("session and by must be 1..={MAX_STOP_FIELD} bytes"),
                );
            }
            // A reason is the operator's note: kept, but bounded.
            let reason = reason
                .filter(|r| !r.trim().is_empty())
                .map(|r| crate::util::truncate_utf8(&r, MAX_STOP_REASON).0.to_owned());
            Step::Work(Work::Stop {
                session,
                by,
                reason,
            })
        }
        (
            ClientMessage::ListApprovals {
                protocol,
                admin_token,
            },
            None,
        ) => match admin_refusal(protocol, &admin_token, admin_token_sha256) {
            Some(refusal) => Step::Now(Next::Reject(refusal)),
            None => Step::Work(Work::ListApprovals),
        },
        (
            ClientMessage::DecideApproval {
                protocol,
                admin_token,
                call_id,
                input_sha256,
                nonce,
                decision,
                reason,
            },
            None,
        ) => match admin_refusal(protocol, &admin_token, admin_token_sha256) {
            Some(refusal) => Step::Now(Next::Reject(refusal)),
            None => Step::Work(Work::DecideApproval(WebDecide {
                call_id,
                input_sha256,
                nonce,
                decision,
                reason,
            })),
        },
        (ClientMessage::ToolCallRequest(request), Some(session)) => {
            Step::Work(Work::Call { session, request })
        }
        (ClientMessage::ToolCallResult(result), Some(session)) => {
            Step::Work(Work::Result { session, result })
        }
        (ClientMessage::EndSession { status }, Some(session)) => {
            let status = status
                .filter(|s| s.len() <= MAX_STATUS_LEN)
                .unwrap_or_else(|| "completed".into());
            Step::Work(Work::End { session, status })
        }
        (
            ClientMessage::Hello { .. }
            | ClientMessage::OpenSession { .. }
            | ClientMessage::StopSession { .. }
            | ClientMessage::ListApprovals { .. }
            | ClientMessage::DecideApproval { .. },
            Some(_),
        ) => refuse(
            ErrorCode::Unauthenticated,
            "connection is already bound to a session".into(),
        ),
        (_, None) => refuse(ErrorCode::Unauthenticated, "hello required first".into()),
    }
}

/// The answer once the work is done.
pub(crate) fn settle<S: BoundSession>(done: Done<S>) -> Next<S> {
    let internal = |message| ServerMessage::Error {
        code: ErrorCode::Internal,
        message,
        id: None,
    };
    let refuse = |Rejection { code, message }, id| Next::Reject(Refusal { code, message, id });
    match done {
        Done::Hello(Ok(session)) => {
            let welcome = ServerMessage::Welcome {
                protocol: PROTOCOL_VERSION,
                session: session.id().to_owned(),
                mode: session.mode(),
            };
            Next::Bind(session, welcome)
        }
        Done::Hello(Err((code, message))) => Next::Reject(Refusal::new(code, message)),
        Done::Opened(Ok(info)) => Next::ReplyAndClose(ServerMessage::SessionOpened {
            session: info.id,
            token: info.token,
            mode: info.mode,
        }),
        Done::Opened(Err(message)) => Next::ReplyAndClose(internal(message)),
        Done::Called { reply: None, .. } => Next::Close,
        Done::Called {
            reply: Some(Ok(reply)),
            ..
        } => {
            let mut out = vec![ServerMessage::Verdict(reply.verdict)];
            out.extend(reply.result.map(ServerMessage::ExecResult));
            Next::Reply(out)
        }
        Done::Called {
            id,
            reply: Some(Err(rejection)),
        } => refuse(rejection, Some(id)),
        Done::Recorded { id, result: Ok(()) } => {
            Next::Reply(vec![ServerMessage::ResultRecorded { id }])
        }
        Done::Recorded {
            id,
            result: Err(rejection),
        } => refuse(rejection, Some(id)),
        Done::Ended {
            session,
            result: Ok(()),
        } => Next::ReplyAndClose(ServerMessage::SessionEnded {
            session: session.id().to_owned(),
        }),
        Done::Ended {
            result: Err(message),
            ..
        } => Next::ReplyAndClose(internal(message)),
        Done::Stopped { session, result } => Next::ReplyAndClose(match result {
            Ok(agp_contracts::StopOutcome::Stopped {
                cancelled_approvals,
            }) => ServerMessage::SessionStopped {
                session,
                stopped: true,
                cancelled_approvals,
            },
            Ok(agp_contracts::StopOutcome::AlreadyEnded) => ServerMessage::SessionStopped {
                session,
                stopped: false,
                cancelled_approvals: Vec::new(),
            },
            Ok(agp_contracts::StopOutcome::Unknown) => ServerMessage::Error {
                code: ErrorCode::UnknownSession,
                message: format!("no session {session:?} is known to this daemon"),
                id: None,
            },
            Err(message) => internal(message),
        }),
        Done::Listed(list) => Next::ReplyAndClose(ServerMessage::Approvals(list)),
        Done::Decided(Ok(applied)) => Next::ReplyAndClose(ServerMessage::ApprovalDecided(applied)),
        // Journaled as `approval.rejected` already: an error frame, not a gateway rejection.
        Done::Decided(Err(message)) => Next::ReplyAndClose(ServerMessage::Error {
            code: ErrorCode::ApprovalRefused,
            message,
            id: None,
        }),
    }
}

/// Classifies a frame: not JSON / not an object / no type → malformed; an unknown type →
/// unknown_message; a known type with bad fields → malformed.
pub(crate) fn parse(frame: &[u8]) -> Result<ClientMessage, (ErrorCode, String)> {
    const KNOWN: &[&str] = &[
        "hello",
        "open_session",
        "tool_call_request",
        "tool_call_result",
        "end_session",
        "stop_session",
        "list_approvals",
        "decide_approval",
    ];
    // Error texts never quote the frame: they are journaled, and a frame may carry secrets.
    let value: Value = serde_json::from_slice(frame).map_err(|e| {
        (
            ErrorCode::Malformed,
            format!(
                "not valid JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err((
            ErrorCode::Malformed,
            "frame is not an object with a string `type`".into(),
        ));
    };
    let Some(kind) = KNOWN.iter().find(|k| **k == kind) else {
        return Err((ErrorCode::UnknownMessage, "unknown message type".into()));
    };
    serde_json::from_value(value).map_err(|_| {
        (
            ErrorCode::Malformed,
            format!("the fields do not form a valid `{kind}` message"),
        )
    })
}

#[cfg(test)]
mod tests;
