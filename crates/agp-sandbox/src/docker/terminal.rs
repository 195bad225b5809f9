//! A command in the session container on a terminal: what `agp run --interactive` uses when a
//! person sits at agp's terminal. The exec is created with `Tty` (the engine gives it a
//! pseudo-terminal inside), its stream is then raw bytes both ways rather than multiplexed
//! frames, and the host terminal's window size is passed on with the exec resize call. Same
//! checks, user and environment as every call ([`DockerProvider::create_exec`]), plus `TERM`.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::Duration;

use agp_contracts::sandbox::SandboxError;
use serde_json::json;

use super::api::Engine;
use super::attach::ATTACHED_EXIT_POLLS;
use super::exec;
use super::{DockerProvider, DockerSession};

/// How often the first resize is tried while the engine has not started the command yet.
const RESIZE_TRIES: u32 = 100;

impl DockerProvider {
    /// Creates (does not start) an exec of `argv` on a terminal inside the container, reading
    /// the attaching process's stdin, with `TERM` set to `term` (the host terminal's type) when
    /// given. Returns the exec's id for [`attach_terminal`].
    pub fn create_terminal_exec(
        &self,
        session: &DockerSession,
        argv: &[String],
        cwd: &Path,
        term: Option<&str>,
    ) -> Result<String, SandboxError> {
        self.new_exec(session, argv, cwd, true, true, term)
    }
}

/// Starts terminal exec `exec_id` and relays it: `input` to the command's terminal, what the
/// terminal shows to `out`, as raw bytes. `size` (rows, columns) is given to the command's
/// terminal first. Returns the command's exit code once its terminal closes (`None` when the
/// engine reports none).
pub fn attach_terminal(
    engine: &Engine,
    exec_id: &str,
    mut input: Box<dyn Read + Send>,
    out: &mut dyn Write,
    size: Option<(u16, u16)>,
) -> Result<Option<i32>, SandboxError> {
    let mut stream = engine.hijack(
        &format!("/exec/{exec_id}/start"),
        &json!({"Detach": false, "Tty": true}),
    )?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    if let Some((rows, cols)) = size {
        first_resize(engine, exec_id, rows, cols);
    }
    let mut half = stream.try_clone()?;
    // Detached: a blocked read of the terminal must not hold the exit up.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut input, &mut half);
        let _ = half.shutdown(Shutdown::Write);
    });
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            // A reader gone on our side is not an error: the command's status still counts.
            Ok(n) => {
                let _ = out.write_all(&chunk[..n]).and_then(|()| out.flush());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = out.flush();
    exec::exit_code(engine, exec_id, ATTACHED_EXIT_POLLS)
}

/// Gives the command's terminal `rows` x `cols` (the host window was resized).
pub fn resize_exec(
    engine: &Engine,
    exec_id: &str,
    rows: u16,
    cols: u16,
) -> Result<(), SandboxError> {
    engine
        .call(
            "POST",
            &format!("/exec/{exec_id}/resize?h={rows}&w={cols}"),
            None,
        )?
        .refuse_unless_ok(|| "container engine refused to resize the terminal".to_owned())
}

/// The first size: Docker holds a resize until the command has started, Podman refuses one
/// before, so it is tried again for a while. The command may already be running at the
/// engine's default size (API 1.41 has no size at start); the resize then reaches it as a
/// SIGWINCH, which terminal programs follow. A terminal left at the engine's default size
/// still works, so a refusal is not fatal; the next window change tries again.
fn first_resize(engine: &Engine, exec_id: &str, rows: u16, cols: u16) {
    for _ in 0..RESIZE_TRIES {
        match resize_exec(engine, exec_id, rows, cols) {
            Ok(()) | Err(SandboxError::Missing(_)) => return,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
