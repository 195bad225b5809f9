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

use agp_contracts::sandbox::SandboxError;
use serde_json::json;

use super::api::Engine;
use super::container::env_list;
use super::{call, exec, lifecycle, DockerProvider, DockerSession};

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
        call::admit(session, argv, cwd)?;
        let mut env = env_list(&session.env);
        if let Some(term) = term {
            if term.contains('\0') {
                return Err(SandboxError::Refused("TERM contains a NUL byte".into()));
            }
            // The host terminal's type replaces any the session set: it is what draws.
            env.retain(|e| !e.starts_with("TERM="));
            env.push(format!("TERM={term}"));
        }
        exec::create(
            &self.engine,
            &session.container,
            &exec::Spec {
                user: &session.user,
                argv,
                env: &env,
                cwd,
                stdin,
                tty,
            },
            "container engine refused the command",
        )
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
    reply.string_field("ContainerID", "container for the exec")
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
    exec::exit_code(engine, exec_id, ATTACHED_EXIT_POLLS)
}

/// Writes every complete frame of `pending` out. A reader gone on our side is not an error:
/// the command keeps running and its status still counts.
fn relay(
    pending: &mut Vec<u8>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), SandboxError> {
    exec::drain_frames(pending, |stream, payload| {
        let sink: &mut dyn Write = match stream {
            exec::Stream::Out => &mut *out,
            exec::Stream::Err => &mut *err,
        };
        let _ = sink.write_all(payload).and_then(|()| sink.flush());
    })
}

/// How often an attached command's exit code is asked for, 2 ms apart, after its output
/// closed (an agent's exit can take the engine longer to record than a call's).
pub(super) const ATTACHED_EXIT_POLLS: u32 = 2500;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::exec::tests::frame;

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
