//! The gateway server: socket setup, sessions, connections.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::canonical::sha256_hex;
use agp_contracts::events::{
    ApprovalDenied, Event, GatewayRejected, SandboxPreflight, SessionEnded, SessionStarted,
};
use agp_contracts::{EvalContext, JournalError, SandboxSpec};
use agp_gateway::frame::encode;
use agp_gateway::{
    ClientMessage, ErrorCode, FrameError, ServerMessage, SessionMode, PROTOCOL_VERSION,
};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};

use crate::framing::AsyncFrameReader;
use crate::mediate::{Abandon, Mediator, Rejection};
use crate::session::{SessionInfo, SessionParams, SessionState};
use crate::store::{Store, StoreError};
use crate::util::{now_ms, random_hex};
use crate::{outbox, recovery, DaemonConfig, Parts};

/// How long a fresh connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another agp daemon is already serving {0}")]
    AlreadyRunning(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Recovery(#[from] recovery::RecoveryError),
    #[error("session refused: {0}")]
    Session(String),
    #[error("cannot create a random token: {0}")]
    Random(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Daemon {
    mediator: Arc<Mediator>,
    listener: std::sync::Mutex<Option<UnixListener>>,
    socket: PathBuf,
    admin_token_path: PathBuf,
    admin_token_sha256: String,
    recovery_tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Daemon {
    /// Prepares the run directory (0700), binds the socket (0600), opens the state database,
    /// reaps expired sessions and settles pending approvals. Must run inside a tokio runtime.
    pub async fn start(config: DaemonConfig, parts: Parts) -> Result<Arc<Self>, DaemonError> {
        let run_dir = config.run_dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&run_dir)
            .map_err(io_err(&run_dir))?;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(&run_dir))?;

        let socket = config.socket_path();
        if socket.exists() {
            if UnixStream::connect(&socket).await.is_ok() {
                return Err(DaemonError::AlreadyRunning(socket));
            }
            // Left by a daemon that died: nobody is listening on it.
            std::fs::remove_file(&socket).map_err(io_err(&socket))?;
        }
        // The admin token is in place before the socket exists: whoever can connect can also
        // read a complete token (it is renamed into place, never seen half-written).
        let admin_token = random_hex(32).map_err(|e| DaemonError::Random(e.to_string()))?;
        let admin_token_path = config.admin_token_path();
        write_private(&admin_token_path, admin_token.as_bytes())
            .map_err(io_err(&admin_token_path))?;

        let listener = UnixListener::bind(&socket).map_err(io_err(&socket))?;
        // The 0700 directory already keeps others out; 0600 on the socket says so twice.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(&socket))?;

        let db = config.state_db.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&db))
            .await
            .map_err(|e| DaemonError::Session(e.to_string()))??;
        let owner = format!(
            "{}{}-{}",
            if config.ephemeral {
                recovery::EPHEMERAL_OWNER_PREFIX
            } else {
                "daemon-"
            },
            std::process::id(),
            random_hex(4).map_err(|e| DaemonError::Random(e.to_string()))?
        );
        let mediator = Arc::new(Mediator::new(parts, config, Arc::new(store), owner));
        let tasks = recovery::recover(&mediator).await?;
        Ok(Arc::new(Self {
            mediator,
            listener: std::sync::Mutex::new(Some(listener)),
            socket,
            admin_token_path,
            admin_token_sha256: sha256_hex(admin_token.as_bytes()),
            recovery_tasks: std::sync::Mutex::new(tasks),
        }))
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn config(&self) -> &DaemonConfig {
        &self.mediator.config
    }

    /// Waits for approvals re-attached at start to settle (tests, orderly shutdown).
    pub async fn settle_recovered(&self) {
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .recovery_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Opens a session: sandbox (proxy-exec) with a passing preflight, a row with a lease, and
    /// `session.started` journaled. The returned token is the session's only credential.
    pub async fn open_session(&self, params: SessionParams) -> Result<SessionInfo, DaemonError> {
        open_session(&self.mediator, params, None).await
    }

    /// Opens a session for an agent binary agp identified (version, sha256, path): the
    /// identity goes into `session.started` as `intendant_identity`.
    pub async fn open_identified_session(
        &self,
        params: SessionParams,
        identity: Value,
    ) -> Result<SessionInfo, DaemonError> {
        open_session(&self.mediator, params, Some(identity)).await
    }

    /// Ends a session (`session.ended` journaled); a no-op for an unknown or ended session.
    pub async fn end_session(&self, session: &str, status: &str) -> Result<(), DaemonError> {
        if let Some(state) = self.mediator.sessions.remove_session(session) {
            end_session(&self.mediator, &state, status).await?;
        }
        Ok(())
    }

    /// Serves until `shutdown` completes; then ends live sessions and removes the socket.
    pub async fn serve(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let m = self.mediator.clone();
        let outbox = tokio::spawn(outbox::run(m.clone()));
        let heartbeat = tokio::spawn(heartbeat(m.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let d = self.clone();
                        tokio::spawn(async move { d.connection(stream).await });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.admin_token_path);
        for state in m.sessions.all() {
            m.sessions.remove_session(&state.id);
            if let Err(e) = end_session(&m, &state, "daemon-stopped").await {
                tracing::error!("cannot end session {}: {e}", state.id);
            }
        }
        // Last chance for queued projections (session ends); bounded so shutdown cannot hang.
        let _ = tokio::time::timeout(Duration::from_secs(2), outbox::deliver_due(&m)).await;
        outbox.abort();
        heartbeat.abort();
    }

    async fn connection(self: Arc<Self>, stream: UnixStream) {
        let peer = stream
            .peer_cred()
            .map(|c| json!({"uid": c.uid(), "gid": c.gid(), "pid": c.pid()}))
            .unwrap_or(Value::Null);
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            reader: AsyncFrameReader::new(BufReader::new(rd)),
            writer: BufWriter::new(wr),
            peer,
            session: None,
        };
        if let Err(e) = self.converse(&mut conn).await {
            tracing::debug!("connection ended: {e}");
        }
        let _ = conn.writer.shutdown().await;
    }

    async fn converse(&self, conn: &mut Conn) -> std::io::Result<()> {
        loop {
            let read = if conn.session.is_none() {
                match tokio::time::timeout(HELLO_TIMEOUT, conn.reader.read_frame()).await {
                    Ok(r) => r,
                    Err(_) => {
                        return self
                            .reject(
                                conn,
                                ErrorCode::Unauthenticated,
                                "no hello in time".into(),
                                None,
                            )
                            .await
                    }
                }
            } else {
                conn.reader.read_frame().await
            };
            let frame = match read {
                Ok(Some(f)) => f.to_vec(),
                Ok(None) => return Ok(()),
                Err(FrameError::TooLarge { limit }) => {
                    return self
                        .reject(
                            conn,
                            ErrorCode::FrameTooLarge,
                            format!("frame exceeds {limit} bytes"),
                            None,
                        )
                        .await
                }
                Err(FrameError::Truncated) => {
                    return self
                        .reject(
                            conn,
                            ErrorCode::Malformed,
                            "connection closed mid-frame".into(),
                            None,
                        )
                        .await
                }
                Err(FrameError::Io(e)) => return Err(e),
                Err(FrameError::Malformed(m)) => {
                    return self.reject(conn, ErrorCode::Malformed, m, None).await
                }
            };
            let message = match parse(&frame) {
                Ok(m) => m,
                Err((code, msg)) => return self.reject(conn, code, msg, None).await,
            };
            let keep_going = self.dispatch(conn, message).await?;
            if !keep_going {
                return Ok(());
            }
        }
    }

    /// Handles one message; `false` closes the connection.
    async fn dispatch(&self, conn: &mut Conn, message: ClientMessage) -> std::io::Result<bool> {
        let m = &self.mediator;
        match (message, conn.session.clone()) {
            (ClientMessage::Hello { protocol, token }, None) => {
                if protocol != PROTOCOL_VERSION {
                    let msg = format!(
                        "protocol {protocol} not supported (this daemon speaks {PROTOCOL_VERSION})"
                    );
                    self.reject(conn, ErrorCode::ProtocolVersion, msg, None)
                        .await?;
                    return Ok(false);
                }
                match self.session_for_token(&token).await {
                    Ok(state) => {
                        let welcome = ServerMessage::Welcome {
                            protocol: PROTOCOL_VERSION,
                            session: state.id.clone(),
                            mode: state.mode,
                        };
                        conn.session = Some(state);
                        send(conn, &welcome).await?;
                        Ok(true)
                    }
                    Err((code, msg)) => {
                        self.reject(conn, code, msg, None).await?;
                        Ok(false)
                    }
                }
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
                if protocol != PROTOCOL_VERSION {
                    let msg = format!("protocol {protocol} not supported");
                    self.reject(conn, ErrorCode::ProtocolVersion, msg, None)
                        .await?;
                    return Ok(false);
                }
                if sha256_hex(admin_token.as_bytes()) != self.admin_token_sha256 {
                    self.reject(conn, ErrorCode::BadToken, "wrong admin token".into(), None)
                        .await?;
                    return Ok(false);
                }
                let params = SessionParams {
                    intendant,
                    repo: PathBuf::from(repo),
                    task,
                    mode,
                };
                match open_session(m, params, None).await {
                    Ok(info) => {
                        send(
                            conn,
                            &ServerMessage::SessionOpened {
                                session: info.id,
                                token: info.token,
                                mode: info.mode,
                            },
                        )
                        .await?;
                    }
                    Err(e) => {
                        send(
                            conn,
                            &ServerMessage::Error {
                                code: ErrorCode::Internal,
                                message: e.to_string(),
                                id: None,
                            },
                        )
                        .await?;
                    }
                }
                Ok(false)
            }
            (ClientMessage::ToolCallRequest(req), Some(state)) => {
                let id = req.id.clone();
                // Mediation runs as its own task so that a caller who hangs up is noticed: a
                // pending approval is then settled (journaled) and nothing runs for it.
                let (raise, abandon) = Abandon::new();
                let mediator = m.clone();
                let mut task =
                    tokio::spawn(async move { mediator.mediate(&state, req, abandon).await });
                let joined = tokio::select! {
                    joined = &mut task => joined,
                    () = conn.reader.peer_closed() => {
                        let _ = raise.send(true);
                        let _ = task.await;
                        return Ok(false);
                    }
                };
                let mediated = joined.unwrap_or_else(|e| {
                    Err(Rejection {
                        code: ErrorCode::Internal,
                        message: format!("mediation failed: {e}"),
                    })
                });
                match mediated {
                    Ok(reply) => {
                        send(conn, &ServerMessage::Verdict(reply.verdict)).await?;
                        if let Some(result) = reply.result {
                            send(conn, &ServerMessage::ExecResult(result)).await?;
                        }
                        Ok(true)
                    }
                    Err(Rejection { code, message }) => {
                        self.reject(conn, code, message, Some(id)).await?;
                        Ok(false)
                    }
                }
            }
            (ClientMessage::ToolCallResult(result), Some(state)) => {
                let id = result.id.clone();
                match m.record_result(&state, result).await {
                    Ok(()) => {
                        send(conn, &ServerMessage::ResultRecorded { id }).await?;
                        Ok(true)
                    }
                    Err(Rejection { code, message }) => {
                        self.reject(conn, code, message, Some(id)).await?;
                        Ok(false)
                    }
                }
            }
            (ClientMessage::EndSession { status }, Some(state)) => {
                m.sessions.remove_session(&state.id);
                let status = status.unwrap_or_else(|| "completed".into());
                let status = if status.len() > 64 {
                    "completed".to_owned()
                } else {
                    status
                };
                match end_session(m, &state, &status).await {
                    Ok(()) => {
                        send(
                            conn,
                            &ServerMessage::SessionEnded {
                                session: state.id.clone(),
                            },
                        )
                        .await?
                    }
                    Err(e) => {
                        send(
                            conn,
                            &ServerMessage::Error {
                                code: ErrorCode::Internal,
                                message: e.to_string(),
                                id: None,
                            },
                        )
                        .await?
                    }
                }
                Ok(false)
            }
            (ClientMessage::Hello { .. } | ClientMessage::OpenSession { .. }, Some(_)) => {
                self.reject(
                    conn,
                    ErrorCode::Unauthenticated,
                    "connection is already bound to a session".into(),
                    None,
                )
                .await?;
                Ok(false)
            }
            (_, None) => {
                self.reject(
                    conn,
                    ErrorCode::Unauthenticated,
                    "hello required first".into(),
                    None,
                )
                .await?;
                Ok(false)
            }
        }
    }

    async fn session_for_token(
        &self,
        token: &str,
    ) -> Result<Arc<SessionState>, (ErrorCode, String)> {
        let m = &self.mediator;
        let hash = sha256_hex(token.as_bytes());
        if let Some(state) = m.sessions.get(&hash) {
            if state.is_ended() {
                return Err((ErrorCode::SessionClosed, "the session has ended".into()));
            }
            return Ok(state);
        }
        // A session of a previous daemon instance whose lease is still valid: take it over.
        let h = hash.clone();
        let row = m
            .db(move |s| s.active_session_by_token(&h))
            .await
            .map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("agp state is unavailable: {e}"),
                )
            })?;
        let Some(row) = row else {
            return Err((ErrorCode::BadToken, "unknown session token".into()));
        };
        let mode = match row.mode.as_str() {
            "gate" => SessionMode::Gate,
            "proxy_exec" => SessionMode::ProxyExec,
            other => {
                return Err((
                    ErrorCode::Internal,
                    format!("session has unknown mode {other}"),
                ))
            }
        };
        let (id, owner) = (row.id.clone(), m.owner.clone());
        let fencing = m
            .db(move |s| s.claim_lease(&id, &owner, now_ms()))
            .await
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?
            .ok_or((ErrorCode::SessionClosed, "the session has ended".to_owned()))?;
        let repo = PathBuf::from(&row.repo);
        let sandbox = match mode {
            SessionMode::Gate => None,
            SessionMode::ProxyExec => Some(
                spawn_sandbox(m, &row.id, &repo)
                    .await
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))?,
            ),
        };
        let state = Arc::new(SessionState::new(
            row.id.clone(),
            mode,
            repo.clone(),
            fencing,
            sandbox,
            eval_ctx(m, &repo),
        ));
        let resumed = SessionStarted {
            session: Some(row.id.clone()),
            resumed: Some(true),
            lease_owner: Some(m.owner.clone()),
            fencing_token: Some(fencing),
            mode: Some(row.mode.clone()),
            ..SessionStarted::new(row.intendant.clone(), row.repo.clone())
        };
        m.record(Some(&row.id), &resumed)
            .await
            .map_err(|e| (ErrorCode::Internal, format!("journal: {e}")))?;
        m.sessions.insert(hash, state.clone());
        Ok(state)
    }

    /// Sends an error frame and journals `gateway.rejected`. The frame's content is never
    /// journaled: it may carry secrets.
    async fn reject(
        &self,
        conn: &mut Conn,
        code: ErrorCode,
        message: String,
        id: Option<String>,
    ) -> std::io::Result<()> {
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

struct Conn {
    reader: AsyncFrameReader<BufReader<tokio::net::unix::OwnedReadHalf>>,
    writer: BufWriter<tokio::net::unix::OwnedWriteHalf>,
    peer: Value,
    session: Option<Arc<SessionState>>,
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

/// Classifies a frame: not JSON / not an object / no type → malformed; an unknown type →
/// unknown_message; a known type with bad fields → malformed.
fn parse(frame: &[u8]) -> Result<ClientMessage, (ErrorCode, String)> {
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
    const KNOWN: &[&str] = &[
        "hello",
        "open_session",
        "tool_call_request",
        "tool_call_result",
        "end_session",
    ];
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

/// Writes a 0600 file atomically (temporary file, fsync, rename).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn eval_ctx(m: &Mediator, repo: &Path) -> EvalContext {
    EvalContext {
        project_root: repo.to_path_buf(),
        home: m.config.user_home.clone(),
        agp_home: m.config.agp_home.clone(),
    }
}

/// Spawns a session sandbox and proves it with a preflight (journaled either way). A failed
/// preflight refuses the session.
async fn spawn_sandbox(
    m: &Arc<Mediator>,
    session: &str,
    repo: &Path,
) -> Result<Arc<dyn crate::exec::SessionSandbox>, DaemonError> {
    let Some(factory) = m.parts.sandbox.clone() else {
        return Err(DaemonError::Session(
            "proxy-exec needs a sandbox and none is configured".into(),
        ));
    };
    let mut spec = SandboxSpec::new(session, repo);
    spec.env = m.config.sandbox_env.clone();
    spec.limits = m.config.sandbox_limits.clone();
    let isolation = factory.isolation();
    let proven = tokio::task::spawn_blocking(move || {
        let sandbox = factory.open(&spec)?;
        match sandbox.preflight() {
            Ok(report) => Ok((sandbox, report)),
            Err(e) => {
                let _ = sandbox.teardown();
                Err(e)
            }
        }
    })
    .await
    .map_err(|e| DaemonError::Session(e.to_string()))?;
    match proven {
        Ok((sandbox, report)) => {
            let body = SandboxPreflight::proven(session, isolation.clone(), report.clone());
            if let Err(e) = m.record(Some(session), &body).await {
                let _ = sandbox.teardown();
                return Err(e.into());
            }
            if !report.passed {
                let _ = sandbox.teardown();
                return Err(DaemonError::Session(format!(
                    "sandbox preflight failed: {}",
                    report.failure_summary()
                )));
            }
            Ok(sandbox)
        }
        Err(e) => {
            let body = SandboxPreflight::failed(session, isolation.clone(), e.to_string());
            m.record(Some(session), &body).await?;
            Err(DaemonError::Session(e.to_string()))
        }
    }
}

pub(crate) async fn open_session(
    m: &Arc<Mediator>,
    params: SessionParams,
    identity: Option<Value>,
) -> Result<SessionInfo, DaemonError> {
    let repo = std::fs::canonicalize(&params.repo)
        .map_err(|e| DaemonError::Session(format!("repository {}: {e}", params.repo.display())))?;
    if !repo.is_dir() {
        return Err(DaemonError::Session(format!(
            "repository {} is not a directory",
            repo.display()
        )));
    }
    if params.intendant.is_empty() || params.intendant.len() > 64 || params.task.len() > 64 * 1024 {
        return Err(DaemonError::Session(
            "intendant must be 1..=64 bytes and task at most 64 KiB".into(),
        ));
    }
    let rnd = |n| random_hex(n).map_err(|e| DaemonError::Random(e.to_string()));
    let id = format!("s-{}", rnd(8)?);
    let token = rnd(32)?;
    let token_sha256 = sha256_hex(token.as_bytes());
    // Before anything of the session can run: what is already there is not the agent's doing.
    let baseline = crate::integrity::snapshot(m, &id, &repo).await;

    let sandbox = match params.mode {
        SessionMode::Gate => None,
        SessionMode::ProxyExec => Some(spawn_sandbox(m, &id, &repo).await?),
    };
    let isolation = m.parts.sandbox.as_ref().map(|f| f.isolation());
    // The task is user text: it may carry a secret, so only its redacted form is kept.
    let task = m.parts.redactor.redact_text(&params.task);
    let row = (
        id.clone(),
        params.intendant.clone(),
        repo.to_string_lossy().into_owned(),
        task.clone(),
        params.mode.as_str(),
        token_sha256.clone(),
        m.owner.clone(),
    );
    let inserted = m
        .db(move |s| {
            s.insert_session(
                &row.0,
                &row.1,
                &row.2,
                &row.3,
                row.4,
                &row.5,
                &row.6,
                now_ms(),
            )
        })
        .await;
    let fencing = match inserted {
        Ok(f) => f,
        Err(e) => {
            if let Some(sb) = sandbox {
                let _ = sb.teardown();
            }
            return Err(e.into());
        }
    };
    let started = SessionStarted {
        session: Some(id.clone()),
        task: Some(task),
        mode: Some(params.mode.as_str().to_owned()),
        lease_owner: Some(m.owner.clone()),
        fencing_token: Some(fencing),
        policy_sha256: Some(m.parts.policy.policy_sha256()),
        isolation: Some(isolation),
        approval_channel: Some(m.parts.channel.name().to_owned()),
        approval_timeout_secs: Some(m.config.approval_timeout.as_secs()),
        started_by: Some(m.config.operator.clone()),
        intendant_identity: identity,
        ..SessionStarted::new(params.intendant.clone(), repo.clone())
    };
    let body = started.to_body();
    if let Err(e) = m
        .journal(SessionStarted::KIND, Some(&id), body.clone())
        .await
    {
        if let Some(sb) = sandbox {
            let _ = sb.teardown();
        }
        let sid = id.clone();
        let _ = m
            .db(move |s| s.end_session(&sid, "failed", 1, now_ms()))
            .await;
        return Err(e.into());
    }
    let state = Arc::new(SessionState::new(
        id.clone(),
        params.mode,
        repo.clone(),
        fencing,
        sandbox,
        eval_ctx(m, &repo),
    ));
    state.set_baseline(baseline);
    m.sessions.insert(token_sha256, state);
    m.project(SessionStarted::KIND, Some(&id), body).await;
    Ok(SessionInfo {
        id,
        token,
        mode: params.mode,
        repo,
    })
}

pub(crate) async fn end_session(
    m: &Arc<Mediator>,
    state: &Arc<SessionState>,
    status: &str,
) -> Result<(), DaemonError> {
    if !state.mark_ended() {
        return Ok(());
    }
    // Calls already entering the journal finish first; later ones see the session ended.
    let _closing = state.gate.write().await;
    if let Some(sb) = state.sandbox.clone() {
        if let Err(e) = tokio::task::spawn_blocking(move || sb.teardown())
            .await
            .unwrap_or(Ok(()))
        {
            tracing::warn!("sandbox teardown failed: {e}");
        }
    }
    cancel_pending(m, &state.id, status).await?;
    // Withdraws prompts still on a channel; their outcome was settled just above.
    state.signal_ended();
    // After the teardown nothing of the sandbox runs any more to race the check.
    let integrity = crate::integrity::check(m, &state.id, &state.repo, state.take_baseline()).await;
    let (id, st, fencing) = (state.id.clone(), status.to_owned(), state.fencing_token);
    let ended = m
        .db(move |s| s.end_session(&id, &st, fencing, now_ms()))
        .await?;
    m.record(Some(&state.id), &integrity).await?;
    let body = SessionEnded {
        session: state.id.clone(),
        status: status.to_owned(),
        lease_held: ended,
    }
    .to_body();
    m.journal(SessionEnded::KIND, Some(&state.id), body.clone())
        .await?;
    m.project(SessionEnded::KIND, Some(&state.id), body).await;
    Ok(())
}

/// Settles the session's pending approvals as cancelled (journaled as denials), so no prompt
/// outlives its session and no later answer can apply to it.
pub(crate) async fn cancel_pending(
    m: &Arc<Mediator>,
    session: &str,
    status: &str,
) -> Result<(), DaemonError> {
    let pending = m.db(|s| s.pending()).await?;
    for row in pending.into_iter().filter(|r| r.session == session) {
        let (s, c, h) = (
            row.session.clone(),
            row.call_id.clone(),
            row.input_sha256.clone(),
        );
        if !m
            .db(move |st| st.resolve_pending(&s, &c, &h, "cancelled", now_ms()))
            .await?
        {
            continue;
        }
        let denied = ApprovalDenied {
            call_id: row.call_id.clone(),
            input_sha256: row.input_sha256.clone(),
            by: None,
            reason: Some(format!("the session ended ({status}) before a decision")),
            channel: m.parts.channel.name().to_owned(),
            waited_ms: None,
            unavailable: Some(true),
            cancelled: Some(true),
        };
        m.record(Some(session), &denied).await?;
    }
    Ok(())
}

async fn heartbeat(m: Arc<Mediator>) {
    let every = (m.config.lease_ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let owner = m.owner.clone();
        if let Err(e) = m.db(move |s| s.heartbeat(&owner, now_ms())).await {
            tracing::warn!("lease heartbeat failed: {e}");
        }
    }
}
