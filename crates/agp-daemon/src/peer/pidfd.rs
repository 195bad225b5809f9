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
