//! Human approval of `require` verdicts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::BoxFuture;

/// What an approver is asked to decide. Bound to one exact call by `call_id` and
/// `input_sha256`: an outcome for any other pair must be refused by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub session: String,
    pub call_id: String,
    pub tool: String,
    /// The input after redaction: never show an approver a secret value.
    pub redacted_input: Value,
    pub input_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub reason: String,
    /// Allowed approver identities (empty: whoever the channel itself accepts).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Unix time in milliseconds after which the request is void (a timeout denies).
    pub expires_at_ms: u64,
}

/// A person (or, loudly, a flag such as `--auto-approve`) who decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// Channel-specific identity: Slack user id, `tty:<user>`, `auto-approve`, ...
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The channel it came through (`terminal`, `slack`, `web`, `auto`).
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ApprovalOutcome {
    /// Quorum reached.
    Granted { by: Vec<Approver> },
    /// Someone allowed to decide said no (any deny wins).
    Denied {
        by: Approver,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Nobody decided in time.
    Timeout,
    /// The channel could not put the question to anyone (no TTY, channel down, ...).
    Unavailable { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("approval channel {channel} failed: {message}")]
    Failed { channel: String, message: String },
}

/// A way to reach human approvers. Implementations must be cancel-safe: the caller drops the
/// future on timeout, and a decision arriving afterwards must not be applied.
pub trait ApprovalChannel: Send + Sync {
    /// Short name journaled with outcomes (`terminal`, `slack`, ...).
    fn name(&self) -> &str;

    /// Put the request to approvers and wait for a decision.
    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>>;

    /// Tell humans about an event (session start/end, a denial). Best effort: failures are
    /// retried through the outbox and never block the loop.
    fn project<'a>(
        &'a self,
        kind: &'a str,
        session: Option<&'a str>,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;
}
