//! The terminal device: opening it, single-key input, and waiting for a key or a wake-up.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::termios::{self, LocalModes, OptionalActions, QueueSelector, SpecialCodeIndex};

/// The controlling terminal. Prompts go here, not to stdout, so piping agp's output elsewhere
/// does not break approvals.
pub const CONTROLLING_TTY: &str = "/dev/tty";

/// An open terminal device.
pub struct Tty {
    file: File,
}

impl Tty {
    /// Opens `path` read-write without making it our controlling terminal, and checks that it
    /// is a terminal at all.
    pub fn open(path: &Path) -> io::Result<Tty> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(path)?;
        if !termios::isatty(&file) {
            return Err(io::Error::other(format!(
                "{} is not a terminal",
                path.display()
            )));
        }
        Ok(Tty { file })
    }

    pub fn write_all(&self, text: &str) -> io::Result<()> {
        (&self.file).write_all(text.as_bytes())
    }

    /// The terminal's width in columns, or a default when it does not say.
    pub fn width(&self) -> usize {
        match termios::tcgetwinsize(&self.file) {
            Ok(size) if size.ws_col >= 20 => usize::from(size.ws_col),
            _ => crate::render::DEFAULT_WIDTH,
        }
    }

    /// Drops typed-ahead input, so a key pressed before a prompt was shown (or meant for a
    /// withdrawn prompt) can never answer the next one.
    pub fn discard_input(&self) -> io::Result<()> {
        termios::tcflush(&self.file, QueueSelector::IFlush).map_err(io::Error::from)
    }

    /// Switches to single-key input without echo until the guard drops. The terminal does not
    /// turn Ctrl-C into a signal meanwhile: the prompt restores the mode first and then raises
    /// the signal itself, so an interrupted agp never leaves the terminal without echo.
    pub fn single_keys(&self) -> io::Result<KeyModeGuard<'_>> {
        let saved = termios::tcgetattr(&self.file)?;
        let mut raw = saved.clone();
        raw.local_modes
            .remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG);
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(&self.file, OptionalActions::Now, &raw)?;
        Ok(KeyModeGuard { tty: self, saved })
    }

    /// True when this is agp's controlling terminal and another job holds its foreground (agp
    /// was started with `&`): reading it or changing its mode would stop agp with SIGTTIN or
    /// SIGTTOU, freezing every session. A terminal that is not agp's controlling terminal is
    /// not subject to job control.
    pub fn in_background(&self) -> bool {
        match termios::tcgetpgrp(&self.file) {
            Ok(foreground) => foreground != rustix::process::getpgrp(),
            Err(_) => false,
        }
    }

    /// Waits until input arrives, `wake` becomes readable, or `deadline` passes.
    pub fn wait(&self, wake: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<Ready> {
        loop {
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Ready::Deadline);
                    }
                    Some(timespec(left))
                }
            };
            let mut fds = [
                PollFd::new(&self.file, PollFlags::IN),
                PollFd::new(&wake, PollFlags::IN),
            ];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => {} // deadline check at the top of the loop
                Ok(_) => {
                    if !fds[1].revents().is_empty() {
                        return Ok(Ready::Woken);
                    }
                    let ev = fds[0].revents();
                    if ev.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
                        && !ev.contains(PollFlags::IN)
                    {
                        return Ok(Ready::Closed);
                    }
                    return Ok(Ready::Input);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads what is available (at most `buf.len()` bytes). Zero means the terminal hung up.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&self.file).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A hung-up pty reads EIO rather than EOF.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Ok(0)
                }
                other => return other,
            }
        }
    }
}

impl AsFd for Tty {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Restores the terminal mode saved by [`Tty::single_keys`].
pub struct KeyModeGuard<'a> {
    tty: &'a Tty,
    saved: termios::Termios,
}

impl Drop for KeyModeGuard<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.tty.file, OptionalActions::Now, &self.saved);
    }
}

/// Why [`Tty::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Input,
    Woken,
    Deadline,
    Closed,
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}
