//! The end-of-session integrity report of a repository, as `agp-integrity` makes it and
//! `session.integrity` journals it.
//!
//! Its home is here, not in `agp-integrity`, so that the journal event, the check and every
//! reader share one type (`agp-integrity` re-exports it). A check that could not run at all
//! journals only `complete: false`, why, and no findings: the scan's own members
//! (`root`, `entries_scanned`, `elapsed_ms`, `baseline`) are then absent, and a report of a
//! scan always has them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What makes an entry dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Setuid,
    Setgid,
    FileCapability,
    Device,
    Socket,
    Fifo,
    EscapingSymlink,
    NestedGitMetadata,
    RepoGitMetadata,
    /// A hook or redirect (commondir, alternates) in the repository's own git directory.
    RepoGitHook,
    /// Active keys the session added to the repository's own `.git/config`.
    RepoGitConfig,
}

/// How an entry relates to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Not there at session start.
    New,
    /// There at session start, but changed since.
    Changed,
    /// There, unchanged, at session start.
    PreExisting,
    /// No start snapshot is available: treated as the session's.
    Unknown,
}

/// What was done about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Pre-existing: reported, left as it was.
    Kept,
    /// The repository's own git metadata: reported for the user to review.
    Reported,
    BitsCleared,
    CapabilityRemoved,
    Quarantined {
        to: String,
    },
    /// Could not be moved (another file system) so it was deleted; the report keeps what it was.
    Removed {
        why: String,
    },
    NotNeutralized {
        error: String,
    },
}

/// One dangerous entry and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// Relative to the root. Paths are text (invalid UTF-8 shown as U+FFFD) so that no file name
    /// can make the report fail to serialize.
    pub path: String,
    pub kind: Kind,
    pub detail: String,
    pub origin: Origin,
    #[serde(flatten)]
    pub action: Action,
}

/// The integrity report of one repository.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The repository scanned; absent when the check failed.
    pub root: Option<String>,
    /// `false`: the scan was bounded, could not read everything, or did not run; see
    /// `incomplete`.
    pub complete: bool,
    #[serde(default)]
    pub incomplete: Vec<String>,
    /// Absent when the check failed.
    pub entries_scanned: Option<u64>,
    /// Absent when the check failed.
    pub elapsed_ms: Option<u64>,
    /// Whether a start-of-session snapshot was compared against; absent when the check failed.
    pub baseline: Option<bool>,
    #[serde(default)]
    pub findings: Vec<Finding>,
}

impl Report {
    /// The report of a check that could not run: incomplete, saying why, with no findings.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        Self {
            root: None,
            complete: false,
            incomplete: vec![format!("the check failed: {error}")],
            entries_scanned: None,
            elapsed_ms: None,
            baseline: None,
            findings: Vec::new(),
        }
    }

    /// Findings that were the session's and are still in place.
    pub fn not_neutralized(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.action, Action::NotNeutralized { .. }))
            .count()
    }

    /// Findings made or changed by the session (or of unknown origin).
    pub fn by_session(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.origin != Origin::PreExisting)
            .count()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests;
