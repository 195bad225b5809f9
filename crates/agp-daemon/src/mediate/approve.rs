//! Approvals: asking the channel, remembered approvals, settling and checking the outcome.

use super::*;
use crate::store::RememberedKey;

impl Mediator {
    /// The approvers of a live "allow for this session" answer for exactly this key.
    pub(super) async fn remembered_by(&self, key: &RememberedKey) -> Option<Vec<Approver>> {
        match self.store.remembered_approval(key, now_ms()).await {
            Ok(Some(json)) => match serde_json::from_str::<Vec<Approver>>(&json) {
                Ok(by) if !by.is_empty() => Some(by),
                // A row that does not read is no approval: the call is asked again.
                _ => None,
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot read remembered approvals, asking again: {e}");
                None
            }
        }
    }

    /// Keeps an "allow for this session" answer (state.db, then journaled). A failure only
    /// costs a later prompt: the call itself was granted.
    async fn remember(
        &self,
        key: RememberedKey,
        secs: u64,
        request: &ApprovalRequest,
        channel: &str,
        by: &[Approver],
    ) {
        let now = now_ms();
        let expires_at_ms =
            now.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
        let by_json = serde_json::to_string(by).unwrap_or_default();
        let stored = self
            .store
            .remember_approval(&key, &by_json, &request.call_id, now, expires_at_ms)
            .await;
        if let Err(e) = stored {
            tracing::warn!("cannot keep the answer for this session: {e}");
            return;
        }
        let body = ev::ApprovalRemembered {
            call_id: request.call_id.clone(),
            tool: request.tool.clone(),
            cwd: key.cwd.clone(),
            input_sha256: key.input_sha256.clone(),
            rule_id: Some(key.rule_id.clone()),
            policy_sha256: key.policy_sha256.clone(),
            by: by.to_vec(),
            channel: channel.to_owned(),
            expires_at_ms,
        };
        if let Err(e) = self.record(Some(&key.session), &body).await {
            // Unjournaled, it must not be used: forget it again.
            tracing::error!("cannot journal a remembered approval, forgetting it: {e}");
            let _ = self.store.forget_remembered_key(&key).await;
        }
    }

    /// Puts a `require` to the approval channel and journals how it ended. Every path that is
    /// not a journaled grant denies.
    pub(super) async fn approve(
        &self,
        session: &Arc<SessionState>,
        call: &ToolCall,
        input_sha256: &str,
        redacted: &Value,
        verdict: &Verdict,
        abandon: &Abandon,
    ) -> ApprovalEnd {
        let spec = verdict.approval.clone().unwrap_or(ApprovalSpec {
            approvers: Vec::new(),
            quorum: 1,
            remember_secs: None,
        });
        let channel = self.parts.channel.name().to_owned();
        let denied = |reason: String| ApprovalEnd {
            granted: false,
            by: None,
            reason,
        };

        // Asking for approval in a session that has ended (or is ending) would leave a prompt no
        // one can use; the session's end waits until a request already made is on record.
        let admitted = session.gate.read().await;
        if session.is_ended() {
            return denied("the session ended before approval was asked; denied".into());
        }
        // Only a rule that allows remembering offers (and reuses) "allow for this session".
        let remember = spec
            .remember_secs
            .filter(|s| *s > 0)
            .and_then(|secs| Some((secs, remember_key(call, input_sha256, verdict)?)));
        let remembered = match &remember {
            Some((_, key)) => self.remembered_by(key).await,
            None => None,
        };
        if let Some(by) = remembered {
            let granted = ev::ApprovalGranted {
                call_id: call.id.clone(),
                input_sha256: input_sha256.to_owned(),
                by: by.clone(),
                channel: channel.clone(),
                remembered: Some(true),
                waited_ms: None,
            };
            return match self.record(Some(&session.id), &granted).await {
                Ok(()) => ApprovalEnd {
                    granted: true,
                    by: Some(format!("remembered:{}", approver_names(&by))),
                    reason: verdict.reason.clone(),
                },
                Err(e) => denied(format!("agp could not journal the approval ({e}); denied")),
            };
        }

        let request = ApprovalRequest {
            session: session.id.clone(),
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            redacted_input: redacted.clone(),
            input_sha256: input_sha256.to_owned(),
            rule_id: verdict.rule_id.clone(),
            reason: verdict.reason.clone(),
            approvers: spec.approvers.clone(),
            quorum: spec.quorum.max(1),
            expires_at_ms: 0,
            remember_secs: remember.as_ref().map(|(secs, _)| *secs),
        };
        self.ask(session, request, remember, admitted, abandon)
            .await
    }

