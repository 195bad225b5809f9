//! Blocking gateway client over `std::os::unix::net::UnixStream`.
//!
//! Every failure is an error the caller must turn into a deny: the client never invents a
//! verdict.

use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::approvals::{ApprovalList, DecisionApplied, PendingApproval, WebDecision};
use crate::frame::{self, FrameError, FrameReader};
use crate::protocol::{
    ClientMessage, ErrorCode, ExecResult, ServerMessage, SessionMode, ToolCallRequest,
    ToolCallResult, VerdictMessage, PROTOCOL_VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agp daemon at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("the agp daemon did not answer in time")]
    Timeout,
    #[error("the agp daemon closed the connection")]
    Closed,
    #[error("gateway: {0}")]
    Frame(FrameError),
    #[error("the agp daemon refused: {code}: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("unexpected reply from the agp daemon: {0}")]
    Unexpected(String),
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                ClientError::Timeout
            }
            FrameError::Truncated => ClientError::Closed,
            other => ClientError::Frame(other),
        }
    }
}

/// A session created on a running daemon through the admin channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOpened {
    pub session: String,
    pub token: String,
    pub mode: SessionMode,
}

/// The daemon's answer to a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReply {
    pub session: String,
    /// `false`: the session had already ended; nothing changed.
    pub stopped: bool,
    pub cancelled_approvals: Vec<String>,
}

/// The daemon's answer in proxy-exec mode: the verdict and, when allowed, what the sandboxed
/// execution produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecReply {
    pub verdict: VerdictMessage,
    pub result: Option<ExecResult>,
}

pub struct Client {
    reader: FrameReader<BufReader<UnixStream>>,
    writer: BufWriter<UnixStream>,
    session: Option<(String, SessionMode)>,
}

