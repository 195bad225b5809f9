//! Paths a command names, judged like the reads a file tool would make.

use agp_contracts::Decision;

use super::{best_rule, path_spec_matches, unknown_word, Scene, Strictest};
use crate::file::Policy;
use crate::guards::{protected, GuardHit, GuardId};
use crate::matcher::FileClass;
use crate::shell::{SimpleCommand, Word};

/// Commands that never open the files their arguments name: an argument only known at run
/// time is no read for them.
fn opens_no_files(name: &str) -> bool {
    matches!(
        name,
        "echo"
            | "printf"
            | "true"
            | "false"
            | ":"
            | "test"
            | "["
            | "exit"
            | "return"
            | "shift"
            | "sleep"
            | "kill"
            | "wait"
            | "unset"
            | "set"
            | "read"
            | "local"
            | "export"
            | "declare"
            | "typeset"
            | "readonly"
            | "break"
            | "continue"
    )
}

/// Commands that print only sizes, types or digests of the files they read, never content: a
/// file name only known at run time reveals nothing through them.
fn prints_no_content(name: &str) -> bool {
    matches!(
        name,
        "wc" | "ls"
            | "stat"
            | "file"
            | "du"
            | "md5sum"
            | "sha1sum"
            | "sha224sum"
            | "sha256sum"
            | "sha384sum"
            | "sha512sum"
            | "b2sum"
            | "cksum"
    )
}

/// Could a word whose value is only partly known name agp's signing keys? Its static prefix
/// (the text before the first expansion or glob) is compared with the keys directory: `~/.ag$X`
/// or `~/.agp/keys/$f` could; `$X/y` is unknown everywhere and stays a plain `require`.
fn may_name_agp_keys(pattern: &str, scene: &Scene) -> bool {
    let mut prefix = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => prefix.push(n),
                None => break,
            },
            '$' | '`' | '*' | '?' | '[' | '{' => break,
            _ => prefix.push(c),
        }
    }
    if prefix.is_empty() || prefix.len() == pattern.len() {
        return false;
    }
    let full = if let Some(rest) = prefix.strip_prefix("~/") {
        format!("{}/{rest}", scene.bases.home.display())
    } else if prefix.starts_with('/') {
        prefix
    } else {
        return false;
    };
    let keys = scene.agp_home.join("keys").display().to_string();
    // The prefix must reach past the directory holding agp's home (`~/.a…`, not just `~/`).
    let parent = scene.agp_home.parent().map_or(0, |p| p.as_os_str().len());
    keys.starts_with(&full) && full.len() > parent + 1 || full.starts_with(&keys)
}

impl Policy {
    /// Paths a command names are checked against credential guards and read restrictions, so
    /// `cat .env` is judged like `Read(.env)`.
    pub(super) fn judge_mentions(&self, cmd: &SimpleCommand, scene: &Scene, acc: &mut Strictest) {
        let name = cmd.name();
        if matches!(name, "echo" | "printf" | "true" | "false" | ":") {
            return;
        }
        // Names appended or substituted at run time (`xargs cat`, `find -exec cat {} +`).
        let from_stdin = cmd.dynamic_tail
            || cmd
                .wrappers
                .iter()
                .any(|w| w == "xargs" || w == "find -exec");
        if from_stdin && !opens_no_files(name) && !prints_no_content(name) {
            acc.builtin(
                "shell",
                Decision::Require,
                format!(
                    "{name} is given file names read at run time ({}), which could name a \
                     credential; no rule can allow that",
                    cmd.wrappers.join(", ")
                ),
            );
        }
        for w in cmd.args() {
            if w.text.is_empty() || w.text.len() > 4096 || w.text.contains("://") {
                continue;
            }
            let t = w.text.as_str();
            let candidate = if let Some(v) = t.strip_prefix('@') {
                v
            } else if t.starts_with('-') {
                match t.split_once('=') {
                    Some((_, v)) if v.contains('/') || v.starts_with('.') || w.dynamic => v,
                    _ if w.dynamic => t,
                    _ => continue,
                }
            } else if let Some((_, v)) = t.split_once('=').filter(|(k, _)| !k.contains('/')) {
                // `dd if=…`, `--file=…`-like key=value operands.
                if v.is_empty() {
                    continue;
                }
                v
            } else {
                t
            };
            let word = Word {
                text: candidate.to_string(),
                ..w.clone()
            };
            let paths = match scene.word_paths(&word) {
                Ok(p) => p,
                Err(why) => {
                    if !opens_no_files(name) && !prints_no_content(name) {
                        acc.builtin("shell", Decision::Require, unknown_word(&w.text, &why));
                        if may_name_agp_keys(candidate, scene) {
                            acc.guard(
                                self,
                                GuardHit::deny(
                                    GuardId::AgpSelf,
                                    format!(
                                        "`{}` may name agp's signing keys once expanded",
                                        w.text
                                    ),
                                ),
                            );
                        }
                    }
                    continue;
                }
            };
            for raw in paths {
                for p in scene.resolve_all(&raw) {
                    if let Some(hit) = protected::check_read(&p, scene) {
                        acc.guard(self, hit);
                    }
                    if !self.index.read_restrict.is_empty() {
                        if let Some((r, m)) =
                            best_rule(self, self.index.read_restrict.iter().copied(), |_, m| {
                                m.applies_to_class(FileClass::Read)
                                    && path_spec_matches(m, &p, scene)
                            })
                        {
                            acc.push_rule(r, m, || format!("reading {}", p.display()));
                        }
                    }
                }
            }
        }
    }

    /// Commands whose job is to read the files they are given: their files are judged as
    /// reads under the `Read` rules, so `cat /etc/hosts` needs what `Read(//etc/hosts)` needs.
    pub(super) fn judge_file_readers(
        &self,
        cmd: &SimpleCommand,
        scene: &Scene,
        acc: &mut Strictest,
    ) {
        let name = cmd.name();
        let pattern_first = matches!(name, "grep" | "egrep" | "fgrep" | "rg" | "ag" | "jq" | "yq");
        let reader = pattern_first
            || matches!(
                name,
                "cat"
                    | "tac"
                    | "head"
                    | "tail"
                    | "less"
                    | "more"
                    | "nl"
                    | "wc"
                    | "od"
                    | "xxd"
                    | "hexdump"
                    | "strings"
                    | "base64"
                    | "md5sum"
                    | "sha1sum"
                    | "sha256sum"
                    | "sha512sum"
                    | "cksum"
                    | "diff"
                    | "cmp"
                    | "sort"
                    | "uniq"
                    | "bat"
                    | "view"
            );
        if !reader {
            return;
        }
        let args = cmd.args();
        let explicit_pattern = args
            .iter()
            .any(|w| matches!(w.text.as_str(), "-e" | "-f" | "--regexp" | "--file"));
        let mut ops = crate::guards::operands(args).into_iter();
        if pattern_first && !explicit_pattern {
            ops.next();
        }
        for w in ops {
            if w.text == "-" || w.text.is_empty() {
                continue;
            }
            // Unknown words were already required by `judge_mentions`.
            for raw in scene.word_paths(w).unwrap_or_default() {
                self.judge_path(FileClass::Read, None, &raw, scene, acc);
            }
        }
    }
}
