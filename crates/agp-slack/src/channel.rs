//! The Slack [`ApprovalChannel`]: posts approvals, checks every click against the stored
//! record, counts votes, and reports refused clicks for the journal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::events::{ApprovalRejected, ClickUser, Event, APPROVAL_REJECTED};
use agp_contracts::{
    approval::via, ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approver, BoxFuture,
    ChannelError, Journal,
};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{ApiError, SlackApi};
use crate::blocks::{self, ButtonValue, ACTION_ALLOW, ACTION_DENY, ACTION_DETAILS};
use crate::config::SlackConfig;
use crate::now_ms;
use crate::pending::{PendingRecord, PendingStore, StoreError};
use crate::socket::{self, Backoff, ConnStatus, EnvelopeHandler};
use crate::votes::{self, Tally, Vote};

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

/// Why a click was refused. The string forms are what the journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The button's nonce is not one we issued (or its value is not ours).
    UnknownNonce,
    /// The approval was already decided: the nonce is burned.
    Replayed,
    /// Past the request's expiry.
    Expired,
    /// The nonce is known but the click's input hash, channel or message differ.
    Mismatch,
    /// The clicker is not a configured approver for this request.
    NotApprover,
    /// The clicker is a bot (or Slackbot).
    Bot,
    /// users.info (or the user group lookup) failed, so the clicker could not be checked.
    LookupFailed,
    /// The clicker's approval was already counted.
    DuplicateVote,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownNonce => "unknown_nonce",
            RejectReason::Replayed => "replayed",
            RejectReason::Expired => "expired",
            RejectReason::Mismatch => "mismatch",
            RejectReason::NotApprover => "not_an_approver",
            RejectReason::Bot => "bot",
            RejectReason::LookupFailed => "approver_lookup_failed",
            RejectReason::DuplicateVote => "duplicate_vote",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            RejectReason::UnknownNonce => "this button is not a current agp approval",
            RejectReason::Replayed => "this approval was already decided",
            RejectReason::Expired => "this approval has expired",
            RejectReason::Mismatch => "this button does not belong to this approval",
            RejectReason::NotApprover => "you are not an approver for this call",
            RejectReason::Bot => "bots cannot decide approvals",
            RejectReason::LookupFailed => "agp could not check who you are; try again",
            RejectReason::DuplicateVote => "your approval is already counted",
        }
    }
}

/// A refused click, as journaled under `approval.rejected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub user_id: String,
    pub user_name: Option<String>,
    pub action: String,
    pub session: Option<String>,
    pub call_id: Option<String>,
    pub input_sha256: Option<String>,
}

impl Rejection {
    pub fn journal_body(&self) -> Value {
        ApprovalRejected {
            channel: NAME.to_owned(),
            reason: self.reason.as_str().to_owned(),
            user: ClickUser {
                id: self.user_id.clone(),
                name: self.user_name.clone(),
            },
            action: self.action.clone(),
            call_id: self.call_id.clone(),
            input_sha256: self.input_sha256.clone(),
        }
        .to_body()
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
        .map(|r| r.is_ok())
        .unwrap_or(false)
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
}

/// The pending store, used off the async threads: SQLite commits wait for the disk.
#[derive(Clone)]
struct Db(Arc<dyn PendingStore>);

impl Db {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn PendingStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SlackError> {
        let store = self.0.clone();
        // Not cancelled with the caller: a save that started completes.
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| SlackError::Task(e.to_string()))?
            .map_err(SlackError::from)
    }

    async fn load(&self, nonce: &str) -> Result<Option<PendingRecord>, SlackError> {
        let nonce = nonce.to_owned();
        self.run(move |s| s.load(&nonce)).await
    }

    async fn save(&self, record: &PendingRecord) -> Result<(), SlackError> {
        let record = record.clone();
        self.run(move |s| s.save(&record)).await
    }

