//! Host Unix sockets inside the repository are masked in the sandbox.
//!
//! Connecting to a Unix socket needs nothing but its inode: write permission on it, which the
//! sandbox's (mapped) owner has, and no mount flag, network namespace or seccomp rule stops
//! it. So a socket a host process listens on inside the repository (a `tmux -S ./sock`
//! session, an editor or language server, git's own `.git/fsmonitor--daemon.ipc`, a dev
//! server) would be a way out of the sandbox: whoever listens there runs on the host.
//!
//! # Design
//!
//! Every time a sandbox is built (each proxy-exec command, the preflight, and the one
//! long-running agent CLI of hook mode), the repository is walked on the host and every
//! socket found is covered by a read-only bind of `/dev/null`, mounted after the repository
//! and git binds so it lies on top. A mount point cannot be renamed, removed or linked
//! (`EBUSY`, `EXDEV`), and inside the sandbox the path is a character device: `connect`
//! fails with `ECONNREFUSED`. The preflight proves it with a listening bait socket in the
//! repository (see `preflight`).
//!
//! The walk ([`agp_integrity::tree`], shared with the integrity check and the growth bound)
//! never follows a symlink: each directory is opened relative to its parent's descriptor with
//! `O_NOFOLLOW`, so a directory swapped for a symlink leads nowhere, and the path of every
//! socket found consists of real directories. Entry types come from the
//! directory listing (`d_type`), so a walk costs one `getdents` per directory and a `stat`
//! only where the file system does not fill in types. It is bounded ([`MAX_ENTRIES`],
//! [`MAX_DEPTH`], [`MAX_SOCKETS`]): past a bound, or when a directory cannot be read, the
//! sandbox is refused (fail closed) with a message naming the bound, since an unscanned
//! part of the repository could hold a socket. A directory the invoking user cannot even
//! search (a database volume of another user, mode 0700) is skipped: the sandbox runs as
//! that user without capabilities, so nothing below it is reachable from inside either.
//!
//! # What remains
//!
//! - A socket created on the host AFTER a sandbox was built is not masked in that sandbox.
//!   Proxy-exec commands are short and each gets a fresh scan; the agent CLI of hook mode
//!   lives for the whole session, so a host process that starts listening inside the
//!   repository mid-session is reachable from the agent until the session ends. (Sockets
//!   created by the sandbox itself are not a way out: only the sandbox listens on them.)
//! - The masks are placed by path, resolved by bubblewrap when it builds the mount namespace.
//!   That is sound while no sandboxed process of the session can change the repository
//!   during the build: the daemon serializes a session's commands and each command's
//!   processes die with it, and the agent's sandbox is built before the agent runs. A caller
//!   that builds a sandbox while another of the same repository runs gives up that guarantee.

use std::ffi::{OsStr, OsString};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use agp_contracts::sandbox::SandboxError;
use agp_integrity::tree::{self, Entry, Errno, Failed, FileType, Visit};
use rustix::fs::{statat, AtFlags};

/// Entries examined at most; a repository with more is refused (a build tree of a large
/// project holds a few hundred thousand).
pub(crate) const MAX_ENTRIES: u64 = 2_000_000;
/// Directory nesting walked at most.
pub(crate) const MAX_DEPTH: usize = 256;
/// Sockets masked at most (each is one mount, ~0.1-0.3 ms per sandbox start).
pub(crate) const MAX_SOCKETS: usize = 256;

/// The sockets found, as paths inside `repo` (absolute, the same inside and outside).
pub(crate) fn find(repo: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let root = tree::open_root(repo).map_err(|e| refuse(repo, &format!("cannot open it: {e}")))?;
    let mut walk = Walk {
        repo,
        entries: 0,
        found: Vec::new(),
    };
    // A directory at depth MAX_DEPTH is still walked; one below it refuses.
    match tree::walk(root.as_fd(), MAX_DEPTH + 1, &mut walk) {
        ControlFlow::Continue(()) => Ok(walk.found),
        ControlFlow::Break(refused) => Err(refused),
    }
}

fn refuse(repo: &Path, why: &str) -> SandboxError {
    SandboxError::Refused(format!(
        "cannot prove the repository {} holds no host Unix socket the sandbox could connect \
         to ({why}); remove or move what is named, or run the agent on a smaller checkout",
        repo.display()
    ))
}

struct Walk<'a> {
    repo: &'a Path,
    entries: u64,
    found: Vec<PathBuf>,
}

impl Walk<'_> {
    /// `rel` as a path in the repository, the same inside and outside.
    fn at(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.repo.to_path_buf()
        } else {
            self.repo.join(rel)
        }
    }

    fn refuse(&self, why: &str) -> ControlFlow<SandboxError> {
        ControlFlow::Break(refuse(self.repo, why))
    }
}

