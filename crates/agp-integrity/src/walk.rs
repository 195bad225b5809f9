//! The bounded, never-following walk of a repository.

// `struct stat` field types differ between architectures; the casts are no-ops only on some.
#![allow(clippy::unnecessary_cast)]

use std::ffi::{OsStr, OsString};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use rustix::fs::{statat, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::gitmeta;
use crate::tree::{self, Entry, Failed, Visit};
use crate::{Fingerprint, Item, Kind, Limits};

pub(crate) struct Scan {
    pub items: Vec<Item>,
    pub incomplete: Vec<String>,
    pub entries: u64,
}

/// Problems beyond this many are counted, not listed.
const MAX_INCOMPLETE_LISTED: usize = 20;

struct Walker<'a> {
    root: &'a Path,
    /// The root as the real file system resolves it, for symlink targets.
    real_root: PathBuf,
    limits: &'a Limits,
    started: Instant,
    scan: Scan,
    stopped: bool,
    /// The last directory met, stat'ed before it is opened.
    dir_stat: Option<Stat>,
}

pub(crate) use crate::tree::open_dir_at;

pub(crate) fn fingerprint(st: &Stat, digest: Option<String>) -> Fingerprint {
    Fingerprint {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        mode: st.st_mode as u32,
        ctime: st.st_ctime as i64,
        ctime_nsec: st.st_ctime_nsec as u64,
        digest,
    }
}

/// A path naming `name` inside the directory `dir` without resolving any component again:
/// `/proc/self/fd/N` is the directory itself, and the last component is not followed by the
/// `l*` calls this is used with.
pub(crate) fn fd_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}

pub(crate) fn scan(root: &Path, limits: &Limits) -> Scan {
    let mut w = Walker {
        root,
        real_root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        limits,
        started: Instant::now(),
        scan: Scan {
            items: Vec::new(),
            incomplete: Vec::new(),
            entries: 0,
        },
        stopped: false,
        dir_stat: None,
    };
    match tree::open_root(root) {
        // A break is the walk bounded, which `bounded` has already reported.
        Ok(fd) => drop(tree::walk(fd.as_fd(), limits.max_depth, &mut w)),
        Err(e) => w.incomplete(format!("cannot open the repository: {e}")),
    }
    w.scan
}

/// Whether the directory `rel` lies in the repository's own `.git` (or is it).
fn in_repo_git(rel: &Path) -> bool {
    rel.starts_with(".git")
}

impl Visit for Walker<'_> {
    type Stop = ();

    /// One directory holds at most what the entry bound has left (plus one, to notice it).
    fn list_cap(&self) -> u64 {
        self.limits.max_entries.saturating_sub(self.scan.entries) + 1
    }

    fn listed(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &Path,
        names: &[(OsString, FileType)],
    ) -> ControlFlow<()> {
        // A `.git` directory itself is examined as one when it is met (see `opened`).
        if !in_repo_git(rel)
            && !rel.as_os_str().is_empty()
            && rel.file_name() != Some(OsStr::new(".git"))
        {
            let has = |n: &str| names.iter().any(|(x, _)| x.as_os_str() == n);
            // git's own test for a git directory: HEAD plus objects/ and refs/ (or a
            // commondir that supplies them).
            if has("HEAD") && ((has("objects") && has("refs")) || has("commondir")) {
                self.git_dir(dir, rel, "a bare-repository-shaped directory");
            }
        }
        ControlFlow::Continue(())
    }

    fn entry(&mut self, e: &Entry<'_>) -> ControlFlow<(), bool> {
        if self.bounded() {
            return ControlFlow::Break(());
        }
        self.scan.entries += 1;
        let (fd, name, child) = (e.dir, e.name, e.rel);
        let st = match statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return ControlFlow::Continue(false),
            Err(e) => {
                self.incomplete(format!("cannot examine {}: {e}", show(child)));
                return ControlFlow::Continue(false);
            }
        };
        let is_dot_git = name == ".git";
        let at_root = e.depth == 1;
        let in_repo_git = child.parent().is_some_and(in_repo_git);
        match FileType::from_raw_mode(st.st_mode as _) {
            FileType::Directory => {
                self.dir_stat = Some(st);
                return ControlFlow::Continue(true);
            }
            FileType::RegularFile => {
                self.regular(fd, name, child, &st);
                if is_dot_git && !at_root && !in_repo_git {
                    self.git_pointer(fd, name, child, &st);
                }
            }
            FileType::Symlink => self.symlink(fd, name, child, &st, is_dot_git && !at_root),
            FileType::Fifo => {
                let fp = fingerprint(&st, None);
                self.item(child.to_path_buf(), Kind::Fifo, "a fifo".into(), fp);
            }
            FileType::Socket => {
                let fp = fingerprint(&st, None);
                self.item(
                    child.to_path_buf(),
                    Kind::Socket,
                    "a Unix socket".into(),
                    fp,
                );
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                let rdev = st.st_rdev as u64;
                let detail = format!(
                    "a device node ({}:{})",
                    rustix::fs::major(rdev as _),
                    rustix::fs::minor(rdev as _)
                );
                let fp = fingerprint(&st, Some(rdev.to_string()));
                self.item(child.to_path_buf(), Kind::Device, detail, fp);
            }
            FileType::Unknown => {}
        }
        ControlFlow::Continue(false)
    }

    fn opened(&mut self, e: &Entry<'_>, sub: BorrowedFd<'_>) -> ControlFlow<()> {
        if e.name != ".git" {
            return ControlFlow::Continue(());
        }
        if e.depth == 1 {
            if let Some(st) = self.dir_stat.take() {
                self.repo_git_dir(sub, e.rel, &st);
            }
        } else if !e.rel.parent().is_some_and(in_repo_git) {
            self.git_dir(sub, e.rel, "a nested .git directory");
        }
        ControlFlow::Continue(())
    }

    fn too_deep(&mut self, e: &Entry<'_>) -> ControlFlow<()> {
        self.incomplete(format!(
            "not descended into {}: deeper than {} levels",
            show(e.rel),
            self.limits.max_depth
        ));
        ControlFlow::Continue(())
    }

    fn failed(&mut self, what: Failed<'_>, e: Errno) -> ControlFlow<()> {
        let rel = match what {
            Failed::Open(entry) => entry.rel,
            Failed::List(rel) => rel,
        };
        self.incomplete(format!("cannot read directory {}: {e}", show(rel)));
        ControlFlow::Continue(())
    }
}

