//! Git metadata that lives in the work tree rather than the git directory: a `core.hooksPath`
//! inside it, hooks symlinked into it, and submodule checkouts with their `.git`.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::fs::{entry_of, open_inside, Kind};
use super::{guard_git_dir, ro_bind, Snapshot};
use crate::limits::Inherit;

/// Hooks git runs from inside the work tree (`core.hooksPath = .husky` and the like) are as
/// much the user's as `.git/hooks`: bound read-only. Asking git costs a process, so only
/// when a config file git reads mentions hooksPath or an include.
pub(super) fn protect_hooks_path(repo: &Path, cmd: &mut Command, inherit: &mut Inherit) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut files = vec![repo.join(".git/config"), PathBuf::from("/etc/gitconfig")];
    files.extend(home.map(|h| h.join(".gitconfig")));
    files.extend(xdg.map(|x| x.join("git/config")));
    let mentions = files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("hookspath") || t.contains("[include")
        })
    });
    if !mentions {
        return;
    }
    let Ok(out) = Command::new("git")
        .arg("--git-dir")
        .arg(repo.join(".git"))
        .args(["config", "--get", "core.hooksPath"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_CONFIG")
        .env_remove("GIT_CONFIG_PARAMETERS")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return;
    };
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if value.is_empty() {
        return;
    }
    // Relative to the work tree root, as git resolves it for a non-bare repository.
    let Ok(dir) = std::fs::canonicalize(repo.join(&value)) else {
        return;
    };
    if let Some(fd) = open_inside(repo, &dir, true) {
        protect_hook_links(&dir, repo, cmd, inherit);
        ro_bind(cmd, inherit, fd, &dir);
    }
}

/// Hooks that are symlinks into the work tree (`pre-commit -> ../../scripts/pre-commit`):
/// their targets are bound read-only too.
pub(super) fn protect_hook_links(
    hooks: &Path,
    repo: &Path,
    cmd: &mut Command,
    inherit: &mut Inherit,
) {
    let Ok(entries) = std::fs::read_dir(hooks) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        if let Ok(target) = std::fs::canonicalize(entry.path()) {
            if !target.starts_with(hooks) {
                if let Some(fd) = open_inside(repo, &target, target.is_dir()) {
                    ro_bind(cmd, inherit, fd, &target);
                }
            }
        }
    }
}

/// Submodule checkouts in the work tree: host git run in the superproject (`git status`)
/// runs git in each, through the `.git` file that names its git directory, so that file is
/// bound read-only; a submodule whose `.git` is a directory (not absorbed) is guarded like
/// the main one. Found from `.gitmodules` and from the `core.worktree` of the git
/// directories under `.git/modules`, as they are on the host before the command.
pub(super) fn protect_submodules(
    repo: &Path,
    main_git: &Path,
    cmd: &mut Command,
    inherit: &mut Inherit,
    snapshot: &mut Snapshot,
) {
    let mut paths = Vec::new();
    if let Ok(text) = std::fs::read_to_string(repo.join(".gitmodules")) {
        paths.extend(config_values(&text, "path").map(|v| repo.join(v)));
    }
    // Names may hold slashes (modules/a/b); nested submodules sit under modules/*/modules.
    let mut stack = vec![(main_git.join("modules"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if depth > 8 || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if path.join("HEAD").is_file() {
                if let Ok(text) = std::fs::read_to_string(path.join("config")) {
                    paths.extend(config_values(&text, "worktree").map(|v| path.join(v)));
                }
                stack.push((path.join("modules"), depth + 1));
            } else {
                stack.push((path, depth + 1));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let Ok(dir) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !dir.starts_with(repo) || dir == repo || !seen.insert(dir.clone()) {
            continue;
        }
        let dot_git = dir.join(".git");
        match entry_of(&dot_git).map(|e| e.kind) {
            Some(Kind::File) => {
                if let Some(fd) = open_inside(repo, &dot_git, false) {
                    ro_bind(cmd, inherit, fd, &dot_git);
                }
            }
            Some(Kind::Dir) => {
                if let Some(git) = open_inside(repo, &dot_git, true) {
                    cmd.arg("--bind-fd")
                        .arg(git.as_raw_fd().to_string())
                        .arg(&dot_git);
                    guard_git_dir(&git, &dot_git, repo, cmd, inherit, snapshot);
                    inherit.owned.push(git);
                }
            }
            _ => {}
        }
    }
}

/// The values of `key = value` lines of a git config file, in any section (enough to find
/// paths; a key of another section naming a path only adds protection).
fn config_values<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines().filter_map(move |line| {
        let (k, v) = line.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}
