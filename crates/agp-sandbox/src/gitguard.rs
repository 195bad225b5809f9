//! Keep a sandboxed command from planting code that git would later run on the host, outside
//! the sandbox: `.git/hooks` and `.git/config` (core.hooksPath, core.fsmonitor,
//! core.sshCommand, ...) are mounted read-only, and `.git` itself is bound onto itself so it is
//! a mount point, which cannot be renamed away and rebuilt.
//!
//! The sources are opened afresh for every command with `O_NOFOLLOW` from the repository
//! directory and handed to bubblewrap as descriptors (`--bind-fd`, `--ro-bind-fd`): a path
//! would be resolved again by bubblewrap, and a sandboxed command that swapped `.git/hooks` for
//! a symlink to, say, the real HOME would get that mounted into a later sandbox.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use agp_contracts::sandbox::SandboxError;

use crate::limits::Inherit;

fn open_at(dir: Option<&OwnedFd>, path: &Path, directory: bool) -> Option<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut flags = libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    let base = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat reads a NUL-terminated path we own; the result is a fresh descriptor.
    let fd = unsafe { libc::openat(base, c.as_ptr(), flags) };
    // SAFETY: a non-negative return is a descriptor owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_regular(fd: &OwnedFd) -> bool {
    // SAFETY: fstat writes into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0)
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Add the protections for `repo` (canonical) to a bwrap command. A repository without a
/// `.git` directory (or whose `.git` is a file or symlink) gets none.
pub(crate) fn protect(
    repo: &Path,
    cmd: &mut Command,
    inherit: &mut Inherit,
) -> Result<(), SandboxError> {
    let repo_fd = open_at(None, repo, true).ok_or_else(|| {
        SandboxError::Refused(format!(
            "repository {} is no longer accessible",
            repo.display()
        ))
    })?;
    let Some(git) = open_at(Some(&repo_fd), Path::new(".git"), true) else {
        return Ok(());
    };
    let git_dest = repo.join(".git");
    let hooks = open_at(Some(&git), Path::new("hooks"), true);
    let config = open_at(Some(&git), Path::new("config"), false).filter(is_regular);
    cmd.arg("--bind-fd")
        .arg(git.as_raw_fd().to_string())
        .arg(&git_dest);
    inherit.owned.push(git);
    if let Some(fd) = hooks {
        cmd.arg("--ro-bind-fd")
            .arg(fd.as_raw_fd().to_string())
            .arg(git_dest.join("hooks"));
        inherit.owned.push(fd);
    }
    if let Some(fd) = config {
        cmd.arg("--ro-bind-fd")
            .arg(fd.as_raw_fd().to_string())
            .arg(git_dest.join("config"));
        inherit.owned.push(fd);
    }
    Ok(())
}