    async fn load_for_call(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<PendingRecord>, SlackError> {
        let (s1, c, h) = (
            session.to_owned(),
            call_id.to_owned(),
            input_sha256.to_owned(),
        );
        self.run(move |s| s.load_for_call(&s1, &c, &h)).await
    }

    async fn session_root(&self, session: &str) -> Result<Option<String>, SlackError> {
        let session = session.to_owned();
        self.run(move |s| s.session_root(&session)).await
    }

    async fn set_session_root(
        &self,
        session: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), SlackError> {
        let (s1, c, t) = (session.to_owned(), channel.to_owned(), ts.to_owned());
        self.run(move |s| s.set_session_root(&s1, &c, &t)).await
    }
}

/// Removes the waiter when `request_approval`'s future finishes or is dropped. A caller that
/// gives up early (drops the future) leaves an undecided record behind; it is still timed out
/// at its expiry, so the message loses its buttons and says so.
struct WaiterGuard {
    inner: Arc<Inner>,
    nonce: String,
    expires_at_ms: u64,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if let Ok(mut w) = self.inner.waiters.lock() {
            w.remove(&self.nonce);
        }
        self.inner
            .clone()
            .expire_later(self.nonce.clone(), self.expires_at_ms);
    }
}

fn new_nonce() -> Result<String, SlackError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| {
        SlackError::Store(StoreError::Corrupt(format!(
            "no randomness for a nonce: {e}"
        )))
    })?;
    Ok(hex::encode(b))
}

