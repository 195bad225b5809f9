//! The Slack [`ApprovalChannel`]: posts approvals, checks every click against the stored
//! record, counts votes, and reports refused clicks for the journal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::events::Projection;
use agp_contracts::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, BoxFuture, ChannelError, Journal,
    SessionControl,
};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{ApiError, SlackApi};
use crate::config::SlackConfig;
use crate::pending::{PendingRecord, PendingStore, StoreError};
use crate::socket::{self, Backoff, ConnStatus, EnvelopeHandler};

mod click;
mod db;
mod decide;
mod project;
mod request;

use db::Db;
pub use decide::{RejectReason, Rejection};

const NAME: &str = "slack";
/// Timers fire this long after an expiry, so a wall-clock check at wake-up sees it passed.
const CLOCK_MARGIN_MS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("Slack channel task failed: {0}")]
    Task(String),
    #[error("must be started inside a tokio runtime")]
    NoRuntime,
}

impl From<SlackError> for ChannelError {
    fn from(e: SlackError) -> Self {
        ChannelError::Failed {
            channel: NAME.into(),
            message: e.to_string(),
        }
    }
}

pub struct SlackChannelBuilder {
    cfg: SlackConfig,
    store: Arc<dyn PendingStore>,
    journal: Option<Arc<dyn Journal>>,
    backoff: Backoff,
    post_retry: Duration,
}

impl SlackChannelBuilder {
    /// Journal refused clicks (`approval.rejected`) here. Without it they are only logged.
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Socket Mode reconnect backoff (default 1 s doubling to the config's `max_backoff`).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Pause between attempts to post an approval while Slack is unreachable.
    pub fn post_retry(mut self, every: Duration) -> Self {
        self.post_retry = every;
        self
    }

    /// Checks the bot token with auth.test and starts the Socket Mode connection.
    pub async fn start(self) -> Result<SlackChannel, SlackError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| SlackError::NoRuntime)?;
        let api = SlackApi::new(&self.cfg);
        let auth = api.auth_test().await?;
        tracing::info!(bot_user = %auth.user_id, team = %auth.team, "Slack bot token accepted");
        let (status_tx, status_rx) = watch::channel(ConnStatus::default());
        let inner = Arc::new(Inner {
            cfg: self.cfg,
            api: api.clone(),
            db: Db(self.store),
            journal: self.journal,
            waiters: Mutex::new(HashMap::new()),
            decide: tokio::sync::Mutex::new(()),
            roots: tokio::sync::Mutex::new(()),
            posted: tokio::sync::Notify::new(),
            post_retry: self.post_retry,
            bot_user: auth.user_id,
            control: std::sync::OnceLock::new(),
        });
        // Approvals a previous process posted: re-attached if the daemon asks again, and in
        // any case timed out (message updated) at their expiry.
        for r in inner.db.0.undecided()? {
            inner.clone().expire_later(r.nonce, r.request.expires_at_ms);
        }
        let socket = handle.spawn(socket::run(api, inner.clone(), status_tx, self.backoff));
        Ok(SlackChannel {
            inner,
            socket,
            status: status_rx,
        })
    }
}

/// The Slack approval channel. Dropping it stops the Socket Mode connection.
pub struct SlackChannel {
    inner: Arc<Inner>,
    socket: JoinHandle<()>,
    status: watch::Receiver<ConnStatus>,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("channel", &self.inner.cfg.channel)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for SlackChannel {
    fn drop(&mut self) {
        self.socket.abort();
    }
}

impl SlackChannel {
    pub fn builder(cfg: SlackConfig, store: Arc<dyn PendingStore>) -> SlackChannelBuilder {
        SlackChannelBuilder {
            backoff: Backoff {
                min: Duration::from_secs(1),
                max: cfg.max_backoff,
            },
            cfg,
            store,
            journal: None,
            post_retry: Duration::from_secs(5),
        }
    }

    pub fn status(&self) -> ConnStatus {
        *self.status.borrow()
    }

    /// Waits until a Socket Mode connection with generation >= `generation` said hello.
    pub async fn wait_connected(&self, generation: u64, within: Duration) -> bool {
        let mut rx = self.status.clone();
        tokio::time::timeout(
            within,
            rx.wait_for(|s| s.connected && s.generation >= generation),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Approvals posted before and still undecided (what a restarted daemon should re-request).
    pub fn undecided(&self) -> Result<Vec<PendingRecord>, SlackError> {
        Ok(self.inner.db.0.undecided()?)
    }
}

struct Inner {
    cfg: SlackConfig,
    api: SlackApi,
    db: Db,
    journal: Option<Arc<dyn Journal>>,
    /// Requests being awaited in this process, by nonce.
    waiters: Mutex<HashMap<String, oneshot::Sender<ApprovalOutcome>>>,
    /// Serialises every read-modify-write of a record (clicks, timeouts, re-attach).
    decide: tokio::sync::Mutex<()>,
    /// Serialises creation of session root messages.
    roots: tokio::sync::Mutex<()>,
    /// Signalled when an approval's message ts is stored.
    posted: tokio::sync::Notify,
    post_retry: Duration,
    bot_user: String,
    /// The daemon's session controls (the Stop button), once it runs.
    control: std::sync::OnceLock<Arc<dyn SessionControl>>,
}

impl EnvelopeHandler for Inner {
    fn interactive(self: Arc<Self>, payload: Value) {
        tokio::spawn(async move { self.on_block_actions(payload).await });
    }
}

impl ApprovalChannel for SlackChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        Box::pin(async move { Ok(self.inner.request(request).await?) })
    }

    fn project<'a>(
        &'a self,
        session: Option<&'a str>,
        event: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { Ok(self.inner.project(session, event).await?) })
    }

    fn cancel<'a>(&'a self, request: &'a ApprovalRequest, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.inner.cancel(request, reason).await {
                tracing::warn!(error = %e, "cannot withdraw a Slack approval");
            }
        })
    }

    fn attach_control(&self, control: Arc<dyn SessionControl>) {
        let _ = self.inner.control.set(control);
    }
}
