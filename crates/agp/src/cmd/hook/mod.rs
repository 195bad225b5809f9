//! `agp hook`: the command an agent harness (Claude Code, Codex) runs around every tool call.
//!
//! It reads the harness's hook event on stdin, asks the agp daemon over the gateway, and prints
//! the harness's decision JSON. The harnesses treat any exit code other than 0 and 2 as a
//! NON-blocking hook error — the tool would run ungoverned — so this command never exits
//! otherwise: every failure (daemon unreachable, timeout, bad frame, unknown event, malformed
//! stdin, even a panic) prints a deny and exits 2. It is spawned once per tool call, so it stays
//! lean: blocking std I/O, no async runtime.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::exit::Exit;

mod answer;
mod daemon;
mod gate;
mod session_root;
mod tool_output;
mod transcript;

pub use answer::failure;
use answer::{emit, install_panic_deny};
pub use gate::handle;
pub use session_root::session_root;

/// The gateway socket of the session, as seen by the hook (inside the sandbox).
pub const ENV_SOCKET: &str = "AGP_GATEWAY_SOCKET";
/// The per-session token the hello frame carries.
pub const ENV_TOKEN: &str = "AGP_SESSION_TOKEN";
/// Longest wait for a verdict, in seconds: the approval timeout plus a margin. Must be shorter
/// than the harness's own hook timeout, or the harness would kill the hook first.
pub const ENV_TIMEOUT: &str = "AGP_HOOK_TIMEOUT_SECS";

/// Used when the launcher did not say: long enough for a human to answer.
const DEFAULT_TIMEOUT_SECS: u64 = 900;
/// Largest hook event read from stdin (a Write of a large file is the big case); the gateway
/// frame cap (1 MiB) refuses anything bigger anyway.
const MAX_STDIN_BYTES: u64 = 4 << 20;
/// Bytes of tool output sent with a PostToolUse report; the full output's hash goes with it.
const MAX_REPORTED_OUTPUT: usize = 64 * 1024;

/// `agp hook --help` exit codes: never 1, which the harnesses read as a non-blocking error.
pub const HOOK_EXIT_HELP: &str = "\
Exit codes:
  0  decision printed on stdout (allow or deny), or the tool result recorded
  2  agp could not check the call (daemon unreachable, timeout, bad input): a deny is printed
     and the reason goes to stderr; the harness blocks the call
  The hook never exits otherwise: a harness treats other codes as non-blocking (fail open).

Environment (set by `agp run`):
  AGP_GATEWAY_SOCKET     the session's gateway socket
  AGP_SESSION_TOKEN      the session's token
  AGP_HOOK_TIMEOUT_SECS  longest wait for a verdict (approval timeout plus a margin)";

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Without AGP_GATEWAY_SOCKET / AGP_SESSION_TOKEN, attach to the `agp daemon` of the agp
    /// home (--home / AGP_HOME / ~/.agp): one gate-mode session per harness session, opened
    /// with the daemon's admin token. Written by `agp install-hooks`; no sandbox in that mode.
    #[arg(long)]
    pub attach: bool,
    /// Which harness runs the hook: their decision formats differ (Codex 0.169 rejects an
    /// explicit "allow" as an unsupported output and then runs the tool anyway, so agp answers
    /// it with no objection instead).
    #[arg(long, value_enum, default_value = "claude-code")]
    pub harness: Harness,
    /// With --attach: the project root the session is judged against (recorded by
    /// `agp install-hooks --project`). Without it, the git repository around the first event's
    /// directory; never the event's directory itself (see `session_root`).
    #[arg(long, value_name = "DIR", requires = "attach")]
    pub project: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Harness {
    ClaudeCode,
    Codex,
}

impl Harness {
    pub fn name(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "claude-code",
            Harness::Codex => "codex",
        }
    }
}

/// The harness event being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    PreToolUse,
    PostToolUse,
    /// A tool call that failed. Claude Code 2.1.197 fires only this for a failed call; newer
    /// versions fire it and then PostToolUse, and the daemon keeps the first result of a call.
    PostToolUseFailure,
    PermissionRequest,
}

