//! Intendants: the agents agp governs (a scripted agent, Claude Code, Codex), and how each one is
//! launched and wired so that every tool call it attempts reaches the gateway.
//!
//! The loop never special-cases an agent: it asks the adapter for a [`LaunchPlan`], asks it to
//! prove the wiring ([`IntendantAdapter::verify_wiring`]), and then either starts the planned
//! process inside the sandbox or, for an in-process intendant, lets it drive the gateway itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How an intendant's tool calls reach the daemon, and who executes allowed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// The intendant sends each call over the gateway and the daemon runs allowed calls in the
    /// sandbox, replying with the result (the scripted intendant).
    ProxyExec,
    /// The agent's harness calls `agp hook` before each tool (PreToolUse) and after it
    /// (PostToolUse); the agent executes allowed calls itself, inside agp's sandbox (gate mode).
    Hook,
}

/// Where the session's gateway listens, as handed to an intendant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEndpoint {
    /// The Unix socket (inside a 0700 directory).
    pub socket: PathBuf,
    /// The per-session token the hello frame must carry.
    pub token: String,
}

/// Everything an adapter may use to plan a launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchContext {
    pub session: String,
    /// The repository the agent works in (read-write in the sandbox).
    pub repo: PathBuf,
    /// The task given to a real agent (`--task`); `None` for a scripted run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub gateway: GatewayEndpoint,
    /// The agp executable the hook wiring must call, as seen from inside the sandbox.
    pub agp_exe: PathBuf,
    /// The agent gets the terminal (`--interactive`) instead of running headless.
    #[serde(default)]
    pub interactive: bool,
}

/// A file the adapter needs in place before the agent starts (hook settings, seeded HOME).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededFile {
    /// Path as seen inside the sandbox.
    pub path: PathBuf,
    pub contents: Vec<u8>,
    /// Unix permission bits.
    pub mode: u32,
    /// The agent must not be able to change it (hook wiring): the launcher mounts it read-only.
    pub read_only: bool,
}

/// An agent process to start inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPlan {
    pub argv: Vec<String>,
    /// Environment for the agent; everything else is cleared by the sandbox.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    #[serde(default)]
    pub files: Vec<SeededFile>,
    /// Host paths bound read-only at another path inside (e.g. an existing login), as
    /// `(host, inside)`.
    #[serde(default)]
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    /// Hosts the egress proxy must let the agent reach (its model API), as `host` or `host:port`.
    #[serde(default)]
    pub egress_hosts: Vec<String>,
    /// The process gets the controlling terminal.
    #[serde(default)]
    pub interactive: bool,
}

/// What the loop has to start for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LaunchPlan {
    /// No agent process: the adapter drives the gateway from agp's own process (scripted).
    InProcess,
    /// Start this agent CLI inside the sandbox.
    Process(ProcessPlan),
}

#[derive(Debug, thiserror::Error)]
pub enum IntendantError {
    /// The intendant's own input (a script, a task) is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A prerequisite is missing (the agent CLI is not installed, no login to reuse, ...).
    #[error("intendant {intendant} cannot start: {message}")]
    Unavailable { intendant: String, message: String },
    /// agp cannot prove that every tool call will reach the gateway: the launch must be refused.
    #[error("intendant {intendant}: hook wiring not verified: {message}")]
    WiringUnverified { intendant: String, message: String },
    #[error("intendant I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// An agent agp can govern.
pub trait IntendantAdapter: Send + Sync {
    /// Name used on the command line and in the journal (`scripted`, `claude-code`, `codex`).
    fn name(&self) -> &str;

    /// How this intendant's calls reach the daemon.
    fn delivery(&self) -> Delivery;

    /// Plan the launch for one session. Must not start anything.
    fn plan(&self, ctx: &LaunchContext) -> Result<LaunchPlan, IntendantError>;

    /// Prove, before launch, that every tool call the agent makes will reach the gateway (e.g.
    /// that Codex will trust and run the agp hook). Anything that cannot be proven is an error:
    /// an agent whose hook is silently skipped would run ungoverned.
    fn verify_wiring(&self, ctx: &LaunchContext, plan: &LaunchPlan) -> Result<(), IntendantError>;
}
