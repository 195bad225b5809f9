//! `intendant.*` and `gateway.*` bodies.

use super::{Event, GATEWAY_REJECTED, INTENDANT_VERSION_UNTESTED, INTENDANT_WIRING_VERIFIED};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// agp proved the agent's hook wiring is active before it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IntendantWiringVerified {
    pub intendant: String,
    /// How it was proven (e.g. `codex app-server hooks/list`).
    pub method: String,
}

impl Event for IntendantWiringVerified {
    const KIND: &'static str = INTENDANT_WIRING_VERIFIED;
}

/// The agent CLI's version is outside the versions agp was tested with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IntendantVersionUntested {
    pub intendant: String,
    pub warning: String,
    pub version: String,
    /// SHA-256 of the agent binary.
    pub sha256: String,
}

impl Event for IntendantVersionUntested {
    const KIND: &'static str = INTENDANT_VERSION_UNTESTED;
}

/// The gateway refused a frame. The frame itself is never journaled: it may carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayRejected {
    /// The protocol error code.
    pub code: String,
    pub message: String,
    /// The frame's call id (cut to 256 bytes), `null` when it had none.
    pub call_id: Option<String>,
    /// The connecting process (`uid`, `gid`, `pid`), `null` when the socket could not tell.
    pub peer: Value,
}

impl Event for GatewayRejected {
    const KIND: &'static str = GATEWAY_REJECTED;
}
