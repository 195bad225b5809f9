//! The host terminal an interactive agent in a container is relayed through: raw mode for the
//! relay (every key goes to the terminal inside, which does its own line editing and signals),
//! the settings as they were put back on every way out, and the window size.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// The settings stdin's terminal had, to put back.
#[derive(Clone)]
pub struct Saved(Termios);

impl Saved {
    /// The settings of the terminal on stdin now; `None` when stdin is not a terminal.
    pub fn of_stdin() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        tcgetattr(stdin.as_fd()).ok().map(Self)
    }

    /// Puts them back (after what is queued for the terminal is written).
    pub fn restore(&self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Drain, &self.0);
    }
}

/// Stdin's terminal in raw mode until this drops.
pub struct Raw(Saved);

impl Raw {
    /// Raw mode on the terminal on stdin, whose settings were `saved`.
    pub fn enter(saved: Saved) -> Result<Self> {
        let mut raw = saved.0.clone();
        raw.make_raw();
        tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(Self(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.0.restore();
    }
}

/// The window size of the terminal on stdin, (rows, columns), when it has a known one.
pub fn window_size() -> Option<(u16, u16)> {
    let size = tcgetwinsize(std::io::stdin().as_fd()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}
