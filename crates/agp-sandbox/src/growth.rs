//! The session's bound on repository growth. The repository is the one thing a command
//! writes that outlives it, on the host's disk, so its size (bytes allocated on disk, hard
//! links counted once, mounts inside it not crossed) is measured when the session starts and
//! after every command. A command that takes it over the bound is reported as hitting the
//! limit, and later commands are refused until the repository is back under it (a human
//! cleans up on the host; the agent cannot, since its commands are refused).
//!
//! Within one command, RLIMIT_FSIZE (set to the same bound) stops any single file from
//! outgrowing it, and a watcher stops the command once the repository is over the bound:
//! it polls the filesystem's used bytes twice a second and walks the repository only when
//! the filesystem grew by more than what is left of the bound. Not a quota: a command can
//! overshoot by what it writes in half a second. Measuring walks the tree (about 80 ms for
//! 13 000 entries here), once per command and when the watcher fires, with the same
//! never-following walk as the socket scan and the integrity check ([`agp_integrity::tree`]):
//! a directory swapped for a symlink mid-walk is not followed out of the repository.

use std::collections::HashSet;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agp_contracts::sandbox::LimitExceeded;
use agp_integrity::tree::{self, Entry, Errno, Failed, FileType, Visit};
use rustix::fs::{statat, AtFlags};

#[derive(Debug)]
pub(crate) struct RepoGrowth {
    repo: PathBuf,
    bound: u64,
    baseline: u64,
    /// The size last measured over the bound, while it stays over.
    over: Mutex<Option<u64>>,
    /// The size last measured.
    last: Mutex<u64>,
}

impl RepoGrowth {
    pub(crate) fn new(repo: &Path, bound: u64) -> Self {
        let baseline = measure(repo);
        Self {
            repo: repo.to_path_buf(),
            bound,
            baseline,
            over: Mutex::new(None),
            last: Mutex::new(baseline),
        }
    }

    /// While a command runs: whether it has taken the repository over the bound, so it can
    /// be stopped. Cheap until the filesystem holding the repository has grown by more than
    /// what is left of the bound (any writer counts there); only then is the repository
    /// walked, and the next walk waits for as much growth again.
    pub(crate) fn watcher(&self) -> impl FnMut() -> bool + '_ {
        let mut fs_mark = fs_used(&self.repo);
        let mut left = self.left();
        move || {
            let (Some(mark), Some(now)) = (fs_mark, fs_used(&self.repo)) else {
                return false;
            };
            if now.saturating_sub(mark) <= left {
                return false;
            }
            let size = measure(&self.repo);
            *self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = size;
            if self.exceeded(size).is_some() {
                return true;
            }
            fs_mark = Some(now);
            left = self.left();
            false
        }
    }

    fn left(&self) -> u64 {
        let last = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.bound
            .saturating_sub(last.saturating_sub(self.baseline))
    }

    fn exceeded(&self, size: u64) -> Option<LimitExceeded> {
        let grown = size.saturating_sub(self.baseline);
        (grown > self.bound).then(|| LimitExceeded {
            limit: "repo_growth".into(),
            bound: self.bound,
            observed: grown,
            message: format!(
                "the repository grew by {grown} bytes this session, over the bound of {} \
                 (config.toml [sandbox.limits] repo_growth_bytes); further commands are refused \
                 until files are removed from {} on the host",
                self.bound,
                self.repo.display()
            ),
        })
    }

    /// Before a command: refuse it while the repository stays over the bound.
    pub(crate) fn admit(&self) -> Result<(), LimitExceeded> {
        let mut over = self
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if over.is_none() {
            return Ok(());
        }
        let size = measure(&self.repo);
        if let Some(hit) = self.exceeded(size) {
            *over = Some(size);
            Err(hit)
        } else {
            *over = None;
            Ok(())
        }
    }

    /// After a command: whether it took the repository over the bound.
    pub(crate) fn check(&self) -> Option<LimitExceeded> {
        let size = measure(&self.repo);
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = size;
        let hit = self.exceeded(size);
        *self
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hit.as_ref().map(|_| size);
        hit
    }
}

