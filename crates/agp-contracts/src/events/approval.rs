//! `approval.*` bodies.

use super::{
    Event, APPROVAL_DENIED, APPROVAL_GRANTED, APPROVAL_REJECTED, APPROVAL_REQUESTED,
    APPROVAL_TIMEOUT,
};
use crate::approval::Approver;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A call that policy requires approval for was put to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequested {
    pub call_id: String,
    pub tool: crate::Tool,
    pub input_sha256: String,
    pub rule_id: Option<String>,
    pub reason: String,
    pub channel: String,
    /// Allowed approver identities (empty: whoever the channel accepts).
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub expires_at_ms: i64,
}

impl Event for ApprovalRequested {
    const KIND: &'static str = APPROVAL_REQUESTED;
}

/// Approvers granted the call (or an earlier grant was remembered for it).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalGranted {
    pub call_id: String,
    pub input_sha256: String,
    pub by: Vec<Approver>,
    pub channel: String,
    /// Set when no one was asked: a remembered approval of the same call was reused.
    pub remembered: Option<bool>,
    pub waited_ms: Option<u64>,
}

impl Event for ApprovalGranted {
    const KIND: &'static str = APPROVAL_GRANTED;
}

/// The call was not approved: an approver denied it (`by` set), no approver was available
/// (`unavailable`), or its session ended first (`unavailable` and `cancelled`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalDenied {
    pub call_id: String,
    pub input_sha256: String,
    /// Who denied it; `null` when no one did.
    #[serialize_always]
    pub by: Option<Approver>,
    #[serialize_always]
    pub reason: Option<String>,
    pub channel: String,
    pub waited_ms: Option<u64>,
    pub unavailable: Option<bool>,
    pub cancelled: Option<bool>,
}

impl ApprovalDenied {
    /// No approver decided: none was available (the caller sets `cancelled` when the session
    /// ended first).
    pub fn unavailable(call_id: &str, input_sha256: &str, channel: &str, reason: String) -> Self {
        Self {
            call_id: call_id.to_owned(),
            input_sha256: input_sha256.to_owned(),
            by: None,
            reason: Some(reason),
            channel: channel.to_owned(),
            waited_ms: None,
            unavailable: Some(true),
            cancelled: None,
        }
    }
}

impl Event for ApprovalDenied {
    const KIND: &'static str = APPROVAL_DENIED;
}

/// No decision came in time (or the daemon found the request expired after a restart:
/// `recovered`, with a `reason`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalTimeout {
    pub call_id: String,
    pub input_sha256: String,
    pub channel: String,
    pub waited_ms: Option<u64>,
    pub recovered: Option<bool>,
    pub reason: Option<String>,
}

impl Event for ApprovalTimeout {
    const KIND: &'static str = APPROVAL_TIMEOUT;
}

/// A channel refused an approval click (unknown button, not an allowed approver, stale, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRejected {
    pub channel: String,
    pub reason: String,
    pub user: ClickUser,
    /// The button's action id.
    pub action: String,
    pub call_id: Option<String>,
    pub input_sha256: Option<String>,
}

/// Who clicked, as the channel identified them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClickUser {
    pub id: String,
    pub name: Option<String>,
}

impl Event for ApprovalRejected {
    const KIND: &'static str = APPROVAL_REJECTED;
}
