//! A pseudo-terminal for tests that give agp a controlling terminal (`terminal_approval`,
//! `run_interrupt`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// Longest a test waits for something to show on the terminal (a hang, not a measurement).
const WAIT: Duration = Duration::from_secs(120);

/// Everything the terminal shows, read from the pty's master side by a thread.
pub struct Screen {
    master: Arc<File>,
    text: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Screen {
    /// Starts reading what the terminal of `master` shows.
    pub fn read(master: OwnedFd) -> Self {
        let master = Arc::new(File::from(master));
        let text = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (from, to, stopped) = (master.clone(), text.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::SeqCst) {
                match (&*from).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => to.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        Self {
            master,
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
                start.elapsed() < WAIT,
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