impl Inner {
    /// After `expires_at_ms`, times the record out unless it was decided meanwhile.
    fn expire_later(self: Arc<Self>, nonce: String, expires_at_ms: u64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let wait = expires_at_ms.saturating_sub(now_ms()) + CLOCK_MARGIN_MS;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Err(e) = self.time_out(&nonce).await {
                tracing::error!(error = %e, "cannot time out a Slack approval");
            }
        });
    }

    async fn request(
        self: &Arc<Self>,
        request: &ApprovalRequest,
    ) -> Result<ApprovalOutcome, SlackError> {
        if let Some(reason) = self.unreachable_quorum(request) {
            return Ok(ApprovalOutcome::Unavailable { reason });
        }
        // Find the record of this exact call (a restarted daemon re-attaches) or create one,
        // and register as its waiter, atomically with respect to clicks.
        let (record, rx, _guard) = {
            let _lock = self.decide.lock().await;
            let record = match self
                .db
                .load_for_call(&request.session, &request.call_id, &request.input_sha256)
                .await?
            {
                Some(r) => {
                    if let Some(outcome) = r.outcome {
                        return Ok(outcome);
                    }
                    tracing::info!(call = %request.call_id, "re-attaching to a Slack approval posted before");
                    r
                }
                None => {
                    let r = PendingRecord {
                        nonce: new_nonce()?,
                        request: request.clone(),
                        channel: self.cfg.channel.clone(),
                        thread_ts: None,
                        message_ts: None,
                        votes: Vec::new(),
                        outcome: None,
                    };
                    self.db.save(&r).await?;
                    r
                }
            };
            let (tx, rx) = oneshot::channel();
            self.waiters
                .lock()
                .expect("waiters lock")
                .insert(record.nonce.clone(), tx);
            let guard = WaiterGuard {
                inner: self.clone(),
                nonce: record.nonce.clone(),
                expires_at_ms: record.request.expires_at_ms,
            };
            (record, rx, guard)
        };
        let deadline = record.request.expires_at_ms;
        if now_ms() >= deadline {
            return self.time_out(&record.nonce).await;
        }
        if record.message_ts.is_none() {
            // Posting runs as its own task: if the caller gives up mid-post, the message ts
            // is still stored, so the message can be closed at expiry instead of being left
            // with live buttons.
            let me = self.clone();
            let rec = record.clone();
            let posted = tokio::spawn(async move { me.post(&rec, deadline).await })
                .await
                .unwrap_or_else(|e| Err(SlackError::Task(e.to_string())));
            if let Err(e) = posted {
                return self.finish_unposted(&record.nonce, e).await;
            }
        }
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms()) + CLOCK_MARGIN_MS);
        tokio::select! {
            got = rx => match got {
                Ok(outcome) => Ok(outcome),
                // The sender is only dropped without a value when the process is shutting down.
                Err(_) => Ok(ApprovalOutcome::Unavailable { reason: "Slack channel stopped".into() }),
            },
            _ = tokio::time::sleep(wait) => self.time_out(&record.nonce).await,
        }
    }

    /// A quorum that the configured approvers can never reach is refused up front.
    fn unreachable_quorum(&self, request: &ApprovalRequest) -> Option<String> {
        if self.cfg.approver_group.is_some() {
            return None;
        }
        let eligible = self
            .cfg
            .approvers
            .iter()
            .filter(|id| request.approvers.is_empty() || request_names(request, id))
            .count();
        let need = request.quorum.max(1) as usize;
        (eligible < need).then(|| {
            format!("quorum {need} cannot be reached: only {eligible} configured Slack approver(s) may decide this call")
        })
    }

    /// Posts the approval in its session's thread, retrying while Slack is unreachable until
    /// the request expires.
    async fn post(&self, record: &PendingRecord, deadline: u64) -> Result<(), SlackError> {
        let req = &record.request;
        let text = format!(
            "agp approval needed: {} (input sha256 {})",
            blocks::escape(&req.tool),
            req.short_hash()
        );
        let blocks =
            blocks::approval_blocks(req, &record.nonce, self.cfg.preview_chars, &record.votes);
        loop {
            let attempt = async {
                let root = self.ensure_root(&req.session, None).await?;
                let ts = self
                    .api
                    .post_message(&record.channel, &text, Some(&blocks), Some(&root))
                    .await?;
                Ok::<_, SlackError>((root, ts))
            }
            .await;
            match attempt {
                Ok((root, ts)) => {
                    let _lock = self.decide.lock().await;
                    let mut r = self
                        .db
                        .load(&record.nonce)
                        .await?
                        .unwrap_or_else(|| record.clone());
                    r.thread_ts = Some(root);
                    r.message_ts = Some(ts);
                    self.db.save(&r).await?;
                    self.posted.notify_waiters();
                    return Ok(());
                }
                Err(e) => {
                    let left = deadline.saturating_sub(now_ms());
                    if left == 0 {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "cannot post the approval to Slack; retrying");
                    tokio::time::sleep(self.post_retry.min(Duration::from_millis(left))).await;
                }
            }
        }
    }

    /// The approval could never be posted: nobody was asked, so the call is denied.
    async fn finish_unposted(
        &self,
        nonce: &str,
        err: SlackError,
    ) -> Result<ApprovalOutcome, SlackError> {
        let _lock = self.decide.lock().await;
        let outcome = ApprovalOutcome::Unavailable {
            reason: format!("could not post the approval to Slack before it expired: {err}"),
        };
        if let Some(mut r) = self.db.load(nonce).await? {
            if let Some(o) = r.outcome {
                return Ok(o);
            }
            r.outcome = Some(outcome.clone());
            self.db.save(&r).await?;
        }
        Ok(outcome)
    }

    async fn time_out(&self, nonce: &str) -> Result<ApprovalOutcome, SlackError> {
        let record = {
            let _lock = self.decide.lock().await;
            let Some(mut r) = self.db.load(nonce).await? else {
                return Ok(ApprovalOutcome::Timeout);
            };
            if let Some(o) = r.outcome {
                return Ok(o);
            }
            if now_ms() < r.request.expires_at_ms {
                // Woken early (clock step): a later timer or the waiter will finish it.
                return Ok(ApprovalOutcome::Timeout);
            }
            r.outcome = Some(ApprovalOutcome::Timeout);
            self.db.save(&r).await?;
            r
        };
        self.show_outcome(&record, &ApprovalOutcome::Timeout).await;
        Ok(ApprovalOutcome::Timeout)
    }

    /// Replaces the buttons with the outcome. Best effort: the decision is already stored.
    async fn show_outcome(&self, record: &PendingRecord, outcome: &ApprovalOutcome) {
        let Some(ts) = &record.message_ts else { return };
        let at = now_ms();
        let blocks = blocks::decided_blocks(&record.request, outcome, at, self.cfg.preview_chars);
        let text = blocks::outcome_text(outcome, at);
        if let Err(e) = self.api.update(&record.channel, ts, &text, &blocks).await {
            tracing::warn!(error = %e, "cannot update the Slack approval message");
        }
    }

    /// The session's root message ts, posting one (from `body`, or a bare one) if needed.
    async fn ensure_root(&self, session: &str, body: Option<&Value>) -> Result<String, SlackError> {
        let _lock = self.roots.lock().await;
        let existing = self.db.session_root(session).await?;
        let (text, blocks) = blocks::session_root_blocks(session, body.unwrap_or(&Value::Null));
        match existing {
            Some(ts) => {
                if body.is_some() {
                    self.api
                        .update(&self.cfg.channel, &ts, &text, &blocks)
                        .await?;
                }
                Ok(ts)
            }
            None => {
                let ts = self
                    .api
                    .post_message(&self.cfg.channel, &text, Some(&blocks), None)
                    .await?;
                self.db
                    .set_session_root(session, &self.cfg.channel, &ts)
                    .await?;
                Ok(ts)
            }
        }
    }

    async fn project(
        &self,
        kind: &str,
        session: Option<&str>,
        body: &Value,
    ) -> Result<(), SlackError> {
        use agp_contracts::events::SESSION_STARTED;
        match session {
            Some(s) if kind == SESSION_STARTED => {
                self.ensure_root(s, Some(body)).await?;
            }
            Some(s) => {
                let root = self.ensure_root(s, None).await?;
                let (text, blocks) = blocks::projection_blocks(kind, body);
                self.api
                    .post_message(&self.cfg.channel, &text, Some(&blocks), Some(&root))
                    .await?;
            }
            None => {
                let (text, blocks) = blocks::projection_blocks(kind, body);
                self.api
                    .post_message(&self.cfg.channel, &text, Some(&blocks), None)
                    .await?;
            }
        }
        Ok(())
    }

    // ---- clicks -------------------------------------------------------------------------

    async fn on_block_actions(&self, payload: Value) {
        if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
            tracing::debug!("ignoring a non-block_actions interaction");
            return;
        }
        let Some(click) = Click::parse(&payload) else {
            tracing::warn!("ignoring a malformed block_actions payload");
            return;
        };
        if ![ACTION_ALLOW, ACTION_DENY, ACTION_DETAILS].contains(&click.action.as_str()) {
            tracing::debug!(action = %click.action, "ignoring an action that is not agp's");
            return;
        }
        if let Err(e) = self.handle_click(&click).await {
            // A store failure: the click is not counted, and the clicker is told to retry.
            tracing::error!(error = %e, "cannot process a Slack click");
            self.tell(&click, "agp could not record your click; try again")
                .await;
        }
    }

    async fn handle_click(&self, click: &Click) -> Result<(), SlackError> {
        let Some(value) = click.value.as_deref().and_then(ButtonValue::decode) else {
            self.reject(click, None, RejectReason::UnknownNonce, None)
                .await;
            return Ok(());
        };
        // Identify the clicker before taking the lock: a slow users.info must not hold up
        // other approvals. Details needs no authorisation beyond being a person.
        let user = match self.api.users_info(&click.user_id).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "users.info failed for a clicker");
                let record = self.db.load(&value.n).await?;
                self.reject(click, record.as_ref(), RejectReason::LookupFailed, None)
                    .await;
                return Ok(());
            }
        };
        // Membership in the configured approvers (a network call for a user group) is settled
        // before taking the lock; the request's own approver list is checked under it.
        let configured = if click.action == ACTION_DETAILS {
            Ok(false)
        } else {
            self.configured_approver(&user).await
        };
        let (_lock, record) = match self.load_posted(&value.n).await? {
            (lock, Some(r)) => (lock, r),
            (lock, None) => {
                drop(lock);
                self.reject(click, None, RejectReason::UnknownNonce, Some(&user.name))
                    .await;
                return Ok(());
            }
        };
        // Order matters only for the reason reported; none of these checks changes the record,
        // so a refused click never burns the nonce.
        let refused = if record.request.input_sha256 != value.h
            || record.message_ts.as_deref() != Some(click.message_ts.as_str())
            || record.channel != click.channel_id
        {
            Some(RejectReason::Mismatch)
        } else if now_ms() >= record.request.expires_at_ms
            || record.outcome == Some(ApprovalOutcome::Timeout)
        {
            Some(RejectReason::Expired)
        } else if record.outcome.is_some() {
            Some(RejectReason::Replayed)
        } else if user.id != click.user_id {
            // users.info must describe the clicker; anything else cannot be trusted.
            Some(RejectReason::LookupFailed)
        } else if user.is_bot || user.id == self.bot_user {
            Some(RejectReason::Bot)
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(_lock);
            self.reject(click, Some(&record), reason, Some(&user.name))
                .await;
            return Ok(());
        }
        if click.action == ACTION_DETAILS {
            drop(_lock);
            let blocks = blocks::details_blocks(&record.request);
            let text = format!("Full input of {}", blocks::escape(&record.request.tool));
            if let Err(e) = self
                .api
                .post_ephemeral(
                    &record.channel,
                    &click.user_id,
                    &text,
                    Some(&blocks),
                    click.thread_ts.as_deref(),
                )
                .await
            {
                tracing::warn!(error = %e, "cannot show approval details");
            }
            return Ok(());
        }
        match configured.map(|c| c && may_decide(&user, &record.request)) {
            Ok(true) => {}
            Ok(false) => {
                drop(_lock);
                self.reject(
                    click,
                    Some(&record),
                    RejectReason::NotApprover,
                    Some(&user.name),
                )
                .await;
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "approver group lookup failed");
                drop(_lock);
                self.reject(
                    click,
                    Some(&record),
                    RejectReason::LookupFailed,
                    Some(&user.name),
                )
                .await;
                return Ok(());
            }
        }
        let approver = Approver {
            id: user.id.clone(),
            name: user.name.clone(),
            via: via::SLACK.into(),
        };
        let vote = if click.action == ACTION_ALLOW {
            Vote::Allow
        } else {
            Vote::Deny
        };
        let mut updated = record.clone();
        match votes::apply(&mut updated, approver, vote) {
            Tally::Duplicate => {
                drop(_lock);
                self.reject(
                    click,
                    Some(&record),
                    RejectReason::DuplicateVote,
                    Some(&user.name),
                )
                .await;
            }
            Tally::Counted { have, need } => {
                self.db.save(&updated).await?;
                drop(_lock);
                let blocks = blocks::approval_blocks(
                    &updated.request,
                    &updated.nonce,
                    self.cfg.preview_chars,
                    &updated.votes,
                );
                if let Some(ts) = &updated.message_ts {
                    let text = format!("agp approval: {have} of {need} approvals");
                    if let Err(e) = self.api.update(&updated.channel, ts, &text, &blocks).await {
                        tracing::warn!(error = %e, "cannot update the approval message");
                    }
                }
                self.tell(
                    click,
                    &format!("Your approval is counted ({have} of {need})."),
                )
                .await;
            }
            Tally::Decided(outcome) => {
                // Stored before anyone is told: the decision must survive a crash right here.
                self.db.save(&updated).await?;
                let waiter = self
                    .waiters
                    .lock()
                    .expect("waiters lock")
                    .remove(&updated.nonce);
                if let Some(tx) = waiter {
                    let _ = tx.send(outcome.clone());
                }
                drop(_lock);
                self.show_outcome(&updated, &outcome).await;
            }
        }
        Ok(())
    }

    /// Takes the decision lock and loads the record of `nonce`. A click can arrive between
    /// chat.postMessage answering and the message ts being stored; such a click waits for the
    /// ts (bounded) instead of being refused as a mismatch.
    async fn load_posted(
        &self,
        nonce: &str,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Option<PendingRecord>), SlackError> {
        for _ in 0..10 {
            let notified = self.posted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lock = self.decide.lock().await;
            let record = self.db.load(nonce).await?;
            let posting = record
                .as_ref()
                .is_some_and(|r| r.message_ts.is_none() && r.outcome.is_none());
            if !posting {
                return Ok((lock, record));
            }
            drop(lock);
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
        let lock = self.decide.lock().await;
        let record = self.db.load(nonce).await?;
        Ok((lock, record))
    }

    /// Whether `user` is one of the configured approvers (listed, or in the approver group).
    async fn configured_approver(&self, user: &crate::api::UserInfo) -> Result<bool, ApiError> {
        if user.deleted || user.is_bot {
            return Ok(false);
        }
        if self.cfg.approvers.iter().any(|a| a == &user.id) {
            return Ok(true);
        }
        match &self.cfg.approver_group {
            Some(g) => Ok(self.api.usergroup_members(g).await?.contains(&user.id)),
            None => Ok(false),
        }
    }

    async fn reject(
        &self,
        click: &Click,
        record: Option<&PendingRecord>,
        reason: RejectReason,
        user_name: Option<&str>,
    ) {
        let rejection = Rejection {
            reason,
            user_id: click.user_id.clone(),
            user_name: user_name.map(str::to_owned),
            action: click.action.clone(),
            session: record.map(|r| r.request.session.clone()),
            call_id: record.map(|r| r.request.call_id.clone()),
            input_sha256: record.map(|r| r.request.input_sha256.clone()),
        };
        tracing::warn!(reason = reason.as_str(), user = %click.user_id, "refused a Slack click");
        if let Some(j) = &self.journal {
            let j = j.clone();
            let r = rejection.clone();
            let appended = tokio::task::spawn_blocking(move || {
                j.append(APPROVAL_REJECTED, r.session.as_deref(), r.journal_body())
            })
            .await;
            match appended {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot journal a refused Slack click"),
                Err(e) => tracing::error!(error = %e, "cannot journal a refused Slack click"),
            }
        }
        self.tell(
            click,
            &format!(":no_entry_sign: Not counted: {}.", reason.explain()),
        )
        .await;
    }

    /// An ephemeral note to the clicker, in the thread they clicked in.
    async fn tell(&self, click: &Click, text: &str) {
        if click.channel_id.is_empty() {
            return;
        }
        if let Err(e) = self
            .api
            .post_ephemeral(
                &click.channel_id,
                &click.user_id,
                text,
                None,
                click.thread_ts.as_deref(),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot send an ephemeral note");
        }
    }
}

