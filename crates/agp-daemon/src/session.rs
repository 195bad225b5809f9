//! Live sessions held by this daemon.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use agp_contracts::{EvalContext, Tool};
use agp_gateway::SessionMode;

use crate::exec::SessionSandbox;

/// What a caller asks for when opening a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub intendant: String,
    pub repo: PathBuf,
    pub task: String,
    pub mode: SessionMode,
}

/// A session as handed back to whoever opened it: the token is the only credential.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub token: String,
    pub mode: SessionMode,
    pub repo: PathBuf,
}

/// A gate-mode call that was allowed and whose result the agent may report once.
#[derive(Debug, Clone)]
pub(crate) struct AwaitingResult {
    pub tool: Tool,
    pub input_sha256: String,
}

pub(crate) struct SessionState {
    pub id: String,
    pub mode: SessionMode,
    pub repo: PathBuf,
    pub fencing_token: i64,
    pub sandbox: Option<Arc<dyn SessionSandbox>>,
    pub ctx: EvalContext,
    ended: AtomicBool,
    stopping: AtomicBool,
    /// Shared while a call or an approval request enters the journal, exclusive while the
    /// session ends: nothing of a session is journaled after its `session.ended`.
    pub gate: tokio::sync::RwLock<()>,
    /// Raised once the session's pending approvals are settled at its end.
    ended_signal: tokio::sync::watch::Sender<bool>,
    /// Raised when someone stops the session (the kill switch): whoever runs its agent ends it.
    stop_signal: tokio::sync::watch::Sender<bool>,
    awaiting: Mutex<HashMap<String, AwaitingResult>>,
    /// Dangerous entries the repository held when the session opened.
    baseline: Mutex<Option<agp_integrity::Baseline>>,
    /// Calls whose result is journaled. A harness may report one call twice (Claude Code fires
    /// PostToolUseFailure and PostToolUse for a failed call): the first report wins.
    reported: Mutex<HashSet<String>>,
    /// Gate mode: the git metadata as the session found it, scrubbed against (see git_scrub).
    pub git_watch: crate::git_scrub::Watch,
    /// The last call judged in this session (id, tool, redacted input): shown next to an egress
    /// approval so the approver sees what the agent was doing when it reached out.
    recent_call: Mutex<Option<serde_json::Value>>,
    /// `agp run`'s sandbox: whose connections may speak for the session (see `peer`).
    pub peer_check: std::sync::OnceLock<crate::peer::PeerCheck>,
}

impl SessionState {
    pub fn new(
        id: String,
        mode: SessionMode,
        repo: PathBuf,
        fencing_token: i64,
        sandbox: Option<Arc<dyn SessionSandbox>>,
        ctx: EvalContext,
    ) -> Self {
        Self {
            id,
            mode,
            repo,
            fencing_token,
            sandbox,
            ctx,
            ended: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
            ended_signal: tokio::sync::watch::channel(false).0,
            stop_signal: tokio::sync::watch::channel(false).0,
            awaiting: Mutex::new(HashMap::new()),
            baseline: Mutex::new(None),
            reported: Mutex::new(HashSet::new()),
            git_watch: Default::default(),
            recent_call: Mutex::new(None),
            peer_check: std::sync::OnceLock::new(),
        }
    }

    pub fn set_recent_call(&self, call: serde_json::Value) {
        *self
            .recent_call
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(call);
    }

    pub fn recent_call(&self) -> Option<serde_json::Value> {
        self.recent_call
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_baseline(&self, baseline: Option<agp_integrity::Baseline>) {
        *self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = baseline;
    }

    pub fn take_baseline(&self) -> Option<agp_integrity::Baseline> {
        self.baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Marks the session ended; `true` for the caller that ended it.
    pub fn mark_ended(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }

    /// Tells approvals still being asked that the session is gone.
    pub fn signal_ended(&self) {
        self.ended_signal.send_replace(true);
    }

    /// Completes once [`SessionState::signal_ended`] was called.
    pub async fn ended(&self) {
        let mut rx = self.ended_signal.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Claims the stop of this session: `true` for the one caller that stops it (two people
    /// pressing Stop at once journal one stop).
    pub fn claim_stop(&self) -> bool {
        !self.stopping.swap(true, Ordering::AcqRel)
    }

    /// Asks whoever runs the session's agent to end it.
    pub fn request_stop(&self) {
        self.stop_signal.send_replace(true);
    }

    /// Whether someone (the launcher of the session's agent) waits for a stop.
    pub fn stop_listened(&self) -> bool {
        self.stop_signal.receiver_count() > 0
    }

    /// Completes once [`SessionState::request_stop`] was called.
    pub async fn stop_requested(&self) {
        let mut rx = self.stop_signal.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub fn expect_result(&self, call_id: &str, awaiting: AwaitingResult) {
        self.awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(call_id.to_owned(), awaiting);
    }

    /// Takes the awaited result slot: a result is accepted once, and only for an allowed call.
    pub fn take_expected(&self, call_id: &str) -> Option<AwaitingResult> {
        let taken = self
            .awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(call_id);
        if taken.is_some() {
            self.reported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(call_id.to_owned());
        }
        taken
    }

    /// Whether the result of this call was already taken (and journaled).
    pub fn was_reported(&self, call_id: &str) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(call_id)
    }
}

/// Sessions by the SHA-256 of their token (the token itself is never stored).
#[derive(Default)]
pub(crate) struct Registry {
    by_token: RwLock<HashMap<String, Arc<SessionState>>>,
}

impl Registry {
    pub fn get(&self, token_sha256: &str) -> Option<Arc<SessionState>> {
        self.by_token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(token_sha256)
            .cloned()
    }

    pub fn insert(&self, token_sha256: String, state: Arc<SessionState>) {
        self.by_token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token_sha256, state);
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<SessionState>> {
        self.by_token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|s| s.id == id)
            .cloned()
    }

    pub fn remove_session(&self, id: &str) -> Option<Arc<SessionState>> {
        let mut map = self
            .by_token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = map
            .iter()
            .find(|(_, s)| s.id == id)
            .map(|(k, _)| k.clone())?;
        map.remove(&key)
    }

    pub fn all(&self) -> Vec<Arc<SessionState>> {
        self.by_token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
