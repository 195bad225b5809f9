//! Paths as the policy sees them: resolved against the call's directory and the user's home,
//! symlinks and `..` resolved, then matched with gitignore-style patterns.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// Expands `~`/`~/…`, makes `raw` absolute against `cwd`, then canonicalizes it. `cwd` and
/// `home` must already be canonical.
pub fn resolve(raw: &str, cwd: &Path, home: &Path) -> PathBuf {
    if !raw.is_empty() && !raw.starts_with('/') && !raw.starts_with('~') {
        if let Some(p) = resolve_under(cwd, raw) {
            return p;
        }
    }
    if let Some(rest) = raw.strip_prefix("~/") {
        if let Some(p) = resolve_under(home, rest) {
            return p;
        }
    }
    let joined = if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest)
    } else if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        cwd.join(raw)
    };
    canonicalize_lenient(&joined)
}

/// Whether `text` ends with `suffix`, ASCII case ignored. A file-name check that decides what
/// runs or what is fetched must not be fooled by `.PY` or `.TGZ`: on a case-insensitive
/// filesystem (macOS, Windows mounts) those are the same files.
pub(crate) fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len()
        .checked_sub(suffix.len())
        .and_then(|start| text.as_bytes().get(start..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

/// `rel` (relative, without `.` or `..` components) below the canonical directory `base`,
/// canonicalized with one `lstat` per component instead of a full `realpath`: only a symlink
/// on the way sends it down the general path. `None` when `rel` has dot components.
pub fn resolve_under(base: &Path, rel: &str) -> Option<PathBuf> {
    if rel.split('/').any(|c| c == "." || c == "..") {
        return None;
    }
    let mut cur = base.to_path_buf();
    let mut comps = rel.split('/').filter(|c| !c.is_empty());
    while let Some(c) = comps.next() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if !m.file_type().is_symlink() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Nothing below a missing component exists: the rest is already canonical.
                cur.extend(comps);
                return Some(cur);
            }
            _ => {
                cur.extend(comps);
                return Some(canonicalize_lenient(&cur));
            }
        }
    }
    Some(cur)
}

/// Like `fs::canonicalize`, but for paths that do not exist (yet) it canonicalizes the longest
/// existing ancestor and appends the rest with `.` and `..` resolved lexically. A symlink that
/// points outside a protected directory therefore cannot hide a write to it.
pub fn canonicalize_lenient(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let comps: Vec<Component<'_>> = path.components().collect();
    // The existing prefix is resolved by the OS (so `link/..` follows the link); only the
    // missing tail is resolved lexically.
    for k in (1..comps.len()).rev() {
        let prefix: PathBuf = comps[..k].iter().collect();
        if let Ok(mut out) = std::fs::canonicalize(&prefix) {
            for c in &comps[k..] {
                match c {
                    Component::CurDir => {}
                    Component::ParentDir => {
                        out.pop();
                    }
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
    }
    lexical(path)
}

/// `.` and `..` removed without touching the file system (`..` at the root stays at the root).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push("/");
    }
    out
}

/// Where a path pattern is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `./x` or `x`: the call's working directory.
    Cwd,
    /// `/x`: the project root.
    Root,
    /// `~/x`: the user's home.
    Home,
    /// `//x`: the file system root.
    Absolute,
}

/// The directories patterns are anchored to, canonicalized.
#[derive(Debug, Clone)]
pub struct Bases {
    pub cwd: PathBuf,
    pub root: PathBuf,
    pub home: PathBuf,
}

impl Bases {
    /// Canonicalizes all three.
    pub fn new(cwd: &Path, root: &Path, home: &Path) -> Self {
        Self {
            cwd: canonicalize_lenient(cwd),
            root: canonicalize_lenient(root),
            home: canonicalize_lenient(home),
        }
    }
    fn of(&self, anchor: Anchor) -> &Path {
        match anchor {
            Anchor::Cwd => &self.cwd,
            Anchor::Root => &self.root,
            Anchor::Home => &self.home,
            Anchor::Absolute => Path::new("/"),
        }
    }
}

/// A gitignore-style path pattern from a rule such as `Edit(/src/**)`.
#[derive(Debug, Clone)]
pub struct PathPattern {
    pub anchor: Anchor,
    glob: GlobMatcher,
    /// The pattern also matches everything below what it names (`/src` covers `/src/a.rs`).
    below: GlobMatcher,
    /// The pattern names the anchor directory itself (`/`, `./`, `/**`).
    matches_base: bool,
    /// Text every match starts with (before the first glob character): a cheap pre-check.
    literal_prefix: String,
}

