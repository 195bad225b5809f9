//! agp's intendants: the agents agp governs.
//!
//! Today: the scripted intendant ([`ScriptedIntendant`]), which sends a script of tool calls
//! (Claude Code's vocabulary) through the gateway in proxy-exec mode, for demos and tests. The
//! Claude Code and Codex adapters implement the same [`agp_contracts::intendant::IntendantAdapter`]
//! contract.

pub mod claude_code;
pub mod codex;
pub mod live;
pub mod script;
pub mod scripted;

pub use script::{Expect, Script, ScriptCall, ScriptError, Tool};
pub use scripted::{CallOutcome, CallReport, RunReport, ScriptedIntendant};
