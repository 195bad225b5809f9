//! A pseudo-terminal for tests that give agp a controlling terminal (`terminal_approval`,
//! `run_interrupt`).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Duration;

pub use agp_testkit::pty::Screen;

/// Longest a test waits for something to show on the terminal (a hang, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A fresh pty: its master (non-blocking, so the reader thread can poll a stop flag) and its
/// slave opened read-write, ready to become a child's stdin, stdout and stderr.
pub fn open_pty() -> (OwnedFd, File) {
    let (master, slave_path) = agp_testkit::pty::open();
    let slave = File::options()
        .read(true)
        .write(true)
        .open(&slave_path)
        .unwrap();
    (master, slave)
}
