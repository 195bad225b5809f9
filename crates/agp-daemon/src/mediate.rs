//! The governed loop for one tool call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agp_contracts::canonical::sha256_hex;
use agp_contracts::events::{self as ev, Event, *};
use agp_contracts::{
    ApprovalOutcome, ApprovalRequest, ApprovalSpec, Approver, Decision, JournalError, SandboxError,
    ToolCall, Verdict,
};
use agp_gateway::{
    ErrorCode, ExecResult, SessionMode, ToolCallRequest, ToolCallResult, VerdictMessage,
};
use serde_json::Value;

use crate::exec::{self, ToolError};
use crate::session::{AwaitingResult, Registry, SessionState};
use crate::store::{PendingRow, Store, StoreError};
use crate::util::{now_ms, truncate_utf8};
use crate::{DaemonConfig, Parts};

/// Longest accepted call id or tool name: ids are opaque, but unbounded ones only bloat the
/// journal and the replay table.
const MAX_ID_LEN: usize = 256;

/// A request the gateway must refuse outright (error frame + `gateway.rejected`), as opposed to
/// a call that is judged and denied.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the daemon answers to one call.
#[derive(Debug, Clone)]
pub struct CallReply {
    pub verdict: VerdictMessage,
    /// Proxy-exec mode, allowed calls: the sandboxed execution.
    pub result: Option<ExecResult>,
}

/// Raised when the agent that asked disconnects: a pending approval is settled as a denial
/// and nothing is executed for a caller that is gone.
#[derive(Clone)]
pub(crate) struct Abandon(tokio::sync::watch::Receiver<bool>);

