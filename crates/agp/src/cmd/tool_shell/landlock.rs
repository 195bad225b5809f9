//! Puts what a tool call runs into a Landlock domain of its own, so that it cannot reach into
//! the harness or the wrapper above it: Landlock lets a process ptrace (and open
//! `/proc/PID/mem` or `environ` of) only processes in its own domain or one nested in it.
//! Without this, any process of the sandbox's uid could make the harness start a hook with
//! forged input where Yama does not forbid tracing. The domain restricts nothing else: it
//! handles only the creation of block devices, which nothing in the sandbox may do anyway.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `LANDLOCK_ACCESS_FS_MAKE_BLOCK` (ABI 1).
const MAKE_BLOCK: u64 = 1 << 11;

/// A ruleset to enter in the child; `None` where the kernel has no Landlock (the wrapper then
/// runs the command without it: README says what that leaves open).
pub fn ruleset() -> Option<OwnedFd> {
    // `struct landlock_ruleset_attr` as of ABI 1: handled_access_fs only.
    let attr: u64 = MAKE_BLOCK;
    // SAFETY: the kernel reads `size_of::<u64>()` bytes from `attr`, which outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            (&raw const attr).cast::<libc::c_void>(),
            std::mem::size_of::<u64>(),
            0u32,
        )
    };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: a descriptor the kernel just created for us, owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Enters `ruleset` (in the child, between fork and exec: raw system calls only).
pub fn enter(ruleset: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: prctl and landlock_restrict_self take plain integers; async-signal-safe.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
