//! Where paths are resolved from during one evaluation, and how `cd` changes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use agp_contracts::EvalContext;

use crate::expand;
use crate::paths::{self, Bases};
use crate::shell::{SimpleCommand, Word};

/// Where paths are resolved from during one evaluation.
#[derive(Debug, Clone)]
pub struct Scene {
    pub bases: Bases,
    pub agp_home: PathBuf,
    /// Directories a relative path may be relative to (the call's directory and every `cd`).
    pub cwds: Vec<PathBuf>,
    /// A `cd` went somewhere only known at run time.
    pub cwd_unknown: bool,
    /// Variables the command line assigns (see [`crate::expand`]).
    pub vars: Vec<(String, Option<Word>)>,
    /// The policy in force's file and links (see `Policy::files`): never written.
    pub policy_files: Arc<[PathBuf]>,
    memo: std::cell::RefCell<Vec<(String, Vec<PathBuf>)>>,
}

/// Canonical forms of the session's fixed directories (project root, home, agp home). They are
/// set by the daemon, not by the agent, so resolving them once per policy saves a dozen
/// syscalls per call. The call's own working directory is resolved every time, unless it is
/// the project root itself.
#[derive(Debug, Clone, Default)]
pub struct BaseCache(Arc<RwLock<HashMap<PathBuf, PathBuf>>>);

impl BaseCache {
    fn get(&self, p: &Path) -> PathBuf {
        if let Some(hit) = self.0.read().ok().and_then(|m| m.get(p).cloned()) {
            return hit;
        }
        let canon = paths::canonicalize_lenient(p);
        if let Ok(mut m) = self.0.write() {
            if m.len() > 64 {
                m.clear();
            }
            m.insert(p.to_path_buf(), canon.clone());
        }
        canon
    }
}

impl Scene {
    /// Resolves the call's directories without a cache.
    pub fn new(ctx: &EvalContext, cwd: &Path) -> Self {
        Self::with_cache(ctx, cwd, &BaseCache::default())
    }

    pub(super) fn with_cache(ctx: &EvalContext, cwd: &Path, cache: &BaseCache) -> Self {
        let cwd = if cwd.as_os_str().is_empty() || cwd.is_relative() {
            ctx.project_root.join(cwd)
        } else {
            cwd.to_path_buf()
        };
        let root = cache.get(&ctx.project_root);
        let cwd = if cwd == ctx.project_root {
            root.clone()
        } else {
            paths::canonicalize_lenient(&cwd)
        };
        let bases = Bases {
            cwd,
            root,
            home: cache.get(&ctx.home),
        };
        Self {
            cwds: vec![bases.cwd.clone()],
            agp_home: cache.get(&ctx.agp_home),
            bases,
            cwd_unknown: false,
            vars: Vec::new(),
            policy_files: Arc::from(Vec::new()),
            memo: Default::default(),
        }
    }

    /// Every path `raw` may name (one per possible working directory).
    pub fn resolve_all(&self, raw: &str) -> Vec<PathBuf> {
        // The same word is often looked at by several checks; resolve it once per evaluation
        // (the memo is cleared whenever a `cd` changes what relative paths mean).
        if let Some(hit) = self
            .memo
            .borrow()
            .iter()
            .find(|(k, _)| k == raw)
            .map(|(_, v)| v.clone())
        {
            return hit;
        }
        let out: Vec<PathBuf> = if raw.starts_with('/') {
            // Most absolute paths an agent sends are inside the project or home: walk only the
            // part below that (already canonical) directory.
            let under = [&self.bases.cwd, &self.bases.root, &self.bases.home]
                .into_iter()
                .find_map(|b| {
                    let rest = paths::relative_to(Path::new(raw), b)?;
                    paths::resolve_under(b, rest.to_str()?)
                });
            vec![under.unwrap_or_else(|| paths::resolve(raw, &self.bases.cwd, &self.bases.home))]
        } else if raw == "~" || raw.starts_with("~/") {
            vec![paths::resolve(raw, &self.bases.cwd, &self.bases.home)]
        } else {
            self.cwds
                .iter()
                .map(|c| paths::resolve(raw, c, &self.bases.home))
                .collect()
        };
        let mut memo = self.memo.borrow_mut();
        if memo.len() < 64 {
            memo.push((raw.to_string(), out.clone()));
        }
        out
    }

    /// Whether a resolved path lies outside the project root (where no project rule vouches
    /// for the code a build or test runner finds).
    pub fn outside_project(&self, path: &Path) -> bool {
        paths::relative_to(path, &self.bases.root).is_none()
    }

    /// Like [`resolve_all`](Self::resolve_all) without following symlinks.
    pub fn lexical_all(&self, raw: &str) -> Vec<PathBuf> {
        let expand = |base: &Path| {
            if raw == "~" {
                self.bases.home.clone()
            } else if let Some(rest) = raw.strip_prefix("~/") {
                paths::lexical(&self.bases.home.join(rest))
            } else {
                paths::lexical(&base.join(raw))
            }
        };
        if Self::is_relative(raw) {
            self.cwds.iter().map(|c| expand(c)).collect()
        } else {
            vec![expand(&self.bases.cwd)]
        }
    }

    pub(super) fn is_relative(raw: &str) -> bool {
        !(raw.starts_with('/') || raw == "~" || raw.starts_with("~/"))
    }

    /// Every path a word may name once expanded ([`crate::expand`]), or why that is only
    /// known at run time.
    pub fn word_paths(&self, w: &Word) -> Result<Vec<String>, String> {
        if !expand::needs_expansion(w) {
            return Ok(vec![w.text.clone()]);
        }
        let env = expand::Env {
            home: &self.bases.home,
            cwds: &self.cwds,
            vars: &self.vars,
        };
        match expand::expand(w, &env) {
            expand::Expansion::Paths(p) => Ok(p),
            expand::Expansion::Unknown(why) => Err(why),
        }
    }
}

/// Adds a directory relative paths may be relative to from now on (never removes one: judging
/// against every candidate is the strict choice).
pub(super) fn enter_dir(dir: &Word, scene: &mut Scene) {
    if dir.text == "-" && !dir.dynamic {
        scene.cwd_unknown = true;
        return;
    }
    // `cd "$HOME/x"`, `cd ~+/src`: expanded like any other word, or unknown.
    let Ok(raws) = scene.word_paths(dir) else {
        scene.cwd_unknown = true;
        return;
    };
    for raw in raws {
        for p in scene.resolve_all(&raw) {
            if !scene.cwds.contains(&p) {
                scene.cwds.push(p);
                scene.memo.borrow_mut().clear();
            }
        }
    }
}

/// Follows `cd` so later relative paths are judged against every directory they may be in.
pub(super) fn track_cd(cmd: &SimpleCommand, scene: &mut Scene) {
    if !matches!(cmd.name(), "cd" | "pushd" | "popd") {
        return;
    }
    let target = crate::guards::operands(cmd.args()).into_iter().next();
    match target {
        Some(w) if (w.dynamic || w.text != "-") && cmd.name() != "popd" => enter_dir(w, scene),
        None if cmd.name() == "cd" => {
            let home = scene.bases.home.clone();
            if !scene.cwds.contains(&home) {
                scene.cwds.push(home);
                scene.memo.borrow_mut().clear();
            }
        }
        _ => scene.cwd_unknown = true,
    }
}
