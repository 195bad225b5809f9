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
        let start = measure(repo);
        Self {
            repo: repo.to_path_buf(),
            bound,
            baseline: start.bytes,
            over: Mutex::new(None),
            last: Mutex::new(start.bytes),
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
                .unwrap_or_else(std::sync::PoisonError::into_inner) = size.bytes;
            if self.exceeded(&size).is_some() {
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

    /// Over the bound, or not measurable: a part of the repository the walk could not see
    /// (made unreadable, nested past [`MAX_DEPTH`]) could hold any amount, so it counts as
    /// over, and a human is told what could not be measured. That holds for a gap already
    /// there when the session started too: the agent can write into a directory it owns and
    /// then take its read permission away, so a tolerated gap would be a hiding place.
    fn exceeded(&self, size: &Measured) -> Option<LimitExceeded> {
        let grown = size.bytes.saturating_sub(self.baseline);
        if let Some(gap) = &size.gap {
            return Some(LimitExceeded {
                limit: "repo_growth".into(),
                bound: self.bound,
                observed: grown,
                message: format!(
                    "the repository's growth could not be measured ({gap}), so the bound of {} \
                     bytes (config.toml [sandbox.limits] repo_growth_bytes) cannot be shown to \
                     hold; further commands are refused until that part of {} is readable or \
                     removed on the host",
                    self.bound,
                    self.repo.display()
                ),
            });
        }
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
        if let Some(hit) = self.exceeded(&size) {
            *over = Some(size.bytes);
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
            .unwrap_or_else(std::sync::PoisonError::into_inner) = size.bytes;
        let hit = self.exceeded(&size);
        *self
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hit.as_ref().map(|_| size.bytes);
        hit
    }
}

/// Bytes in use on the filesystem holding `path`.
fn fs_used(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_blocks.saturating_sub(st.f_bfree) * st.f_frsize)
}

/// Directory nesting measured at most: as deep as the socket scan looks (it refuses a
/// repository nested deeper before any command runs), and the walk holds one descriptor per
/// level, so a deeper bound would spend the daemon's descriptors. Anything deeper is a gap.
const MAX_DEPTH: usize = 256;

/// One measurement of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Measured {
    /// Bytes allocated on disk, hard-linked files once, mounts not crossed, links not followed.
    pub(crate) bytes: u64,
    /// The first part the walk could not see, named for a human; `None` when it saw all.
    pub(crate) gap: Option<String>,
}

/// Measures `root`. Entries that vanish mid-walk (a build deleting its temporaries) are
/// simply gone; a directory that cannot be opened or listed, or lies too deep, is a gap.
pub(crate) fn measure(root: &Path) -> Measured {
    let unmeasured = |why: String| Measured {
        bytes: 0,
        gap: Some(why),
    };
    let top = match tree::open_root(root) {
        Ok(top) => top,
        Err(e) => return unmeasured(format!("cannot open {}: {e}", root.display())),
    };
    let st = match rustix::fs::fstat(&top) {
        Ok(st) => st,
        Err(e) => return unmeasured(format!("cannot stat {}: {e}", root.display())),
    };
    let mut m = Measure {
        dev: st.st_dev,
        total: blocks(&st),
        linked: HashSet::new(),
        gap: None,
    };
    let ControlFlow::Continue(()) = tree::walk(top.as_fd(), MAX_DEPTH, &mut m);
    Measured {
        bytes: m.total,
        gap: m.gap,
    }
}

struct Measure {
    dev: u64,
    total: u64,
    linked: HashSet<u64>,
    gap: Option<String>,
}

impl Measure {
    fn gap(&mut self, why: impl FnOnce() -> String) {
        if self.gap.is_none() {
            self.gap = Some(why());
        }
    }
}

/// Errors that mean the entry went away under the walk, not that it is hidden from it.
fn vanished(e: Errno) -> bool {
    e == Errno::NOENT || e == Errno::NOTDIR || e == Errno::STALE || e == Errno::LOOP
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

    fn too_deep(&mut self, e: &Entry<'_>) -> ControlFlow<Infallible> {
        self.gap(|| {
            format!(
                "{} is nested deeper than {MAX_DEPTH} levels",
                e.rel.display()
            )
        });
        ControlFlow::Continue(())
    }

    fn failed(&mut self, what: Failed<'_>, err: Errno) -> ControlFlow<Infallible> {
        if !vanished(err) {
            let path = match what {
                Failed::Open(e) => e.rel.to_path_buf(),
                Failed::List(rel) => rel.to_path_buf(),
            };
            self.gap(|| format!("cannot read {}: {err}", path.display()));
        }
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
    fn symlinks_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 2 << 20]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let empty = measure(dir.path());
        assert_eq!(empty.gap, None);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("big"), dir.path().join("file-link"))
            .unwrap();
        let linked = measure(dir.path());
        assert!(linked.bytes < empty.bytes + (1 << 20), "{linked:?}");
        assert_eq!(linked.gap, None);
    }

    /// Data the walk cannot reach could be any size: nesting it past the depth the walk
    /// measures, or making its directory unreadable, does not slip it under the bound.
    #[test]
    fn what_the_walk_cannot_see_counts_as_over_the_bound() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let g = RepoGrowth::new(dir.path(), 1 << 30);
        assert!(g.check().is_none());

        let deep: PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 4).collect();
        std::fs::create_dir_all(dir.path().join(&deep)).unwrap();
        let hit = g.check().expect("a gap is over the bound");
        assert_eq!(hit.limit, "repo_growth");
        assert!(
            hit.message.contains("could not be measured"),
            "{}",
            hit.message
        );
        assert!(
            hit.message.contains(&format!("deeper than {MAX_DEPTH}")),
            "{}",
            hit.message
        );
        assert!(g.admit().is_err());
        std::fs::remove_dir_all(dir.path().join("d")).unwrap();
        assert!(g.admit().is_ok());

        // Root reads through the mode, so it measures the blob and finds the bound crossed;
        // anyone else meets a directory it cannot list. Either way the command is over.
        let hidden = dir.path().join("hidden");
        std::fs::create_dir(&hidden).unwrap();
        let small = RepoGrowth::new(dir.path(), 1 << 20);
        std::fs::write(hidden.join("blob"), vec![1u8; 2 << 20]).unwrap();
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o000)).unwrap();
        let hit = small.check();
        let gap = measure(dir.path()).gap;
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            hit.expect("over the bound or unmeasured").limit,
            "repo_growth"
        );
        if !rustix::process::geteuid().is_root() {
            assert!(gap.expect("unreadable").contains("hidden"));
        }
    }
}
