//! Repository metadata is not the agent's to change: git run on the host later must never run
//! code the sandbox planted (a `core.fsmonitor` in a config, a hook, a `commondir` pointing
//! at a doctored git directory, an `info/attributes` filter, object alternates).
//!
//! # Design
//!
//! Git writes its top-level files (`index`, `HEAD`, `packed-refs`, `ORIG_HEAD`, ...) by
//! creating `NAME.lock` next to them and renaming it over the old file, so the git directory
//! itself must stay writable for commits to work; and a mount cannot forbid one name in a
//! writable directory while allowing another. So the guard has two halves:
//!
//! 1. Before each command, every entry that exists at the top of the git directory and is
//!    not in the writable set below ([`WRITABLE_FILES`], [`WRITABLE_DIRS`]) is bound
//!    read-only over itself, by descriptor: `config`, `hooks/`, `info/`, `description`,
//!    `worktrees/`, `modules/` (the submodules' git directories, whole), `commondir`,
//!    `config.worktree`, `shallow`, whatever else is there. A mount point can be neither
//!    written, removed nor renamed over, so these cannot change. The same holds for
//!    `objects/info/alternates` and `http-alternates` when they exist, and for the `.git`
//!    directory itself (it cannot be renamed away) or, in a linked worktree or submodule
//!    checkout, the `.git` file naming the git directory.
//! 2. After each command, the provider compares the top of the git directory and
//!    `objects/info` with what was there before, on the host: an entry that is new or was
//!    replaced and is not writable state (a planted `commondir`, `config.worktree`, `hooks/`
//!    where there was none, `objects/info/alternates`, a rebase or cherry-pick state
//!    directory with `exec` lines a host `git rebase --continue` would run, a symlink in
//!    place of a writable file) is moved to `agp-quarantine/<time>-<pid>-<n>/` in that git
//!    directory (git never reads it; the user can inspect it; later commands see it
//!    read-only), or deleted where no such folder can be made, and reported ([`scrub`]). This
//!    also keeps whatever a host git run wrote there during the command from being lost. A
//!    top-level symlink the command replaced (they cannot be bound over) is put back.
//!    Nothing else of the sandbox runs between the command's end and the check: every
//!    process died with its namespace. (The check reaches each directory one component at a
//!    time without following symlinks, in case another command of the session still runs.)
//!
//! A top-level symlink (a shared `hooks -> ../githooks`, say) whose target lies inside the
//! repository gets its target bound read-only, so the hooks it names stay the user's; so do
//! hooks that are symlinks into the work tree, and a `core.hooksPath` directory inside the
//! work tree (husky's `.husky`), as git on the host resolves it.
//!
//! A repository the command creates where there was none (`git init`) keeps its objects, refs
//! and HEAD, but not its config, hooks or info: the same rule as for an existing one. A `.git`
//! file or symlink created where there was none (a pointer to a doctored git directory) is
//! removed.
//!
//! Measured with git 2.47 inside the sandbox (tests/suite/git_metadata.rs): add, commit, amend,
//! checkout -b, stash/stash pop, merge, tag (light and annotated), rebase, cherry-pick, reset,
//! gc, pack-refs and reflog expire all work and leave nothing to remove. What does not: `git
//! config` (the config is read-only; use `-c`), `git worktree add`, `git sparse-checkout`,
//! writes inside submodules (their git directories under `modules/` are read-only whole), and
//! a rebase, am or cherry-pick stopped on a conflict cannot be continued by a later command
//! (its state directory is removed, since its todo list can hold `exec` lines a host
//! `git rebase --continue` would run).
//!
//! Submodule checkouts named by `.gitmodules` or by a `core.worktree` under `.git/modules`
//! get the same treatment: their `.git` file is bound read-only, and a `.git` directory of
//! one is guarded like the main one.
//!
//! Left to others: a `.git` created in a subdirectory (a nested repository), or one of a
//! submodule the command hid from `.gitmodules` beforehand, is an ordinary part of the
//! writable tree; the end-of-session integrity scan reports and neutralizes them. Hooks that are scripts running other files of
//! the work tree (a pre-commit framework config, `npm test`) execute what the agent may have
//! changed, like a Makefile does. A long-running command ([`BubblewrapProvider::command`], the
//! agent CLI) gets half 1; half 2 runs when its owner calls
//! [`crate::GitMetadataGuard::scrub`] (from [`BubblewrapProvider::command_guarded`]).
//!
//! [`BubblewrapProvider::command`]: crate::BubblewrapProvider::command
//! [`BubblewrapProvider::command_guarded`]: crate::BubblewrapProvider::command_guarded

