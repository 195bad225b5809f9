//! The connecting process itself, not just its pid: a pid read from SO_PEERCRED may have been
//! reused by the time /proc is read, unless the process is held by a pidfd (SO_PEERPIDFD,
//! Linux 6.5) and still alive after the reading.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SO_PEERPIDFD` (the same number on x86_64 and aarch64; not in every libc release).
const SO_PEERPIDFD: libc::c_int = 77;

/// A pidfd for the process that connected `socket`; `None` on kernels without SO_PEERPIDFD.
pub fn peer_pidfd(socket: &impl AsRawFd) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, a c_int of that size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    // SAFETY: on success the kernel handed us a new descriptor that nothing else owns.
    (rc == 0 && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process behind `pidfd` has not been reaped (a zombie keeps its pid, so no other
/// process can have it).
pub fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; the pointer argument may be null.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn the_pidfd_follows_the_connecting_process_not_its_pid() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let Some(me) = peer_pidfd(&ours) else {
            eprintln!("SKIPPED: this kernel has no SO_PEERPIDFD (Linux 6.5)");
            return;
        };
        assert!(alive(&me));

        // A peer that connects and is gone (reaped) by the time it is checked: whatever now
        // holds its pid, the pidfd says it is gone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])")
            .arg(&path)
            .spawn()
            .unwrap();
        let (stream, _) = listener.accept().unwrap();
        let fd = peer_pidfd(&stream).unwrap();
        assert!(child.wait().unwrap().success());
        assert!(!alive(&fd));
    }
}
