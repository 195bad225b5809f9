//! agp's approval channels.
//!
//! - [`TerminalChannel`]: the embedded default approver, on the controlling terminal.
//! - [`AutoApproveChannel`]: `--auto-approve`, loud, journaled as the approver.
//! - [`ScriptedApprover`]: answers read from a file (`--approver-script`), a test and demo
//!   facility, journaled with `via: "terminal-script"`.
//!
//! All three implement [`agp_contracts::ApprovalChannel`] and are cancel-safe.

mod auto;
mod choice;
mod identity;
mod queue;
pub mod render;
pub mod sanitize;
mod script;
mod terminal;
#[cfg(test)]
mod test_support;
mod tty;

pub use auto::{AutoApproveChannel, BANNER as AUTO_APPROVE_BANNER};
pub use choice::{ApproverChoice, ChoiceError};
pub use identity::local_approver;
pub use script::{ScriptAnswer, ScriptedApprover};
pub use terminal::{TerminalChannel, IN_BACKGROUND, NO_TERMINAL, TERMINAL_CLOSED};
