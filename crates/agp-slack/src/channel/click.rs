//! Clicks: the I/O around the pure decision in `decide`.

use std::time::Duration;

use agp_contracts::events::{APPROVAL_REJECTED, APPROVAL_VOTE};
use agp_contracts::{StopOutcome, StopRequest};
use serde_json::Value;

use super::decide::{
    self, decide, decide_stop, Click, ClickOutcome, CountedVote, Facts, Ignored, Rejection,
};
use super::{Inner, SlackError};
use crate::api::{ApiError, UserInfo};
use crate::blocks::{self, ACTION_DETAILS, ACTION_STOP};
use crate::now_ms;
use crate::pending::PendingRecord;

impl Inner {
    pub(super) async fn on_block_actions(&self, payload: Value) {
        let click = match decide::interaction(&payload) {
            Ok(click) => click,
            Err(Ignored::Malformed) => {
                tracing::warn!("ignoring a malformed block_actions payload");
                return;
            }
            Err(Ignored::NotBlockActions) => {
                tracing::debug!("ignoring a non-block_actions interaction");
                return;
            }
            Err(Ignored::ForeignAction(action)) => {
                tracing::debug!(action = %action, "ignoring an action that is not agp's");
                return;
            }
        };
        if click.action == ACTION_STOP {
            let session = payload
                .pointer("/actions/0/value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Err(e) = self.on_stop(&click, &session).await {
                tracing::error!(error = %e, "cannot process a Slack Stop click");
                self.tell(&click, "agp could not process your click; try again")
                    .await;
            }
            return;
        }
        if let Err(e) = self.handle_click(&click).await {
            // A store failure: the click is not counted, and the clicker is told to retry.
            tracing::error!(error = %e, "cannot process a Slack click");
            self.tell(&click, "agp could not record your click; try again")
                .await;
        }
    }

