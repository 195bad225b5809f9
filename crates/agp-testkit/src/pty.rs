//! A pseudo-terminal for tests that play the human at a terminal: the pty itself and a
//! [`Screen`] of what its master side shows.
//!
//! Test support only: anything that goes wrong here fails the test that asked for it, so it
//! panics instead of returning errors.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

/// A fresh pty: its master side (non-blocking, so a reader thread can poll a stop flag) and the
/// path of its slave side.
pub fn open() -> (OwnedFd, PathBuf) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave = PathBuf::from(ptsname(&master, Vec::new()).unwrap().into_string().unwrap());
    rustix::io::ioctl_fionbio(&master, true).unwrap();
    (master, slave)
}

/// Everything the terminal shows, read from the pty's master side by a thread.
pub struct Screen {
    master: Arc<File>,
    patience: Duration,
    text: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Screen {
    /// Starts reading what the terminal of `master` shows; [`Screen::wait_for`] gives up
    /// after `patience` (a hang, not a measurement).
    pub fn read(master: OwnedFd, patience: Duration) -> Self {
        let master = Arc::new(File::from(master));
        let text = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (from, to, stopped) = (master.clone(), text.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::SeqCst) {
                match (&*from).read(&mut buf) {
                    Ok(n) if n > 0 => to.lock().unwrap().extend_from_slice(&buf[..n]),
                    // Nothing yet (EAGAIN), or EIO while no slave side is open.
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            master,
            patience,
            text,
            stop,
            reader: Some(reader),
        }
    }

    /// Waits until `needle` has shown `times` times; everything shown so far.
    pub fn wait_for(&self, needle: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned();
            if text.matches(needle).count() >= times {
                return text;
            }
            assert!(
                start.elapsed() < self.patience,
                "no {needle:?} x{times} on the terminal:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `keys` at the terminal.
    pub fn press(&self, keys: &[u8]) {
        (&*self.master).write_all(keys).unwrap();
    }

    /// The terminal window closes: the reader stops and the last handle on the master side
    /// goes away.
    pub fn close(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