mod fs;
mod worktree;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use agp_contracts::sandbox::SandboxError;

use crate::limits::Inherit;
use fs::{entry_of, fd_path, list, open_at, open_beneath, open_inside, proc_path, Entry, Kind};
use worktree::{protect_hook_links, protect_hooks_path, protect_submodules};

/// Top-level files of a git directory that everyday work (commit, merge, stash, tag, gc,
/// bisect) rewrites, each also as `NAME.lock`. Their content is data git never executes.
const WRITABLE_FILES: &[&str] = &[
    "HEAD",
    "index",
    "ORIG_HEAD",
    "FETCH_HEAD",
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "MERGE_RR",
    "MERGE_AUTOSTASH",
    "AUTO_MERGE",
    "COMMIT_EDITMSG",
    "TAG_EDITMSG",
    "SQUASH_MSG",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "REBASE_HEAD",
    "BISECT_LOG",
    "BISECT_START",
    "BISECT_NAMES",
    "BISECT_EXPECTED_REV",
    "BISECT_ANCESTORS_OK",
    "BISECT_TERMS",
    "BISECT_FIRST_PARENT",
    "BISECT_HEAD",
    "BISECT_RUN",
    "packed-refs",
    "gc.pid",
    "gc.log",
];
/// Prefixes of data files git keeps at the top (split index).
const WRITABLE_PREFIXES: &[&str] = &["sharedindex."];
/// Top-level directories holding data only: objects, refs, reflogs, rerere's resolutions.
const WRITABLE_DIRS: &[&str] = &["objects", "refs", "logs", "rr-cache"];
/// What may appear in `objects/info` (commit-graphs, the dumb-protocol pack list); never
/// `alternates` or `http-alternates`, which point object lookup elsewhere.
const OBJECTS_INFO_WRITABLE: &[&str] = &["commit-graph", "commit-graphs", "packs"];

/// Where removed metadata goes, inside the git directory it was taken from: git never reads
/// it, the user can inspect it, and later commands see it read-only (it is not writable state).
pub(crate) const QUARANTINE: &str = "agp-quarantine";

/// One directory's entries as they were before a command.
#[derive(Debug)]
struct DirState {
    path: PathBuf,
    entries: HashMap<OsString, Entry>,
    allowed: fn(&OsStr, &Kind) -> bool,
    /// The git directory whose quarantine takes what is removed here (none: deleted).
    git_dir: Option<PathBuf>,
}

/// What the git metadata looked like before a command, for [`scrub`].
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    repo: PathBuf,
    dirs: Vec<DirState>,
    /// The repository had no `.git` before the command: one created by it keeps only data.
    fresh_git: Option<PathBuf>,
}

fn top_allowed(name: &OsStr, kind: &Kind) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    match kind {
        Kind::File => {
            let base = name.strip_suffix(".lock").unwrap_or(name);
            WRITABLE_FILES.contains(&base) || WRITABLE_PREFIXES.iter().any(|p| name.starts_with(p))
        }
        Kind::Dir => WRITABLE_DIRS.contains(&name),
        _ => false,
    }
}

fn objects_info_allowed(name: &OsStr, kind: &Kind) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let base = name.strip_suffix(".lock").unwrap_or(name);
    match kind {
        Kind::File => OBJECTS_INFO_WRITABLE.contains(&base),
        Kind::Dir => base == "commit-graphs",
        _ => false,
    }
}

fn ro_bind(cmd: &mut Command, inherit: &mut Inherit, fd: OwnedFd, dest: &Path) {
    cmd.arg("--ro-bind-fd")
        .arg(fd.as_raw_fd().to_string())
        .arg(dest);
    inherit.owned.push(fd);
}

