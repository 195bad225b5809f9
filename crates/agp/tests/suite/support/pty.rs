//! A pseudo-terminal for tests that give agp a controlling terminal (`terminal_approval`,
//! `run_interrupt`).

use std::fs::File;
use std::os::fd::OwnedFd;

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

/// A fresh pty: its master (non-blocking, so the reader thread can poll a stop flag) and its
/// slave opened read-write, ready to become a child's stdin, stdout and stderr.
pub fn open_pty() -> (OwnedFd, File) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_path = ptsname(&master, Vec::new()).unwrap().into_string().unwrap();
    rustix::io::ioctl_fionbio(&master, true).unwrap();
    let slave = File::options()
        .read(true)
        .write(true)
        .open(&slave_path)
        .unwrap();
    (master, slave)
}