impl Abandon {
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the signal is raised (or its sender is gone: the caller is gone too).
    pub async fn raised(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// What the blocking front half of mediation produced.
enum Front {
    /// Answered already (a refusal of the input, or a journal failure turned into deny).
    Replied(CallReply),
    Judged {
        call: ToolCall,
        input_sha256: String,
        redacted: Value,
        verdict: Verdict,
    },
}

/// How a `require` ended.
pub(crate) struct ApprovalEnd {
    pub granted: bool,
    pub by: Option<String>,
    pub reason: String,
}

pub struct Mediator {
    pub(crate) parts: Parts,
    pub(crate) config: DaemonConfig,
    pub(crate) store: Arc<Store>,
    pub(crate) sessions: Registry,
    /// Lease owner id of this daemon instance.
    pub(crate) owner: String,
    pub(crate) outbox_wake: tokio::sync::Notify,
    /// One delivery pass at a time: an item is never projected twice concurrently.
    pub(crate) outbox_lock: tokio::sync::Mutex<()>,
    /// Approvals a rule lets the daemon remember: until when, and who gave them.
    remembered: Mutex<HashMap<RememberKey, (Instant, Vec<Approver>)>>,
}

/// What must be identical for a remembered approval to cover a later call: the same session,
/// tool, working directory and input, judged by the same rule. The input hash alone would let
/// an approval of one tool (or one directory) cover another with the same input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RememberKey {
    session: String,
    tool: String,
    cwd: String,
    input_sha256: String,
    rule_id: Option<String>,
}

impl RememberKey {
    fn of(call: &ToolCall, input_sha256: &str, rule_id: Option<&str>) -> Self {
        Self {
            session: call.session.clone(),
            tool: call.tool.clone(),
            cwd: call.cwd.to_string_lossy().into_owned(),
            input_sha256: input_sha256.to_owned(),
            rule_id: rule_id.map(str::to_owned),
        }
    }
}

fn approver_names(by: &[Approver]) -> String {
    by.iter()
        .map(|a| a.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl Mediator {
    pub(crate) fn new(
        parts: Parts,
        config: DaemonConfig,
        store: Arc<Store>,
        owner: String,
    ) -> Self {
        Self {
            parts,
            config,
            store,
            sessions: Registry::default(),
            owner,
            outbox_wake: tokio::sync::Notify::new(),
            outbox_lock: tokio::sync::Mutex::new(()),
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// Appends to the journal off the async threads. Returns only once the entry is durable.
    pub(crate) async fn journal(
        &self,
        kind: &'static str,
        session: Option<&str>,
        body: Value,
    ) -> Result<(), JournalError> {
        let journal = self.parts.journal.clone();
        let session = session.map(str::to_owned);
        tokio::task::spawn_blocking(move || journal.append(kind, session.as_deref(), body))
            .await
            .map_err(|e| JournalError::Unavailable(format!("journal task failed: {e}")))?
            .map(|_| ())
    }

    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Invalid(format!("state task failed: {e}")))?
    }

    /// Appends a typed event under its own kind. Returns only once the entry is durable.
    pub(crate) async fn record<E: Event>(
        &self,
        session: Option<&str>,
        event: &E,
    ) -> Result<(), JournalError> {
        self.journal(E::KIND, session, event.to_body()).await
    }

    /// Queues a best-effort projection to the approval channel (never blocks the loop).
    pub(crate) async fn project(&self, kind: &'static str, session: Option<&str>, body: Value) {
        let session = session.map(str::to_owned);
        let text = body.to_string();
        let queued = self
            .db(move |s| s.enqueue_outbox(kind, session.as_deref(), &text, now_ms()))
            .await;
        match queued {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(e) => tracing::warn!("cannot queue {kind} projection: {e}"),
        }
    }

    fn deny(
        &self,
        id: &str,
        input_sha256: &str,
        reason: String,
        rule_id: Option<String>,
    ) -> CallReply {
        CallReply {
            verdict: VerdictMessage {
                id: id.to_owned(),
                decision: Decision::Deny.as_str().to_owned(),
                reason,
                rule_id,
                approved_by: None,
                updated_input: None,
                input_sha256: input_sha256.to_owned(),
            },
            result: None,
        }
    }

    fn journal_failed(&self, id: &str, hash: &str, e: &JournalError) -> CallReply {
        tracing::error!("journal append failed, denying call {id}: {e}");
        self.deny(
            id,
            hash,
            format!("agp could not record this call in its journal ({e}); denied"),
            None,
        )
    }

    /// Judges one call and, in proxy-exec mode, runs it when allowed.
    pub(crate) async fn mediate(
        self: &Arc<Self>,
        session: &Arc<SessionState>,
        req: ToolCallRequest,
        abandon: Abandon,
    ) -> Result<CallReply, Rejection> {
        if session.is_ended() {
            return Err(Rejection::new(
                ErrorCode::SessionClosed,
                "the session has ended",
            ));
        }
        if req.id.is_empty() || req.id.len() > MAX_ID_LEN {
            return Err(Rejection::new(
                ErrorCode::InvalidCall,
                "call id must be 1..=256 bytes",
            ));
        }
        if req.tool.is_empty() || req.tool.len() > MAX_ID_LEN {
            return Err(Rejection::new(
                ErrorCode::InvalidCall,
                "tool name must be 1..=256 bytes",
            ));
        }
        // Replay check, redaction, the policy and both journal appends run in ONE blocking
        // task: none of them belongs on the async workers, and one hop instead of four keeps
        // the allow path short.
        let me = self.clone();
        let state = session.clone();
        let front = tokio::task::spawn_blocking(move || me.front(&state, req))
            .await
            .map_err(|e| {
                Rejection::new(ErrorCode::Internal, format!("mediation task failed: {e}"))
            })?;
        let (call, input_sha256, redacted, verdict) = match front? {
            Front::Replied(reply) => return Ok(reply),
            Front::Judged {
                call,
                input_sha256,
                redacted,
                verdict,
            } => (call, input_sha256, redacted, verdict),
        };

        let approved_by = match verdict.decision {
            Decision::Allow => None,
            Decision::Deny => {
                let denied = ev::CallDenied {
                    call_id: call.id.clone(),
                    tool: call.tool.clone(),
                    input: redacted,
                    reason: verdict.reason.clone(),
                    rule_id: verdict.rule_id.clone(),
                };
                self.project(CallDenied::KIND, Some(&session.id), denied.to_body())
                    .await;
                return Ok(self.deny(
                    &call.id,
                    &input_sha256,
                    format!("denied by agp policy: {}", verdict.reason),
                    verdict.rule_id.clone(),
                ));
            }
            Decision::Require => {
                let end = self
                    .approve(session, &call, &input_sha256, &redacted, &verdict, &abandon)
                    .await;
                if !end.granted {
                    let denied = ev::CallDenied {
                        call_id: call.id.clone(),
                        tool: call.tool.clone(),
                        input: redacted,
                        reason: end.reason.clone(),
                        rule_id: verdict.rule_id.clone(),
                    };
                    self.project(CallDenied::KIND, Some(&session.id), denied.to_body())
                        .await;
                    return Ok(self.deny(
                        &call.id,
                        &input_sha256,
                        end.reason,
                        verdict.rule_id.clone(),
                    ));
                }
                end.by
            }
        };

        let verdict_msg = VerdictMessage {
            id: call.id.clone(),
            decision: Decision::Allow.as_str().to_owned(),
            reason: verdict.reason.clone(),
            rule_id: verdict.rule_id.clone(),
            approved_by,
            updated_input: None,
            input_sha256: input_sha256.clone(),
        };
        match session.mode {
            SessionMode::Gate => {
                session.expect_result(
                    &call.id,
                    AwaitingResult {
                        tool: call.tool.clone(),
                        input_sha256,
                    },
                );
                Ok(CallReply {
                    verdict: verdict_msg,
                    result: None,
                })
            }
            SessionMode::ProxyExec => {
                let result = self.execute(session, &call, &input_sha256, &abandon).await;
                Ok(CallReply {
                    verdict: verdict_msg,
                    result: Some(result),
                })
            }
        }
    }

    /// The blocking front half of mediation: replay check, hashing, redaction, the policy, and
    /// the durable `tool_call.requested` and `policy.decided` entries.
    fn front(&self, session: &SessionState, req: ToolCallRequest) -> Result<Front, Rejection> {
        // Held while this call enters the journal: a session that ends meanwhile waits for it,
        // and a call that comes later finds the session ended.
        let _admitted = session.gate.blocking_read();
        if session.is_ended() {
            return Err(Rejection::new(
                ErrorCode::SessionClosed,
                "the session has ended",
            ));
        }
        match self.store.record_call(&session.id, &req.id, now_ms()) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Rejection::new(
                    ErrorCode::ReplayedId,
                    format!("call id {:?} was already used in this session", req.id),
                ))
            }
            Err(e) => {
                tracing::error!("state database failed: {e}");
                return Err(Rejection::new(
                    ErrorCode::Internal,
                    "agp state is unavailable",
                ));
            }
        }

        let call = ToolCall {
            id: req.id,
            session: session.id.clone(),
            tool_use_id: req.tool_use_id,
            tool: req.tool,
            input: req.input,
            cwd: PathBuf::from(&req.cwd),
        };
        let hashed = if call.input.is_object() {
            call.input_sha256().map_err(|e| e.to_string())
        } else {
            Err("tool input must be a JSON object".to_owned())
        };
        let input_sha256 = match hashed {
            Ok(h) => h,
            Err(problem) => {
                return Ok(Front::Replied(
                    self.refuse_unhashable(session, &call, problem),
                ))
            }
        };

        let redacted = self.parts.redactor.redact_value(&call.input);
        let requested = ev::ToolCallRequested {
            call_id: call.id.clone(),
            tool_use_id: call.tool_use_id.clone(),
            tool: call.tool.clone(),
            input: redacted.clone(),
            input_sha256: Some(input_sha256.clone()),
            input_error: None,
            cwd: call.cwd.clone(),
            mode: session.mode.as_str().to_owned(),
        };
        // Evaluating acts on nothing and cannot fail, so it runs before the request entry is
        // durable: both entries go in as one batch (consecutive, one durable wait), and nothing
        // is answered before both are.
        let verdict = self.parts.policy.evaluate(&call, &session.ctx);
        let decided = ev::PolicyDecided {
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            input_sha256: Some(input_sha256.clone()),
            decision: verdict.decision,
            reason: verdict.reason.clone(),
            rule_id: verdict.rule_id.clone(),
            deciding_part: Some(verdict.deciding_part.clone()),
            policy_sha256: verdict.policy_sha256.clone(),
            parts: Some(verdict.parts.clone()),
        };
        let events = [
            (
                ToolCallRequested::KIND,
                Some(session.id.as_str()),
                requested.to_body(),
            ),
            (
                PolicyDecided::KIND,
                Some(session.id.as_str()),
                decided.to_body(),
            ),
        ];
        if let Err(e) = self.parts.journal.append_batch(&events) {
            return Ok(Front::Replied(self.journal_failed(
                &call.id,
                &input_sha256,
                &e,
            )));
        }
        Ok(Front::Judged {
            call,
            input_sha256,
            redacted,
            verdict,
        })
    }