/// Add the protections for `repo` (canonical) to a bwrap command, and return what the
/// metadata looked like, for [`scrub`] after the command.
pub(crate) fn protect(
    repo: &Path,
    cmd: &mut Command,
    inherit: &mut Inherit,
) -> Result<Snapshot, SandboxError> {
    let repo_fd = open_at(None, repo, true).ok_or_else(|| {
        SandboxError::Refused(format!(
            "repository {} is no longer accessible",
            repo.display()
        ))
    })?;
    let mut snapshot = Snapshot {
        repo: repo.to_path_buf(),
        ..Snapshot::default()
    };
    let dot_git = repo.join(".git");
    match entry_of(&dot_git) {
        Some(Entry {
            kind: Kind::Dir, ..
        }) => {
            if let Some(git) = open_at(Some(&repo_fd), Path::new(".git"), true) {
                // Bound over itself, so it cannot be renamed away for a doctored one.
                cmd.arg("--bind-fd")
                    .arg(git.as_raw_fd().to_string())
                    .arg(&dot_git);
                guard_git_dir(&git, &dot_git, repo, cmd, inherit, &mut snapshot);
                inherit.owned.push(git);
                protect_submodules(repo, &dot_git, cmd, inherit, &mut snapshot);
            }
        }
        Some(Entry {
            kind: Kind::File, ..
        }) => {
            // A linked worktree or submodule checkout: the file names the git directory.
            if let Some(file) = open_at(Some(&repo_fd), Path::new(".git"), false) {
                ro_bind(cmd, inherit, file, &dot_git);
            }
            if let Some(target) = gitdir_target(&dot_git) {
                if let Some(git) = open_inside(repo, &target, true) {
                    guard_git_dir(&git, &target, repo, cmd, inherit, &mut snapshot);
                    inherit.owned.push(git);
                }
            }
        }
        Some(
            link @ Entry {
                kind: Kind::Symlink(_),
                ..
            },
        ) => {
            // A symlink cannot be bound over: put it back after the command if replaced,
            // and guard the directory it names when that lies inside the repository.
            snapshot.dirs.push(DirState {
                path: repo.to_path_buf(),
                entries: [(OsString::from(".git"), link)].into_iter().collect(),
                allowed: |_, _| true,
                git_dir: None,
            });
            if let Ok(target) = std::fs::canonicalize(&dot_git) {
                if let Some(git) = open_inside(repo, &target, true) {
                    guard_git_dir(&git, &target, repo, cmd, inherit, &mut snapshot);
                    inherit.owned.push(git);
                }
            }
        }
        Some(Entry {
            kind: Kind::Other, ..
        }) => {}
        None => snapshot.fresh_git = Some(dot_git),
    }
    protect_hooks_path(repo, cmd, inherit);
    Ok(snapshot)
}

/// The directory a `gitdir: PATH` file names, canonical.
fn gitdir_target(file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let rel = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    let path = file.parent()?.join(rel);
    std::fs::canonicalize(path).ok()
}

fn guard_git_dir(
    git: &OwnedFd,
    dest: &Path,
    repo: &Path,
    cmd: &mut Command,
    inherit: &mut Inherit,
    snapshot: &mut Snapshot,
) {
    let Some(host) = fd_path(git) else { return };
    let entries = list(&proc_path(git));
    if let Ok(hooks) = std::fs::canonicalize(host.join("hooks")) {
        protect_hook_links(&hooks, repo, cmd, inherit);
    }
    for (name, entry) in &entries {
        if top_allowed(name, &entry.kind) {
            continue;
        }
        match &entry.kind {
            Kind::Symlink(_) => {
                if let Ok(target) = std::fs::canonicalize(host.join(name)) {
                    if let Some(fd) = open_inside(repo, &target, target.is_dir()) {
                        ro_bind(cmd, inherit, fd, &target);
                    }
                }
            }
            kind => {
                if let Some(fd) = open_at(Some(git), Path::new(name), *kind == Kind::Dir) {
                    ro_bind(cmd, inherit, fd, &dest.join(name));
                }
            }
        }
    }
    let info = host.join("objects/info");
    let info_fd = open_beneath(git, Path::new("objects/info"), true);
    let info_entries = info_fd
        .as_ref()
        .map(|f| list(&proc_path(f)))
        .unwrap_or_default();
    for (name, entry) in &info_entries {
        if objects_info_allowed(name, &entry.kind) || matches!(entry.kind, Kind::Symlink(_)) {
            continue;
        }
        let Some(info_fd) = &info_fd else { break };
        if let Some(fd) = open_at(Some(info_fd), Path::new(name), entry.kind == Kind::Dir) {
            ro_bind(cmd, inherit, fd, &dest.join("objects/info").join(name));
        }
    }
    snapshot.dirs.push(DirState {
        path: host.clone(),
        entries,
        allowed: top_allowed,
        git_dir: Some(host.clone()),
    });
    snapshot.dirs.push(DirState {
        path: info,
        entries: info_entries,
        allowed: objects_info_allowed,
        git_dir: Some(host),
    });
}

