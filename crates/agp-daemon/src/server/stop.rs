//! The kill switch: stopping a session on request (`agp sessions stop`, a channel's Stop
//! button). Its agent or running command is ended, its pending approvals cancelled (each
//! channel withdraws the prompt), the session ended as `stopped`, and all of it journaled with
//! who asked and why.

use agp_contracts::events::SessionStopped;
use agp_contracts::{BoxFuture, SessionControl, StopOutcome, StopRequest};

use super::*;

/// Status a stopped session ends with.
pub const STOPPED: &str = "stopped";

/// How long the launcher of a stopped session's agent has to end it before the daemon does.
const RUNNER_GRACE: Duration = Duration::from_secs(20);

impl Mediator {
    /// Stops one session. A session that already ended is left as it is (`AlreadyEnded`).
    pub(crate) async fn stop_session(
        self: &Arc<Self>,
        request: StopRequest,
        peer: Option<Value>,
    ) -> Result<StopOutcome, DaemonError> {
        let id = request.session.clone();
        let Some(state) = self.sessions.by_id(&id) else {
            return self.stop_unattended(request, peer).await;
        };
        if state.is_ended() || !state.claim_stop() {
            return Ok(StopOutcome::AlreadyEnded);
        }
        let pending = self.pending_of(&id).await?;
        let mut ended = Vec::new();
        if let Some(sb) = state.sandbox.clone() {
            // A command running now is killed; later ones are refused (no approval can be
            // pending for a call whose command runs, so this races with none).
            let interrupted = tokio::task::spawn_blocking(move || sb.interrupt())
                .await
                .unwrap_or(Ok(false));
            match interrupted {
                Ok(true) => ended.push("sandboxed command".to_owned()),
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot interrupt the session's sandbox: {e}"),
            }
        }
        if state.stop_listened() {
            ended.push("agent".to_owned());
        }
        let stopped = SessionStopped {
            session: id.clone(),
            by: request.by.clone(),
            reason: request.reason.clone(),
            ended,
            cancelled_approvals: pending,
            peer,
        };
        self.record(Some(&id), &stopped).await?;
        // The approvals are cancelled BEFORE the agent is ended: a dying agent's hook would
        // otherwise settle its approval as abandoned first.
        cancel_pending(self, &id, STOPPED).await?;
        // Whoever runs the agent (agp run's launcher) kills its process tree now, then ends the
        // session itself, so its end-of-session checks run once the agent is gone; a launcher
        // that does not within RUNNER_GRACE is not waited for.
        let listened = state.stop_listened();
        state.request_stop();
        if listened {
            let _ = tokio::time::timeout(RUNNER_GRACE, state.ended()).await;
        }
        let Some(state) = self.sessions.remove_session(&id) else {
            // Ended meanwhile by its own agent: it is ended either way.
            return Ok(StopOutcome::Stopped {
                cancelled_approvals: stopped.cancelled_approvals,
            });
        };
        end_session(self, &state, STOPPED).await?;
        Ok(StopOutcome::Stopped {
            cancelled_approvals: stopped.cancelled_approvals,
        })
    }

    /// Call ids of the session's pending approvals.
    async fn pending_of(&self, session: &str) -> Result<Vec<String>, DaemonError> {
        let pending = self.store.pending().await?;
        Ok(pending
            .into_iter()
            .filter(|r| r.session == session)
            .map(|r| r.call_id)
            .collect())
    }

    /// A session this daemon does not hold: unknown, ended, or still leased by a daemon that
    /// is gone (a hook session between two calls of a restarted daemon). The last is taken
    /// over and ended, so no agent can resume it.
    async fn stop_unattended(
        self: &Arc<Self>,
        request: StopRequest,
        peer: Option<Value>,
    ) -> Result<StopOutcome, DaemonError> {
        let id = request.session.clone();
        let row = self.store.session(&id).await?;
        let Some(row) = row else {
            return Ok(StopOutcome::Unknown);
        };
        if row.status != "active" {
            return Ok(StopOutcome::AlreadyEnded);
        }
        let Some(fencing) = self.store.claim_lease(&id, &self.owner, now_ms()).await? else {
            return Ok(StopOutcome::AlreadyEnded);
        };
        let pending = self.pending_of(&id).await?;
        let stopped = SessionStopped {
            session: id.clone(),
            by: request.by,
            reason: request.reason,
            ended: Vec::new(),
            cancelled_approvals: pending.clone(),
            peer,
        };
        self.record(Some(&id), &stopped).await?;
        cancel_pending(self, &id, STOPPED).await?;
        let held = self
            .store
            .end_session(&id, STOPPED, fencing, now_ms())
            .await?;
        let _ = self.store.forget_remembered(&id).await;
        let end = SessionEnded {
            session: id.clone(),
            status: STOPPED.to_owned(),
            lease_held: held,
        };
        self.record(Some(&id), &end).await?;
        self.project(Some(&id), end.into()).await;
        Ok(StopOutcome::Stopped {
            cancelled_approvals: pending,
        })
    }
}

/// The daemon as a channel's session controls see it. Weak: the channel is part of the
/// daemon, and must not keep it alive.
pub(crate) struct Control(pub std::sync::Weak<Mediator>);

impl SessionControl for Control {
    fn stop_session<'a>(
        &'a self,
        request: StopRequest,
    ) -> BoxFuture<'a, Result<StopOutcome, String>> {
        Box::pin(async move {
            let Some(m) = self.0.upgrade() else {
                return Err("the agp daemon is stopping".to_owned());
            };
            m.stop_session(request, None)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