    /// A call whose input cannot be hashed canonically (floats, non-object) cannot be bound to an
    /// approval: journal it without the input and deny.
    fn refuse_unhashable(
        &self,
        session: &SessionState,
        call: &ToolCall,
        problem: String,
    ) -> CallReply {
        let reason = format!("input refused: {problem}");
        let requested = ev::ToolCallRequested {
            call_id: call.id.clone(),
            tool_use_id: call.tool_use_id.clone(),
            tool: call.tool.clone(),
            input: Value::Null,
            input_sha256: None,
            input_error: Some(problem),
            cwd: call.cwd.clone(),
            mode: session.mode.as_str().to_owned(),
        };
        let decided = ev::PolicyDecided {
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            input_sha256: None,
            decision: Decision::Deny,
            reason: reason.clone(),
            rule_id: Some("agp.invalid-input".into()),
            deciding_part: None,
            policy_sha256: self.parts.policy.policy_sha256(),
            parts: None,
        };
        let events = [
            (
                ToolCallRequested::KIND,
                Some(session.id.as_str()),
                requested.to_body(),
            ),
            (
                PolicyDecided::KIND,
                Some(session.id.as_str()),
                decided.to_body(),
            ),
        ];
        if let Err(e) = self.parts.journal.append_batch(&events) {
            return self.journal_failed(&call.id, "", &e);
        }
        self.deny(&call.id, "", reason, Some("agp.invalid-input".into()))
    }

