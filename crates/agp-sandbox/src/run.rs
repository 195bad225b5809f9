//! Run one command to completion: stdin fed, stdout and stderr captured under a cap, a
//! timeout that kills the whole sandbox (or process group), nothing left running.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use agp_contracts::sandbox::{ExecOutput, SandboxError};

/// How long to wait for output pipes to close after the process is gone (a descendant that
/// escaped the process group may hold them; only possible without a sandbox).
const PIPE_GRACE: Duration = Duration::from_millis(500);

pub(crate) struct Captured {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub timed_out: bool,
    /// The watcher asked for the command to be stopped (and it was killed).
    pub stopped: bool,
    pub duration: Duration,
}

impl Captured {
    /// What the command did, as a provider reports it (limits and git scrubbing are the
    /// caller's to add).
    pub(crate) fn into_output(self, exit_code: Option<i32>) -> ExecOutput {
        ExecOutput {
            exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            timed_out: self.timed_out,
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            truncated: self.truncated,
            ..ExecOutput::default()
        }
    }
}

/// How often a watcher is asked whether the command must stop.
const WATCH_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Sink {
    bytes: Vec<u8>,
    truncated: bool,
    done: bool,
}

type Shared = Arc<(Mutex<Sink>, Condvar)>;

fn drain(mut from: impl Read + Send + 'static, cap: usize) -> Shared {
    let sink: Shared = Arc::new((Mutex::new(Sink::default()), Condvar::new()));
    let out = Arc::clone(&sink);
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut s = out
                        .0
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let room = cap.saturating_sub(s.bytes.len());
                    let keep = room.min(n);
                    s.bytes.extend_from_slice(&buf[..keep]);
                    if keep < n {
                        // Keep reading (and discarding) so the writer never blocks on a
                        // full pipe.
                        s.truncated = true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .done = true;
        out.1.notify_all();
    });
    sink
}

fn take(sink: &Shared, deadline: Instant) -> (Vec<u8>, bool) {
    let (lock, cond) = &**sink;
    let mut s = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while !s.done {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        s = cond
            .wait_timeout(s, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    let truncated = s.truncated || !s.done;
    (std::mem::take(&mut s.bytes), truncated)
}

/// Block until the child has exited without reaping it, so its pid stays valid for a kill.
fn exited_signal(pid: u32) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
        // WNOWAIT leaves the child unreaped, so `Child::wait` still owns reaping.
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        let id = i32::try_from(pid).ok().and_then(Pid::from_raw);
        while let Some(pid) = id {
            if !matches!(
                waitid(WaitId::Pid(pid), options),
                Err(rustix::io::Errno::INTR)
            ) {
                break;
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Spawn `cmd` and run it to completion. `kill_group` puts the child in its own process group
/// and kills the group on timeout (used without a sandbox; bubblewrap's pid namespace dies
/// with bwrap). `watch`, when given, is asked every [`WATCH_EVERY`] while the command runs;
/// `true` stops it like a timeout would.
pub(crate) fn run(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    cap: usize,
    kill_group: bool,
    mut watch: Option<&mut dyn FnMut() -> bool>,
) -> Result<Captured, SandboxError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if kill_group {
        cmd.process_group(0);
    }
    let started = Instant::now();
    let mut child: Child = cmd.spawn()?;
    let pid = child.id();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        // Both were set to `Stdio::piped()` above; should that ever not hold, the child is
        // not left running unobserved.
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("the command's output pipes are missing").into());
    };

    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
        let input = input.to_vec();
        // A command that does not read its stdin closes the pipe: EPIPE is not an error.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = drain(stdout, cap);
    let err = drain(stderr, cap);

    let exited = exited_signal(pid);
    let deadline = started + timeout;
    let mut stopped = false;
    let timed_out = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break true;
        }
        let step = if watch.is_some() {
            left.min(WATCH_EVERY)
        } else {
            left
        };
        match exited.recv_timeout(step) {
            Ok(()) => break false,
            Err(mpsc::RecvTimeoutError::Disconnected) => break true,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if watch.as_mut().is_some_and(|w| w()) {
                    stopped = true;
                    break false;
                }
            }
        }
    };
    // The child is not reaped yet (on timeout it may still run), so its pid and process
    // group id cannot have been reused.
    if kill_group {
        // Also reaps descendants left in the group after a normal exit: nothing outlives
        // the call.
        // SAFETY: kill only sends a signal.
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    } else if timed_out || stopped {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let duration = started.elapsed();
    let deadline = Instant::now() + PIPE_GRACE;
    let (stdout, t1) = take(&out, deadline);
    let (stderr, t2) = take(&err, deadline);
    Ok(Captured {
        status: if timed_out || stopped {
            None
        } else {
            Some(status)
        },
        stdout,
        stderr,
        truncated: t1 || t2,
        timed_out,
        stopped,
        duration,
    })
}
