//! `agp --tool-shell CMD`: the wrapper an agent harness runs every command line through
//! (Claude Code's `CLAUDE_CODE_SHELL_PREFIX`, set by `agp run`): its Bash tool's commands, its
//! hooks, its MCP servers.
//!
//! It runs CMD with bash (sh when the sandbox has no bash) and stays its parent until it ends,
//! never exec'ing: so every process a tool call starts has this wrapper, with the tool's command
//! line as its argument, among its ancestors, which nothing below it can remove. The daemon reads
//! that from /proc to tell the harness's hook (the wrapper running exactly agp's hook command)
//! from a process the agent's tools started (see `agp_daemon::peer`). It is not a boundary by
//! itself: the sandbox is.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

pub use agp_daemon::peer::TOOL_SHELL_FLAG;

mod landlock;

/// The wrapper's own failures: 2, which both harnesses read as "block" when the command line
/// was a hook (any other status would let the tool run, unchecked).
const OWN_FAILURE: u8 = 2;

/// `agp --tool-shell CMD`, recognised before the CLI parser (it runs for every command the
/// harness starts). Anything else returns `None`.
pub fn fast_path() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != TOOL_SHELL_FLAG {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let [command] = rest.as_slice() else {
        eprintln!(
            "agp: error: --tool-shell takes exactly one command line, got {}; it is what \
             CLAUDE_CODE_SHELL_PREFIX runs, not a command for people",
            rest.len()
        );
        return Some(ExitCode::from(OWN_FAILURE));
    };
    Some(run(command))
}

fn run(command: &OsString) -> ExitCode {
    let shell = if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let parent = std::process::id();
    let ruleset = landlock::ruleset();
    let mut cmd = Command::new(shell);
    cmd.arg("-c").arg(command);
    // SAFETY: only async-signal-safe calls (prctl, getppid, Landlock, _exit) between fork and
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            // The command's own domain: nothing it starts may trace or read into the harness
            // or this wrapper (both outside it).
            if let Some(r) = &ruleset {
                landlock::enter(r)?;
            }
            // The command does not outlive its wrapper: a tool whose wrapper is gone would
            // otherwise go on, re-parented, outside any tool call.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agp: error: cannot start {shell} for the command: {e}");
            return ExitCode::from(OWN_FAILURE);
        }
    };
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