    fn remembered_by(&self, key: &RememberKey) -> Option<Vec<Approver>> {
        let mut map = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Expired entries go on every lookup, so the map never outgrows the live window.
        map.retain(|_, (until, _)| *until > now);
        map.get(key).map(|(_, by)| by.clone())
    }

    fn remember(&self, key: RememberKey, secs: u64, by: Vec<Approver>) {
        let until = Instant::now() + Duration::from_secs(secs);
        self.remembered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (until, by));
    }

    /// Puts a `require` to the approval channel and journals how it ended. Every path that is
    /// not a journaled grant denies.
    async fn approve(
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
        let key = RememberKey::of(call, input_sha256, verdict.rule_id.as_deref());
        // Only a rule that allows remembering may reuse an earlier approval.
        let may_remember = spec.remember_secs.is_some_and(|s| s > 0);
        let remembered = if may_remember {
            self.remembered_by(&key)
        } else {
            None
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

        let now = now_ms();
        let expires_at_ms = now + self.config.approval_timeout.as_millis() as i64;
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
            expires_at_ms: expires_at_ms as u64,
        };
        let row = PendingRow {
            session: session.id.clone(),
            call_id: call.id.clone(),
            input_sha256: input_sha256.to_owned(),
            request_json: serde_json::to_string(&request).unwrap_or_default(),
            expires_at_ms,
        };
        if let Err(e) = self.db(move |s| s.insert_pending(&row, now)).await {
            return denied(format!(
                "agp could not record the pending approval ({e}); denied"
            ));
        }
        let requested = ev::ApprovalRequested {
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            input_sha256: input_sha256.to_owned(),
            rule_id: verdict.rule_id.clone(),
            reason: verdict.reason.clone(),
            channel: channel.clone(),
            approvers: request.approvers.clone(),
            quorum: request.quorum,
            expires_at_ms,
        };
        if let Err(e) = self.record(Some(&session.id), &requested).await {
            self.resolve(&session.id, &call.id, input_sha256, "failed")
                .await;
            return denied(format!(
                "agp could not journal the approval request ({e}); denied"
            ));
        }
        drop(admitted);

        let started = Instant::now();
        let asked = tokio::time::timeout(
            self.config.approval_timeout,
            self.parts.channel.request_approval(&request),
        );
        let outcome = tokio::select! {
            asked = asked => match asked {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(e)) => ApprovalOutcome::Unavailable {
                    reason: e.to_string(),
                },
                Err(_elapsed) => ApprovalOutcome::Timeout,
            },
            // The channel future is dropped (channels are cancel-safe): a late click is void.
            () = abandon.raised() => ApprovalOutcome::Unavailable {
                reason: "the agent disconnected before a decision".into(),
            },
            // The session's end settled this approval already; `conclude` finds it resolved.
            () = session.ended() => ApprovalOutcome::Unavailable {
                reason: "the session ended before a decision".into(),
            },
        };
        self.conclude(
            session.id.as_str(),
            &request,
            &channel,
            outcome,
            spec.remember_secs.filter(|s| *s > 0).map(|s| (s, key)),
            started.elapsed(),
        )
        .await
    }

    pub(crate) async fn resolve(
        &self,
        session: &str,
        call_id: &str,
        hash: &str,
        status: &'static str,
    ) -> bool {
        let (s, c, h) = (session.to_owned(), call_id.to_owned(), hash.to_owned());
        match self
            .db(move |st| st.resolve_pending(&s, &c, &h, status, now_ms()))
            .await
        {
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
        remember: Option<(u64, RememberKey)>,
        waited: Duration,
    ) -> ApprovalEnd {
        let outcome = self.check_grant(request, outcome);
        let (status, kind, body, end) = match &outcome {
            ApprovalOutcome::Granted { by } => (
                "granted",
                APPROVAL_GRANTED,
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
                APPROVAL_DENIED,
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
                APPROVAL_TIMEOUT,
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
                APPROVAL_DENIED,
                ev::ApprovalDenied {
                    call_id: request.call_id.clone(),
                    input_sha256: request.input_sha256.clone(),
                    by: None,
                    reason: Some(reason.clone()),
                    channel: channel.to_owned(),
                    waited_ms: None,
                    unavailable: Some(true),
                    cancelled: None,
                }
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
        if end.granted {
            if let (Some((secs, key)), ApprovalOutcome::Granted { by }) = (remember, &outcome) {
                self.remember(key, secs, by.clone());
            }
        }
        end
    }

    /// A grant counts only with enough distinct approvers, each allowed by the rule (the
    /// operator's explicit `--auto-approve` stands in for the allowlist and is journaled as such).
    fn check_grant(&self, request: &ApprovalRequest, outcome: ApprovalOutcome) -> ApprovalOutcome {
        let ApprovalOutcome::Granted { by } = &outcome else {
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

    /// Runs an allowed call in the session's sandbox and journals its result. The result is
    /// only returned once journaled; otherwise the output is withheld.
    async fn execute(
        &self,
        session: &Arc<SessionState>,
        call: &ToolCall,
        input_sha256: &str,
        abandon: &Abandon,
    ) -> ExecResult {
        let ran = match session.sandbox.clone() {
            _ if abandon.is_raised() => Err(ToolError::Invalid(
                "the agent disconnected before the call ran; not run".into(),
            )),
            None => Err(ToolError::Invalid("this session has no sandbox".into())),
            Some(sandbox) => {
                let tool = call.tool.clone();
                let input = call.input.clone();
                let cwd = exec::call_cwd(&session.repo, &call.cwd.to_string_lossy());
                let timeout = self.config.exec_timeout;
                tokio::task::spawn_blocking(move || {
                    exec::run_tool(sandbox.as_ref(), &tool, &input, &cwd, timeout)
                })
                .await
                .unwrap_or_else(|e| Err(ToolError::Invalid(format!("sandbox task failed: {e}"))))
            }
        };
        // What the sandbox enforced on the way: journaled on their own, and told to the agent.
        let (limit, refused, removed) = match &ran {
            Ok(out) => (
                out.limit_exceeded.clone(),
                false,
                out.git_metadata_removed.clone(),
            ),
            Err(ToolError::Sandbox(SandboxError::LimitExceeded(hit))) => {
                (Some(hit.clone()), true, Vec::new())
            }
            Err(_) => (None, false, Vec::new()),
        };
        let (exit_code, timed_out, mut raw, cut_by_sandbox, error) = match ran {
            Ok(out) => (
                out.exit_code,
                out.timed_out,
                out.output,
                out.truncated,
                None,
            ),
            Err(e) => (None, false, Vec::new(), false, Some(e.to_string())),
        };
        if let (Some(hit), false) = (&limit, refused) {
            raw.extend_from_slice(format!("\nagp: {}\n", hit.message).as_bytes());
        }
        if !removed.is_empty() {
            raw.extend_from_slice(
                format!(
                    "\nagp: git metadata is not the agent's to change; removed: {}\n",
                    removed.join("; ")
                )
                .as_bytes(),
            );
        }
        if let Some(hit) = &limit {
            let body = ev::SandboxLimitExceeded::new(&call.id, hit, refused);
            if let Err(e) = self.record(Some(&session.id), &body).await {
                tracing::error!("could not journal a sandbox limit hit: {e}");
            }
        }
        if !removed.is_empty() {
            let body = ev::SandboxGitMetadataRemoved {
                call_id: call.id.clone(),
                removed: removed.clone(),
            };
            if let Err(e) = self.record(Some(&session.id), &body).await {
                tracing::error!("could not journal removed git metadata: {e}");
            }
        }
        let output_sha256 = sha256_hex(&raw);
        let text = match &error {
            Some(e) => format!("agp: tool not run: {e}"),
            None => String::from_utf8_lossy(&raw).into_owned(),
        };
        let redacted = self.parts.redactor.redact_text(&text);
        let (shown, cut) = truncate_utf8(&redacted, self.config.output_limit);
        let result = ExecResult {
            id: call.id.clone(),
            ok: error.is_none() && exit_code == Some(0) && !timed_out,
            exit_code,
            timed_out,
            output: shown.to_owned(),
            truncated: cut || cut_by_sandbox,
            output_sha256,
        };
        let body = ev::ToolCallResult {
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            input_sha256: input_sha256.to_owned(),
            ok: result.ok,
            exit_code: Some(exit_code),
            timed_out: Some(timed_out),
            error: Some(error),
            output: result.output.clone(),
            truncated: result.truncated,
            output_bytes: Some(raw.len() as u64),
            output_sha256: result.output_sha256.clone(),
            reported_by: "sandbox".into(),
        };
        match self.record(Some(&session.id), &body).await {
            Ok(()) => result,
            Err(e) => ExecResult {
                ok: false,
                output: format!("agp could not journal the result ({e}); output withheld"),
                truncated: false,
                ..result
            },
        }
    }

    /// Gate mode: journals what the agent reports a tool produced.
    pub(crate) async fn record_result(
        &self,
        session: &Arc<SessionState>,
        result: ToolCallResult,
    ) -> Result<(), Rejection> {
        let valid_hash = result.output_sha256.len() == 64
            && result
                .output_sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid_hash {
            return Err(Rejection::new(
                ErrorCode::InvalidCall,
                "output_sha256 must be 64 lowercase hex digits",
            ));
        }
        let Some(awaited) = session.take_expected(&result.id) else {
            if session.was_reported(&result.id) {
                // The same call reported again (another post event of the harness): its
                // first result stands, nothing more to journal.
                return Ok(());
            }
            return Err(Rejection::new(
                ErrorCode::UnknownCall,
                format!(
                    "no allowed call {:?} awaits a result in this session",
                    result.id
                ),
            ));
        };
        let redacted = self.parts.redactor.redact_text(&result.output);
        let (shown, cut) = truncate_utf8(&redacted, self.config.output_limit);
        // The harness says which input the tool ran with; only the approved one links the
        // result to the approved call. Anything else (another input, or none named) is a
        // mismatch of its own kind, so no reader of the journal takes it for the call's result.
        let (kind, body) = if result.input_sha256.as_deref() == Some(&awaited.input_sha256) {
            let body = ev::ToolCallResult {
                call_id: result.id,
                tool: awaited.tool,
                input_sha256: awaited.input_sha256,
                ok: result.ok,
                exit_code: None,
                timed_out: None,
                error: None,
                output: shown.to_owned(),
                truncated: cut,
                output_bytes: None,
                output_sha256: result.output_sha256,
                reported_by: "agent".into(),
            };
            (ev::ToolCallResult::KIND, body.to_body())
        } else {
            let reported = result
                .input_sha256
                .as_deref()
                .map(|h| truncate_utf8(h, 128).0.to_owned());
            let reason = match &reported {
                Some(_) => "the reported result ran with an input other than the approved one",
                None => "the reported result does not say which input it ran with",
            };
            let body = ev::ToolCallResultMismatch {
                call_id: result.id,
                tool: awaited.tool,
                approved_input_sha256: awaited.input_sha256,
                reported_input_sha256: reported,
                reason: reason.to_owned(),
                ok: result.ok,
                output: shown.to_owned(),
                truncated: cut,
                output_sha256: result.output_sha256,
                reported_by: "agent".into(),
            };
            (ToolCallResultMismatch::KIND, body.to_body())
        };
        self.journal(kind, Some(&session.id), body)
            .await
            .map_err(|e| Rejection::new(ErrorCode::Internal, format!("result not journaled: {e}")))
    }
}
