//! A long-running command in the session container, attached to a host process's stdio: what
//! runs a real agent CLI inside the container. The launcher creates the exec here (the same
//! checks, user and environment as every call), then starts `agp sandbox attach`, an ordinary
//! child process it can wait for and signal, which starts the exec over the Engine API,
//! forwards its own stdin, writes the demultiplexed stdout and stderr to its own, and exits
//! with the command's status. No docker CLI is involved.
//!
//! An exec cannot be signalled through the Engine API, and ending the attached connection
//! does not end the command; so the attach process removes the whole session container when
//! it is told to stop (a signal, or its parent's death): an interrupted agent never outlives
//! the run.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::Duration;

use agp_contracts::sandbox::SandboxError;
use serde_json::json;

use super::api::Engine;
use super::container::env_list;
use super::{lifecycle, DockerProvider, DockerSession};
use crate::layout;

impl DockerProvider {
    /// Creates (does not start) an exec of `argv` in the session's container, as every call
    /// runs: the session's user and environment, `cwd` inside the repository. `stdin`: the
    /// command reads the attaching process's stdin (else it gets none). Returns the exec's id
    /// for [`attach`].
    pub fn create_exec(
        &self,
        session: &DockerSession,
        argv: &[String],
        cwd: &Path,
        stdin: bool,
    ) -> Result<String, SandboxError> {
        self.new_exec(session, argv, cwd, stdin, false, None)
    }

    /// The exec behind [`DockerProvider::create_exec`] and `create_terminal_exec`: `tty` makes
    /// it a terminal, `term` sets its `TERM`.
    pub(super) fn new_exec(
        &self,
        session: &DockerSession,
        argv: &[String],
        cwd: &Path,
        stdin: bool,
        tty: bool,
        term: Option<&str>,
    ) -> Result<String, SandboxError> {
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
        layout::check_cwd(cwd, &session.repo)?;
        let mut env = env_list(&session.env);
        if let Some(term) = term {
            if term.contains('\0') {
                return Err(SandboxError::Refused("TERM contains a NUL byte".into()));
            }
            // The host terminal's type replaces any the session set: it is what draws.
            env.retain(|e| !e.starts_with("TERM="));
            env.push(format!("TERM={term}"));
        }
        let created = self.engine.call(
            "POST",
            &format!("/containers/{}/exec", session.container),
            Some(&json!({
                "AttachStdin": stdin,
                "AttachStdout": true,
                "AttachStderr": true,
                "Tty": tty,
                "Privileged": false,
                "User": session.user,
                "Cmd": argv,
                "Env": env,
                "WorkingDir": cwd,
            })),
        )?;
        created.refuse_unless_ok(|| "container engine refused the command".to_owned())?;
        created
            .json()?
            .get("Id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| SandboxError::Refused("container engine gave no exec id".into()))
    }
}

impl DockerSession {
    /// The uid and gid the session's commands run as (the repository's owner).
    pub fn user_ids(&self) -> (u32, u32) {
        self.uid_gid
    }
}

/// The container an exec runs in.
pub fn exec_container(engine: &Engine, exec_id: &str) -> Result<String, SandboxError> {
    let reply = engine.call("GET", &format!("/exec/{exec_id}/json"), None)?;
    reply.refuse_unless_ok(|| format!("container engine does not know exec {exec_id}"))?;
    reply
        .json()?
        .get("ContainerID")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| SandboxError::Refused("container engine named no container".into()))
}

/// Ends everything in `container` by removing it (what an interrupted attach does).
pub fn remove_container(engine: &Engine, container: &str) -> Result<(), SandboxError> {
    lifecycle::remove(engine, container)
}

/// Starts exec `exec_id` and relays it: `input` (when given) to its stdin, closed at its end;
/// its stdout and stderr frames to `out` and `err` as they come. Returns its exit code once
/// its output ends (`None` when the engine reports none).
pub fn attach(
    engine: &Engine,
    exec_id: &str,
    input: Option<Box<dyn Read + Send>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Option<i32>, SandboxError> {
    let mut stream = engine.hijack(
        &format!("/exec/{exec_id}/start"),
        &json!({"Detach": false, "Tty": false}),
    )?;
    // An agent can be silent for as long as a human takes to approve a call.
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    if let Some(mut input) = input {
        let mut half = stream.try_clone()?;
        // Detached: a blocked read of the terminal must not hold the exit up.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut input, &mut half);
            let _ = half.shutdown(Shutdown::Write);
        });
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                relay(&mut pending, out, err)?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = out.flush();
    let _ = err.flush();
    exit_code(engine, exec_id)
}

/// Writes every complete frame of `pending` out: an 8-byte header (stream 1 or 2, three zero
/// bytes, big-endian length), then the payload. A reader gone on our side is not an error:
/// the command keeps running and its status still counts.
fn relay(
    pending: &mut Vec<u8>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), SandboxError> {
    let mut at = 0;
    while pending.len() - at >= 8 {
        let head = &pending[at..at + 8];
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if pending.len() - at - 8 < len {
            break;
        }
        let payload = &pending[at + 8..at + 8 + len];
        let sink: &mut dyn Write = match head[0] {
            1 => out,
            2 => err,
            other => {
                return Err(SandboxError::Refused(format!(
                    "container engine sent an output frame for stream {other}"
                )))
            }
        };
        let _ = sink.write_all(payload).and_then(|()| sink.flush());
        at += 8 + len;
    }
    pending.drain(..at);
    Ok(())
}

/// The exec's exit code once its output closed (recorded a moment after the stream ends).
pub(super) fn exit_code(engine: &Engine, exec_id: &str) -> Result<Option<i32>, SandboxError> {
    for _ in 0..2500 {
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
mod tests {
    use super::*;

    fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn frames_split_anywhere_reach_their_stream_uncapped() {
        let big = vec![b'x'; 100_000];
        let mut all = frame(1, b"hello ");
        all.extend(frame(2, b"oops"));
        all.extend(frame(1, &big));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut pending = Vec::new();
        for piece in all.chunks(7) {
            pending.extend_from_slice(piece);
            relay(&mut pending, &mut out, &mut err).unwrap();
        }
        assert!(pending.is_empty());
        assert_eq!(&out[..6], b"hello ");
        assert_eq!(out.len(), 6 + big.len());
        assert_eq!(err, b"oops");
        assert!(relay(&mut frame(3, b"x"), &mut out, &mut err).is_err());
    }
}
