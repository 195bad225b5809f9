//! Journal event kinds: dotted nouns with past-tense outcomes.
//!
//! Kept as string constants (not an enum) because the journal must carry kinds written by newer
//! versions of agp, and an auditor's verifier must not reject a log for a kind it does not know.

pub const SESSION_STARTED: &str = "session.started";
pub const SESSION_ENDED: &str = "session.ended";
pub const SESSION_REAPED: &str = "session.reaped";
/// The end-of-session integrity report of the repository: what dangerous entries the session
/// left and what was done to each (bits cleared, moved to the quarantine, kept as pre-existing).
pub const SESSION_INTEGRITY: &str = "session.integrity";
pub const TOOL_CALL_REQUESTED: &str = "tool_call.requested";
pub const POLICY_DECIDED: &str = "policy.decided";
/// A running daemon loaded a changed policy file. Body: `path`, `old_sha256`, `new_sha256`,
/// `trigger`.
pub const POLICY_RELOADED: &str = "policy.reloaded";
/// A running daemon refused a changed policy file and kept the one in force. Body: `path`,
/// `error` (`file:line:col: …`), `kept_sha256`, `trigger`.
pub const POLICY_RELOAD_REFUSED: &str = "policy.reload_refused";
pub const APPROVAL_REQUESTED: &str = "approval.requested";
pub const APPROVAL_GRANTED: &str = "approval.granted";
pub const APPROVAL_DENIED: &str = "approval.denied";
pub const APPROVAL_TIMEOUT: &str = "approval.timeout";
pub const APPROVAL_REJECTED: &str = "approval.rejected";
pub const TOOL_CALL_RESULT: &str = "tool_call.result";
/// A gate-mode result whose reported input is not the input that was approved: journaled
/// instead of a `tool_call.result`, so it is never linked to the approved call.
pub const TOOL_CALL_RESULT_MISMATCH: &str = "tool_call.result_mismatch";
pub const SANDBOX_PREFLIGHT: &str = "sandbox.preflight";
/// A command hit a session bound (memory, processes, repository growth): it was stopped, or
/// refused. Body: `call_id`, `limit`, `bound`, `observed`, `refused`, `message`.
pub const SANDBOX_LIMIT_EXCEEDED: &str = "sandbox.limit_exceeded";
/// Git metadata a command created or replaced (config-like files, hooks, alternates, state a
/// host git would act on) was moved to the git directory's `agp-quarantine/` (or deleted)
/// after it. Body: `call_id`, `removed` (paths, what, where to). In gate mode the daemon
/// scrubs while the session lives: then also `scrubbed_by: "daemon"` and `when`
/// (`before_call`, `after_call`, `periodic`, `session_end`; `call_id` null for the last two).
pub const SANDBOX_GIT_METADATA_REMOVED: &str = "sandbox.git_metadata_removed";
pub const EGRESS_ALLOWED: &str = "egress.allowed";
pub const EGRESS_DENIED: &str = "egress.denied";
/// An allowed connection whose upstream could not be reached (DNS, refused, timed out).
pub const EGRESS_UPSTREAM_FAILED: &str = "egress.upstream_failed";
/// One request through an inspected host (TLS terminated, judged one by one), or a burst of
/// identical ones summarized as one record with a count.
pub const EGRESS_REQUEST: &str = "egress.request";
pub const GATEWAY_REJECTED: &str = "gateway.rejected";
pub const KEY_ROTATED: &str = "key.rotated";
pub const JOURNAL_RECOVERED: &str = "journal.recovered";
pub const JOURNAL_CREATED: &str = "journal.created";
/// Before a live agent starts, agp proved its hook wiring is active (e.g. Codex reports agp's
/// hook as managed and enabled).
pub const INTENDANT_WIRING_VERIFIED: &str = "intendant.wiring_verified";
/// The agent CLI's version is outside the versions agp was tested with (it runs, warned).
pub const INTENDANT_VERSION_UNTESTED: &str = "intendant.version_untested";

/// Kinds projected to approval channels (Slack, terminal notes) without being journal kinds of
/// their own: a denial is journaled as `policy.decided` / `approval.denied`.
pub const PROJECTED_CALL_DENIED: &str = "call.denied";
