//! File reads and writes at a path, from a shell part or a file tool, and project tooling
//! pointed elsewhere.

use agp_contracts::{Decision, Tool};

use super::{best_rule, path_spec_matches, Scene, Strictest};
use crate::expand;
use crate::file::Policy;
use crate::guards::{destructive, protected};
use crate::matcher::FileClass;
use crate::shell::Word;

/// The directory a partly known word certainly lies in: its text up to the last `/` before
/// the first expansion or glob (`.git/hooks/$x` → `.git/hooks`).
fn static_dir(pattern: &str) -> Option<String> {
    let mut prefix = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => prefix.push(chars.next()?),
            '$' | '`' | '*' | '?' | '[' | '{' | '~' if !(c == '~' && prefix.is_empty()) => break,
            _ => prefix.push(c),
        }
    }
    let (dir, _) = prefix.rsplit_once('/')?;
    (!dir.is_empty() && !dir.contains("..")).then(|| dir.to_string())
}

/// Project tooling pointed at code or configuration: fine inside the project root, otherwise
/// (or when the path is only known at run time) a human decides, since no project build or
/// test rule vouches for code elsewhere.
/// Returns whether the path is (or may be) outside the project.
pub(super) fn judge_foreign(path: &Word, via: &str, scene: &Scene, acc: &mut Strictest) -> bool {
    let outside = path.dynamic
        || (Scene::is_relative(&path.text) && scene.cwd_unknown)
        || scene
            .resolve_all(&path.text)
            .iter()
            .any(|p| scene.outside_project(p));
    if outside {
        acc.builtin(
            "shell",
            Decision::Require,
            format!(
                "runs project tooling on code outside the project: `{via}` points at `{}`",
                path.text
            ),
        );
    }
    outside
}

impl Policy {
    /// A file read or write at a (raw) path, by a shell command or a file tool.
    pub(super) fn judge_path(
        &self,
        class: FileClass,
        tool: Option<&Tool>,
        raw: &str,
        scene: &Scene,
        acc: &mut Strictest,
    ) {
        // `~user/…`, `~+/…`, `~-/…` are not relative paths, whoever hands them over.
        let tilde = Word::literal(raw);
        if expand::needs_expansion(&tilde) {
            match scene.word_paths(&tilde) {
                Ok(paths) if !paths.iter().any(|p| p == raw) => {
                    for p in paths {
                        self.judge_path(class, tool, &p, scene, acc);
                    }
                    return;
                }
                // An unknown `~user` stays literal in bash: a relative path.
                Ok(_) => {}
                Err(why) => {
                    acc.builtin(
                        "shell",
                        Decision::Require,
                        format!("`{raw}` is only known at run time ({why})"),
                    );
                    return;
                }
            }
        }
        if Scene::is_relative(raw) && scene.cwd_unknown {
            acc.builtin(
                "shell",
                Decision::Require,
                format!("`{raw}` is relative to a directory only known at run time (cd)"),
            );
        }
        let verb = match class {
            FileClass::Read => "reading",
            FileClass::Write => "writing",
        };
        for p in scene.resolve_all(raw) {
            let what = || format!("{verb} {}", p.display());
            let list = match class {
                FileClass::Read => &self.index.read_rules,
                FileClass::Write => &self.index.write_rules,
            };
            let rule = match tool {
                Some(t) => best_rule(self, self.tool_rules(t), |_, m| {
                    m.applies_to_tool(t) && path_spec_matches(m, &p, scene)
                }),
                None => best_rule(self, list.iter().copied(), |_, m| {
                    m.applies_to_class(class) && path_spec_matches(m, &p, scene)
                }),
            };
            if let Some((r, m)) = rule {
                acc.push_rule(r, m, what);
            }
            let hit = match class {
                FileClass::Read => protected::check_read(&p, scene),
                FileClass::Write => {
                    protected::check_write(&p, scene).or_else(|| destructive::check_write(&p))
                }
            };
            if let Some(hit) = hit {
                acc.guard(self, hit);
            }
            if rule.is_none() {
                acc.push_with(self.default, || self.default_judgment(&what()));
            }
        }
    }

    pub(super) fn judge_file_word(
        &self,
        class: FileClass,
        path: &Word,
        via: &str,
        scene: &Scene,
        acc: &mut Strictest,
    ) {
        match scene.word_paths(path) {
            Ok(paths) => {
                for raw in paths {
                    self.judge_path(class, None, &raw, scene, acc);
                }
            }
            Err(why) => {
                acc.builtin(
                    "shell",
                    Decision::Require,
                    format!("`{via}` names a file only known at run time ({why})"),
                );
                // Whatever the unknown part is, a write below a protected directory
                // (`.git/hooks/$x`, `~/.ssh/$f`) is a write to it.
                if class == FileClass::Write {
                    if let Some(dir) = static_dir(&path.text) {
                        for p in scene.resolve_all(&format!("{dir}/x")) {
                            if let Some(hit) = protected::check_write(&p, scene) {
                                acc.guard(self, hit);
                            }
                        }
                    }
                }
            }
        }
    }
}