impl PathPattern {
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("empty path pattern".into());
        }
        let (anchor, rest) = if let Some(r) = spec.strip_prefix("//") {
            (Anchor::Absolute, r.to_string())
        } else if let Some(r) = spec.strip_prefix("~/") {
            (Anchor::Home, r.to_string())
        } else if spec == "~" {
            (Anchor::Home, String::new())
        } else if let Some(r) = spec.strip_prefix('/') {
            (Anchor::Root, r.to_string())
        } else if let Some(r) = spec.strip_prefix("./") {
            (Anchor::Cwd, r.to_string())
        } else if spec == "." {
            (Anchor::Cwd, String::new())
        } else if spec.trim_end_matches('/').contains('/') {
            (Anchor::Cwd, spec.to_string())
        } else {
            // gitignore: a pattern without a slash matches at any depth.
            (Anchor::Cwd, format!("**/{spec}"))
        };
        if rest.split('/').any(|c| c == "..") {
            return Err(format!("path pattern `{spec}` must not contain `..`"));
        }
        let mut rest = rest.trim_start_matches('/').to_string();
        if rest.ends_with('/') {
            rest.push_str("**");
        }
        let matches_base = rest.is_empty() || rest == "**";
        let pattern = if rest.is_empty() {
            "**".to_string()
        } else {
            rest
        };
        let build = |p: &str| {
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("bad path pattern `{spec}`: {}", e.kind()))
        };
        let glob = build(&pattern)?;
        let below = if pattern.ends_with("**") {
            glob.clone()
        } else {
            build(&format!("{pattern}/**"))?
        };
        let literal_prefix = pattern
            .split(['*', '?', '[', '{', '\\'])
            .next()
            .unwrap_or("")
            .to_string();
        Ok(Self {
            anchor,
            glob,
            below,
            matches_base,
            literal_prefix,
        })
    }

    /// `path` must already be canonical.
    pub fn matches(&self, path: &Path, bases: &Bases) -> bool {
        let Some(rel) = relative_to(path, bases.of(self.anchor)) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return self.matches_base;
        }
        {
            use std::os::unix::ffi::OsStrExt;
            if !rel
                .as_os_str()
                .as_bytes()
                .starts_with(self.literal_prefix.as_bytes())
            {
                return false;
            }
        }
        self.glob.is_match(rel) || self.below.is_match(rel)
    }
}

/// `path` below `base` (both canonical), compared as bytes: `Path::strip_prefix` walks
/// components and dominated evaluation time with hundreds of path rules.
pub fn relative_to<'a>(path: &'a Path, base: &Path) -> Option<&'a Path> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let p = path.as_os_str().as_bytes();
    let b = base.as_os_str().as_bytes();
    let b = if b.len() > 1 {
        b.strip_suffix(b"/").unwrap_or(b)
    } else {
        b
    };
    let rest = p.strip_prefix(b)?;
    let rest = if b == b"/" || rest.is_empty() {
        rest
    } else {
        rest.strip_prefix(b"/")?
    };
    Some(Path::new(OsStr::from_bytes(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> Bases {
        Bases {
            cwd: PathBuf::from("/p/sub"),
            root: PathBuf::from("/p"),
            home: PathBuf::from("/h"),
        }
    }

    fn m(spec: &str, path: &str) -> bool {
        PathPattern::parse(spec)
            .unwrap()
            .matches(Path::new(path), &bases())
    }

    #[test]
    fn suffixes_ignore_ascii_case() {
        for (text, suffix, want) in [
            ("t.py", ".py", true),
            ("T.PY", ".py", true),
            ("x.Tar.GZ", ".tar.gz", true),
            (".py", ".py", true),
            ("py", ".py", false),
            ("t.pyc", ".py", false),
            ("é.py", ".py", true),
            ("é", ".py", false),
        ] {
            assert_eq!(ends_with_ignore_case(text, suffix), want, "{text} {suffix}");
        }
    }

    #[test]
    fn anchors() {
        assert!(m("/src/**", "/p/src/a/b.rs"));
        assert!(!m("/src/**", "/p/sub/src/a.rs"));
        assert!(m("./.env", "/p/sub/.env"));
        assert!(!m("./.env", "/p/.env"));
        assert!(m(".env", "/p/sub/deep/.env"));
        assert!(m("~/.ssh/**", "/h/.ssh/id_rsa"));
        assert!(m("//etc/passwd", "/etc/passwd"));
        assert!(m("/src", "/p/src/main.rs"));
        assert!(m("/", "/p"));
        assert!(m("/**", "/p/anything/below"));
        assert!(!m("/**", "/elsewhere"));
        assert!(m("*.pem", "/p/sub/certs/server.pem"));
        assert!(!m("/src/*.rs", "/p/src/a/b.rs"));
        assert!(PathPattern::parse("/../x").is_err());
        assert!(!m("/src/**", "/p/srcx/a.rs"));
        assert!(!m("~/.ssh/**", "/hx/.ssh/a"));
        assert_eq!(
            relative_to(Path::new("/a/b"), Path::new("/")),
            Some(Path::new("a/b"))
        );
        assert_eq!(
            relative_to(Path::new("/a"), Path::new("/a")),
            Some(Path::new(""))
        );
        assert_eq!(relative_to(Path::new("/ab"), Path::new("/a")), None);
    }

    #[test]
    fn resolves_below_a_canonical_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("real/out")).unwrap();
        assert_eq!(
            resolve_under(&base, "link/x/y"),
            Some(base.join("real/x/y"))
        );
        assert_eq!(resolve_under(&base, "real//x"), Some(base.join("real/x")));
        assert_eq!(
            resolve_under(&base, "missing/a/b"),
            Some(base.join("missing/a/b"))
        );
        assert_eq!(
            resolve_under(&base, "link/out/passwd"),
            Some(PathBuf::from("/etc/passwd"))
        );
        assert_eq!(resolve_under(&base, "real/../x"), None);
        assert_eq!(resolve_under(&base, "./x"), None);
    }

    #[test]
    fn canonicalizes_symlinks_and_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let canon_real = std::fs::canonicalize(&real).unwrap();
        assert_eq!(
            canonicalize_lenient(&dir.path().join("link/new/../file.txt")),
            canon_real.join("file.txt")
        );
        assert_eq!(
            resolve("link/x", dir.path(), Path::new("/h")),
            canon_real.join("x")
        );
        assert_eq!(
            resolve("~/a/../b", Path::new("/"), Path::new("/nonexistent-h")),
            PathBuf::from("/nonexistent-h/b")
        );
    }
}
