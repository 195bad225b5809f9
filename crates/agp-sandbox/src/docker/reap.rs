//! Nothing a command starts outlives it: after each command, every process in the container
//! but PID 1 (the engine's init) and the session's waiting `sleep` is killed, as under
//! bubblewrap, where a command's namespace dies with it. A process left in the background
//! could otherwise keep writing in the repository after the git metadata check, or watch
//! later commands. When the container cannot be shown clean, it is killed and started again.

use std::time::Duration;

use agp_contracts::sandbox::SandboxError;

use super::api::Engine;
use super::exec;

/// The kill loop. Only shell built-ins (no fork of its own): `$1` is the sleeper's PID.
/// Prints `clean` once only PID 1, the sleeper, itself and zombies are left (a process that
/// is gone by the time its `stat` is read counts as gone).
const REAP: &str = r#"keep=$1
i=0
while [ "$i" -lt 500 ]; do
  left=
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case $p in 1|"$keep"|"$$") continue ;; esac
    # A zombie is already dead; init reaps it. The state follows the LAST ") ": the name
    # before it is the process's own to choose.
    stat=
    read -r stat < "$d/stat" 2>/dev/null
    [ -n "$stat" ] || continue
    case ${stat##*) } in Z*) continue ;; esac
    left="$left $p"
  done
  if [ -z "$left" ]; then echo clean; exit 0; fi
  kill -9 $left 2>/dev/null
  i=$((i + 1))
done
echo "left:$left"
exit 1
"#;

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

/// Kill everything a command left; `Err` when the container cannot be shown clean.
pub(crate) fn reap(
    engine: &Engine,
    container: &str,
    user: &str,
    sleeper: &str,
) -> Result<(), SandboxError> {
    let out = sh(engine, container, user, REAP, &[sleeper.to_string()])?;
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
