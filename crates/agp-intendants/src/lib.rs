//! agp's intendants: the agents agp governs.
//!
//! - the scripted intendant ([`ScriptedIntendant`]): sends a script of tool calls (Claude Code's
//!   vocabulary) through the gateway in proxy-exec mode, for demos and tests;
//! - the Claude Code and Codex adapters ([`claude_code`], [`codex`], sharing [`live`]): real
//!   agent CLIs launched in the sandbox with agp's hook wired in (gate mode).
//!
//! All of them implement [`agp_contracts::intendant::IntendantAdapter`].

pub mod claude_code;
pub mod codex;
pub mod demo;
pub mod identity;
pub mod install_layout;
pub mod live;
pub mod proc_report;
pub mod script;
pub mod scripted;

pub use script::{Expect, Script, ScriptCall, ScriptError, Tool};
pub use scripted::{CallOutcome, CallReport, RunReport, ScriptedIntendant};