impl Visit for Walk<'_> {
    type Stop = SandboxError;

    fn keep(&mut self, ty: FileType) -> ControlFlow<SandboxError, bool> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            self.refuse(&format!("it holds more than {MAX_ENTRIES} entries"))?;
        }
        // Only what the walk acts on is kept (most entries are files).
        ControlFlow::Continue(matches!(
            ty,
            FileType::Directory | FileType::Socket | FileType::Unknown
        ))
    }

    fn entry(&mut self, e: &Entry<'_>) -> ControlFlow<SandboxError, bool> {
        let ty = match e.listed_type {
            FileType::Unknown => match statat(e.dir, e.name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => return ControlFlow::Continue(false),
                Err(err) => {
                    let why = format!("cannot examine {}: {err}", self.at(e.rel).display());
                    return ControlFlow::Break(refuse(self.repo, &why));
                }
            },
            ty => ty,
        };
        if ty == FileType::Socket {
            let path = self.at(e.rel);
            if self.found.len() >= MAX_SOCKETS {
                self.refuse(&format!(
                    "more than {MAX_SOCKETS} sockets, the last at {}",
                    path.display()
                ))?;
            }
            self.found.push(path);
        }
        ControlFlow::Continue(ty == FileType::Directory)
    }

    fn too_deep(&mut self, e: &Entry<'_>) -> ControlFlow<SandboxError> {
        self.refuse(&format!(
            "{} is nested deeper than {MAX_DEPTH} directories",
            self.at(e.rel).display()
        ))
    }

    fn failed(&mut self, what: Failed<'_>, err: Errno) -> ControlFlow<SandboxError> {
        let rel = match what {
            // Gone, or swapped for a symlink or file since it was listed: what is there now
            // is no directory of the repository's.
            Failed::Open(_) if matches!(err, Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => {
                return ControlFlow::Continue(());
            }
            // One the invoking user may not even pass through: nor may the sandbox, which
            // runs as that user without capabilities.
            Failed::Open(e) if err == Errno::ACCESS && !searchable(e.dir, e.name) => {
                return ControlFlow::Continue(());
            }
            Failed::Open(e) => e.rel,
            Failed::List(rel) => rel,
        };
        self.refuse(&format!("cannot read {}: {err}", self.at(rel).display()))
    }
}

/// Whether the invoking user may look up names in `dir/name`; only a plain "no" counts as
/// no (an error of the check itself refuses the sandbox).
fn searchable(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    let checked = rustix::fs::accessat(
        dir,
        name,
        rustix::fs::Access::EXEC_OK,
        AtFlags::EACCESS | AtFlags::SYMLINK_NOFOLLOW,
    );
    !matches!(checked, Err(Errno::ACCESS))
}

/// The bubblewrap arguments that mask `sockets`: `/dev/null`, read-only, over each.
pub(crate) fn mask_args(sockets: &[PathBuf]) -> Vec<OsString> {
    let mut args = Vec::with_capacity(sockets.len() * 3);
    for path in sockets {
        args.push("--ro-bind".into());
        args.push("/dev/null".into());
        args.push(path.as_os_str().to_os_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn finds_sockets_at_any_depth_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/file"), "x").unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        let _l1 = UnixListener::bind(root.join("top.sock")).unwrap();
        let _l2 = UnixListener::bind(root.join("a/b/c/deep")).unwrap();
        let _l3 = UnixListener::bind(root.join(".git/fsmonitor--daemon.ipc")).unwrap();
        let mut found = find(&root).unwrap();
        found.sort();
        let mut want = vec![
            root.join(".git/fsmonitor--daemon.ipc"),
            root.join("a/b/c/deep"),
            root.join("top.sock"),
        ];
        want.sort();
        assert_eq!(found, want);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let _l = UnixListener::bind(outside.path().join("host.sock")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("host.sock"), root.join("s")).unwrap();
        assert_eq!(find(&root).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn too_many_sockets_refuse_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let _held: Vec<_> = (0..=MAX_SOCKETS)
            .map(|i| UnixListener::bind(root.join(format!("s{i}"))).unwrap())
            .collect();
        let err = find(&root).unwrap_err();
        assert!(
            matches!(&err, SandboxError::Refused(m) if m.contains("more than 256 sockets")),
            "{err}"
        );
    }

    #[test]
    fn too_deep_refuses_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let deep: PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 2).collect();
        std::fs::create_dir_all(root.join(deep)).unwrap();
        let err = find(&root).unwrap_err();
        assert!(
            matches!(&err, SandboxError::Refused(m) if m.contains("deeper than")),
            "{err}"
        );
    }

    /// Run by the test below as an unprivileged user: prints what `find` says of each repo.
    const AS_USER: &str = "AGP_SOCKETS_TEST_DIR";

    #[test]
    fn a_directory_the_user_cannot_search_is_skipped_one_it_cannot_list_refuses() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let show = |root: &Path| match find(root) {
            Ok(found) => format!("found {}", found.len()),
            Err(e) => format!("refused {e}"),
        };
        if let Some(dir) = std::env::var_os(AS_USER) {
            let dir = PathBuf::from(dir);
            println!("closed: {}", show(&dir.join("closed")));
            println!("listless: {}", show(&dir.join("listless")));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        mode(&root, 0o755);
        let mut held = Vec::new();
        for (repo, vol_mode) in [("closed", 0o000), ("listless", 0o111)] {
            let vol = root.join(repo).join("vol");
            std::fs::create_dir_all(&vol).unwrap();
            mode(&root.join(repo), 0o755);
            held.push(UnixListener::bind(vol.join("db.sock")).unwrap());
            mode(&vol, vol_mode);
        }
        let out = if rustix::process::geteuid().is_root() {
            // Root passes every permission check: ask as nobody instead.
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sockets::tests::a_directory_the_user_cannot_search_is_skipped_one_it_cannot_list_refuses",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(AS_USER, &root)
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            format!(
                "closed: {}\nlistless: {}\n",
                show(&root.join("closed")),
                show(&root.join("listless"))
            )
        };
        for (repo, _) in [("closed", 0), ("listless", 0)] {
            mode(&root.join(repo).join("vol"), 0o755);
        }
        assert!(out.contains("closed: found 0\n"), "{out}");
        assert!(out.contains("listless: refused "), "{out}");
        assert!(out.contains("vol: Permission denied"), "{out}");
    }
}