impl Walker<'_> {
    fn incomplete(&mut self, why: String) {
        let list = &mut self.scan.incomplete;
        if list.len() < MAX_INCOMPLETE_LISTED {
            list.push(why);
        } else if list.len() == MAX_INCOMPLETE_LISTED {
            list.push("more directories could not be read (not listed)".into());
        }
    }

    fn item(&mut self, rel: PathBuf, kind: Kind, detail: String, fp: Fingerprint) {
        self.scan.items.push(Item {
            rel,
            kind,
            detail,
            fp,
        });
    }

    /// Whether a bound is reached (and, the first time, says which).
    fn bounded(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        let l = self.limits;
        let why = if self.scan.entries >= l.max_entries {
            format!("scan stopped after {} entries (limit)", l.max_entries)
        } else if self.scan.entries.is_multiple_of(256) && self.started.elapsed() > l.max_duration {
            format!(
                "scan stopped after {} s (limit), {} entries examined",
                l.max_duration.as_secs(),
                self.scan.entries
            )
        } else {
            return false;
        };
        self.stopped = true;
        self.scan.incomplete.insert(0, why);
        true
    }

    fn regular(&mut self, dir: BorrowedFd<'_>, name: &OsStr, rel: &Path, st: &Stat) {
        let mode = st.st_mode as u32;
        for (bit, kind, what, id) in [
            (
                0o4000,
                Kind::Setuid,
                "setuid",
                format!("owner uid {}", st.st_uid),
            ),
            (
                0o2000,
                Kind::Setgid,
                "setgid",
                format!("group gid {}", st.st_gid),
            ),
        ] {
            if mode & bit != 0 {
                let detail = format!("{what} (mode {:o}, {id})", mode & 0o7777);
                self.item(rel.to_path_buf(), kind, detail, fingerprint(st, None));
            }
        }
        if rustix::fs::lgetxattr_query(fd_path(dir, name), "security.capability").is_ok() {
            let detail = "carries file capabilities (security.capability)".to_owned();
            self.item(
                rel.to_path_buf(),
                Kind::FileCapability,
                detail,
                fingerprint(st, None),
            );
        }
    }

    fn symlink(&mut self, dir: BorrowedFd<'_>, name: &OsStr, rel: &Path, st: &Stat, dot_git: bool) {
        let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
            Ok(t) => PathBuf::from(OsStr::from_bytes(t.as_bytes())),
            Err(e) => {
                self.incomplete(format!("cannot read symlink {}: {e}", show(rel)));
                return;
            }
        };
        let fp = fingerprint(st, Some(target.display().to_string()));
        if dot_git {
            let detail = format!(".git symlink to {} (git would use it)", target.display());
            return self.item(rel.to_path_buf(), Kind::NestedGitMetadata, detail, fp);
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let lexical = if target.is_absolute() {
            target
                .strip_prefix(self.root)
                .ok()
                .and_then(normalize_beneath)
        } else {
            normalize_beneath(&parent.join(&target))
        };
        let real = std::fs::canonicalize(self.root.join(rel)).ok();
        let escapes_real = real
            .as_ref()
            .is_some_and(|r| !r.starts_with(&self.real_root));
        if lexical.is_none() || escapes_real {
            let how = match &real {
                Some(r) if escapes_real => format!(" (resolves to {})", r.display()),
                _ => String::new(),
            };
            let detail = format!(
                "symlink to {} outside the repository{how}",
                target.display()
            );
            self.item(rel.to_path_buf(), Kind::EscapingSymlink, detail, fp);
        }
    }

    /// The repository's own `.git`: reported when its config-like files are not inert.
    fn repo_git_dir(&mut self, fd: BorrowedFd<'_>, rel: &Path, st: &Stat) {
        let meta = gitmeta::examine(fd);
        if !meta.problems.is_empty() {
            let detail = format!(
                "the repository's git metadata: {}",
                meta.problems.join("; ")
            );
            let mut fp = fingerprint(st, Some(meta.digest));
            // The directory's own ctime moves with every commit; only the digest matters.
            (fp.mode, fp.ctime, fp.ctime_nsec) = (0, 0, 0);
            self.item(rel.to_path_buf(), Kind::RepoGitMetadata, detail, fp);
        }
        // What in it runs or redirects git and can be moved without breaking the repository:
        // each hook, and the redirects a main git directory never needs.
        let mut movable: Vec<(PathBuf, String)> = Vec::new();
        if let Ok(hooks) = open_dir_at(fd, OsStr::new("hooks")) {
            for (name, _) in tree::read_names(hooks.as_fd(), 4096).unwrap_or_default() {
                if !name.as_bytes().ends_with(b".sample") {
                    movable.push((Path::new("hooks").join(&name), "a git hook".into()));
                }
            }
        }
        for (file, what) in [
            ("commondir", "a commondir redirect"),
            ("objects/info/alternates", "an alternates redirect"),
        ] {
            movable.push((PathBuf::from(file), what.into()));
        }
        for (inner, what) in movable {
            let Ok(st) = statat(fd, &inner, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let detail = format!("{what} in the repository's own git directory");
            self.item(
                rel.join(inner),
                Kind::RepoGitHook,
                detail,
                fingerprint(&st, None),
            );
        }
    }

    fn git_dir(&mut self, fd: BorrowedFd<'_>, rel: &Path, what: &str) {
        let meta = gitmeta::examine(fd);
        if meta.problems.is_empty() {
            return;
        }
        let Ok(st) = rustix::fs::fstat(fd) else {
            return;
        };
        let mut fp = fingerprint(&st, Some(meta.digest));
        (fp.mode, fp.ctime, fp.ctime_nsec) = (0, 0, 0);
        let detail = format!("{what}: {}", meta.problems.join("; "));
        self.item(rel.to_path_buf(), Kind::NestedGitMetadata, detail, fp);
    }

    /// A nested `.git` file ("gitdir: PATH"): git follows it wherever it points.
    fn git_pointer(&mut self, dir: BorrowedFd<'_>, name: &OsStr, rel: &Path, st: &Stat) {
        let text = gitmeta::read_small(dir, name)
            .ok()
            .flatten()
            .unwrap_or_default();
        let target = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("gitdir:"))
            .map(|t| PathBuf::from(t.trim()));
        let fp = fingerprint(st, Some(gitmeta::digest_of(text.as_bytes())));
        let parent = rel.parent().unwrap_or(Path::new(""));
        let problem = match &target {
            None => Some("a .git file that is not a gitdir pointer".to_owned()),
            Some(t) => {
                let beneath = if t.is_absolute() {
                    t.strip_prefix(self.root).ok().and_then(normalize_beneath)
                } else {
                    normalize_beneath(&parent.join(t))
                };
                match beneath {
                    None => Some(format!("points outside the repository to {}", t.display())),
                    Some(b) => self.pointed_git_dir(&b),
                }
            }
        };
        if let Some(p) = problem {
            let detail = format!("a nested .git file: {p}");
            self.item(rel.to_path_buf(), Kind::NestedGitMetadata, detail, fp);
        }
    }

    /// Examines the git directory a pointer names, opened beneath the root without symlinks.
    fn pointed_git_dir(&self, beneath: &Path) -> Option<String> {
        let root = match tree::open_root(self.root) {
            Ok(r) => r,
            Err(e) => return Some(format!("cannot open the repository: {e}")),
        };
        let target = if beneath.as_os_str().is_empty() {
            Path::new(".")
        } else {
            beneath
        };
        match open_beneath(root.as_fd(), target) {
            Ok(fd) => {
                let meta = gitmeta::examine(fd.as_fd());
                (!meta.problems.is_empty()).then(|| {
                    format!(
                        "its git directory {}: {}",
                        beneath.display(),
                        meta.problems.join("; ")
                    )
                })
            }
            Err(e) => Some(format!(
                "its git directory {} cannot be examined ({e})",
                beneath.display()
            )),
        }
    }
}

/// Opens a directory below `root` refusing `..` escapes and every symlink on the way.
pub(crate) fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::ResolveFlags;
    rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// `path` (relative to the root) with `.` and `..` applied; `None` when it climbs above the
/// root.
pub(crate) fn normalize_beneath(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    }
}
