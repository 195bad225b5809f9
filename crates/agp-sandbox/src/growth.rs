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
//! 13 000 entries here), once per command and when the watcher fires.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agp_contracts::sandbox::LimitExceeded;

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

/// Bytes allocated on disk under `root`, without following symlinks or crossing mounts;
/// hard-linked files count once. Entries that vanish mid-walk are skipped.
pub(crate) fn measure(root: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    let dev = top.dev();
    let mut total = top.blocks() * 512;
    let mut linked = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != dev {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !linked.insert(meta.ino()) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
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
}
