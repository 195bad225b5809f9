//! The in-process daemon, written once for every launch path: `agp daemon` serves until a
//! signal; `agp run` starts one, serves it in the background, opens its one session, ends the
//! session and stops it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use agp_daemon::{Daemon, DaemonConfig, Parts, SessionInfo, SessionParams};
use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A daemon serving in the background of this process, with one session open.
pub struct LocalDaemon {
    daemon: Arc<Daemon>,
    stop: oneshot::Sender<()>,
    served: JoinHandle<()>,
}

impl LocalDaemon {
    /// Starts the daemon, serves it in the background and opens the session (identified when
    /// agp identified the agent's binary). A refused session stops the daemon again.
    pub async fn start_session(
        config: DaemonConfig,
        parts: Parts,
        params: SessionParams,
        identity: Option<Value>,
    ) -> Result<(Self, SessionInfo)> {
        let daemon = Daemon::start(config, parts)
            .await
            .context("cannot start the agp daemon")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(daemon.clone().serve(async move {
            let _ = stopped.await;
        }));
        let local = Self {
            daemon,
            stop,
            served,
        };
        let session = match identity {
            Some(identity) => local.daemon.open_identified_session(params, identity).await,
            None => local.daemon.open_session(params).await,
        };
        match session {
            Ok(session) => Ok((local, session)),
            Err(e) => {
                local.stop().await;
                Err(anyhow::Error::new(e).context("cannot start the session"))
            }
        }
    }

    /// The daemon itself (the egress proxy's approval judge asks through it).
    pub fn daemon(&self) -> Arc<Daemon> {
        self.daemon.clone()
    }

    /// Checks the session's later connections against `guard`: the harness's hook is told from
    /// the agent's tools by the process tree (`agp_daemon::peer`).
    pub fn guard_peers(&self, session: &str, guard: agp_daemon::peer::PeerGuard) -> bool {
        self.daemon.guard_peers(session, guard)
    }

    /// The gateway socket agents connect to.
    pub fn socket(&self) -> &Path {
        self.daemon.socket_path()
    }

    /// Completes once someone stopped the session (`agp sessions stop`, a Stop button): the
    /// caller ends the agent's process tree.
    pub fn stop_requested(&self, session: &str) -> impl Future<Output = ()> + Send {
        self.daemon.stop_requested(session)
    }

    /// Ends the session; a failure is reported on stderr (the run's own outcome still counts).
    pub async fn end_session(&self, session: &str, status: &str) {
        if let Err(e) = self.daemon.end_session(session, status).await {
            eprintln!("agp: error: cannot end session {session}: {e}");
        }
    }

    /// Stops serving and waits until the daemon has ended its live sessions.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.served.await;
    }
}

/// Starts the daemon and serves in the foreground until `shutdown`; `listening` is called with
/// the socket once it accepts connections.
pub async fn serve_until(
    config: DaemonConfig,
    parts: Parts,
    shutdown: impl Future<Output = ()>,
    listening: impl FnOnce(&Path),
) -> Result<()> {
    let daemon = Daemon::start(config, parts)
        .await
        .context("cannot start the daemon")?;
    listening(daemon.socket_path());
    daemon.serve(shutdown).await;
    Ok(())
}
