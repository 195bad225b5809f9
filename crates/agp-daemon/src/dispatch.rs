//! A gateway connection: reads frames, lets [`decide`](decide::decide) and
//! [`settle`](decide::settle) rule on them, and carries out what they say (session store,
//! mediation, journal, socket).

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::GatewayRejected;
use agp_gateway::frame::encode;
use agp_gateway::{ErrorCode, ServerMessage, SessionMode};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;

use crate::framing::AsyncFrameReader;
use crate::mediate::{Abandon, Rejection};
use crate::server::{end_session, open_session, Daemon};
use crate::session::SessionState;

mod decide;

use decide::{decide, settle, BoundSession, Done, Next, Read, Refusal, Step, Work};

/// How long a fresh connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

impl BoundSession for Arc<SessionState> {
    fn id(&self) -> &str {
        &self.id
    }

    fn mode(&self) -> SessionMode {
        self.mode
    }
}

struct Conn {
    reader: AsyncFrameReader<BufReader<tokio::net::unix::OwnedReadHalf>>,
    writer: BufWriter<tokio::net::unix::OwnedWriteHalf>,
    peer: Value,
    /// The connecting process as the kernel names it (SO_PEERCRED, SO_PEERPIDFD).
    peer_pid: Option<u32>,
    /// The connecting user (SO_PEERCRED): who a console's approval decision is from.
    peer_uid: Option<u32>,
    peer_pidfd: Option<std::os::fd::OwnedFd>,
    /// How this connection's reported results are journaled (see `peer`).
    reported_by: &'static str,
    session: Option<Arc<SessionState>>,
    /// A control request's hold on the daemon, released once the connection is done.
    control_hold: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
}