    /// Gathers what `decide` needs, then acts on its outcome. Only the record is read under
    /// the decision lock, which is held until a counted vote is stored.
    async fn handle_click(&self, click: &Click) -> Result<(), SlackError> {
        let facts = |user, configured, record| Facts {
            click,
            user,
            configured,
            record,
            bot_user: &self.bot_user,
            now_ms: now_ms(),
        };
        let Some(nonce) = click.button.as_ref().map(|b| b.n.clone()) else {
            return self
                .act(click, decide(&facts(None, None, None)), None)
                .await;
        };
        // Identify the clicker before taking the lock: a slow users.info must not hold up
        // other approvals.
        let user = match self.api.users_info(&click.user_id).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "users.info failed for a clicker");
                let record = self.db.load(&nonce).await?;
                let outcome = decide(&facts(None, None, record.as_ref()));
                return self.act(click, outcome, None).await;
            }
        };
        // Membership in the configured approvers (a network call for a user group) is settled
        // before taking the lock; the request's own approver list is checked under it.
        let configured = if click.action == ACTION_DETAILS {
            None
        } else {
            match self.configured_approver(&user).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "approver group lookup failed");
                    None
                }
            }
        };
        let (lock, record) = self.load_posted(&nonce).await?;
        let outcome = decide(&facts(Some(&user), configured, record.as_ref()));
        self.act(click, outcome, Some(lock)).await
    }

    /// Carries out a decided click. `lock` is the decision lock the record was read under;
    /// a vote is stored before it is released.
    async fn act(
        &self,
        click: &Click,
        outcome: ClickOutcome,
        lock: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) -> Result<(), SlackError> {
        match outcome {
            ClickOutcome::Reject(rejection) => {
                drop(lock);
                self.reject(click, rejection).await;
            }
            ClickOutcome::Details { channel, request } => {
                drop(lock);
                let blocks = blocks::details_blocks(&request);
                let text = format!("Full input of {}", blocks::escape(&request.tool.name()));
                if let Err(e) = self
                    .api
                    .post_ephemeral(
                        &channel,
                        &click.user_id,
                        &text,
                        Some(&blocks),
                        click.thread_ts.as_deref(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "cannot show approval details");
                }
            }
            ClickOutcome::Counted {
                record: updated,
                have,
                need,
                vote,
            } => {
                self.db.save(&updated).await?;
                drop(lock);
                self.journal_vote(&updated, &vote).await;
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
            ClickOutcome::Decided {
                record: updated,
                outcome,
                vote,
            } => {
                // Stored before anyone is told: the decision must survive a crash right here.
                self.db.save(&updated).await?;
                // The deciding vote is on record before the daemon journals the outcome.
                self.journal_vote(&updated, &vote).await;
                let waiter = self
                    .waiters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&updated.nonce);
                if let Some(tx) = waiter {
                    let _ = tx.send(outcome.clone());
                }
                drop(lock);
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
    async fn configured_approver(&self, user: &UserInfo) -> Result<bool, ApiError> {
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

    /// Journals one counted vote (`approval.vote`) as it arrives. Best effort: the vote is
    /// stored, and the outcome it leads to is journaled by the daemon either way.
    async fn journal_vote(&self, record: &PendingRecord, vote: &CountedVote) {
        let Some(j) = &self.journal else { return };
        let (j, session, body) = (
            j.clone(),
            record.request.session.clone(),
            vote.journal_body(record),
        );
        let appended =
            tokio::task::spawn_blocking(move || j.append(APPROVAL_VOTE, Some(&session), body))
                .await;
        if !matches!(appended, Ok(Ok(_))) {
            tracing::error!("cannot journal a Slack vote");
        }
    }

    /// The Stop button of a session's root message: a configured approver stops the session
    /// through the daemon; anyone else is refused and journaled as for approvals.
    async fn on_stop(&self, click: &Click, session: &str) -> Result<(), SlackError> {
        let user = match self.api.users_info(&click.user_id).await {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "users.info failed for a Stop clicker");
                None
            }
        };
        let configured = match &user {
            Some(u) => self.configured_approver(u).await.ok(),
            None => None,
        };
        let root = if session.is_empty() {
            None
        } else {
            self.db.session_root(session).await?
        };
        let decided = decide_stop(
            click,
            user.as_ref(),
            configured,
            root.as_deref(),
            &self.cfg.channel,
            &self.bot_user,
        );
        let by = match decided {
            Ok(by) => by,
            Err(reason) => {
                let rejection = Rejection {
                    reason,
                    user_id: click.user_id.clone(),
                    user_name: user.map(|u| u.name),
                    action: click.action.clone(),
                    session: root.is_some().then(|| session.to_owned()),
                    call_id: None,
                    input_sha256: None,
                };
                self.reject(click, rejection).await;
                return Ok(());
            }
        };
        let control = self.control.get().cloned();
        let Some(control) = control else {
            self.tell(
                click,
                "agp cannot stop sessions from Slack here (no daemon attached)",
            )
            .await;
            return Ok(());
        };
        let who = by.name.clone();
        let request = StopRequest {
            session: session.to_owned(),
            by,
            reason: Some(format!("Stop pressed in Slack by {who}")),
        };
        let told = match control.stop_session(request).await {
            Ok(StopOutcome::Stopped {
                cancelled_approvals,
            }) => format!(
                ":octagonal_sign: Session `{}` stopped; {} pending approval(s) cancelled.",
                blocks::escape(session),
                cancelled_approvals.len()
            ),
            Ok(StopOutcome::AlreadyEnded) => format!(
                "Session `{}` had already ended; nothing changed.",
                blocks::escape(session)
            ),
            Ok(StopOutcome::Unknown) => format!(
                "Session `{}` is not known to this agp daemon.",
                blocks::escape(session)
            ),
            Err(e) => format!("agp could not stop the session: {}", blocks::escape(&e)),
        };
        self.tell(click, &told).await;
        Ok(())
    }

    /// Journals a refused click (`approval.rejected`) and tells the clicker why.
    async fn reject(&self, click: &Click, rejection: Rejection) {
        let reason = rejection.reason;
        tracing::warn!(reason = reason.as_str(), user = %click.user_id, "refused a Slack click");
        if let Some(j) = &self.journal {
            let j = j.clone();
            let r = rejection;
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