/// This scrub's quarantine folders (`<git dir>/agp-quarantine/<time>-<pid>-<n>`), made on
/// first use, one per git directory.
#[derive(Default)]
struct Quarantine {
    made: HashMap<PathBuf, Option<(OwnedFd, PathBuf)>>,
}

impl Quarantine {
    fn folder(
        &mut self,
        repo: &Path,
        repo_fd: Option<&OwnedFd>,
        git_dir: &Path,
    ) -> Option<&(OwnedFd, PathBuf)> {
        self.made
            .entry(git_dir.to_path_buf())
            .or_insert_with(|| {
                let rel = git_dir.strip_prefix(repo).ok()?;
                let git = open_beneath(repo_fd?, rel, true)?;
                let root = proc_path(&git).join(QUARANTINE);
                match std::fs::create_dir(&root) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(_) => return None,
                }
                let root_fd = open_at(Some(&git), Path::new(QUARANTINE), true)?;
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                for n in 0..100 {
                    let name = format!("{secs}-{}-{n}", std::process::id());
                    if std::fs::create_dir(proc_path(&root_fd).join(&name)).is_ok() {
                        let fd = open_at(Some(&root_fd), Path::new(&name), true)?;
                        return Some((fd, git_dir.join(QUARANTINE).join(name)));
                    }
                }
                None
            })
            .as_ref()
    }
}

fn describe(kind: &Kind) -> String {
    match kind {
        Kind::File => "file".into(),
        Kind::Dir => "directory".into(),
        Kind::Symlink(t) => format!("symlink to {}", t.display()),
        Kind::Other => "special file".into(),
    }
}

