//! The webhook [`ApprovalChannel`]: posts approvals to the receiver, checks every signed
//! decision against the stored record, counts votes, and journals refused decisions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agp_contracts::events::Projection;
use agp_contracts::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, BoxFuture, ChannelError, Journal,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::WebhookConfig;
use crate::decide::Record;
use crate::deliver::{Backoff, Deliverer};
use crate::wire::{RequestDoc, DECISION_PATH};
use crate::{listener, now_ms};

pub(crate) const NAME: &str = "webhook";
/// Timers fire this long after an expiry, so a wall-clock check at wake-up sees it passed.
const CLOCK_MARGIN_MS: u64 = 5;
/// Ended records are kept this long after their expiry, so a late or replayed decision is
/// recognised as such (rather than as an unknown call; refused either way).
const KEEP_ENDED_MS: u64 = 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot listen for webhook decisions on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no randomness for a nonce: {0}")]
    Random(String),
    #[error("cannot encode the approval request: {0}")]
    Encode(String),
    #[error("must be started inside a tokio runtime")]
    NoRuntime,
}

impl From<WebhookError> for ChannelError {
    fn from(e: WebhookError) -> Self {
        ChannelError::Failed {
            channel: NAME.into(),
            message: e.to_string(),
        }
    }
}

/// Approvals in flight and recently ended, by nonce, and who waits for each.
#[derive(Default)]
pub(crate) struct Book {
    pub(crate) records: HashMap<String, Record>,
    pub(crate) waiters: HashMap<String, oneshot::Sender<ApprovalOutcome>>,
}

pub(crate) struct Inner {
    pub(crate) cfg: WebhookConfig,
    pub(crate) callback_url: String,
    pub(crate) book: Mutex<Book>,
    pub(crate) journal: Option<Arc<dyn Journal>>,
    pub(crate) deliverer: Deliverer,
    pub(crate) unauthenticated: listener::JournalBudget,
}

impl Inner {
    pub(crate) fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct WebhookChannelBuilder {
    cfg: WebhookConfig,
    journal: Option<Arc<dyn Journal>>,
    backoff: Backoff,
}

impl WebhookChannelBuilder {
    /// Journal refused decisions (`approval.rejected`) here. Without it they are only logged.
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Pauses between delivery attempts (default 250 ms doubling to 5 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Binds the decision listener and starts serving it.
    pub async fn start(self) -> Result<WebhookChannel, WebhookError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let addr = self.cfg.listen;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WebhookError::Bind { addr, source })?;
        let local = tcp
            .local_addr()
            .map_err(|source| WebhookError::Bind { addr, source })?;
        let callback_url = self
            .cfg
            .callback_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}{DECISION_PATH}"));
        let deliverer = Deliverer::new(
            &self.cfg.url,
            self.cfg.secret.clone(),
            self.cfg.http_timeout,
            self.backoff,
        );
        let inner = Arc::new(Inner {
            cfg: self.cfg,
            callback_url,
            book: Mutex::new(Book::default()),
            journal: self.journal,
            deliverer,
            unauthenticated: listener::JournalBudget::default(),
        });
        tracing::info!(%local, "webhook decision listener started");
        let server = handle.spawn(listener::serve(tcp, inner.clone()));
        Ok(WebhookChannel {
            inner,
            server,
            local,
        })
    }
}

/// The webhook approval channel. Dropping it stops the decision listener.
pub struct WebhookChannel {
    inner: Arc<Inner>,
    server: JoinHandle<()>,
    local: SocketAddr,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &self.inner.cfg.url_origin())
            .field("listen", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for WebhookChannel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl WebhookChannel {
    pub fn builder(cfg: WebhookConfig) -> WebhookChannelBuilder {
        WebhookChannelBuilder {
            cfg,
            journal: None,
            backoff: Backoff::default(),
        }
    }

    /// The address the decision listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The callback URL told to the receiver.
    pub fn callback_url(&self) -> &str {
        &self.inner.callback_url
    }
}

/// Ends the record when `request_approval`'s future finishes or is dropped: a decision
/// arriving after agp stopped waiting must not count (the channel contract's cancel-safety).
struct WaiterGuard {
    inner: Arc<Inner>,
    nonce: String,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut book = self.inner.book();
        book.waiters.remove(&self.nonce);
        if let Some(r) = book.records.get_mut(&self.nonce) {
            if r.outcome.is_none() {
                r.outcome = Some(ApprovalOutcome::Unavailable {
                    reason: "agp stopped waiting for this approval".into(),
                });
            }
        }
    }
}

