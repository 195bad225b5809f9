//! Nothing a command starts outlives it: after each command, every process in the container
//! but PID 1 (the engine's init), the session's waiting `sleep` and the watcher is killed,
//! as under bubblewrap, where a command's namespace dies with it. A process left in the
//! background could otherwise keep writing in the repository after the git metadata check,
//! or watch later commands. When the container cannot be shown clean, it is killed and
//! started again.
//!
//! The reaper is an exec of its own (an engine round trip of 50 to 80 ms), so it runs only
//! when a cheaper check ([`Check`]) does not show the container clean once the command's
//! exec has ended: under runc the host cgroup, under gVisor the watcher. Both only look;
//! neither can be made to kill anything.

use std::time::Duration;

use agp_contracts::sandbox::SandboxError;

use super::api::Engine;
use super::{cgroup, exec, watch};

/// How a session shows that a command left nothing running, before the reaper's exec (which
/// runs only when this does not show it).
#[derive(Debug, Default)]
pub(crate) enum Check {
    /// Nothing: the reaper's exec after every command.
    #[default]
    Reaper,
    /// Under runc with the engine's PIDs this host's: the container's pids cgroup read on
    /// the host (see `cgroup`).
    HostCgroup(cgroup::Probe),
    /// Elsewhere (gVisor): the watcher exec kept open for the session (see `watch`).
    Watcher(watch::Watcher),
}

impl Check {
    /// Whether the container holds only its own processes now.
    pub(crate) fn clean(&mut self) -> bool {
        match self {
            Self::Reaper => false,
            Self::HostCgroup(probe) => probe.clean(),
            Self::Watcher(watcher) => watcher.clean(),
        }
    }

    /// After a watcher stopped answering: the reaper alone from now on, and the PIDs it
    /// spares without the watcher's (`spared` as the watcher gave them, the waiting
    /// process's first), so that a process of a command's that came to hold that PID is
    /// not spared. A watcher still alive then holds up the reaper, which restarts the
    /// container.
    pub(crate) fn drop_lost_watcher(&mut self, spared: &mut String) {
        if matches!(self, Self::Watcher(w) if w.lost()) {
            *self = Self::Reaper;
            *spared = spared
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    }
}

/// Shell functions (built-ins only: nothing forks, so nothing the scan races can race it)
/// shared by the reaper and the watcher. `$keep` lists the PIDs of the container's own
/// processes to spare (the waiting process, and the watcher).
///
/// `scan` sets `$left` to the processes other than PID 1, `$keep`, the shell itself and the
/// dead. A process whose `stat` is gone by the time it is read counts as gone. A zombie is
/// dead (init reaps it) unless it has more than one thread: a leader that ended with
/// `pthread_exit` shows `Z` while its other threads run (and gVisor lists no `task` for it),
/// and `kill` on its PID ends them all. The state follows the LAST ") " of `stat`, and the
/// thread count is the LAST `Threads:` of `status`: the name before them is the process's own
/// to choose; a count that is not 0 or 1 counts as alive.
///
/// `settled` runs `scan` until it comes back empty twice in a row, for at most 500 rounds,
/// killing what it finds (`settled kill`), or, only looking, failing at the first find: one empty scan could miss a
/// process that forked a child whose PID wrapped around below where the directory listing
/// already was and then exited; a second listing starts below it, and a second wrap within
/// one scan would take the whole PID space in forks.
macro_rules! scan_fns {
    () => {
        r#"alive() {
  st=
  read -r st 2>/dev/null < "$1/stat"
  [ -n "$st" ] || return 1
  case ${st##*) } in Z*) ;; *) return 0 ;; esac
  n=
  { while read -r k v; do case $k in Threads:) n=$v ;; esac; done < "$1/status"; } 2>/dev/null || return 1
  case $n in 0|1) return 1 ;; esac
  return 0
}
scan() {
  left=
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case " 1 $keep $$ " in *" $p "*) continue ;; esac
    alive "$d" && left="$left $p"
  done
}
settled() {
  i=0
  empty=0
  while [ "$i" -lt 500 ]; do
    scan
    if [ -z "$left" ]; then
      empty=$((empty + 1))
      [ "$empty" -ge 2 ] && return 0
    else
      # Only looking: what is there now is the answer.
      [ "$1" = kill ] || return 1
      empty=0
      kill -9 $left 2>/dev/null
    fi
    i=$((i + 1))
  done
  return 1
}
"#
    };
}

