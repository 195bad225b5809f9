//! The watcher: where the host cannot count the container's processes (gVisor, whose
//! processes live in its user-space kernel), a shell started as an exec when the container
//! starts and kept for the session answers, after each command, whether anything but the
//! container's own processes is left. A command that left nothing then costs one exec
//! instead of two (its own and the reaper's); anything else it answers, or no answer, runs
//! the reaper's exec as before.
//!
//! Why a command cannot make it lie: it runs as the container's own uid, not the commands',
//! so with no capabilities a command can neither signal, trace nor write its memory, nor open
//! its stdin or stdout (`/proc/PID/fd` of another uid); its only input is the stream agp holds,
//! and it reads `/proc`, which the commands cannot remount. It only looks (it could not
//! kill another uid's processes), so what it is shown cannot make it harm anything; the scan
//! it shares with the reaper is written against disguised names, zombie leaders with live
//! threads and PIDs wrapping around (see `reap`).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use agp_contracts::sandbox::SandboxError;
use serde_json::json;

use super::api::Engine;
use super::exec;
use super::reap::WATCH;

/// How long one answer may take (two scans of `/proc`, in practice a few milliseconds).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Longest line the watcher writes that agp reads (a `busy` list is cut here).
const MAX_LINE: usize = 4096;

/// A running watcher; dead (every answer "not shown clean") once its stream failed.
#[derive(Debug)]
pub(crate) struct Watcher {
    stream: Option<UnixStream>,
    pending: Vec<u8>,
}

impl Watcher {
    /// Start the watcher as `user` (the container's own uid) in a container that holds only
    /// its init and waiting process: the watcher, and the PIDs (inside) the reaper must spare
    /// (the waiting process's and the watcher's, space-separated).
    pub(crate) fn start(
        engine: &Engine,
        container: &str,
        user: &str,
    ) -> Result<(Self, String), SandboxError> {
        let argv = ["/bin/sh", "-c", WATCH, "agp-watch"].map(String::from);
        let exec_id = exec::create(
            engine,
            container,
            &exec::Spec {
                user,
                argv: &argv,
                env: &[],
                cwd: Path::new("/"),
                stdin: true,
                tty: false,
            },
            "container engine refused the watcher",
        )?;
        let stream = engine.hijack(
            &format!("/exec/{exec_id}/start"),
            &json!({"Detach": false, "Tty": false}),
        )?;
        stream.set_read_timeout(Some(ANSWER_WITHIN))?;
        stream.set_write_timeout(Some(ANSWER_WITHIN))?;
        let mut watcher = Self {
            stream: Some(stream),
            pending: Vec::new(),
        };
        let first = watcher.line();
        let pids: Vec<&str> = first
            .as_deref()
            .and_then(|l| l.strip_prefix("ready "))
            .map(|l| l.split(' ').collect())
            .unwrap_or_default();
        match pids.as_slice() {
            [sleeper, own]
                if [sleeper, own]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                let spared = format!("{sleeper} {own}");
                Ok((watcher, spared))
            }
            _ => Err(SandboxError::Refused(format!(
                "the session container does not hold exactly its init and one waiting process \
                 (the watcher said {first:?})"
            ))),
        }
    }

    /// Whether the watcher answers that only the container's own processes are left. Any
    /// failure kills the watcher for the session: every later command runs the reaper.
    pub(crate) fn clean(&mut self) -> bool {
        let asked = self
            .stream
            .as_mut()
            .is_some_and(|s| s.write_all(b"?\n").is_ok());
        if !asked {
            self.stream = None;
            return false;
        }
        self.line().as_deref() == Some("clean")
    }

    /// Whether the watcher's stream failed: it answers nothing any more.
    pub(crate) fn lost(&self) -> bool {
        self.stream.is_none()
    }

    /// The next line of the watcher's stdout; `None` (and the watcher dead) on EOF, error,
    /// timeout, or a line too long.
    fn line(&mut self) -> Option<String> {
        let got = self.read_line();
        if got.is_none() {
            self.stream = None;
        }
        got
    }

    fn read_line(&mut self) -> Option<String> {
        let mut out = Vec::new();
        loop {
            if let Some(at) = out.iter().position(|&b| b == b'\n') {
                // One question, one answer: anything after the line is not expected.
                return (at + 1 == out.len())
                    .then(|| String::from_utf8_lossy(&out[..at]).into_owned());
            }
            if out.len() > MAX_LINE {
                return None;
            }
            let (stream, payload) = self.frame()?;
            if stream == 1 {
                out.extend_from_slice(&payload);
            }
        }
    }

    /// One output frame: an 8-byte header (stream, 3 zero bytes, big-endian length), then
    /// the payload.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let stream = self.stream.as_mut()?;
        let mut chunk = [0u8; 4096];
        loop {
            if self.pending.len() >= 8 {
                let head = &self.pending[..8];
                let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
                if len > MAX_LINE * 4 {
                    return None;
                }
                if self.pending.len() >= 8 + len {
                    let kind = self.pending[0];
                    let payload = self.pending[8..8 + len].to_vec();
                    self.pending.drain(..8 + len);
                    return Some((kind, payload));
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
impl Watcher {
    /// A watcher whose stream already failed.
    pub(crate) fn gone() -> Self {
        Self {
            stream: None,
            pending: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::exec::tests::frame;

    /// A watcher over one end of a socket pair; the other end plays the engine.
    fn pair() -> (Watcher, UnixStream) {
        let (ours, engine) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (
            Watcher {
                stream: Some(ours),
                pending: Vec::new(),
            },
            engine,
        )
    }

    fn asked(engine: &mut UnixStream) -> bool {
        let mut q = [0u8; 2];
        engine.read_exact(&mut q).is_ok() && q == *b"?\n"
    }

    #[test]
    fn only_a_clean_line_on_stdout_is_clean() {
        let (mut w, mut engine) = pair();
        // Split anywhere, with stderr between: still the one line.
        let mut bytes = frame(1, b"cl");
        bytes.extend(frame(2, b"noise\n"));
        bytes.extend(frame(1, b"ean\n"));
        engine.write_all(&bytes).unwrap();
        assert!(w.clean());
        assert!(asked(&mut engine));
        engine.write_all(&frame(1, b"busy 12 13\n")).unwrap();
        assert!(!w.clean());
        assert!(!w.lost());
        // Stderr saying clean is not an answer.
        engine.write_all(&frame(2, b"clean\n")).unwrap();
        engine.write_all(&frame(1, b"busy 9\n")).unwrap();
        assert!(!w.clean());
    }

    #[test]
    fn a_watcher_that_says_more_than_asked_or_goes_away_is_lost_for_good() {
        let (mut w, mut engine) = pair();
        engine.write_all(&frame(1, b"clean\nclean\n")).unwrap();
        assert!(!w.clean());
        assert!(w.lost());
        // Its stream is closed: the engine's end can no longer even answer.
        assert!(engine.write_all(&frame(1, b"clean\n")).is_err());
        assert!(!w.clean(), "a lost watcher is never asked again");

        let (mut w, engine) = pair();
        drop(engine);
        assert!(!w.clean());
        assert!(w.lost());

        let (mut w, mut engine) = pair();
        let mut head = frame(1, b"");
        head[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        engine.write_all(&head).unwrap();
        assert!(!w.clean());
        assert!(w.lost());
    }
}