    /// Records `request` as pending, journals `approval.requested`, puts it to the channel
    /// (bounded by the approval timeout, void once `abandon` is raised or the session ends) and
    /// concludes. `admitted` is the session's gate, held until the request is on record. Tool
    /// calls and egress destinations share this path, so both have the same binding (call id,
    /// input hash, approver allowlist, quorum, timeout).
    pub(super) async fn ask(
        &self,
        session: &Arc<SessionState>,
        mut request: ApprovalRequest,
        remember: Option<(u64, RememberedKey)>,
        admitted: tokio::sync::RwLockReadGuard<'_, ()>,
        abandon: &Abandon,
    ) -> ApprovalEnd {
        let channel = self.parts.channel.name().to_owned();
        let denied = |reason: String| ApprovalEnd {
            granted: false,
            by: None,
            reason,
        };
        let now = now_ms();
        let expires_at_ms = now + self.config.approval_timeout.as_millis() as i64;
        request.expires_at_ms = expires_at_ms as u64;
        let call_id = request.call_id.clone();
        let input_sha256 = request.input_sha256.clone();
        let row = PendingRow {
            session: session.id.clone(),
            call_id: call_id.clone(),
            input_sha256: input_sha256.clone(),
            request_json: serde_json::to_string(&request).unwrap_or_default(),
            expires_at_ms,
        };
        if let Err(e) = self.store.insert_pending(&row, now).await {
            return denied(format!(
                "agp could not record the pending approval ({e}); denied"
            ));
        }
        // Open to the console before the journal says it was requested (see `open_to_console`).
        let registration = self.open_to_console(&request);
        let requested = ev::ApprovalRequested {
            call_id: call_id.clone(),
            tool: request.tool.clone(),
            input_sha256: input_sha256.clone(),
            rule_id: request.rule_id.clone(),
            reason: request.reason.clone(),
            channel: channel.clone(),
            approvers: request.approvers.clone(),
            quorum: request.quorum,
            expires_at_ms,
        };
        if let Err(e) = self.record(Some(&session.id), &requested).await {
            self.resolve(&session.id, &call_id, &input_sha256, "failed")
                .await;
            return denied(format!(
                "agp could not journal the approval request ({e}); denied"
            ));
        }
        drop(admitted);

        let started = Instant::now();
        // The configured channel and the web console, raced (see `web`).
        let asked = tokio::time::timeout(
            self.config.approval_timeout,
            self.put_to_channels(&request, registration),
        );
        let unavailable = |reason: &str| {
            let reason = reason.to_owned();
            (ApprovalOutcome::Unavailable { reason }, None)
        };
        let (outcome, web) = tokio::select! {
            asked = asked => match asked {
                Ok(Ok(decided)) => (decided.outcome, decided.web),
                Ok(Err(e)) => unavailable(&e.to_string()),
                Err(_elapsed) => (ApprovalOutcome::Timeout, None),
            },
            // The channel future is dropped (channels are cancel-safe): a late click is void.
            () = abandon.raised() => unavailable("the agent disconnected before a decision"),
            // The session's end settled this approval already; `conclude` finds it resolved.
            () = session.ended() => unavailable("the session ended before a decision"),
        };
        let decided_by = if web.is_some() {
            agp_contracts::approval::via::WEB
        } else {
            channel.as_str()
        };
        let end = self
            .conclude(
                session.id.as_str(),
                &request,
                decided_by,
                outcome,
                remember,
                started.elapsed(),
            )
            .await;
        if let Some(done) = web {
            // The console learns what its decision did (a journal failure still denies).
            let _ = done.send(agp_gateway::DecisionApplied {
                call_id: request.call_id.clone(),
                granted: end.granted,
                reason: end.reason.clone(),
            });
        }
        end
    }

    /// Marks the pending approval bound to (session, call id, input hash) as `status`;
    /// `false` when it was no longer pending (see `Store::resolve_pending`).
    pub(crate) async fn settle_pending(
        &self,
        session: &str,
        call_id: &str,
        hash: &str,
        status: &'static str,
    ) -> Result<bool, StoreError> {
        self.store
            .resolve_pending(session, call_id, hash, status, now_ms())
            .await
    }

