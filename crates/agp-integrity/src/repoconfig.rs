//! The repository's own `.git/config`: it cannot be moved away like planted metadata (the
//! repository needs it), so when the session left keys in it that run or redirect something and
//! were not there at the start, the changed file goes to the quarantine and the start-of-session
//! text is put back.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::gitmeta::{active_keys, read_small};
use crate::neutralize::free_name;
use crate::walk::open_dir_at;
use crate::{text, Action, Finding, Kind, Origin};

fn open_git_dir(root: &Path) -> Option<std::os::fd::OwnedFd> {
    let root = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    open_dir_at(root.as_fd(), OsStr::new(".git")).ok()
}

/// The text of the repository's `.git/config` (not followed if a symlink), for the snapshot.
pub(crate) fn read(root: &Path) -> Option<String> {
    let git = open_git_dir(root)?;
    read_small(git.as_fd(), OsStr::new("config")).ok().flatten()
}

/// Restores the start-of-session config when the session added active keys to it.
pub(crate) fn check(root: &Path, quarantine: &Path, before: &str) -> Option<Finding> {
    let git = open_git_dir(root)?;
    let now = read_small(git.as_fd(), OsStr::new("config"));
    let added = match &now {
        // Gone: deleted by the session, or a replacement (a symlink) already quarantined.
        Ok(None) => {
            let action = match put_back(git.as_fd(), before) {
                Ok(()) => Action::Reported,
                Err(error) => Action::NotNeutralized { error },
            };
            return Some(Finding {
                path: ".git/config".into(),
                kind: Kind::RepoGitConfig,
                detail: "the repository's git config was gone at the end of the session; the \
                         session-start config was put back"
                    .into(),
                origin: Origin::Changed,
                action,
            });
        }
        Ok(Some(now)) if now == before => return None,
        Ok(Some(now)) => {
            let old = active_keys(before).unwrap_or_default();
            match active_keys(now) {
                Ok(keys) => keys.into_iter().filter(|k| !old.contains(k)).collect(),
                Err(line) => vec![format!("text agp cannot parse (line {line})")],
            }
        }
        Err(e) => vec![e.clone()],
    };
    if added.is_empty() {
        return None;
    }
    let detail = format!(
        "the repository's git config gained {}; the session-start config was put back",
        added.join(", ")
    );
    let action = match restore(git.as_fd(), quarantine, before) {
        Ok(to) => Action::Quarantined { to: text(&to) },
        Err(error) => Action::NotNeutralized { error },
    };
    Some(Finding {
        path: ".git/config".into(),
        kind: Kind::RepoGitConfig,
        detail,
        origin: Origin::Changed,
        action,
    })
}

fn restore(
    git: std::os::fd::BorrowedFd<'_>,
    quarantine: &Path,
    before: &str,
) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let dest = free_name(&quarantine.join(".git/config"));
    let parent = dest.parent().unwrap_or(quarantine);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| format!("cannot create the quarantine {}: {e}", parent.display()))?;
    match rustix::fs::renameat(git, "config", rustix::fs::CWD, &dest) {
        Ok(()) => {}
        Err(rustix::io::Errno::XDEV) => {
            let text = read_small(git, OsStr::new("config"))?.unwrap_or_default();
            std::fs::write(&dest, text).map_err(|e| e.to_string())?;
            rustix::fs::unlinkat(git, "config", rustix::fs::AtFlags::empty())
                .map_err(|e| e.to_string())?;
        }
        Err(e) => return Err(format!("cannot move it to {}: {e}", dest.display())),
    }
    put_back(git, before)?;
    Ok(dest)
}

fn put_back(git: std::os::fd::BorrowedFd<'_>, before: &str) -> Result<(), String> {
    let fd = rustix::fs::openat(
        git,
        "config",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| format!("moved away, but cannot put the old config back: {e}"))?;
    std::fs::File::from(fd)
        .write_all(before.as_bytes())
        .map_err(|e| format!("moved away, but cannot put the old config back: {e}"))
}
