//! Asking: posting an approval, waiting for its decision, timing it out.

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::{ApprovalOutcome, ApprovalRequest};
use tokio::sync::oneshot;

use super::decide::request_names;
use super::{Inner, SlackError, CLOCK_MARGIN_MS};
use crate::blocks;
use crate::now_ms;
use crate::pending::{PendingRecord, StoreError};

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
    pub(super) fn expire_later(self: Arc<Self>, nonce: String, expires_at_ms: u64) {
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

    pub(super) async fn request(
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
            let record = if let Some(r) = self
                .db
                .load_for_call(&request.session, &request.call_id, &request.input_sha256)
                .await?
            {
                if let Some(outcome) = r.outcome {
                    return Ok(outcome);
                }
                tracing::info!(call = %request.call_id, "re-attaching to a Slack approval posted before");
                r
            } else {
                let r = PendingRecord {
                    nonce: new_nonce()?,
                    request: request.clone(),
                    channel: self.cfg.channel.clone(),
                    thread_ts: None,
                    message_ts: None,
                    votes: Vec::new(),
                    for_session: Vec::new(),
                    outcome: None,
                };
                self.db.save(&r).await?;
                r
            };
            let (tx, rx) = oneshot::channel();
            self.waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            blocks::escape(&req.tool.name()),
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

    pub(super) async fn time_out(&self, nonce: &str) -> Result<ApprovalOutcome, SlackError> {
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

    /// The daemon settled this call without a click (its session was stopped or ended): the
    /// record is decided as not decided (`reason`), so a later click is refused as replayed,
    /// and the message loses its buttons and says `reason`.
    pub(super) async fn cancel(
        &self,
        request: &ApprovalRequest,
        reason: &str,
    ) -> Result<(), SlackError> {
        let outcome = ApprovalOutcome::Unavailable {
            reason: reason.to_owned(),
        };
        let record = {
            let _lock = self.decide.lock().await;
            let Some(mut r) = self
                .db
                .load_for_call(&request.session, &request.call_id, &request.input_sha256)
                .await?
            else {
                return Ok(());
            };
            if r.outcome.is_some() {
                return Ok(());
            }
            r.outcome = Some(outcome.clone());
            self.db.save(&r).await?;
            let waiter = self
                .waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&r.nonce);
            if let Some(tx) = waiter {
                let _ = tx.send(outcome.clone());
            }
            r
        };
        self.show_outcome(&record, &outcome).await;
        Ok(())
    }

    /// Replaces the buttons with the outcome. Best effort: the decision is already stored.
    pub(super) async fn show_outcome(&self, record: &PendingRecord, outcome: &ApprovalOutcome) {
        let Some(ts) = &record.message_ts else { return };
        let at = now_ms();
        let blocks = blocks::decided_blocks(&record.request, outcome, at, self.cfg.preview_chars);
        let text = blocks::outcome_text(outcome, at);
        if let Err(e) = self.api.update(&record.channel, ts, &text, &blocks).await {
            tracing::warn!(error = %e, "cannot update the Slack approval message");
        }
    }
}
