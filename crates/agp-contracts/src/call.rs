//! A tool call as the agent asked for it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, CanonicalError};
use crate::Tool;

/// One tool call an agent attempted, exactly as received (before redaction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// agp's id for the call, unique within the session (replays are rejected).
    pub id: String,
    /// The session the call belongs to.
    pub session: String,
    /// The harness's own id for the call (Claude Code `tool_use_id`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// The tool, parsed from the name in Claude Code's vocabulary (`Bash`, `Read`,
    /// `mcp__server__tool`, ...); serialized back as exactly that name.
    pub tool: Tool,
    /// The tool input object as the agent sent it.
    pub input: Value,
    /// Working directory the agent reported for the call.
    pub cwd: PathBuf,
}

impl ToolCall {
    /// SHA-256 (lowercase hex) of the RFC 8785 canonical form of `input`.
    ///
    /// Approvals are bound to this value, so an approver's "allow" can later be proven to cover
    /// exactly these bytes and no others.
    pub fn input_sha256(&self) -> Result<String, CanonicalError> {
        canonical::sha256_of_value(&self.input)
    }
}
