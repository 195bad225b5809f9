//! The agp daemon: serves the gateway socket and mediates every tool call.
//!
//! `mediate()` is the loop: policy → journal the decision → (require) approval bound to the
//! call's input hash, with a timeout → journal the outcome → (proxy-exec) run in the sandbox and
//! journal the result → reply. Nothing is delivered before it is journaled; a journal failure
//! turns the answer into deny.

mod dispatch;
mod egress_judge;
pub mod exec;
mod framing;
mod git_scrub;
mod integrity;
mod mediate;
mod outbox;
pub mod peer;
mod recovery;
pub mod schema;
pub mod secrets;
mod server;
mod session;
pub mod store;
pub mod team;
mod util;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::sandbox::ResourceLimits;
use agp_contracts::{ApprovalChannel, Journal, PolicyEngine};
use serde_json::Value;

pub use egress_judge::EgressJudge;
pub use mediate::{CallReply, EgressAnswer, EgressAsk, Mediator, EGRESS_TOOL};
pub use server::{Daemon, DaemonError, STOPPED};
pub use session::{SessionInfo, SessionParams};

/// The ONE redaction function of agp (from `agp-policy`), injected so the daemon never has a
/// second, weaker copy.
pub trait Redactor: Send + Sync {
    fn redact_value(&self, value: &Value) -> Value;
    fn redact_text(&self, text: &str) -> String;
}

/// What the daemon is assembled from. Every part is a contract trait: a new channel, policy
/// engine, journal or sandbox plugs in without touching the loop.
#[derive(Clone)]
pub struct Parts {
    pub journal: Arc<dyn Journal>,
    pub policy: Arc<dyn PolicyEngine>,
    pub channel: Arc<dyn ApprovalChannel>,
    /// `None`: proxy-exec sessions are refused (gate mode still works).
    pub sandbox: Option<Arc<dyn exec::SandboxFactory>>,
    pub redactor: Arc<dyn Redactor>,
}

/// The gateway socket's and the admin token's names in the run directory.
pub const GATEWAY_SOCKET_FILE: &str = "gateway.sock";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Default CPU bound of a session (`[sandbox.limits] cpus`): two CPUs, so one runaway
/// session cannot take a larger machine; an engine with fewer CPUs bounds it at all of them.
pub const DEFAULT_SESSION_CPU_MILLIS: u64 = 2000;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Directory holding the socket and the admin token (created 0700).
    pub run_dir: PathBuf,
    pub state_db: PathBuf,
    /// `[state] url`: shared state in PostgreSQL (team mode); `None`: SQLite at `state_db`.
    pub state_url: Option<String>,
    /// This daemon's member id in shared state, written into its rows (`agp sessions` shows
    /// it as the host): `<hostname>:<agp home>` unless `[state] member` says otherwise, so
    /// several homes on one machine stay apart.
    pub member: String,
    /// Start-of-session snapshots of the repositories (`<session>.json`).
    pub integrity_dir: PathBuf,
    /// Where the end-of-session check moves what it neutralizes (`<session>/`).
    pub quarantine_dir: PathBuf,
    /// agp's own home (protected by policy).
    pub agp_home: PathBuf,
    /// The user's home, for `~/` in policy rules.
    pub user_home: PathBuf,
    pub approval_timeout: Duration,
    /// Longest a proxy-executed tool may run.
    pub exec_timeout: Duration,
    /// Bytes of (redacted) output journaled and returned per call.
    pub output_limit: usize,
    /// A session whose heartbeat is older than this is reaped on start.
    pub lease_ttl: Duration,
    /// Environment given to proxy-exec sandboxes (everything else is cleared).
    pub sandbox_env: Vec<(String, String)>,
    pub sandbox_limits: ResourceLimits,
    /// Who starts the sessions of this daemon (`started_by` in `session.started`): the OS user
    /// running it, since the gateway socket (0600 in a 0700 directory) admits only that user.
    pub operator: String,
    /// The sessions of this daemon die with its process (`agp run`'s in-process daemon): no
    /// agent can reconnect to them, so a later daemon ends them at start instead of
    /// re-asking their pending approvals.
    pub ephemeral: bool,
    /// How the policy's verdicts apply (`[policy] mode`, `--mode`); journaled with every
    /// session and with every unenforced decision.
    pub policy_mode: agp_contracts::PolicyMode,
    /// Who may approve an egress destination (empty: whoever the channel itself accepts).
    pub egress_approvers: Vec<String>,
    /// Values for `{{secret:NAME}}` in proxy-executed Bash commands, resolved after the gate;
    /// every result's output is redacted of them.
    pub secrets: Arc<secrets::Secrets>,
    /// Whether the web console may decide approvals (`[approvals] web`); `false`: view-only,
    /// every decision from it is refused and journaled.
    pub web_approvals: bool,
}

/// `<hostname>:<agp home>`.
pub fn default_member(agp_home: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", agp_home.display())
}

impl DaemonConfig {
    pub fn new(agp_home: PathBuf, user_home: PathBuf) -> Self {
        Self {
            run_dir: agp_home.join("run"),
            state_db: agp_home.join("state.db"),
            state_url: None,
            member: default_member(&agp_home),
            integrity_dir: agp_home.join("integrity"),
            quarantine_dir: agp_home.join("quarantine"),
            agp_home,
            user_home,
            approval_timeout: Duration::from_secs(300),
            exec_timeout: Duration::from_secs(120),
            output_limit: 64 * 1024,
            lease_ttl: Duration::from_secs(60),
            sandbox_env: vec![
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
                ("LANG".into(), "C.UTF-8".into()),
                ("TERM".into(), "dumb".into()),
            ],
            sandbox_limits: ResourceLimits {
                max_processes: Some(512),
                max_memory_bytes: Some(4 << 30),
                max_cpu_seconds: Some(600),
                session_memory_bytes: Some(4 << 30),
                tmpfs_bytes: Some(256 << 20),
                repo_growth_bytes: Some(8 << 30),
                cpu_millis: Some(DEFAULT_SESSION_CPU_MILLIS),
            },
            operator: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            ephemeral: false,
            policy_mode: agp_contracts::PolicyMode::Enforce,
            egress_approvers: Vec::new(),
            secrets: Arc::default(),
            web_approvals: true,
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.run_dir.join(GATEWAY_SOCKET_FILE)
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.run_dir.join(ADMIN_TOKEN_FILE)
    }
}
