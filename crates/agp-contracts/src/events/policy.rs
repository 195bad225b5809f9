//! The policy in force changed, or a change to it was refused, while a daemon runs.

use std::path::PathBuf;

use super::{Event, POLICY_RELOADED, POLICY_RELOAD_REFUSED};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A changed policy file (seen by the file watch or on SIGHUP) was loaded: every call judged
/// after this entry is judged by `new_sha256` (its `policy.decided` names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyReloaded {
    /// The policy file as the daemon was given it (a symlink stays the symlink's path).
    #[serde(serialize_with = "super::path_text::path")]
    pub path: PathBuf,
    pub old_sha256: String,
    pub new_sha256: String,
    /// What noticed the change: `"watch"` (the file changed) or `"sighup"`.
    pub trigger: String,
}

impl Event for PolicyReloaded {
    const KIND: &'static str = POLICY_RELOADED;
}

/// A changed policy file could not be loaded: the previous policy (`kept_sha256`) stays in
/// force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyReloadRefused {
    #[serde(serialize_with = "super::path_text::path")]
    pub path: PathBuf,
    /// Why, as `file:line:col: problem` when the problem has a place in the file.
    pub error: String,
    pub kept_sha256: String,
    /// `"watch"` or `"sighup"`.
    pub trigger: String,
}

impl Event for PolicyReloadRefused {
    const KIND: &'static str = POLICY_RELOAD_REFUSED;
}
