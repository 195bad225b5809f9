//! `sandbox.*` bodies.

use super::{Event, SANDBOX_GIT_METADATA_REMOVED, SANDBOX_LIMIT_EXCEEDED, SANDBOX_PREFLIGHT};
use crate::sandbox::{Isolation, LimitExceeded, PreflightCheck, PreflightReport, SandboxTarget};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the sandbox proved from inside before a session ran in it. The daemon writes
/// `session`, `isolation` and the `report` (or `passed: false` and the `error` that stopped
/// the preflight); `agp run` with a live agent writes the report's own members at the top.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxPreflight {
    pub session: Option<String>,
    pub isolation: Option<Isolation>,
    pub report: Option<PreflightReport>,
    pub error: Option<String>,
    pub provider: Option<String>,
    pub passed: Option<bool>,
    pub checks: Option<Vec<PreflightCheck>>,
    pub duration_ms: Option<u64>,
    /// The container's engine, runtime and pinned image (flat form; the daemon's is in
    /// `report`).
    pub target: Option<SandboxTarget>,
}

impl SandboxPreflight {
    fn empty() -> Self {
        Self {
            session: None,
            isolation: None,
            report: None,
            error: None,
            provider: None,
            passed: None,
            checks: None,
            duration_ms: None,
            target: None,
        }
    }

    /// The daemon's preflight of a session's sandbox.
    pub fn proven(session: &str, isolation: Isolation, report: PreflightReport) -> Self {
        Self {
            session: Some(session.to_owned()),
            isolation: Some(isolation),
            report: Some(report),
            ..Self::empty()
        }
    }

    /// The daemon's preflight that could not run.
    pub fn failed(session: &str, isolation: Isolation, error: String) -> Self {
        Self {
            session: Some(session.to_owned()),
            isolation: Some(isolation),
            passed: Some(false),
            error: Some(error),
            ..Self::empty()
        }
    }

    /// A report journaled as it is (a live agent's own sandbox).
    pub fn flat(report: PreflightReport) -> Self {
        Self {
            provider: Some(report.provider),
            passed: Some(report.passed),
            checks: Some(report.checks),
            duration_ms: Some(report.duration_ms),
            target: report.target,
            ..Self::empty()
        }
    }
}

impl Event for SandboxPreflight {
    const KIND: &'static str = SANDBOX_PREFLIGHT;
}

/// A command hit a session bound: it was stopped, or (`refused`) not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxLimitExceeded {
    pub call_id: String,
    /// `session_memory`, `processes` or `repo_growth`.
    pub limit: String,
    pub bound: u64,
    pub observed: u64,
    pub refused: bool,
    pub message: String,
}

impl SandboxLimitExceeded {
    pub fn new(call_id: &str, hit: &LimitExceeded, refused: bool) -> Self {
        Self {
            call_id: call_id.to_owned(),
            limit: hit.limit.clone(),
            bound: hit.bound,
            observed: hit.observed,
            refused,
            message: hit.message.clone(),
        }
    }
}

impl Event for SandboxLimitExceeded {
    const KIND: &'static str = SANDBOX_LIMIT_EXCEEDED;
}

/// Git metadata a command created or replaced was moved out of git's reach (or deleted):
/// after a sandboxed command, or by the daemon's scrub of a gate-mode repository
/// (`scrubbed_by: daemon`, `when`; `call_id` is `null` when no call prompted it).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxGitMetadataRemoved {
    #[serialize_always]
    pub call_id: Option<String>,
    /// `path (what it was)` per entry, with where it went.
    pub removed: Vec<String>,
    pub scrubbed_by: Option<String>,
    /// What prompted the scrub (e.g. `session_end`).
    pub when: Option<String>,
}

impl Event for SandboxGitMetadataRemoved {
    const KIND: &'static str = SANDBOX_GIT_METADATA_REMOVED;
}
