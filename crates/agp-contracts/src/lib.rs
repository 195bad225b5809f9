//! Shared vocabulary of agp.
//!
//! Every part of agp (journal, policy, approval channels, sandbox, intendants, daemon) talks
//! through the types and traits here, so a part can be replaced without touching the loop that
//! drives it. This crate deliberately has no async runtime and no I/O.

pub mod approval;
pub mod call;
pub mod canonical;
pub mod events;
pub mod integrity;
pub mod intendant;
pub mod journal;
pub mod mode;
pub mod policy;
pub mod sandbox;
pub mod tool;
pub mod url;

pub use approval::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approver, ChannelError, SessionControl,
    StopOutcome, StopRequest,
};
pub use call::ToolCall;
pub use journal::{AppendReceipt, Journal, JournalError};
pub use mode::{PolicyMode, ShadowVerdict};
pub use policy::{
    ApprovalSpec, Decision, EvalContext, PartFinding, PolicyEngine, Verdict, AGP_SELF_RULE,
};
pub use sandbox::{ExecOutput, ExecRequest, Isolation, SandboxError, SandboxProvider, SandboxSpec};
pub use tool::Tool;

/// A boxed, sendable future: keeps the async traits object-safe without pulling in a runtime or
/// the `async-trait` macro.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
