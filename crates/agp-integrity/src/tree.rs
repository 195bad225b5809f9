//! The one walk of a repository tree that never follows a symlink.
//!
//! A sandboxed command may still be running (or may have left a race behind) while the host
//! walks the repository it wrote, so a walk by path could be redirected: a directory swapped
//! for a symlink between the listing and the descent leads anywhere on the host. Here each
//! directory is opened relative to its parent's open descriptor with `O_NOFOLLOW`, so a
//! directory swapped for a symlink leads nowhere, and every name the visitor sees is relative
//! to a descriptor of a real directory of the tree.
//!
//! The walk is iterative (a deep tree costs heap, not stack) and holds one descriptor per
//! level it is in; its depth is always bounded by the caller. What is done with each entry,
//! which errors stop the walk and which bounds apply besides depth is the [`Visit`]or's.

use std::convert::Infallible;
use std::ffi::{CStr, OsStr, OsString};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use rustix::fs::FileType;
use rustix::fs::{Dir, Mode, OFlags};
pub use rustix::io::Errno;

/// One name met in a directory of the tree.
pub struct Entry<'a> {
    /// The directory holding it, open.
    pub dir: BorrowedFd<'a>,
    pub name: &'a OsStr,
    /// Its path relative to the start of the walk.
    pub rel: &'a Path,
    /// The type the directory listing gave (`d_type`): `Unknown` where the file system does
    /// not fill it in; the visitor stats the entry itself when it needs to know.
    pub listed_type: FileType,
    /// 1 for a name in the start directory.
    pub depth: usize,
}

/// What could not be done.
pub enum Failed<'a> {
    /// Opening a directory the visitor wanted to descend into.
    Open(&'a Entry<'a>),
    /// Listing a directory (its path relative to the start).
    List(&'a Path),
}

/// What a walk does at each step; every method may stop the whole walk with `Break`.
pub trait Visit {
    /// Why a walk stopped early.
    type Stop;

    /// At most how many names of the directory about to be listed are worth listing (the
    /// listing stops there, so one huge directory cannot exhaust memory).
    fn list_cap(&self) -> u64 {
        u64::MAX
    }

    /// Whether a name listed with type `ty` is kept for [`Visit::entry`] (dropping what the
    /// visitor never acts on keeps listings small).
    fn keep(&mut self, ty: FileType) -> ControlFlow<Self::Stop, bool> {
        let _ = ty;
        ControlFlow::Continue(true)
    }

    /// The kept names of directory `rel` (open as `dir`), before any of them is visited.
    fn listed(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &Path,
        names: &[(OsString, FileType)],
    ) -> ControlFlow<Self::Stop> {
        let _ = (dir, rel, names);
        ControlFlow::Continue(())
    }

