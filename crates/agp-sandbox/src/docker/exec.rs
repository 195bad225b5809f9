//! One command as an exec in the session container: stdin fed and closed, stdout and stderr
//! demultiplexed under a cap, a deadline, and a watcher that can stop it.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use agp_contracts::sandbox::SandboxError;
use serde_json::json;

use super::api::Engine;
use super::container::env_list;

/// How often the watcher is asked whether the command must stop.
const WATCH_EVERY: Duration = Duration::from_millis(500);

pub(crate) struct Command<'a> {
    pub container: &'a str,
    pub user: &'a str,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a std::path::Path,
    pub stdin: Option<&'a [u8]>,
    pub timeout: Duration,
    pub cap: usize,
}

#[derive(Default)]
pub(crate) struct Outcome {
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    /// The deadline passed or the watcher asked to stop: the command is still running and
    /// the caller must kill it (the container).
    pub timed_out: bool,
    pub stopped: bool,
    pub duration: Duration,
}

pub(crate) fn run(
    engine: &Engine,
    cmd: &Command<'_>,
    mut watcher: Option<&mut dyn FnMut() -> bool>,
) -> Result<Outcome, SandboxError> {
    let started = Instant::now();
    let env = env_list(cmd.env);
    let exec_id = create(
        engine,
        cmd.container,
        &Spec {
            user: cmd.user,
            argv: cmd.argv,
            env: &env,
            cwd: cmd.cwd,
            stdin: cmd.stdin.is_some(),
            tty: false,
        },
        "container engine refused the command",
    )?;
    let mut stream = engine.hijack(
        &format!("/exec/{exec_id}/start"),
        &json!({"Detach": false, "Tty": false}),
    )?;
    let writer = match cmd.stdin {
        Some(input) => {
            let mut half = stream.try_clone()?;
            let input = input.to_vec();
            Some(std::thread::spawn(move || {
                // A command that exits without reading its stdin breaks the pipe: not an error.
                let _ = half.write_all(&input);
                let _ = half.shutdown(Shutdown::Write);
            }))
        }
        None => None,
    };
    let mut out = Outcome::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = started + cmd.timeout;
    let mut next_watch = Instant::now() + WATCH_EVERY;
    loop {
        let now = Instant::now();
        if now >= deadline {
            out.timed_out = true;
            break;
        }
        if now >= next_watch {
            next_watch = now + WATCH_EVERY;
            if watcher.as_mut().is_some_and(|w| w()) {
                out.stopped = true;
                break;
            }
        }
        let wait = deadline.min(next_watch).saturating_duration_since(now);
        stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                demux(&mut pending, &mut out, cmd.cap)?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(stream);
    if let Some(w) = writer {
        let _ = w.join();
    }
    out.duration = started.elapsed();
    if out.timed_out || out.stopped {
        return Ok(out);
    }
    out.exit_code = exit_code(engine, &exec_id, CALL_EXIT_POLLS)?;
    Ok(out)
}

/// Move every complete frame out of `pending` into `out`, each stream under `cap`.
fn demux(pending: &mut Vec<u8>, out: &mut Outcome, cap: usize) -> Result<(), SandboxError> {
    drain_frames(pending, |stream, payload| {
        let sink = match stream {
            Stream::Out => &mut out.stdout,
            Stream::Err => &mut out.stderr,
        };
        let room = cap.saturating_sub(sink.len());
        if payload.len() > room {
            out.truncated = true;
        }
        sink.extend_from_slice(&payload[..payload.len().min(room)]);
    })
}

/// The two output streams of a non-terminal exec.
pub(super) enum Stream {
    Out,
    Err,
}

/// Hands every complete frame of `pending` to `sink`, then drops them from it. A frame is an
/// 8-byte header (stream 1 or 2, three zero bytes, big-endian length), then the payload; any
/// other stream is refused.
pub(super) fn drain_frames(
    pending: &mut Vec<u8>,
    mut sink: impl FnMut(Stream, &[u8]),
) -> Result<(), SandboxError> {
    let mut at = 0;
    while pending.len() - at >= 8 {
        let head = &pending[at..at + 8];
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if pending.len() - at - 8 < len {
            break;
        }
        let stream = match head[0] {
            1 => Stream::Out,
            2 => Stream::Err,
            other => {
                return Err(SandboxError::Refused(format!(
                    "container engine sent an output frame for stream {other}"
                )))
            }
        };
        sink(stream, &pending[at + 8..at + 8 + len]);
        at += 8 + len;
    }
    pending.drain(..at);
    Ok(())
}

/// What an exec runs and how it is attached.
pub(super) struct Spec<'a> {
    pub user: &'a str,
    pub argv: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a std::path::Path,
    pub stdin: bool,
    pub tty: bool,
}

/// Creates (does not start) an exec in `container`; its id. `refusal` names what the engine
/// refused when it does.
pub(super) fn create(
    engine: &Engine,
    container: &str,
    spec: &Spec<'_>,
    refusal: &str,
) -> Result<String, SandboxError> {
    let created = engine.call(
        "POST",
        &format!("/containers/{container}/exec"),
        Some(&json!({
            "AttachStdin": spec.stdin,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": spec.tty,
            "Privileged": false,
            "User": spec.user,
            "Cmd": spec.argv,
            "Env": spec.env,
            "WorkingDir": spec.cwd,
        })),
    )?;
    created.refuse_unless_ok(|| refusal.to_owned())?;
    created.string_field("Id", "exec id")
}

/// How often [`exit_code`] asks, 2 ms apart, after a call's output closed.
pub(super) const CALL_EXIT_POLLS: u32 = 1000;

/// The exec's exit code once its output closed. The engine records it a moment after the
/// stream ends, so a still-running exec is asked again, up to `polls` times 2 ms apart.
pub(super) fn exit_code(
    engine: &Engine,
    exec_id: &str,
    polls: u32,
) -> Result<Option<i32>, SandboxError> {
    for _ in 0..polls {
        let reply = engine.call("GET", &format!("/exec/{exec_id}/json"), None)?;
        reply
            .refuse_unless_ok(|| "container engine cannot report the command's exit".to_owned())?;
        let info = reply.json()?;
        if info["Running"] != true {
            return Ok(info["ExitCode"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(SandboxError::Refused(
        "the command's output closed but the engine still reports it running".into(),
    ))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// One output frame as the engine sends it (what `drain_frames` reads).
    pub(in crate::docker) fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn frames_split_anywhere_are_demultiplexed_and_capped() {
        let mut all = frame(1, b"hello ");
        all.extend(frame(2, b"oops"));
        all.extend(frame(1, b"world and more"));
        let mut out = Outcome::default();
        let mut pending = Vec::new();
        for byte in all {
            pending.push(byte);
            demux(&mut pending, &mut out, 11).unwrap();
        }
        assert!(pending.is_empty());
        assert_eq!(out.stdout, b"hello world");
        assert_eq!(out.stderr, b"oops");
        assert!(out.truncated);
        assert!(demux(&mut frame(7, b"x"), &mut out, 10).is_err());
    }
}