/// The reaper, as an exec of the commands' uid: kills what a command left and prints
/// `clean` once nothing is left. Its arguments are the PIDs to spare.
const REAP: &str = concat!(
    "keep=\"$*\"\n",
    scan_fns!(),
    r#"if settled kill; then echo clean; exit 0; fi
echo "left:$left"
exit 1
"#
);

/// The watcher, as an exec of the container's own uid, which commands can neither signal
/// nor trace: first finds the waiting process (at start, the only process but PID 1 and
/// itself, waited for a moment if the init has not started it yet) and prints
/// `ready SLEEPER WATCHER` (the PIDs the reaper spares), then answers each line on its stdin with `clean`, or
/// `busy PIDS` (it can see what a command left but not kill it).
pub(crate) const WATCH: &str = concat!(
    r#"keep=
tries=0
while [ -z "$keep" ]; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case $p in 1|"$$") continue ;; esac
    [ -z "$keep" ] || { echo "more than one waiting process"; exit 1; }
    keep=$p
  done
  # The init may not have started it yet.
  [ -n "$keep" ] && break
  tries=$((tries + 1))
  [ "$tries" -le 40 ] || { echo "no waiting process"; exit 1; }
  sleep 0.05 2>/dev/null || sleep 1
done
"#,
    scan_fns!(),
    r#"echo "ready $keep $$"
while read -r _; do
  if settled; then echo clean; else echo "busy$left"; fi
done
"#
);

/// Lists the processes other than PID 1 and itself (at session start: the sleeper alone).
const LIST: &str = r#"for d in /proc/[0-9]*; do
  p=${d#/proc/}
  case $p in 1|"$$") continue ;; esac
  echo "$p"
done
"#;

const TIMEOUT: Duration = Duration::from_secs(10);

fn sh(
    engine: &Engine,
    container: &str,
    user: &str,
    script: &str,
    args: &[String],
) -> Result<exec::Outcome, SandboxError> {
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        script.into(),
        "agp-reap".into(),
    ];
    argv.extend(args.iter().cloned());
    let root = std::path::Path::new("/");
    exec::run(
        engine,
        &exec::Command {
            container,
            user,
            argv: &argv,
            env: &[],
            cwd: root,
            stdin: None,
            timeout: TIMEOUT,
            cap: 64 * 1024,
        },
        None,
    )
}

/// The PID of the container's waiting process, found before any command ran.
pub(crate) fn sleeper(
    engine: &Engine,
    container: &str,
    user: &str,
) -> Result<String, SandboxError> {
    let out = sh(engine, container, user, LIST, &[])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = text.split_whitespace().collect();
    match (out.exit_code, pids.as_slice()) {
        (Some(0), [one]) if one.bytes().all(|b| b.is_ascii_digit()) => Ok((*one).to_string()),
        _ => Err(SandboxError::Refused(format!(
            "the session container does not hold exactly its init and one waiting process \
             (saw {pids:?}, exit {:?}): {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Kill everything a command left but the container's own processes (`spared`: their PIDs,
/// space-separated); `Err` when the container cannot be shown clean.
pub(crate) fn reap(
    engine: &Engine,
    container: &str,
    user: &str,
    spared: &str,
) -> Result<(), SandboxError> {
    let spared: Vec<String> = spared.split_whitespace().map(str::to_string).collect();
    let out = sh(engine, container, user, REAP, &spared)?;
    if out.exit_code == Some(0) && out.stdout == b"clean\n" {
        Ok(())
    } else {
        Err(SandboxError::Refused(format!(
            "processes a command left could not be killed ({}{})",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_watcher_is_no_longer_spared_nor_asked() {
        let mut check = Check::Watcher(watch::Watcher::gone());
        let mut spared = "2 3".to_string();
        assert!(!check.clean());
        check.drop_lost_watcher(&mut spared);
        assert!(matches!(check, Check::Reaper));
        assert_eq!(spared, "2");
        // The reaper alone is never shown clean without its exec.
        assert!(!check.clean());
    }

    #[test]
    fn the_scripts_fork_nothing_in_their_scans() {
        // Only built-ins where processes are scanned and killed: a fork there could be raced
        // by what it is looking at (the watcher's one `sleep` runs before any command).
        let fns = scan_fns!();
        for word in ["ps", "grep", "awk", "sed", "cat", "sleep", "$(", "`"] {
            assert!(
                !fns.split_whitespace().any(|w| w.starts_with(word)),
                "{word} in the scan"
            );
        }
        assert!(REAP.contains("settled kill"));
        assert!(WATCH.contains("if settled; then echo clean;"));
    }
}
