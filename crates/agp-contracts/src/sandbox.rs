//! Where allowed tool calls run.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// HOME inside a sandbox: an empty tmpfs, never the invoking user's real home.
pub const SANDBOX_HOME: &str = "/home/agent";

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
    /// Host paths bound at another path inside (a seeded login, managed hook settings, a
    /// writable agent state directory). Applied after the repo and `ro_binds`, so a bind may
    /// land inside the tmpfs HOME or a tmpfs `/etc` entry.
    #[serde(default)]
    pub binds: Vec<BindMount>,
}

impl SandboxSpec {
    /// A spec with no extra environment, binds or limits: the strictest starting point.
    pub fn new(session: impl Into<String>, repo: impl Into<PathBuf>) -> Self {
        Self {
            session: session.into(),
            repo: repo.into(),
            env: Vec::new(),
            ro_binds: Vec::new(),
            share_network: false,
            limits: ResourceLimits::default(),
            binds: Vec::new(),
        }
    }
}

/// One host path made visible inside the sandbox at `dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub dest: PathBuf,
    /// Read-write when true; read-only (the default) otherwise.
    #[serde(default)]
    pub writable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// Processes alive at once in the whole session (a pids cgroup where one can be made,
    /// else RLIMIT_NPROC per process, which the kernel does not apply to root).
    pub max_processes: Option<u64>,
    /// Address space of each process (RLIMIT_AS).
    pub max_memory_bytes: Option<u64>,
    pub max_cpu_seconds: Option<u64>,
    /// Memory of the whole session, every command and its tmpfs pages together (a memory
    /// cgroup where one can be made; otherwise not enforced beyond `max_memory_bytes`, and
    /// the provider says so in its caveats).
    #[serde(default)]
    pub session_memory_bytes: Option<u64>,
    /// Size of each per-command tmpfs (`/tmp` and HOME).
    #[serde(default)]
    pub tmpfs_bytes: Option<u64>,
    /// How much the repository may grow over the session (bytes on disk). Also each file's
    /// largest size (RLIMIT_FSIZE). Once over, further commands are refused.
    #[serde(default)]
    pub repo_growth_bytes: Option<u64>,
    /// CPU the whole session may use at once, in thousandths of a CPU (`1500`: one and a
    /// half CPUs of time per second of wall clock), where the provider can bound it (the
    /// container provider's CPU quota); a busy command is slowed, not killed.
    #[serde(default)]
    pub cpu_millis: Option<u64>,
}

/// A session bound that a command hit (journaled as `sandbox.limit_exceeded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitExceeded {
    /// `session_memory`, `processes` or `repo_growth`.
    pub limit: String,
    pub bound: u64,
    /// What was measured (bytes or processes); for `processes`, how many forks failed.
    pub observed: u64,
    /// One line for the agent and the human: what happened and what to do.
    pub message: String,
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code, or `None` when killed by the timeout or for a session bound (see
    /// `limit_exceeded`), or, without a sandbox, by a signal.
    /// Inside bubblewrap a command killed by a signal is reported as 128 + the signal, and
    /// a program that does not exist inside the sandbox as 127.
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// stdout or stderr went over the provider's capture cap and was cut.
    #[serde(default)]
    pub truncated: bool,
    /// A session bound this command hit (the command was stopped, or later ones will be
    /// refused).
    #[serde(default)]
    pub limit_exceeded: Option<LimitExceeded>,
    /// Git metadata the command created or replaced that the sandbox does not let persist
    /// (config-like files, hooks, alternates, state a host git would act on), moved out of the
    /// way (to the git directory's `agp-quarantine/` folder, which git never reads) or removed
    /// from the    /// host after the command, as `path (what it was)`.
    #[serde(default)]
    pub git_metadata_removed: Vec<String>,
}

/// What a provider actually guarantees, stated honestly so it can be journaled and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// One isolation property proven (or not) from inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PreflightCheck {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The result of a preflight, journaled as `sandbox.preflight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PreflightReport {
    pub provider: String,
    /// True only when there is at least one check and every check passed, or when the provider
    /// is the explicit `none` opt-out (which proves nothing and says so in `checks`).
    pub passed: bool,
    pub checks: Vec<PreflightCheck>,
    pub duration_ms: u64,
    /// What the sandbox ran on, where the provider has one (the container provider); absent
    /// for bubblewrap and `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SandboxTarget>,
}

/// The engine, runtime and image a container sandbox ran on, as its preflight saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SandboxTarget {
    /// The OCI runtime (`runc`, `runsc`).
    pub runtime: String,
    /// The image, pinned: `NAME@sha256:<image id>`.
    pub image: String,
    /// The engine's kind (`docker`, `podman`).
    pub engine: String,
    /// The engine's version as it reports it (`20.10.24`, `4.3.1`).
    pub engine_version: String,
}

impl PreflightReport {
    /// The failed checks, as one line for an error message.
    pub fn failure_summary(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
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
    /// A session bound is exhausted: the command was not run.
    #[error("sandbox limit exceeded: {0}")]
    LimitExceeded(LimitExceeded),
}

/// A sandbox technology. Blocking by design (it spawns processes); async callers use a
/// blocking thread.
pub trait SandboxProvider: Send + Sync {
    /// Per-session state the provider keeps (scratch dirs, a container id, ...).
    type Session: Send + Sync;

    fn spawn(&self, spec: &SandboxSpec) -> Result<Self::Session, SandboxError>;
    fn exec(
        &self,
        session: &Self::Session,
        request: &ExecRequest,
    ) -> Result<ExecOutput, SandboxError>;
    fn teardown(&self, session: Self::Session) -> Result<(), SandboxError>;
    fn isolation(&self) -> Isolation;

    /// The kill switch: kill what the session runs now (without waiting for it) and refuse
    /// every later command; `true` when a command was running. Called while another thread
    /// may be inside [`SandboxProvider::exec`] for the same session. The default only reports
    /// that nothing could be interrupted: the teardown that follows still ends the session.
    fn interrupt(&self, session: &Self::Session) -> Result<bool, SandboxError> {
        let _ = session;
        Ok(false)
    }

    /// Prove the isolation from inside the session's sandbox. `Ok` only when every check
    /// passed; otherwise [`SandboxError::PreflightFailed`], and the session must be refused.
    /// A provider that cannot prove anything fails closed by default.
    fn preflight(&self, session: &Self::Session) -> Result<PreflightReport, SandboxError> {
        let _ = session;
        Err(SandboxError::PreflightFailed(format!(
            "provider {} has no preflight",
            self.isolation().provider
        )))
    }
}
