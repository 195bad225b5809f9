//! Who is on the other end of a gateway connection: the harness's hook, or something the agent's
//! own tools started.
//!
//! The session token cannot tell them apart: the harness and every tool it runs share one uid
//! and one environment, so whatever the hook can read, the agent's shell can read too. What
//! differs is where a process sits in the process tree, which its descendants cannot rewrite.
//! `agp run` makes the harness run every command through agp's wrapper (`agp --tool-shell CMD`,
//! Claude Code's `CLAUDE_CODE_SHELL_PREFIX`), which stays the parent of what it starts and never
//! execs. The harness's hook commands go through the same wrapper, with the exact command agp
//! wrote into the harness's settings as its argument. So, walking up from the peer that the
//! kernel names (SO_PEERCRED):
//!
//! - a wrapper running any other command is above it: the peer descends from a tool call the
//!   agent made (its Bash, an MCP server, a hook the repository added) — refused;
//! - `agp hook` ← (a shell) ← a wrapper running exactly agp's hook command ← (that shell) ← the
//!   harness binary, the same harness process every time (pinned at the first such hook, before
//!   any tool can have run) — the harness's hook, verified;
//! - anything else: not told apart. Until a verified hook was seen this is accepted and its
//!   results are journaled `reported_by: agent`, as before; after it (the harness is known to
//!   wrap its hooks) it is refused.
//!
//! Descendants cannot leave the wrapper's subtree: an orphan is re-parented to the sandbox's
//! init, not to the harness, and so no longer reaches the pinned harness. What this does not
//! stop (README, "What agp cannot tell apart"): a process that can ptrace the harness or write
//! its memory, as any same-uid process can where Yama allows it, can make the harness itself
//! start a hook with forged input.

mod pidfd;
mod proc;

use std::sync::Mutex;

pub use pidfd::{alive, peer_pidfd};
pub use proc::{chain, FileId, Proc};

/// The argument that makes `agp` the harness's command wrapper.
pub const TOOL_SHELL_FLAG: &str = "--tool-shell";

/// How the result of a verified hook is journaled (`reported_by`).
pub const REPORTED_BY_HARNESS: &str = "harness";
/// How a result whose sender could not be told apart is journaled (`reported_by`).
pub const REPORTED_BY_AGENT: &str = "agent";

/// Shells the harness runs a command line through; only one may sit between the wrapper and
/// the harness or between the hook and the wrapper.
const SHELLS: &[&str] = &["sh", "dash", "bash", "zsh"];

/// What the daemon knows of an `agp run` session's sandbox to check its peers against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGuard {
    /// The agp executable (bound into the sandbox: the same file at another path).
    pub agp: FileId,
    /// The agent's harness executable.
    pub harness: FileId,
    /// The hook commands exactly as agp wrote them into the harness's settings.
    pub hook_commands: Vec<String>,
}

/// A process by pid and start time (clock ticks since boot): a pid alone may be reused.
pub type ProcKey = (u32, u64);

/// What the process tree says about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `agp hook` started through the wrapper with agp's hook command, by `harness`.
    Hook { harness: ProcKey },
    /// Below a wrapper that runs some other command: a tool call's process tree.
    Tool(String),
    /// Neither can be shown.
    Unknown(String),
}

fn base_name(p: &Proc) -> &str {
    p.argv
        .first()
        .map_or("?", |a| a.rsplit('/').next().unwrap_or(a))
}

fn is_shell(p: &Proc) -> bool {
    SHELLS.contains(&base_name(p))
}

/// Short description of a chain for a refusal: pids and program names, never arguments
/// (a tool's command line may carry anything).
pub fn describe(chain: &[Proc]) -> String {
    chain
        .iter()
        .map(|p| format!("{} {}", p.pid, base_name(p)))
        .collect::<Vec<_>>()
        .join(" < ")
}

impl PeerGuard {
    fn is_wrapper(&self, p: &Proc) -> bool {
        p.exe == Some(self.agp) && p.argv.get(1).map(String::as_str) == Some(TOOL_SHELL_FLAG)
    }

