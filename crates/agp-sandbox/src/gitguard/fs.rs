//! Host-side file system access for the git guard: directories reached one component at a
//! time without following symlinks, descriptors checked to lie inside the repository, and
//! directory listings that note what each entry is.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub dev: u64,
    pub ino: u64,
    pub kind: Kind,
}

pub(super) fn entry_of(path: &Path) -> Option<Entry> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink(std::fs::read_link(path).ok()?)
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Some(Entry {
        dev: meta.dev(),
        ino: meta.ino(),
        kind,
    })
}

pub(super) fn list(dir: &Path) -> HashMap<OsString, Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    read.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            entry_of(&dir.join(&name)).map(|en| (name, en))
        })
        .collect()
}

pub(super) fn open_at(dir: Option<&OwnedFd>, path: &Path, directory: bool) -> Option<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut flags = libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    let base = dir.map_or(libc::AT_FDCWD, rustix::fd::AsRawFd::as_raw_fd);
    // SAFETY: openat reads a NUL-terminated path we own; the result is a fresh descriptor.
    let fd = unsafe { libc::openat(base, c.as_ptr(), flags) };
    // SAFETY: a non-negative return is a descriptor owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path a `/proc/self/fd/N` magic link names (the descriptor's real host path).
pub(super) fn fd_path(fd: &OwnedFd) -> Option<PathBuf> {
    std::fs::read_link(proc_path(fd)).ok()
}

/// A path that reaches the directory `fd` refers to whatever happens to the names leading to
/// it: lookups below it start from the open directory itself.
pub(super) fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Open `rel` below `base` one component at a time without following any symlink, so that a
/// directory swapped for a symlink (by a command still running) leads nowhere.
pub(super) fn open_beneath(base: &OwnedFd, rel: &Path, directory: bool) -> Option<OwnedFd> {
    let mut parts: Vec<_> = rel.components().collect();
    let last = parts.pop()?;
    let mut dir: Option<OwnedFd> = None;
    for part in parts {
        let std::path::Component::Normal(name) = part else {
            return None;
        };
        let next = open_at(Some(dir.as_ref().unwrap_or(base)), Path::new(name), true)?;
        dir = Some(next);
    }
    let std::path::Component::Normal(name) = last else {
        return None;
    };
    open_at(
        Some(dir.as_ref().unwrap_or(base)),
        Path::new(name),
        directory,
    )
}

/// Open a path that was resolved inside the repository, and keep it only if what was opened
/// really lies inside it (a component may have been swapped since).
pub(super) fn open_inside(repo: &Path, target: &Path, directory: bool) -> Option<OwnedFd> {
    let fd = open_at(None, target, directory)?;
    fd_path(&fd)
        .is_some_and(|p| p.starts_with(repo) && p != repo)
        .then_some(fd)
}
