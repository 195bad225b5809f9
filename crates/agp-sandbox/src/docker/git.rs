//! The bubblewrap provider's git metadata guard (see `gitguard`), for a container.
//!
//! First half: what `gitguard` would bind read-only over itself for a bubblewrap command
//! (`config`, `hooks/`, `info/`, alternates, ...) becomes a read-only bind mount of the
//! session container, and the `.git` directory is bound over itself so it cannot be renamed
//! away. The container is created once per session, before any of its commands runs, so the
//! engine resolves these paths while nothing of the session can race it; another session's
//! command can, so the start is fenced (see `fence`). Second half: a
//! snapshot before each command and [`gitguard::scrub`] after it quarantine metadata the
//! command created or replaced.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use agp_contracts::sandbox::SandboxError;

use super::fence::Fence;
use crate::gitguard;
use crate::limits::Inherit;

/// A snapshot of the git metadata now (the descriptors it opened are closed again).
pub(crate) fn snapshot(repo: &Path) -> Result<gitguard::Snapshot, SandboxError> {
    let mut unused = Command::new("/nonexistent");
    gitguard::protect(repo, &mut unused, &mut Inherit::default())
}

/// The binds that protect `repo`'s git metadata: `(source, dest, writable)`, each source
/// what the guard opened and checked, watched by `fence` while the container starts.
pub(crate) fn binds(
    repo: &Path,
    fence: &mut Fence,
) -> Result<Vec<(PathBuf, PathBuf, bool)>, SandboxError> {
    make_quarantine(repo);
    let mut args = Command::new("/nonexistent");
    let mut inherit = Inherit::default();
    gitguard::protect(repo, &mut args, &mut inherit)?;
    let mut fds: HashMap<i32, OwnedFd> = inherit
        .owned
        .into_iter()
        .map(|fd| (fd.as_raw_fd(), fd))
        .collect();
    let args: Vec<_> = args.get_args().collect();
    let mut binds = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let writable = match args[i].to_str() {
            Some("--ro-bind-fd") => false,
            Some("--bind-fd") => true,
            other => {
                return Err(SandboxError::Refused(format!(
                    "git metadata guard produced an argument the container provider does not \
                     know: {other:?}"
                )))
            }
        };
        let Some(dest) = args.get(i + 2) else {
            return Err(SandboxError::Refused(
                "git metadata guard produced a bind without a destination".into(),
            ));
        };
        let dest = PathBuf::from(dest);
        if !dest.starts_with(repo) {
            return Err(SandboxError::Refused(format!(
                "git metadata guard named {} outside the repository",
                dest.display()
            )));
        }
        let fd = args[i + 1]
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .and_then(|n| fds.remove(&n))
            .ok_or_else(|| {
                SandboxError::Refused(format!(
                    "git metadata guard bound {} from a descriptor it does not hold",
                    dest.display()
                ))
            })?;
        fence.watch(&dest, &fd)?;
        binds.push((dest.clone(), dest, writable));
        i += 3;
    }
    Ok(binds)
}

/// Make the git directory's quarantine before the guard looks, so that it is bound read-only
/// for the whole session like the rest: bubblewrap binds it anew for every command once the
/// first scrub made it, but a container's binds are fixed when it is created, and the
/// commands' uid (the repository's owner, as agp is) could otherwise empty it.
fn make_quarantine(repo: &Path) {
    use rustix::fs::{Mode, OFlags};
    let Ok(git) = rustix::fs::open(
        repo.join(".git"),
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    ) else {
        // No git directory here (none yet, or a `.git` file): nothing to quarantine into.
        return;
    };
    // Already there, or not makeable: the guard's scrub makes or does without it as before.
    let _ = rustix::fs::mkdirat(&git, gitguard::QUARANTINE, Mode::from_raw_mode(0o755));
}
