//! One command in the session's container: checked, run as an exec, then shown to have left
//! nothing running (or reaped, or the container restarted), its git metadata scrubbed and its
//! bounds read.

use agp_contracts::sandbox::{ExecOutput, ExecRequest, SandboxError};

use super::lifecycle::restart;
use super::{exec, git, oom, reap, DockerProvider, DockerSession};
use crate::growth::RepoGrowth;
use crate::layout;

/// Run one command (argv and cwd checked), restarting the container after a timeout.
pub(super) fn exec_checked(
    provider: &DockerProvider,
    session: &DockerSession,
    request: &ExecRequest,
) -> Result<ExecOutput, SandboxError> {
    let _turn = session
        .one_at_a_time
        .lock()
        .map_err(|_| SandboxError::Refused("session state poisoned".into()))?;
    if request.timeout.is_zero() {
        return Err(SandboxError::Refused("zero timeout".into()));
    }
    admit(session, &request.argv, &request.cwd)?;
    if let Some(growth) = &session.growth {
        growth.admit().map_err(SandboxError::LimitExceeded)?;
    }
    let memory = session
        .memory
        .lock()
        .map_err(|_| SandboxError::Refused("session state poisoned".into()))?
        .clone();
    let oom_before = memory.as_ref().and_then(oom::MemoryWatch::oom_kills);
    let git_before = git::snapshot(&session.repo)?;
    let mut growth = session.growth.as_ref().map(RepoGrowth::watcher);
    // The kill switch kills the container, but under gVisor the engine may never end the
    // exec's output stream of a killed container: the session being stopped (or broken) ends
    // the wait too.
    let mut watcher = || {
        session.broken.lock().map_or(true, |b| b.is_some()) || growth.as_mut().is_some_and(|w| w())
    };
    let outcome = exec::run(
        &provider.engine,
        &exec::Command {
            container: &session.container,
            user: &session.user,
            argv: &request.argv,
            env: &session.env,
            cwd: &request.cwd,
            stdin: request.stdin.as_deref(),
            timeout: request.timeout,
            cap: provider.output_cap,
        },
        Some(&mut watcher),
    );
    let mut outcome = outcome?;
    program_not_found_as_127(&mut outcome);
    // Read before any restart, which gives the container a fresh cgroup.
    let memory_hit = memory.and_then(|m| m.hit_since(oom_before));
    let poisoned = || SandboxError::Refused("session state poisoned".into());
    // The exec has ended (the engine reported its exit). The container holding only its own
    // processes (read on the host, or answered by the watcher) shows nothing is left;
    // otherwise the reaper kills it.
    let ended = !(outcome.timed_out || outcome.stopped);
    let (shown_clean, spared) = {
        let mut check = session.check.lock().map_err(|_| poisoned())?;
        let mut spared = session.spared.lock().map_err(|_| poisoned())?;
        let shown = ended && check.clean();
        check.drop_lost_watcher(&mut spared);
        (shown, spared.clone())
    };
    let clean = ended
        && (shown_clean
            || reap::reap(&provider.engine, &session.container, &session.user, &spared).is_ok());
    if !clean {
        // A stopped session (the kill switch killed its container) is not started again.
        if let Some(reason) = session.broken.lock().map_err(|_| poisoned())?.clone() {
            return Err(SandboxError::Refused(format!(
                "the session's container is gone: {reason}"
            )));
        }
        if let Err(e) = restart(&provider.engine, session) {
            if let Ok(mut broken) = session.broken.lock() {
                *broken = Some(e.to_string());
            }
            return Err(e);
        }
    }
    // Every process of the command is gone by now (reaped, or killed with the container),
    // so nothing can race the check.
    let git_metadata_removed = crate::gitguard::scrub(&git_before);
    let growth_hit = session.growth.as_ref().and_then(RepoGrowth::check);
    let limit_exceeded = memory_hit.or(growth_hit);
    Ok(ExecOutput {
        exit_code: outcome.exit_code,
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        timed_out: outcome.timed_out,
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        truncated: outcome.truncated,
        limit_exceeded,
        git_metadata_removed,
    })
}

/// The engine reports a program it could not start (`exec: "x": executable file not found`)
/// as exit 126 with its message on stdout; a shell, and the bubblewrap provider, say 127 on
/// stderr. Callers (and agents) read 127 as "no such command", so it is given as that. A
/// command faking the message only changes its own exit code.
fn program_not_found_as_127(outcome: &mut exec::Outcome) {
    let text = String::from_utf8_lossy(&outcome.stdout);
    if outcome.exit_code == Some(126)
        && outcome.stderr.is_empty()
        && text.starts_with("OCI runtime exec failed")
        && (text.contains("executable file not found") || text.contains("error finding executable"))
    {
        outcome.exit_code = Some(127);
        outcome.stderr = std::mem::take(&mut outcome.stdout);
    }
}

/// What every command in the session's container must be, a call or an attached agent: the
/// container still there, a command with no NUL byte, run from inside the repository.
pub(super) fn admit(
    session: &DockerSession,
    argv: &[String],
    cwd: &std::path::Path,
) -> Result<(), SandboxError> {
    if let Some(reason) = session
        .broken
        .lock()
        .map_err(|_| SandboxError::Refused("session state poisoned".into()))?
        .as_ref()
    {
        return Err(SandboxError::Refused(format!(
            "the session's container is gone: {reason}"
        )));
    }
    if argv.first().is_none_or(String::is_empty) {
        return Err(SandboxError::Refused("empty command".into()));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(SandboxError::Refused("command contains a NUL byte".into()));
    }
    layout::check_cwd(cwd, &session.repo)
}