    pub(crate) async fn resolve(
        &self,
        session: &str,
        call_id: &str,
        hash: &str,
        status: &'static str,
    ) -> bool {
        match self.settle_pending(session, call_id, hash, status).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!("cannot resolve pending approval {call_id}: {e}");
                false
            }
        }
    }

    /// Checks, resolves and journals an approval outcome. Shared with restart recovery.
    pub(crate) async fn conclude(
        &self,
        session: &str,
        request: &ApprovalRequest,
        channel: &str,
        outcome: ApprovalOutcome,
        remember: Option<(u64, RememberedKey)>,
        waited: Duration,
    ) -> ApprovalEnd {
        let outcome = Self::check_grant(request, outcome);
        // "Allow for this session" counts only where the request offered it.
        let for_session = matches!(outcome, ApprovalOutcome::GrantedForSession { .. })
            && request.remember_secs.is_some();
        let (status, kind, body, end) = match &outcome {
            ApprovalOutcome::Granted { by } | ApprovalOutcome::GrantedForSession { by } => (
                "granted",
                ev::ApprovalGranted::KIND,
                ev::ApprovalGranted {
                    call_id: request.call_id.clone(),
                    input_sha256: request.input_sha256.clone(),
                    by: by.clone(),
                    channel: channel.to_owned(),
                    remembered: None,
                    waited_ms: Some(waited.as_millis() as u64),
                }
                .to_body(),
                ApprovalEnd {
                    granted: true,
                    by: Some(approver_names(by)),
                    reason: request.reason.clone(),
                },
            ),
            ApprovalOutcome::Denied { by, reason } => (
                "denied",
                ev::ApprovalDenied::KIND,
                ev::ApprovalDenied {
                    call_id: request.call_id.clone(),
                    input_sha256: request.input_sha256.clone(),
                    by: Some(by.clone()),
                    reason: reason.clone(),
                    channel: channel.to_owned(),
                    waited_ms: Some(waited.as_millis() as u64),
                    unavailable: None,
                    cancelled: None,
                }
                .to_body(),
                ApprovalEnd {
                    granted: false,
                    by: Some(by.id.clone()),
                    reason: match reason {
                        Some(r) => format!("denied by approver {}: {r}", by.name),
                        None => format!("denied by approver {}", by.name),
                    },
                },
            ),
            ApprovalOutcome::Timeout => (
                "timeout",
                ev::ApprovalTimeout::KIND,
                ev::ApprovalTimeout {
                    call_id: request.call_id.clone(),
                    input_sha256: request.input_sha256.clone(),
                    channel: channel.to_owned(),
                    waited_ms: Some(waited.as_millis() as u64),
                    recovered: None,
                    reason: None,
                }
                .to_body(),
                ApprovalEnd {
                    granted: false,
                    by: None,
                    reason: format!("approval timed out after {} s; denied", waited.as_secs()),
                },
            ),
            ApprovalOutcome::Unavailable { reason } => (
                "unavailable",
                ev::ApprovalDenied::KIND,
                ev::ApprovalDenied::unavailable(
                    &request.call_id,
                    &request.input_sha256,
                    channel,
                    reason.clone(),
                )
                .to_body(),
                ApprovalEnd {
                    granted: false,
                    by: None,
                    reason: format!(
                        "approval required but no approver available ({reason}); denied"
                    ),
                },
            ),
        };
        if !self
            .resolve(session, &request.call_id, &request.input_sha256, status)
            .await
        {
            return ApprovalEnd {
                granted: false,
                by: None,
                reason: "the approval was no longer pending; denied".into(),
            };
        }
        if let Err(e) = self.journal(kind, Some(session), body).await {
            return ApprovalEnd {
                granted: false,
                by: None,
                reason: format!("agp could not journal the approval outcome ({e}); denied"),
            };
        }
        if let (true, true, Some((secs, key)), Some(by)) =
            (end.granted, for_session, remember, outcome.granted_by())
        {
            self.remember(key, secs, request, channel, by).await;
        }
        end
    }

    /// A grant counts only with enough distinct approvers, each allowed by the rule (the
    /// operator's explicit `--auto-approve` stands in for the allowlist and is journaled as such).
    pub(super) fn check_grant(
        request: &ApprovalRequest,
        outcome: ApprovalOutcome,
    ) -> ApprovalOutcome {
        let Some(by) = outcome.granted_by() else {
            return outcome;
        };
        let mut ids: Vec<&str> = by.iter().map(|a| a.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let outsider = by.iter().find(|a| {
            !request.approvers.is_empty()
                && a.via != agp_contracts::approval::via::AUTO
                && !request.approvers.contains(&a.id)
        });
        if let Some(a) = outsider {
            return ApprovalOutcome::Unavailable {
                reason: format!("{} is not an allowed approver for this rule", a.id),
            };
        }
        if ids.is_empty() || (ids.len() as u32) < request.quorum.max(1) {
            return ApprovalOutcome::Unavailable {
                reason: format!(
                    "quorum not reached: {} distinct approver(s), {} needed",
                    ids.len(),
                    request.quorum.max(1)
                ),
            };
        }
        outcome
    }
}