/// After a command: remove what it created or replaced in the git metadata that is not
/// writable state, put back symlinks it replaced, and say what was done (`path (what)`).
pub(crate) fn scrub(snapshot: &Snapshot) -> Vec<String> {
    let mut report = Vec::new();
    let mut fresh = Vec::new();
    if let Some(dot_git) = &snapshot.fresh_git {
        match entry_of(dot_git).map(|e| e.kind) {
            // A repository made by the command (`git init`): its objects, refs and HEAD stay,
            // its config, hooks and info go, as if they had been planted in an existing one.
            Some(Kind::Dir) => {
                for (path, allowed) in [
                    (dot_git.clone(), top_allowed as fn(&OsStr, &Kind) -> bool),
                    (dot_git.join("objects/info"), objects_info_allowed),
                ] {
                    fresh.push(DirState {
                        path,
                        entries: HashMap::new(),
                        allowed,
                        git_dir: Some(dot_git.clone()),
                    });
                }
            }
            // A gitdir pointer or symlink naming a git directory anywhere.
            Some(kind) => {
                let removed = std::fs::remove_file(dot_git);
                report.push(match removed {
                    Ok(()) => format!("{} (removed: new {})", dot_git.display(), describe(&kind)),
                    Err(e) => format!(
                        "{} (COULD NOT BE REMOVED: new {}: {e})",
                        dot_git.display(),
                        describe(&kind)
                    ),
                });
            }
            None => {}
        }
    }
    let repo_fd = open_at(None, &snapshot.repo, true);
    let mut quarantine = Quarantine::default();
    for dir in snapshot.dirs.iter().chain(&fresh) {
        // Reached from the repository one directory at a time, never through a symlink.
        let opened = match dir.path.strip_prefix(&snapshot.repo) {
            Ok(rel) if rel.as_os_str().is_empty() => open_at(None, &snapshot.repo, true),
            Ok(rel) => repo_fd.as_ref().and_then(|r| open_beneath(r, rel, true)),
            Err(_) => None,
        };
        let Some(opened) = opened else { continue };
        let base = proc_path(&opened);
        let now = list(&base);
        for (name, entry) in &now {
            let before = dir.entries.get(name);
            if before == Some(entry) || (dir.allowed)(name, &entry.kind) {
                continue;
            }
            let shown = dir.path.join(name);
            let path = base.join(name);
            if dir.git_dir.as_ref() == Some(&dir.path)
                && name == QUARANTINE
                && entry.kind == Kind::Dir
            {
                continue;
            }
            let what = if before.is_some() { "replaced" } else { "new" };
            let kept = dir
                .git_dir
                .as_ref()
                .and_then(|g| quarantine.folder(&snapshot.repo, repo_fd.as_ref(), g));
            let moved = kept.as_ref().and_then(|(fd, shown_q)| {
                let prefix = if dir.git_dir.as_ref() == Some(&dir.path) {
                    String::new()
                } else {
                    "objects-info-".to_string()
                };
                let mut dest = OsString::from(prefix);
                dest.push(name);
                std::fs::rename(&path, proc_path(fd).join(&dest))
                    .ok()
                    .map(|()| shown_q.join(&dest))
            });
            let outcome = match moved {
                Some(to) => Ok(format!("moved to {}", to.display())),
                None if entry.kind == Kind::Dir => {
                    std::fs::remove_dir_all(&path).map(|()| "removed".to_string())
                }
                None => std::fs::remove_file(&path).map(|()| "removed".to_string()),
            };
            report.push(match outcome {
                Ok(done) => format!(
                    "{} ({what} {}: {done})",
                    shown.display(),
                    describe(&entry.kind)
                ),
                Err(e) => format!(
                    "{} (COULD NOT BE REMOVED: {what} {}: {e})",
                    shown.display(),
                    describe(&entry.kind)
                ),
            });
        }
        for (name, before) in &dir.entries {
            let Kind::Symlink(target) = &before.kind else {
                continue;
            };
            let shown = dir.path.join(name);
            let path = base.join(name);
            if entry_of(&path).as_ref() == Some(before) {
                continue;
            }
            match entry_of(&path).map(|e| e.kind) {
                Some(Kind::Dir) => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                Some(_) => {
                    let _ = std::fs::remove_file(&path);
                }
                None => {}
            }
            match std::os::unix::fs::symlink(target, &path) {
                Ok(()) => report.push(format!(
                    "{} (restored: symlink to {})",
                    shown.display(),
                    target.display()
                )),
                Err(e) => report.push(format!(
                    "{} (COULD NOT BE RESTORED as symlink to {}: {e})",
                    shown.display(),
                    target.display()
                )),
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_state_is_data_only() {
        for (name, kind) in [
            ("index", Kind::File),
            ("index.lock", Kind::File),
            ("HEAD", Kind::File),
            ("packed-refs.lock", Kind::File),
            ("sharedindex.0123", Kind::File),
            ("refs", Kind::Dir),
            ("objects", Kind::Dir),
        ] {
            assert!(top_allowed(OsStr::new(name), &kind), "{name}");
        }
        for (name, kind) in [
            ("config", Kind::File),
            ("config.lock", Kind::File),
            ("config.worktree", Kind::File),
            ("commondir", Kind::File),
            ("gitdir", Kind::File),
            ("hooks", Kind::Dir),
            ("info", Kind::Dir),
            ("modules", Kind::Dir),
            ("worktrees", Kind::Dir),
            ("rebase-merge", Kind::Dir),
            ("sequencer", Kind::Dir),
            ("index", Kind::Dir),
            ("HEAD", Kind::Symlink("/etc/passwd".into())),
            ("refs", Kind::Symlink("/".into())),
            ("objects", Kind::File),
        ] {
            assert!(!top_allowed(OsStr::new(name), &kind), "{name} {kind:?}");
        }
        assert!(objects_info_allowed(
            OsStr::new("commit-graph"),
            &Kind::File
        ));
        assert!(!objects_info_allowed(OsStr::new("alternates"), &Kind::File));
        assert!(!objects_info_allowed(
            OsStr::new("http-alternates"),
            &Kind::File
        ));
    }
}