impl Client {
    /// Connects with `reply_timeout` as the longest wait for any one answer. For tool calls it
    /// must exceed the approval timeout, or a slow human would turn into a client error.
    pub fn connect(socket: &Path, reply_timeout: Duration) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
        let io = |source| ClientError::Connect {
            path: socket.display().to_string(),
            source,
        };
        stream.set_read_timeout(Some(reply_timeout)).map_err(io)?;
        stream.set_write_timeout(Some(reply_timeout)).map_err(io)?;
        let read_half = stream.try_clone().map_err(io)?;
        Ok(Self {
            reader: FrameReader::new(BufReader::new(read_half)),
            writer: BufWriter::new(stream),
            session: None,
        })
    }

    /// Changes how long to wait for each answer.
    pub fn set_reply_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        self.writer
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| ClientError::Frame(FrameError::Io(e)))
    }

    /// Session this connection is bound to, after [`Client::hello`].
    pub fn session(&self) -> Option<&str> {
        self.session.as_ref().map(|(s, _)| s.as_str())
    }

    pub fn mode(&self) -> Option<SessionMode> {
        self.session.as_ref().map(|(_, m)| *m)
    }

    fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        frame::write_frame(&mut self.writer, message).map_err(ClientError::from)
    }

    fn receive(&mut self) -> Result<ServerMessage, ClientError> {
        match self.reader.read_message::<ServerMessage>()? {
            None => Err(ClientError::Closed),
            Some(ServerMessage::Error { code, message, .. }) => {
                Err(ClientError::Refused { code, message })
            }
            Some(m) => Ok(m),
        }
    }

    /// Binds this connection to the session the token belongs to.
    pub fn hello(&mut self, token: &str) -> Result<(String, SessionMode), ClientError> {
        self.send(&ClientMessage::Hello {
            protocol: PROTOCOL_VERSION,
            token: token.to_owned(),
        })?;
        match self.receive()? {
            ServerMessage::Welcome {
                protocol,
                session,
                mode,
            } if protocol == PROTOCOL_VERSION => {
                self.session = Some((session.clone(), mode));
                Ok((session, mode))
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Creates a session on the daemon (admin channel).
    pub fn open_session(
        &mut self,
        admin_token: &str,
        intendant: &str,
        repo: &str,
        task: &str,
        mode: SessionMode,
    ) -> Result<SessionOpened, ClientError> {
        self.send(&ClientMessage::OpenSession {
            protocol: PROTOCOL_VERSION,
            admin_token: admin_token.to_owned(),
            intendant: intendant.to_owned(),
            repo: repo.to_owned(),
            task: task.to_owned(),
            mode,
        })?;
        match self.receive()? {
            ServerMessage::SessionOpened {
                session,
                token,
                mode,
            } => Ok(SessionOpened {
                session,
                token,
                mode,
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Stops a session on the daemon (admin channel): `Ok(false)` when it had already ended.
    pub fn stop_session(
        &mut self,
        admin_token: &str,
        session: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<StopReply, ClientError> {
        self.send(&ClientMessage::StopSession {
            protocol: PROTOCOL_VERSION,
            admin_token: admin_token.to_owned(),
            session: session.to_owned(),
            by: by.to_owned(),
            reason: reason.map(str::to_owned),
        })?;
        match self.receive()? {
            ServerMessage::SessionStopped {
                session,
                stopped,
                cancelled_approvals,
            } => Ok(StopReply {
                session,
                stopped,
                cancelled_approvals,
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The approvals waiting for a human (admin channel), each with a fresh single-use nonce.
    pub fn list_approvals(&mut self, admin_token: &str) -> Result<ApprovalList, ClientError> {
        self.send(&ClientMessage::ListApprovals {
            protocol: PROTOCOL_VERSION,
            admin_token: admin_token.to_owned(),
        })?;
        match self.receive()? {
            ServerMessage::Approvals(list) => Ok(list),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Answers one approval (admin channel) as this process's OS user. A refused decision is
    /// `ClientError::Refused` with code `approval_refused` and the reason first in the message.
    pub fn decide_approval(
        &mut self,
        admin_token: &str,
        pending: &PendingApproval,
        decision: WebDecision,
        reason: Option<&str>,
    ) -> Result<DecisionApplied, ClientError> {
        self.send(&ClientMessage::DecideApproval {
            protocol: PROTOCOL_VERSION,
            admin_token: admin_token.to_owned(),
            call_id: pending.call_id.clone(),
            input_sha256: pending.input_sha256.clone(),
            nonce: pending.nonce.clone(),
            decision,
            reason: reason.map(str::to_owned),
        })?;
        match self.receive()? {
            ServerMessage::ApprovalDecided(applied) => Ok(applied),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    fn expect_verdict(&mut self, id: &str) -> Result<VerdictMessage, ClientError> {
        match self.receive()? {
            ServerMessage::Verdict(v) if v.id == id => Ok(v),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Gate mode: asks for a verdict; the caller executes the tool itself when allowed.
    pub fn request(&mut self, request: &ToolCallRequest) -> Result<VerdictMessage, ClientError> {
        self.send(&ClientMessage::ToolCallRequest(request.clone()))?;
        self.expect_verdict(&request.id)
    }

    /// Proxy-exec mode: asks for a verdict and, when allowed, the daemon's sandboxed execution.
    pub fn request_exec(&mut self, request: &ToolCallRequest) -> Result<ExecReply, ClientError> {
        self.send(&ClientMessage::ToolCallRequest(request.clone()))?;
        let verdict = self.expect_verdict(&request.id)?;
        if !verdict.is_allow() {
            return Ok(ExecReply {
                verdict,
                result: None,
            });
        }
        match self.receive()? {
            ServerMessage::ExecResult(r) if r.id == request.id => Ok(ExecReply {
                verdict,
                result: Some(r),
            }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Gate mode: reports what the tool produced, once it ran.
    pub fn report_result(&mut self, result: &ToolCallResult) -> Result<(), ClientError> {
        self.send(&ClientMessage::ToolCallResult(result.clone()))?;
        match self.receive()? {
            ServerMessage::ResultRecorded { id } if id == result.id => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Closes the session (`session.ended` journaled).
    pub fn end_session(&mut self, status: Option<&str>) -> Result<(), ClientError> {
        self.send(&ClientMessage::EndSession {
            status: status.map(str::to_owned),
        })?;
        match self.receive()? {
            ServerMessage::SessionEnded { .. } => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use std::os::unix::net::UnixListener;

    /// A client (reading with `timeout`) of a one-connection scripted peer that answers each
    /// received frame with the next canned line.
    fn served(answers: Vec<&'static str>, timeout: Duration) -> (tempfile::TempDir, Client) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for answer in answers {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                writer.write_all(answer.as_bytes()).unwrap();
            }
            // Keep the socket open (reading, never answering) until the client is done.
            let mut rest = String::new();
            while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
                rest.clear();
            }
        });
        let client = Client::connect(&path, timeout).unwrap();
        (dir, client)
    }

    fn req(id: &str) -> ToolCallRequest {
        ToolCallRequest {
            id: id.into(),
            tool_use_id: None,
            tool: "Bash".into(),
            input: serde_json::json!({"command": "ls"}),
            cwd: "/r".into(),
        }
    }

    #[test]
    fn hello_then_exec_round_trip() {
        let (_d, mut c) = served(vec![
            "{\"type\":\"welcome\",\"protocol\":1,\"session\":\"s1\",\"mode\":\"proxy_exec\"}\n",
            "{\"type\":\"verdict\",\"id\":\"c1\",\"decision\":\"allow\",\"reason\":\"ok\",\"input_sha256\":\"ab\"}\n{\"type\":\"exec_result\",\"id\":\"c1\",\"ok\":true,\"exit_code\":0,\"output\":\"hi\",\"output_sha256\":\"cd\"}\n",
        ], Duration::from_secs(5));
        assert_eq!(
            c.hello("tok").unwrap(),
            ("s1".into(), SessionMode::ProxyExec)
        );
        let reply = c.request_exec(&req("c1")).unwrap();
        assert!(reply.verdict.is_allow());
        assert_eq!(reply.result.unwrap().output, "hi");
    }

    #[test]
    fn error_frame_becomes_refused() {
        let (_d, mut c) = served(
            vec!["{\"type\":\"error\",\"code\":\"bad_token\",\"message\":\"no such session\"}\n"],
            Duration::from_secs(5),
        );
        assert!(matches!(
            c.hello("nope"),
            Err(ClientError::Refused {
                code: ErrorCode::BadToken,
                ..
            })
        ));
    }

    #[test]
    fn mismatched_verdict_id_is_not_accepted() {
        let (_d, mut c) = served(vec![
            "{\"type\":\"verdict\",\"id\":\"other\",\"decision\":\"allow\",\"reason\":\"ok\",\"input_sha256\":\"ab\"}\n",
        ], Duration::from_secs(5));
        assert!(matches!(
            c.request(&req("c1")),
            Err(ClientError::Unexpected(_))
        ));
    }

    #[test]
    fn silent_daemon_times_out_and_missing_daemon_fails_to_connect() {
        let (_d, mut c) = served(vec![], Duration::from_millis(100));
        // The peer reads our frame and never answers.
        assert!(matches!(c.request(&req("c1")), Err(ClientError::Timeout)));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Client::connect(&dir.path().join("none.sock"), Duration::from_secs(1)),
            Err(ClientError::Connect { .. })
        ));
    }
}
