//! Approvals from the web console. Every request put to the configured channel is also open to
//! the console while it waits ([`WebQueue`]); the first outcome wins and the other side is
//! withdrawn. A console decision goes through the same binding as every channel's (call id,
//! input hash, single-use nonce, expiry, approver allowlist, quorum) and is journaled with
//! `via: "web"` and the connecting process's OS user as the approver; a refused one is journaled
//! as `approval.rejected`.

use agp_contracts::approval::via;
use agp_contracts::ChannelError;
use agp_gateway::{ApprovalList, DecisionApplied, PendingApproval, WebDecision};
use tokio::sync::oneshot;

use super::web_queue::{rights, Registration, Rights, WebDecide, WebRefusal, WebVote};
use super::*;

/// Requests one listing shows at most, and the largest input (JSON bytes) shown whole: a
/// listing must fit one frame.
const MAX_LISTED: usize = 100;
const MAX_LISTED_INPUT_BYTES: usize = 8 * 1024;
/// How long the losing channel gets to withdraw its prompt.
const CHANNEL_CANCEL_WAIT: Duration = Duration::from_secs(5);
/// How long a claimed decision may take to be concluded (journaled) before the console is
/// told it was not applied.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// How putting a request to the channels ended; `web` is set when the console's decision won,
/// to be told how it was concluded.
pub(crate) struct Decided {
    pub outcome: ApprovalOutcome,
    pub web: Option<oneshot::Sender<DecisionApplied>>,
}

/// The approver a console decision is journaled with: the local account of `uid`, with the id
/// the terminal channel gives the same account (`tty:<user>`), so that a rule's `approvers`
/// list names a person once for both, and one person is never counted twice toward a quorum.
pub(crate) fn web_approver(uid: u32) -> Approver {
    agp_channels::local_approver(uid, via::WEB)
}

/// What a refusal tells the console, after its reason code.
fn describe(r: WebRefusal) -> &'static str {
    match r {
        WebRefusal::ViewOnly => "this daemon's console is view-only ([approvals] web = false)",
        WebRefusal::NoPeerUser => "the kernel did not name the connecting user",
        WebRefusal::UnknownNonce => "no such nonce was issued; list the approvals again",
        WebRefusal::Replayed => "this nonce was already used; list the approvals again",
        WebRefusal::CallMismatch => "the nonce was issued for another call",
        WebRefusal::InputHashMismatch => "the input hash is not the one of the pending call",
        WebRefusal::Expired => "the approval request has expired",
        WebRefusal::AlreadyDecided => "the approval was already settled",
        WebRefusal::SessionEnded => "the session ended before the decision",
        WebRefusal::NotApprover => "this user is not an allowed approver for this call",
        WebRefusal::QuorumNeedsOthers => {
            "this call needs more distinct approvers than the console's one user"
        }
        WebRefusal::SessionGrantNotOffered => "\"allow for this session\" is not offered here",
        WebRefusal::NotApplied => "the approval ended before the decision could be applied",
    }
}

/// The input as listed: the redacted input, or the start of its JSON text when too large.
fn listed_input(input: Value) -> (Value, bool) {
    let text = input.to_string();
    if text.len() <= MAX_LISTED_INPUT_BYTES {
        return (input, false);
    }
    let (cut, _) = truncate_utf8(&text, MAX_LISTED_INPUT_BYTES);
    (Value::String(cut.to_owned()), true)
}

impl Mediator {
    /// The daemon owner's rights on `request`, for deciding whether a channel that could ask
    /// nobody may leave the request to a watching console.
    fn console_may_approve(&self, request: &ApprovalRequest) -> bool {
        if !self.config.web_approvals || !self.web.watched(now_ms() as u64) {
            return false;
        }
        let Some(uid) = std::fs::metadata("/proc/self")
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        else {
            return false;
        };
        rights(
            request,
            &web_approver(uid),
            false,
            self.parts.channel.name(),
        )
        .approve
    }

