//! The governed loop for one tool call.

mod approve;
mod egress;
mod execute;
mod mode;
mod web;
mod web_queue;

use std::path::PathBuf;
use std::sync::Arc;
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

pub use egress::{EgressAnswer, EgressAsk, EGRESS_TOOL};
#[cfg(test)]
pub(crate) use web::web_approver;
pub(crate) use web_queue::WebDecide;

use crate::exec::{self, ToolError};
use crate::session::{AwaitingResult, Registry, SessionState};
use crate::store::{PendingRow, StateStore, StoreError};
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
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) sessions: Registry,
    /// Lease owner id of this daemon instance.
    pub(crate) owner: String,
    pub(crate) outbox_wake: tokio::sync::Notify,
    /// One delivery pass at a time: an item is never projected twice concurrently.
    pub(crate) outbox_lock: tokio::sync::Mutex<()>,
    /// Held (shared) by a control request until its answer is sent: a daemon stopping waits
    /// for it, so the one who stopped a session is told, even when the stop ends the daemon's
    /// run (`agp run`).
    pub(crate) control: Arc<tokio::sync::RwLock<()>>,
    /// Pending approvals as the web console sees and decides them.
    pub(crate) web: web_queue::WebQueue,
}

/// What must be identical for a remembered "allow for this session" to cover a later call: the
/// same session, rule (as judged for the new call), tool, working directory and canonical input,
/// under the same policy. The input hash alone would let an approval of one tool (or one
/// directory) cover another with the same input. `None` when the call has no rule to bound it.
pub(crate) fn remember_key(
    call: &ToolCall,
    input_sha256: &str,
    verdict: &Verdict,
) -> Option<crate::store::RememberedKey> {
    Some(crate::store::RememberedKey {
        session: call.session.clone(),
        rule_id: verdict.rule_id.clone()?,
        tool: call.tool.name().into_owned(),
        cwd: call.cwd.to_string_lossy().into_owned(),
        input_sha256: input_sha256.to_owned(),
        policy_sha256: verdict.policy_sha256.clone(),
    })
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
        store: Arc<dyn StateStore>,
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
            control: Arc::new(tokio::sync::RwLock::new(())),
            web: web_queue::WebQueue::default(),
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

    /// Appends a typed event under its own kind. Returns only once the entry is durable.
    pub(crate) async fn record<E: Event>(
        &self,
        session: Option<&str>,
        event: &E,
    ) -> Result<(), JournalError> {
        self.journal(E::KIND, session, event.to_body()).await
    }

    /// Queues a best-effort projection to the approval channel (never blocks the loop).
    pub(crate) async fn project(&self, session: Option<&str>, event: Projection) {
        let session = session.map(str::to_owned);
        let kind = event.kind();
        let text = event.body().to_string();
        let queued = self
            .store
            .enqueue_outbox(kind, session.as_deref(), &text, now_ms())
            .await;
        match queued {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(e) => tracing::warn!("cannot queue {kind} projection: {e}"),
        }
    }

    fn deny(id: &str, input_sha256: &str, reason: String, rule_id: Option<String>) -> CallReply {
        CallReply {
            verdict: VerdictMessage {
                id: id.to_owned(),
                decision: Decision::Deny,
                reason,
                rule_id,
                approved_by: None,
                updated_input: None,
                input_sha256: input_sha256.to_owned(),
            },
            result: None,
        }
    }

    fn journal_failed(id: &str, hash: &str, e: &JournalError) -> CallReply {
        tracing::error!("journal append failed, denying call {id}: {e}");
        Self::deny(
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
        let tool_len = req.tool.name().len();
        if tool_len == 0 || tool_len > MAX_ID_LEN {
            return Err(Rejection::new(
                ErrorCode::InvalidCall,
                "tool name must be 1..=256 bytes",
            ));
        }
        // Reserved for agp's own approvals (egress destinations): a harness cannot pose one.
        if req.tool.name().starts_with("agp:") {
            return Err(Rejection::new(
                ErrorCode::InvalidCall,
                "tool names starting with \"agp:\" are reserved for agp",
            ));
        }
        crate::git_scrub::on_event(self, session, "before_call", Some(&req.id)).await;
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
                let told = format!("denied by agp policy: {}", verdict.reason);
                let denied = (verdict.reason.clone(), told);
                let reply = self
                    .denied(session, &call, &input_sha256, redacted, &verdict, denied)
                    .await;
                return Ok(reply);
            }
            Decision::Require => {
                let end = self
                    .approve(session, &call, &input_sha256, &redacted, &verdict, &abandon)
                    .await;
                if !end.granted {
                    let denied = (end.reason.clone(), end.reason);
                    let reply = self
                        .denied(session, &call, &input_sha256, redacted, &verdict, denied)
                        .await;
                    return Ok(reply);
                }
                end.by
            }
        };

        let verdict_msg = VerdictMessage {
            id: call.id.clone(),
            decision: Decision::Allow,
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
        // `front` runs on a blocking thread (it holds the session gate while it journals).
        let recorded = match self.store.blocking_sqlite() {
            Some(sqlite) => sqlite.record_call(&session.id, &req.id, now_ms()),
            None => tokio::runtime::Handle::current().block_on(self.store.record_call(
                &session.id,
                &req.id,
                now_ms(),
            )),
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                return Err(Rejection::new(
                    ErrorCode::ReplayedId,
                    format!("call id {:?} was already used in this session", req.id),
                ))
            }
            // Shared state down: refused (fail closed), said so, and journaled locally with
            // the rejection; the same call can be made again once the state is back.
            Err(e) if e.is_unavailable() => {
                tracing::error!("{e}");
                return Err(Rejection::new(
                    ErrorCode::Internal,
                    format!("{e}; the call is refused until it is back"),
                ));
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
        let (verdict, decided) = mode::judge(
            self.parts.policy.as_ref(),
            self.config.policy_mode,
            &call,
            &session.ctx,
            &input_sha256,
        );
        session.set_recent_call(serde_json::json!({
            "call_id": call.id,
            "tool": call.tool.name(),
            "input": redacted,
        }));
        if let Err(e) = self.journal_judged(session, &requested, &decided) {
            return Ok(Front::Replied(Self::journal_failed(
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

    /// A denied call: the channel is told `reason`, the agent `told`.
    async fn denied(
        &self,
        session: &SessionState,
        call: &ToolCall,
        input_sha256: &str,
        redacted: Value,
        verdict: &Verdict,
        (reason, told): (String, String),
    ) -> CallReply {
        let denied = ev::CallDenied {
            call_id: call.id.clone(),
            tool: call.tool.clone(),
            input: redacted,
            reason,
            rule_id: verdict.rule_id.clone(),
        };
        self.project(Some(&session.id), denied.into()).await;
        Self::deny(&call.id, input_sha256, told, verdict.rule_id.clone())
    }

    /// A call's request and the policy's decision on it, as one batch.
    fn journal_judged(
        &self,
        session: &SessionState,
        requested: &ToolCallRequested,
        decided: &PolicyDecided,
    ) -> Result<(), JournalError> {
        let session = Some(session.id.as_str());
        self.parts.journal.append_batch(&[
            (ToolCallRequested::KIND, session, requested.to_body()),
            (PolicyDecided::KIND, session, decided.to_body()),
        ])?;
        Ok(())
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
            mode: None,
            shadow_verdict: None,
        };
        if let Err(e) = self.journal_judged(session, &requested, &decided) {
            return Self::journal_failed(&call.id, "", &e);
        }
        Self::deny(&call.id, "", reason, Some("agp.invalid-input".into()))
    }
}
