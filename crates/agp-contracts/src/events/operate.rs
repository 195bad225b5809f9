//! Operating a running session: the kill switch (`session.stopped`), remembered "allow for this
//! session" answers (`approval.remembered`) and each vote of a quorum as it arrives
//! (`approval.vote`). Kept apart from the older kinds so each slice of the work adds its own.

use super::Event;
use crate::approval::Approver;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A session was stopped by a person (`agp sessions stop`, a channel's Stop button): its agent
/// or running command was ended and its pending approvals cancelled; `session.ended` follows
/// with status `stopped`.
pub const SESSION_STOPPED: &str = "session.stopped";
/// An approver answered "allow for this session": the exact call (rule, tool, working
/// directory, canonical input) is granted without asking until `expires_at_ms`, in this
/// session and under this policy only. Each later use is an `approval.granted` with
/// `remembered: true`.
pub const APPROVAL_REMEMBERED: &str = "approval.remembered";
/// One vote of an approval as it arrived (before the quorum decides).
pub const APPROVAL_VOTE: &str = "approval.vote";

/// See [`SESSION_STOPPED`].
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStopped {
    pub session: String,
    /// Who stopped it: the local OS user (`via: "cli"`) or the channel's person.
    pub by: Approver,
    pub reason: Option<String>,
    /// What was running and was ended (`agent process`, `sandboxed command`, ...).
    pub ended: Vec<String>,
    /// Call ids of the approvals that were pending and are cancelled.
    pub cancelled_approvals: Vec<String>,
    /// The socket peer that asked (uid, pid), for a stop that came over the gateway.
    pub peer: Option<serde_json::Value>,
}

impl Event for SessionStopped {
    const KIND: &'static str = SESSION_STOPPED;
}

/// See [`APPROVAL_REMEMBERED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRemembered {
    /// The call whose approval is remembered.
    pub call_id: String,
    pub tool: crate::Tool,
    pub cwd: String,
    pub input_sha256: String,
    pub rule_id: Option<String>,
    /// The policy in force: another policy (a reload) does not reuse the answer.
    pub policy_sha256: String,
    pub by: Vec<Approver>,
    pub channel: String,
    /// Unix ms after which the answer no longer applies (the rule's `remember` bound).
    pub expires_at_ms: i64,
}

impl Event for ApprovalRemembered {
    const KIND: &'static str = APPROVAL_REMEMBERED;
}

/// See [`APPROVAL_VOTE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalVote {
    pub call_id: String,
    pub input_sha256: String,
    pub by: Approver,
    /// `allow`, `allow_for_session` or `deny`.
    pub vote: String,
    pub channel: String,
    /// Distinct allow votes counted so far, and how many the quorum needs.
    pub have: u32,
    pub need: u32,
}

impl Event for ApprovalVote {
    const KIND: &'static str = APPROVAL_VOTE;
}