    /// Opens `request` to the console. Called BEFORE `approval.requested` is journaled: a
    /// console refreshes its list when the journal grows, so a request opened after that entry
    /// could be missed until the journal grows again (a decision made meanwhile waits in the
    /// registration and is journaled by [`Self::put_to_channels`], after the request).
    pub(crate) fn open_to_console(&self, request: &ApprovalRequest) -> Registration<'_> {
        self.web.register(request, self.parts.channel.name())
    }

    /// Puts `request` to the configured channel, raced with the console's decision
    /// (`registration`, from [`Self::open_to_console`]); the first outcome wins. When the console's decision wins, the channel's prompt is dropped (its late answer
    /// is void) and withdrawn with who decided. A channel that could ask nobody (no terminal)
    /// leaves the request to a console that is watching, until the caller's timeout.
    pub(crate) async fn put_to_channels(
        &self,
        request: &ApprovalRequest,
        mut registration: Registration<'_>,
    ) -> Result<Decided, ChannelError> {
        let channel = self.parts.channel.name();
        let vote: WebVote = {
            let asked = self.parts.channel.request_approval(request);
            tokio::pin!(asked);
            let mut left_to_console = false;
            loop {
                tokio::select! {
                    vote = &mut registration.rx => match vote {
                        Ok(vote) => break vote,
                        // The sender lives as long as the registration: not reached.
                        Err(_) => return Ok(Decided {
                            outcome: ApprovalOutcome::Unavailable {
                                reason: "the console's decision was lost".into(),
                            },
                            web: None,
                        }),
                    },
                    asked = &mut asked, if !left_to_console => {
                        let gave_up = matches!(asked, Err(_) | Ok(ApprovalOutcome::Unavailable { .. }));
                        if gave_up && self.console_may_approve(request) {
                            tracing::info!(call = %request.call_id,
                                "the {channel} channel could ask nobody; left to the web console");
                            left_to_console = true;
                            continue;
                        }
                        if let Some(vote) = registration.close() {
                            break vote;
                        }
                        return asked.map(|outcome| Decided { outcome, web: None });
                    }
                }
            }
        };
        drop(registration);
        let by = match &vote.outcome {
            ApprovalOutcome::Granted { by } | ApprovalOutcome::GrantedForSession { by } => {
                by.first().cloned()
            }
            ApprovalOutcome::Denied { by, .. } => Some(by.clone()),
            _ => None,
        };
        if let Some(by) = by {
            let allow = vote.vote != WebDecision::Deny;
            let body = ev::ApprovalVote {
                call_id: request.call_id.clone(),
                input_sha256: request.input_sha256.clone(),
                vote: match vote.vote {
                    WebDecision::Allow => "allow",
                    WebDecision::AllowSession => "allow_for_session",
                    WebDecision::Deny => "deny",
                }
                .to_owned(),
                channel: via::WEB.to_owned(),
                have: u32::from(allow),
                need: request.quorum.max(1),
                by: by.clone(),
            };
            if let Err(e) = self.record(Some(&request.session), &body).await {
                tracing::error!("cannot journal a web console vote: {e}");
            }
            // The losing channel's prompt is withdrawn in the background: a slow channel must
            // not hold up the call.
            let (ch, req) = (self.parts.channel.clone(), request.clone());
            let shown = format!("decided in the web console by {}", by.name);
            tokio::spawn(async move {
                if tokio::time::timeout(CHANNEL_CANCEL_WAIT, ch.cancel(&req, &shown))
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "the approval channel did not withdraw {} in time",
                        req.call_id
                    );
                }
            });
        }
        Ok(Decided {
            outcome: vote.outcome,
            web: Some(vote.done),
        })
    }

    /// The approvals waiting for a human, each with a fresh nonce, and what the connecting user
    /// may do with each.
    pub(crate) fn list_web(&self, peer_uid: Option<u32>) -> ApprovalList {
        let me = peer_uid.map(web_approver);
        let view_only = !self.config.web_approvals;
        let (listed, omitted) = self.web.list(now_ms() as u64, MAX_LISTED, || {
            crate::util::random_hex(32).ok()
        });
        let approvals = listed
            .into_iter()
            .map(|l| {
                let may = match &me {
                    Some(me) => rights(&l.request, me, view_only, &l.channel),
                    None => Rights {
                        approve: false,
                        deny: false,
                        why_not: Some(describe(WebRefusal::NoPeerUser).into()),
                    },
                };
                // Redacted when asked already; once more, so a listing never depends on it.
                let input = self.parts.redactor.redact_value(&l.request.redacted_input);
                let (redacted_input, input_truncated) = listed_input(input);
                let r = l.request;
                PendingApproval {
                    session: r.session,
                    call_id: r.call_id,
                    tool: r.tool,
                    redacted_input,
                    input_truncated,
                    input_sha256: r.input_sha256,
                    rule_id: r.rule_id,
                    reason: self.parts.redactor.redact_text(&r.reason),
                    approvers: r.approvers,
                    quorum: r.quorum,
                    expires_at_ms: r.expires_at_ms,
                    remember_secs: r.remember_secs,
                    nonce: l.nonce,
                    channel: l.channel,
                    web_can_approve: may.approve,
                    web_can_deny: may.deny,
                    why_not: may.why_not,
                }
            })
            .collect();
        ApprovalList {
            approver: me.map_or_else(String::new, |a| a.id),
            view_only,
            approvals,
            omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
        }
    }

    /// Applies one console decision, or refuses it (journaled as `approval.rejected`). `Err`
    /// carries the reason code, then what the console is told.
    pub(crate) async fn decide_web(
        &self,
        peer_uid: Option<u32>,
        d: WebDecide,
    ) -> Result<DecisionApplied, String> {
        let Some(uid) = peer_uid else {
            let nobody = Approver {
                id: String::new(),
                name: String::new(),
                via: via::WEB.to_owned(),
            };
            return Err(self
                .web_refused(WebRefusal::NoPeerUser, &nobody, &d, None)
                .await);
        };
        let me = web_approver(uid);
        if !self.config.web_approvals {
            return Err(self.web_refused(WebRefusal::ViewOnly, &me, &d, None).await);
        }
        // A session this daemon does not hold (re-attached after a restart) counts as live: its
        // request is only registered while its session is.
        let live = |s: &str| self.sessions.by_id(s).is_none_or(|st| !st.is_ended());
        let applied = match self.web.decide(&d, &me, now_ms() as u64, live) {
            Ok((applied, _request)) => applied,
            Err((mut r, session)) => {
                if let (WebRefusal::AlreadyDecided, Some(id)) = (r, session.clone()) {
                    let row = self.store.session(&id).await.ok().flatten();
                    if row.is_some_and(|row| row.status != "active") {
                        r = WebRefusal::SessionEnded;
                    }
                }
                return Err(self.web_refused(r, &me, &d, session).await);
            }
        };
        match tokio::time::timeout(APPLY_WAIT, applied).await {
            Ok(Ok(done)) => Ok(done),
            _ => Err(self
                .web_refused(WebRefusal::NotApplied, &me, &d, None)
                .await),
        }
    }

    /// Journals a refused console decision (within a per-minute budget: whoever holds the admin
    /// token must not grow the journal without bound) and says why.
    async fn web_refused(
        &self,
        r: WebRefusal,
        me: &Approver,
        d: &WebDecide,
        session: Option<String>,
    ) -> String {
        tracing::warn!(reason = r.as_str(), approver = %me.id, "refused a web console decision");
        if self.web.take_budget(now_ms() as u64) {
            let cut = |s: &str| super::web_queue::bounded(truncate_utf8(s, 128).0);
            let body = ev::ApprovalRejected {
                channel: via::WEB.to_owned(),
                reason: r.as_str().to_owned(),
                user: ev::ClickUser {
                    id: me.id.clone(),
                    name: Some(me.name.clone()).filter(|n| !n.is_empty()),
                },
                action: d.decision.as_str().to_owned(),
                call_id: Some(cut(&d.call_id)),
                input_sha256: Some(cut(&d.input_sha256)),
            };
            if let Err(e) = self.record(session.as_deref(), &body).await {
                tracing::error!("cannot journal a refused web console decision: {e}");
            }
        }
        format!("{}: {}", r.as_str(), describe(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_input_is_listed_cut() {
        let small = serde_json::json!({"command": "ls"});
        assert_eq!(listed_input(small.clone()), (small, false));
        let big = serde_json::json!({"content": "x".repeat(MAX_LISTED_INPUT_BYTES * 2)});
        let (shown, cut) = listed_input(big);
        assert!(cut);
        assert!(shown.as_str().unwrap().len() <= MAX_LISTED_INPUT_BYTES);
    }
}