impl Event {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "PreToolUse" => Some(Self::PreToolUse),
            "PostToolUse" => Some(Self::PostToolUse),
            "PostToolUseFailure" => Some(Self::PostToolUseFailure),
            "PermissionRequest" => Some(Self::PermissionRequest),
            _ => None,
        }
    }
}

/// What the hook prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub stdout: Value,
    /// Shown to the agent by the harness when exiting 2.
    pub stderr: Option<String>,
    pub exit: Exit,
}

/// `agp [--home DIR] hook [--harness H] [--attach]`, recognised without building the whole
/// command line (clap's tree of every subcommand costs a good part of a millisecond, paid on
/// every tool call). Anything else, `--help` included, returns `None` and goes through clap.
pub fn fast_path() -> Option<Exit> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut rest = args.iter().map(|a| a.to_str());
    let mut home: Option<PathBuf> = None;
    let mut first = rest.next()??;
    if first == "--home" {
        home = Some(PathBuf::from(rest.next()??));
        first = rest.next()??;
    } else if let Some(h) = first.strip_prefix("--home=") {
        home = Some(PathBuf::from(h));
        first = rest.next()??;
    }
    if first != "hook" {
        return None;
    }
    let mut parsed = HookArgs {
        attach: false,
        harness: Harness::ClaudeCode,
        project: None,
    };
    while let Some(arg) = rest.next() {
        match arg? {
            "--attach" => parsed.attach = true,
            "--project" => parsed.project = Some(PathBuf::from(rest.next()??)),
            "--harness" => {
                parsed.harness = match rest.next()?? {
                    "claude-code" => Harness::ClaudeCode,
                    "codex" => Harness::Codex,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    if parsed.project.is_some() && !parsed.attach {
        return None;
    }
    // clap would have filled --home from AGP_HOME too.
    let home = home.or_else(|| std::env::var_os("AGP_HOME").map(PathBuf::from));
    Some(run(&parsed, home.as_deref()))
}

pub fn run(args: &HookArgs, home: Option<&Path>) -> Exit {
    install_panic_deny();
    let answer = std::panic::catch_unwind(|| {
        let mut env = HookEnv::from_process();
        if args.attach {
            env.attach = Some(
                crate::home::Home::resolve(home)
                    .map(|h| h.run_dir())
                    .map_err(|e| crate::exit::one_line(&e)),
            );
            env.project = args.project.clone();
        }
        let mut stdin = Vec::new();
        let read = std::io::stdin()
            .lock()
            .take(MAX_STDIN_BYTES + 1)
            .read_to_end(&mut stdin);
        match read {
            Err(e) => failure(None, &format!("cannot read the hook event on stdin: {e}")),
            Ok(_) if stdin.len() as u64 > MAX_STDIN_BYTES => failure(
                None,
                &format!("hook event over {MAX_STDIN_BYTES} bytes on stdin"),
            ),
            Ok(_) => handle(&stdin, &env, args.harness),
        }
    })
    .unwrap_or_else(|_| failure(None, "agp hook crashed"));
    emit(&answer);
    answer.exit
}

/// Where the hook finds its daemon.
#[derive(Debug, Clone)]
pub struct HookEnv {
    pub socket: Option<PathBuf>,
    pub token: Option<String>,
    pub timeout: Result<Duration, String>,
    /// `--attach`: the agp home's run directory (or why it could not be found).
    pub attach: Option<Result<PathBuf, String>>,
    /// `--attach --project DIR`: the recorded project root.
    pub project: Option<PathBuf>,
}

impl HookEnv {
    fn from_process() -> Self {
        let timeout = match std::env::var(ENV_TIMEOUT) {
            Err(_) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
            Ok(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{ENV_TIMEOUT}={v:?} is not a positive number of seconds")),
        };
        Self {
            socket: std::env::var_os(ENV_SOCKET)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            token: std::env::var(ENV_TOKEN).ok().filter(|s| !s.is_empty()),
            timeout,
            attach: None,
            project: None,
        }
    }
}