impl Daemon {
    pub(crate) async fn connection(self: Arc<Self>, stream: UnixStream) {
        let cred = stream.peer_cred().ok();
        let peer = cred.map_or(
            Value::Null,
            |c| json!({"uid": c.uid(), "gid": c.gid(), "pid": c.pid()}),
        );
        let peer_pid = cred
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok());
        let peer_pidfd = crate::peer::peer_pidfd(&stream);
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            reader: AsyncFrameReader::new(BufReader::new(rd)),
            writer: BufWriter::new(wr),
            peer,
            peer_pid,
            peer_uid: cred.map(|c| c.uid()),
            peer_pidfd,
            reported_by: crate::peer::REPORTED_BY_AGENT,
            session: None,
            control_hold: None,
        };
        if let Err(e) = self.converse(&mut conn).await {
            tracing::debug!("connection ended: {e}");
        }
        let _ = conn.writer.shutdown().await;
        // Only now, with the answer out, may a daemon waiting to stop go on.
        drop(conn.control_hold.take());
    }

    async fn converse(&self, conn: &mut Conn) -> std::io::Result<()> {
        loop {
            let read = if conn.session.is_none() {
                tokio::time::timeout(HELLO_TIMEOUT, conn.reader.read_frame())
                    .await
                    .ok()
            } else {
                Some(conn.reader.read_frame().await)
            };
            let read = match read {
                Some(read) => Read::of(read)?,
                None => Read::HelloTimeout,
            };
            let step = decide(read, conn.session.clone(), &self.admin_token_sha256);
            let next = match step {
                Step::Now(next) => next,
                Step::Work(work) => settle(self.work(conn, work).await),
            };
            match next {
                Next::Reply(messages) => {
                    for message in &messages {
                        send(conn, message).await?;
                    }
                }
                Next::Bind(session, welcome) => {
                    conn.session = Some(session);
                    send(conn, &welcome).await?;
                }
                Next::ReplyAndClose(message) => return send(conn, &message).await,
                Next::Reject(refusal) => return self.reject(conn, refusal).await,
                Next::Close => return Ok(()),
            }
        }
    }

    async fn work(
        &self,
        conn: &mut Conn,
        work: Work<Arc<SessionState>>,
    ) -> Done<Arc<SessionState>> {
        let m = &self.mediator;
        match work {
            Work::Hello { token } => {
                let session = self.session_for_token(&token).await;
                Done::Hello(session.and_then(|state| {
                    conn.reported_by = admit_peer(conn, &state)?;
                    Ok(state)
                }))
            }
            Work::OpenSession(params) => Done::Opened(
                open_session(m, params, None, false)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Work::Call { session, request } => {
                let id = request.id.clone();
                // Mediation runs as its own task so that a caller who hangs up is noticed: a
                // pending approval is then settled (journaled) and nothing runs for it.
                let (raise, abandon) = Abandon::new();
                let mediator = m.clone();
                let mut task =
                    tokio::spawn(async move { mediator.mediate(&session, request, abandon).await });
                let joined = tokio::select! {
                    joined = &mut task => joined,
                    () = conn.reader.peer_closed() => {
                        let _ = raise.send(true);
                        let _ = task.await;
                        return Done::Called { id, reply: None };
                    }
                };
                let reply = joined.unwrap_or_else(|e| {
                    Err(Rejection {
                        code: ErrorCode::Internal,
                        message: format!("mediation failed: {e}"),
                    })
                });
                Done::Called {
                    id,
                    reply: Some(reply.map(Box::new)),
                }
            }
            Work::Result { session, result } => {
                let id = result.id.clone();
                let result = m.record_result(&session, result, conn.reported_by).await;
                Done::Recorded { id, result }
            }
            Work::Stop {
                session,
                by,
                reason,
            } => {
                conn.control_hold = Some(m.control.clone().read_owned().await);
                let request = agp_contracts::StopRequest {
                    session: session.clone(),
                    by: agp_contracts::Approver {
                        id: format!("cli:{by}"),
                        name: by,
                        via: "cli".into(),
                    },
                    reason,
                };
                let result = m
                    .stop_session(request, Some(conn.peer.clone()))
                    .await
                    .map_err(|e| e.to_string());
                Done::Stopped { session, result }
            }
            Work::ListApprovals => Done::Listed(m.list_web(conn.peer_uid)),
            Work::DecideApproval(decision) => {
                Done::Decided(m.decide_web(conn.peer_uid, decision).await)
            }
            Work::End { session, status } => {
                m.sessions.remove_session(&session.id);
                let result = end_session(m, &session, &status)
                    .await
                    .map_err(|e| e.to_string());
                Done::Ended { session, result }
            }
        }
    }

    /// Sends an error frame and journals `gateway.rejected`. The frame's content is never
    /// journaled: it may carry secrets.
    async fn reject(&self, conn: &mut Conn, refusal: Refusal) -> std::io::Result<()> {
        let Refusal { code, message, id } = refusal;
        let session = conn.session.as_ref().map(|s| s.id.clone());
        // Ids are the client's: bound what of them reaches the journal.
        let id = id.map(|i| crate::util::truncate_utf8(&i, 256).0.to_owned());
        let body = GatewayRejected {
            code: code.as_str().to_owned(),
            message: message.clone(),
            call_id: id.clone(),
            peer: conn.peer.clone(),
        };
        if let Err(e) = self.mediator.record(session.as_deref(), &body).await {
            tracing::error!("cannot journal a gateway rejection: {e}");
        }
        send(conn, &ServerMessage::Error { code, message, id }).await
    }
}

/// Whether the connecting process may speak for `state` and how its results are journaled:
/// sessions `agp run` guards check the process tree (see `peer`); others are as before.
fn admit_peer(conn: &Conn, state: &SessionState) -> Result<&'static str, (ErrorCode, String)> {
    let Some(check) = state.peer_check.get() else {
        return Ok(crate::peer::REPORTED_BY_AGENT);
    };
    let refuse = |m: String| (ErrorCode::PeerRefused, m);
    let pid = conn
        .peer_pid
        .ok_or_else(|| refuse("the kernel did not name the connecting process".into()))?;
    let chain = crate::peer::chain(pid);
    // The chain is only this peer's if the peer still holds its pid after the reading.
    if conn
        .peer_pidfd
        .as_ref()
        .is_some_and(|fd| !crate::peer::alive(fd))
    {
        return Err(refuse(
            "the connecting process exited before it could be checked".into(),
        ));
    }
    check.admit(&chain).map_err(refuse)
}

async fn send(conn: &mut Conn, message: &ServerMessage) -> std::io::Result<()> {
    let bytes = match encode(message) {
        Ok(b) => b,
        Err(e) => {
            // Only an oversize reply can fail; say so instead of sending it.
            let fallback = ServerMessage::Error {
                code: ErrorCode::Internal,
                message: format!("reply not sent: {e}"),
                id: None,
            };
            encode(&fallback).map_err(|e| std::io::Error::other(e.to_string()))?
        }
    };
    conn.writer.write_all(&bytes).await?;
    conn.writer.flush().await
}
