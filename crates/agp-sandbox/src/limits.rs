//! What the forked child does between `fork` and `exec` of bwrap (or of the command, without a
//! sandbox): resource limits, a fresh session keyring, and no inherited file descriptors.
//! Everything set here is inherited by bwrap and by the sandboxed command.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use agp_contracts::sandbox::ResourceLimits;

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// Install the pre-exec hook. Every descriptor above stderr is marked close-on-exec, except
/// those in `inherit` (bwrap's status pipe and seccomp program), so nothing the agp process inherited (a terminal, a
/// socket, a pipe of its parent) leaks into the sandbox. Marking instead of closing keeps the
/// standard library's exec-error pipe working.
/// `cgroup_procs` are the session cgroups' `cgroup.procs` (one per hierarchy): the child moves
/// itself into them, so bwrap and everything in the sandbox count against their limits.
/// Descriptors bwrap must inherit: `owned` ones live as long as the command (moved into the
/// hook), `borrowed` ones are kept open by the caller until the spawn.
#[derive(Default)]
pub(crate) struct Inherit {
    pub owned: Vec<OwnedFd>,
    pub borrowed: Vec<RawFd>,
}

pub(crate) fn install(
    cmd: &mut Command,
    limits: &ResourceLimits,
    inherit: Inherit,
    cgroup_procs: Vec<RawFd>,
) {
    let nproc = limits.max_processes;
    let fsize = limits.repo_growth_bytes;
    let memory = limits.max_memory_bytes;
    let cpu = limits.max_cpu_seconds;
    // SAFETY: the closure runs in the forked child before exec. It only performs
    // async-signal-safe system calls (write, close_range/fcntl, setrlimit, keyctl) on values copied
    // into the closure, allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &cgroup_procs {
                // "0" moves the writing process.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            cloexec_from(3)?;
            let kept = inherit.owned.iter().map(AsRawFd::as_raw_fd);
            for fd in kept.chain(inherit.borrowed.iter().copied()) {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(n) = nproc {
                set_limit(libc::RLIMIT_NPROC, n)?;
            }
            if let Some(bytes) = memory {
                set_limit(libc::RLIMIT_AS, bytes)?;
            }
            if let Some(bytes) = fsize {
                // No single file may outgrow the whole repository bound (SIGXFSZ, or EFBIG
                // where the signal is ignored); the session total is checked by the provider.
                set_limit(libc::RLIMIT_FSIZE, bytes)?;
            }
            if let Some(seconds) = cpu {
                set_limit(libc::RLIMIT_CPU, seconds)?;
            }
            // The session keyring is inherited across fork and exec and is not namespaced:
            // give the sandbox an empty one. A kernel or seccomp policy without keyctl also
            // denies it to the sandbox, so ENOSYS/EPERM are not a leak.
            let rc = libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            );
            if rc < 0 {
                let err = io::Error::last_os_error();
                if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
}

const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Mark every descriptor from `first` up close-on-exec. Async-signal-safe.
fn cloexec_from(first: libc::c_int) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one by one up to the descriptor limit.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let max = lim.rlim_cur.min(1 << 20) as libc::c_int;
    for fd in first..max {
        // SAFETY: fcntl on a descriptor that is not open fails with EBADF and changes nothing.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(resource, &raw const lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