    /// The shell the harness runs its wrapped command line through (`sh -c "'agp'
    /// --tool-shell '…'"`): a shell the harness started for anything else (its shell snapshot
    /// sources files the agent can write) does not count.
    fn is_wrapping_shell(p: &Proc) -> bool {
        is_shell(p) && p.argv.len() <= 4 && p.argv.iter().any(|a| a.contains(TOOL_SHELL_FLAG))
    }

    fn runs_hook(&self, wrapper: &Proc) -> bool {
        wrapper.argv.len() == 3 && self.hook_commands.iter().any(|c| *c == wrapper.argv[2])
    }

    /// Places the peer at `chain[0]` (its ancestors follow, nearest first).
    pub fn place(&self, chain: &[Proc]) -> Placement {
        let wrappers: Vec<usize> = (0..chain.len())
            .filter(|&i| self.is_wrapper(&chain[i]))
            .collect();
        if let Some(&i) = wrappers.iter().find(|&&i| !self.runs_hook(&chain[i])) {
            return Placement::Tool(format!(
                "it descends from process {} that agp's wrapper started for a tool call",
                chain[i].pid
            ));
        }
        let &[w] = wrappers.as_slice() else {
            return match wrappers.len() {
                0 => Placement::Unknown("no agp hook wrapper above it".into()),
                _ => Placement::Tool("hook wrappers nested in one another".into()),
            };
        };
        let Some(peer) = chain.first() else {
            return Placement::Unknown("its process is gone".into());
        };
        if peer.exe != Some(self.agp) {
            return Placement::Unknown("it is not agp".into());
        }
        // agp hook, then at most one shell, then the wrapper.
        let below_ok = match w {
            1 => true,
            2 => is_shell(&chain[1]),
            _ => false,
        };
        // The wrapper, then at most the harness's own shell, then the harness.
        let above: Vec<&Proc> = chain[w + 1..].iter().take(2).collect();
        let harness = match above.as_slice() {
            [h, ..] if h.exe == Some(self.harness) => Some(*h),
            [s, h] if Self::is_wrapping_shell(s) && h.exe == Some(self.harness) => Some(*h),
            _ => None,
        };
        match (below_ok, harness) {
            (true, Some(h)) => Placement::Hook {
                harness: (h.pid, h.start),
            },
            (false, _) => Placement::Unknown("more than a shell between it and the wrapper".into()),
            (true, None) => Placement::Unknown("its wrapper was not started by the harness".into()),
        }
    }
}

/// A session's guard and the harness process it pinned.
#[derive(Debug)]
pub struct PeerCheck {
    guard: PeerGuard,
    pinned: Mutex<Option<ProcKey>>,
}

impl PeerCheck {
    pub fn new(guard: PeerGuard) -> Self {
        Self {
            guard,
            pinned: Mutex::new(None),
        }
    }

    /// Admits a peer with how its results are journaled (`reported_by`), or says why it is
    /// refused.
    pub fn admit(&self, chain: &[Proc]) -> Result<&'static str, String> {
        let mut pinned = self
            .pinned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.guard.place(chain) {
            Placement::Tool(why) => Err(format!(
                "this connection comes from a process the agent's tools started ({why}: {}); \
                 only the harness's own hook may speak for the session",
                describe(chain)
            )),
            Placement::Hook { harness } => match *pinned {
                None => {
                    *pinned = Some(harness);
                    Ok(REPORTED_BY_HARNESS)
                }
                Some(p) if p == harness => Ok(REPORTED_BY_HARNESS),
                Some(p) => Err(format!(
                    "this hook was started by process {} but the session's harness is process {} ({})",
                    harness.0,
                    p.0,
                    describe(chain)
                )),
            },
            Placement::Unknown(why) => match *pinned {
                None => Ok(REPORTED_BY_AGENT),
                Some(_) => Err(format!(
                    "this session's hooks come through agp's wrapper, and this connection does \
                     not ({why}: {})",
                    describe(chain)
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests;