/// Bytes in use on the filesystem holding `path`.
fn fs_used(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_blocks.saturating_sub(st.f_bfree) * st.f_frsize)
}

/// Directory nesting measured at most. A walk by path could never go deeper than `PATH_MAX`
/// (4096 bytes, at least two per level) allowed, so this bound hides nothing that was counted
/// before; the walk holds one descriptor per level it is in.
const MAX_DEPTH: usize = 2048;

/// Bytes allocated on disk under `root`, without following symlinks or crossing mounts;
/// hard-linked files count once. Entries that vanish or cannot be read mid-walk are skipped.
pub(crate) fn measure(root: &Path) -> u64 {
    let Ok(top) = tree::open_root(root) else {
        return 0;
    };
    let Ok(st) = rustix::fs::fstat(&top) else {
        return 0;
    };
    let mut m = Measure {
        dev: st.st_dev,
        total: blocks(&st),
        linked: HashSet::new(),
    };
    let ControlFlow::Continue(()) = tree::walk(top.as_fd(), MAX_DEPTH, &mut m);
    m.total
}

struct Measure {
    dev: u64,
    total: u64,
    linked: HashSet<u64>,
}

/// Bytes allocated on disk for what `st` describes.
fn blocks(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0) * 512
}

impl Visit for Measure {
    type Stop = Infallible;

    fn entry(&mut self, e: &Entry<'_>) -> ControlFlow<Infallible, bool> {
        let Ok(st) = statat(e.dir, e.name, AtFlags::SYMLINK_NOFOLLOW) else {
            return ControlFlow::Continue(false);
        };
        if st.st_dev != self.dev {
            return ControlFlow::Continue(false);
        }
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if st.st_nlink > 1 && !is_dir && !self.linked.insert(st.st_ino) {
            return ControlFlow::Continue(false);
        }
        self.total += blocks(&st);
        ControlFlow::Continue(is_dir)
    }

    fn too_deep(&mut self, _: &Entry<'_>) -> ControlFlow<Infallible> {
        ControlFlow::Continue(())
    }

    fn failed(&mut self, _: Failed<'_>, _: Errno) -> ControlFlow<Infallible> {
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_over_the_bound_is_reported_until_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let g = RepoGrowth::new(dir.path(), 1 << 20);
        assert!(g.admit().is_ok());
        std::fs::write(dir.path().join("small"), vec![1u8; 64 << 10]).unwrap();
        assert!(g.check().is_none());
        std::fs::write(dir.path().join("big"), vec![1u8; 2 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("big"), dir.path().join("big2")).unwrap();
        let hit = g.check().expect("over the bound");
        assert_eq!(hit.limit, "repo_growth");
        assert!(hit.observed > 2 << 20 && hit.observed < 3 << 20, "{hit:?}");
        assert!(g.admit().is_err());
        std::fs::remove_file(dir.path().join("big")).unwrap();
        std::fs::remove_file(dir.path().join("big2")).unwrap();
        assert!(g.admit().is_ok());
    }

    #[test]
    fn symlinks_are_not_followed_and_deep_trees_are_measured() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 2 << 20]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let empty = measure(dir.path());
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("big"), dir.path().join("file-link"))
            .unwrap();
        assert!(measure(dir.path()) < empty + (1 << 20));
        // Deeper than the socket scan walks (it refuses such a repository instead).
        let deep: PathBuf = std::iter::repeat_n("d", 300).collect();
        std::fs::create_dir_all(dir.path().join(&deep)).unwrap();
        std::fs::write(dir.path().join(&deep).join("big"), vec![1u8; 2 << 20]).unwrap();
        assert!(measure(dir.path()) > empty + (2 << 20));
    }
}
