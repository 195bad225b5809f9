//! Which directory a hook-mode session is judged against.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The root a hook-mode session is judged against. An event's `cwd` is whatever directory the
/// agent's shell happens to be in (`/` after a `cd /`), so it is never the root itself:
/// - `--project DIR` (what `agp install-hooks --project` records) is the root;
/// - otherwise (user-wide installs) the nearest directory at or above the event's `cwd` that
///   holds a `.git` entry, found with lstat alone (running git there would read the repository's
///   own config), and never `/` or the user's home (a dotfiles repository is not a project);
/// - otherwise there is no project: the session's root is an empty directory of agp's, so
///   every path is judged as outside the project (asks where a project rule would allow).
pub fn session_root(project: Option<&Path>, cwd: Option<&str>, run_dir: &Path) -> Result<PathBuf> {
    if let Some(p) = project {
        if !p.is_absolute() {
            bail!("--project {} is not an absolute path", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let found = cwd
        .map(Path::new)
        .filter(|c| c.is_absolute())
        .and_then(|cwd| {
            cwd.ancestors()
                .take_while(|d| d.parent().is_some() && Some(*d) != home.as_deref())
                .find(|d| d.join(".git").symlink_metadata().is_ok())
                .map(Path::to_path_buf)
        });
    if let Some(root) = found {
        Ok(root)
    } else {
        use std::os::unix::fs::DirBuilderExt;
        let none = run_dir.join("no-project");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&none)
            .with_context(|| format!("cannot create {}", none.display()))?;
        Ok(none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_root_never_comes_from_the_events_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let project = dir.path().join("proj");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::create_dir_all(project.join("src/deep")).unwrap();
        // A recorded project wins over any cwd, `/` included.
        for cwd in [Some("/"), Some("/root"), None] {
            assert_eq!(session_root(Some(&project), cwd, &run).unwrap(), project);
        }
        assert!(session_root(Some(Path::new("rel")), None, &run).is_err());
        // User-wide installs: the repository around the cwd.
        let deep = project.join("src/deep");
        let got = session_root(None, deep.to_str(), &run).unwrap();
        assert_eq!(got, project);
        // Outside any repository (or a cwd of `/`, relative or missing): no project at all.
        let none = run.join("no-project");
        for cwd in [Some("/"), Some("relative"), None, dir.path().to_str()] {
            assert_eq!(session_root(None, cwd, &run).unwrap(), none, "{cwd:?}");
        }
        assert!(none.is_dir() && std::fs::read_dir(&none).unwrap().next().is_none());
    }
}