fn new_nonce() -> Result<String, WebhookError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| WebhookError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

impl Inner {
    /// The configured approvers this request's rule allows.
    fn eligible(&self, request: &ApprovalRequest) -> Vec<String> {
        self.cfg
            .approvers
            .iter()
            .filter(|a| request.approvers.is_empty() || request.approvers.contains(a))
            .cloned()
            .collect()
    }

    async fn request(
        self: &Arc<Self>,
        request: &ApprovalRequest,
    ) -> Result<ApprovalOutcome, WebhookError> {
        let eligible = self.eligible(request);
        let need = request.quorum.max(1) as usize;
        if eligible.len() < need {
            return Ok(ApprovalOutcome::Unavailable {
                reason: format!(
                    "quorum {need} cannot be reached: only {} configured webhook approver(s) may \
                     decide this call",
                    eligible.len()
                ),
            });
        }
        if now_ms() >= request.expires_at_ms {
            return Ok(ApprovalOutcome::Timeout);
        }
        let nonce = new_nonce()?;
        let doc = RequestDoc::new(request, eligible.clone(), &nonce, &self.callback_url);
        let body = serde_json::to_vec(&doc).map_err(|e| WebhookError::Encode(e.to_string()))?;
        let (tx, mut rx) = oneshot::channel();
        {
            let mut book = self.book();
            let now = now_ms();
            book.records.retain(|_, r| {
                r.outcome.is_none() || r.request.expires_at_ms.saturating_add(KEEP_ENDED_MS) > now
            });
            book.records.insert(
                nonce.clone(),
                Record {
                    nonce: nonce.clone(),
                    request: request.clone(),
                    eligible,
                    votes: Vec::new(),
                    outcome: None,
                },
            );
            book.waiters.insert(nonce.clone(), tx);
        }
        let _guard = WaiterGuard {
            inner: self.clone(),
            nonce: nonce.clone(),
        };
        let left = |at: u64| Duration::from_millis(at.saturating_sub(now_ms()));
        let expiry = tokio::time::sleep(
            left(request.expires_at_ms) + Duration::from_millis(CLOCK_MARGIN_MS),
        );
        tokio::pin!(expiry);
        let deliver_by = Instant::now() + left(request.expires_at_ms).min(self.cfg.deliver_within);
        let delivery = self.deliverer.deliver(&body, deliver_by);
        tokio::pin!(delivery);
        let mut delivered = false;
        // A receiver may decide before it answers the POST: decisions are awaited from the
        // start, not only once delivery succeeded.
        loop {
            tokio::select! {
                sent = &mut delivery, if !delivered => match sent {
                    Ok(()) => delivered = true,
                    Err(e) => {
                        let to = self.cfg.url_origin();
                        tracing::error!(url = %to, error = %e, "approval request not delivered");
                        let reason = format!("{e} (to {to})");
                        return Ok(self.end(&nonce, ApprovalOutcome::Unavailable { reason }));
                    }
                },
                got = &mut rx => return Ok(got.unwrap_or(ApprovalOutcome::Unavailable {
                    reason: "webhook channel stopped".into(),
                })),
                () = &mut expiry => return Ok(self.end(&nonce, ApprovalOutcome::Timeout)),
            }
        }
    }

    /// Ends an undecided record with `outcome`; returns how the record ended (a decision that
    /// arrived first stands).
    fn end(&self, nonce: &str, outcome: ApprovalOutcome) -> ApprovalOutcome {
        let mut book = self.book();
        book.waiters.remove(nonce);
        match book.records.get_mut(nonce) {
            Some(r) => r.outcome.get_or_insert(outcome).clone(),
            None => outcome,
        }
    }
}

impl ApprovalChannel for WebhookChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        Box::pin(async move { Ok(self.inner.request(request).await?) })
    }

    /// Only approvals go to the receiver; session events are in the journal (and in
    /// `agp journal export`).
    fn project<'a>(
        &'a self,
        _session: Option<&'a str>,
        _event: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async { Ok(()) })
    }
}
