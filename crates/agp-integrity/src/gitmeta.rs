//! What in a git directory makes host git run or read something it should not.
//!
//! An allowlist, not a denylist: git grows new code-running keys every few releases (fsmonitor,
//! hooksPath, sshCommand, pager.*, filters, aliases with `!`, includes, ...), so a key is inert
//! only when it is on the short list below, and a config agp cannot parse is not inert either.

// `struct stat` field types differ between architectures; the casts are no-ops only on some.
#![allow(clippy::unnecessary_cast)]

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{statat, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::walk::{open_beneath, open_dir_at};

/// Larger config-like files are not read (and are a problem of their own).
const MAX_READ: u64 = 1 << 20;

pub(crate) struct Meta {
    pub problems: Vec<String>,
    /// Over everything examined, so any change to hooks or config-like files changes it.
    pub digest: String,
}

pub(crate) fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A small regular file in `dir`, never following a symlink and never blocking on a fifo.
/// `Ok(None)` when it does not exist.
pub(crate) fn read_small(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<String>, String> {
    let shown = name.to_string_lossy();
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(format!("{shown} is a symlink")),
        Err(e) => return Err(format!("{shown} cannot be read ({e})")),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{shown}: {e}"))?;
    if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
        return Err(format!("{shown} is not a regular file"));
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_READ + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > MAX_READ {
        return Err(format!("{shown} is over {MAX_READ} bytes"));
    }
    Ok(Some(String::from_utf8_lossy(&text).into_owned()))
}

pub(crate) fn examine(gitdir: BorrowedFd<'_>) -> Meta {
    let mut problems = Vec::new();
    let mut h = Sha256::new();

    match open_dir_at(gitdir, OsStr::new("hooks")) {
        Ok(hooks) => {
            let mut names: Vec<String> = rustix::fs::Dir::read_from(hooks.as_fd())
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| String::from_utf8_lossy(e.file_name().to_bytes()).into_owned())
                        .filter(|n| n != "." && n != "..")
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            for n in &names {
                h.update(n.as_bytes());
                if let Ok(st) = statat(hooks.as_fd(), n.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    h.update(format!(
                        ":{}:{}:{}\n",
                        st.st_size, st.st_ctime, st.st_ctime_nsec
                    ));
                }
                if !n.ends_with(".sample") {
                    problems.push(format!("hook hooks/{n}"));
                }
            }
        }
        Err(Errno::NOENT) => {}
        Err(e) => problems.push(format!("hooks is not a plain directory ({e})")),
    }

    for file in ["config", "config.worktree"] {
        match read_small(gitdir, OsStr::new(file)) {
            Ok(None) => {}
            Ok(Some(text)) => {
                h.update(file.as_bytes());
                h.update(text.as_bytes());
                match active_keys(&text) {
                    Ok(keys) if keys.is_empty() => {}
                    Ok(keys) => problems.push(format!("{file} sets {}", keys.join(", "))),
                    Err(line) => problems.push(format!("{file} cannot be parsed (line {line})")),
                }
            }
            Err(e) => problems.push(e),
        }
    }

    for (dir, file, what) in [
        (".", "commondir", "commondir redirects git to"),
        (
            "objects/info",
            "alternates",
            "objects/info/alternates points to",
        ),
    ] {
        let opened = if dir == "." {
            rustix::fs::openat(gitdir, ".", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        } else {
            open_beneath(gitdir, std::path::Path::new(dir))
        };
        let Ok(d) = opened else { continue };
        match read_small(d.as_fd(), OsStr::new(file)) {
            Ok(None) => {}
            Ok(Some(text)) => {
                h.update(file.as_bytes());
                h.update(text.as_bytes());
                let first = text.lines().next().unwrap_or("").trim();
                problems.push(format!("{what} {first:?}"));
            }
            Err(e) => problems.push(e),
        }
    }
    Meta {
        problems,
        digest: hex::encode(h.finalize()),
    }
}

/// Keys set in a git config text that are not on the inert list, as `section.key` (or
/// `section.<sub>.key`); `Err(line)` when the text is not config syntax agp understands.
pub(crate) fn active_keys(text: &str) -> Result<Vec<String>, usize> {
    let mut found = Vec::new();
    let mut section: Option<(String, Option<String>)> = None;
    for (n, raw) in text.lines().enumerate() {
        let mut rest = raw.trim_start();
        if rest.starts_with('[') {
            let (sec, after) = header(rest).ok_or(n + 1)?;
            section = Some(sec);
            rest = after.trim_start();
        }
        if rest.is_empty() || rest.starts_with('#') || rest.starts_with(';') {
            continue;
        }
        // A value continued on the next line: where git's quoting and comment rules would let
        // it end is exactly where a parser differential would hide a key, so it is refused.
        if rest.trim_end().ends_with('\\') {
            return Err(n + 1);
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let after = rest[name.len()..].trim_start();
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && (after.is_empty() || after.starts_with(['=', '#', ';']));
        let Some((sec, sub)) = section.as_ref().filter(|_| valid) else {
            return Err(n + 1);
        };
        let key = name.to_ascii_lowercase();
        if !inert(sec, sub.as_deref(), &key) {
            let shown = match sub {
                Some(s) => format!("{sec}.{s}.{key}"),
                None => format!("{sec}.{key}"),
            };
            if !found.contains(&shown) {
                found.push(shown);
            }
        }
    }
    Ok(found)
}

/// Parses `[section]`, `[section "sub"]` or `[section.sub]` at the start of `line`; returns the
/// (lowercased) section, the subsection and what follows the `]`.
fn header(line: &str) -> Option<((String, Option<String>), &str)> {
    let body = &line[1..];
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or(body.len());
    let name = &body[..name_len];
    if name.is_empty() {
        return None;
    }
    let mut rest = body[name_len..].trim_start();
    let mut sub = None;
    if let Some(q) = rest.strip_prefix('"') {
        if name.contains('.') {
            return None;
        }
        let mut s = String::new();
        let mut chars = q.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => s.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => s.push(c),
            }
        };
        sub = Some(s);
        rest = q[end + 1..].trim_start();
    }
    let rest = rest.strip_prefix(']')?;
    let (sec, sub) = match (name.split_once('.'), sub) {
        (Some((s, old_sub)), None) => (s, Some(old_sub.to_ascii_lowercase())),
        (None, sub) => (name, sub),
        _ => return None,
    };
    Some(((sec.to_ascii_lowercase(), sub), rest))
}

fn inert(section: &str, sub: Option<&str>, key: &str) -> bool {
    let keys: &[&str] = match (section, sub.is_some()) {
        ("core", false) => &[
            "repositoryformatversion",
            "filemode",
            "bare",
            "logallrefupdates",
            "ignorecase",
            "precomposeunicode",
            "symlinks",
            "autocrlf",
            "eol",
            "safecrlf",
            "quotepath",
        ],
        ("remote", true) => &["url", "pushurl", "fetch", "push", "tagopt", "prune"],
        ("branch", true) => &["remote", "pushremote", "merge", "rebase"],
        ("user", false) => &["name", "email"],
        ("init", false) => &["defaultbranch"],
        ("extensions", false) => &["objectformat", "refstorage", "worktreeconfig"],
        _ => &[],
    };
    keys.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::active_keys;

    #[test]
    fn default_configs_are_inert() {
        let init = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\
                    \tlogallrefupdates = true\n[remote \"origin\"]\n\turl = https://x/y\n\
                    \tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\
                    \tremote = origin\n\tmerge = refs/heads/main\n# comment\n; other\n";
        assert_eq!(active_keys(init), Ok(vec![]));
    }

    #[test]
    fn code_running_keys_are_found_in_every_spelling() {
        let cases = [
            ("[core]\nfsmonitor = touch /tmp/x", "core.fsmonitor"),
            ("[CORE]\n\tHooksPath=/tmp", "core.hookspath"),
            ("[core]sshCommand = evil", "core.sshcommand"),
            ("[core] pager = less; id", "core.pager"),
            ("[core.x]\neditor = vi", "core.x.editor"),
            ("[alias]\n  st = !id", "alias.st"),
            ("[filter \"lfs\"]\nsmudge = id", "filter.lfs.smudge"),
            (
                "[includeIf \"gitdir:/\"]\npath = /tmp/c",
                "includeif.gitdir:/.path",
            ),
            ("[include]\npath = ../evil", "include.path"),
            ("[core]\nworktree = /", "core.worktree"),
            ("[diff \"x\"]\ntextconv = id", "diff.x.textconv"),
            ("[core]\nbare = false\nfsmonitor", "core.fsmonitor"),
            ("[remote \"o\"]\nuploadpack = id", "remote.o.uploadpack"),
        ];
        for (text, key) in cases {
            assert_eq!(active_keys(text), Ok(vec![key.to_owned()]), "{text}");
        }
    }

    #[test]
    fn text_that_is_not_config_is_not_inert() {
        for text in [
            "fsmonitor = x",
            "[core\nx=1",
            "[core]\n=1",
            "[core]\n!x",
            "[a \"b]\n",
        ] {
            assert!(active_keys(text).is_err(), "{text}");
        }
    }

    #[test]
    fn continuation_lines_do_not_hide_keys() {
        let text = "[core]\nbare = false \\\nfsmonitor = x";
        assert!(active_keys(text).is_err());
        let text = "[core]\n# comment \\\nfsmonitor = x";
        assert_eq!(active_keys(text), Ok(vec!["core.fsmonitor".to_owned()]));
    }
}
