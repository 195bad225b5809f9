//! The gateway server: socket setup, sessions, connections.

mod sessions;
mod stop;

use sessions::cancel_pending;
pub(crate) use sessions::{end_session, open_session};
use sessions::{eval_ctx, heartbeat, spawn_sandbox, write_private};
pub use stop::STOPPED;

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::canonical::sha256_hex;
use agp_contracts::events::{ApprovalDenied, SandboxPreflight, SessionEnded, SessionStarted};
use agp_contracts::{EvalContext, JournalError, SandboxSpec};
use agp_contracts::{StopOutcome, StopRequest};
use agp_gateway::{ErrorCode, SessionMode};
use serde_json::Value;
use tokio::net::{UnixListener, UnixStream};

use crate::mediate::Mediator;
use crate::session::{SessionInfo, SessionParams, SessionState};
use crate::store::{PgStore, SqliteStore, StateStore, Store, StoreError};
use crate::util::{now_ms, random_hex};
use crate::{outbox, recovery, DaemonConfig, Parts};

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
    pub(crate) mediator: Arc<Mediator>,
    listener: std::sync::Mutex<Option<UnixListener>>,
    socket: PathBuf,
    admin_token_path: PathBuf,
    pub(crate) admin_token_sha256: String,
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

        // Bound under a private name, made 0600, then renamed into place: whoever sees the
        // socket (clients waiting for it, a check of its mode) sees it finished. The 0700
        // directory already keeps others out; 0600 on the socket says so twice.
        let binding = run_dir.join(format!(".{}", std::process::id()));
        let _ = std::fs::remove_file(&binding);
        let listener = UnixListener::bind(&binding).map_err(io_err(&binding))?;
        std::fs::set_permissions(&binding, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(&binding))?;
        std::fs::rename(&binding, &socket).map_err(io_err(&socket))?;

        let store: Arc<dyn StateStore> = if let Some(url) = &config.state_url {
            Arc::new(PgStore::connect(url, &config.member).await?)
        } else {
            let db = config.state_db.clone();
            let store = tokio::task::spawn_blocking(move || Store::open(&db))
                .await
                .map_err(|e| DaemonError::Session(e.to_string()))??;
            Arc::new(SqliteStore::new(Arc::new(store), &config.member))
        };
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
        let mediator = Arc::new(Mediator::new(parts, config, store, owner));
        mediator
            .parts
            .channel
            .attach_control(Arc::new(stop::Control(Arc::downgrade(&mediator))));
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
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Opens a session: sandbox (proxy-exec) with a passing preflight, a row with a lease, and
    /// `session.started` journaled. The returned token is the session's only credential.
    /// A gate-mode session opened here is recorded as not confined (see
    /// [`Daemon::open_identified_session`]).
    pub async fn open_session(&self, params: SessionParams) -> Result<SessionInfo, DaemonError> {
        open_session(&self.mediator, params, None, false).await
    }

    /// Opens a session for an agent binary agp identified (version, sha256, path) and
    /// launches inside its own sandbox: the identity goes into `session.started` as
    /// `intendant_identity`, and the agent is recorded as confined.
    pub async fn open_identified_session(
        &self,
        params: SessionParams,
        identity: Value,
    ) -> Result<SessionInfo, DaemonError> {
        open_session(&self.mediator, params, Some(identity), true).await
    }

    /// Ends a session (`session.ended` journaled); a no-op for an unknown or ended session.
    pub async fn end_session(&self, session: &str, status: &str) -> Result<(), DaemonError> {
        if let Some(state) = self.mediator.sessions.remove_session(session) {
            end_session(&self.mediator, &state, status).await?;
        }
        Ok(())
    }

    /// Stops a session (the kill switch): see [`StopRequest`]. `AlreadyEnded` changes nothing.
    pub async fn stop_session(&self, request: StopRequest) -> Result<StopOutcome, DaemonError> {
        self.mediator.stop_session(request, None).await
    }

    /// Asks the session's approval channel whether an egress request may go out (see
    /// [`crate::EgressAsk`]); waits at most the approval timeout.
    pub async fn approve_egress(
        &self,
        session: &str,
        ask: crate::EgressAsk,
    ) -> crate::EgressAnswer {
        self.mediator.approve_egress(session, ask).await
    }

    /// Checks every later connection to this live session against `guard` (see
    /// [`crate::peer`]): the sandbox `agp run` built tells the harness's hook from the agent's
    /// tools. `false` for an unknown session or one already guarded.
    pub fn guard_peers(&self, session: &str, guard: crate::peer::PeerGuard) -> bool {
        self.mediator
            .sessions
            .by_id(session)
            .is_some_and(|s| s.peer_check.set(crate::peer::PeerCheck::new(guard)).is_ok())
    }

    /// Completes once someone asked to stop this live session (never for another one): the
    /// launcher of an agent it runs itself ends the agent's process tree on it.
    pub fn stop_requested(&self, session: &str) -> impl std::future::Future<Output = ()> + Send {
        let state = self.mediator.sessions.by_id(session);
        async move {
            match state {
                Some(s) => s.stop_requested().await,
                None => std::future::pending().await,
            }
        }
    }

    /// Serves until `shutdown` completes; then ends live sessions and removes the socket.
    pub async fn serve(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        // A stop being answered is answered first (bounded: a stuck client cannot hold it).
        let _ = tokio::time::timeout(Duration::from_secs(5), m.control.write()).await;
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

    pub(crate) async fn session_for_token(
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
        let row = m.store.active_session_by_token(&hash).await.map_err(|e| {
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
        let fencing = m
            .store
            .claim_lease(&row.id, &m.owner, now_ms())
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
        crate::git_scrub::start(m, &state).await;
        let resumed = SessionStarted {
            session: Some(row.id.clone()),
            resumed: Some(true),
            lease_owner: Some(m.owner.clone()),
            fencing_token: Some(fencing),
            mode: Some(row.mode.clone()),
            // This daemon's mode applies from here on, whatever the previous one's was.
            policy_mode: Some(m.config.policy_mode),
            ..SessionStarted::new(row.intendant.clone(), row.repo.clone())
        };
        m.record(Some(&row.id), &resumed)
            .await
            .map_err(|e| (ErrorCode::Internal, format!("journal: {e}")))?;
        m.sessions.insert(hash, state.clone());
        Ok(state)
    }
}
