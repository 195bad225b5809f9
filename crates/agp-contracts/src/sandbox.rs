//! Where allowed tool calls run.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a session's sandbox is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub session: String,
    /// The repository, mounted read-write at the same path inside.
    pub repo: PathBuf,
    /// Environment passed in; everything else is cleared.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Host paths made visible read-only (e.g. a directory of bridged Unix sockets).
    #[serde(default)]
    pub ro_binds: Vec<PathBuf>,
    /// Whether any network namespace sharing is allowed. agp never sets this: egress goes
    /// through a proxy reached over a bridged Unix socket.
    #[serde(default)]
    pub share_network: bool,
    #[serde(default)]
    pub limits: ResourceLimits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub max_processes: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub max_cpu_seconds: Option<u64>,
}

/// One command to run inside a session's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Working directory inside the sandbox (must be inside the repo).
    pub cwd: PathBuf,
    #[serde(default)]
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code, or `None` when killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub duration_ms: u64,
}

/// What a provider actually guarantees, stated honestly so it can be journaled and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// Provider name (`bubblewrap`, `container`, `none`).
    pub provider: String,
    pub network_isolated: bool,
    pub filesystem_isolated: bool,
    pub pid_isolated: bool,
    /// Free-text caveats (e.g. "resource limits not enforced: no cgroup delegation").
    #[serde(default)]
    pub caveats: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox prerequisite missing: {0}")]
    Missing(String),
    #[error("sandbox preflight failed: {0}")]
    PreflightFailed(String),
    #[error("sandbox I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("sandbox refused the request: {0}")]
    Refused(String),
}

/// A sandbox technology. Blocking by design (it spawns processes); async callers use a
/// blocking thread.
pub trait SandboxProvider: Send + Sync {
    /// Per-session state the provider keeps (scratch dirs, a container id, ...).
    type Session: Send + Sync;

    fn spawn(&self, spec: &SandboxSpec) -> Result<Self::Session, SandboxError>;
    fn exec(&self, session: &Self::Session, request: &ExecRequest)
        -> Result<ExecOutput, SandboxError>;
    fn teardown(&self, session: Self::Session) -> Result<(), SandboxError>;
    fn isolation(&self) -> Isolation;
}
