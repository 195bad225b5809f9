//! `tool_call.*` and `policy.decided` bodies, and the `call.denied` projection.

use super::{
    nullable, Event, POLICY_DECIDED, PROJECTED_CALL_DENIED, TOOL_CALL_REQUESTED, TOOL_CALL_RESULT,
    TOOL_CALL_RESULT_MISMATCH,
};
use crate::policy::{Decision, PartFinding};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// An agent asked to run a tool. The input is journaled redacted; its hash is of the input as
/// sent. An input that cannot be hashed canonically is journaled as `null` with `input_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallRequested {
    pub call_id: String,
    /// The harness's own id of the call, `null` when it has none.
    pub tool_use_id: Option<String>,
    pub tool: crate::Tool,
    /// The redacted input, `null` when it was refused.
    pub input: Value,
    pub input_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_error: Option<String>,
    #[serde(serialize_with = "super::path_text::path")]
    pub cwd: PathBuf,
    /// `proxy-exec` or `gate`.
    pub mode: String,
}

impl Event for ToolCallRequested {
    const KIND: &'static str = TOOL_CALL_REQUESTED;
}

/// The policy's verdict on a requested call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyDecided {
    pub call_id: String,
    pub tool: crate::Tool,
    /// `null` when the input could not be hashed (and was denied for it).
    pub input_sha256: Option<String>,
    pub decision: Decision,
    pub reason: String,
    /// `null` when the policy default applied.
    pub rule_id: Option<String>,
    /// The part of a compound command that decided (`null` for a single part); absent when
    /// the input was refused before the policy judged it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schemars(with = "Option<String>")]
    pub deciding_part: Option<Option<String>>,
    pub policy_sha256: String,
    /// Every part and how it was judged; absent when the input was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartFinding>>,
    /// The daemon's policy mode when it is not `enforce` (absent: enforced). In `shadow` and
    /// `observe`, `decision` is what agp did (`allow`: the call went ahead), never the
    /// policy's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::PolicyMode>,
    /// `shadow` mode: what the policy would have done had it been enforced (`would_allow`,
    /// `would_require`, `would_deny`); `reason`, `rule_id`, `deciding_part` and `parts` are
    /// that judgment's. Absent in `observe` (nothing is judged) and when enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_verdict: Option<crate::ShadowVerdict>,
}

impl Event for PolicyDecided {
    const KIND: &'static str = POLICY_DECIDED;
}

/// What a tool produced. `reported_by` says who ran it: `sandbox` (agp ran it, proxy-exec
/// mode, with `exit_code`, `timed_out`, `error`, `output_bytes`), or in gate mode `harness` (the
/// agent's harness, its hook shown by the process tree to be the harness's, not a process the
/// agent's tools started) or `agent` (sent with the session's token, its sender not told apart).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallResult {
    pub call_id: String,
    pub tool: crate::Tool,
    pub input_sha256: String,
    pub ok: bool,
    #[serde(default, with = "nullable")]
    #[schemars(with = "Option<i32>")]
    pub exit_code: Option<Option<i32>>,
    pub timed_out: Option<bool>,
    /// Why the tool did not run (`null` when it ran).
    #[serde(default, with = "nullable")]
    #[schemars(with = "Option<String>")]
    pub error: Option<Option<String>>,
    /// The redacted output, cut to the configured limit.
    pub output: String,
    pub truncated: bool,
    /// Size of the raw output (before redaction and cutting).
    pub output_bytes: Option<u64>,
    /// SHA-256 of the raw output.
    pub output_sha256: String,
    /// `sandbox`, `harness` or `agent`.
    pub reported_by: String,
}

impl Event for ToolCallResult {
    const KIND: &'static str = TOOL_CALL_RESULT;
}

/// A gate-mode result whose reported input is not the approved one (or is not named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallResultMismatch {
    pub call_id: String,
    pub tool: crate::Tool,
    pub approved_input_sha256: String,
    /// What the harness said it ran with (cut to 128 bytes), `null` when it did not say.
    pub reported_input_sha256: Option<String>,
    pub reason: String,
    pub ok: bool,
    pub output: String,
    pub truncated: bool,
    pub output_sha256: String,
    /// `harness` or `agent`, as for a result.
    pub reported_by: String,
}

impl Event for ToolCallResultMismatch {
    const KIND: &'static str = TOOL_CALL_RESULT_MISMATCH;
}

/// A call was denied (by policy or for want of an approval): projected to approval channels
/// only; the journal has it as `policy.decided` / `approval.denied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallDenied {
    pub call_id: String,
    pub tool: crate::Tool,
    /// The redacted input.
    pub input: Value,
    pub reason: String,
    pub rule_id: Option<String>,
}

impl Event for CallDenied {
    const KIND: &'static str = PROJECTED_CALL_DENIED;
}
