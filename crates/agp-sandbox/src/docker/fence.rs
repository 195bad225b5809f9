//! The git metadata binds, watched while the engine mounts them.
//!
//! The engine resolves a bind's source path on the host when it mounts it (at container start,
//! and again at a restart after a timeout), not when agp's guard checked it. Meanwhile a
//! command of another session on the same repository can swap a directory on that path for a
//! symlink out of the repository: its container does not bind the entries that appeared after
//! it started (a directory it made at the top of `.git`), so it may rename them. The engine
//! would follow the symlink and mount the outside directory here (seen with Docker and both
//! runc and runsc: tests/suite/escape_git.rs). A magic `/proc/<pid>/fd/<n>` source cannot
//! replace the path: runc refuses to bind a mount of another mount namespace (EINVAL), and
//! gVisor's inode numbers inside say nothing about the host's.
//!
//! So the start is fenced. Before the container is created (or started again), each source is
//! looked at: opened without following its last component, its `/proc/self/fd` link still the
//! checked path and its device and inode the ones the guard checked; and each directory on the
//! way from the repository down to it is looked at the same way, with its change time. After
//! the start, all are looked at again: any difference (a rename in one of those directories
//! changes its ctime, which no one can set back) means the engine may have mounted something
//! else, and the container is removed before any command runs in it. A swap and its undoing
//! both inside one clock tick of the first look cannot straddle the mount, which comes tens of
//! milliseconds later. The cost: a session start can be refused while another session's
//! command renames entries in those directories at that moment; starting again works.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use agp_contracts::sandbox::SandboxError;
use rustix::fs::{Mode, OFlags, Stat};

/// The watched paths of one session.
#[derive(Debug)]
pub(crate) struct Fence {
    repo: PathBuf,
    /// Each bind source, with the device and inode the guard checked.
    sources: Vec<(PathBuf, [i128; 2])>,
    /// The directories whose entries lead to the sources: the repository down to each
    /// source's parent.
    dirs: BTreeSet<PathBuf>,
}

/// The watched paths at one moment: each one's device, inode and change time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sight(Vec<[i128; 4]>);

impl Fence {
    pub(crate) fn new(repo: &Path) -> Self {
        Self {
            repo: repo.to_path_buf(),
            sources: Vec::new(),
            dirs: BTreeSet::new(),
        }
    }

    /// Watch `path`, which the guard opened as `fd` and checked.
    pub(crate) fn watch(&mut self, path: &Path, fd: &OwnedFd) -> Result<(), SandboxError> {
        let st = rustix::fs::fstat(fd.as_fd()).map_err(|_| changed(path))?;
        self.sources.push((path.to_path_buf(), identity(&st)));
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(&self.repo)) {
            self.dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
        Ok(())
    }

    /// Look at every watched path; refused when a source is no longer what was checked.
    pub(crate) fn look(&self) -> Result<Sight, SandboxError> {
        let mut seen = Vec::new();
        for (path, checked) in &self.sources {
            let st = stat_exactly(path)?;
            if identity(&st) != *checked {
                return Err(changed(path));
            }
            seen.push(stamp(&st));
        }
        for dir in &self.dirs {
            seen.push(stamp(&stat_exactly(dir)?));
        }
        Ok(Sight(seen))
    }

    /// After a start: the watched paths as they were `before` it, or refused.
    pub(crate) fn unchanged_since(&self, before: &Sight) -> Result<(), SandboxError> {
        if self.look()? == *before {
            Ok(())
        } else {
            Err(SandboxError::Refused(
                "the repository's git metadata changed while the session container started \
                 (a command of another session on this repository?), so the engine may have \
                 mounted something else; the container was removed: start the session again"
                    .into(),
            ))
        }
    }
}

/// The entry at `path` itself (a symlink there is looked at, not followed), as long as the
/// path still leads to it.
fn stat_exactly(path: &Path) -> Result<Stat, SandboxError> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|_| changed(path))?;
    let now = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| changed(path))?;
    if now != path {
        return Err(changed(path));
    }
    rustix::fs::fstat(fd.as_fd()).map_err(|_| changed(path))
}

fn identity(st: &Stat) -> [i128; 2] {
    [i128::from(st.st_dev), i128::from(st.st_ino)]
}

fn stamp(st: &Stat) -> [i128; 4] {
    [
        i128::from(st.st_dev),
        i128::from(st.st_ino),
        i128::from(st.st_ctime),
        i128::from(st.st_ctime_nsec),
    ]
}

fn changed(path: &Path) -> SandboxError {
    SandboxError::Refused(format!(
        "git metadata {} changed while the session container was being made (a command of \
         another session on this repository?); refusing it: start the session again",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_on_the_way_or_a_swapped_source_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let repo = std::fs::canonicalize(dir.path()).unwrap();
        let source = repo.join(".git/evil");
        std::fs::create_dir_all(&source).unwrap();
        let fd = rustix::fs::open(&source, OFlags::PATH, Mode::empty()).unwrap();
        let mut fence = Fence::new(&repo);
        fence.watch(&source, &fd).unwrap();
        let before = fence.look().unwrap();
        fence.unchanged_since(&before).unwrap();
        // Change times come from a clock that ticks every few milliseconds; in use, the
        // engine's start lies between the two looks.
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Swapped out and back: the same inode at the path, but `.git` was changed.
        std::fs::rename(&source, repo.join(".git/away")).unwrap();
        std::os::unix::fs::symlink("/etc", &source).unwrap();
        assert!(fence.look().is_err(), "a symlink in place of the source");
        std::fs::remove_file(&source).unwrap();
        std::fs::rename(repo.join(".git/away"), &source).unwrap();
        let after = fence.look().unwrap();
        assert_ne!(after, before, "the rename in .git went unseen");
        assert!(fence.unchanged_since(&before).is_err());
    }
}