    /// One entry; `Continue(true)` descends into it (opening fails unless it is a directory).
    fn entry(&mut self, entry: &Entry<'_>) -> ControlFlow<Self::Stop, bool>;

    /// A directory opened to descend into, before the depth bound is applied to it.
    fn opened(&mut self, entry: &Entry<'_>, dir: BorrowedFd<'_>) -> ControlFlow<Self::Stop> {
        let _ = (entry, dir);
        ControlFlow::Continue(())
    }

    /// A directory at the depth bound or below it: not descended into.
    fn too_deep(&mut self, entry: &Entry<'_>) -> ControlFlow<Self::Stop>;

    /// Something could not be done; the walk goes on unless this breaks.
    fn failed(&mut self, what: Failed<'_>, error: Errno) -> ControlFlow<Self::Stop>;
}

/// A directory to start a walk from. Only the start is resolved by path, and may be a symlink.
pub fn open_root(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The directory `name` inside `dir`, refusing a symlink in its place.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in `dir` other than `.` and `..`, with their listed types; at most `max`.
pub fn read_names(dir: BorrowedFd<'_>, max: u64) -> rustix::io::Result<Vec<(OsString, FileType)>> {
    let mut names = Vec::new();
    let keep_all = &mut |_| ControlFlow::<Infallible, bool>::Continue(true);
    let ControlFlow::Continue(()) = list(dir, max, keep_all, &mut names)?;
    Ok(names)
}

fn list<S>(
    dir: BorrowedFd<'_>,
    max: u64,
    keep: &mut dyn FnMut(FileType) -> ControlFlow<S, bool>,
    names: &mut Vec<(OsString, FileType)>,
) -> rustix::io::Result<ControlFlow<S>> {
    let mut listed = 0u64;
    for entry in Dir::read_from(dir)? {
        if listed >= max {
            break;
        }
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        listed += 1;
        let ty = entry.file_type();
        match keep(ty) {
            ControlFlow::Break(stop) => return Ok(ControlFlow::Break(stop)),
            ControlFlow::Continue(true) => names.push((OsStr::from_bytes(bytes).into(), ty)),
            ControlFlow::Continue(false) => {}
        }
    }
    Ok(ControlFlow::Continue(()))
}

struct Level {
    /// `None` for the start, which the caller holds.
    fd: Option<OwnedFd>,
    rel: PathBuf,
    depth: usize,
    names: std::vec::IntoIter<(OsString, FileType)>,
}

/// Walks the tree below `root` depth first; no directory at `max_depth` (the start is at 0)
/// or deeper is descended into.
pub fn walk<V: Visit>(root: BorrowedFd<'_>, max_depth: usize, v: &mut V) -> ControlFlow<V::Stop> {
    let mut levels = Vec::new();
    if let Some(names) = listing(v, root, Path::new(""))? {
        levels.push(Level {
            fd: None,
            rel: PathBuf::new(),
            depth: 0,
            names: names.into_iter(),
        });
    }
    while let Some(level) = levels.last_mut() {
        let Some((name, ty)) = level.names.next() else {
            levels.pop();
            continue;
        };
        let rel = level.rel.join(&name);
        let depth = level.depth + 1;
        let entry = Entry {
            dir: level.fd.as_ref().map_or(root, AsFd::as_fd),
            name: &name,
            rel: &rel,
            listed_type: ty,
            depth,
        };
        if !v.entry(&entry)? {
            continue;
        }
        let sub = match open_dir_at(entry.dir, &name) {
            Ok(sub) => sub,
            Err(e) => {
                v.failed(Failed::Open(&entry), e)?;
                continue;
            }
        };
        v.opened(&entry, sub.as_fd())?;
        if depth >= max_depth {
            v.too_deep(&entry)?;
            continue;
        }
        if let Some(names) = listing(v, sub.as_fd(), &rel)? {
            levels.push(Level {
                fd: Some(sub),
                rel,
                depth,
                names: names.into_iter(),
            });
        }
    }
    ControlFlow::Continue(())
}

/// The kept names of `dir`, or `None` when it cannot be listed (and the visitor goes on).
fn listing<V: Visit>(
    v: &mut V,
    dir: BorrowedFd<'_>,
    rel: &Path,
) -> ControlFlow<V::Stop, Option<Vec<(OsString, FileType)>>> {
    let mut names = Vec::new();
    match list(dir, v.list_cap(), &mut |ty| v.keep(ty), &mut names) {
        Ok(kept) => kept?,
        Err(e) => {
            v.failed(Failed::List(rel), e)?;
            return ControlFlow::Continue(None);
        }
    }
    v.listed(dir, rel, &names)?;
    ControlFlow::Continue(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the walk shows it.
    #[derive(Default)]
    struct Seen {
        entries: Vec<(PathBuf, usize)>,
        too_deep: Vec<PathBuf>,
        failed: Vec<String>,
    }

    impl Visit for Seen {
        type Stop = PathBuf;
        fn entry(&mut self, e: &Entry<'_>) -> ControlFlow<PathBuf, bool> {
            if e.name == "stop" {
                return ControlFlow::Break(e.rel.to_path_buf());
            }
            self.entries.push((e.rel.to_path_buf(), e.depth));
            ControlFlow::Continue(e.listed_type == FileType::Directory || e.name == "link")
        }
        fn too_deep(&mut self, e: &Entry<'_>) -> ControlFlow<PathBuf> {
            self.too_deep.push(e.rel.to_path_buf());
            ControlFlow::Continue(())
        }
        fn failed(&mut self, what: Failed<'_>, e: Errno) -> ControlFlow<PathBuf> {
            let at = match what {
                Failed::Open(e) => e.rel,
                Failed::List(rel) => rel,
            };
            self.failed.push(format!("{}: {e}", at.display()));
            ControlFlow::Continue(())
        }
    }

    fn walked(root: &Path, max_depth: usize) -> (Seen, ControlFlow<PathBuf>) {
        let mut seen = Seen::default();
        let fd = open_root(root).unwrap();
        let flow = walk(fd.as_fd(), max_depth, &mut seen);
        seen.entries.sort();
        (seen, flow)
    }

    #[test]
    fn every_entry_once_with_its_depth_and_no_symlink_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let (seen, flow) = walked(root, 16);
        assert!(flow.is_continue());
        let want: Vec<(PathBuf, usize)> = [("a", 1), ("a/b", 2), ("a/b/f", 3), ("link", 1)]
            .into_iter()
            .map(|(p, d)| (PathBuf::from(p), d))
            .collect();
        assert_eq!(seen.entries, want);
        // Asked to descend into the symlink, the walk refuses rather than follows it.
        assert_eq!(seen.failed.len(), 1, "{:?}", seen.failed);
        assert!(seen.failed[0].starts_with("link: "), "{:?}", seen.failed);
    }

    #[test]
    fn the_depth_bound_is_reported_and_not_crossed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1/2/3/4")).unwrap();
        let (seen, _) = walked(dir.path(), 2);
        let names: Vec<_> = seen.entries.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(names, [PathBuf::from("1"), PathBuf::from("1/2")]);
        assert_eq!(seen.too_deep, [PathBuf::from("1/2")]);
    }

    #[test]
    fn a_break_stops_the_whole_walk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/stop")).unwrap();
        let (_, flow) = walked(dir.path(), 16);
        assert_eq!(flow, ControlFlow::Break(PathBuf::from("a/stop")));
    }

    #[test]
    fn read_names_skips_dots_and_stops_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["x", "y", "z"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let fd = open_root(dir.path()).unwrap();
        let mut all: Vec<_> = read_names(fd.as_fd(), u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        all.sort();
        assert_eq!(all, ["x", "y", "z"]);
        assert_eq!(read_names(fd.as_fd(), 2).unwrap().len(), 2);
    }
}