/// Whether a configured approver may decide this request: a person, named by the request's
/// approver list when it has one.
fn may_decide(user: &crate::api::UserInfo, request: &ApprovalRequest) -> bool {
    !user.deleted
        && !user.is_bot
        && (request.approvers.is_empty() || request_names(request, &user.id))
}

/// Whether the request's approver list names this Slack user id. Exact match, as the daemon
/// checks the granted approvers' ids again against the same list.
fn request_names(request: &ApprovalRequest, user_id: &str) -> bool {
    request.approvers.iter().any(|a| a == user_id)
}

/// The parts of a `block_actions` payload agp uses.
#[derive(Debug)]
struct Click {
    user_id: String,
    action: String,
    value: Option<String>,
    channel_id: String,
    message_ts: String,
    thread_ts: Option<String>,
}

impl Click {
    fn parse(p: &Value) -> Option<Click> {
        let user_id = p.pointer("/user/id")?.as_str()?.to_owned();
        let action = p.pointer("/actions/0")?;
        let container = p.get("container");
        let channel_id = container
            .and_then(|c| c.get("channel_id"))
            .or_else(|| p.pointer("/channel/id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let message_ts = container
            .and_then(|c| c.get("message_ts"))
            .or_else(|| p.pointer("/message/ts"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let thread_ts = container
            .and_then(|c| c.get("thread_ts"))
            .or_else(|| p.pointer("/message/thread_ts"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Some(Click {
            user_id,
            action: action.get("action_id")?.as_str()?.to_owned(),
            value: action
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_owned),
            channel_id,
            message_ts,
            thread_ts,
        })
    }
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
        kind: &'a str,
        session: Option<&'a str>,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { Ok(self.inner.project(kind, session, body).await?) })
    }
}
